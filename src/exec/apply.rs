//! `skulk apply`: start every rank of a plan and wait until rank 0's API is
//! ready. The invariant it guards: nothing starts unless every host passed
//! preflight, and a failed start leaves no rank of the plan running.
//!
//! Order: connect to all hosts; inspect what runs there (this plan, another
//! plan); stop what must go (a partly dead ring of this plan, or with
//! `--replace` another plan); preflight every host in parallel; install or
//! fetch where asked; copy the plan and write the secrets (0600 files, sent
//! on SSH stdin); launch every rank detached; wait for `/health`. Every
//! remote step is an [`Action`], so `--dry-run` prints the same steps
//! instead of performing them.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::error::{on_host, transport, ExecError};
use super::fleet::{self, par_map, zip};
use super::health::{self, Health, HEALTH_TIMEOUT};
use super::preflight::{self, Facts, PreflightOptions, Verdict};
use super::remote::{indent, Action, ConnectSettings, Host, RemotePath};
use super::script::{self, Inspection, LaunchSettings, Report, SkulkLocation, StopTarget};
use super::target::{Deployment, RankTarget};
use crate::output;

/// Everything `apply` takes besides the plan.
#[derive(Clone, Debug)]
pub struct ApplySettings {
    pub connect: ConnectSettings,
    pub install: bool,
    pub fetch: bool,
    pub dry_run: bool,
    pub replace: bool,
    /// The ring-formation deadline: for the ranks, and for the wait here.
    pub timeout: Duration,
    /// The API bearer token for rank 0, when one is configured.
    pub api_key: Option<String>,
    pub skulk: SkulkLocation,
    /// The plan file as the user named it, for hints.
    pub plan_path: String,
}

/// How `apply` ended when it succeeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Started,
    AlreadyRunning,
    DryRun,
}

/// Seconds a rank gets to exit after SIGTERM when `apply` stops it.
const STOP_TIMEOUT_SECS: u64 = 10;

/// Lines of each failing rank's log shown when a start fails.
const LOG_LINES: u32 = 20;

/// How often the wait re-checks that every rank process is alive.
const LIVENESS_EVERY: Duration = Duration::from_secs(1);

/// How often the wait asks `/health`.
const HEALTH_EVERY: Duration = Duration::from_millis(250);

/// A run of another plan (or a stale one) that holds one of our hosts.
struct Conflict {
    rank: usize,
    dir: String,
    digest: String,
    model: Option<String>,
    pid: Option<u32>,
    /// Seconds since it started.
    age: Option<u64>,
}

/// What one host's stops are: each target and what it is, for messages.
type Stops = Vec<Vec<(StopTarget, String)>>;

/// Runs the phases in order: survey, refuse conflicts, stop what is in the
/// way, preflight, stage, install, fetch, start the ranks, wait for the
/// API. Each phase that fails returns before anything of the next runs.
pub fn apply(
    dep: &Deployment,
    s: &ApplySettings,
    out: &mut dyn Write,
) -> Result<Outcome, ExecError> {
    let hosts = fleet::connect_all(dep, &s.connect)?;
    let (alive, conflicts) = survey(dep, &hosts)?;
    if !conflicts.is_empty() && !s.replace {
        return Err(refuse_conflicts(dep, s, &conflicts));
    }
    let endpoint = dep.endpoint();
    let n = dep.ranks.len();
    if conflicts.is_empty() && alive.iter().all(|&a| a) {
        return already_running(dep, &hosts, s, out);
    }
    let stops = stops_needed(dep, &alive, &conflicts);
    if !s.dry_run {
        stop_in_the_way(dep, &hosts, &stops)?;
    }
    let opts = PreflightOptions::for_this_binary(s.install, s.fetch);
    let explicit = match &s.skulk {
        SkulkLocation::At(p) => Some(p.to_string()),
        SkulkLocation::Default => None,
    };
    let place = preflight::skulk_place(explicit.as_deref());
    let facts = preflight_all(dep, &hosts, s, &stops, &opts, &place)?;
    let (steps, local_exe) = stage(dep, s, &facts);
    if s.dry_run {
        print_dry_run(dep, &stops, &steps, out);
        return Ok(Outcome::DryRun);
    }
    if steps.iter().any(|st| st.install.is_some()) {
        local_exe?;
    }
    install(dep, &hosts, &steps, &opts)?;
    fetch(dep, &hosts, &steps, s, &opts, &place)?;
    start_ranks(dep, &hosts, &steps)?;
    if let Err(e) = wait_ready(dep, &hosts, s) {
        return Err(fail(dep, &hosts, e, &s.plan_path));
    }
    output::progress(format!("ring of {n} ranks is up; API at {endpoint}"));
    writeln!(out, "{endpoint}").ok();
    Ok(Outcome::Started)
}

/// What runs on the hosts now: whether each rank of this plan is alive,
/// and the live runs of other plans in the way.
fn survey(dep: &Deployment, hosts: &[Host]) -> Result<(Vec<bool>, Vec<Conflict>), ExecError> {
    let found = fleet::inspect_all(dep, hosts)?;
    let mut alive = vec![false; dep.ranks.len()];
    let mut conflicts = Vec::new();
    for (i, (rank, found)) in dep.ranks.iter().zip(&found).enumerate() {
        for rec in found.at(&rank.address) {
            if rec.digest == dep.digest && rec.node == rank.node {
                alive[i] |= rec.alive;
            } else if rec.alive {
                conflicts.push(Conflict {
                    rank: i,
                    dir: rec.dir.clone(),
                    digest: rec.digest.clone(),
                    model: rec.model.clone(),
                    pid: rec.pid,
                    age: found
                        .now
                        .zip(rec.started)
                        .map(|(now, t)| now.saturating_sub(t)),
                });
            }
        }
    }
    Ok((alive, conflicts))
}

/// The error for other plans in the way without `--replace`: every one,
/// and how to stop them.
fn refuse_conflicts(dep: &Deployment, s: &ApplySettings, conflicts: &[Conflict]) -> ExecError {
    let failures = conflicts
        .iter()
        .map(|c| {
            on_host(
                &dep.ranks[c.rank],
                format!(
                    "plan `{}`{} is running there (pid {}{}, `{}`)",
                    &c.digest[..c.digest.len().min(16)],
                    c.model
                        .as_deref()
                        .map(|m| format!(" of `{m}`"))
                        .unwrap_or_default(),
                    c.pid.map_or("?".to_owned(), |p| p.to_string()),
                    c.age
                        .map(|a| format!(", started {} ago", super::status::duration(a)))
                        .unwrap_or_default(),
                    c.dir
                ),
            )
        })
        .collect();
    ExecError::runtime(
        format!(
            "a different plan is running on hosts of plan `{}`",
            dep.short_digest()
        ),
        failures,
    )
    .with_hint(format!(
        "pass `--replace` to stop it first, or stop it with `skulk down {} --digest {}`",
        s.plan_path,
        &conflicts[0].digest[..conflicts[0].digest.len().min(16)]
    ))
}

/// Every rank of this plan runs: check the API and say so (a dry run says
/// it would do nothing).
fn already_running(
    dep: &Deployment,
    hosts: &[Host],
    s: &ApplySettings,
    out: &mut dyn Write,
) -> Result<Outcome, ExecError> {
    let n = dep.ranks.len();
    if s.dry_run {
        writeln!(
            out,
            "# plan {} is already running on all {n} hosts; apply would do nothing",
            dep.short_digest()
        )
        .ok();
        return Ok(Outcome::DryRun);
    }
    output::progress(format!(
        "plan {} is already running on all {n} hosts; checking the API",
        dep.short_digest()
    ));
    if let Err(e) = wait_ready(dep, hosts, s) {
        return Err(fail(dep, hosts, e, &s.plan_path));
    }
    output::progress("already running; nothing to do");
    writeln!(out, "{}", dep.endpoint()).ok();
    Ok(Outcome::AlreadyRunning)
}

/// What must stop first on each host: a partly running ring of this plan
/// (all of it restarts), and with `--replace` the other plans in the way.
fn stops_needed(dep: &Deployment, alive: &[bool], conflicts: &[Conflict]) -> Stops {
    let mut stops: Stops = vec![Vec::new(); dep.ranks.len()];
    if alive.iter().any(|&a| a) {
        let dead: Vec<String> = dep
            .ranks
            .iter()
            .zip(alive)
            .filter(|(_, a)| !**a)
            .map(|(r, _)| format!("rank {} on `{}`", r.rank, r.node))
            .collect();
        output::progress(format!(
            "plan {} is partly running ({} not running); restarting the whole ring",
            dep.short_digest(),
            dead.join(", ")
        ));
        for (i, rank) in dep.ranks.iter().enumerate() {
            if alive[i] {
                stops[i].push((
                    StopTarget::Layout(rank.layout(&dep.digest)),
                    format!("rank {} of this plan", rank.rank),
                ));
            }
        }
    }
    for c in conflicts {
        stops[c.rank].push((
            StopTarget::Found(c.dir.clone()),
            format!(
                "plan `{}` (`--replace`)",
                &c.digest[..c.digest.len().min(16)]
            ),
        ));
    }
    stops
}

/// Stops what is in the way, on every host at once.
fn stop_in_the_way(dep: &Deployment, hosts: &[Host], stops: &Stops) -> Result<(), ExecError> {
    let stop_failures: Vec<String> = par_map(&zip(dep, hosts), |(r, h)| {
        let mut errs = Vec::new();
        for (target, what) in &stops[r.rank as usize] {
            match fleet::stop(h, target, STOP_TIMEOUT_SECS) {
                Ok(how) => output::progress(format!("{}: {what}: {how}", r.node)),
                Err(e) => errs.push(on_host(r, format!("cannot stop {what}: {e}"))),
            }
        }
        errs
    })
    .into_iter()
    .flatten()
    .collect();
    if !stop_failures.is_empty() {
        return Err(ExecError::runtime(
            "cannot stop the runs in the way",
            stop_failures,
        ));
    }
    Ok(())
}

/// Preflight on every host, all failures together: nothing starts unless
/// every host passed.
fn preflight_all(
    dep: &Deployment,
    hosts: &[Host],
    s: &ApplySettings,
    stops: &Stops,
    opts: &PreflightOptions,
    place: &str,
) -> Result<Vec<(Facts, Verdict)>, ExecError> {
    let checked: Vec<Result<(Facts, Verdict), String>> = par_map(&zip(dep, hosts), |(r, h)| {
        let facts = h
            .perform_checked(&script::preflight(r, &skulk_for(r, &s.skulk)))
            .map(|o| Facts::parse(&o.stdout_str()))
            .map_err(|e| transport(&e))?;
        let mut o = opts.clone();
        // A dry run has not stopped what holds the ports yet.
        o.skip_ports = s.dry_run && !stops[r.rank as usize].is_empty();
        let verdict = preflight::check(dep, r, &facts, &o, place);
        Ok((facts, verdict))
    });
    let mut failures = Vec::new();
    for (r, c) in dep.ranks.iter().zip(&checked) {
        match c {
            Err(e) => failures.push(e.clone()),
            Ok((_, v)) => failures.extend(v.problems.iter().map(|p| on_host(r, p))),
        }
    }
    if !failures.is_empty() {
        let bad = checked
            .iter()
            .filter(|c| match c {
                Err(_) => true,
                Ok((_, v)) => !v.problems.is_empty(),
            })
            .count();
        return Err(ExecError::runtime(
            format!(
                "preflight failed on {bad} of {} hosts; nothing was started",
                dep.ranks.len()
            ),
            failures,
        ));
    }
    Ok(checked.into_iter().map(|c| c.expect("checked")).collect())
}

/// The steps for each host after preflight (install, fetch, the files to
/// write, the launch), with this plan's fresh ring secret; and this binary,
/// which `--install` copies (an error only if a host needs it).
fn stage(
    dep: &Deployment,
    s: &ApplySettings,
    facts: &[(Facts, Verdict)],
) -> (Vec<HostSteps>, Result<PathBuf, ExecError>) {
    let secret = hex::encode(rand::random::<[u8; 32]>());
    let local_exe = std::env::current_exe()
        .map_err(|e| ExecError::runtime("cannot find this skulk binary", vec![e.to_string()]));
    let hf_env = script::hf_env_assignments(&crate::settings::env::hf_forwarded());
    let steps = dep
        .ranks
        .iter()
        .zip(facts)
        .map(|(r, (f, v))| {
            let install = if v.install {
                let dest = skulk_for(r, &s.skulk).install_path().resolve(&f.home);
                Some(Install {
                    local: local_exe.as_ref().ok().cloned().unwrap_or_default(),
                    dest,
                })
            } else {
                None
            };
            let skulk = install
                .as_ref()
                .map(|i| i.dest.clone())
                .or_else(|| f.skulk.clone())
                .unwrap_or_default();
            let fetch = v
                .fetch
                .then(|| script::fetch(&r.layout(&dep.digest), &skulk, &r.node, hf_env.clone()));
            HostSteps::new(dep, r, s, &secret, install, fetch, skulk)
        })
        .collect();
    (steps, local_exe)
}

/// Installs skulk where `--install` found it needed, then checks that the
/// installed binary reports this one's version.
fn install(
    dep: &Deployment,
    hosts: &[Host],
    steps: &[HostSteps],
    opts: &PreflightOptions,
) -> Result<(), ExecError> {
    let install_failures: Vec<String> = par_map(&zip(dep, hosts), |(r, h)| {
        let st = &steps[r.rank as usize];
        let Some(inst) = &st.install else { return None };
        output::progress(format!("{}: installing skulk at `{}`", r.node, inst.dest));
        let result = (|| {
            for a in inst.actions() {
                h.perform_checked(&a)?;
            }
            h.perform_checked(&script::version_of(&inst.dest))
        })();
        match result {
            Err(e) => Some(on_host(r, format!("installing skulk failed: {e}"))),
            Ok(o) => {
                let got = o.stdout_str().trim().to_owned();
                (got != opts.local_version).then(|| {
                    on_host(
                        r,
                        format!(
                            "installed `{}` reports `{got}`, expected `{}`",
                            inst.dest, opts.local_version
                        ),
                    )
                })
            }
        }
    })
    .into_iter()
    .flatten()
    .collect();
    if !install_failures.is_empty() {
        return Err(ExecError::runtime(
            "installing skulk failed; nothing was started",
            install_failures,
        ));
    }
    Ok(())
}

/// Fetches the model where `--fetch` found it needed (the fetch reads the
/// plan copy), then checks the model again as preflight does.
fn fetch(
    dep: &Deployment,
    hosts: &[Host],
    steps: &[HostSteps],
    s: &ApplySettings,
    opts: &PreflightOptions,
    place: &str,
) -> Result<(), ExecError> {
    let fetch_failures: Vec<String> = par_map(&zip(dep, hosts), |(r, h)| {
        let st = &steps[r.rank as usize];
        let fetch = st.fetch.as_ref()?;
        output::progress(format!(
            "{}: fetching `{}` into `{}`",
            r.node, dep.model_id, r.model.dir
        ));
        // The fetch's progress lines are shown as they come.
        let mut lines = super::remote::LinePrinter::new(&r.node);
        let result = h
            .perform_checked(&st.write[0])
            .and_then(|_| h.perform_streaming_checked(fetch, &mut |c| lines.push(c)))
            .and_then(|_| h.perform_checked(&script::preflight(r, &skulk_for(r, &s.skulk))));
        match result {
            Err(e) => Some(on_host(r, format!("fetching the model failed: {e}"))),
            Ok(out) => {
                let again = PreflightOptions {
                    fetch: false,
                    skip_ports: true,
                    ..opts.clone()
                };
                let facts = Facts::parse(&out.stdout_str());
                let v = preflight::check(dep, r, &facts, &again, place);
                (!v.problems.is_empty())
                    .then(|| on_host(r, format!("after fetching: {}", v.problems.join("; "))))
            }
        }
    })
    .into_iter()
    .flatten()
    .collect();
    if !fetch_failures.is_empty() {
        return Err(ExecError::runtime(
            "fetching the model failed; nothing was started",
            fetch_failures,
        ));
    }
    Ok(())
}

/// Writes each host's files and launches its rank detached. When any start
/// fails, every started rank is stopped.
fn start_ranks(dep: &Deployment, hosts: &[Host], steps: &[HostSteps]) -> Result<(), ExecError> {
    let launched: Vec<Result<u32, String>> = par_map(&zip(dep, hosts), |(r, h)| {
        let st = &steps[r.rank as usize];
        for a in &st.write {
            h.perform_checked(a)
                .map_err(|e| on_host(r, format!("{}: {e}", a.purpose())))?;
        }
        let o = h
            .perform_checked(&st.launch)
            .map_err(|e| on_host(r, format!("starting the rank failed: {e}")))?;
        Report::parse(&o.stdout_str())
            .number("pid")
            .map(|p| p as u32)
            .ok_or_else(|| on_host(r, "the start script printed no pid"))
    });
    let launch_failures: Vec<String> = launched
        .iter()
        .filter_map(|l| l.as_ref().err().cloned())
        .collect();
    if !launch_failures.is_empty() {
        let stop_failures = fleet::stop_all(dep, hosts, STOP_TIMEOUT_SECS);
        return Err(ExecError::runtime(
            "starting the ranks failed; every started rank was stopped",
            launch_failures.into_iter().chain(stop_failures).collect(),
        ));
    }
    for (r, pid) in dep.ranks.iter().zip(&launched) {
        output::progress(format!(
            "{}: started rank {} (layers {}, pid {})",
            r.node,
            r.rank,
            r.layers(),
            pid.as_ref().map_or(0, |p| *p)
        ));
    }
    Ok(())
}

/// The binary copy `--install` makes on one host.
struct Install {
    local: PathBuf,
    /// Absolute on the host.
    dest: String,
}

impl Install {
    fn actions(&self) -> Vec<Action> {
        vec![
            script::mkdir_parent(&self.dest),
            Action::Upload {
                purpose: "install skulk",
                local: self.local.clone(),
                remote: self.dest.clone(),
                mode: 0o755,
            },
        ]
    }
}

/// What `apply` does on one host after preflight.
struct HostSteps {
    install: Option<Install>,
    fetch: Option<Action>,
    write: Vec<Action>,
    launch: Action,
}

impl HostSteps {
    fn new(
        dep: &Deployment,
        r: &RankTarget,
        s: &ApplySettings,
        secret: &str,
        install: Option<Install>,
        fetch: Option<Action>,
        skulk: String,
    ) -> HostSteps {
        let layout = r.layout(&dep.digest);
        let mut write = vec![
            script::write_private(
                "copy plan",
                &layout.plan(),
                dep.plan_bytes.clone(),
                format!("the plan document, {} bytes", dep.plan_bytes.len()),
            ),
            script::write_private(
                "write ring secret",
                &layout.secret(),
                format!("{secret}\n").into_bytes(),
                "the ring secret of this apply, 64 hex digits",
            ),
        ];
        // Every rank: rank 0 guards the API with it, the others their
        // `/metrics`.
        let api_key = s.api_key.is_some();
        if api_key {
            write.push(script::write_private(
                "write API key",
                &layout.api_key(),
                format!("{}\n", s.api_key.as_deref().unwrap_or_default()).into_bytes(),
                "the API key",
            ));
        }
        let launch = script::launch(
            dep,
            r,
            &LaunchSettings {
                skulk,
                formation_timeout: s.timeout.as_secs().max(1),
                api_key,
            },
        );
        HostSteps {
            install,
            fetch,
            write,
            launch,
        }
    }
}

fn print_dry_run(dep: &Deployment, stops: &Stops, steps: &[HostSteps], out: &mut dyn Write) {
    let mut text = format!(
        "# skulk apply --dry-run: plan {} ({} ranks of `{}`); preflight passed; nothing was changed\n# API: {}\n",
        dep.short_digest(),
        dep.ranks.len(),
        dep.model_id,
        dep.endpoint()
    );
    for (r, st) in dep.ranks.iter().zip(steps) {
        text.push_str(&format!(
            "\n## rank {} on `{}` ({}), layers {} of {}\n",
            r.rank,
            r.node,
            r.reach(),
            r.layers(),
            r.n_layers
        ));
        let mut actions: Vec<Action> = stops[r.rank as usize]
            .iter()
            .map(|(t, _)| script::stop(t, STOP_TIMEOUT_SECS))
            .collect();
        if let Some(i) = &st.install {
            actions.extend(i.actions());
            actions.push(script::version_of(&i.dest));
        }
        if let Some(f) = &st.fetch {
            actions.push(st.write[0].clone());
            actions.push(f.clone());
        }
        actions.extend(st.write.iter().cloned());
        actions.push(st.launch.clone());
        for a in actions {
            text.push_str(&format!(
                "### {}\n{}\n",
                a.purpose(),
                indent(&a.to_string(), "    ")
            ));
        }
    }
    let _ = out.write_all(text.as_bytes());
}

/// Why waiting for the ring failed.
struct WaitFailure {
    summary: String,
    /// Ranks whose logs to show, with why.
    failing: Vec<(usize, String)>,
}

/// Waits until `/health` is 200, failing as soon as a rank process is gone.
fn wait_ready(dep: &Deployment, hosts: &[Host], s: &ApplySettings) -> Result<(), WaitFailure> {
    let start = Instant::now();
    let deadline = start + s.timeout;
    let (api_host, api_port) = dep.api_target();
    let pb = indicatif::ProgressBar::new_spinner();
    pb.set_draw_target(if output::level() == output::Level::Quiet {
        indicatif::ProgressDrawTarget::hidden()
    } else {
        indicatif::ProgressDrawTarget::stderr()
    });
    pb.enable_steady_tick(Duration::from_millis(120));
    let mut last_live = None::<Instant>;
    let mut running = 0;
    let n = dep.ranks.len();
    let result = loop {
        let h = health::check(&api_host, api_port, s.api_key.as_deref(), HEALTH_TIMEOUT);
        if h.is_ready_for(&dep.digest) {
            break Ok(());
        }
        if last_live.is_none_or(|t| t.elapsed() >= LIVENESS_EVERY) {
            last_live = Some(Instant::now());
            let states = par_map(&zip(dep, hosts), |(r, host)| {
                fleet::inspect(host).map(|i| rank_alive(&i, dep, r))
            });
            let failing: Vec<(usize, String)> = states
                .iter()
                .enumerate()
                .filter_map(|(i, st)| match st {
                    Ok(true) => None,
                    Ok(false) => Some((i, format!("rank {} exited", dep.ranks[i].rank))),
                    Err(e) => Some((i, format!("host became unreachable: {e}"))),
                })
                .collect();
            running = n - failing.len();
            if !failing.is_empty() {
                let names: Vec<String> = failing
                    .iter()
                    .map(|(i, _)| {
                        format!("rank {} on `{}`", dep.ranks[*i].rank, dep.ranks[*i].node)
                    })
                    .collect();
                break Err(WaitFailure {
                    summary: format!("the ring did not form: {} exited", names.join(", ")),
                    failing,
                });
            }
        }
        if Instant::now() >= deadline {
            break Err(WaitFailure {
                summary: format!(
                    "the API at {} was not ready within {}s (last answer: {h})",
                    dep.endpoint(),
                    s.timeout.as_secs()
                ),
                failing: (0..n)
                    .map(|i| (i, "ring not formed in time".to_owned()))
                    .collect(),
            });
        }
        pb.set_message(format!(
            "waiting for the ring: {running}/{n} ranks running, /health {}, {}s of {}s",
            short_health(&h),
            start.elapsed().as_secs(),
            s.timeout.as_secs()
        ));
        std::thread::sleep(HEALTH_EVERY);
    };
    pb.finish_and_clear();
    result
}

fn short_health(h: &Health) -> String {
    match h {
        Health::Ready(_) => "ready".into(),
        Health::NotReady { status, .. } => status.to_string(),
        Health::Unreachable { .. } => "not answering".into(),
    }
}

fn rank_alive(i: &Inspection, dep: &Deployment, r: &RankTarget) -> bool {
    i.at(&r.address)
        .any(|rec| rec.digest == dep.digest && rec.node == r.node && rec.alive)
}

/// Stops every rank and turns a wait failure into the error, with logs.
fn fail(dep: &Deployment, hosts: &[Host], w: WaitFailure, plan: &str) -> ExecError {
    let stop_failures = fleet::stop_all(dep, hosts, STOP_TIMEOUT_SECS);
    let mut why = vec![String::new(); dep.ranks.len()];
    let which: Vec<usize> = w.failing.iter().map(|(i, _)| *i).collect();
    for (i, reason) in &w.failing {
        why[*i] = reason.clone();
    }
    let mut failures = fleet::log_tails(dep, hosts, &which, LOG_LINES, &why);
    failures.extend(stop_failures);
    ExecError::runtime(
        format!("{}; every rank of the plan was stopped", w.summary),
        failures,
    )
    .with_hint(format!(
        "`skulk logs {plan}` shows the ranks' whole logs; fix what they report and run `skulk apply {plan}` again"
    ))
}

/// The skulk a rank runs: on a `connection: local` host, without an explicit
/// `--remote-skulk`, this very binary (the machine is the same, so there is
/// nothing to install and no version to mismatch); elsewhere `chosen`.
pub(crate) fn skulk_for(rank: &RankTarget, chosen: &SkulkLocation) -> SkulkLocation {
    match (&rank.connection, chosen) {
        (super::remote::Connection::Local, SkulkLocation::Default) => {
            match std::env::current_exe() {
                Ok(exe) => {
                    SkulkLocation::At(RemotePath::Absolute(exe.to_string_lossy().into_owned()))
                }
                Err(_) => SkulkLocation::Default,
            }
        }
        _ => chosen.clone(),
    }
}

/// The host skulk path an explicit `--remote-skulk` names.
pub fn skulk_location(path: Option<&str>) -> SkulkLocation {
    path.map_or(SkulkLocation::Default, |p| {
        SkulkLocation::At(RemotePath::parse(p))
    })
}
