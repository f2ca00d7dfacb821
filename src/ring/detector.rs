//! When a silent neighbour counts as lost: a failure detector for one ring
//! link, judged against what the link itself has shown.
//!
//! A lost TCP connection is reported the moment the socket says so; silence
//! is the weaker signal (a busy host, a starved process, a long swap-in all
//! look like it for a while), so it is judged in two phases:
//!
//! - **loading** (the ring forms, every rank loads its layers, possibly many
//!   ranks on few cores): a neighbour may be silent for
//!   [`SilencePolicy::loading`] (default 60 s) before it is declared lost;
//! - **serving** (the whole ring has loaded): the limit is
//!   [`SilencePolicy::serving`] (default 3 s) or, on a link whose gaps
//!   between arrivals have been long or irregular, `mean + 6 * deviation` of
//!   the recent gaps, whichever is larger, but never more than
//!   [`SERVING_CEILING_FACTOR`] times `serving`.
//!
//! Before the limit, a neighbour silent for clearly longer than its usual
//! gaps (`mean + 4 * deviation`, at least two heartbeat intervals) is
//! reported as *slow*, once per episode, and its recovery too; it is not
//! killed. So a frozen process (SIGSTOP, a hung host) is declared lost at
//! most `loading` after it froze while loading, and at most
//! `SERVING_CEILING_FACTOR * serving` (15 s by default; `serving`, 3 s, on a
//! link with regular heartbeats) while serving.
//!
//! The invariant guarded here: the verdict depends only on the arrival times
//! fed in and the policy, so it is testable without sockets or clocks.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::HEARTBEAT_INTERVAL;

/// Default silence tolerated while the ring forms and loads: ranks that
/// load a large model on a busy host (or 30 ranks on 2 cores, measured here)
/// can be starved for seconds at a time.
pub const DEFAULT_LOADING_SILENCE: Duration = Duration::from_secs(60);

/// Default silence tolerated while serving on a link with regular
/// heartbeats: six missed heartbeats, which keeps a lost neighbour's
/// requests failing within 5 s.
pub const DEFAULT_SERVING_SILENCE: Duration = Duration::from_secs(3);

/// The adaptive serving limit never exceeds this multiple of `serving`.
pub const SERVING_CEILING_FACTOR: u32 = 5;

/// Gaps remembered per link (the last minute or so at one heartbeat per
/// 500 ms on an idle link).
const WINDOW: usize = 128;

/// Gaps needed before the statistics replace the defaults.
const MIN_SAMPLES: usize = 8;

/// Deviation never assumed below this (a perfectly regular link would
/// otherwise make the slow threshold jitter-sensitive).
const MIN_DEVIATION: Duration = Duration::from_millis(50);

/// Deviations above the mean gap before a link counts as slow / lost.
const SLOW_DEVIATIONS: f64 = 4.0;
const LOST_DEVIATIONS: f64 = 6.0;

/// How long a neighbour may be silent, per phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SilencePolicy {
    /// While the ring forms and the ranks load.
    pub loading: Duration,
    /// While serving, on a link with regular heartbeats (the floor of the
    /// adaptive limit).
    pub serving: Duration,
}

impl Default for SilencePolicy {
    fn default() -> Self {
        SilencePolicy {
            loading: DEFAULT_LOADING_SILENCE,
            serving: DEFAULT_SERVING_SILENCE,
        }
    }
}

impl SilencePolicy {
    /// The longest a frozen neighbour goes undetected while serving.
    pub fn serving_ceiling(&self) -> Duration {
        self.serving * SERVING_CEILING_FACTOR
    }
}

/// Where the ring is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Loading,
    Serving,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Loading => "loading",
            Phase::Serving => "serving",
        }
    }
}

/// What the detector makes of a silence.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Verdict {
    Fine,
    /// Silent for longer than usual (reported once per episode).
    Slow {
        silent: Duration,
        usual: Duration,
    },
    /// Silent past the limit: declare the neighbour lost.
    Lost {
        silent: Duration,
        limit: Duration,
        phase: Phase,
    },
}

/// One link's failure detector.
#[derive(Clone, Debug)]
pub struct Detector {
    policy: SilencePolicy,
    phase: Phase,
    last: Instant,
    gaps: VecDeque<f64>,
    /// A slow episode was reported and has not ended.
    slow: bool,
}

impl Detector {
    /// A detector for a link that was last heard from at `now` (its
    /// handshake), in the loading phase.
    pub fn new(policy: SilencePolicy, now: Instant) -> Detector {
        Detector {
            policy,
            phase: Phase::Loading,
            last: now,
            gaps: VecDeque::with_capacity(WINDOW),
            slow: false,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The whole ring has loaded: judge by the serving limit from now on.
    pub fn serving(&mut self) {
        self.phase = Phase::Serving;
    }

    /// Bytes arrived at `now`. Returns how long the link had been silent
    /// when a slow episode ends with this arrival.
    pub fn heard(&mut self, now: Instant) -> Option<Duration> {
        let gap = now.saturating_duration_since(self.last);
        self.last = now;
        if self.gaps.len() == WINDOW {
            self.gaps.pop_front();
        }
        self.gaps.push_back(gap.as_secs_f64());
        std::mem::take(&mut self.slow).then_some(gap)
    }

    /// Mean and deviation of the recent gaps, or what a link with regular
    /// heartbeats shows when there are too few to tell.
    fn stats(&self) -> (f64, f64) {
        let min_dev = MIN_DEVIATION.as_secs_f64();
        if self.gaps.len() < MIN_SAMPLES {
            return (HEARTBEAT_INTERVAL.as_secs_f64(), min_dev);
        }
        let n = self.gaps.len() as f64;
        let mean = self.gaps.iter().sum::<f64>() / n;
        let var = self.gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / n;
        (mean, var.sqrt().max(min_dev))
    }

    /// The silence after which the neighbour is declared lost, now.
    pub fn limit(&self) -> Duration {
        match self.phase {
            Phase::Loading => self.policy.loading,
            Phase::Serving => {
                let (mean, dev) = self.stats();
                let adaptive = Duration::from_secs_f64(mean + LOST_DEVIATIONS * dev);
                adaptive
                    .max(self.policy.serving)
                    .min(self.policy.serving_ceiling())
            }
        }
    }

    /// The silence after which the neighbour counts as slow.
    fn slow_after(&self) -> Duration {
        let (mean, dev) = self.stats();
        Duration::from_secs_f64(mean + SLOW_DEVIATIONS * dev).max(2 * HEARTBEAT_INTERVAL)
    }

    /// The gap the link usually shows (for messages).
    pub fn usual(&self) -> Duration {
        Duration::from_secs_f64(self.stats().0)
    }

    /// Judge the silence at `now`.
    pub fn judge(&mut self, now: Instant) -> Verdict {
        let silent = now.saturating_duration_since(self.last);
        let limit = self.limit();
        if silent >= limit {
            return Verdict::Lost {
                silent,
                limit,
                phase: self.phase,
            };
        }
        if !self.slow && silent >= self.slow_after() {
            self.slow = true;
            return Verdict::Slow {
                silent,
                usual: self.usual(),
            };
        }
        Verdict::Fine
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A detector fed `n` arrivals `every` apart, starting at `t0`; returns
    /// the time of the last arrival.
    fn feed(d: &mut Detector, t0: Instant, every: Duration, n: u32) -> Instant {
        let mut t = t0;
        for _ in 0..n {
            t += every;
            d.heard(t);
        }
        t
    }

    #[test]
    fn loading_tolerates_long_silence_and_serving_does_not() {
        let t0 = Instant::now();
        let mut d = Detector::new(SilencePolicy::default(), t0);
        // 20 s of silence while loading: slow, not lost.
        assert!(matches!(d.judge(t0 + ms(1_500)), Verdict::Slow { .. }));
        assert_eq!(d.judge(t0 + Duration::from_secs(20)), Verdict::Fine);
        match d.judge(t0 + Duration::from_secs(61)) {
            Verdict::Lost { limit, phase, .. } => {
                assert_eq!(limit, DEFAULT_LOADING_SILENCE);
                assert_eq!(phase, Phase::Loading);
            }
            v => panic!("{v:?}"),
        }
        // Serving, regular heartbeats: lost after the serving limit.
        let mut d = Detector::new(SilencePolicy::default(), t0);
        d.serving();
        let t = feed(&mut d, t0, HEARTBEAT_INTERVAL, 40);
        assert_eq!(d.limit(), DEFAULT_SERVING_SILENCE);
        assert!(matches!(d.judge(t + ms(2_900)), Verdict::Slow { .. }));
        assert!(matches!(
            d.judge(t + ms(3_000)),
            Verdict::Lost {
                phase: Phase::Serving,
                ..
            }
        ));
    }

    #[test]
    fn a_slow_episode_is_reported_once_and_its_end_too() {
        let t0 = Instant::now();
        let mut d = Detector::new(SilencePolicy::default(), t0);
        d.serving();
        let t = feed(&mut d, t0, HEARTBEAT_INTERVAL, 20);
        assert_eq!(d.judge(t + ms(600)), Verdict::Fine);
        match d.judge(t + ms(1_300)) {
            Verdict::Slow { silent, usual } => {
                assert_eq!(silent, ms(1_300));
                assert_eq!(usual, HEARTBEAT_INTERVAL);
            }
            v => panic!("{v:?}"),
        }
        // Still slow, not reported again.
        assert_eq!(d.judge(t + ms(2_000)), Verdict::Fine);
        // It answers: the episode ends and says how long it lasted.
        assert_eq!(d.heard(t + ms(2_100)), Some(ms(2_100)));
        assert_eq!(d.heard(t + ms(2_600)), None);
    }

    #[test]
    fn an_irregular_link_earns_a_longer_limit_up_to_the_ceiling() {
        let t0 = Instant::now();
        let policy = SilencePolicy::default();
        let mut d = Detector::new(policy, t0);
        d.serving();
        // A starved neighbour: gaps alternate 0.2 s and 2.5 s.
        let mut t = t0;
        for i in 0..64 {
            t += if i % 2 == 0 { ms(200) } else { ms(2_500) };
            d.heard(t);
        }
        let limit = d.limit();
        assert!(limit > policy.serving, "{limit:?}");
        assert!(limit <= policy.serving_ceiling(), "{limit:?}");
        // 3.5 s of silence is normal for this link.
        assert_eq!(d.judge(t + ms(3_500)), Verdict::Fine);
        assert!(matches!(d.judge(t + limit), Verdict::Lost { .. }));

        // Wildly irregular: capped at the ceiling.
        let mut d = Detector::new(policy, t0);
        d.serving();
        let mut t = t0;
        for i in 0..64 {
            t += if i % 2 == 0 { ms(10) } else { ms(30_000) };
            d.heard(t);
        }
        assert_eq!(d.limit(), policy.serving_ceiling());
    }

    #[test]
    fn a_configured_policy_is_honoured() {
        let t0 = Instant::now();
        let policy = SilencePolicy {
            loading: Duration::from_secs(5),
            serving: Duration::from_secs(1),
        };
        let mut d = Detector::new(policy, t0);
        assert!(matches!(
            d.judge(t0 + Duration::from_secs(5)),
            Verdict::Lost { .. }
        ));
        let mut d = Detector::new(policy, t0);
        d.serving();
        let t = feed(&mut d, t0, ms(100), 30);
        assert_eq!(d.limit(), Duration::from_secs(1));
        assert_eq!(policy.serving_ceiling(), Duration::from_secs(5));
        assert!(matches!(d.judge(t + ms(1_000)), Verdict::Lost { .. }));
    }
}
