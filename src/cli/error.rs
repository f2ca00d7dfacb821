//! How a command fails, and the one function that turns that into an exit
//! code. Every command returns [`CliError`]; the `From` conversions below are
//! where each module's error is classed as invalid input or a runtime
//! failure, so the rule lives here and nowhere else.
//!
//! The exit codes (README, "Exit codes"):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success, also when the reader of standard output went away early |
//! | 1 | invalid input: the command line, a card, inventory or plan file, a name that is not in them, a plan that does not fit |
//! | 2 | runtime failure: a file that cannot be read or written, an unreachable host, a busy port, a dead rank, a failed download |
//! | 3 | `skulk status` only: the plan is not (fully) running |

use std::fmt::Write as _;
use std::process::ExitCode;

/// Exit codes other than success.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Invalid = 1,
    Runtime = 2,
    NotRunning = 3,
}

/// Why a command did not succeed.
#[derive(Debug)]
pub enum CliError {
    /// What the user gave skulk is wrong (exit 1).
    Invalid(anyhow::Error),
    /// The world failed (exit 2).
    Runtime(anyhow::Error),
    /// The command already printed its own report (a validation report, a
    /// status table); exit with this code and print nothing more.
    Reported(Exit),
    /// Standard output's reader went away: end quietly with success, as
    /// ripgrep and kubectl do (`skulk plan -o json | head -1`).
    ClosedPipe,
}

impl CliError {
    pub fn invalid(message: impl std::fmt::Display) -> CliError {
        CliError::Invalid(anyhow::anyhow!("{message}"))
    }

    pub fn runtime(message: impl std::fmt::Display) -> CliError {
        CliError::Runtime(anyhow::anyhow!("{message}"))
    }

    /// The one place that picks an exit code.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            CliError::Invalid(_) => Exit::Invalid as u8,
            CliError::Runtime(_) => Exit::Runtime as u8,
            CliError::Reported(exit) => *exit as u8,
            CliError::ClosedPipe => 0,
        })
    }

    /// The message to print, if any.
    pub fn message(&self) -> Option<String> {
        match self {
            CliError::Invalid(e) | CliError::Runtime(e) => Some(describe(e)),
            CliError::Reported(_) | CliError::ClosedPipe => None,
        }
    }

    /// A failed write of a result to standard output: a closed pipe ends
    /// quietly, anything else is a runtime failure.
    pub fn from_stdout(e: std::io::Error) -> CliError {
        if crate::output::is_closed_pipe(&e) {
            CliError::ClosedPipe
        } else {
            CliError::runtime(format!("cannot write to standard output: {e}"))
        }
    }
}

/// An error and its causes, each said once: a cause whose text the message
/// already contains (`rank 0: lost rank 1: connection closed` caused by
/// `lost rank 1: connection closed`) is not repeated.
pub fn describe(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            let _ = write!(text, ": {cause}");
        }
    }
    text
}

/// A clap error: help and version are success (printed by clap), every
/// usage mistake is invalid input (exit 1).
pub fn from_clap(e: clap::Error) -> ExitCode {
    let _ = e.print();
    if e.use_stderr() {
        ExitCode::from(Exit::Invalid as u8)
    } else {
        ExitCode::SUCCESS
    }
}

impl From<crate::exec::ExecError> for CliError {
    fn from(e: crate::exec::ExecError) -> CliError {
        match e {
            crate::exec::ExecError::Invalid(m) => CliError::Invalid(anyhow::anyhow!(m)),
            e => CliError::Runtime(e.into()),
        }
    }
}

impl From<crate::plan::PlanError> for CliError {
    /// A flag that contradicts the inputs and a plan that does not fit are
    /// both invalid input: changing the command or the files fixes them.
    fn from(e: crate::plan::PlanError) -> CliError {
        CliError::Invalid(e.into())
    }
}

impl From<crate::run_shard::RunShardError> for CliError {
    fn from(e: crate::run_shard::RunShardError) -> CliError {
        if e.is_invalid_input() {
            CliError::Invalid(e.into())
        } else {
            CliError::Runtime(e.into())
        }
    }
}

impl From<crate::cardgen::CardGenError> for CliError {
    fn from(e: crate::cardgen::CardGenError) -> CliError {
        if e.is_invalid_input() {
            CliError::Invalid(e.into())
        } else {
            CliError::Runtime(e.into())
        }
    }
}

impl From<crate::hub::HubError> for CliError {
    fn from(e: crate::hub::HubError) -> CliError {
        match e {
            crate::hub::HubError::BadRepoId { .. } => CliError::Invalid(e.into()),
            e => CliError::Runtime(e.into()),
        }
    }
}

impl From<crate::fetch::FetchError> for CliError {
    fn from(e: crate::fetch::FetchError) -> CliError {
        CliError::Runtime(e.into())
    }
}

impl From<crate::validate::RunError> for CliError {
    fn from(e: crate::validate::RunError) -> CliError {
        match e {
            crate::validate::RunError::Write(io) if crate::output::is_closed_pipe(&io) => {
                CliError::ClosedPipe
            }
            // A path that leads to no files: the run cannot start.
            e => CliError::Runtime(e.into()),
        }
    }
}

impl From<crate::model_add::ModelAddError> for CliError {
    fn from(e: crate::model_add::ModelAddError) -> CliError {
        if e.is_invalid_input() {
            CliError::Invalid(e.into())
        } else {
            CliError::Runtime(e.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("rank 0: {source}")]
    struct Outer {
        source: Inner,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("lost rank 1 at `10.0.0.2`: connection closed")]
    struct Inner;

    #[test]
    fn each_cause_is_said_once() {
        let e = anyhow::Error::new(Outer { source: Inner });
        assert_eq!(
            describe(&e),
            "rank 0: lost rank 1 at `10.0.0.2`: connection closed"
        );
        let e = anyhow::Error::new(Inner).context("cannot serve");
        assert_eq!(
            describe(&e),
            "cannot serve: lost rank 1 at `10.0.0.2`: connection closed"
        );
    }

    #[test]
    fn exit_codes_follow_the_table() {
        let code = |e: CliError| format!("{:?}", e.exit_code());
        assert_eq!(
            code(CliError::invalid("x")),
            format!("{:?}", ExitCode::from(1))
        );
        assert_eq!(
            code(CliError::runtime("x")),
            format!("{:?}", ExitCode::from(2))
        );
        assert_eq!(
            code(CliError::Reported(Exit::NotRunning)),
            format!("{:?}", ExitCode::from(3))
        );
        assert_eq!(
            code(CliError::ClosedPipe),
            format!("{:?}", ExitCode::SUCCESS)
        );
        let pipe = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert!(matches!(CliError::from_stdout(pipe), CliError::ClosedPipe));
        assert!(CliError::ClosedPipe.message().is_none());
    }

    #[test]
    fn flags_that_contradict_the_inputs_are_invalid_input() {
        let e: CliError = crate::plan::PlanError::Usage("`--nodes`: no host `x`".into()).into();
        assert!(matches!(e, CliError::Invalid(_)));
        let e: CliError = crate::exec::ExecError::Invalid("the plan has no node `x`".into()).into();
        assert!(matches!(e, CliError::Invalid(_)));
    }
}
