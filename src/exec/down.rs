//! `skulk down`: stop every rank of a plan and remove what `apply` left on
//! the hosts except the logs (and, unless `--purge`, the shard cache). It
//! then checks that nothing listens on the plan's ports any more. Safe to
//! run twice: a host with nothing of the plan is already down.

use std::time::Duration;

use super::error::{all_or_failures, on_host, transport, ExecError};
use super::fleet::{self, par_map, Stopped};
use super::remote::ConnectSettings;
use super::script::{self, parse_listeners, port_busy, Report, StopTarget};
use super::target::{Deployment, RankTarget};

#[derive(Clone, Debug)]
pub struct DownSettings {
    pub connect: ConnectSettings,
    pub purge: bool,
    /// Grace period between SIGTERM and SIGKILL.
    pub timeout: Duration,
}

/// Stops and cleans up every host; lists every host where that failed.
pub fn down(dep: &Deployment, s: &DownSettings) -> Result<(), ExecError> {
    let results = par_map(&dep.ranks, |r| down_one(dep, r, s));
    all_or_failures(results, String::clone, |failed, total| {
        format!("`down` failed on {failed} of {total} hosts")
    })?;
    Ok(())
}

fn down_one(dep: &Deployment, r: &RankTarget, s: &DownSettings) -> Result<(), String> {
    let host = fleet::connect(r, &s.connect).map_err(|e| transport(&e))?;
    let layout = r.layout(&dep.digest);
    let how = fleet::stop(
        &host,
        &StopTarget::Layout(layout.clone()),
        s.timeout.as_secs(),
    )
    .map_err(|e| on_host(r, format!("cannot stop the rank: {e}")))?;
    host.perform_checked(&script::clean(
        &layout,
        s.purge.then(|| script::ShardSlice::of(r)).as_ref(),
    ))
    .map_err(|e| on_host(r, format!("cannot clean up: {e}")))?;
    let out = host
        .perform_checked(&script::listeners())
        .map_err(|e| on_host(r, format!("cannot list listening sockets: {e}")))?;
    let listeners = parse_listeners(&Report::parse(&out.stdout_str()).section("listeners"));
    let mut busy = Vec::new();
    if port_busy(&listeners, &r.address, dep.ring_port) {
        busy.push(format!("ring port `{}` on `{}`", dep.ring_port, r.address));
    }
    if r.rank == 0 && port_busy(&listeners, &dep.api_address, dep.api_port) {
        busy.push(format!(
            "API port `{}` on `{}`",
            dep.api_port, dep.api_address
        ));
    }
    if !busy.is_empty() {
        return Err(on_host(
            r,
            format!(
                "{} still in use after stopping the rank\n\nhint: something else listens there, or a rank of this plan runs without a state record; find it with `ss -ltnp`",
                busy.join(" and ")
            ),
        ));
    }
    let what = match how {
        Stopped::None => "nothing running".to_owned(),
        other => format!("rank {} {other}", r.rank),
    };
    eprintln!(
        "{}: {what}; cleaned up{}",
        r.node,
        if s.purge { " (shard cache purged)" } else { "" }
    );
    Ok(())
}
