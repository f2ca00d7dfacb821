//! Working on all of a plan's hosts at once: connecting, inspecting and
//! stopping in parallel (one thread and one session per host), collecting
//! every host's failure instead of stopping at the first.

use super::error::{all_or_failures, on_host, transport, ExecError};
use super::remote::{ConnectSettings, Host};
use super::script::{self, Inspection, Report, StopTarget};
use super::target::{Deployment, RankTarget};
use super::transport::TransportError;

/// `f` over `items`, one thread each, results in order.
pub fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .iter()
            .map(|item| {
                let f = &f;
                scope.spawn(move || f(item))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("host worker panicked"))
            .collect()
    })
}

/// Connects to one rank's host.
pub fn connect(rank: &RankTarget, settings: &ConnectSettings) -> Result<Host, TransportError> {
    Host::connect(&rank.node, &rank.address, &rank.connection, settings)
}

/// Connects to every rank's host; fails listing every host that could not
/// be reached.
pub fn connect_all(dep: &Deployment, settings: &ConnectSettings) -> Result<Vec<Host>, ExecError> {
    all_or_failures(connect_each(dep, settings), transport, |failed, total| {
        format!("cannot connect to {failed} of {total} hosts")
    })
}

/// Connects to every rank's host that answers; the others get their error.
pub fn connect_each(
    dep: &Deployment,
    settings: &ConnectSettings,
) -> Vec<Result<Host, TransportError>> {
    par_map(&dep.ranks, |r| connect(r, settings))
}

/// Runs [`script::inspect`] on one host.
pub fn inspect(host: &Host) -> Result<Inspection, TransportError> {
    let out = host.perform_checked(&script::inspect())?;
    Ok(Inspection::parse(&out.stdout_str()))
}

/// Pairs each host with its rank.
pub fn zip<'a>(dep: &'a Deployment, hosts: &'a [Host]) -> Vec<(&'a RankTarget, &'a Host)> {
    dep.ranks.iter().zip(hosts.iter()).collect()
}

/// Inspects every host.
pub fn inspect_all(dep: &Deployment, hosts: &[Host]) -> Result<Vec<Inspection>, ExecError> {
    let results = par_map(&zip(dep, hosts), |(_, h)| inspect(h));
    all_or_failures(results, transport, |failed, total| {
        format!("cannot inspect {failed} of {total} hosts")
    })
}

/// How a stop went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Exited after SIGTERM.
    Term,
    /// Needed SIGKILL.
    Kill,
    /// Was not running.
    None,
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stopped::Term => "stopped (SIGTERM)",
            Stopped::Kill => "killed (SIGKILL after the timeout)",
            Stopped::None => "was not running",
        })
    }
}

/// Stops one run on a host.
pub fn stop(
    host: &Host,
    target: &StopTarget,
    timeout_secs: u64,
) -> Result<Stopped, TransportError> {
    let out = host.perform_checked(&script::stop(target, timeout_secs))?;
    Ok(match Report::parse(&out.stdout_str()).get("stopped") {
        Some("term") => Stopped::Term,
        Some("kill") => Stopped::Kill,
        _ => Stopped::None,
    })
}

/// Stops this plan's rank on every host and removes its secrets and plan
/// copy (best effort: every host is tried); returns the failures.
pub fn stop_all(dep: &Deployment, hosts: &[Host], timeout_secs: u64) -> Vec<String> {
    par_map(&zip(dep, hosts), |(r, h)| {
        let layout = r.layout(&dep.digest);
        stop(h, &StopTarget::Layout(layout.clone()), timeout_secs)
            .map_err(|e| on_host(r, format!("could not stop the rank: {e}")))?;
        h.perform_checked(&script::clean(&layout, None))
            .map(|_| ())
            .map_err(|e| on_host(r, format!("could not clean up: {e}")))
    })
    .into_iter()
    .filter_map(Result::err)
    .collect()
}

/// The last `lines` lines of each given rank's log, as failure entries.
pub fn log_tails(
    dep: &Deployment,
    hosts: &[Host],
    which: &[usize],
    lines: u32,
    why: &[String],
) -> Vec<String> {
    let picked: Vec<(usize, &Host)> = which.iter().map(|&i| (i, &hosts[i])).collect();
    par_map(&picked, |(i, h)| {
        let r = &dep.ranks[*i];
        let layout = r.layout(&dep.digest);
        let text = match h.perform_checked(&script::tail(&layout, lines)) {
            Ok(out) => {
                let t = out.stdout_str();
                if t.trim().is_empty() {
                    format!("`{}` is empty", layout.log())
                } else {
                    format!(
                        "last lines of `{}`:\n{}",
                        layout.log(),
                        super::remote::indent(t.trim_end(), "| ")
                    )
                }
            }
            Err(e) => format!("cannot read `{}`: {e}", layout.log()),
        };
        on_host(r, format!("{}; {text}", why[*i]))
    })
}
