//! `skulk apply --watch`: apply a plan, then keep it up until interrupted.
//!
//! The supervisor asks rank 0's `/health` every [`CHECK_EVERY`]; the ring
//! reports its own failures there (a lost or silent rank makes every rank
//! exit, and the API answer anything but 200). When the ring fails it:
//!
//! 1. stops what is left of it, and starts the whole ring again on the same
//!    hosts (`apply`), with a backoff of 1, 2, 4 ... 30 s between attempts;
//! 2. when a host does not answer SSH for longer than the grace period,
//!    plans the model again without it (same card, same inventory; see
//!    [`replan`]), prints both digests and the difference, and applies the
//!    smaller plan if it fits (else says so and keeps retrying the full
//!    plan);
//! 3. while running a smaller plan, probes the lost hosts every
//!    [`PROBE_EVERY`]; when all answer, waits for a moment with no request
//!    in flight (at most the drain time), stops the smaller plan and applies
//!    the full one again.
//!
//! While no ring serves and the API host answers, a standby listener there
//! answers 503 with `Retry-After` ([`standby`]). Every step is printed with
//! a timestamp and recorded in the state file beside the plan ([`state`]),
//! which `skulk status` shows and `skulk down` reads.
//!
//! Invariants guarded here: at most one supervisor per plan on this machine
//! (the lock in [`state`]); at most one plan of the supervisor's runs at a
//! time (the other is stopped before one is applied); `skulk down` stops
//! the supervisor for good and it brings every plan it ran down with it;
//! Ctrl-C brings the ranks down too unless `--keep-running`.

pub mod replan;
pub mod standby;
pub mod state;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::apply::{self, ApplySettings};
use super::down::{self, DownSettings};
use super::error::ExecError;
use super::fleet::{self, par_map};
use super::health::{self, HEALTH_TIMEOUT};
use super::remote::ConnectSettings;
use super::script::{self, Inspection, StopTarget};
use super::target::{Deployment, RankTarget};
use crate::output;
use crate::plan::PlanDocument;
use replan::Replanner;
use state::{clock, unix_now, Condition, Holder, Running, State};

/// How often the running ring's `/health` is asked.
pub const CHECK_EVERY: Duration = Duration::from_millis(500);

/// Failed health checks in a row that count as a failed ring (one answer
/// lost on a busy host is not a failure).
const FAILED_CHECKS: u32 = 2;

/// Connect timeout of the supervisor's reachability probes: an answering
/// host completes an SSH handshake well within it, even loaded.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// While a smaller plan runs, the lost hosts are probed this often.
pub const PROBE_EVERY: Duration = Duration::from_secs(5);

/// Backoff between restart attempts: the first, and the longest.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What the standby listener tells clients to wait, seconds.
const RETRY_AFTER_SECS: u32 = 5;

/// Seconds between SIGTERM and SIGKILL when the supervisor stops ranks.
const STOP_TIMEOUT_SECS: u64 = 10;

/// How long `skulk down` waits for a supervisor to bring everything down
/// (its stop includes stopping every rank, 10 s each at most, in parallel).
pub const DOWN_WAIT: Duration = Duration::from_secs(60);

/// Everything `apply --watch` takes besides the plan.
#[derive(Clone, Debug)]
pub struct WatchSettings {
    /// For every apply the supervisor makes.
    pub apply: ApplySettings,
    /// The inventory the plan was made from, for re-planning.
    pub inventory: Option<PathBuf>,
    /// How long a host may be unreachable before the plan is made again
    /// without it.
    pub grace: Duration,
    /// Leave the ranks running when the supervisor is interrupted.
    pub keep_running: bool,
    /// Longest wait for requests in flight before moving back to the full
    /// plan.
    pub drain: Duration,
}

/// How a supervisor ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// It was serving the plan it was given when it was stopped.
    Serving,
    /// It was not (degraded, or no ring up).
    NotServing(Condition),
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(sig: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
    // A second Ctrl-C ends the process at once.
    // SAFETY: signal() is async-signal-safe.
    unsafe { libc::signal(sig, libc::SIG_DFL) };
}

fn install_signals() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: installing a handler that only stores an atomic.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

fn stopping() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// `e`'s first line (an `ExecError` lists every host below it).
fn first_line(e: &impl std::fmt::Display) -> String {
    e.to_string().lines().next().unwrap_or("").to_owned()
}

fn short(digest: &str) -> &str {
    &digest[..digest.len().min(16)]
}

fn names(set: &BTreeSet<String>) -> String {
    set.iter()
        .map(|h| format!("`{h}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Applies `desired` (read from `plan_path`) and keeps it up until SIGINT or
/// SIGTERM (or `skulk down`). `out` gets the API endpoint each time it
/// changes.
pub fn watch(
    plan_path: &Path,
    desired: Deployment,
    s: &WatchSettings,
    out: &mut dyn Write,
) -> Result<Ending, ExecError> {
    let state_path = state::state_path(plan_path);
    let lock = state::acquire(&desired.digest, &state_path)
        .map_err(|e| ExecError::runtime(e.to_string(), Vec::new()))?;
    let replanner = match &s.inventory {
        None => None,
        Some(inv) => {
            let doc = PlanDocument::from_json(&String::from_utf8_lossy(&desired.plan_bytes))
                .map_err(|e| ExecError::Invalid(format!("plan `{}`: {e}", plan_path.display())))?;
            Some(
                Replanner::new(&doc, plan_path, inv)
                    .map_err(|e| ExecError::Invalid(e.to_string()))?,
            )
        }
    };
    // A request to stop left by an earlier `down` is not for us.
    let down_request = lock.down_request_path();
    let _ = std::fs::remove_file(&down_request);
    let mut st = match State::load(&state_path) {
        Ok(Some(old)) if old.plan_digest == desired.digest => old,
        _ => State::new(&desired.digest, plan_path),
    };
    st.supervisor = Some(Holder {
        pid: std::process::id(),
        started: unix_now(),
        keep_running: s.keep_running,
    });
    st.condition = Condition::Starting;
    install_signals();
    let mut probe_connect = s.apply.connect.clone();
    probe_connect.connect_timeout = probe_connect.connect_timeout.min(PROBE_TIMEOUT);
    let mut sup = Supervisor {
        s,
        plan_path: plan_path.to_owned(),
        current: desired.clone(),
        desired,
        without: BTreeSet::new(),
        lost: BTreeMap::new(),
        replanner,
        state: st,
        state_path,
        down_request,
        said: BTreeSet::new(),
        standby: None,
        probe_connect,
        endpoint_shown: None,
        out,
    };
    let ending = sup.run();
    drop(lock);
    Ok(ending)
}

/// What every host of the plans said: its runs, or why it did not answer.
struct Survey {
    found: BTreeMap<String, Result<Inspection, String>>,
}

impl Survey {
    /// Whether the rank `r` of `dep` runs (unknown hosts count as running).
    fn alive(&self, dep: &Deployment, r: &RankTarget) -> bool {
        match self.found.get(&r.node) {
            Some(Ok(i)) => i
                .at(&r.address)
                .any(|rec| rec.digest == dep.digest && rec.node == r.node && rec.alive),
            Some(Err(_)) => false,
            None => true,
        }
    }

    /// The failed ring as the hosts show it: ranks gone, hosts silent.
    fn describe(&self, dep: &Deployment, h: &health::Health) -> String {
        let mut parts = Vec::new();
        for r in &dep.ranks {
            match self.found.get(&r.node) {
                Some(Err(e)) => parts.push(format!("`{}` unreachable ({e})", r.node)),
                Some(Ok(_)) if !self.alive(dep, r) => {
                    parts.push(format!("rank {} on `{}` exited", r.rank, r.node))
                }
                _ => {}
            }
        }
        parts.push(format!("API {h}"));
        parts.join(", ")
    }
}

/// A standby listener the supervisor started.
struct Standby {
    dep: Deployment,
    started: Instant,
}

struct Supervisor<'a> {
    s: &'a WatchSettings,
    plan_path: PathBuf,
    desired: Deployment,
    /// The plan the ranks run (or last ran): `desired` or a smaller one.
    current: Deployment,
    /// Hosts of `desired` that `current` runs without.
    without: BTreeSet<String>,
    /// Hosts of `desired` that did not answer, and since when.
    lost: BTreeMap<String, Instant>,
    replanner: Option<Replanner>,
    state: State,
    state_path: PathBuf,
    /// The file whose presence is `skulk down`'s request to stop for good.
    down_request: PathBuf,
    /// Messages already printed in this recovery (not repeated per attempt).
    said: BTreeSet<String>,
    standby: Option<Standby>,
    probe_connect: ConnectSettings,
    endpoint_shown: Option<String>,
    out: &'a mut dyn Write,
}

enum Target {
    /// Every host answers: the plan as given.
    Desired,
    /// Some host is lost past the grace: this smaller plan.
    Smaller(Box<PlanDocument>, BTreeSet<String>),
    /// Nothing to try now.
    Wait,
}

impl Supervisor<'_> {
    /// Records `msg` in the state file, then prints it: whoever reads the
    /// line and asks `skulk status` finds the state it announces.
    fn note(&mut self, msg: impl Into<String>) {
        let msg = msg.into();
        let at = unix_now();
        let line = format!("{} {}", clock(at), msg.replace('\n', "\n         "));
        self.state.push(at, msg);
        self.save();
        output::progress(line);
    }

    /// Prints `msg` once per recovery.
    fn note_once(&mut self, msg: String) {
        if self.said.insert(msg.clone()) {
            self.note(msg);
        }
    }

    fn save(&mut self) {
        if let Err(e) = self.state.save(&self.state_path) {
            output::warn(e);
        }
    }

    /// Sleeps `d`, waking early to stop; false when stopping.
    fn nap(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        while Instant::now() < end {
            if stopping() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50).min(end - Instant::now()));
        }
        !stopping()
    }

    fn run(&mut self) -> Ending {
        let d = &self.desired;
        let msg = format!(
            "supervising plan {} ({} ranks of `{}`); state in `{}`",
            short(&d.digest),
            d.ranks.len(),
            d.model_id,
            self.state_path.display()
        );
        self.note(msg);
        let msg = match &self.replanner {
            Some(rp) => format!(
                "a host unreachable for {} s is planned around, from inventory `{}`",
                self.s.grace.as_secs(),
                rp.inventory_path().display()
            ),
            None => "no `--inventory`: a lost host is waited for, never planned around".to_owned(),
        };
        self.note(msg);
        self.recover(None);
        let mut failed = 0;
        let mut next_probe = Instant::now() + PROBE_EVERY;
        while self.nap(CHECK_EVERY) {
            let (host, port) = self.current.api_target();
            let h = health::check(&host, port, self.s.apply.api_key.as_deref(), HEALTH_TIMEOUT);
            if h.is_ready_for(&self.current.digest) {
                failed = 0;
                if !self.without.is_empty() && Instant::now() >= next_probe {
                    next_probe = Instant::now() + PROBE_EVERY;
                    self.try_move_back();
                }
                continue;
            }
            failed += 1;
            if failed < FAILED_CHECKS {
                continue;
            }
            failed = 0;
            self.recover(Some(h));
        }
        self.shutdown()
    }

    /// Connects to every host of the desired and the current plan and lists
    /// what runs there; updates `lost` (hosts of the desired plan that do
    /// not answer).
    fn survey(&mut self) -> Survey {
        let mut ranks: Vec<RankTarget> = self.desired.ranks.clone();
        for r in &self.current.ranks {
            if !ranks.iter().any(|x| x.node == r.node) {
                ranks.push(r.clone());
            }
        }
        let connect = &self.probe_connect;
        let found = par_map(&ranks, |r| {
            let found = fleet::connect(r, connect)
                .and_then(|host| fleet::inspect(&host))
                .map_err(|e| first_line(&e));
            (r.node.clone(), found)
        });
        let survey = Survey {
            found: found.into_iter().collect(),
        };
        let now = Instant::now();
        let nodes: Vec<String> = self.desired.ranks.iter().map(|r| r.node.clone()).collect();
        for node in nodes {
            match &survey.found[&node] {
                Ok(_) => {
                    if self.lost.remove(&node).is_some() {
                        self.note(format!("host `{node}` answers again"));
                    }
                }
                Err(e) => {
                    if !self.lost.contains_key(&node) {
                        self.lost.insert(node.clone(), now);
                        self.note(format!("host `{node}` unreachable: {e}"));
                    }
                }
            }
        }
        survey
    }

    /// Stops the ranks of `dep` wherever its hosts answer (what is left of a
    /// failed ring: a frozen rank, one still winding down) and its standby
    /// listener; best effort. With a `survey`, only where it found them.
    fn stop_ranks(&mut self, dep: &Deployment, survey: Option<&Survey>) {
        let connect = &self.probe_connect;
        let standby = self
            .standby
            .as_ref()
            .is_some_and(|s| s.dep.digest == dep.digest);
        let failures: Vec<String> = par_map(&dep.ranks, |r| {
            if let Some(sv) = survey {
                if !(sv.alive(dep, r) || (standby && r.rank == 0)) {
                    return None;
                }
            }
            let host = fleet::connect(r, connect).ok()?;
            let layout = r.layout(&dep.digest);
            let stopped = fleet::stop(
                &host,
                &StopTarget::Layout(layout.clone()),
                STOP_TIMEOUT_SECS,
            )
            .and_then(|how| {
                host.perform_checked(&script::clean(&layout, None))?;
                Ok(how)
            });
            match stopped {
                Ok(fleet::Stopped::None) => None,
                Ok(how) => Some(format!("rank {} on `{}` {how}", r.rank, r.node)),
                Err(e) => Some(format!(
                    "cannot stop rank {} on `{}`: {}",
                    r.rank,
                    r.node,
                    first_line(&e)
                )),
            }
        })
        .into_iter()
        .flatten()
        .collect();
        if !failures.is_empty() {
            self.note(format!(
                "plan {}: {}",
                short(&dep.digest),
                failures.join("; ")
            ));
        }
        if self
            .standby
            .as_ref()
            .is_some_and(|s| s.dep.digest == dep.digest)
        {
            // `script::stop` stopped it with rank 0.
            self.standby = None;
        }
    }

    /// Starts the standby listener on the current plan's API host when it
    /// answers and none runs there.
    fn ensure_standby(&mut self) {
        let dep = self.current.clone();
        let r0 = &dep.ranks[0];
        if self.lost.contains_key(&r0.node) {
            return;
        }
        if self.standby.as_ref().is_some_and(|s| {
            s.dep.digest == dep.digest && s.started.elapsed() < standby::LIFETIME / 2
        }) {
            return;
        }
        let layout = r0.layout(&dep.digest);
        let skulk = apply::skulk_for(r0, &self.s.apply.skulk);
        let started = fleet::connect(r0, &self.probe_connect).and_then(|host| {
            host.perform_checked(&script::write_private(
                "copy plan",
                &layout.plan(),
                dep.plan_bytes.clone(),
                format!("the plan document, {} bytes", dep.plan_bytes.len()),
            ))?;
            host.perform_checked(&standby::launch(&layout, &skulk, RETRY_AFTER_SECS))
        });
        let (host, port) = dep.api_target();
        let answers = started.is_ok()
            && (0..40).any(|_| {
                std::thread::sleep(Duration::from_millis(50));
                health::get(&host, port, "/health", None, HEALTH_TIMEOUT)
                    .is_ok_and(|(status, body)| status == 503 && body.contains("restarting"))
            });
        match started {
            Ok(_) if !answers => {
                let _ = fleet::connect(r0, &self.probe_connect)
                    .and_then(|host| host.perform_checked(&standby::stop(&layout)));
                self.note_once(format!(
                    "the standby listener on `{}` did not answer at {} (is the API port taken?); see `{}`",
                    r0.node,
                    dep.endpoint(),
                    layout.file("standby.log")
                ));
            }
            Ok(_) => {
                let first = self.standby.is_none();
                self.standby = Some(Standby {
                    dep: dep.clone(),
                    started: Instant::now(),
                });
                if first {
                    self.note(format!(
                        "standby listener on `{}` answers 503 (Retry-After: {RETRY_AFTER_SECS}) at {} while no ring serves",
                        r0.node,
                        dep.endpoint()
                    ));
                }
            }
            Err(e) => self.note_once(format!(
                "cannot start the standby listener on `{}`: {}",
                r0.node,
                first_line(&e)
            )),
        }
    }

    fn stop_standby(&mut self) {
        let Some(sb) = self.standby.take() else {
            return;
        };
        let r0 = &sb.dep.ranks[0];
        let layout = r0.layout(&sb.dep.digest);
        let stopped = fleet::connect(r0, &self.probe_connect)
            .and_then(|host| host.perform_checked(&standby::stop(&layout)));
        if let Err(e) = stopped {
            self.note(format!(
                "cannot stop the standby listener on `{}`: {}",
                r0.node,
                first_line(&e)
            ));
        }
    }

    /// Applies `dep`; the first line of the error when it fails.
    fn apply(&mut self, dep: &Deployment) -> Result<(), String> {
        self.stop_standby();
        let mut sink = Vec::new();
        apply::apply(dep, &self.s.apply, &mut sink)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// What to try now, given the lost hosts.
    fn target(&mut self) -> Target {
        if self.lost.is_empty() {
            return Target::Desired;
        }
        let lost: BTreeSet<String> = self.lost.keys().cloned().collect();
        let longest = self
            .lost
            .values()
            .map(Instant::elapsed)
            .max()
            .unwrap_or_default();
        if longest < self.s.grace {
            let left = self.s.grace - longest;
            self.note_once(format!(
                "waiting up to {} s for {} before planning without {}",
                left.as_secs_f64().ceil(),
                names(&lost),
                if lost.len() == 1 { "it" } else { "them" }
            ));
            return Target::Wait;
        }
        let Some(rp) = &self.replanner else {
            self.note_once(format!(
                "{} lost for {} s, but without `--inventory` no smaller plan can be made; retrying the plan",
                names(&lost),
                self.s.grace.as_secs()
            ));
            return Target::Wait;
        };
        match rp.without(&lost) {
            Ok(doc) => Target::Smaller(Box::new(doc), lost),
            Err(e) => {
                self.note_once(format!(
                    "the model no longer fits without {}; retrying the full plan\n{}",
                    names(&lost),
                    e.to_string().trim_end()
                ));
                Target::Wait
            }
        }
    }

    /// Brings a ring back: the full plan when every host answers, a smaller
    /// one when hosts are lost past the grace, with backoff; returns once a
    /// ring serves, or when stopping. `failed`: what `/health` said of the
    /// ring that failed (`None` when starting).
    fn recover(&mut self, failed: Option<health::Health>) {
        let began = Instant::now();
        self.said.clear();
        let mut backoff = FIRST_BACKOFF;
        let mut cleaned = false;
        let mut failed = failed;
        loop {
            if stopping() {
                return;
            }
            let survey = self.survey();
            if let Some(h) = failed.take() {
                let why = survey.describe(&self.current, &h);
                let msg = format!("ring of plan {} failed: {why}", short(&self.current.digest));
                self.note(msg);
                self.state.condition = Condition::Recovering;
                self.state.running = None;
                self.save();
            }
            match self.target() {
                Target::Desired => {
                    let desired = self.desired.clone();
                    if self.current.digest != desired.digest {
                        let old = self.current.clone();
                        self.stop_ranks(&old, Some(&survey));
                    }
                    // `apply` itself restarts a partly running ring.
                    match self.apply(&desired) {
                        Ok(()) => {
                            let path = self.plan_path.clone();
                            self.serving(desired, path, BTreeSet::new(), began);
                            return;
                        }
                        Err(e) => {
                            let msg = format!(
                                "starting plan {} failed: {e}",
                                short(&self.desired.digest)
                            );
                            self.note(msg);
                        }
                    }
                }
                Target::Smaller(doc, lost) => {
                    if let Some(()) = self.try_smaller(*doc, lost, began, &survey) {
                        return;
                    }
                }
                Target::Wait => {
                    if !cleaned {
                        // What is left of the failed ring goes, so that the
                        // standby can take the API port.
                        let current = self.current.clone();
                        self.stop_ranks(&current, Some(&survey));
                        cleaned = true;
                    }
                }
            }
            self.ensure_standby();
            // Never sleep past the moment a lost host's grace ends.
            let until_grace = self
                .lost
                .values()
                .map(|t| self.s.grace.saturating_sub(t.elapsed()))
                .filter(|d| !d.is_zero())
                .min();
            let wait = until_grace.map_or(backoff, |g| backoff.min(g));
            if !self.nap(wait) {
                return;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Writes and applies the smaller plan `doc`; `Some` once it serves.
    fn try_smaller(
        &mut self,
        doc: PlanDocument,
        lost: BTreeSet<String>,
        began: Instant,
        survey: &Survey,
    ) -> Option<()> {
        let path = state::degraded_path(&self.plan_path);
        let text = doc.to_json();
        if self.current.digest != doc.skulk.plan_digest {
            let desired_doc =
                PlanDocument::from_json(&String::from_utf8_lossy(&self.desired.plan_bytes)).ok()?;
            let diff = replan::difference(&desired_doc, &doc);
            let msg =
                format!(
                "planned without {}: plan {} ({} ranks, `{}`) instead of plan {} ({} ranks):\n{}",
                names(&lost),
                short(&doc.skulk.plan_digest),
                doc.rank_specs().map(|s| s.len()).unwrap_or(0),
                path.display(),
                short(&self.desired.digest),
                self.desired.ranks.len(),
                diff.iter().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
            );
            self.note_once(msg);
        }
        if let Err(e) = std::fs::write(&path, &text) {
            self.note_once(format!("cannot write `{}`: {e}", path.display()));
            return None;
        }
        let dep = match Deployment::from_plan_json(&path, text.into_bytes()) {
            Ok(d) => d,
            Err(e) => {
                self.note_once(format!(
                    "the smaller plan is not runnable: {}",
                    first_line(&e)
                ));
                return None;
            }
        };
        for old in [self.current.clone(), self.desired.clone()] {
            if old.digest != dep.digest {
                self.stop_ranks(&old, Some(survey));
            }
        }
        match self.apply(&dep) {
            Ok(()) => {
                self.serving(dep, path, lost, began);
                Some(())
            }
            Err(e) => {
                self.note(format!("starting plan {} failed: {e}", short(&dep.digest)));
                self.current = dep;
                None
            }
        }
    }

    /// `dep` (from `path`) serves now.
    fn serving(
        &mut self,
        dep: Deployment,
        path: PathBuf,
        without: BTreeSet<String>,
        began: Instant,
    ) {
        let first = self.state.condition == Condition::Starting;
        let endpoint = dep.endpoint();
        let took = began.elapsed().as_secs_f64();
        let msg = if without.is_empty() {
            if first {
                format!(
                    "serving plan {}: API at {endpoint} (ready in {took:.1} s)",
                    short(&dep.digest)
                )
            } else {
                format!(
                    "serving plan {} again after {took:.1} s: API at {endpoint}",
                    short(&dep.digest)
                )
            }
        } else {
            let api = if endpoint == self.desired.endpoint() {
                format!("API at {endpoint}")
            } else {
                format!("API moved to {endpoint}")
            };
            format!(
                "degraded: serving plan {} without {} after {took:.1} s; {api}",
                short(&dep.digest),
                names(&without)
            )
        };
        self.state.condition = if without.is_empty() {
            Condition::Serving
        } else {
            Condition::Degraded
        };
        self.state.running = Some(Running {
            plan_digest: dep.digest.clone(),
            plan_path: path.display().to_string(),
            without: without.iter().cloned().collect(),
            since: unix_now(),
            endpoint: endpoint.clone(),
        });
        self.current = dep;
        self.without = without;
        self.note(msg);
        if self.endpoint_shown.as_deref() != Some(endpoint.as_str()) {
            let _ = writeln!(self.out, "{endpoint}");
            let _ = self.out.flush();
            self.endpoint_shown = Some(endpoint);
        }
    }

    /// Requests in flight at the current API (`None`: it did not say).
    fn in_flight(&self) -> Option<u64> {
        let (host, port) = self.current.api_target();
        let (status, body) = health::get(
            &host,
            port,
            "/health",
            self.s.apply.api_key.as_deref(),
            HEALTH_TIMEOUT,
        )
        .ok()?;
        if status != 200 {
            return None;
        }
        serde_json::from_str::<serde_json::Value>(&body).ok()?["inFlight"].as_u64()
    }

    /// While degraded: when every lost host answers, move back to the full
    /// plan at a quiet moment.
    fn try_move_back(&mut self) {
        let (connect, without) = (&self.probe_connect, &self.without);
        let back: Vec<bool> = par_map(&self.desired.ranks, |r| {
            !without.contains(&r.node) || fleet::connect(r, connect).is_ok()
        });
        if back.iter().any(|ok| !ok) {
            return;
        }
        let hosts = names(&self.without);
        self.note(format!(
            "{hosts} answer again; moving back to plan {} once no request is in flight (at most {} s)",
            short(&self.desired.digest),
            self.s.drain.as_secs()
        ));
        let began = Instant::now();
        let end = began + self.s.drain;
        loop {
            match self.in_flight() {
                Some(0) | None => break,
                Some(n) if Instant::now() >= end => {
                    self.note(format!(
                        "{n} request(s) still in flight after {} s; moving on",
                        self.s.drain.as_secs()
                    ));
                    break;
                }
                Some(_) => {
                    if !self.nap(Duration::from_millis(200)) {
                        return;
                    }
                }
            }
        }
        let smaller = self.current.clone();
        let smaller_path = PathBuf::from(
            self.state
                .running
                .as_ref()
                .map(|r| r.plan_path.clone())
                .unwrap_or_default(),
        );
        let without = self.without.clone();
        self.stop_ranks(&smaller, None);
        self.lost.clear();
        let desired = self.desired.clone();
        match self.apply(&desired) {
            Ok(()) => {
                let path = self.plan_path.clone();
                self.serving(desired, path, BTreeSet::new(), began);
                let _ = std::fs::remove_file(state::degraded_path(&self.plan_path));
            }
            Err(e) => {
                self.note(format!(
                    "moving back to plan {} failed: {e}; running plan {} again",
                    short(&self.desired.digest),
                    short(&smaller.digest)
                ));
                let desired = self.desired.clone();
                self.stop_ranks(&desired, None);
                for h in &without {
                    self.lost.insert(h.clone(), Instant::now() - self.s.grace);
                }
                match self.apply(&smaller) {
                    Ok(()) => self.serving(smaller, smaller_path, without, began),
                    Err(e) => {
                        self.note(format!(
                            "starting plan {} failed: {e}",
                            short(&smaller.digest)
                        ));
                        self.current = smaller;
                        self.recover(Some(health::Health::Unreachable {
                            error: "the smaller plan did not start".into(),
                        }));
                    }
                }
            }
        }
    }

    /// Stops (unless `--keep-running` and no `down` asked) and records it.
    fn shutdown(&mut self) -> Ending {
        let ending = match self.state.condition {
            Condition::Serving => Ending::Serving,
            c => Ending::NotServing(c),
        };
        let down_asked = self.down_request.exists();
        if self.s.keep_running && !down_asked {
            self.note("stopping; the ranks keep running (`--keep-running`)");
        } else {
            let why = if down_asked {
                "`skulk down`"
            } else {
                "interrupted"
            };
            self.note(format!(
                "{why}: bringing plan {} down",
                short(&self.current.digest)
            ));
            let settings = DownSettings {
                connect: self.probe_connect.clone(),
                purge: false,
                timeout: Duration::from_secs(STOP_TIMEOUT_SECS),
                others: down::Others::Keep,
                plan_path: self.plan_path.display().to_string(),
            };
            let mut plans = vec![self.current.clone()];
            if self.current.digest != self.desired.digest {
                plans.push(self.desired.clone());
            }
            for dep in plans {
                if let Err(e) = down::down(&dep, &settings) {
                    // A lost host cannot be reached; everything else is down.
                    self.note(format!("{e}"));
                }
            }
            self.standby = None;
            self.state.running = None;
        }
        self.state.condition = Condition::Stopped;
        self.state.supervisor = None;
        self.save();
        ending
    }
}

/// What `skulk status PLAN` should report on: the supervisor's record (if
/// one supervises or supervised this plan) and, when it runs a smaller plan,
/// that plan.
pub fn status_view(
    plan_path: &Path,
    desired: &Deployment,
) -> Result<(Option<State>, Option<Deployment>), ExecError> {
    let Some(st) = find_state(plan_path, desired)? else {
        return Ok((None, None));
    };
    let running = match &st.running {
        Some(r) if r.plan_digest != desired.digest => {
            let path = PathBuf::from(&r.plan_path);
            let bytes = std::fs::read(&path).map_err(|e| {
                ExecError::Invalid(format!("cannot read plan `{}`: {e}", path.display()))
            })?;
            let dep = Deployment::from_plan_json(&path, bytes)?;
            (dep.digest == r.plan_digest).then_some(dep)
        }
        _ => None,
    };
    Ok((Some(st), running))
}

/// The state file of this plan: beside the plan, else where the running
/// supervisor of its digest says.
fn find_state(plan_path: &Path, desired: &Deployment) -> Result<Option<State>, ExecError> {
    let mut paths = vec![state::state_path(plan_path)];
    if let Some(p) = state::holder(&desired.digest).and_then(|h| h.state) {
        paths.push(p);
    }
    for p in paths {
        match State::load(&p) {
            Ok(Some(st)) if st.plan_digest == desired.digest => return Ok(Some(st)),
            Ok(_) => {}
            Err(e) => return Err(ExecError::Invalid(e.to_string())),
        }
    }
    Ok(None)
}

/// For `skulk down`: stops the plan's supervisor for good (it brings its
/// plans down), and returns the other plans it ran that `down` must also
/// bring down (a smaller plan left by a supervisor that died).
pub fn before_down(plan_path: &Path, desired: &Deployment) -> Result<Vec<Deployment>, ExecError> {
    if let Some(info) = state::stop_holder(&desired.digest, DOWN_WAIT).map_err(|e| {
        ExecError::runtime(
            format!(
                "cannot stop the supervisor of plan {}: {e}",
                short(&desired.digest)
            ),
            Vec::new(),
        )
    })? {
        output::progress(format!(
            "stopped the supervisor of plan {} (pid {})",
            short(&desired.digest),
            info.pid.map_or("?".into(), |p| p.to_string())
        ));
    }
    let (_, running) = status_view(plan_path, desired)?;
    Ok(running.into_iter().collect())
}

/// For `skulk down`: records in the state file (if any) that the plan was
/// brought down.
pub fn after_down(plan_path: &Path, desired: &Deployment) {
    if let Ok(Some(mut st)) = find_state(plan_path, desired) {
        if st.supervisor.is_none() {
            st.condition = Condition::Stopped;
            st.running = None;
            st.push(unix_now(), "brought down by `skulk down`".into());
            let _ = st.save(&state::state_path(plan_path));
        }
    }
}
