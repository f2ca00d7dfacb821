//! Transports: run a command on one host and move files to and from it, over
//! SSH (`SshTransport`, libssh2 through the `ssh2` crate) or on this machine
//! (`LocalTransport`, `sh -c`). The invariant this module guards is SSH host
//! key verification: a session is only handed out after the server's key
//! matched an entry in the known_hosts file, or, with `accept_new`, after an
//! unknown host's key was recorded there. A key that differs from a recorded
//! one is refused whatever the flags say, and the error carries the SHA256
//! fingerprint the server presented.

use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use ssh2::{CheckResult, KnownHostFileKind, MethodType, Session};

use crate::settings::paths::{self, NoHome};
use crate::settings::{env, ports::DEFAULT_SSH_PORT};

/// Connect timeout when the inventory gives none. OpenSSH has no default (it
/// waits for the kernel, about two minutes for an unanswered SYN); 10 s is
/// Ansible's default, long enough for a slow LAN and short enough that an
/// `apply` on a dead host fails quickly.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Read size for command output; libssh2 hands out at most one packet's
/// payload (32 KiB) per read anyway.
const READ_CHUNK: usize = 32 * 1024;

// libssh2 error codes (libssh2.h; `ssh2` does not re-export libssh2-sys).
const LIBSSH2_ERROR_TIMEOUT: i32 = -9;
const LIBSSH2_ERROR_HOSTKEY_INIT: i32 = -10;
const LIBSSH2_ERROR_SOCKET_TIMEOUT: i32 = -30;
const LIBSSH2_ERROR_EAGAIN: i32 = -37;

/// Which host a transport talks to, for every message that mentions it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostId {
    /// The inventory name (the plan's node id).
    pub name: String,
    /// What the transport connects to: `ADDRESS:PORT` for SSH, `local` otherwise.
    pub address: String,
}

impl fmt::Display for HostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` (`{}`)", self.name, self.address)
    }
}

/// How a remote command ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    /// Killed by a signal, named without the `SIG` prefix (`KILL`, `TERM`).
    Signal(String),
}

impl ExitStatus {
    pub fn success(&self) -> bool {
        *self == ExitStatus::Code(0)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => write!(f, "signal {s}"),
        }
    }
}

/// A finished command: its status and everything it wrote.
#[derive(Clone, Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot resolve address of host {host}: {source}\n\nhint: check the host's `address` in the inventory, and this machine's name resolution")]
    Resolve { host: HostId, source: io::Error },

    #[error("cannot connect to host {host}: {source}\n\nhint: check that the host is up and that sshd listens on its SSH port")]
    Connect { host: HostId, source: io::Error },

    /// A file SSH needs (known_hosts, a key) is under a home directory
    /// that is not known.
    #[error("cannot connect to host {host}: {source}")]
    NoHome { host: HostId, source: NoHome },

    #[error(
        "connecting to host {host} timed out after {}s\n\nhint: check that the host is up and reachable from here",
        timeout.as_secs_f64()
    )]
    ConnectTimeout { host: HostId, timeout: Duration },

    #[error("SSH handshake with host {host} failed: {source}\n\nhint: check that the port is the host's SSH port (`ssh.port` in the inventory)")]
    Handshake { host: HostId, source: ssh2::Error },

    #[error(
        "host {host} is not in known_hosts `{}`; its {} host key is `{}`\n\nhint: check the fingerprint on the host (`ssh-keygen -lf /etc/ssh/ssh_host_{}_key.pub`), then pass `--accept-new-host-keys` once to record it",
        key.known_hosts.display(),
        key.key_type,
        key.fingerprint,
        key_file_stem(&key.key_type)
    )]
    UnknownHostKey { host: HostId, key: Box<HostKeyInfo> },

    #[error(
        "host key of {host} has CHANGED: the server presents {} key `{}`, which does not match `{}` line {}\n\nhint: someone may be intercepting the connection; if the host was reinstalled, remove the old entry with `ssh-keygen -R {} -f {}`",
        key.key_type,
        key.fingerprint,
        key.known_hosts.display(),
        key.line,
        key.pattern,
        key.known_hosts.display()
    )]
    HostKeyChanged { host: HostId, key: Box<HostKeyInfo> },

    #[error(
        "host key `{}` of {host} is marked `@revoked` in `{}` line {}",
        key.fingerprint,
        key.known_hosts.display(),
        key.line
    )]
    HostKeyRevoked { host: HostId, key: Box<HostKeyInfo> },

    #[error("cannot read known_hosts `{}` for host {host}: {source}", path.display())]
    KnownHostsRead {
        host: HostId,
        path: PathBuf,
        source: io::Error,
    },

    #[error("cannot record the key of host {host} in known_hosts `{}`: {source}", path.display())]
    KnownHostsWrite {
        host: HostId,
        path: PathBuf,
        source: io::Error,
    },

    #[error(
        "authentication as `{user}` on host {host} failed; tried: {}\n\nhint: set `ssh.identityFile` for the host in the inventory, or add the key to ssh-agent",
        tried.join("; ")
    )]
    Auth {
        host: HostId,
        user: String,
        tried: Vec<String>,
    },

    #[error("{action} on host {host} failed: {source}")]
    Ssh {
        host: HostId,
        action: String,
        source: ssh2::Error,
    },

    #[error("{action} on host {host} failed: {source}")]
    Io {
        host: HostId,
        action: String,
        source: io::Error,
    },

    #[error("host {host} sent nothing for {}s during {action}\n\nhint: the host may be overloaded or frozen; check it, then run the command again", timeout.as_secs_f64())]
    IoTimeout {
        host: HostId,
        action: String,
        timeout: Duration,
    },

    #[error(
        "`{command}` on host {host} failed with {status}{}",
        stderr_suffix(stderr)
    )]
    CommandFailed {
        host: HostId,
        command: String,
        status: ExitStatus,
        stderr: String,
    },
}

/// The server's host key and the known_hosts file it was checked against.
#[derive(Debug)]
pub struct HostKeyInfo {
    pub known_hosts: PathBuf,
    /// The known_hosts name of the host (`ADDR` or `[ADDR]:PORT`).
    pub pattern: String,
    /// Line of the entry that refused the key (0 when there is none).
    pub line: usize,
    pub key_type: String,
    /// `SHA256:...`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
}

fn key_file_stem(key_type: &str) -> &'static str {
    match key_type {
        "ssh-rsa" => "rsa",
        t if t.starts_with("ecdsa-") => "ecdsa",
        _ => "ed25519",
    }
}

fn stderr_suffix(stderr: &str) -> String {
    let t = stderr.trim_end();
    if t.is_empty() {
        String::new()
    } else {
        format!(":\n{t}")
    }
}

/// Runs commands and moves files on one host. Paths are the host's paths:
/// absolute, or relative to the login directory (`~` is not expanded).
pub trait Transport: Send + Sync {
    /// The host this transport talks to.
    fn host(&self) -> &HostId;

    /// Runs `command` through the host's shell. `stdin` is delivered in full
    /// and then closed; `None` gives the command an empty, closed stdin.
    fn run(&self, command: &str, stdin: Option<&[u8]>) -> Result<Output, TransportError> {
        self.run_streaming(command, stdin, &mut |_| {})
    }

    /// Like [`Transport::run`], and hands each piece of the command's
    /// standard output to `on_stdout` as it arrives (for progress of long
    /// commands; the returned output holds all of it too).
    fn run_streaming(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
        on_stdout: &mut dyn FnMut(&[u8]),
    ) -> Result<Output, TransportError>;

    /// Copies the local file to `remote` with permission bits `mode`,
    /// replacing an existing file atomically (written beside it, then renamed),
    /// so a running binary being replaced is never seen half-written.
    fn upload(&self, local: &Path, remote: &Path, mode: u32) -> Result<(), TransportError>;

    /// The contents of the host's file, or `None` when it does not exist.
    fn read_file(&self, remote: &Path) -> Result<Option<Vec<u8>>, TransportError>;

    /// Like `run`, but a non-zero exit is a `CommandFailed` error carrying stderr.
    fn run_checked(&self, command: &str, stdin: Option<&[u8]>) -> Result<Output, TransportError> {
        let out = self.run(command, stdin)?;
        if out.status.success() {
            Ok(out)
        } else {
            Err(TransportError::CommandFailed {
                host: self.host().clone(),
                command: command.to_owned(),
                status: out.status.clone(),
                stderr: out.stderr_str(),
            })
        }
    }
}

/// Quotes `s` as one word for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
    {
        return s.to_owned();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A unique sibling name for writing `path` before renaming it into place.
fn temp_sibling(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".skulk-upload-{}-{n}", std::process::id()));
    path.with_file_name(name)
}

// ---------------------------------------------------------------------------
// Local

/// Runs on this machine: `sh -c COMMAND`, files through std::fs. Used for
/// inventory hosts with `connection: local`.
pub struct LocalTransport {
    host: HostId,
}

impl LocalTransport {
    pub fn new(name: impl Into<String>) -> Self {
        LocalTransport {
            host: HostId {
                name: name.into(),
                address: "local".to_owned(),
            },
        }
    }

    fn io_err(&self, action: String, source: io::Error) -> TransportError {
        TransportError::Io {
            host: self.host.clone(),
            action,
            source,
        }
    }
}

impl Transport for LocalTransport {
    fn host(&self) -> &HostId {
        &self.host
    }

    fn run_streaming(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
        on_stdout: &mut dyn FnMut(&[u8]),
    ) -> Result<Output, TransportError> {
        let action = || format!("running `{command}`");
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.io_err(action(), e))?;
        // Feed stdin and drain stderr from other threads while this one
        // reads stdout, so a command that writes before it has read
        // everything cannot deadlock against us.
        let (status, stdout, stderr) = std::thread::scope(|scope| {
            let writer = child.stdin.take().map(|mut pipe| {
                let data = stdin.unwrap_or_default();
                scope.spawn(move || match pipe.write_all(data) {
                    // The command may exit without reading all of its input.
                    Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
                    r => r,
                })
            });
            let mut err_pipe = child.stderr.take().expect("stderr is piped");
            let err_reader = scope.spawn(move || {
                let mut err = Vec::new();
                err_pipe.read_to_end(&mut err).map(|_| err)
            });
            let mut out_pipe = child.stdout.take().expect("stdout is piped");
            let mut stdout = Vec::new();
            let mut buf = vec![0u8; 64 << 10];
            loop {
                let n = out_pipe.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                on_stdout(&buf[..n]);
                stdout.extend_from_slice(&buf[..n]);
            }
            let stderr = err_reader.join().expect("stderr reader thread panicked")?;
            let status = child.wait()?;
            if let Some(w) = writer {
                w.join().expect("stdin writer thread panicked")?;
            }
            io::Result::Ok((status, stdout, stderr))
        })
        .map_err(|e| self.io_err(action(), e))?;
        let status = match (status.code(), status.signal()) {
            (Some(c), _) => ExitStatus::Code(c),
            (None, Some(s)) => ExitStatus::Signal(signal_name(s)),
            (None, None) => ExitStatus::Code(-1),
        };
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }

    fn upload(&self, local: &Path, remote: &Path, mode: u32) -> Result<(), TransportError> {
        let action = || format!("copying `{}` to `{}`", local.display(), remote.display());
        let tmp = temp_sibling(remote);
        let result = (|| {
            fs::copy(local, &tmp)?;
            fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
            fs::rename(&tmp, remote)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map_err(|e| self.io_err(action(), e))
    }

    fn read_file(&self, remote: &Path) -> Result<Option<Vec<u8>>, TransportError> {
        match fs::read(remote) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io_err(format!("reading `{}`", remote.display()), e)),
        }
    }
}

fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGHUP => "HUP",
        libc::SIGINT => "INT",
        libc::SIGQUIT => "QUIT",
        libc::SIGILL => "ILL",
        libc::SIGABRT => "ABRT",
        libc::SIGBUS => "BUS",
        libc::SIGFPE => "FPE",
        libc::SIGKILL => "KILL",
        libc::SIGSEGV => "SEGV",
        libc::SIGPIPE => "PIPE",
        libc::SIGTERM => "TERM",
        _ => return sig.to_string(),
    };
    name.to_owned()
}

// ---------------------------------------------------------------------------
// SSH

/// How to reach and authenticate to an SSH host. Every path is resolved
/// (no `~`).
#[derive(Clone, Debug)]
pub struct SshOptions {
    pub user: String,
    pub port: u16,
    /// Private key to log in with. `None`: ssh-agent, then
    /// `default_identities`.
    pub identity_file: Option<PathBuf>,
    /// Keys tried, those that exist, when there is no `identity_file` and
    /// no ssh-agent logs in.
    pub default_identities: Vec<PathBuf>,
    pub known_hosts: PathBuf,
    /// Record the key of a host missing from `known_hosts` instead of refusing
    /// it. Never affects a host whose recorded key differs.
    pub accept_new: bool,
    /// Limit for the TCP connect, and separately for each step of the SSH
    /// handshake and authentication.
    pub connect_timeout: Duration,
    /// Longest silence from the host while a command runs or a file moves.
    /// `None` waits forever (commands such as hashing a large model file may
    /// print nothing for minutes).
    pub io_timeout: Option<Duration>,
}

impl SshOptions {
    /// Port 22, OpenSSH's default keys of this user (none without a home
    /// directory), no new keys accepted, the default connect timeout, no
    /// I/O timeout.
    pub fn new(user: impl Into<String>, known_hosts: PathBuf) -> Self {
        SshOptions {
            user: user.into(),
            port: DEFAULT_SSH_PORT,
            identity_file: None,
            default_identities: paths::DEFAULT_IDENTITIES
                .iter()
                .filter_map(|key| paths::in_home(key).ok())
                .collect(),
            known_hosts,
            accept_new: false,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            io_timeout: None,
        }
    }
}

/// An authenticated SSH session with one host. Operations on one transport run
/// one at a time; use one transport per host to work on hosts in parallel.
pub struct SshTransport {
    host: HostId,
    io_timeout: Option<Duration>,
    inner: Mutex<SshInner>,
}

struct SshInner {
    session: Session,
    /// The session's socket (owned by the session), for poll(2).
    fd: i32,
}

impl SshTransport {
    /// Connects to `address` (a host name or IP) and authenticates; `name` is
    /// the inventory name used in messages.
    pub fn connect(name: &str, address: &str, opts: &SshOptions) -> Result<Self, TransportError> {
        let host = HostId {
            name: name.to_owned(),
            address: if address.contains(':') {
                format!("[{address}]:{}", opts.port)
            } else {
                format!("{address}:{}", opts.port)
            },
        };
        let tcp = tcp_connect(&host, address, opts.port, opts.connect_timeout)?;
        let _ = tcp.set_nodelay(true);
        let fd = tcp.as_raw_fd();

        let mut session = Session::new().map_err(|e| ssh_err(&host, "session setup", e))?;
        session.set_tcp_stream(tcp);
        session.set_timeout(millis(opts.connect_timeout));

        // Ask for a host key type we already know for this host, so a host
        // recorded with (say) its RSA key is not reported as changed just
        // because it also has an Ed25519 key.
        let pattern = known_hosts_pattern(address, opts.port);
        let known = KnownHostsFile::load(&session, &opts.known_hosts, &pattern, &host)?;
        if let Some(prefs) = known.host_key_prefs(&session) {
            session
                .method_pref(MethodType::HostKey, &prefs)
                .map_err(|e| ssh_err(&host, "host key preference", e))?;
        }

        session.handshake().map_err(|e| match e.code() {
            ssh2::ErrorCode::Session(LIBSSH2_ERROR_TIMEOUT | LIBSSH2_ERROR_SOCKET_TIMEOUT) => {
                TransportError::ConnectTimeout {
                    host: host.clone(),
                    timeout: opts.connect_timeout,
                }
            }
            _ => TransportError::Handshake {
                host: host.clone(),
                source: e,
            },
        })?;

        let (blob, _) = session.host_key().ok_or_else(|| TransportError::Ssh {
            host: host.clone(),
            action: "host key exchange".to_owned(),
            source: ssh2::Error::new(
                ssh2::ErrorCode::Session(LIBSSH2_ERROR_HOSTKEY_INIT),
                "the server sent no host key",
            ),
        })?;
        let blob = blob.to_vec();
        known.verify(&host, &pattern, &blob, opts.accept_new)?;

        authenticate(&session, &host, opts)?;
        session.set_timeout(opts.io_timeout.map_or(0, millis));

        Ok(SshTransport {
            host,
            io_timeout: opts.io_timeout,
            inner: Mutex::new(SshInner { session, fd }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SshInner> {
        // A panic in another thread mid-operation leaves the session usable
        // or broken; either way the next libssh2 call reports it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ssh_err(&self, action: impl Into<String>, e: ssh2::Error) -> TransportError {
        ssh_err(&self.host, action, e)
    }

    fn io_err(&self, action: impl Into<String>, e: io::Error) -> TransportError {
        if e.kind() == io::ErrorKind::TimedOut {
            if let Some(timeout) = self.io_timeout {
                return TransportError::IoTimeout {
                    host: self.host.clone(),
                    action: action.into(),
                    timeout,
                };
            }
        }
        TransportError::Io {
            host: self.host.clone(),
            action: action.into(),
            source: e,
        }
    }

    /// Runs `command` with non-blocking I/O, feeding stdin and draining stdout
    /// and stderr together so that no side waits on a full channel window.
    fn pump(
        &self,
        inner: &SshInner,
        command: &str,
        stdin: Option<&[u8]>,
        on_stdout: &mut dyn FnMut(&[u8]),
    ) -> Result<Output, TransportError> {
        let action = || format!("running `{command}`");
        let sess = &inner.session;
        let mut channel = sess
            .channel_session()
            .map_err(|e| self.ssh_err(format!("channel for `{command}`"), e))?;
        channel
            .exec(command)
            .map_err(|e| self.ssh_err(action(), e))?;

        let input = stdin.unwrap_or_default();
        let mut written = 0;
        let mut eof_sent = false;
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let mut buf = vec![0u8; READ_CHUNK];
        let mut last_progress = Instant::now();

        sess.set_blocking(false);
        let result = (|| loop {
            let mut progress = false;
            if written < input.len() {
                match channel.write(&input[written..]) {
                    Ok(n) => {
                        written += n;
                        progress |= n > 0;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    // The command exited without reading all of stdin.
                    Err(_) if channel.eof() => written = input.len(),
                    Err(e) => return Err(self.io_err(format!("sending stdin to `{command}`"), e)),
                }
            }
            if written == input.len() && !eof_sent {
                match channel.send_eof() {
                    Ok(()) => {
                        eof_sent = true;
                        progress = true;
                    }
                    Err(e) if is_eagain(&e) => {}
                    Err(_) if channel.eof() => eof_sent = true,
                    Err(e) => return Err(self.ssh_err(format!("closing stdin of `{command}`"), e)),
                }
            }
            let mut done = 0;
            for (id, sink) in [(0, &mut stdout), (1, &mut stderr)] {
                match channel.stream(id).read(&mut buf) {
                    Ok(0) => done += 1,
                    Ok(n) => {
                        if id == 0 {
                            on_stdout(&buf[..n]);
                        }
                        sink.extend_from_slice(&buf[..n]);
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(self.io_err(action(), e)),
                }
            }
            if done == 2 && channel.eof() {
                return Ok(());
            }
            if progress {
                last_progress = Instant::now();
            } else {
                if let Some(t) = self.io_timeout {
                    if last_progress.elapsed() >= t {
                        return Err(TransportError::IoTimeout {
                            host: self.host.clone(),
                            action: action(),
                            timeout: t,
                        });
                    }
                }
                wait_socket(inner)
                    .map_err(|e| self.io_err(format!("waiting for `{command}`"), e))?;
            }
        })();
        sess.set_blocking(true);
        result?;

        channel
            .wait_close()
            .map_err(|e| self.ssh_err(action(), e))?;
        let signal = channel
            .exit_signal()
            .map_err(|e| self.ssh_err(action(), e))?
            .exit_signal;
        let status = match signal {
            Some(s) => ExitStatus::Signal(s),
            None => ExitStatus::Code(
                channel
                    .exit_status()
                    .map_err(|e| self.ssh_err(action(), e))?,
            ),
        };
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }
}

impl Transport for SshTransport {
    fn host(&self) -> &HostId {
        &self.host
    }

    fn run_streaming(
        &self,
        command: &str,
        stdin: Option<&[u8]>,
        on_stdout: &mut dyn FnMut(&[u8]),
    ) -> Result<Output, TransportError> {
        let inner = self.lock();
        self.pump(&inner, command, stdin, on_stdout)
    }

    fn upload(&self, local: &Path, remote: &Path, mode: u32) -> Result<(), TransportError> {
        let action = || format!("copying `{}` to `{}`", local.display(), remote.display());
        let mut file = fs::File::open(local).map_err(|e| self.io_err(action(), e))?;
        let size = file.metadata().map_err(|e| self.io_err(action(), e))?.len();
        let tmp = temp_sibling(remote);
        let inner = self.lock();
        let sent = (|| {
            // scp creates the file with `mode` minus the remote umask; the
            // chmod below makes the final bits exactly `mode`.
            let mut ch = inner
                .session
                .scp_send(&tmp, (mode & 0o777) as i32, size, None)
                .map_err(|e| self.ssh_err(action(), e))?;
            io::copy(&mut file, &mut ch).map_err(|e| self.io_err(action(), e))?;
            ch.send_eof().map_err(|e| self.ssh_err(action(), e))?;
            ch.wait_eof().map_err(|e| self.ssh_err(action(), e))?;
            ch.close().map_err(|e| self.ssh_err(action(), e))?;
            ch.wait_close().map_err(|e| self.ssh_err(action(), e))
        })();
        let tmp_q = shell_quote(&tmp.to_string_lossy());
        if let Err(e) = sent {
            let _ = self.pump(&inner, &format!("rm -f {tmp_q}"), None, &mut |_| {});
            return Err(e);
        }
        let cmd = format!(
            "chmod {:o} {tmp_q} && mv -f {tmp_q} {} || {{ rc=$?; rm -f {tmp_q}; exit $rc; }}",
            mode & 0o7777,
            shell_quote(&remote.to_string_lossy())
        );
        let out = self.pump(&inner, &cmd, None, &mut |_| {})?;
        if !out.status.success() {
            return Err(TransportError::CommandFailed {
                host: self.host.clone(),
                stderr: out.stderr_str(),
                command: cmd,
                status: out.status,
            });
        }
        Ok(())
    }

    fn read_file(&self, remote: &Path) -> Result<Option<Vec<u8>>, TransportError> {
        // Exit code 3 is ours: `cat` itself only ever exits 0 or 1.
        let p = shell_quote(&remote.to_string_lossy());
        let cmd = format!("if [ -e {p} ]; then exec cat -- {p}; else exit 3; fi");
        let inner = self.lock();
        let out = self.pump(&inner, &cmd, None, &mut |_| {})?;
        match out.status {
            ExitStatus::Code(0) => Ok(Some(out.stdout)),
            ExitStatus::Code(3) => Ok(None),
            _ => Err(TransportError::CommandFailed {
                host: self.host.clone(),
                command: format!("cat {p}"),
                stderr: out.stderr_str(),
                status: out.status,
            }),
        }
    }
}

fn ssh_err(host: &HostId, action: impl Into<String>, e: ssh2::Error) -> TransportError {
    TransportError::Ssh {
        host: host.clone(),
        action: action.into(),
        source: e,
    }
}

fn is_eagain(e: &ssh2::Error) -> bool {
    e.code() == ssh2::ErrorCode::Session(LIBSSH2_ERROR_EAGAIN)
}

fn millis(d: Duration) -> u32 {
    // 0 means "no timeout" to libssh2, so never round a real limit down to it.
    d.as_millis().clamp(1, u32::MAX as u128) as u32
}

/// Waits until the socket is ready in the direction libssh2 is blocked on,
/// or 100 ms (to re-check the I/O timeout).
fn wait_socket(inner: &SshInner) -> io::Result<()> {
    let events = match inner.session.block_directions() {
        ssh2::BlockDirections::Outbound => libc::POLLOUT,
        ssh2::BlockDirections::Both => libc::POLLIN | libc::POLLOUT,
        // Inbound, or nothing pending: new data (or a window adjust) arrives
        // inbound.
        _ => libc::POLLIN,
    };
    let mut pfd = libc::pollfd {
        fd: inner.fd,
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd; the fd stays open while the session lives.
    let rc = unsafe { libc::poll(&mut pfd, 1, 100) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

fn tcp_connect(
    host: &HostId,
    address: &str,
    port: u16,
    timeout: Duration,
) -> Result<TcpStream, TransportError> {
    let addrs: Vec<SocketAddr> = (address, port)
        .to_socket_addrs()
        .map_err(|e| TransportError::Resolve {
            host: host.clone(),
            source: e,
        })?
        .collect();
    let deadline = Instant::now() + timeout;
    let mut last = None;
    for addr in &addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(addr, left) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) if e.kind() != io::ErrorKind::TimedOut && e.kind() != io::ErrorKind::WouldBlock => {
            Err(TransportError::Connect {
                host: host.clone(),
                source: e,
            })
        }
        Some(_) => Err(TransportError::ConnectTimeout {
            host: host.clone(),
            timeout,
        }),
        None => Err(TransportError::Resolve {
            host: host.clone(),
            source: io::Error::new(io::ErrorKind::NotFound, "no addresses"),
        }),
    }
}

fn authenticate(session: &Session, host: &HostId, opts: &SshOptions) -> Result<(), TransportError> {
    let user = &opts.user;
    let mut tried = Vec::new();
    if let Some(key) = &opts.identity_file {
        if let Err(e) = session.userauth_pubkey_file(user, None, key, None) {
            tried.push(format!(
                "identity file `{}`: {}",
                key.display(),
                e.message()
            ));
        }
    } else {
        if env::ssh_agent() {
            if let Err(e) = session.userauth_agent(user) {
                tried.push(format!("ssh-agent: {}", e.message()));
            }
        }
        for key in &opts.default_identities {
            if session.authenticated() {
                break;
            }
            if key.exists() {
                if let Err(e) = session.userauth_pubkey_file(user, None, key, None) {
                    tried.push(format!("`{}`: {}", key.display(), e.message()));
                }
            }
        }
        if tried.is_empty() && !session.authenticated() {
            tried.push("no ssh-agent and no key in `~/.ssh`".to_owned());
        }
    }
    if session.authenticated() {
        Ok(())
    } else {
        Err(TransportError::Auth {
            host: host.clone(),
            user: user.clone(),
            tried,
        })
    }
}

// ---------------------------------------------------------------------------
// known_hosts

/// The known_hosts name of a host: `ADDR` on port 22, `[ADDR]:PORT` otherwise
/// (OpenSSH's convention, sshd(8) "SSH_KNOWN_HOSTS FILE FORMAT").
fn known_hosts_pattern(address: &str, port: u16) -> String {
    if port == DEFAULT_SSH_PORT {
        address.to_owned()
    } else {
        format!("[{address}]:{port}")
    }
}

/// The entries of one known_hosts file that name one host.
struct KnownHostsFile {
    path: PathBuf,
    entries: Vec<KnownEntry>,
    /// Whether the file exists and its last byte is not a newline.
    needs_newline: bool,
}

struct KnownEntry {
    line: usize,
    revoked: bool,
    key_type: String,
    key_b64: String,
}

impl KnownHostsFile {
    /// Reads `path` (a missing file has no entries) and keeps the lines for
    /// `pattern`. Host matching, including hashed `|1|` names, is libssh2's,
    /// one line at a time, so a line libssh2 cannot parse (certificates,
    /// security-key types) is skipped instead of failing the whole file.
    fn load(
        session: &Session,
        path: &Path,
        pattern: &str,
        host: &HostId,
    ) -> Result<Self, TransportError> {
        let text = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(TransportError::KnownHostsRead {
                    host: host.clone(),
                    path: path.to_path_buf(),
                    source: e,
                })
            }
        };
        let needs_newline = text.last().is_some_and(|&b| b != b'\n');
        let text = String::from_utf8_lossy(&text);
        let mut entries = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (revoked, rest) = match line.split_once(char::is_whitespace) {
                Some(("@revoked", rest)) => (true, rest.trim_start()),
                Some((m, _)) if m.starts_with('@') => continue,
                _ => (false, line),
            };
            let mut fields = rest.split_whitespace();
            let (Some(_), Some(key_type), Some(key_b64)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            let Ok(mut kh) = session.known_hosts() else {
                continue;
            };
            if kh.read_str(rest, KnownHostFileKind::OpenSSH).is_err() {
                continue;
            }
            // A one-byte key never equals a real one, so "mismatch" means
            // "this line is for the host".
            if matches!(kh.check(pattern, &[0]), CheckResult::Mismatch) {
                entries.push(KnownEntry {
                    line: i + 1,
                    revoked,
                    key_type: key_type.to_owned(),
                    key_b64: key_b64.to_owned(),
                });
            }
        }
        Ok(KnownHostsFile {
            path: path.to_path_buf(),
            entries,
            needs_newline,
        })
    }

    /// Host key algorithms for the key types recorded for this host, in a
    /// form for `method_pref`, limited to what libssh2 supports.
    fn host_key_prefs(&self, session: &Session) -> Option<String> {
        let supported = session.supported_algs(MethodType::HostKey).ok()?;
        let mut algs: Vec<&str> = Vec::new();
        for e in self.entries.iter().filter(|e| !e.revoked) {
            let candidates: &[&str] = match e.key_type.as_str() {
                // An RSA key signs with SHA-2 where both sides can (RFC 8332).
                "ssh-rsa" => &["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
                other => &[other][..],
            };
            for c in candidates {
                if let Some(s) = supported.iter().find(|s| *s == c) {
                    if !algs.contains(s) {
                        algs.push(s);
                    }
                }
            }
        }
        (!algs.is_empty()).then(|| algs.join(","))
    }

    fn verify(
        &self,
        host: &HostId,
        pattern: &str,
        blob: &[u8],
        accept_new: bool,
    ) -> Result<(), TransportError> {
        let key_type = key_type_of(blob);
        let key_b64 = base64(blob, true);
        let info = |line| {
            Box::new(HostKeyInfo {
                known_hosts: self.path.clone(),
                pattern: pattern.to_owned(),
                line,
                key_type: key_type.clone(),
                fingerprint: fingerprint(blob),
            })
        };
        if let Some(e) = self
            .entries
            .iter()
            .find(|e| e.revoked && e.key_b64 == key_b64)
        {
            return Err(TransportError::HostKeyRevoked {
                host: host.clone(),
                key: info(e.line),
            });
        }
        let current: Vec<&KnownEntry> = self.entries.iter().filter(|e| !e.revoked).collect();
        if current
            .iter()
            .any(|e| e.key_type == key_type && e.key_b64 == key_b64)
        {
            return Ok(());
        }
        if let Some(e) = current.first() {
            return Err(TransportError::HostKeyChanged {
                host: host.clone(),
                key: info(e.line),
            });
        }
        if !accept_new {
            return Err(TransportError::UnknownHostKey {
                host: host.clone(),
                key: info(0),
            });
        }
        self.append(pattern, &key_type, &key_b64)
            .map_err(|e| TransportError::KnownHostsWrite {
                host: host.clone(),
                path: self.path.clone(),
                source: e,
            })
    }

    /// Appends one line with a single write(2) to an `O_APPEND` file, so
    /// parallel connections recording different hosts do not interleave.
    fn append(&self, pattern: &str, key_type: &str, key_b64: &str) -> io::Result<()> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)?;
            }
        }
        let line = format!(
            "{}{pattern} {key_type} {key_b64}\n",
            if self.needs_newline { "\n" } else { "" }
        );
        let mut f = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.path)?;
        f.write_all(line.as_bytes())
    }
}

/// The key type named inside an SSH public key blob (RFC 4253 section 6.6:
/// a length-prefixed string first).
fn key_type_of(blob: &[u8]) -> String {
    blob.get(..4)
        .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
        .and_then(|n| blob.get(4..4 + n))
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// OpenSSH's key fingerprint: `SHA256:` and the unpadded base64 of the
/// SHA-256 of the key blob, as `ssh-keygen -l` prints it.
pub fn fingerprint(blob: &[u8]) -> String {
    format!("SHA256:{}", base64(&Sha256::digest(blob), false))
}

/// Standard base64 (RFC 4648 section 4).
fn base64(data: &[u8], pad: bool) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                s.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else if pad {
                s.push('=');
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let cases = [
            ("", "", ""),
            ("f", "Zg==", "Zg"),
            ("fo", "Zm8=", "Zm8"),
            ("foo", "Zm9v", "Zm9v"),
            ("foob", "Zm9vYg==", "Zm9vYg"),
            ("fooba", "Zm9vYmE=", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy", "Zm9vYmFy"),
        ];
        for (input, padded, unpadded) in cases {
            assert_eq!(base64(input.as_bytes(), true), padded);
            assert_eq!(base64(input.as_bytes(), false), unpadded);
        }
    }

    #[test]
    fn shell_quote_keeps_plain_words_and_quotes_the_rest() {
        assert_eq!(shell_quote("/tmp/a-b_c.d"), "/tmp/a-b_c.d");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        let out = LocalTransport::new("here")
            .run(
                &format!("printf %s {}", shell_quote("x'; echo $HOME \"y")),
                None,
            )
            .unwrap();
        assert_eq!(out.stdout_str(), "x'; echo $HOME \"y");
    }

    #[test]
    fn known_hosts_pattern_brackets_non_default_ports() {
        assert_eq!(known_hosts_pattern("10.0.0.1", 22), "10.0.0.1");
        assert_eq!(known_hosts_pattern("10.0.0.1", 2222), "[10.0.0.1]:2222");
    }

    #[test]
    fn key_type_is_read_from_the_blob() {
        let mut blob = vec![0, 0, 0, 11];
        blob.extend_from_slice(b"ssh-ed25519");
        blob.extend_from_slice(&[0, 0, 0, 32]);
        blob.extend_from_slice(&[7; 32]);
        assert_eq!(key_type_of(&blob), "ssh-ed25519");
        assert_eq!(key_type_of(&[0, 0]), "unknown");
    }
}
