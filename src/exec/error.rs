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
}
