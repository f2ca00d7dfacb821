//! The executor's errors: an invalid plan (exit 1) or a runtime failure on
//! one or more hosts (exit 2), where every failing host is listed, never
//! just the first.

use std::fmt;

use super::remote::indent;
use super::target::RankTarget;
use super::transport::TransportError;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The plan file cannot be read, is not a plan, or asks for something
    /// skulk's engines cannot run.
    #[error("{0}")]
    Invalid(String),
    /// Something on the hosts failed.
    #[error("{0}")]
    Runtime(HostFailures),
    /// Writing the result here failed (standard output closed, disk full).
    #[error("cannot write the output: {0}")]
    Output(#[source] std::io::Error),
}

impl ExecError {
    pub fn runtime(summary: impl Into<String>, failures: Vec<String>) -> ExecError {
        ExecError::Runtime(HostFailures {
            summary: summary.into(),
            failures,
            hint: None,
        })
    }

    pub fn with_hint(self, hint: impl Into<String>) -> ExecError {
        match self {
            ExecError::Runtime(mut f) => {
                f.hint = Some(hint.into());
                ExecError::Runtime(f)
            }
            e => e,
        }
    }
}

/// A summary line and one entry per failing host.
#[derive(Debug)]
pub struct HostFailures {
    pub summary: String,
    /// Each names its host; may span lines (and carry its own `hint:`).
    pub failures: Vec<String>,
    pub hint: Option<String>,
}

impl fmt::Display for HostFailures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary)?;
        for failure in &self.failures {
            let mut lines = failure.lines();
            write!(f, "\n  - {}", lines.next().unwrap_or(""))?;
            let rest: Vec<&str> = lines.collect();
            if !rest.is_empty() {
                write!(f, "\n{}", indent(&rest.join("\n"), "    "))?;
            }
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n\nhint: {hint}")?;
        }
        Ok(())
    }
}

/// `host `h1` (`10.0.0.1`): message`, the prefix of every host's entry.
pub fn on_host(rank: &RankTarget, message: impl fmt::Display) -> String {
    format!("host `{}` (`{}`): {message}", rank.node, rank.address)
}

/// Every result's value, in order, or one runtime error that lists every
/// failure (`describe`d) under `summary(failed, total)`.
pub fn all_or_failures<T, E>(
    results: Vec<Result<T, E>>,
    describe: impl Fn(&E) -> String,
    summary: impl FnOnce(usize, usize) -> String,
) -> Result<Vec<T>, ExecError> {
    let total = results.len();
    let failures: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err().map(&describe))
        .collect();
    if !failures.is_empty() {
        return Err(ExecError::runtime(summary(failures.len(), total), failures));
    }
    Ok(results.into_iter().filter_map(Result::ok).collect())
}

/// A transport error already names its host.
pub fn transport(e: &TransportError) -> String {
    e.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_host_is_listed_with_continuations_indented() {
        let e = ExecError::runtime(
            "preflight failed on 2 of 3 hosts",
            vec!["host `a`: x\n\nhint: y".into(), "host `b`: z".into()],
        )
        .with_hint("fix them");
        assert_eq!(
            e.to_string(),
            "preflight failed on 2 of 3 hosts\n  - host `a`: x\n\n    hint: y\n  - host `b`: z\n\nhint: fix them"
        );
    }

    #[test]
    fn all_or_failures_keeps_order_or_lists_every_failure() {
        let ok: Vec<Result<u32, String>> = vec![Ok(1), Ok(2)];
        assert_eq!(
            all_or_failures(ok, String::clone, |_, _| unreachable!()).unwrap(),
            [1, 2]
        );
        let mixed: Vec<Result<u32, String>> = vec![
            Ok(1),
            Err("host `b`: down".into()),
            Err("host `c`: down".into()),
        ];
        let e = all_or_failures(mixed, String::clone, |failed, total| {
            format!("cannot reach {failed} of {total} hosts")
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot reach 2 of 3 hosts\n  - host `b`: down\n  - host `c`: down"
        );
    }
}
