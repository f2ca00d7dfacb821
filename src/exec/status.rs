//! `skulk status`: the state of every rank of a plan, read from the state
//! records `apply` leaves on the hosts and from rank 0's `/health`. It
//! changes nothing. Healthy means: every rank's process is running and the
//! API answers `/health` with 200.

use serde::Serialize;

use super::fleet::{self, par_map};
use super::health::{self, Health, HEALTH_TIMEOUT};
use super::remote::ConnectSettings;
use super::target::{Deployment, RankTarget};

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    pub plan_digest: String,
    pub model_id: String,
    pub endpoint: String,
    pub health: Health,
    pub ranks: Vec<RankStatus>,
    /// The plan's supervisor (`apply --watch`), when one runs or ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supervisor: Option<super::supervise::state::Summary>,
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
    /// A ring neighbour this rank finds slow (silent for longer than usual,
    /// not yet declared lost).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slow_neighbour: Option<String>,
    /// Why the host could not be asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
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

impl StatusReport {
    pub fn healthy(&self) -> bool {
        self.health.is_ready() && self.ranks.iter().all(|r| r.state == RankState::Running)
    }
}

pub fn status(dep: &Deployment, connect: &ConnectSettings, api_key: Option<&str>) -> StatusReport {
    let (api_host, api_port) = dep.api_target();
    let (ranks, health) = std::thread::scope(|scope| {
        let health = scope.spawn(|| health::check(&api_host, api_port, api_key, HEALTH_TIMEOUT));
        let ranks = par_map(&dep.ranks, |r| rank_status(dep, r, connect));
        (ranks, health.join().expect("health check panicked"))
    });
    StatusReport {
        plan_digest: dep.digest.clone(),
        model_id: dep.model_id.clone(),
        endpoint: dep.endpoint(),
        health,
        ranks,
        supervisor: None,
    }
}

fn rank_status(dep: &Deployment, r: &RankTarget, connect: &ConnectSettings) -> RankStatus {
    let mut st = RankStatus {
        rank: r.rank,
        node: r.node.clone(),
        address: r.address.clone(),
        state: RankState::Unreachable,
        pid: None,
        layers: [r.start_layer, r.end_layer],
        uptime_seconds: None,
        slow_neighbour: None,
        error: None,
    };
    let found = fleet::connect(r, connect).and_then(|h| fleet::inspect(&h));
    match found {
        Err(e) => st.error = Some(e.to_string()),
        Ok(i) => {
            let rec = i
                .at(&r.address)
                .find(|rec| rec.digest == dep.digest && rec.node == r.node);
            match rec {
                None => st.state = RankState::Absent,
                Some(rec) => {
                    st.pid = rec.pid;
                    if rec.alive {
                        st.state = RankState::Running;
                        st.slow_neighbour = rec.slow.clone();
                        st.uptime_seconds = match (i.now, rec.started) {
                            (Some(now), Some(t)) => Some(now.saturating_sub(t)),
                            _ => None,
                        };
                    } else {
                        st.state = RankState::Exited;
                    }
                }
            }
        }
    }
    st
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

/// The report as a table, then the API line.
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
    let mut s = format!(
        "plan {} ({})\n{t}\nAPI {}: {}\n",
        &report.plan_digest[..report.plan_digest.len().min(16)],
        report.model_id,
        report.endpoint,
        report.health
    );
    if let Some(sup) = &report.supervisor {
        s.push_str(&sup.render());
    }
    for r in &report.ranks {
        if let Some(slow) = &r.slow_neighbour {
            s.push_str(&format!(
                "rank {} on `{}` finds {slow}; slow, not lost\n",
                r.rank, r.node
            ));
        }
    }
    for r in &report.ranks {
        if let Some(e) = &r.error {
            s.push_str(&format!(
                "rank {} on `{}`: {}\n",
                r.rank,
                r.node,
                e.lines().next().unwrap_or("")
            ));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(5), "5s");
        assert_eq!(duration(65), "1m05s");
        assert_eq!(duration(3723), "1h02m03s");
    }

    #[test]
    fn healthy_needs_every_rank_running_and_the_api_ready() {
        let rank = |state| RankStatus {
            rank: 0,
            node: "h1".into(),
            address: "10.0.0.1".into(),
            state,
            pid: Some(1),
            layers: [0, 30],
            uptime_seconds: Some(3),
            slow_neighbour: None,
            error: None,
        };
        let mut r = StatusReport {
            plan_digest: "ab".repeat(32),
            model_id: "org/m".into(),
            endpoint: "http://10.0.0.1:52415/v1".into(),
            health: Health::Ready,
            ranks: vec![rank(RankState::Running)],
            supervisor: None,
        };
        assert!(r.healthy());
        let table = render_table(&r);
        assert!(
            table.contains("running")
                && table.contains("[0, 30)")
                && table.contains("API http://10.0.0.1:52415/v1: ready"),
            "{table}"
        );
        r.ranks.push(rank(RankState::Exited));
        assert!(!r.healthy());
        r.ranks.pop();
        r.health = Health::NotReady {
            status: 503,
            body: String::new(),
        };
        assert!(!r.healthy());
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["ranks"][0]["state"], "running");
        assert_eq!(json["health"]["state"], "notReady");
    }
}
