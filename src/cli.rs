//! Command-line interface: the only module that knows clap.
//!
//! Each subcommand's arguments are resolved here into the plain settings type
//! of the module that runs it; command modules never see clap types. Exit
//! codes follow design.md: 0 ok, 1 invalid input file or infeasible plan,
//! 2 runtime failure or command-line usage error (clap's own convention).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

/// Run one large language model split across several machines.
///
/// Describe a model once (a card), list your machines once (an inventory),
/// review the deterministic plan, apply it, and talk to the OpenAI-compatible
/// API on rank 0.
#[derive(Debug, Parser)]
#[command(name = "skulk", version, about, long_about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check model-card and inventory files (YAML, JSON, TOML) against the
    /// schema and semantic rules
    Validate(ValidateArgs),
    /// Print a generated JSON schema
    Schema(SchemaArgs),
    /// Place a model on an inventory: ranks, layer ranges, ports, memory
    Plan(PlanArgs),
    /// Start every rank of a plan (over SSH or locally) and wait for the API
    Apply(ApplyArgs),
    /// Show the state of every rank of a plan
    Status(StatusArgs),
    /// Stop every rank of a plan and clean up
    Down(DownArgs),
    /// Show the ranks' logs
    Logs(LogsArgs),
    /// Run one rank of a plan (started by `skulk apply`, or by hand)
    RunShard(RunShardArgs),
    /// Download the model of one rank of a plan onto this host (what
    /// `skulk apply --fetch` runs on each host that lacks it)
    #[command(hide = true)]
    FetchModel(FetchModelArgs),
    /// Answer 503 with Retry-After at a plan's API address (what `skulk
    /// apply --watch` runs on the API host while no ring serves)
    #[command(hide = true)]
    Standby(StandbyArgs),
    /// Create and inspect model cards
    #[command(subcommand)]
    Card(CardCommand),
    /// Inspect hosts for an inventory
    #[command(subcommand)]
    Inventory(InventoryCommand),
    /// Print a shell completion script
    Completions(CompletionsArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
    Github,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Files, directories (searched recursively) or glob patterns
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<String>,
    /// How problems are reported
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
    /// Exit 1 when there are warnings
    #[arg(long)]
    pub deny_warnings: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaKind {
    Card,
    Inventory,
    Plan,
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Which schema
    #[arg(value_enum)]
    pub kind: SchemaKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ShardingArg {
    Pipeline,
    Tensor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InstanceArg {
    Ring,
    Jaccl,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
    Yaml,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Model card file (YAML, JSON or TOML)
    #[arg(long, value_name = "FILE")]
    pub card: PathBuf,
    /// Inventory file (YAML or JSON)
    #[arg(long, value_name = "FILE")]
    pub inventory: PathBuf,
    /// How the model is split
    #[arg(long, value_enum, default_value_t = ShardingArg::Pipeline)]
    pub sharding: ShardingArg,
    /// Instance kind (jaccl needs RDMA interfaces in the inventory)
    #[arg(long, value_enum, default_value_t = InstanceArg::Ring)]
    pub instance: InstanceArg,
    /// Use at least this many hosts
    #[arg(long, value_name = "N", conflicts_with = "nodes")]
    pub min_nodes: Option<u32>,
    /// Never use this host (repeatable)
    #[arg(long, value_name = "NAME", conflicts_with = "nodes")]
    pub exclude: Vec<String>,
    /// Use exactly these hosts, in this ring order
    #[arg(long, value_name = "A,B,C", value_delimiter = ',')]
    pub nodes: Option<Vec<String>>,
    /// Manual layer split over the chosen hosts in ring order
    #[arg(long, value_name = "N,N,N", value_delimiter = ',')]
    pub layers: Option<Vec<u32>>,
    /// Context tokens to budget for (GGUF models default to at most 8192)
    #[arg(long, value_name = "N")]
    pub context: Option<u64>,
    /// Ring port shared by all ranks (default: derived from the inputs)
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Address the API binds to (default: rank 0's address)
    #[arg(long, value_name = "ADDR")]
    pub api_bind: Option<String>,
    /// API port
    #[arg(long, value_name = "PORT", default_value_t = 52415)]
    pub api_port: u16,
    /// Seconds a serving rank waits on a silent ring neighbour before it
    /// declares it lost (default 3; raised automatically on irregular links)
    #[arg(long, value_name = "SECS", value_parser = silence_secs)]
    pub silence_limit: Option<u32>,
    /// Seconds a rank waits on a silent neighbour while the ring forms and
    /// loads (default 60)
    #[arg(long, value_name = "SECS", value_parser = silence_secs)]
    pub loading_silence_limit: Option<u32>,
    /// Output format
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Also write the plan document (JSON) to this file
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Plan document written by `skulk plan --out`
    pub plan: PathBuf,
    /// Trust hosts missing from known_hosts and record their keys
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// known_hosts file (default: ~/.ssh/known_hosts)
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,
    /// Copy this skulk binary to hosts where it is missing or differs
    #[arg(long)]
    pub install: bool,
    /// Download the model on hosts that lack it
    #[arg(long)]
    pub fetch: bool,
    /// Print what would run where, start nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Stop a different plan running on the same hosts first
    #[arg(long)]
    pub replace: bool,
    /// Seconds to wait for the ring to form and the API to answer
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    pub timeout: u64,
    /// File holding the API bearer token (also: SKULK_API_KEY)
    #[arg(long, value_name = "FILE")]
    pub api_key_file: Option<PathBuf>,
    /// Path of skulk on the hosts, and where `--install` puts it (default:
    /// ~/.local/bin/skulk if present, else skulk on the login PATH)
    #[arg(long, value_name = "PATH")]
    pub remote_skulk: Option<String>,
    #[command(flatten)]
    pub watch: WatchArgs,
}

/// `apply --watch` and what only it takes.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Stay in the foreground and keep the plan up: restart a failed ring,
    /// plan around a host lost for longer than `--grace` (with
    /// `--inventory`), move back when it returns. Ctrl-C or `skulk down`
    /// brings the ranks down
    #[arg(long, conflicts_with = "dry_run")]
    pub watch: bool,
    /// The inventory the plan was made from, to plan again without lost
    /// hosts (with `--watch`)
    #[arg(long, value_name = "FILE", requires = "watch")]
    pub inventory: Option<PathBuf>,
    /// Seconds a host may stay unreachable before the plan is made again
    /// without it (with `--watch`)
    #[arg(long, value_name = "SECS", default_value_t = 60, requires = "watch")]
    pub grace: u64,
    /// Longest wait for requests in flight before moving back to the full
    /// plan, in seconds (with `--watch`)
    #[arg(long, value_name = "SECS", default_value_t = 30, requires = "watch")]
    pub drain: u64,
    /// Leave the ranks running when interrupted (with `--watch`; `skulk
    /// down` still brings them down)
    #[arg(long, requires = "watch")]
    pub keep_running: bool,
}

#[derive(Debug, Args)]
pub struct StandbyArgs {
    /// Plan document (its API address and port are served)
    #[arg(long, value_name = "FILE")]
    pub plan: PathBuf,
    /// Seconds clients are told to wait
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    pub retry_after: u32,
    /// Seconds until the listener exits by itself
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub lifetime: u64,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Plan document
    pub plan: PathBuf,
    /// Output format
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// known_hosts file (default: ~/.ssh/known_hosts)
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    /// Plan document
    pub plan: PathBuf,
    /// Also remove the rank-local shard caches
    #[arg(long)]
    pub purge: bool,
    /// Seconds to wait for a graceful stop before killing
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub timeout: u64,
    /// known_hosts file (default: ~/.ssh/known_hosts)
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Plan document
    pub plan: PathBuf,
    /// Only this host
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Keep printing new lines
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// known_hosts file (default: ~/.ssh/known_hosts)
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct FetchModelArgs {
    /// Plan document
    #[arg(long, value_name = "FILE")]
    pub plan: PathBuf,
    /// This host's name in the plan
    #[arg(long, value_name = "NAME")]
    pub node: String,
}

#[derive(Debug, Args)]
pub struct RunShardArgs {
    /// Plan document
    #[arg(long, value_name = "FILE")]
    pub plan: PathBuf,
    /// This host's name in the plan
    #[arg(
        long,
        value_name = "NAME",
        required_unless_present = "rank",
        conflicts_with = "rank"
    )]
    pub node: Option<String>,
    /// This rank's number in the plan
    #[arg(long, value_name = "N")]
    pub rank: Option<u32>,
    /// File holding the ring secret (else read from SKULK_RING_SECRET or stdin)
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// File holding the API bearer token (else SKULK_API_KEY; rank 0 only)
    #[arg(long, value_name = "FILE")]
    pub api_key_file: Option<PathBuf>,
    /// Compute threads (default: the plan's, else the host's cores)
    #[arg(long, value_name = "N")]
    pub threads: Option<u32>,
    /// Layers to offload to the GPU, a count or `all` (default: the plan's)
    #[arg(long, value_name = "N|all")]
    pub gpu_layers: Option<crate::inventory::GpuLayers>,
    /// Number format of the hidden rows this rank sends: f32 is exact; f16
    /// halves the bytes on the wire but rounds (output may differ from one
    /// process). Receivers read either
    #[arg(long, value_enum, default_value_t = Wire::F32)]
    pub wire: Wire,
    /// Seconds to wait for the ring to form
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    pub formation_timeout: u64,
    /// Directory for the rank-local shard cache (default ~/.cache/skulk/shards)
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// File where the rank notes a slow ring neighbour while it is slow
    #[arg(long, value_name = "FILE")]
    pub health_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum CardCommand {
    /// Derive a card from a GGUF file or a Hugging Face repository
    New(CardNewArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CardFormat {
    Yaml,
    Json,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["from_gguf", "from_hf"])))]
pub struct CardNewArgs {
    /// Local GGUF file (only its header is read)
    #[arg(long, value_name = "FILE")]
    pub from_gguf: Option<PathBuf>,
    /// Hugging Face repository `ORG/NAME`
    #[arg(long, value_name = "ORG/NAME")]
    pub from_hf: Option<String>,
    /// Repository revision (branch, tag or commit)
    #[arg(long, value_name = "REV", requires = "from_hf")]
    pub revision: Option<String>,
    /// GGUF file in the repository (default: the preferred quant)
    #[arg(long, value_name = "FILE", requires = "from_hf")]
    pub gguf_file: Option<String>,
    /// Model id of the card (default: `local/<file stem>` or the repository)
    #[arg(long, value_name = "ID")]
    pub model_id: Option<String>,
    /// Output format
    #[arg(short = 'o', long = "output", value_enum, default_value_t = CardFormat::Yaml)]
    pub output: CardFormat,
}

#[derive(Debug, Subcommand)]
pub enum InventoryCommand {
    /// Connect to hosts over SSH and print inventory entries for them
    Probe(ProbeArgs),
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// `[user@]host[:port]`
    #[arg(required = true)]
    pub hosts: Vec<String>,
    /// SSH identity file
    #[arg(long, short = 'i', value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// known_hosts file (default: ~/.ssh/known_hosts)
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,
    /// Trust hosts missing from known_hosts and record their keys
    #[arg(long)]
    pub accept_new_host_keys: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// Shell
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// How a command failed, which decides the exit code.
#[derive(Debug)]
pub enum Failure {
    /// Invalid input file or infeasible plan: exit 1.
    Invalid(anyhow::Error),
    /// Runtime failure (unreachable host, busy port, dead rank): exit 2.
    Runtime(anyhow::Error),
}

impl Failure {
    fn exit_code(&self) -> ExitCode {
        match self {
            Failure::Invalid(_) => ExitCode::from(1),
            Failure::Runtime(_) => ExitCode::from(2),
        }
    }

    fn error(&self) -> &anyhow::Error {
        match self {
            Failure::Invalid(e) | Failure::Runtime(e) => e,
        }
    }
}

pub type CommandResult = Result<ExitCode, Failure>;

/// The clap command, for completions and documentation generators.
pub fn command() -> clap::Command {
    Cli::command()
}

/// Writes the completion script for `shell` to `out`.
pub fn write_completions(shell: clap_complete::Shell, out: &mut dyn Write) {
    clap_complete::generate(shell, &mut command(), "skulk", out);
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(failure) => {
            let _ = writeln!(std::io::stderr(), "error: {:#}", failure.error());
            failure.exit_code()
        }
    }
}

fn run(command: Command) -> CommandResult {
    match command {
        Command::Completions(args) => {
            write_completions(args.shell, &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate(args) => validate(args),
        Command::Schema(args) => schema(args),
        Command::Plan(args) => plan(args),
        Command::Apply(args) => apply(args),
        Command::Status(args) => status(args),
        Command::Down(args) => down(args),
        Command::Logs(args) => logs(args),
        Command::RunShard(args) => run_shard(args),
        Command::FetchModel(args) => fetch_model(args),
        Command::Standby(args) => standby(args),
        Command::Card(CardCommand::New(args)) => card_new(args),
        Command::Inventory(InventoryCommand::Probe(args)) => inventory_probe(args),
    }
}

fn not_built(name: &str) -> CommandResult {
    Err(Failure::Runtime(anyhow::anyhow!(
        "`skulk {name}` is not available in this build yet"
    )))
}

fn validate(args: ValidateArgs) -> CommandResult {
    use crate::validate::{self, Outcome, RunError, Settings};
    let settings = Settings {
        paths: args.paths,
        format: match args.format {
            ReportFormat::Text => validate::ReportFormat::Text,
            ReportFormat::Json => validate::ReportFormat::Json,
            ReportFormat::Github => validate::ReportFormat::Github,
        },
        deny_warnings: args.deny_warnings,
    };
    let mut out = std::io::stdout().lock();
    match validate::run(&settings, &mut out) {
        Ok(Outcome::Valid) => Ok(ExitCode::SUCCESS),
        Ok(Outcome::Invalid) => Ok(ExitCode::from(1)),
        Ok(Outcome::Unreadable) => Ok(ExitCode::from(2)),
        Err(err @ RunError::Collect(_)) => Err(Failure::Runtime(anyhow::Error::new(err))),
        Err(err @ RunError::Write(_)) => Err(Failure::Runtime(anyhow::Error::new(err))),
    }
}

fn schema(args: SchemaArgs) -> CommandResult {
    let kind = match args.kind {
        SchemaKind::Card => crate::schema::SchemaKind::Card,
        SchemaKind::Inventory => crate::schema::SchemaKind::Inventory,
        SchemaKind::Plan => crate::schema::SchemaKind::Plan,
    };
    match crate::schema::schema_text(kind) {
        Some(text) => {
            std::io::stdout()
                .write_all(text.as_bytes())
                .map_err(|e| Failure::Runtime(anyhow::anyhow!("cannot write the schema: {e}")))?;
            Ok(ExitCode::SUCCESS)
        }
        None => not_built(&format!("schema {}", kind.name())),
    }
}

fn plan(args: PlanArgs) -> CommandResult {
    use crate::plan::{self, InstanceKind, PlanDocument, PlanRequest, Sharding};
    let card_value = load_checked(&args.card, "card")?;
    let card: crate::card::ModelCard = crate::card::camelize_keys(card_value)
        .map_err(anyhow::Error::new)
        .and_then(|v| serde_json::from_value(v).map_err(anyhow::Error::new))
        .map_err(|e| Failure::Invalid(e.context(format!("{}", args.card.display()))))?;
    let inventory_value = load_checked(&args.inventory, "inventory")?;
    let inventory = crate::inventory::parse(&inventory_value)
        .map_err(|e| Failure::Invalid(anyhow::anyhow!("{}: {e}", args.inventory.display())))?;
    let request = PlanRequest {
        sharding: match args.sharding {
            ShardingArg::Pipeline => Sharding::Pipeline,
            ShardingArg::Tensor => Sharding::Tensor,
        },
        instance: match args.instance {
            InstanceArg::Ring => InstanceKind::Ring,
            InstanceArg::Jaccl => InstanceKind::Jaccl,
        },
        min_nodes: args.min_nodes,
        exclude: args.exclude,
        nodes: args.nodes,
        layers: args.layers,
        context: args.context,
        port: args.port,
        api_bind: args.api_bind,
        api_port: args.api_port,
        ring: (args.silence_limit.is_some() || args.loading_silence_limit.is_some()).then_some(
            crate::plan::document::RingTimeouts {
                silence_limit_ms: args.silence_limit,
                loading_silence_limit_ms: args.loading_silence_limit,
            },
        ),
    };
    let placed = plan::plan(&card, &inventory, &request).map_err(|e| {
        if e.is_usage() {
            Failure::Runtime(e.into())
        } else {
            Failure::Invalid(e.into())
        }
    })?;
    for note in &placed.notes {
        let _ = writeln!(std::io::stderr(), "note: {note}");
    }
    let document = PlanDocument::from_plan(&placed);
    if let Some(path) = &args.out {
        write_atomically(path, document.to_json().as_bytes()).map_err(|e| {
            Failure::Runtime(anyhow::anyhow!("cannot write `{}`: {e}", path.display()))
        })?;
    }
    let text = match args.output {
        OutputFormat::Table => plan::table::render(&placed, color_stdout()),
        OutputFormat::Json => document.to_json(),
        OutputFormat::Yaml => document.to_yaml(),
    };
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("cannot write the plan: {e}")))?;
    Ok(ExitCode::SUCCESS)
}

/// `--silence-limit SECS` (decimals allowed) as milliseconds, at least one
/// second (two heartbeats).
fn silence_secs(text: &str) -> Result<u32, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if !(1.0..=86_400.0).contains(&secs) {
        return Err(format!(
            "`{text}` is outside 1..86400 seconds (the ranks send a heartbeat every 0.5 s)"
        ));
    }
    Ok((secs * 1000.0).round() as u32)
}

/// Loads a file of a known kind with the checks of `skulk validate`; every
/// error, with its position, fails the command (exit 1; exit 2 when the
/// file cannot be read).
fn load_checked(path: &std::path::Path, kind: &str) -> Result<serde_json::Value, Failure> {
    use crate::validate::DiagnosticSeverity;
    let report = crate::validate::validate_file_as(path, kind);
    if report.errors() > 0 {
        let lines: Vec<String> = report
            .problems
            .iter()
            .filter(|d| d.severity == DiagnosticSeverity::Error)
            .map(|d| {
                let mut line = report.path.clone();
                if let Some(location) = d.location {
                    line.push_str(&format!(":{location}"));
                }
                line.push_str(": ");
                if !d.pointer.is_empty() {
                    line.push_str(&format!("{}: ", d.pointer));
                }
                line.push_str(&d.message);
                line
            })
            .collect();
        let error = anyhow::anyhow!("{}", lines.join("\n"));
        return Err(if report.unreadable {
            Failure::Runtime(error)
        } else {
            Failure::Invalid(error)
        });
    }
    crate::load::load(path)
        .map(|(_, value)| value)
        .map_err(|e| Failure::Runtime(e.into()))
}

/// Colour only for a terminal, and never with `NO_COLOR` set (no-color.org).
fn color_stdout() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Writes `bytes` to `path` through a temporary file in the same directory
/// and a rename, so `path` is either the old file or the whole new one.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"))?;
    let temporary = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

fn apply(args: ApplyArgs) -> CommandResult {
    use crate::exec::apply::{self, ApplySettings};
    let dep = load_deployment(&args.plan)?;
    let settings = ApplySettings {
        connect: connect_settings(args.known_hosts, args.accept_new_host_keys),
        install: args.install,
        fetch: args.fetch,
        dry_run: args.dry_run,
        replace: args.replace,
        timeout: std::time::Duration::from_secs(args.timeout),
        api_key: api_key(args.api_key_file.as_deref())?,
        skulk: apply::skulk_location(args.remote_skulk.as_deref()),
    };
    if args.watch.watch {
        return watch(&args.plan, dep, settings, args.watch);
    }
    apply::apply(&dep, &settings, &mut std::io::stdout()).map_err(exec_failure)?;
    Ok(ExitCode::SUCCESS)
}

fn watch(
    plan: &std::path::Path,
    dep: crate::exec::target::Deployment,
    apply: crate::exec::apply::ApplySettings,
    args: WatchArgs,
) -> CommandResult {
    use crate::exec::supervise::{self, Ending, WatchSettings};
    let settings = WatchSettings {
        apply,
        inventory: args.inventory,
        grace: std::time::Duration::from_secs(args.grace),
        keep_running: args.keep_running,
        drain: std::time::Duration::from_secs(args.drain),
    };
    match supervise::watch(plan, dep, &settings, &mut std::io::stdout()).map_err(exec_failure)? {
        Ending::Serving => Ok(ExitCode::SUCCESS),
        Ending::NotServing(c) => Err(Failure::Runtime(anyhow::anyhow!(
            "stopped while the plan was not serving (it was {})",
            c.as_str()
        ))),
    }
}

fn standby(args: StandbyArgs) -> CommandResult {
    use crate::exec::supervise::standby;
    let addr = standby::api_addr(&args.plan).map_err(|e| Failure::Invalid(e.into()))?;
    standby::serve(
        addr,
        args.retry_after,
        std::time::Duration::from_secs(args.lifetime),
    )
    .map_err(|e| Failure::Runtime(e.into()))?;
    Ok(ExitCode::SUCCESS)
}

fn status(args: StatusArgs) -> CommandResult {
    use crate::exec::{status, supervise};
    let dep = load_deployment(&args.plan)?;
    let key = api_key(None)?;
    // A supervisor running a smaller plan: report on that one.
    let (supervisor, running) = supervise::status_view(&args.plan, &dep).map_err(exec_failure)?;
    let mut report = status::status(
        running.as_ref().unwrap_or(&dep),
        &connect_settings(args.known_hosts, false),
        key.as_deref(),
    );
    report.supervisor = supervisor.map(|s| supervise::state::Summary::of(&s, &dep.endpoint()));
    let text = match args.output {
        OutputFormat::Table => status::render_table(&report),
        OutputFormat::Json => {
            serde_json::to_string_pretty(&report).expect("status serialises") + "\n"
        }
        OutputFormat::Yaml => serde_yaml_ng::to_string(&report).expect("status serialises"),
    };
    print!("{text}");
    Ok(if report.healthy() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

fn down(args: DownArgs) -> CommandResult {
    use crate::exec::down::{self, DownSettings};
    let dep = load_deployment(&args.plan)?;
    let settings = DownSettings {
        connect: connect_settings(args.known_hosts, false),
        purge: args.purge,
        timeout: std::time::Duration::from_secs(args.timeout),
    };
    // A supervisor of the plan stops for good first; a smaller plan it ran
    // goes down too.
    let others = crate::exec::supervise::before_down(&args.plan, &dep).map_err(exec_failure)?;
    let mut result = Ok(());
    for d in others.iter().chain([&dep]) {
        if let Err(e) = down::down(d, &settings) {
            eprintln!("error: {e}");
            result = Err(e);
        }
    }
    crate::exec::supervise::after_down(&args.plan, &dep);
    result.map_err(exec_failure)?;
    Ok(ExitCode::SUCCESS)
}

fn logs(args: LogsArgs) -> CommandResult {
    use crate::exec::logs::{self, LogsSettings, DEFAULT_LINES};
    let dep = load_deployment(&args.plan)?;
    let settings = LogsSettings {
        connect: connect_settings(args.known_hosts, false),
        node: args.node,
        follow: args.follow,
        lines: DEFAULT_LINES,
    };
    logs::logs(&dep, &settings, &mut std::io::stdout()).map_err(exec_failure)?;
    Ok(ExitCode::SUCCESS)
}

fn fetch_model(args: FetchModelArgs) -> CommandResult {
    use crate::plan::document::{PlanDocument, RankSelector};
    let invalid =
        |e: String| Failure::Invalid(anyhow::anyhow!("plan `{}`: {e}", args.plan.display()));
    let text = std::fs::read_to_string(&args.plan).map_err(|e| invalid(e.to_string()))?;
    let doc = PlanDocument::from_json(&text).map_err(|e| invalid(e.to_string()))?;
    let spec = doc
        .rank_spec(RankSelector::Node(&args.node))
        .map_err(|e| invalid(e.to_string()))?;
    let dir = match spec.model_dir.strip_prefix('~') {
        Some(rest) => {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            home.join(rest.trim_start_matches('/'))
        }
        None => PathBuf::from(&spec.model_dir),
    };
    let runtime = |e: anyhow::Error| Failure::Runtime(e);
    let hub = crate::hub::Hub::from_env().map_err(|e| runtime(e.into()))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| runtime(e.into()))?;
    let report = rt
        .block_on(crate::fetch::fetch_card(
            &hub,
            &spec.model_card,
            "main",
            &dir,
            crate::fetch::ProgressMode::Lines,
        ))
        .map_err(|e| runtime(e.into()))?;
    for f in &report.files {
        eprintln!(
            "{}: {} bytes{}",
            f.path.display(),
            f.size,
            if f.already_present {
                " (already present)"
            } else {
                ""
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads a plan document for `apply`, `status`, `down` and `logs`.
fn load_deployment(path: &std::path::Path) -> Result<crate::exec::target::Deployment, Failure> {
    let bytes = std::fs::read(path).map_err(|e| {
        Failure::Invalid(anyhow::anyhow!(
            "cannot read plan `{}`: {e}",
            path.display()
        ))
    })?;
    crate::exec::target::Deployment::from_plan_json(path, bytes).map_err(exec_failure)
}

fn connect_settings(
    known_hosts: Option<PathBuf>,
    accept_new_host_keys: bool,
) -> crate::exec::remote::ConnectSettings {
    crate::exec::remote::ConnectSettings {
        known_hosts,
        accept_new_host_keys,
        ..Default::default()
    }
}

/// The API bearer token: `--api-key-file`, else `SKULK_API_KEY`.
fn api_key(file: Option<&std::path::Path>) -> Result<Option<String>, Failure> {
    let key = match file {
        Some(f) => std::fs::read_to_string(f).map_err(|e| {
            Failure::Invalid(anyhow::anyhow!(
                "cannot read API key file `{}`: {e}",
                f.display()
            ))
        })?,
        None => std::env::var("SKULK_API_KEY").unwrap_or_default(),
    };
    let key = key.trim();
    Ok((!key.is_empty()).then(|| key.to_owned()))
}

fn exec_failure(e: crate::exec::ExecError) -> Failure {
    match e {
        crate::exec::ExecError::Invalid(m) => Failure::Invalid(anyhow::anyhow!(m)),
        e => Failure::Runtime(anyhow::Error::new(e)),
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Wire {
    F32,
    F16,
}

fn run_shard(args: RunShardArgs) -> CommandResult {
    use crate::run_shard::{self, SecretSource, Selector, Settings};
    #[cfg(feature = "openmp")]
    run_shard::bound_openmp_spin();
    let selector = match (args.node, args.rank) {
        (Some(node), _) => Selector::Node(node),
        (None, Some(rank)) => Selector::Rank(rank),
        (None, None) => unreachable!("clap requires --node or --rank"),
    };
    let settings = Settings {
        plan: args.plan,
        selector,
        secret: match args.secret_file {
            Some(path) => SecretSource::File(path),
            None => SecretSource::EnvOrStdin,
        },
        api_key_file: args.api_key_file,
        threads: args.threads,
        gpu_layers: args.gpu_layers,
        wire: match args.wire {
            Wire::F32 => crate::ring::WireFormat::F32,
            Wire::F16 => crate::ring::WireFormat::F16,
        },
        formation_timeout: std::time::Duration::from_secs(args.formation_timeout),
        cache_dir: args.cache_dir,
        health_file: args.health_file,
    };
    match run_shard::run(settings) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(err) if err.is_invalid_input() => Err(Failure::Invalid(err.into())),
        Err(err) => Err(Failure::Runtime(err.into())),
    }
}

fn card_new(args: CardNewArgs) -> CommandResult {
    use crate::cardgen::{self, CardOutput};
    let output = match args.output {
        CardFormat::Yaml => CardOutput::Yaml,
        CardFormat::Json => CardOutput::Json,
    };
    let card = match (&args.from_gguf, &args.from_hf) {
        (Some(path), _) => {
            cardgen::card_from_gguf_path(path, args.model_id.as_deref()).map_err(|e| {
                if e.is_invalid_input() {
                    Failure::Invalid(e.into())
                } else {
                    Failure::Runtime(e.into())
                }
            })?
        }
        (None, Some(repo)) => card_from_hf(repo, &args)?,
        (None, None) => unreachable!("clap requires one source"),
    };
    print!("{}", cardgen::render_card(&card, output));
    Ok(ExitCode::SUCCESS)
}

fn card_from_hf(repo: &str, args: &CardNewArgs) -> Result<crate::card::ModelCard, Failure> {
    use crate::hub::{Hub, RepoId};
    let runtime = |e: anyhow::Error| Failure::Runtime(e);
    let repo = RepoId::parse(repo).map_err(|e| runtime(e.into()))?;
    let hub = Hub::from_env().map_err(|e| runtime(e.into()))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| runtime(e.into()))?;
    let revision = args.revision.as_deref().unwrap_or("main");
    rt.block_on(crate::cardgen::card_from_hf(
        &hub,
        &repo,
        revision,
        args.gguf_file.as_deref(),
        args.model_id.as_deref(),
    ))
    .map_err(|e| {
        if e.is_invalid_input() {
            Failure::Invalid(e.into())
        } else {
            Failure::Runtime(e.into())
        }
    })
}

fn inventory_probe(args: ProbeArgs) -> CommandResult {
    use crate::exec::probe::{self, ProbeSettings, ProbeTarget};
    let targets = args
        .hosts
        .iter()
        .map(|h| ProbeTarget::parse(h))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Failure::Runtime(anyhow::anyhow!(e)))?;
    let settings = ProbeSettings {
        connect: connect_settings(args.known_hosts, args.accept_new_host_keys),
        identity_file: args.identity,
    };
    let entries = probe::probe(&targets, &settings).map_err(exec_failure)?;
    if probe::build_backends(false, "").is_empty() {
        eprintln!(
            "warning: this skulk is built without the llama.cpp engine, so it offers no backends"
        );
    }
    print!("{}", probe::to_yaml(&entries));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn nodes_conflicts_with_exclude_and_min_nodes() {
        for extra in [["--exclude", "a"], ["--min-nodes", "2"]] {
            let err = Cli::try_parse_from(
                [
                    "skulk",
                    "plan",
                    "--card",
                    "c",
                    "--inventory",
                    "i",
                    "--nodes",
                    "a,b",
                ]
                .into_iter()
                .chain(extra),
            )
            .unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
        }
    }
}
