//! Execution on hosts: everything that touches a machine other than by reading
//! local files. `transport` runs commands and moves files on one host, over SSH
//! or locally; `remote` is the one entry point through which every command
//! runs; `script` holds the commands; `apply`, `status`, `down`, `logs` and
//! `probe` are the subcommands, and `supervise` keeps an applied plan up
//! (`apply --watch`). None of it decides placement: it executes a
//! plan.

pub mod apply;
pub mod down;
pub mod error;
pub mod fleet;
pub mod health;
pub mod logs;
pub mod preflight;
pub mod probe;
pub mod remote;
pub mod script;
pub mod status;
pub mod supervise;
pub mod target;
pub mod transport;

pub use error::ExecError;
pub use transport::{
    fingerprint, shell_quote, ExitStatus, HostId, HostKeyInfo, LocalTransport, Output, SshOptions,
    SshTransport, Transport, TransportError,
};
