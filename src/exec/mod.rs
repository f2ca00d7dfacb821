//! Execution on hosts: everything that touches a machine other than by reading
//! local files. `transport` runs commands and moves files on one host, over SSH
//! or locally; it makes no decisions about what to run.

pub mod transport;

pub use transport::{
    fingerprint, shell_quote, ExitStatus, HostId, HostKeyInfo, LocalTransport, Output, SshOptions,
    SshTransport, Transport, TransportError,
};
