//! `skulk status`: the state of every rank of a plan, read from the state
//! records `apply` leaves on the hosts and from rank 0's `/health`. It
//! changes nothing. Healthy means: every rank's process is running and this
//! plan's API answers `/health` with 200.
//!
//! When it is not healthy, the report says why where it can: the error line
//! an exited rank left in its log, a ring of another plan holding the hosts
//! (its digest, model and age), an API that answers for another plan; and
//! [`next_steps`] says what to run next.

use serde::Serialize;

use super::fleet::{self, par_map};
use super::health::{self, Health, HEALTH_TIMEOUT};
use super::remote::ConnectSettings;
use super::script::{self, Inspection};
use super::target::{Deployment, RankTarget};

/// Lines of an exited rank's log searched for its last error.
const REASON_LINES: u32 = 50;

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    pub plan_digest: String,
    pub model_id: String,
    pub endpoint: String,
    pub health: Health,
    pub ranks: Vec<RankStatus>,
    /// Live runs of other plans on this plan's hosts.
    pub other_runs: Vec<OtherRun>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RankStatus {
    pub rank: u32,
    pub node: String,
    pub address: String,
    pub state: RankState,
    pub pid: Option<u32>,
    /// `[start, end)`.
    pub layers: [u32; 2],
    pub uptime_seconds: Option<u64>,
    /// Why the host could not be asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why an exited rank stopped: the last error line of its log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A live rank of another plan found on one of this plan's hosts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OtherRun {
    /// This plan's node whose host holds it.
    pub node: String,
    pub plan_digest: String,
    /// Its model (absent in records of older skulk versions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rank: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uptime_seconds: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RankState {
    /// The rank's process is alive.
    Running,
    /// `apply` started it; the process is gone.
    Exited,
    /// No record of this plan on the host (never applied, or `down`).
    Absent,
    /// The host could not be reached.
    Unreachable,
}

impl RankState {
    fn as_str(self) -> &'static str {
        match self {
            RankState::Running => "running",
            RankState::Exited => "exited",
            RankState::Absent => "absent",
            RankState::Unreachable => "unreachable",
        }
    }
}

/// What the report means for the exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every rank running, this plan's API ready.
    Healthy,
    /// Every host answered, and the plan is not (fully) running.
    NotRunning,
    /// A host could not be asked.
    Unknown,
}

impl StatusReport {
    pub fn healthy(&self) -> bool {
        self.verdict() == Verdict::Healthy
    }

    pub fn verdict(&self) -> Verdict {
        if self.ranks.iter().any(|r| r.state == RankState::Unreachable) {
            Verdict::Unknown
        } else if self.api_is_ours() && self.ranks.iter().all(|r| r.state == RankState::Running) {
            Verdict::Healthy
        } else {
            Verdict::NotRunning
        }
    }

    /// The API answers, and for this plan (an older skulk does not say
    /// which plan it serves: then it is taken as this plan's).
    fn api_is_ours(&self) -> bool {
        self.health.is_ready_for(&self.plan_digest)
    }

    /// The digest of another plan whose API answers at this plan's endpoint.
    fn foreign_api(&self) -> Option<&str> {
        match &self.health {
            Health::Ready(load) => load
                .plan_digest
                .as_deref()
                .filter(|d| *d != self.plan_digest),
            _ => None,
        }
    }
}

pub fn status(dep: &Deployment, connect: &ConnectSettings, api_key: Option<&str>) -> StatusReport {
    let (api_host, api_port) = dep.api_target();
    let (found, health) = std::thread::scope(|scope| {
        let health = scope.spawn(|| health::check(&api_host, api_port, api_key, HEALTH_TIMEOUT));
        let found = par_map(&dep.ranks, |r| rank_status(dep, r, connect));
        (found, health.join().expect("health check panicked"))
    });
    let mut ranks = Vec::new();
    let mut other_runs: Vec<OtherRun> = Vec::new();
    for (status, others) in found {
        ranks.push(status);
        for o in others {
            // Several of this plan's nodes may share one machine's records.
            if !other_runs
                .iter()
                .any(|x| x.plan_digest == o.plan_digest && x.rank == o.rank && x.pid == o.pid)
            {
                other_runs.push(o);
            }
        }
    }
    StatusReport {
        plan_digest: dep.digest.clone(),
        model_id: dep.model_id.clone(),
        endpoint: dep.endpoint(),
        health,
        ranks,
        other_runs,
    }
}

fn rank_status(
    dep: &Deployment,
    r: &RankTarget,
    connect: &ConnectSettings,
) -> (RankStatus, Vec<OtherRun>) {
    let mut st = RankStatus {
        rank: r.rank,
        node: r.node.clone(),
        address: r.address.clone(),
        state: RankState::Unreachable,
        pid: None,
        layers: [r.start_layer, r.end_layer],
        uptime_seconds: None,
        error: None,
        reason: None,
    };
    let host = match fleet::connect(r, connect) {
        Ok(h) => h,
        Err(e) => {
            st.error = Some(e.to_string());
            return (st, Vec::new());
        }
    };
    let i = match fleet::inspect(&host) {
        Ok(i) => i,
        Err(e) => {
            st.error = Some(e.to_string());
            return (st, Vec::new());
        }
    };
    let others = other_runs(&i, dep, r);
    let rec = i
        .at(&r.address)
        .find(|rec| rec.digest == dep.digest && rec.node == r.node);
    match rec {
        None => st.state = RankState::Absent,
        Some(rec) => {
            st.pid = rec.pid;
            if rec.alive {
                st.state = RankState::Running;
                st.uptime_seconds = age(&i, rec.started);
            } else {
                st.state = RankState::Exited;
                st.reason = Some(
                    host.perform_checked(&script::tail(&r.layout(&dep.digest), REASON_LINES))
                        .map(|o| exit_reason(&o.stdout_str()))
                        .unwrap_or_else(|e| format!("cannot read its log: {e}")),
                );
            }
        }
    }
    (st, others)
}

fn age(i: &Inspection, started: Option<u64>) -> Option<u64> {
    match (i.now, started) {
        (Some(now), Some(t)) => Some(now.saturating_sub(t)),
        _ => None,
    }
}

/// Live runs of other plans recorded for rank `r`'s address.
fn other_runs(i: &Inspection, dep: &Deployment, r: &RankTarget) -> Vec<OtherRun> {
    i.others_at(&r.address, &dep.digest)
        .filter(|rec| rec.alive)
        .map(|rec| OtherRun {
            node: r.node.clone(),
            plan_digest: rec.digest.clone(),
            model_id: rec.model.clone(),
            rank: rec.rank,
            pid: rec.pid,
            uptime_seconds: age(i, rec.started),
        })
        .collect()
}

/// Why a rank stopped, from the end of its log: its last `error:` line
/// (without the timestamp), else that it left none.
pub fn exit_reason(log_tail: &str) -> String {
    log_tail
        .lines()
        .rev()
        .find_map(|l| l.split_once("error: ").map(|(_, m)| m.trim().to_owned()))
        .unwrap_or_else(|| "it left no error in its log (killed, or out of memory?)".to_owned())
}

/// `1h02m03s`.
pub fn duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s:02}s"),
        _ => format!("{h}h{m:02}m{s:02}s"),
    }
}

fn short(digest: &str) -> &str {
    &digest[..digest.len().min(16)]
}

/// The report as a table, then the API line and what explains the states.
pub fn render_table(report: &StatusReport) -> String {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::NOTHING);
    t.set_header([
        "RANK", "HOST", "ADDRESS", "STATE", "PID", "LAYERS", "UPTIME",
    ]);
    for r in &report.ranks {
        t.add_row([
            r.rank.to_string(),
            r.node.clone(),
            r.address.clone(),
            r.state.as_str().to_owned(),
            r.pid.map_or("-".into(), |p| p.to_string()),
            format!("[{}, {})", r.layers[0], r.layers[1]),
            r.uptime_seconds.map_or("-".into(), duration),
        ]);
    }
    let api = match report.foreign_api() {
        Some(d) => format!("answers for plan `{}`, not this one", short(d)),
        None => report.health.to_string(),
    };
    let mut s = format!(
        "plan {} ({})\n{t}\nAPI {}: {api}\n",
        short(&report.plan_digest),
        report.model_id,
        report.endpoint,
    );
    for r in &report.ranks {
        if let Some(e) = &r.error {
            s.push_str(&format!(
                "rank {} on `{}`: {}\n",
                r.rank,
                r.node,
                e.lines().next().unwrap_or("")
            ));
        }
        if let Some(why) = &r.reason {
            s.push_str(&format!("rank {} on `{}` exited: {why}\n", r.rank, r.node));
        }
    }
    for o in &report.other_runs {
        s.push_str(&format!(
            "`{}` runs {} of another plan `{}`{}{}\n",
            o.node,
            o.rank.map_or("a rank".to_owned(), |r| format!("rank {r}")),
            short(&o.plan_digest),
            o.model_id
                .as_deref()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default(),
            o.uptime_seconds
                .map(|u| format!(", started {} ago", duration(u)))
                .unwrap_or_default(),
        ));
    }
    s
}

/// What to run next when the plan is not healthy (`plan` is the plan
/// file as the user named it); empty when it is.
pub fn next_steps(report: &StatusReport, plan: &str) -> Vec<String> {
    let mut steps = Vec::new();
    if report.healthy() {
        return steps;
    }
    let mut other: Vec<&str> = report
        .other_runs
        .iter()
        .map(|o| o.plan_digest.as_str())
        .chain(report.foreign_api())
        .collect();
    other.sort_unstable();
    other.dedup();
    let states = |s: RankState| report.ranks.iter().filter(|r| r.state == s).count();
    if !other.is_empty() {
        let which = other
            .iter()
            .map(|d| format!("`{}`", short(d)))
            .collect::<Vec<_>>()
            .join(", ");
        steps.push(format!(
            "another plan ({which}) holds these hosts, perhaps an earlier plan written to the same file: `skulk down {plan} --digest {}` stops it (`--any` stops every other plan there), then `skulk apply {plan}` starts this one",
            short(other[0])
        ));
    }
    if states(RankState::Unreachable) > 0 {
        steps.push(
            "check that the unreachable hosts are up and that SSH reaches them (the error above says how it failed)".to_owned(),
        );
    }
    let exited: Vec<&RankStatus> = report
        .ranks
        .iter()
        .filter(|r| r.state == RankState::Exited)
        .collect();
    if let Some(first) = exited
        .iter()
        .find(|r| {
            r.reason
                .as_deref()
                .is_some_and(|w| w.starts_with("it left no error"))
        })
        .or(exited.first())
    {
        steps.push(format!(
            "`skulk logs {plan} --node {}` shows why rank {} stopped; `skulk apply {plan}` starts the ring again",
            first.node, first.rank
        ));
    } else if other.is_empty() && states(RankState::Absent) == report.ranks.len() {
        steps.push(format!(
            "the plan is not running: `skulk apply {plan}` starts it"
        ));
    } else if other.is_empty() && states(RankState::Absent) > 0 {
        steps.push(format!(
            "the plan runs on only some hosts: `skulk apply {plan}` starts the whole ring again"
        ));
    } else if states(RankState::Running) == report.ranks.len() && !report.api_is_ours() {
        steps.push(format!(
            "every rank runs but the API is not ready: the ring may still be forming or loading the model; run `skulk status {plan}` again, or read `skulk logs {plan}`"
        ));
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::health::Load;

    fn rank(i: u32, state: RankState) -> RankStatus {
        RankStatus {
            rank: i,
            node: format!("h{}", i + 1),
            address: format!("10.0.0.{}", i + 1),
            state,
            pid: Some(1),
            layers: [0, 30],
            uptime_seconds: Some(3),
            error: None,
            reason: None,
        }
    }

    fn report(ranks: Vec<RankStatus>, health: Health) -> StatusReport {
        StatusReport {
            plan_digest: "ab".repeat(32),
            model_id: "org/m".into(),
            endpoint: "http://10.0.0.1:52415/v1".into(),
            health,
            ranks,
            other_runs: Vec::new(),
        }
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(5), "5s");
        assert_eq!(duration(65), "1m05s");
        assert_eq!(duration(3723), "1h02m03s");
    }

    #[test]
    fn healthy_needs_every_rank_running_and_the_api_ready() {
        let ready = Health::Ready(Load::default());
        let mut r = report(vec![rank(0, RankState::Running)], ready.clone());
        assert!(r.healthy());
        assert!(next_steps(&r, "p.json").is_empty());
        let table = render_table(&r);
        assert!(
            table.contains("running")
                && table.contains("[0, 30)")
                && table.contains("API http://10.0.0.1:52415/v1: ready, idle"),
            "{table}"
        );
        r.ranks.push(rank(1, RankState::Exited));
        assert_eq!(r.verdict(), Verdict::NotRunning);
        r.ranks.pop();
        r.health = Health::NotReady {
            status: 503,
            body: String::new(),
        };
        assert_eq!(r.verdict(), Verdict::NotRunning);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["ranks"][0]["state"], "running");
        assert_eq!(json["health"]["state"], "notReady");
        r.ranks.push(rank(1, RankState::Unreachable));
        assert_eq!(r.verdict(), Verdict::Unknown);
    }

    #[test]
    fn a_stopped_plan_points_at_apply() {
        let r = report(
            vec![rank(0, RankState::Absent), rank(1, RankState::Absent)],
            Health::Unreachable {
                error: "connection refused".into(),
            },
        );
        assert_eq!(
            next_steps(&r, "plan.json"),
            ["the plan is not running: `skulk apply plan.json` starts it"]
        );
    }

    #[test]
    fn an_exited_rank_says_why_and_points_at_its_log() {
        let mut dead = rank(1, RankState::Exited);
        dead.reason = Some(exit_reason("=== start\nloading\n"));
        let mut lost = rank(0, RankState::Exited);
        lost.reason = Some(exit_reason(
            "2025-01-01T00:00:00.000Z skulk rank 0: up\n2025-01-01T00:00:09.000Z error: rank 0: lost rank 1 at `10.0.0.2:5000`: connection closed\n",
        ));
        assert_eq!(
            lost.reason.as_deref(),
            Some("rank 0: lost rank 1 at `10.0.0.2:5000`: connection closed")
        );
        let r = report(
            vec![lost, dead],
            Health::Unreachable {
                error: "refused".into(),
            },
        );
        let table = render_table(&r);
        assert!(
            table.contains("rank 1 on `h2` exited: it left no error in its log"),
            "{table}"
        );
        assert_eq!(
            next_steps(&r, "p.json"),
            ["`skulk logs p.json --node h2` shows why rank 1 stopped; `skulk apply p.json` starts the ring again"]
        );
    }

    #[test]
    fn another_plans_ring_is_named_with_the_way_to_stop_it() {
        let other = "cd".repeat(32);
        let mut r = report(
            vec![rank(0, RankState::Absent), rank(1, RankState::Absent)],
            Health::Ready(Load {
                plan_digest: Some(other.clone()),
                ..Load::default()
            }),
        );
        r.other_runs.push(OtherRun {
            node: "h1".into(),
            plan_digest: other.clone(),
            model_id: Some("org/old".into()),
            rank: Some(0),
            pid: Some(42),
            uptime_seconds: Some(90),
        });
        assert_eq!(r.verdict(), Verdict::NotRunning);
        let table = render_table(&r);
        assert!(
            table.contains(
                "API http://10.0.0.1:52415/v1: answers for plan `cdcdcdcdcdcdcdcd`, not this one"
            ),
            "{table}"
        );
        assert!(
            table.contains(
                "`h1` runs rank 0 of another plan `cdcdcdcdcdcdcdcd` (org/old), started 1m30s ago"
            ),
            "{table}"
        );
        let steps = next_steps(&r, "p.json");
        assert_eq!(steps.len(), 1, "{steps:?}");
        assert!(
            steps[0].contains("`skulk down p.json --digest cdcdcdcdcdcdcdcd` stops it"),
            "{steps:?}"
        );
    }
}
