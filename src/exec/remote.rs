//! Remote actions: the one place where skulk's executor touches a host.
//!
//! Every command that `apply`, `status`, `down`, `logs` and `inventory probe`
//! run on a host is an [`Action`] built by a function in
//! [`script`](super::script) and performed by [`Host::perform`]. That single
//! entry point lets `--dry-run` print exactly what would run where, lets
//! `SKULK_LOG_COMMANDS=1` (or `--verbose`) echo every command to stderr, and keeps secrets
//! (which only ever travel on a command's standard input) out of both.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::settings::{env, paths};

use super::transport::{
    shell_quote, HostId, LocalTransport, Output, SshOptions, SshTransport, Transport,
    TransportError,
};

/// A path on a host: absolute, or relative to the login user's home
/// directory (`~` in the inventory is expanded on the host, not here).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemotePath {
    /// Relative to `$HOME` on the host (empty: the home directory itself).
    Home(String),
    Absolute(String),
}

impl RemotePath {
    /// Reads an inventory-style path as [`paths::resolve`] does on this
    /// machine: `/x` is absolute, `~`, `~/x` and `x` are home-relative.
    pub fn parse(path: &str) -> RemotePath {
        if path.starts_with('/') {
            return RemotePath::Absolute(path.trim_end_matches('/').to_owned()).normalised();
        }
        RemotePath::Home(paths::home_relative(path).trim_end_matches('/').to_owned())
    }

    fn normalised(self) -> RemotePath {
        match self {
            RemotePath::Absolute(p) if p.is_empty() => RemotePath::Absolute("/".into()),
            p => p,
        }
    }

    /// `self/child`; `child` is a relative path.
    pub fn join(&self, child: &str) -> RemotePath {
        let child = child.trim_matches('/');
        let join = |base: &str| match (base.is_empty() || base == "/", child.is_empty()) {
            (_, true) => base.to_owned(),
            (true, false) if base == "/" => format!("/{child}"),
            (true, false) => child.to_owned(),
            (false, false) => format!("{base}/{child}"),
        };
        match self {
            RemotePath::Home(p) => RemotePath::Home(join(p)),
            RemotePath::Absolute(p) => RemotePath::Absolute(join(p)),
        }
    }

    /// The path as one POSIX shell word (`"$HOME"/'a b'`), expanded on the host.
    pub fn sh(&self) -> String {
        match self {
            RemotePath::Home(p) if p.is_empty() => "\"$HOME\"".to_owned(),
            RemotePath::Home(p) => format!("\"$HOME\"/{}", shell_quote(p)),
            RemotePath::Absolute(p) => shell_quote(p),
        }
    }

    /// The path with the host's home directory filled in.
    pub fn resolve(&self, home: &str) -> String {
        match self {
            RemotePath::Home(p) if p.is_empty() => home.to_owned(),
            RemotePath::Home(p) => format!("{}/{p}", home.trim_end_matches('/')),
            RemotePath::Absolute(p) => p.clone(),
        }
    }
}

impl fmt::Display for RemotePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemotePath::Home(p) if p.is_empty() => f.write_str("~"),
            RemotePath::Home(p) => write!(f, "~/{p}"),
            RemotePath::Absolute(p) => f.write_str(p),
        }
    }
}

/// Bytes a command receives on standard input, and how to show them.
#[derive(Clone)]
pub struct Stdin {
    pub bytes: Vec<u8>,
    /// What `--dry-run` and the command log print instead of the bytes.
    pub shown_as: String,
}

impl fmt::Debug for Stdin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stdin")
            .field("len", &self.bytes.len())
            .field("shown_as", &self.shown_as)
            .finish()
    }
}

/// One thing done on a host.
#[derive(Clone, Debug)]
pub enum Action {
    /// A POSIX shell script run by the host's shell.
    Run {
        /// What it is for, in a few words (`preflight`, `start rank`).
        purpose: &'static str,
        script: String,
        stdin: Option<Stdin>,
    },
    /// A local file copied to an absolute path on the host (SCP for SSH hosts).
    Upload {
        purpose: &'static str,
        local: PathBuf,
        remote: String,
        mode: u32,
    },
}

impl Action {
    pub fn run(purpose: &'static str, script: impl Into<String>) -> Action {
        Action::Run {
            purpose,
            script: script.into(),
            stdin: None,
        }
    }

    pub fn run_with_stdin(
        purpose: &'static str,
        script: impl Into<String>,
        stdin: Vec<u8>,
        shown_as: impl Into<String>,
    ) -> Action {
        Action::Run {
            purpose,
            script: script.into(),
            stdin: Some(Stdin {
                bytes: stdin,
                shown_as: shown_as.into(),
            }),
        }
    }

    pub fn purpose(&self) -> &'static str {
        match self {
            Action::Run { purpose, .. } | Action::Upload { purpose, .. } => purpose,
        }
    }
}

impl fmt::Display for Action {
    /// How `--dry-run` and `SKULK_LOG_COMMANDS` show the action: the script
    /// verbatim (it is what the host's shell receives), then its input.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Run { script, stdin, .. } => {
                f.write_str(script.trim_end())?;
                if let Some(stdin) = stdin {
                    write!(f, "\n  (stdin: {})", stdin.shown_as)?;
                }
                Ok(())
            }
            Action::Upload {
                local,
                remote,
                mode,
                ..
            } => write!(
                f,
                "scp {} -> {} (mode {mode:o})",
                shell_quote(&local.to_string_lossy()),
                shell_quote(remote)
            ),
        }
    }
}

/// How `apply`, `status` and friends reach a host: from the plan's
/// per-host connection settings plus the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Connection {
    /// Spawn on this machine (`sh -c`), no SSH.
    Local,
    Ssh {
        /// Login user; `None`: the local user name.
        user: Option<String>,
        /// `None`: 22.
        port: Option<u16>,
        /// Private key, inventory-style (`~` or relative: under the home
        /// directory); `None`: ssh-agent, then the default keys.
        identity_file: Option<String>,
    },
}

/// Command-line settings shared by every command that connects to hosts.
#[derive(Clone, Debug)]
pub struct ConnectSettings {
    /// `None`: `~/.ssh/known_hosts`.
    pub known_hosts: Option<PathBuf>,
    pub accept_new_host_keys: bool,
    pub connect_timeout: Duration,
}

impl Default for ConnectSettings {
    fn default() -> Self {
        ConnectSettings {
            known_hosts: None,
            accept_new_host_keys: false,
            connect_timeout: super::transport::DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

/// Longest silence from a host during one command before `apply`,
/// `status`, `down` or `logs` give up on it, so a frozen host cannot hang
/// them past their own deadlines. The slowest silent command is hashing a
/// model file for its sha256 (about 1 GiB/s: five minutes is ~300 GiB).
pub const IO_TIMEOUT: Duration = Duration::from_secs(300);

/// The local user name, the SSH login when the inventory names none.
fn local_user() -> String {
    env::login_user().unwrap_or_else(|| "root".to_owned())
}

/// A connected host: its node name and the transport that reaches it.
pub struct Host {
    pub node: String,
    transport: Box<dyn Transport>,
    log_commands: bool,
}

impl Host {
    /// Connects to `address` as the plan's node `node` says.
    pub fn connect(
        node: &str,
        address: &str,
        connection: &Connection,
        settings: &ConnectSettings,
    ) -> Result<Host, TransportError> {
        let transport: Box<dyn Transport> = match connection {
            Connection::Local => Box::new(LocalTransport::new(node)),
            Connection::Ssh {
                user,
                port,
                identity_file,
            } => {
                let no_home = |source| TransportError::NoHome {
                    host: HostId {
                        name: node.to_owned(),
                        address: address.to_owned(),
                    },
                    source,
                };
                let known_hosts = match &settings.known_hosts {
                    Some(kh) => kh.clone(),
                    None => paths::known_hosts().map_err(no_home)?,
                };
                let mut opts =
                    SshOptions::new(user.clone().unwrap_or_else(local_user), known_hosts);
                if let Some(port) = port {
                    opts.port = *port;
                }
                opts.identity_file = match identity_file {
                    Some(file) => Some(paths::resolve(file).map_err(no_home)?),
                    None => None,
                };
                opts.accept_new = settings.accept_new_host_keys;
                opts.connect_timeout = settings.connect_timeout;
                opts.io_timeout = Some(IO_TIMEOUT);
                Box::new(SshTransport::connect(node, address, &opts)?)
            }
        };
        Ok(Host::new(node, transport))
    }

    pub fn new(node: &str, transport: Box<dyn Transport>) -> Host {
        Host {
            node: node.to_owned(),
            transport,
            log_commands: env::log_commands()
                || crate::output::level() == crate::output::Level::Verbose,
        }
    }

    /// The one function through which every remote command runs.
    pub fn perform(&self, action: &Action) -> Result<Output, TransportError> {
        self.perform_streaming(action, &mut |_| {})
    }

    /// Like [`Host::perform`], handing a command's standard output to
    /// `on_stdout` as it arrives.
    pub fn perform_streaming(
        &self,
        action: &Action,
        on_stdout: &mut dyn FnMut(&[u8]),
    ) -> Result<Output, TransportError> {
        if self.log_commands {
            crate::output::raw(format!(
                "[{}] {}:\n{}",
                self.node,
                action.purpose(),
                indent(&action.to_string(), "  ")
            ));
        }
        match action {
            Action::Run { script, stdin, .. } => self.transport.run_streaming(
                script,
                stdin.as_ref().map(|s| s.bytes.as_slice()),
                on_stdout,
            ),
            Action::Upload {
                local,
                remote,
                mode,
                ..
            } => {
                self.transport
                    .upload(local, std::path::Path::new(remote), *mode)?;
                Ok(Output {
                    status: super::transport::ExitStatus::Code(0),
                    stdout: Vec::new(),
                    stderr: Vec::new(),
                })
            }
        }
    }

    /// Like [`perform`](Self::perform), but a non-zero exit is an error
    /// naming the host, the action and its stderr.
    pub fn perform_checked(&self, action: &Action) -> Result<Output, TransportError> {
        self.perform_streaming_checked(action, &mut |_| {})
    }

    /// Like [`Host::perform_checked`], handing standard output to
    /// `on_stdout` as it arrives.
    pub fn perform_streaming_checked(
        &self,
        action: &Action,
        on_stdout: &mut dyn FnMut(&[u8]),
    ) -> Result<Output, TransportError> {
        let out = self.perform_streaming(action, on_stdout)?;
        if out.status.success() {
            Ok(out)
        } else {
            Err(TransportError::CommandFailed {
                host: self.transport.host().clone(),
                command: action.purpose().to_owned(),
                status: out.status.clone(),
                stderr: out.stderr_str(),
            })
        }
    }
}

/// A sink for [`Host::perform_streaming`] that prints each complete line of
/// output on stderr as `<node>: <line>` as it arrives (progress of long
/// commands such as `fetch-model`).
pub struct LinePrinter<'a> {
    node: &'a str,
    pending: Vec<u8>,
}

impl<'a> LinePrinter<'a> {
    pub fn new(node: &'a str) -> LinePrinter<'a> {
        LinePrinter {
            node,
            pending: Vec::new(),
        }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        self.pending.extend_from_slice(chunk);
        while let Some(i) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=i).collect();
            crate::output::progress(format!(
                "{}: {}",
                self.node,
                String::from_utf8_lossy(&line).trim_end()
            ));
        }
    }
}

/// `text` with `prefix` before every line.
pub fn indent(text: &str, prefix: &str) -> String {
    text.lines()
        .map(|l| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{prefix}{l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_paths_parse_home_and_absolute() {
        assert_eq!(RemotePath::parse("~"), RemotePath::Home(String::new()));
        assert_eq!(RemotePath::parse("~/m/"), RemotePath::Home("m".into()));
        assert_eq!(
            RemotePath::parse("models"),
            RemotePath::Home("models".into())
        );
        assert_eq!(
            RemotePath::parse("/srv/m"),
            RemotePath::Absolute("/srv/m".into())
        );
        assert_eq!(RemotePath::parse("/"), RemotePath::Absolute("/".into()));
        assert_eq!(RemotePath::parse("~/a").join("b/c").to_string(), "~/a/b/c");
        assert_eq!(RemotePath::parse("~").join("b").to_string(), "~/b");
        assert_eq!(RemotePath::parse("/").join("b").to_string(), "/b");
    }

    #[test]
    fn remote_paths_expand_on_the_host_and_stay_one_word() {
        let p = RemotePath::parse("~/it's a dir").join("x");
        assert_eq!(p.sh(), r#""$HOME"/'it'\''s a dir/x'"#);
        let out = LocalTransport::new("here")
            .run(&format!("HOME=/h; printf %s {}", p.sh()), None)
            .unwrap();
        assert_eq!(out.stdout_str(), "/h/it's a dir/x");
        assert_eq!(p.resolve("/h/"), "/h/it's a dir/x");
        assert_eq!(RemotePath::parse("/a b").sh(), "'/a b'");
    }

    #[test]
    fn secrets_on_stdin_are_never_displayed() {
        let a = Action::run_with_stdin("write", "cat > f", b"s3cret".to_vec(), "the secret");
        let shown = a.to_string();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("(stdin: the secret)"), "{shown}");
        assert!(!format!("{a:?}").contains("s3cret"));
    }
}
