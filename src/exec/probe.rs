//! `skulk inventory probe`: connect to hosts (or, with `--local`, look at
//! this machine without SSH) and print inventory entries filled from what
//! they report (memory from `/proc/meminfo`, cores from `nproc`, GPU memory
//! from `nvidia-smi`), with the backends this skulk build offers on them, so
//! users need not type those numbers.

use std::path::PathBuf;

use super::error::{all_or_failures, ExecError};
use super::fleet::par_map;
use super::remote::{ConnectSettings, Connection, Host};
use super::script::{self, meminfo_field, Report};
use super::transport::TransportError;
use crate::backend::{BackendTag, Compute, SKULK_ENGINE};
use crate::inventory::{self, HostEntry, InventoryFile, MemoryEntry, SizeSpec, SshEntry};

/// One `[user@]host[:port]` argument, or this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeTarget {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    /// This machine, without SSH (`connection: local`).
    pub local: bool,
}

/// The address a `--local` entry gets: loopback, where the ranks of a
/// one-machine ring listen (the next ranks take 127.0.0.2, 127.0.0.3, ...).
pub const LOCAL_ADDRESS: &str = "127.0.0.1";

impl ProbeTarget {
    /// This machine, reached without SSH.
    pub fn local() -> ProbeTarget {
        ProbeTarget {
            user: None,
            host: LOCAL_ADDRESS.to_owned(),
            port: None,
            local: true,
        }
    }

    /// The name the host goes by in messages before it has told its own:
    /// an IP address whole, a host name up to its first dot.
    fn label(&self) -> &str {
        if self.local || self.host.parse::<std::net::IpAddr>().is_ok() {
            &self.host
        } else {
            self.host.split('.').next().unwrap_or(&self.host)
        }
    }

    /// Parses `[user@]host[:port]`; an IPv6 address with a port is `[addr]:port`.
    pub fn parse(s: &str) -> Result<ProbeTarget, ExecError> {
        let bad = |why: String| ExecError::Invalid(format!("`{s}`: {why}"));
        let (user, rest) = match s.rsplit_once('@') {
            Some((u, r)) if !u.is_empty() => (Some(u.to_owned()), r),
            Some(_) => return Err(bad("empty user name before `@`".into())),
            None => (None, s),
        };
        let port = |p: &str| {
            p.parse()
                .map_err(|_| bad(format!("`{p}` is not a port number")))
        };
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("`[` without `]`".into()))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(port(p)?),
                None if after.is_empty() => None,
                None => return Err(bad(format!("unexpected `{after}` after `]`"))),
            };
            (h.to_owned(), port)
        } else if rest.matches(':').count() == 1 {
            let (h, p) = rest.split_once(':').expect("one colon");
            (h.to_owned(), Some(port(p)?))
        } else {
            (rest.to_owned(), None)
        };
        if host.is_empty() {
            return Err(bad("no host name".into()));
        }
        Ok(ProbeTarget {
            user,
            host,
            port,
            local: false,
        })
    }
}

#[derive(Clone, Debug)]
pub struct ProbeSettings {
    pub connect: ConnectSettings,
    pub identity_file: Option<PathBuf>,
}

/// Probes every target; prints nothing itself. Fails listing every host
/// that could not be probed.
pub fn probe(targets: &[ProbeTarget], s: &ProbeSettings) -> Result<Vec<HostEntry>, ExecError> {
    let results = par_map(targets, |t| probe_one(t, s));
    let mut entries = all_or_failures(results, ToString::to_string, |failed, total| {
        format!("cannot probe {failed} of {total} hosts")
    })?;
    // Host names must be unique in an inventory.
    for i in 1..entries.len() {
        let base = entries[i].name.clone();
        let mut k = 2;
        while entries[..i].iter().any(|e| e.name == entries[i].name) {
            entries[i].name = format!("{base}-{k}");
            k += 1;
        }
    }
    Ok(entries)
}

/// The entries as an inventory document.
pub fn to_yaml(entries: &[HostEntry]) -> String {
    let inventory = InventoryFile {
        hosts: entries.to_vec(),
    };
    serde_yaml_ng::to_string(&inventory).expect("inventory entries serialise")
}

/// Why one host could not be probed.
#[derive(Debug, thiserror::Error)]
enum ProbeFailure {
    /// Names its host.
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("host `{host}`: reported no memory size (no /proc/meminfo, no hw.memsize)")]
    NoMemorySize { host: String },
}

fn probe_one(t: &ProbeTarget, s: &ProbeSettings) -> Result<HostEntry, ProbeFailure> {
    let conn = if t.local {
        Connection::Local
    } else {
        Connection::Ssh {
            user: t.user.clone(),
            port: t.port,
            identity_file: s.identity_file.as_ref().map(|p| p.display().to_string()),
        }
    };
    let host = Host::connect(t.label(), &t.host, &conn, &s.connect)?;
    let out = host.perform_checked(&script::probe())?;
    entry_from(t, s, &Report::parse(&out.stdout_str()))
}

/// Builds the entry from the probe script's report.
fn entry_from(t: &ProbeTarget, s: &ProbeSettings, r: &Report) -> Result<HostEntry, ProbeFailure> {
    let meminfo = r.section("meminfo");
    let (total, available) = match (
        meminfo_field(&meminfo, "MemTotal"),
        meminfo_field(&meminfo, "MemAvailable"),
    ) {
        (Some(t), Some(a)) => (t, a),
        _ => match r.number("memsize") {
            // macOS: no "available" counter comparable to Linux's; the
            // total is what the inventory's usable-memory rule caps anyway.
            Some(m) => (m, m),
            None => {
                return Err(ProbeFailure::NoMemorySize {
                    host: t.label().to_owned(),
                })
            }
        },
    };
    let gpu_mib: Vec<u64> = r
        .section("nvidia")
        .iter()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let vram = (!gpu_mib.is_empty()).then(|| size(gpu_mib.iter().sum::<u64>() << 20));
    let hostname = r.get("hostname").unwrap_or("").trim();
    let name = hostname
        .split('.')
        .next()
        .filter(|n| !n.is_empty())
        .unwrap_or(t.label());
    let os = r
        .get("uname")
        .unwrap_or("")
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_owned();
    let ssh = SshEntry {
        user: t.user.clone(),
        port: t.port,
        identity_file: s.identity_file.as_ref().map(|p| p.display().to_string()),
    };
    Ok(HostEntry {
        name: name.to_owned(),
        address: Some(t.host.clone()),
        ansible_host: None,
        connection: if t.local {
            inventory::Connection::Local
        } else {
            inventory::Connection::Ssh
        },
        ssh: (!t.local && ssh != SshEntry::default()).then_some(ssh),
        ansible_user: None,
        ansible_port: None,
        memory: MemoryEntry {
            total: SizeSpec::Text(size(total)),
            available: Some(SizeSpec::Text(size(available))),
        },
        vram: vram.map(SizeSpec::Text),
        gpu_layers: None,
        threads: r.number("cores").map(|c| c as u32).filter(|&c| c > 0),
        backends: build_backends(!gpu_mib.is_empty(), &os),
        rdma: Default::default(),
        model_dir: None,
    })
}

/// The backend tags (`docs/architecture.md`, "Backend tags") this build of
/// skulk can run on a host with (or without) an NVIDIA GPU and the given
/// `uname -s`. A build without the engine runs none itself, and lists what a
/// default build runs on any host, `llama_cpp-cpu` (see
/// [`ENGINELESS_BACKENDS_WARNING`]): an inventory host needs at least one tag.
pub fn build_backends(nvidia_gpu: bool, os: &str) -> Vec<String> {
    let computes = [
        (cfg!(feature = "cuda") && nvidia_gpu, Compute::Cuda),
        (cfg!(feature = "metal") && os == "Darwin", Compute::Metal),
        (cfg!(feature = "vulkan"), Compute::Vulkan),
        (true, Compute::Cpu),
    ];
    computes
        .into_iter()
        .filter(|(has, _)| *has)
        .map(|(_, compute)| BackendTag::new(SKULK_ENGINE, compute).to_string())
        .collect()
}

/// What `inventory probe` says on a build without the engine, whose entries
/// list the backends of a default build rather than its own (none).
pub const ENGINELESS_BACKENDS_WARNING: Option<&str> = if cfg!(feature = "engine") {
    None
} else {
    Some(
        "this skulk is built without the llama.cpp engine; `backends` lists `llama_cpp-cpu`, \
         what a default build runs on these hosts\n\n\
         hint: edit `backends` where a host runs a GPU build of skulk",
    )
};

/// Bytes as an inventory size, rounded down: `NGiB` when whole, else `NMiB`.
pub fn size(bytes: u64) -> String {
    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;
    if bytes % GIB == 0 {
        format!("{}GiB", bytes / GIB)
    } else {
        format!("{}MiB", bytes / MIB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        let t = |user: Option<&str>, host: &str, port| ProbeTarget {
            user: user.map(str::to_owned),
            host: host.to_owned(),
            port,
            local: false,
        };
        assert_eq!(ProbeTarget::parse("h").unwrap(), t(None, "h", None));
        assert_eq!(
            ProbeTarget::parse("u@h:2222").unwrap(),
            t(Some("u"), "h", Some(2222))
        );
        assert_eq!(
            ProbeTarget::parse("fd00::1").unwrap(),
            t(None, "fd00::1", None)
        );
        assert_eq!(
            ProbeTarget::parse("u@[fd00::1]:22").unwrap(),
            t(Some("u"), "fd00::1", Some(22))
        );
        assert!(ProbeTarget::parse("h:x")
            .unwrap_err()
            .to_string()
            .contains("`x` is not a port number"));
        assert!(ProbeTarget::parse("@h").is_err());
        // An address is one name, not split at its dots.
        assert_eq!(
            ProbeTarget::parse("127.0.0.11").unwrap().label(),
            "127.0.0.11"
        );
        assert_eq!(ProbeTarget::parse("gpu-1.lan").unwrap().label(), "gpu-1");
    }

    /// Probing this machine gives a document that the inventory schema and
    /// `inventory::parse` accept, with or without the engine (run the lib
    /// tests with `--no-default-features` for the second).
    #[test]
    fn this_machine_probes_without_ssh_as_a_valid_local_inventory() {
        let s = ProbeSettings {
            connect: ConnectSettings::default(),
            identity_file: Some("~/.ssh/k".into()),
        };
        let e = probe(&[ProbeTarget::local()], &s).unwrap().remove(0);
        assert_eq!(e.connection, inventory::Connection::Local);
        assert_eq!(e.address.as_deref(), Some(LOCAL_ADDRESS));
        assert_eq!(e.ssh, None);
        assert!(e.threads.is_some_and(|t| t > 0), "{e:?}");
        let yaml = to_yaml(&[e]);
        assert!(yaml.contains("connection: local"), "{yaml}");
        assert!(!yaml.contains("ssh:"), "{yaml}");
        let v: serde_json::Value = serde_yaml_ng::from_str(&yaml).unwrap();
        let schema = crate::schema::validator(crate::schema::SchemaKind::Inventory).unwrap();
        let problems: Vec<String> = schema.iter_errors(&v).map(|e| e.to_string()).collect();
        assert!(problems.is_empty(), "{yaml}\n{problems:?}");
        let parsed = inventory::parse(&v).unwrap();
        let tags = &parsed.hosts()[0].backends;
        assert!(!tags.is_empty(), "{yaml}");
        assert_eq!(
            ENGINELESS_BACKENDS_WARNING.is_some(),
            !cfg!(feature = "engine")
        );
    }

    /// The one host type reads back what it writes.
    #[test]
    fn a_probed_entry_round_trips_through_the_host_type() {
        let r = Report::parse("hostname=h\nuname=Linux\ncores=4\nmemsize=8589934592\n");
        let s = ProbeSettings {
            connect: ConnectSettings::default(),
            identity_file: None,
        };
        let e = entry_from(&ProbeTarget::parse("u@10.0.0.7:2222").unwrap(), &s, &r).unwrap();
        let yaml = to_yaml(std::slice::from_ref(&e));
        let back: InventoryFile = serde_yaml_ng::from_str(&yaml).unwrap();
        assert_eq!(back.hosts, vec![e], "{yaml}");
    }

    #[test]
    fn an_entry_is_built_from_the_report() {
        let r = Report::parse(
            "hostname=gpu-1.lan\nuname=Linux x86_64\ncores=16\nmemsize=\n::begin meminfo\nMemTotal: 33554432 kB\nMemAvailable: 30000000 kB\n::end\n::begin nvidia\n24576\n::end\n",
        );
        let s = ProbeSettings {
            connect: ConnectSettings::default(),
            identity_file: Some("~/.ssh/k".into()),
        };
        let t = ProbeTarget::parse("skulk@10.0.0.5").unwrap();
        let e = entry_from(&t, &s, &r).unwrap();
        assert_eq!(e.name, "gpu-1");
        assert_eq!(
            e.memory,
            MemoryEntry {
                total: SizeSpec::Text("32GiB".into()),
                available: Some(SizeSpec::Text("29296MiB".into())),
            }
        );
        assert_eq!(e.vram, Some(SizeSpec::Text("24GiB".into())));
        assert_eq!(e.threads, Some(16));
        let yaml = to_yaml(&[e]);
        assert!(
            yaml.contains("ssh:\n    user: skulk\n    identityFile: ~/.ssh/k\n"),
            "{yaml}"
        );
    }

    #[test]
    fn sizes_round_down() {
        assert_eq!(size(3 << 30), "3GiB");
        assert_eq!(size((3 << 30) + (1 << 20) + 5), "3073MiB");
    }
}
