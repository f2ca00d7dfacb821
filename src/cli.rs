//! Command-line interface: the only module that knows clap.
//!
//! Each subcommand's arguments are resolved here into the plain settings type
//! of the module that runs it; command modules never see clap types. Every
//! command returns a [`CliError`], and [`CliError::exit_code`] is the one
//! place an exit code is chosen (the table is in `cli/error.rs` and the README).
//! Results go to standard output through [`crate::output`], where a reader
//! that went away ends the command quietly.

mod error;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

pub use error::{describe, CliError, Exit};

use crate::output;
use crate::settings::paths;
use crate::validate::DocKind;

/// Run one large language model split across several machines.
///
/// Describe a model once (a card), list your machines once (an inventory),
/// review the deterministic plan, apply it, and talk to the OpenAI-compatible
/// API on rank 0.
#[derive(Debug, Parser)]
#[command(name = "skulk", version, about, long_about, propagate_version = true)]
pub struct Cli {
    /// Print only warnings and errors
    #[arg(long, short = 'q', global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Also print every command run on a host
    #[arg(long, short = 'v', global = true)]
    pub verbose: bool,
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
    /// Put model files where ranks look for them
    #[command(subcommand)]
    Model(ModelCommand),
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
    /// Context tokens to budget for (GGUF models default to at most 8192);
    /// the requests served at once share them
    #[arg(long, value_name = "N")]
    pub context: Option<u64>,
    /// Requests served at once (each a sequence in every rank's KV cache)
    #[arg(long, value_name = "P", default_value_t = crate::plan::DEFAULT_PARALLEL,
          value_parser = clap::value_parser!(u32).range(1..=crate::plan::MAX_PARALLEL as i64))]
    pub parallel: u32,
    /// Requests that may wait while `--parallel` others run (429 beyond)
    #[arg(long, value_name = "N", default_value_t = crate::plan::DEFAULT_QUEUE)]
    pub queue: u32,
    /// Ring port shared by all ranks (default: derived from the inputs)
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Address the API binds to (default: rank 0's address)
    #[arg(long, value_name = "ADDR")]
    pub api_bind: Option<String>,
    /// API port
    #[arg(long, value_name = "PORT", default_value_t = crate::settings::ports::DEFAULT_API_PORT)]
    pub api_port: u16,
    /// Most tokens a request generates when it sets no `max_tokens`
    /// (default 2048; a request may ask for more, up to the context limit)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_tokens: Option<u32>,
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
    /// Also write the plan document to this file: YAML when its name ends in
    /// `.yaml` or `.yml`, JSON when `.json`, else as `-o` says (JSON for a
    /// table)
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Plan document written by `skulk plan --out` (JSON or YAML)
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
    /// Plan document (JSON or YAML)
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
    /// Plan document (JSON or YAML)
    pub plan: PathBuf,
    /// Also remove the rank-local slice caches
    #[arg(long)]
    pub purge: bool,
    /// Also stop every other skulk run on the plan's hosts (another plan's
    /// ring, e.g. after re-planning into the same file)
    #[arg(long, conflicts_with = "digest")]
    pub any: bool,
    /// Also stop the runs of the plan with this digest (or its first 8 or
    /// more hex digits) on the plan's hosts
    #[arg(long, value_name = "DIGEST")]
    pub digest: Option<String>,
    /// Seconds to wait for a graceful stop before killing
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub timeout: u64,
    /// known_hosts file (default: ~/.ssh/known_hosts)
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Plan document (JSON or YAML)
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
    /// Most tokens a request generates when it sets no `max_tokens`
    /// (default: the plan's, else 2048)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_tokens: Option<u32>,
    /// Rank 0: micro-batches kept in the ring at once, each with a share of
    /// the running requests (default: one per machine of the ring, so every
    /// machine computes; ranks sharing a machine share its cores)
    #[arg(long, value_name = "N")]
    pub micro_batches: Option<u32>,
    /// Seconds to wait for the ring to form
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    pub formation_timeout: u64,
    /// Directory for the rank-local slice cache (default ~/.cache/skulk/shards)
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
pub enum ModelCommand {
    /// Put a GGUF file of this machine where a card's ranks look for it
    /// (`<modelDir>/<org>--<name>/<ggufFile>`): hard-linked, or copied
    Add(ModelAddArgs),
}

#[derive(Debug, Args)]
pub struct ModelAddArgs {
    /// The GGUF file (for a split model, its first part; the others are
    /// found beside it)
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The model's card
    #[arg(long, value_name = "FILE")]
    pub card: PathBuf,
    /// The model directory, read as an inventory host's `modelDir` (`~` or
    /// a relative path: under the home directory)
    #[arg(long, value_name = "DIR", default_value = crate::settings::paths::DEFAULT_MODEL_DIR)]
    pub model_dir: String,
}

#[derive(Debug, Subcommand)]
pub enum InventoryCommand {
    /// Connect to hosts over SSH (or look at this machine with `--local`)
    /// and print inventory entries for them
    Probe(ProbeArgs),
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// `[user@]host[:port]`
    #[arg(required_unless_present = "local")]
    pub hosts: Vec<String>,
    /// Also probe this machine, without SSH: an entry with `connection: local`
    #[arg(long)]
    pub local: bool,
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

/// The clap command, for completions and documentation generators.
pub fn command() -> clap::Command {
    Cli::command()
}

/// Writes the completion script for `shell` to `out`.
pub fn write_completions(shell: clap_complete::Shell, out: &mut dyn Write) {
    clap_complete::generate(shell, &mut command(), "skulk", out);
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return error::from_clap(e),
    };
    output::set_level(match (cli.quiet, cli.verbose) {
        (true, _) => output::Level::Quiet,
        (_, true) => output::Level::Verbose,
        _ => output::Level::Normal,
    });
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(message) = e.message() {
                output::error(message);
            }
            e.exit_code()
        }
    }
}

fn run(command: Command) -> Result<(), CliError> {
    match command {
        Command::Completions(args) => {
            let mut script = Vec::new();
            write_completions(args.shell, &mut script);
            output::stdout(script).map_err(CliError::from_stdout)
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
        Command::Model(ModelCommand::Add(args)) => model_add(args),
        Command::Inventory(InventoryCommand::Probe(args)) => inventory_probe(args),
    }
}

fn validate(args: ValidateArgs) -> Result<(), CliError> {
    use crate::validate::{self, Outcome, Settings};
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
    match validate::run(&settings, &mut out)? {
        Outcome::Valid => Ok(()),
        Outcome::Invalid => Err(CliError::Reported(Exit::Invalid)),
        Outcome::Unreadable => Err(CliError::Reported(Exit::Runtime)),
    }
}

fn schema(args: SchemaArgs) -> Result<(), CliError> {
    let kind = match args.kind {
        SchemaKind::Card => crate::schema::SchemaKind::Card,
        SchemaKind::Inventory => crate::schema::SchemaKind::Inventory,
        SchemaKind::Plan => crate::schema::SchemaKind::Plan,
    };
    match crate::schema::schema_text(kind) {
        Some(text) => output::stdout(text).map_err(CliError::from_stdout),
        None => Err(CliError::runtime(format!(
            "`skulk schema {}` is not available in this build",
            kind.name()
        ))),
    }
}

fn plan(args: PlanArgs) -> Result<(), CliError> {
    use crate::plan::{self, InstanceKind, PlanDocument, PlanRequest, Sharding};
    let card = load_card(&args.card)?;
    let inventory_value = load_checked(&args.inventory, DocKind::Inventory)?;
    let inventory = crate::inventory::parse(&inventory_value)
        .map_err(|e| CliError::invalid(format!("{}: {e}", args.inventory.display())))?;
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
        max_tokens: args.max_tokens,
        serving: crate::plan::Serving {
            parallel: args.parallel,
            queue: args.queue,
        },
        ring: (args.silence_limit.is_some() || args.loading_silence_limit.is_some()).then_some(
            crate::plan::document::RingTimeouts {
                silence_limit_ms: args.silence_limit,
                loading_silence_limit_ms: args.loading_silence_limit,
            },
        ),
    };
    let placed = plan::plan(&card, &inventory, &request)?;
    for note in &placed.notes {
        output::note(note);
    }
    for warning in &placed.warnings {
        output::warn(warning);
    }
    let document = PlanDocument::from_plan(&placed);
    if let Some(path) = &args.out {
        let yaml = match crate::load::Format::from_path(path) {
            Some(crate::load::Format::Yaml) => true,
            Some(_) => false,
            None => args.output == OutputFormat::Yaml,
        };
        let (text, name) = if yaml {
            (document.to_yaml(), "YAML")
        } else {
            (document.to_json(), "JSON")
        };
        write_atomically(path, text.as_bytes())
            .map_err(|e| CliError::runtime(format!("cannot write `{}`: {e}", path.display())))?;
        output::progress(format!(
            "wrote plan `{}` ({name}) to `{}`",
            &document.skulk.plan_digest[..16],
            path.display()
        ));
    }
    let text = match args.output {
        OutputFormat::Table => plan::table::render(&placed, output::color_stdout()),
        OutputFormat::Json => document.to_json(),
        OutputFormat::Yaml => document.to_yaml(),
    };
    output::stdout(text).map_err(CliError::from_stdout)
}

/// Reads a card file with the checks of `skulk validate`.
fn load_card(path: &Path) -> Result<crate::card::ModelCard, CliError> {
    let value = load_checked(path, DocKind::Card)?;
    serde_json::from_value(value)
        .map_err(|e| CliError::Invalid(anyhow::Error::new(e).context(path.display().to_string())))
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
fn load_checked(path: &Path, kind: DocKind) -> Result<serde_json::Value, CliError> {
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
            CliError::Runtime(error)
        } else {
            CliError::Invalid(error)
        });
    }
    report.into_document().ok_or_else(|| {
        CliError::runtime(format!(
            "`{}` passed its checks but was not kept",
            path.display()
        ))
    })
}

/// Writes `bytes` to `path` through a temporary file in the same directory
/// and a rename, so `path` is either the old file or the whole new one.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
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

fn apply(args: ApplyArgs) -> Result<(), CliError> {
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
        plan_path: args.plan.display().to_string(),
    };
    if args.watch.watch {
        return watch(&args.plan, dep, settings, args.watch);
    }
    let mut out = Vec::new();
    let result = apply::apply(&dep, &settings, &mut out);
    output::stdout(out).map_err(CliError::from_stdout)?;
    result?;
    Ok(())
}

fn watch(
    plan: &std::path::Path,
    dep: crate::exec::target::Deployment,
    apply: crate::exec::apply::ApplySettings,
    args: WatchArgs,
) -> Result<(), CliError> {
    use crate::exec::supervise::{self, Ending, WatchSettings};
    let settings = WatchSettings {
        apply,
        inventory: args.inventory,
        grace: std::time::Duration::from_secs(args.grace),
        keep_running: args.keep_running,
        drain: std::time::Duration::from_secs(args.drain),
    };
    match supervise::watch(plan, dep, &settings, &mut std::io::stdout())? {
        Ending::Serving => Ok(()),
        Ending::NotServing(c) => Err(CliError::runtime(format!(
            "stopped while the plan was not serving (it was {})",
            c.as_str()
        ))),
    }
}

fn standby(args: StandbyArgs) -> Result<(), CliError> {
    use crate::exec::supervise::standby;
    let addr = standby::api_addr(&args.plan).map_err(CliError::invalid)?;
    standby::serve(
        addr,
        args.retry_after,
        std::time::Duration::from_secs(args.lifetime),
    )
    .map_err(CliError::runtime)?;
    Ok(())
}

fn status(args: StatusArgs) -> Result<(), CliError> {
    use crate::exec::{status, supervise};
    let dep = load_deployment(&args.plan)?;
    let key = api_key(None)?;
    // A supervisor running a smaller plan: report on that one.
    let (supervisor, running) = supervise::status_view(&args.plan, &dep)?;
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
    output::stdout(text).map_err(CliError::from_stdout)?;
    for step in status::next_steps(&report, &args.plan.display().to_string()) {
        output::hint(step);
    }
    match report.verdict() {
        status::Verdict::Healthy => Ok(()),
        status::Verdict::NotRunning => Err(CliError::Reported(Exit::NotRunning)),
        status::Verdict::Unknown => Err(CliError::Reported(Exit::Runtime)),
    }
}

fn down(args: DownArgs) -> Result<(), CliError> {
    use crate::exec::down::{self, DownSettings, Others};
    let dep = load_deployment(&args.plan)?;
    let others = match (args.any, args.digest) {
        (true, _) => Others::Any,
        (false, Some(d)) => Others::Digest(down::digest_prefix(&d)?),
        (false, None) => Others::Keep,
    };
    let settings = DownSettings {
        connect: connect_settings(args.known_hosts, false),
        purge: args.purge,
        timeout: std::time::Duration::from_secs(args.timeout),
        others,
        plan_path: args.plan.display().to_string(),
    };
    // A supervisor of the plan stops for good first; a smaller plan it ran
    // goes down too (its errors are printed, this plan's is returned).
    let others = crate::exec::supervise::before_down(&args.plan, &dep)?;
    for d in &others {
        if let Err(e) = down::down(d, &settings) {
            output::error(&e);
        }
    }
    let result = down::down(&dep, &settings);
    crate::exec::supervise::after_down(&args.plan, &dep);
    result?;
    Ok(())
}

fn logs(args: LogsArgs) -> Result<(), CliError> {
    use crate::exec::logs::{self, LogsSettings, DEFAULT_LINES};
    let dep = load_deployment(&args.plan)?;
    let settings = LogsSettings {
        connect: connect_settings(args.known_hosts, false),
        node: args.node,
        follow: args.follow,
        lines: DEFAULT_LINES,
    };
    let mut out = std::io::stdout().lock();
    match logs::logs(&dep, &settings, &mut out) {
        Err(crate::exec::ExecError::Output(e)) => Err(CliError::from_stdout(e)),
        other => Ok(other?),
    }
}

fn fetch_model(args: FetchModelArgs) -> Result<(), CliError> {
    use crate::plan::document::{PlanDocument, RankSelector};
    let doc = PlanDocument::read(&args.plan).map_err(plan_file_error)?;
    let spec = doc
        .rank_spec(RankSelector::Node(&args.node))
        .map_err(|e| CliError::invalid(format!("plan `{}`: {e}", args.plan.display())))?;
    let dir = paths::resolve(&spec.model_dir).map_err(CliError::runtime)?;
    let hub = crate::hub::Hub::from_env()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Runtime(e.into()))?;
    let report = rt.block_on(crate::fetch::fetch_card(
        &hub,
        &spec.model_card,
        "main",
        &dir,
        crate::fetch::ProgressMode::Lines,
    ))?;
    for f in &report.files {
        output::progress(format!(
            "{}: {} bytes{}",
            f.path.display(),
            f.size,
            if f.already_present {
                " (already present)"
            } else {
                ""
            }
        ));
    }
    Ok(())
}

/// A plan file that cannot be used: unreadable (exit 2) or not a plan (exit 1).
fn plan_file_error(e: crate::plan::document::PlanFileError) -> CliError {
    if e.is_io() {
        CliError::Runtime(e.into())
    } else {
        CliError::Invalid(e.into())
    }
}

/// Reads a plan document (JSON or YAML) for `apply`, `status`, `down` and
/// `logs`.
fn load_deployment(path: &Path) -> Result<crate::exec::target::Deployment, CliError> {
    let doc = crate::plan::document::PlanDocument::read(path).map_err(plan_file_error)?;
    Ok(crate::exec::target::Deployment::from_document(path, doc)?)
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
fn api_key(file: Option<&Path>) -> Result<Option<String>, CliError> {
    crate::settings::env::api_key(file).map_err(|e| CliError::Runtime(e.into()))
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Wire {
    F32,
    F16,
}

fn run_shard(args: RunShardArgs) -> Result<(), CliError> {
    use crate::run_shard::{self, SecretSource, Selector, Settings};
    // The rank's output is its log, read long after: every line is dated.
    output::set_timestamps(true);
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
        max_tokens: args.max_tokens,
        micro_batches: args.micro_batches,
        formation_timeout: std::time::Duration::from_secs(args.formation_timeout),
        cache_dir: match args.cache_dir {
            Some(dir) => dir,
            None => paths::slice_cache().map_err(CliError::runtime)?,
        },
        health_file: args.health_file,
    };
    Ok(run_shard::run(settings)?)
}

fn card_new(args: CardNewArgs) -> Result<(), CliError> {
    use crate::cardgen::{self, CardOutput};
    let output = match args.output {
        CardFormat::Yaml => CardOutput::Yaml,
        CardFormat::Json => CardOutput::Json,
    };
    let card = match (&args.from_gguf, &args.from_hf) {
        (Some(path), _) => cardgen::card_from_gguf_path(path, args.model_id.as_deref())?,
        (None, Some(repo)) => card_from_hf(repo, &args)?,
        (None, None) => unreachable!("clap requires one source"),
    };
    output::stdout(cardgen::render_card(&card, output)).map_err(CliError::from_stdout)
}

fn card_from_hf(repo: &str, args: &CardNewArgs) -> Result<crate::card::ModelCard, CliError> {
    use crate::hub::{Hub, RepoId};
    let repo = RepoId::parse(repo)?;
    let hub = Hub::from_env()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Runtime(e.into()))?;
    let revision = args.revision.as_deref().unwrap_or("main");
    Ok(rt.block_on(crate::cardgen::card_from_hf(
        &hub,
        &repo,
        revision,
        args.gguf_file.as_deref(),
        args.model_id.as_deref(),
    ))?)
}

fn model_add(args: ModelAddArgs) -> Result<(), CliError> {
    use crate::model_add::{self, Placed};
    let card = load_card(&args.card)?;
    let dir = paths::resolve(&args.model_dir).map_err(CliError::runtime)?;
    for added in model_add::add(&args.file, &card, &dir)? {
        output::progress(format!(
            "{} `{}`",
            match added.how {
                Placed::Present => "already there:",
                Placed::Linked => "linked",
                Placed::Copied => "copied to",
            },
            added.dest.display()
        ));
    }
    Ok(())
}

fn inventory_probe(args: ProbeArgs) -> Result<(), CliError> {
    use crate::exec::probe::{self, ProbeSettings, ProbeTarget};
    let mut targets = args
        .hosts
        .iter()
        .map(|h| ProbeTarget::parse(h))
        .collect::<Result<Vec<_>, _>>()?;
    if args.local {
        targets.insert(0, ProbeTarget::local());
    }
    let identity_file =
        match args.identity {
            // The entries name it for use from anywhere.
            Some(file) => Some(std::path::absolute(&file).map_err(|e| {
                CliError::runtime(format!("cannot resolve `{}`: {e}", file.display()))
            })?),
            None => None,
        };
    let settings = ProbeSettings {
        connect: connect_settings(args.known_hosts, args.accept_new_host_keys),
        identity_file,
    };
    let entries = probe::probe(&targets, &settings)?;
    if let Some(warning) = probe::ENGINELESS_BACKENDS_WARNING {
        output::warn(warning);
    }
    output::stdout(probe::to_yaml(&entries)).map_err(CliError::from_stdout)
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
