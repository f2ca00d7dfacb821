//! Inventories: the machines a plan may use, in ring order.
//!
//! An inventory file deserialises into [`InventoryFile`] (strict: an unknown
//! field is an error; sizes are still text; Ansible's `ansible_host`,
//! `ansible_user` and `ansible_port` sit beside the native keys), and
//! `TryFrom` turns that into an [`Inventory`] that cannot be invalid: host
//! names are unique, no two hosts share an address and SSH port, every size
//! is a positive whole number of bytes no larger than [`MAX_HOST_BYTES`],
//! available memory never exceeds total memory, every backend tag is known,
//! and every RDMA peer is another host of the inventory. Each problem names
//! its host and field with a JSON pointer (`/hosts/2/memory/total`), and all
//! problems are reported at once. No I/O: the caller reads the file.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::backend::BackendTag;
use crate::settings::paths::DEFAULT_MODEL_DIR;
use crate::settings::ports::DEFAULT_SSH_PORT;

/// Largest memory size accepted for one host: 1 PiB. Far above any machine
/// (the largest single-system RAM sold is a few dozen TiB), and low enough
/// that the planner's exact integer arithmetic on sums over a hundred
/// thousand hosts cannot overflow 128 bits.
pub const MAX_HOST_BYTES: u64 = 1 << 50;

/// A size written as a bare number below this (1 MiB) is taken for a
/// forgotten unit (`total: 16` meaning 16 GiB), not for bytes: no host has
/// less memory than that.
pub const MIN_BARE_BYTES: u64 = 1 << 20;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;
const PIB: u64 = 1 << 50;

// ---------------------------------------------------------------------------
// The file as written
// ---------------------------------------------------------------------------

/// An inventory: the machines skulk may place ranks on. Hosts are listed in
/// ring order; the order is the user's intent and becomes the plan's rank
/// order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "Inventory")]
pub struct InventoryFile {
    /// The hosts, in ring order.
    pub hosts: Vec<HostEntry>,
}

/// One machine (or one slice of a machine: several ranks on one machine are
/// several hosts with distinct addresses).
//
// The one host type of the file format: read here and written by `skulk
// inventory probe`; written, a field left at its default is left out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("anyOf" = [{"required": ["address"]}, {"required": ["ansible_host"]}]))]
pub struct HostEntry {
    /// Unique name; the plan's node id for this host. Letters, digits, `.`,
    /// `_` and `-`, not starting with `-`.
    pub name: String,
    /// SSH target, ring address and (rank 0) API address: an IP address or
    /// a host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Ansible's name for `address`; give one of the two.
    #[serde(
        default,
        rename = "ansible_host",
        skip_serializing_if = "Option::is_none"
    )]
    pub ansible_host: Option<String>,
    /// How skulk reaches the host: `ssh` (default) or `local` (spawn on this
    /// machine, no SSH).
    #[serde(default)]
    pub connection: Connection,
    /// SSH settings; all optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshEntry>,
    /// Ansible's name for `ssh.user`.
    #[serde(
        default,
        rename = "ansible_user",
        skip_serializing_if = "Option::is_none"
    )]
    pub ansible_user: Option<String>,
    /// Ansible's name for `ssh.port`.
    #[serde(
        default,
        rename = "ansible_port",
        skip_serializing_if = "Option::is_none"
    )]
    pub ansible_port: Option<u16>,
    /// The host's memory (for a slice of a machine: its share).
    pub memory: MemoryEntry,
    /// Discrete GPU memory. When given, it is the host's usable memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vram: Option<SizeSpec>,
    /// Layers of this host's rank to offload to its GPU: `all`, a count, or
    /// 0. Default: `all` for a host with `vram` or a GPU backend, else 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_layers: Option<GpuLayers>,
    /// Compute threads for this host's rank (default: the host's cores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub threads: Option<u32>,
    /// Backend tags the host can run (`<engine>` or `<engine>-<compute>`,
    /// e.g. `llama_cpp-cpu`, `mlx-metal`).
    #[schemars(length(min = 1))]
    pub backends: Vec<String>,
    /// RDMA interface on this host towards each named peer host, for jaccl
    /// plans (`{studio-b: rdma_en3}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rdma: BTreeMap<String, String>,
    /// Where the host keeps models (default `~/.cache/skulk/models`; `~`, `~/x`
    /// and a relative path are under the login user's home directory on the
    /// host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_dir: Option<String>,
}

/// A host's memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MemoryEntry {
    /// Total RAM.
    pub total: SizeSpec,
    /// RAM free for the model (default: `total`). Usable memory is the
    /// smaller of this and 75% of `total`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available: Option<SizeSpec>,
}

/// SSH settings for one host.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SshEntry {
    /// Login user (default: the user running `skulk apply`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// SSH port (default 22).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub port: Option<u16>,
    /// Private key file on the machine running `skulk apply` (`~`, `~/x` and a
    /// relative path are under that machine's home directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_file: Option<String>,
}

/// How skulk reaches a host.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Connection {
    /// Over SSH.
    #[default]
    Ssh,
    /// On the machine running skulk, without SSH.
    Local,
}

impl fmt::Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Connection::Ssh => "ssh",
            Connection::Local => "local",
        })
    }
}

/// A size as written: integer bytes, or text such as `30GiB`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SizeSpec {
    Bytes(u64),
    Text(String),
}

impl<'de> Deserialize<'de> for SizeSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = SizeSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size: integer bytes or a string such as `30GiB`")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SizeSpec, E> {
                Ok(SizeSpec::Bytes(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SizeSpec, E> {
                u64::try_from(v)
                    .map(SizeSpec::Bytes)
                    .map_err(|_| E::custom(format!("a size cannot be negative, got `{v}`")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<SizeSpec, E> {
                Err(E::custom(format!(
                    "`{v}` is not a whole number of bytes; write fractional sizes with a unit, as a string such as `1.5GiB`"
                )))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SizeSpec, E> {
                Ok(SizeSpec::Text(v.to_string()))
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

impl Serialize for SizeSpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            SizeSpec::Bytes(b) => serializer.serialize_u64(*b),
            SizeSpec::Text(t) => serializer.serialize_str(t),
        }
    }
}

impl JsonSchema for SizeSpec {
    fn schema_name() -> Cow<'static, str> {
        "Size".into()
    }

    fn json_schema(_generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A size: a string with a binary unit such as `30GiB`, `512MiB`, `1.5GiB` (units B, KiB, MiB, GiB, TiB, PiB, or Kubernetes' Ki, Mi, Gi, Ti, Pi; decimal units such as GB are refused), or integer bytes (at least 1 MiB: a smaller bare number is taken for a missing unit).",
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string"}
            ]
        })
    }
}

/// Layers of a rank to offload to the host's GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuLayers {
    /// Every layer of the rank.
    All,
    /// This many layers (0: none, compute on the CPU).
    Count(u32),
}

impl fmt::Display for GpuLayers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GpuLayers::All => f.write_str("all"),
            GpuLayers::Count(n) => write!(f, "{n}"),
        }
    }
}

impl std::str::FromStr for GpuLayers {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "all" => Ok(GpuLayers::All),
            n => n
                .parse()
                .map(GpuLayers::Count)
                .map_err(|_| format!("expected `all` or a number of layers, got `{n}`")),
        }
    }
}

impl Serialize for GpuLayers {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            GpuLayers::All => serializer.serialize_str("all"),
            GpuLayers::Count(n) => serializer.serialize_u32(*n),
        }
    }
}

impl<'de> Deserialize<'de> for GpuLayers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct GpuLayersVisitor;
        impl Visitor<'_> for GpuLayersVisitor {
            type Value = GpuLayers;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`all` or a number of layers")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<GpuLayers, E> {
                u32::try_from(v)
                    .map(GpuLayers::Count)
                    .map_err(|_| E::custom(format!("`{v}` layers is out of range")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<GpuLayers, E> {
                if v < 0 {
                    return Err(E::custom(format!(
                        "expected `all` or a number of layers, got `{v}`"
                    )));
                }
                self.visit_u64(v as u64)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<GpuLayers, E> {
                if v == "all" {
                    Ok(GpuLayers::All)
                } else {
                    Err(E::custom(format!(
                        "expected `all` or a number of layers, got `{v}`"
                    )))
                }
            }
        }
        deserializer.deserialize_any(GpuLayersVisitor)
    }
}

impl JsonSchema for GpuLayers {
    fn schema_name() -> Cow<'static, str> {
        "GpuLayers".into()
    }

    fn json_schema(_generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "`all`, or a number of layers (0: compute on the CPU).",
            "anyOf": [
                {"const": "all"},
                {"type": "integer", "minimum": 0}
            ]
        })
    }
}

// ---------------------------------------------------------------------------
// The validated inventory
// ---------------------------------------------------------------------------

/// A validated inventory. Only [`TryFrom<InventoryFile>`] (or [`parse`])
/// builds one, so its invariants hold wherever one exists.
#[derive(Debug, Clone, PartialEq)]
pub struct Inventory {
    hosts: Vec<Host>,
}

/// One validated host.
#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    pub name: String,
    pub address: String,
    pub connection: Connection,
    /// `None` for a `local` host.
    pub ssh: Option<SshSettings>,
    pub memory_total: u64,
    /// At most `memory_total`.
    pub memory_available: u64,
    pub vram: Option<u64>,
    pub gpu_layers: Option<GpuLayers>,
    pub threads: Option<u32>,
    /// Known backend tags, at least one.
    pub backends: BTreeSet<String>,
    /// Peer host name -> RDMA interface on this host towards it.
    pub rdma: BTreeMap<String, String>,
    pub model_dir: Option<String>,
}

/// SSH settings of a host, the port resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SshSettings {
    /// Login user (absent: the user running `skulk apply`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// SSH port.
    pub port: u16,
    /// Private key file on the machine running `skulk apply` (`~`, `~/x` and a
    /// relative path are under that machine's home directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_file: Option<String>,
}

impl Inventory {
    /// The hosts in ring order.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The host named `name` and its position.
    pub fn find(&self, name: &str) -> Option<(usize, &Host)> {
        self.hosts.iter().enumerate().find(|(_, h)| h.name == name)
    }
}

impl Host {
    /// The model directory, defaulted.
    pub fn model_dir(&self) -> &str {
        self.model_dir.as_deref().unwrap_or(DEFAULT_MODEL_DIR)
    }
}

/// One problem in an inventory, at a JSON pointer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pointer}: {message}")]
pub struct InventoryError {
    /// JSON pointer to the offending value (`/hosts/2/memory/total`).
    pub pointer: String,
    pub message: String,
}

/// Every problem found in an inventory, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InventoryErrors(pub Vec<InventoryError>);

impl fmt::Display for InventoryErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

/// Deserialises and validates an inventory from a parsed document. Errors
/// carry JSON pointers; a serde error (unknown field, wrong type) comes
/// alone, semantic problems all together.
pub fn parse(value: &serde_json::Value) -> Result<Inventory, InventoryErrors> {
    let file: InventoryFile = serde_path_to_error::deserialize(value).map_err(|err| {
        let pointer = pointer_of(err.path());
        let mut message = err.inner().to_string();
        if let Some(index) = host_index(&pointer) {
            if let Some(name) = value["hosts"][index]["name"].as_str() {
                message = format!("host `{name}`: {message}");
            }
        }
        InventoryErrors(vec![InventoryError { pointer, message }])
    })?;
    Inventory::try_from(file)
}

/// A serde path (`hosts[2].memory.total`) as a JSON pointer.
pub fn pointer_of(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut pointer = String::new();
    for segment in path {
        match segment {
            Segment::Seq { index } => {
                pointer.push('/');
                pointer.push_str(&index.to_string());
            }
            Segment::Map { key } => {
                pointer.push('/');
                pointer.push_str(&crate::card::escape_pointer(key));
            }
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    if pointer.is_empty() {
        pointer.push('/');
    }
    pointer
}

fn host_index(pointer: &str) -> Option<usize> {
    pointer
        .strip_prefix("/hosts/")?
        .split('/')
        .next()?
        .parse()
        .ok()
}

impl TryFrom<InventoryFile> for Inventory {
    type Error = InventoryErrors;

    fn try_from(file: InventoryFile) -> Result<Self, Self::Error> {
        let mut problems = Vec::new();
        if file.hosts.is_empty() {
            problems.push(InventoryError {
                pointer: "/hosts".into(),
                message: "the inventory lists no hosts".into(),
            });
        }
        let all_names: BTreeSet<String> = file.hosts.iter().map(|h| h.name.clone()).collect();
        let mut first_use: HashMap<&str, usize> = HashMap::new();
        for (index, entry) in file.hosts.iter().enumerate() {
            if let Some(first) = first_use.insert(&entry.name, index) {
                first_use.insert(&entry.name, first);
                problems.push(InventoryError {
                    pointer: format!("/hosts/{index}/name"),
                    message: format!(
                        "host `{}`: the name is already used by host {first}",
                        entry.name
                    ),
                });
            }
        }
        let mut hosts = Vec::with_capacity(file.hosts.len());
        for (index, entry) in file.hosts.into_iter().enumerate() {
            if let Some(host) = validate_host(index, entry, &mut problems) {
                hosts.push((index, host));
            }
        }
        cross_host_checks(&hosts, &all_names, &mut problems);
        if problems.is_empty() {
            Ok(Inventory {
                hosts: hosts.into_iter().map(|(_, h)| h).collect(),
            })
        } else {
            Err(InventoryErrors(problems))
        }
    }
}

/// Collects the problems of one host entry under `/hosts/<index>`.
struct HostProblems<'a> {
    index: usize,
    name: String,
    problems: &'a mut Vec<InventoryError>,
    found: bool,
}

impl HostProblems<'_> {
    fn push(&mut self, field: &str, message: impl fmt::Display) {
        self.found = true;
        self.problems.push(InventoryError {
            pointer: format!("/hosts/{}{}", self.index, field),
            message: format!("host `{}`: {message}", self.name),
        });
    }
}

fn validate_host(
    index: usize,
    entry: HostEntry,
    problems: &mut Vec<InventoryError>,
) -> Option<Host> {
    let mut p = HostProblems {
        index,
        name: entry.name.clone(),
        problems,
        found: false,
    };
    if let Some(why) = name_problem(&entry.name) {
        p.push("/name", why);
    }

    let address = match (entry.address, entry.ansible_host) {
        (Some(_), Some(_)) => {
            p.push(
                "/ansible_host",
                "`address` and `ansible_host` name the same field; give one",
            );
            None
        }
        (None, None) => {
            p.push("", "no `address` (or `ansible_host`)");
            None
        }
        (Some(a), None) => Some((a, "/address")),
        (None, Some(a)) => Some((a, "/ansible_host")),
    };
    let address = address.and_then(|(a, field)| match address_problem(&a) {
        Some(why) => {
            p.push(field, why);
            None
        }
        None => Some(a),
    });

    let ssh = resolve_ssh(
        &mut p,
        entry.connection,
        entry.ssh,
        entry.ansible_user,
        entry.ansible_port,
    );

    let total = size_field(&mut p, "/memory/total", "memory total", &entry.memory.total);
    let available = match &entry.memory.available {
        Some(spec) => size_field(&mut p, "/memory/available", "available memory", spec),
        None => total,
    };
    if let (Some(total), Some(available)) = (total, available) {
        if available > total {
            p.push(
                "/memory/available",
                format!(
                    "available memory {} is more than total memory {}",
                    show_bytes(available),
                    show_bytes(total)
                ),
            );
        }
    }
    let vram = entry
        .vram
        .as_ref()
        .map(|spec| size_field(&mut p, "/vram", "vram", spec));

    if entry.threads == Some(0) {
        p.push("/threads", "`threads` must be at least 1");
    }

    let mut backends = BTreeSet::new();
    if entry.backends.is_empty() {
        p.push(
            "/backends",
            "lists no backends; name at least one, e.g. `llama_cpp-cpu`",
        );
    }
    for (i, tag) in entry.backends.iter().enumerate() {
        if let Err(e) = tag.parse::<BackendTag>() {
            p.push(&format!("/backends/{i}"), e.to_string());
        } else if !backends.insert(tag.clone()) {
            p.push(
                &format!("/backends/{i}"),
                format!("backend `{tag}` is listed twice"),
            );
        }
    }

    for (peer, iface) in &entry.rdma {
        let field = format!("/rdma/{}", crate::card::escape_pointer(peer));
        if *peer == entry.name {
            p.push(
                &field,
                "an RDMA interface towards the host itself makes no sense",
            );
        }
        if iface.trim().is_empty() || iface.chars().any(char::is_whitespace) {
            p.push(&field, format!("`{iface}` is not an interface name"));
        }
    }

    if let Some(dir) = &entry.model_dir {
        if dir.trim().is_empty() {
            p.push("/modelDir", "`modelDir` is empty");
        } else if dir.contains('\0') || dir.contains('\n') {
            p.push("/modelDir", "`modelDir` contains a control character");
        }
    }

    if p.found {
        return None;
    }
    Some(Host {
        name: entry.name,
        address: address?,
        connection: entry.connection,
        ssh,
        memory_total: total?,
        memory_available: available?,
        vram: vram.flatten(),
        gpu_layers: entry.gpu_layers,
        threads: entry.threads,
        backends,
        rdma: entry.rdma,
        model_dir: entry.model_dir,
    })
}

fn resolve_ssh(
    p: &mut HostProblems<'_>,
    connection: Connection,
    ssh: Option<SshEntry>,
    ansible_user: Option<String>,
    ansible_port: Option<u16>,
) -> Option<SshSettings> {
    if connection == Connection::Local {
        if ssh.is_some() {
            p.push(
                "/ssh",
                "`ssh` settings do not apply to a `connection: local` host",
            );
        }
        if ansible_user.is_some() {
            p.push(
                "/ansible_user",
                "`ansible_user` does not apply to a `connection: local` host",
            );
        }
        if ansible_port.is_some() {
            p.push(
                "/ansible_port",
                "`ansible_port` does not apply to a `connection: local` host",
            );
        }
        return None;
    }
    let ssh = ssh.unwrap_or(SshEntry {
        user: None,
        port: None,
        identity_file: None,
    });
    let user = match (ssh.user, ansible_user) {
        (Some(_), Some(_)) => {
            p.push(
                "/ansible_user",
                "`ssh.user` and `ansible_user` name the same field; give one",
            );
            None
        }
        (Some(u), None) => Some((u, "/ssh/user")),
        (None, Some(u)) => Some((u, "/ansible_user")),
        (None, None) => None,
    };
    let user = user.and_then(|(u, field)| {
        if u.is_empty()
            || u.starts_with('-')
            || u.chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '@')
        {
            p.push(field, format!("`{u}` is not a user name"));
            None
        } else {
            Some(u)
        }
    });
    let port = match (ssh.port, ansible_port) {
        (Some(_), Some(_)) => {
            p.push(
                "/ansible_port",
                "`ssh.port` and `ansible_port` name the same field; give one",
            );
            DEFAULT_SSH_PORT
        }
        (Some(port), None) => checked_port(p, port, "/ssh/port"),
        (None, Some(port)) => checked_port(p, port, "/ansible_port"),
        (None, None) => DEFAULT_SSH_PORT,
    };
    if let Some(file) = &ssh.identity_file {
        if file.trim().is_empty() {
            p.push("/ssh/identityFile", "`identityFile` is empty");
        }
    }
    Some(SshSettings {
        user,
        port,
        identity_file: ssh.identity_file,
    })
}

fn checked_port(p: &mut HostProblems<'_>, port: u16, field: &str) -> u16 {
    if port == 0 {
        p.push(field, "port 0 is not a port");
    }
    port
}

fn size_field(p: &mut HostProblems<'_>, field: &str, what: &str, spec: &SizeSpec) -> Option<u64> {
    let (bytes, bare) = match spec {
        SizeSpec::Bytes(b) => (*b, true),
        SizeSpec::Text(text) => match parse_size(text) {
            Ok(b) => (b, text.trim().bytes().all(|c| c.is_ascii_digit())),
            Err(err) => {
                p.push(field, err);
                return None;
            }
        },
    };
    if bytes == 0 {
        p.push(field, format!("{what} is zero"));
        return None;
    }
    if bare && bytes < MIN_BARE_BYTES {
        let unit = if bytes <= 4096 { "GiB" } else { "MiB" };
        p.push(
            field,
            format!(
                "{what} `{bytes}` has no unit, so it means {bytes} bytes; did you mean `{bytes}{unit}`? (a number without a unit is bytes)"
            ),
        );
        return None;
    }
    if bytes > MAX_HOST_BYTES {
        p.push(
            field,
            format!(
                "{what} {} is more than the 1 PiB skulk supports",
                show_bytes(bytes)
            ),
        );
        return None;
    }
    Some(bytes)
}

/// `12884901888 (12.00 GiB)`, for messages.
fn show_bytes(bytes: u64) -> String {
    format!("`{bytes}` bytes ({:.2} GiB)", bytes as f64 / GIB as f64)
}

fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("the host name is empty".into());
    }
    if name.starts_with('-')
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Some(format!(
            "`{name}` is not a valid host name: use letters, digits, `.`, `_` and `-`, not starting with `-`"
        ));
    }
    None
}

pub(crate) fn address_problem(address: &str) -> Option<String> {
    if address.parse::<IpAddr>().is_ok() {
        return None;
    }
    let valid_hostname = !address.is_empty()
        && address.len() <= 253
        && address.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if valid_hostname {
        None
    } else {
        Some(format!(
            "`{address}` is neither an IP address nor a host name"
        ))
    }
}

/// The canonical form of an address for comparisons: IP addresses in their
/// standard text form, host names in lower case.
pub fn canonical_address(address: &str) -> String {
    match address.parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => address.to_ascii_lowercase(),
    }
}

fn cross_host_checks(
    hosts: &[(usize, Host)],
    all_names: &BTreeSet<String>,
    problems: &mut Vec<InventoryError>,
) {
    let mut names: BTreeSet<&str> = BTreeSet::new();
    let mut endpoints: HashMap<String, &str> = HashMap::new();
    for (index, host) in hosts {
        if !names.insert(&host.name) {
            continue; // reported with the raw entries
        }
        let endpoint = match &host.ssh {
            Some(ssh) => format!("{}:{}", canonical_address(&host.address), ssh.port),
            None => format!("local {}", canonical_address(&host.address)),
        };
        if let Some(other) = endpoints.insert(endpoint, &host.name) {
            let what = match &host.ssh {
                Some(ssh) => format!("address and SSH port `{}:{}`", host.address, ssh.port),
                None => format!("local address `{}`", host.address),
            };
            problems.push(InventoryError {
                pointer: format!("/hosts/{index}/address"),
                message: format!("host `{}`: same {what} as host `{other}`", host.name),
            });
        }
    }
    for (index, host) in hosts {
        for peer in host.rdma.keys() {
            if *peer != host.name && !all_names.contains(peer) {
                problems.push(InventoryError {
                    pointer: format!("/hosts/{index}/rdma/{}", crate::card::escape_pointer(peer)),
                    message: format!(
                        "host `{}`: RDMA peer `{peer}` is not a host of this inventory",
                        host.name
                    ),
                });
            }
        }
    }
    // Stable: within a host, problems stay in the order they were found.
    problems.sort_by_key(|problem| host_index(&problem.pointer).unwrap_or(0));
}

// ---------------------------------------------------------------------------
// Sizes
// ---------------------------------------------------------------------------

/// Why a size text is not a size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error(
        "`{0}` is not a size: expected a number and a unit, such as `30GiB`, `512MiB` or `1.5GiB`"
    )]
    Malformed(String),
    #[error("`{text}` has the decimal unit `{unit}`, which skulk refuses: memory comes in binary units (B, KiB, MiB, GiB, TiB, PiB, or Kubernetes' Ki to Pi), and `1GB` is 7% less than `1GiB`; did you mean `{suggestion}`?")]
    DecimalUnit {
        text: String,
        unit: String,
        /// The size in the binary unit of the same letter (`16GiB`).
        suggestion: String,
    },
    #[error("`{text}` has the unit `{unit}`, which skulk does not know; sizes use the binary units B, KiB, MiB, GiB, TiB and PiB (or Kubernetes' Ki to Pi){suggestion}")]
    UnknownUnit {
        text: String,
        unit: String,
        /// `; did you mean `16GiB`?`, or empty.
        suggestion: String,
    },
    #[error("`{0}` is not a whole number of bytes")]
    FractionalBytes(String),
    #[error("`{0}` is too large")]
    TooLarge(String),
}

/// Parses `30GiB`, `512 MiB`, `1.5GiB`, `1024B` or `1024` into bytes, with
/// exact integer arithmetic. A fraction of a unit rounds to the nearest
/// byte, halves up (`0.3KiB` = 307.2 bytes -> 307).
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let trimmed = text.trim();
    let malformed = || SizeError::Malformed(text.to_string());
    let number_end = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(number_end);
    let unit = unit.strip_prefix(' ').unwrap_or(unit);
    let (whole, fraction) = match number.split_once('.') {
        Some((w, f)) => (w, f),
        None => (number, ""),
    };
    if whole.is_empty()
        || (number.contains('.') && fraction.is_empty())
        || fraction.contains('.')
        || fraction.len() > 18
    {
        return Err(malformed());
    }
    let multiplier = match unit {
        "" | "B" => 1,
        "KiB" | "Ki" => KIB,
        "MiB" | "Mi" => MIB,
        "GiB" | "Gi" => GIB,
        "TiB" | "Ti" => TIB,
        "PiB" | "Pi" => PIB,
        _ => {
            if unit.is_empty() || !unit.chars().all(|c| c.is_ascii_alphabetic()) {
                return Err(malformed());
            }
            let lower = unit.to_ascii_lowercase();
            let binary = match lower.as_str() {
                "k" | "kb" | "kib" | "ki" => Some("KiB"),
                "m" | "mb" | "mib" | "mi" => Some("MiB"),
                "g" | "gb" | "gib" | "gi" => Some("GiB"),
                "t" | "tb" | "tib" | "ti" => Some("TiB"),
                "p" | "pb" | "pib" | "pi" => Some("PiB"),
                "b" | "bytes" | "byte" => Some("B"),
                _ => None,
            };
            let decimal = matches!(
                lower.as_str(),
                "k" | "kb" | "m" | "mb" | "g" | "gb" | "t" | "tb" | "p" | "pb"
            );
            return Err(match binary {
                Some(u) if decimal => SizeError::DecimalUnit {
                    text: text.to_string(),
                    unit: unit.to_string(),
                    suggestion: format!("{number}{u}"),
                },
                _ => SizeError::UnknownUnit {
                    text: text.to_string(),
                    unit: unit.to_string(),
                    suggestion: binary
                        .map(|u| format!("; did you mean `{number}{u}`?"))
                        .unwrap_or_default(),
                },
            });
        }
    };
    let too_large = || SizeError::TooLarge(text.to_string());
    let whole: u128 = whole.parse().map_err(|_| too_large())?;
    let mut bytes = whole
        .checked_mul(multiplier as u128)
        .ok_or_else(too_large)?;
    if !fraction.is_empty() {
        if multiplier == 1 && fraction.bytes().any(|b| b != b'0') {
            return Err(SizeError::FractionalBytes(text.to_string()));
        }
        let scale = 10u128.pow(fraction.len() as u32);
        let numerator: u128 = fraction.parse().map_err(|_| malformed())?;
        // numerator < 10^18 and multiplier <= 2^50: the product fits in u128.
        bytes += (numerator * multiplier as u128 + scale / 2) / scale;
    }
    u64::try_from(bytes).map_err(|_| too_large())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn host(name: &str, address: &str) -> serde_json::Value {
        json!({
            "name": name,
            "address": address,
            "memory": {"total": "32GiB", "available": "30GiB"},
            "backends": ["llama_cpp-cpu"]
        })
    }

    fn errors(value: serde_json::Value) -> Vec<(String, String)> {
        parse(&value)
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| (e.pointer, e.message))
            .collect()
    }

    fn pointers(value: serde_json::Value) -> Vec<String> {
        errors(value).into_iter().map(|(p, _)| p).collect()
    }

    #[test]
    fn sizes_parse_with_exact_integer_arithmetic() {
        assert_eq!(parse_size("30GiB").unwrap(), 30 * GIB);
        assert_eq!(parse_size("512MiB").unwrap(), 512 * MIB);
        assert_eq!(parse_size("1.5GiB").unwrap(), 3 * GIB / 2);
        assert_eq!(parse_size("512 MiB").unwrap(), 512 * MIB);
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("1024B").unwrap(), 1024);
        assert_eq!(parse_size("2TiB").unwrap(), 2 * TIB);
        assert_eq!(parse_size("0.3KiB").unwrap(), 307);
        assert_eq!(
            parse_size("0.5B").unwrap_err(),
            SizeError::FractionalBytes("0.5B".into())
        );
        assert_eq!(parse_size("3.0B").unwrap(), 3);
        // 0.1 GiB is 107374182.4 bytes: rounds to the nearest byte.
        assert_eq!(parse_size("0.1GiB").unwrap(), 107_374_182);
        assert_eq!(parse_size("0.15GiB").unwrap(), 161_061_274);
        // Kubernetes spells the binary units without the B.
        assert_eq!(parse_size("16Gi").unwrap(), 16 * GIB);
        assert_eq!(parse_size("512Mi").unwrap(), 512 * MIB);
    }

    #[test]
    fn a_bare_number_under_a_mebibyte_is_a_missing_unit() {
        let mut h = host("a", "10.0.0.1");
        h["memory"] = json!({"total": 16, "available": "16"});
        let errs = errors(json!({"hosts": [h.clone()]}));
        assert_eq!(
            errs,
            [
                (
                    "/hosts/0/memory/total".to_string(),
                    "host `a`: memory total `16` has no unit, so it means 16 bytes; did you mean `16GiB`? (a number without a unit is bytes)".to_string()
                ),
                (
                    "/hosts/0/memory/available".to_string(),
                    "host `a`: available memory `16` has no unit, so it means 16 bytes; did you mean `16GiB`? (a number without a unit is bytes)".to_string()
                ),
            ]
        );
        // Whole bytes of a real machine are fine.
        h["memory"] = json!({"total": 34_359_738_368u64});
        assert!(parse(&json!({"hosts": [h]})).is_ok());
    }

    #[test]
    fn bad_sizes_are_clear_errors() {
        let err = parse_size("32GB").unwrap_err();
        assert!(matches!(&err, SizeError::DecimalUnit { unit, .. } if unit == "GB"));
        assert!(err.to_string().ends_with("did you mean `32GiB`?"), "{err}");
        assert!(err.to_string().contains("the decimal unit `GB`"), "{err}");
        let err = parse_size("1.5gib").unwrap_err();
        assert!(err.to_string().ends_with("did you mean `1.5GiB`?"), "{err}");
        assert!(matches!(err, SizeError::UnknownUnit { .. }), "{err}");
        for bad in [
            "",
            "GiB",
            ".5GiB",
            "1.GiB",
            "1..2GiB",
            "-1GiB",
            "1 2GiB",
            "1GiB extra",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            parse_size("99999999999PiB").unwrap_err(),
            SizeError::TooLarge(_)
        ));
        assert!(matches!(
            parse_size("99999999999999999999999999999999999999999").unwrap_err(),
            SizeError::TooLarge(_)
        ));
    }

    #[test]
    fn full_host_entry_parses() {
        let inv = parse(&json!({"hosts": [{
            "name": "studio-a",
            "address": "10.0.0.11",
            "connection": "ssh",
            "ssh": {"user": "skulk", "port": 2222, "identityFile": "~/.ssh/id_ed25519"},
            "memory": {"total": "32GiB", "available": "30GiB"},
            "vram": "24GiB",
            "gpuLayers": "all",
            "threads": 8,
            "backends": ["llama_cpp-cpu", "llama_cpp-cuda"],
            "rdma": {"studio-b": "rdma_en3"},
            "modelDir": "/srv/models"
        }, host("studio-b", "10.0.0.12")]}))
        .unwrap();
        let a = &inv.hosts()[0];
        assert_eq!(a.memory_total, 32 * GIB);
        assert_eq!(a.memory_available, 30 * GIB);
        assert_eq!(a.vram, Some(24 * GIB));
        assert_eq!(a.gpu_layers, Some(GpuLayers::All));
        assert_eq!(
            a.ssh,
            Some(SshSettings {
                user: Some("skulk".into()),
                port: 2222,
                identity_file: Some("~/.ssh/id_ed25519".into())
            })
        );
        assert_eq!(a.model_dir(), "/srv/models");
        let b = &inv.hosts()[1];
        assert_eq!(b.ssh.as_ref().unwrap().port, DEFAULT_SSH_PORT);
        assert_eq!(b.model_dir(), DEFAULT_MODEL_DIR);
        assert_eq!(inv.find("studio-b").unwrap().0, 1);
    }

    #[test]
    fn ansible_aliases_fill_address_user_and_port() {
        let inv = parse(&json!({"hosts": [{
            "name": "a",
            "ansible_host": "192.168.1.5",
            "ansible_user": "ops",
            "ansible_port": 2200,
            "memory": {"total": 1073741824u64},
            "backends": ["llama_cpp-cpu"]
        }]}))
        .unwrap();
        let a = &inv.hosts()[0];
        assert_eq!(a.address, "192.168.1.5");
        assert_eq!(a.ssh.as_ref().unwrap().user.as_deref(), Some("ops"));
        assert_eq!(a.ssh.as_ref().unwrap().port, 2200);
        assert_eq!(a.memory_available, GIB, "available defaults to total");
    }

    #[test]
    fn alias_and_native_key_together_are_an_error() {
        let mut h = host("a", "10.0.0.1");
        h["ansible_host"] = json!("10.0.0.2");
        h["ssh"] = json!({"user": "x"});
        h["ansible_user"] = json!("y");
        assert_eq!(
            pointers(json!({"hosts": [h]})),
            ["/hosts/0/ansible_host", "/hosts/0/ansible_user"]
        );
    }

    #[test]
    fn unknown_field_is_an_error_with_a_pointer_and_the_host_name() {
        let mut h = host("a", "10.0.0.1");
        h["memory"]["free"] = json!("1GiB");
        let errs = errors(json!({"hosts": [h]}));
        assert_eq!(errs.len(), 1);
        assert!(errs[0].0.starts_with("/hosts/0/memory"), "{errs:?}");
        assert!(
            errs[0].1.starts_with("host `a`: unknown field `free`"),
            "{errs:?}"
        );
    }

    #[test]
    fn float_size_is_rejected_with_a_hint_to_use_a_unit() {
        let mut h = host("a", "10.0.0.1");
        h["memory"]["total"] = json!(1.5);
        let errs = errors(json!({"hosts": [h]}));
        assert_eq!(errs[0].0, "/hosts/0/memory/total");
        assert!(errs[0].1.contains("`1.5GiB`"), "{errs:?}");
    }

    #[test]
    fn semantic_problems_name_host_and_field() {
        let mut bad_total = host("b", "10.0.0.2");
        bad_total["memory"] = json!({"total": "32GB"});
        let mut zero = host("c", "10.0.0.3");
        zero["memory"] = json!({"total": 0});
        let mut over = host("d", "10.0.0.4");
        over["memory"] = json!({"total": "16GiB", "available": "17GiB"});
        let mut tags = host("e", "10.0.0.5");
        tags["backends"] = json!(["llama_cpp-cpu", "cuda", "llama_cpp-cpu"]);
        let errs = errors(json!({"hosts": [host("a", "10.0.0.1"), bad_total, zero, over, tags]}));
        let got: Vec<&str> = errs.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            got,
            [
                "/hosts/1/memory/total",
                "/hosts/2/memory/total",
                "/hosts/3/memory/available",
                "/hosts/4/backends/1",
                "/hosts/4/backends/2"
            ]
        );
        assert!(
            errs[0]
                .1
                .starts_with("host `b`: `32GB` has the decimal unit `GB`"),
            "{}",
            errs[0].1
        );
        assert_eq!(errs[1].1, "host `c`: memory total is zero");
        assert!(
            errs[2].1.contains("more than total memory"),
            "{}",
            errs[2].1
        );
    }

    #[test]
    fn duplicate_names_and_endpoints_are_errors() {
        let mut same_port = host("c", "10.0.0.1");
        same_port["ssh"] = json!({"port": 22});
        let mut other_port = host("d", "10.0.0.1");
        other_port["ssh"] = json!({"port": 2222});
        let errs = errors(json!({"hosts": [
            host("a", "10.0.0.1"),
            host("a", "10.0.0.2"),
            same_port,
            other_port,
        ]}));
        assert_eq!(
            errs,
            [
                (
                    "/hosts/1/name".to_string(),
                    "host `a`: the name is already used by host 0".to_string()
                ),
                (
                    "/hosts/2/address".to_string(),
                    "host `c`: same address and SSH port `10.0.0.1:22` as host `a`".to_string()
                ),
            ]
        );
    }

    #[test]
    fn ipv6_addresses_compare_canonically() {
        let errs = pointers(json!({"hosts": [host("a", "fe80::1"), host("b", "fe80:0::1")]}));
        assert_eq!(errs, ["/hosts/1/address"]);
    }

    #[test]
    fn rdma_peers_must_be_other_hosts() {
        let mut a = host("a", "10.0.0.1");
        a["rdma"] = json!({"b": "en1", "zz": "en2"});
        let mut b = host("b", "10.0.0.2");
        b["rdma"] = json!({"b": "en0"});
        assert_eq!(
            pointers(json!({"hosts": [a, b]})),
            ["/hosts/0/rdma/zz", "/hosts/1/rdma/b"]
        );
    }

    #[test]
    fn local_hosts_take_no_ssh_settings() {
        let mut a = host("a", "127.0.0.2");
        a["connection"] = json!("local");
        let inv = parse(&json!({"hosts": [a.clone()]})).unwrap();
        assert_eq!(inv.hosts()[0].ssh, None);
        a["ssh"] = json!({"port": 22});
        assert_eq!(pointers(json!({"hosts": [a]})), ["/hosts/0/ssh"]);
    }

    #[test]
    fn names_and_addresses_cannot_smuggle_options() {
        assert_eq!(
            pointers(json!({"hosts": [host("-oProxyCommand=x", "10.0.0.1")]})),
            ["/hosts/0/name"]
        );
        assert_eq!(
            pointers(json!({"hosts": [host("a", "-oProxyCommand=x")]})),
            ["/hosts/0/address"]
        );
        let mut h = host("a", "10.0.0.1");
        h["ssh"] = json!({"user": "-oProxyCommand=x"});
        assert_eq!(pointers(json!({"hosts": [h]})), ["/hosts/0/ssh/user"]);
        assert!(parse(&json!({"hosts": [host("a", "gpu-box.lan")]})).is_ok());
    }

    #[test]
    fn empty_inventory_and_zero_threads_are_errors() {
        assert_eq!(pointers(json!({"hosts": []})), ["/hosts"]);
        let mut h = host("a", "10.0.0.1");
        h["threads"] = json!(0);
        h["gpuLayers"] = json!(0);
        assert_eq!(pointers(json!({"hosts": [h]})), ["/hosts/0/threads"]);
    }

    #[test]
    fn gpu_layers_accepts_all_or_a_count() {
        let mut h = host("a", "10.0.0.1");
        h["gpuLayers"] = json!("some");
        assert_eq!(
            pointers(json!({"hosts": [h.clone()]})),
            ["/hosts/0/gpuLayers"]
        );
        h["gpuLayers"] = json!(12);
        let inv = parse(&json!({"hosts": [h]})).unwrap();
        assert_eq!(inv.hosts()[0].gpu_layers, Some(GpuLayers::Count(12)));
        assert_eq!(serde_json::to_value(GpuLayers::All).unwrap(), json!("all"));
        assert_eq!(serde_json::to_value(GpuLayers::Count(3)).unwrap(), json!(3));
    }

    #[test]
    fn schema_accepts_aliases_and_is_strict() {
        let schema = schemars::schema_for!(InventoryFile).to_value();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let ok = json!({"hosts": [{"name": "a", "ansible_host": "h", "memory": {"total": "1GiB"}, "backends": ["mlx"]}]});
        assert!(validator.is_valid(&ok));
        let no_address =
            json!({"hosts": [{"name": "a", "memory": {"total": 5}, "backends": ["mlx"]}]});
        assert!(!validator.is_valid(&no_address));
        let extra = json!({"hosts": [{"name": "a", "address": "h", "memory": {"total": 5}, "backends": ["mlx"], "x": 1}]});
        assert!(!validator.is_valid(&extra));
    }
}
