//! `skulk down`: stop every rank of a plan and remove what `apply` left on
//! the hosts except the logs (and, unless `--purge`, the slice cache). It
//! then checks that nothing listens on the plan's ports any more. Safe to
//! run twice: a host with nothing of the plan is already down.
//!
//! Runs of other plans on the same hosts (the ring of an earlier plan
//! written to the same file, say) are named, with their digest, model and
//! age, and left alone unless asked: `--digest D` stops the runs of plan
//! `D` there, `--any` every other run there.

use std::time::Duration;

use super::error::{all_or_failures, on_host, transport, ExecError};
use super::fleet::{self, par_map, Stopped};
use super::remote::ConnectSettings;
use super::script::{self, parse_listeners, port_busy, Report, RunRecord, StopTarget};
use super::status::duration;
use super::target::{Deployment, RankTarget};
use crate::output;

/// Fewest hex digits `--digest` takes: 8 digits (32 bits) make a mistaken
/// match between the few plans on one host practically impossible.
pub const MIN_DIGEST_PREFIX: usize = 8;

/// Which runs of other plans on the plan's hosts `down` also stops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Others {
    /// None: they are named, and left running.
    Keep,
    /// Those of the plan whose digest starts with this (lowercase hex).
    Digest(String),
    /// Every one.
    Any,
}

#[derive(Clone, Debug)]
pub struct DownSettings {
    pub connect: ConnectSettings,
    pub purge: bool,
    /// Grace period between SIGTERM and SIGKILL.
    pub timeout: Duration,
    pub others: Others,
    /// The plan file as the user named it, for hints.
    pub plan_path: String,
}

/// Checks a `--digest` value: hex, at least [`MIN_DIGEST_PREFIX`] digits.
pub fn digest_prefix(given: &str) -> Result<String, ExecError> {
    let d = given.trim().to_ascii_lowercase();
    if d.len() < MIN_DIGEST_PREFIX || d.len() > 64 || !d.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ExecError::Invalid(format!(
            "`--digest {given}` is not a plan digest: give its first {MIN_DIGEST_PREFIX} to 64 hex digits, as `skulk status` and `skulk down` show them"
        )));
    }
    Ok(d)
}

/// What `down` did on one host.
struct HostDown {
    /// What was done, for the user (printed in rank order).
    said: String,
    /// Other plans' live runs left alone.
    kept: Vec<RunRecord>,
}

/// Why `down` failed on one host.
struct HostFailed {
    message: String,
    /// The digest of another plan whose run, left alone, holds the ports.
    held_by: Option<String>,
}

impl From<String> for HostFailed {
    fn from(message: String) -> HostFailed {
        HostFailed {
            message,
            held_by: None,
        }
    }
}

/// Stops and cleans up every host; lists every host where that failed.
pub fn down(dep: &Deployment, s: &DownSettings) -> Result<(), ExecError> {
    let results = par_map(&dep.ranks, |r| down_one(dep, r, s));
    let held: Option<String> = results
        .iter()
        .find_map(|r| r.as_ref().err().and_then(|f| f.held_by.clone()));
    let done = all_or_failures(
        results,
        |f: &HostFailed| f.message.clone(),
        |failed, total| format!("`down` failed on {failed} of {total} hosts"),
    )
    .map_err(|e| {
        if let Some(d) = &held {
            e.with_hint(format!(
                "another plan's ring holds these hosts (named above): `skulk down {} --digest {}` stops it, `--any` stops every other plan there",
                s.plan_path,
                &d[..d.len().min(16)]
            ))
        } else {
            e
        }
    })?;
    for host in &done {
        output::progress(&host.said);
    }
    let mut kept: Vec<RunRecord> = done.into_iter().flat_map(|h| h.kept).collect();
    kept.sort_by(|a, b| a.dir.cmp(&b.dir));
    kept.dedup_by(|a, b| a.dir == b.dir);
    if let Some(first) = kept.first() {
        for k in &kept {
            output::warn(format!("left running: {}", describe_run(k)));
        }
        output::hint(format!(
            "`skulk down {} --digest {}` stops that plan too (`--any` stops every other plan on these hosts)",
            s.plan_path,
            &first.digest[..first.digest.len().min(16)]
        ));
    }
    Ok(())
}

/// `rank 0 of another plan `abcd...` (org/model) in `/root/.cache/...``.
fn describe_run(r: &RunRecord) -> String {
    format!(
        "{} of another plan `{}`{} in `{}`",
        r.rank.map_or("a rank".to_owned(), |n| format!("rank {n}")),
        &r.digest[..r.digest.len().min(16)],
        r.model
            .as_deref()
            .map(|m| format!(" ({m})"))
            .unwrap_or_default(),
        r.dir
    )
}

fn wanted(others: &Others, digest: &str) -> bool {
    match others {
        Others::Keep => false,
        Others::Digest(prefix) => digest.starts_with(prefix.as_str()),
        Others::Any => true,
    }
}

fn down_one(dep: &Deployment, r: &RankTarget, s: &DownSettings) -> Result<HostDown, HostFailed> {
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
        s.purge.then(|| script::CachedSlice::of(r)).as_ref(),
    ))
    .map_err(|e| on_host(r, format!("cannot clean up: {e}")))?;

    // Other plans' runs recorded for this address.
    let found = fleet::inspect(&host).map_err(|e| transport(&e))?;
    let mut kept = Vec::new();
    let mut stopped_others = Vec::new();
    for rec in found.others_at(&r.address, &dep.digest) {
        if wanted(&s.others, &rec.digest) {
            let target = StopTarget::Found(rec.dir.clone());
            let how = fleet::stop(&host, &target, s.timeout.as_secs())
                .map_err(|e| on_host(r, format!("cannot stop {}: {e}", describe_run(rec))))?;
            host.perform_checked(&script::clean_dir(&target, None))
                .map_err(|e| on_host(r, format!("cannot clean up `{}`: {e}", rec.dir)))?;
            stopped_others.push(format!(
                "plan `{}`{}: {how}",
                &rec.digest[..rec.digest.len().min(16)],
                rec.rank.map(|n| format!(" rank {n}")).unwrap_or_default()
            ));
        } else if rec.alive {
            kept.push(rec.clone());
        }
    }

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
        let why = match kept.first() {
            Some(k) => format!(
                "{} is still running there, started {}",
                describe_run(k),
                match (found.now, k.started) {
                    (Some(now), Some(t)) => format!("{} ago", duration(now.saturating_sub(t))),
                    _ => "at an unknown time".to_owned(),
                }
            ),
            None => "something else listens there, or a rank of this plan runs without a state record; find it with `ss -ltnp`".to_owned(),
        };
        return Err(HostFailed {
            message: on_host(
                r,
                format!(
                    "{} still in use after stopping the rank: {why}",
                    busy.join(" and ")
                ),
            ),
            held_by: kept.first().map(|k| k.digest.clone()),
        });
    }
    let what = match how {
        Stopped::None => "nothing of this plan running".to_owned(),
        other => format!("rank {} {other}", r.rank),
    };
    let also = if stopped_others.is_empty() {
        String::new()
    } else {
        format!("; also {}", stopped_others.join(", "))
    };
    Ok(HostDown {
        said: format!(
            "{}: {what}{also}; cleaned up{}",
            r.node,
            if s.purge { " (slice cache purged)" } else { "" }
        ),
        kept,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_hex_prefixes_of_a_safe_length() {
        assert_eq!(digest_prefix("ABCDEF01").unwrap(), "abcdef01");
        assert!(digest_prefix("abc")
            .unwrap_err()
            .to_string()
            .contains("first 8 to 64 hex digits"));
        assert!(digest_prefix("abcdefgh").is_err());
        assert!(wanted(&Others::Digest("abcd1234".into()), "abcd1234ffff"));
        assert!(!wanted(&Others::Digest("abcd1234".into()), "abcd1235ffff"));
        assert!(wanted(&Others::Any, "x") && !wanted(&Others::Keep, "x"));
    }
}
