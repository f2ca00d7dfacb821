//! `skulk logs`: the ranks' logs from their hosts, each line prefixed with
//! its host. `--follow` polls every host once a second for what was
//! appended (one SSH session per host, kept open) and prints whole lines,
//! until standard output's reader goes away.

use std::io::Write;
use std::time::Duration;

use super::error::{transport, ExecError};
use super::fleet::{self, par_map};
use super::remote::{ConnectSettings, Host};
use super::script;
use super::target::{Deployment, RankTarget};

#[derive(Clone, Debug)]
pub struct LogsSettings {
    pub connect: ConnectSettings,
    /// Only this node.
    pub node: Option<String>,
    pub follow: bool,
    /// Lines of each log shown first.
    pub lines: u32,
}

/// Lines of each log shown when not following everything (like `tail`,
/// enough for a rank's start-up and its last error).
pub const DEFAULT_LINES: u32 = 100;

/// How often `--follow` polls.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

pub fn logs(dep: &Deployment, s: &LogsSettings, out: &mut dyn Write) -> Result<(), ExecError> {
    let ranks: Vec<&RankTarget> = match &s.node {
        None => dep.ranks.iter().collect(),
        Some(n) => {
            let r: Vec<_> = dep.ranks.iter().filter(|r| &r.node == n).collect();
            if r.is_empty() {
                let names: Vec<&str> = dep.ranks.iter().map(|r| r.node.as_str()).collect();
                return Err(ExecError::Invalid(format!(
                    "the plan has no node `{n}`; its nodes are `{}`",
                    names.join("`, `")
                )));
            }
            r
        }
    };
    let width = ranks.iter().map(|r| r.node.len()).max().unwrap_or(0);
    let prefix = |r: &RankTarget| format!("{:width$} | ", r.node);

    let connected = par_map(&ranks, |r| fleet::connect(r, &s.connect));
    let mut failures = Vec::new();
    let mut hosts: Vec<(&RankTarget, Host)> = Vec::new();
    for (r, c) in ranks.iter().zip(connected) {
        match c {
            Ok(h) => hosts.push((r, h)),
            Err(e) => failures.push(transport(&e)),
        }
    }

    // What is there now.
    let first = par_map(&hosts, |(r, h)| {
        let layout = r.layout(&dep.digest);
        h.perform_checked(&script::tail_with_size(&layout, s.lines))
            .map(|o| o.stdout_str())
    });
    let mut offsets = Vec::new();
    for ((r, _), text) in hosts.iter().zip(first) {
        match text {
            Err(e) => {
                failures.push(transport(&e));
                offsets.push(None);
            }
            Ok(t) => {
                let (head, body) = t.split_once('\n').unwrap_or((&t, ""));
                let size = head
                    .strip_prefix("size=")
                    .and_then(|n| n.trim().parse::<u64>().ok());
                for line in body.lines() {
                    writeln!(out, "{}{line}", prefix(r)).map_err(ExecError::Output)?;
                }
                offsets.push(size);
            }
        }
    }
    out.flush().map_err(ExecError::Output)?;

    if s.follow {
        let mut partial: Vec<String> = vec![String::new(); hosts.len()];
        let mut offsets: Vec<u64> = offsets.into_iter().map(|o| o.unwrap_or(0)).collect();
        loop {
            std::thread::sleep(FOLLOW_EVERY);
            let jobs: Vec<(usize, u64)> = offsets.iter().copied().enumerate().collect();
            let news = par_map(&jobs, |(i, off)| {
                let (r, h) = &hosts[*i];
                h.perform_checked(&script::log_from(&r.layout(&dep.digest), *off))
                    .map(|o| o.stdout)
            });
            for (i, new) in news.into_iter().enumerate() {
                let Ok(bytes) = new else { continue };
                let Some(nl) = bytes.iter().position(|&b| b == b'\n') else {
                    continue;
                };
                let head = String::from_utf8_lossy(&bytes[..nl]);
                let from = head
                    .split_whitespace()
                    .find_map(|kv| kv.strip_prefix("off="))
                    .and_then(|v| v.parse::<u64>().ok());
                let Some(from) = from else { continue };
                let data = &bytes[nl + 1..];
                if from < offsets[i] {
                    partial[i].clear(); // the log was truncated or replaced
                }
                offsets[i] = from + data.len() as u64;
                partial[i].push_str(&String::from_utf8_lossy(data));
                while let Some(p) = partial[i].find('\n') {
                    let line: String = partial[i].drain(..=p).collect();
                    write!(out, "{}{line}", prefix(hosts[i].0)).map_err(ExecError::Output)?;
                }
            }
            out.flush().map_err(ExecError::Output)?;
        }
    }

    if failures.is_empty() {
        Ok(())
    } else {
        Err(ExecError::runtime(
            format!(
                "cannot read the logs of {} of {} hosts",
                failures.len(),
                ranks.len()
            ),
            failures,
        ))
    }
}
