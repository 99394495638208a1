//! The local stack: every daemon in one process, against a git remote, for trying the whole
//! system on one machine (`warroom-dev up` and `demo`, also reached as `claude-warroom dev`)
//! and for the workspace's end-to-end tests.
//!
//! Each daemon runs through its library's `run`, exactly as its own binary would, with the
//! configuration parsed from the same flags. `nats-server` is started here unless a URL is
//! given. Without `ANTHROPIC_API_KEY` the runners talk to a local scripted model that replays
//! a recorded demo investigation, and run recorded `oc`/`kubectl` answers instead of real
//! ones: every report made that way says that it is a replay.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use warroom_runtime::daemon::Daemon as _;

use anyhow::{Context as _, Result, bail};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use warroom_scripted_model::{Script, ScriptedModel};

/// The recorded demo investigation of replay mode.
const REPLAY_SCRIPT: &str = include_str!("../replay/demo-script.yaml");
/// What every report made in replay mode says first.
const REPLAY_NOTE: &str = "**Replay.** Made by `warroom-dev` in replay mode: a recorded \
    demo investigation served by a local scripted model, with recorded `oc`/`kubectl` answers. \
    No model and no cluster were consulted; durations and costs are not real.";
/// Recorded `oc`/`kubectl` answers of replay mode.
const REPLAY_KUBECTL: &str = include_str!("../replay/replay-kubectl.sh");

/// What the local stack runs against.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// The git remote (a path or a URL).
    pub repo: String,
    pub branch: String,
    pub clusters: Vec<String>,
    /// An existing NATS server; `None` starts one.
    pub nats_url: Option<String>,
    /// Where the stack keeps its state (NATS store, clones, workspaces).
    pub state_dir: PathBuf,
    /// The Claude Code CLI.
    pub claude_bin: PathBuf,
    /// How often the gateway checks the remote (a duration such as `1s`).
    pub poll_interval: String,
    /// Which model the runners' Claude Code CLI talks to.
    pub model: Model,
    /// Put in front of `PATH` for the agents (where `oc`/`kubectl` are looked up).
    pub agent_path: Vec<PathBuf>,
    /// The secure-zone policy file the gateway enforces (`warroom-gateway --policy`). `None`
    /// runs the gateway with `--insecure-allow-unsigned`: every valid request runs, and
    /// nothing checks who wrote it.
    pub policy: Option<PathBuf>,
    /// Flags added after the stack's own, per daemon (for example `--max-turns 3` for the
    /// runners): the daemons' own defaults hold otherwise.
    pub extra_args: ExtraArgs,
    /// Whether the daemons run as tasks of this process or each as its own process.
    pub daemons: Daemons,
}

impl StackOptions {
    /// The options for `clusters` against `repo` with every default: branch `main`, a 1 s
    /// poll, the `claude` found by [`find_tool`], replay mode, and no policy (requests are
    /// not verified).
    pub fn new(repo: impl Into<String>, clusters: &[&str], state_dir: impl Into<PathBuf>) -> Self {
        StackOptions {
            repo: repo.into(),
            branch: "main".to_owned(),
            clusters: clusters.iter().map(|c| (*c).to_owned()).collect(),
            nats_url: None,
            state_dir: state_dir.into(),
            claude_bin: find_tool("claude", "WARROOM_CLAUDE_BIN")
                .unwrap_or_else(|| PathBuf::from("claude")),
            poll_interval: "1s".to_owned(),
            model: Model::Replay,
            agent_path: Vec::new(),
            policy: None,
            extra_args: ExtraArgs::default(),
            daemons: Daemons::InProcess,
        }
    }
}

/// How the stack runs its daemons.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Daemons {
    /// Each daemon's library `run` as a task of this process (one binary to ship).
    #[default]
    InProcess,
    /// Each daemon as its own binary (`warroom-gateway`, ...) from this folder, with the same
    /// flags, so that one can be killed ([`Stack::kill`]), started again and measured
    /// ([`Stack::memory`]) on its own. Its output goes to `<state>/logs/<daemon>.log`.
    Processes { bin_dir: PathBuf },
}

/// The model behind the runners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Model {
    /// Anthropic's API with this key (`ANTHROPIC_BASE_URL` from the environment, if set).
    Anthropic { api_key: String },
    /// The recorded demo investigation, served by a local scripted model; `oc` and `kubectl`
    /// answer from a recording too. Every report says that it is a replay.
    Replay,
    /// Any Anthropic-Messages-compatible server (the tests' scripted model).
    At { base_url: String },
}

/// Extra flags per daemon.
#[derive(Debug, Clone, Default)]
pub struct ExtraArgs {
    pub gateway: Vec<String>,
    pub dispatcher: Vec<String>,
    pub runner: Vec<String>,
    pub publisher: Vec<String>,
    /// Flags for one cluster's runner only, after [`ExtraArgs::runner`] (for example its own
    /// `--nats-nkey`), by cluster name.
    pub runner_of: std::collections::BTreeMap<String, Vec<String>>,
}

/// A running local stack. Dropping it stops the NATS server it started (and kills daemon
/// processes); call [`Stack::shutdown`] to stop the daemons cleanly first.
pub struct Stack {
    pub nats_url: String,
    /// Whether the runners replay the recorded demo instead of calling a real model.
    pub replay: bool,
    /// The publisher's signing key, when the stack made one: its public key file and line.
    pub publisher_key: Option<(PathBuf, String)>,
    cancel: CancellationToken,
    daemons: JoinSet<(String, Exit)>,
    /// What started each daemon, by name, to start it again.
    specs: Vec<DaemonSpec>,
    /// The daemons running as processes, by name.
    processes: std::collections::BTreeMap<String, Process>,
    mode: Daemons,
    logs: PathBuf,
    _model: Option<ScriptedModel>,
    _nats: Option<LocalNats>,
}

/// How a daemon's task or process ended.
enum Exit {
    /// It stopped when asked.
    Stopped,
    /// [`Stack::kill`] killed it or [`Stack::stop`] stopped it.
    Killed,
    Failed(anyhow::Error),
}

/// A daemon running as its own process.
struct Process {
    pid: u32,
    /// Set before [`Stack::kill`] or [`Stack::stop`] signals it, so its end is not a failure.
    killed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// A daemon's memory, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// Resident set size now (`VmRSS`), in KiB.
    pub rss_kib: u64,
    /// The highest resident set size so far (`VmHWM`), in KiB.
    pub peak_kib: u64,
}

impl Stack {
    /// Starts NATS (unless given), the replay model (without an API key), and every daemon.
    pub async fn start(options: &StackOptions) -> Result<Stack> {
        check_clusters(&options.clusters)?;
        tokio::fs::create_dir_all(&options.state_dir)
            .await
            .with_context(|| {
                format!(
                    "cannot create the state folder {}",
                    options.state_dir.display()
                )
            })?;
        let state = tokio::fs::canonicalize(&options.state_dir).await?;
        let (nats, nats_url) = match &options.nats_url {
            Some(url) => (None, url.clone()),
            None => {
                let local = LocalNats::start(&state.join("nats")).await?;
                let url = local.url.clone();
                (Some(local), url)
            }
        };
        let model = ModelSetup::prepare(options, &state).await?;

        let mut launch = Launch {
            options,
            state: &state,
            common: vec!["--nats-url".to_owned(), nats_url.clone()],
            specs: Vec::new(),
        };
        launch.gateway();
        launch.dispatcher();
        launch.runners(&model.runner_args).await?;
        let publisher_key = launch.publisher(&model.publisher_args).await?;
        let specs = launch.specs;

        let logs = state.join("logs");
        if matches!(options.daemons, Daemons::Processes { .. }) {
            tokio::fs::create_dir_all(&logs)
                .await
                .with_context(|| format!("cannot create {}", logs.display()))?;
        }
        let mut stack = Stack {
            nats_url,
            replay: options.model == Model::Replay,
            publisher_key,
            cancel: CancellationToken::new(),
            daemons: JoinSet::new(),
            specs: Vec::new(),
            processes: Default::default(),
            mode: options.daemons.clone(),
            logs,
            _model: model.server,
            _nats: nats,
        };
        for spec in &specs {
            stack.launch(spec)?;
        }
        stack.specs = specs;
        Ok(stack)
    }

    /// The names of the stack's daemons: `gateway`, `dispatcher`, `runner-<cluster>`,
    /// `publisher`.
    pub fn daemon_names(&self) -> Vec<String> {
        self.specs.iter().map(|s| s.name.clone()).collect()
    }

    /// Kills a daemon running as a process with SIGKILL, as a crash or an OOM kill would, and
    /// waits until it is gone.
    pub async fn kill(&mut self, name: &str) -> Result<()> {
        self.signal(name, nix::sys::signal::Signal::SIGKILL).await
    }

    /// Stops a daemon running as a process with SIGTERM, as Kubernetes stops a pod, and waits
    /// until it has finished its work in flight and exited.
    pub async fn stop(&mut self, name: &str) -> Result<()> {
        self.signal(name, nix::sys::signal::Signal::SIGTERM).await
    }

    async fn signal(&mut self, name: &str, signal: nix::sys::signal::Signal) -> Result<()> {
        let process = self.process(name)?;
        process
            .killed
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let pid = nix::unistd::Pid::from_raw(i32::try_from(process.pid)?);
        nix::sys::signal::kill(pid, signal)
            .with_context(|| format!("cannot send {signal} to the {name}"))?;
        // The process is reaped by its watcher task; wait until /proc no longer has it.
        let proc_dir = PathBuf::from(format!("/proc/{}", process.pid));
        while tokio::fs::metadata(&proc_dir).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.processes.remove(name);
        Ok(())
    }

    /// Starts a daemon again with the flags it was first started with (after
    /// [`Stack::kill`]).
    pub fn start_again(&mut self, name: &str) -> Result<()> {
        if self.processes.contains_key(name) {
            bail!("the {name} is running");
        }
        let spec = self
            .specs
            .iter()
            .find(|s| s.name == name)
            .cloned()
            .with_context(|| format!("the stack has no daemon named `{name}`"))?;
        self.launch(&spec)
    }

    /// The memory a daemon running as a process uses now and at most so far.
    pub fn memory(&self, name: &str) -> Result<Memory> {
        let process = self.process(name)?;
        let path = format!("/proc/{}/status", process.pid);
        let status =
            std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .with_context(|| format!("{path} has no {key}"))
        };
        Ok(Memory {
            rss_kib: field("VmRSS:")?,
            peak_kib: field("VmHWM:")?,
        })
    }

    /// The process id of a daemon running as a process.
    pub fn pid(&self, name: &str) -> Result<u32> {
        Ok(self.process(name)?.pid)
    }

    fn process(&self, name: &str) -> Result<&Process> {
        if self.mode == Daemons::InProcess {
            bail!(
                "the daemons run in this process: only daemon processes can be killed or measured"
            );
        }
        self.processes
            .get(name)
            .with_context(|| format!("no daemon process named `{name}` is running"))
    }

    fn launch(&mut self, spec: &DaemonSpec) -> Result<()> {
        let stop = self.cancel.clone();
        match &self.mode {
            Daemons::InProcess => spec.start_in_process(&mut self.daemons, stop),
            Daemons::Processes { bin_dir } => {
                let process = spec.start_process(bin_dir, &self.logs, &mut self.daemons, stop)?;
                self.processes.insert(spec.name.clone(), process);
                Ok(())
            }
        }
    }

    /// Resolves with the daemon's name and error when one stops on its own: a daemon only
    /// stops when asked, so this is always a failure. A daemon [`Stack::kill`] killed is not
    /// one.
    pub async fn failed(&mut self) -> (String, anyhow::Error) {
        loop {
            match self.daemons.join_next().await {
                Some(Ok((_, Exit::Killed))) => continue,
                Some(Ok((name, Exit::Stopped))) => {
                    return (name, anyhow::anyhow!("stopped without being asked"));
                }
                Some(Ok((name, Exit::Failed(e)))) => return (name, e),
                Some(Err(e)) => return ("a daemon".to_owned(), anyhow::Error::from(e)),
                None => std::future::pending().await,
            }
        }
    }

    /// Stops every daemon (SIGTERM for processes) and waits for them to finish their work in
    /// flight.
    pub async fn shutdown(mut self) -> Result<()> {
        self.cancel.cancel();
        let mut failures = Vec::new();
        while let Some(joined) = self.daemons.join_next().await {
            match joined {
                Ok((_, Exit::Stopped | Exit::Killed)) => {}
                Ok((name, Exit::Failed(e))) => failures.push(format!("{name}: {e:#}")),
                Err(e) => failures.push(e.to_string()),
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            bail!("daemons failed: {}", failures.join("; "))
        }
    }
}

/// A daemon's configuration from the stack's flags, then the caller's extra flags, exactly
/// as its binary would parse them (environment variables still apply where no flag is given).
fn parse<C: clap::Parser>(binary: &str, args: &[String]) -> Result<C> {
    let argv = std::iter::once(binary.to_owned()).chain(args.iter().cloned());
    C::try_parse_from(argv).with_context(|| format!("{binary} configuration"))
}

fn spawn<E>(
    daemons: &mut JoinSet<(String, Exit)>,
    name: &str,
    run: impl std::future::Future<Output = std::result::Result<(), E>> + Send + 'static,
) where
    E: std::error::Error + Send + Sync + 'static,
{
    let name = name.to_owned();
    daemons.spawn(async move {
        let exit = match run.await {
            Ok(()) => Exit::Stopped,
            Err(e) => Exit::Failed(anyhow::Error::from(e)),
        };
        (name, exit)
    });
}

/// Refuses an empty cluster list and names that are not cluster names.
fn check_clusters(clusters: &[String]) -> Result<()> {
    if clusters.is_empty() {
        bail!("--clusters: name at least one cluster");
    }
    for cluster in clusters {
        if let Some(problem) = warroom_proto::ClusterName::problem(cluster) {
            bail!("--clusters: cluster name `{cluster}` {problem}");
        }
    }
    Ok(())
}

/// What the model of [`StackOptions::model`] needs: flags for the runners and the
/// publisher, and in replay mode the scripted model server, kept running with the stack.
struct ModelSetup {
    runner_args: Vec<String>,
    publisher_args: Vec<String>,
    server: Option<ScriptedModel>,
}

impl ModelSetup {
    async fn prepare(options: &StackOptions, state: &Path) -> Result<ModelSetup> {
        let mut agent_path = options.agent_path.clone();
        let mut setup = ModelSetup {
            runner_args: Vec::new(),
            publisher_args: Vec::new(),
            server: None,
        };
        match &options.model {
            Model::Anthropic { api_key } => {
                setup
                    .runner_args
                    .extend(["--anthropic-api-key".to_owned(), api_key.clone()]);
            }
            Model::At { base_url } => setup.runner_args.extend([
                "--anthropic-base-url".to_owned(),
                base_url.clone(),
                "--anthropic-api-key".to_owned(),
                "scripted-model".to_owned(),
            ]),
            Model::Replay => {
                let script = Script::from_yaml(REPLAY_SCRIPT)
                    .context("the built-in replay script is invalid")?;
                let server = ScriptedModel::start(script)
                    .await
                    .context("cannot start the replay model server")?;
                setup.runner_args.extend([
                    "--anthropic-base-url".to_owned(),
                    server.base_url(),
                    "--anthropic-api-key".to_owned(),
                    "replay-mode".to_owned(),
                ]);
                setup
                    .publisher_args
                    .extend(["--report-note".to_owned(), REPLAY_NOTE.to_owned()]);
                let bin = state.join("replay-bin");
                install_replay_kubectl(&bin).await?;
                agent_path.insert(0, bin);
                setup.server = Some(server);
            }
        }
        if !agent_path.is_empty() {
            let inherited = std::env::var_os("PATH").unwrap_or_default();
            let path = std::env::join_paths(
                agent_path
                    .iter()
                    .cloned()
                    .chain(std::env::split_paths(&inherited)),
            )
            .context("the agent PATH holds a folder with a `:` in its name")?;
            setup
                .runner_args
                .extend(["--path".to_owned(), path.to_string_lossy().into_owned()]);
        }
        Ok(setup)
    }
}

/// Which daemon a [`DaemonSpec`] starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Gateway,
    Dispatcher,
    Runner,
    Publisher,
}

impl Kind {
    fn binary(self) -> &'static str {
        match self {
            Kind::Gateway => "warroom-gateway",
            Kind::Dispatcher => "warroom-dispatcher",
            Kind::Runner => "warroom-runner",
            Kind::Publisher => "warroom-publisher",
        }
    }

    /// Whether the daemon runs one active replica at a time under a lease.
    fn leased(self) -> bool {
        matches!(self, Kind::Dispatcher | Kind::Publisher)
    }
}

/// One daemon of the stack: its name and its binary's flags.
#[derive(Debug, Clone)]
struct DaemonSpec {
    name: String,
    kind: Kind,
    args: Vec<String>,
    /// The stack runs the gateway without a policy: an operator's `WARROOM_POLICY` must not
    /// reach it.
    no_policy: bool,
}

impl DaemonSpec {
    /// Runs the daemon's library `run` as a task, configured exactly as its binary would be
    /// (its health endpoint off).
    fn start_in_process(
        &self,
        daemons: &mut JoinSet<(String, Exit)>,
        stop: CancellationToken,
    ) -> Result<()> {
        let binary = self.kind.binary();
        let shutdown = stop.cancelled_owned();
        match self.kind {
            Kind::Gateway => {
                let mut config: warroom_gateway::Config = parse(binary, &self.args)?;
                if self.no_policy {
                    config.policy = None;
                }
                config.common.health_addr = None;
                let settings = config
                    .validate()
                    .with_context(|| format!("{binary} configuration"))?;
                spawn(
                    daemons,
                    &self.name,
                    warroom_gateway::run(settings, Default::default(), shutdown),
                );
            }
            Kind::Dispatcher => {
                let mut config: warroom_dispatcher::Config = parse(binary, &self.args)?;
                config.common.health_addr = None;
                let settings = config
                    .validate()
                    .with_context(|| format!("{binary} configuration"))?;
                spawn(
                    daemons,
                    &self.name,
                    warroom_dispatcher::run(settings, Default::default(), shutdown),
                );
            }
            Kind::Runner => {
                let mut config: warroom_runner::Config = parse(binary, &self.args)?;
                config.common.health_addr = None;
                let settings = config
                    .validate()
                    .with_context(|| format!("{binary} configuration"))?;
                spawn(
                    daemons,
                    &self.name,
                    warroom_runner::run(settings, Default::default(), shutdown),
                );
            }
            Kind::Publisher => {
                let mut config: warroom_publisher::Config = parse(binary, &self.args)?;
                config.common.health_addr = None;
                let settings = config
                    .validate()
                    .with_context(|| format!("{binary} configuration"))?;
                spawn(
                    daemons,
                    &self.name,
                    warroom_publisher::run(settings, Default::default(), shutdown),
                );
            }
        }
        Ok(())
    }

    /// Starts the daemon's binary from `bin_dir`; a watcher task reaps it, and sends it
    /// SIGTERM when the stack stops. A leased daemon gets a replica id that stays the same
    /// when it is started again, so a restart after a kill takes its lease back at once.
    fn start_process(
        &self,
        bin_dir: &Path,
        logs: &Path,
        daemons: &mut JoinSet<(String, Exit)>,
        stop: CancellationToken,
    ) -> Result<Process> {
        let binary = bin_dir.join(self.kind.binary());
        let log_path = logs.join(format!("{}.log", self.name));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        let mut command = tokio::process::Command::new(&binary);
        command.args(&self.args);
        if self.kind.leased() && !self.args.iter().any(|a| a.starts_with("--replica-id")) {
            command.args(["--replica-id", &format!("stack-{}", self.name)]);
        }
        command.env_remove("WARROOM_HEALTH_ADDR");
        if self.no_policy {
            command.env_remove("WARROOM_POLICY");
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {} (build the workspace's binaries first)",
                    binary.display()
                )
            })?;
        let pid = child.id().context("the daemon exited at once")?;
        let killed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let name = self.name.clone();
        let was_killed = killed.clone();
        daemons.spawn(async move {
            let status = tokio::select! {
                status = child.wait() => status,
                () = stop.cancelled() => {
                    if let Ok(pid) = i32::try_from(pid) {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGTERM,
                        );
                    }
                    child.wait().await
                }
            };
            let exit = match status {
                _ if was_killed.load(std::sync::atomic::Ordering::SeqCst) => Exit::Killed,
                Ok(status) if status.success() => Exit::Stopped,
                Ok(status) => Exit::Failed(anyhow::anyhow!(
                    "exited with {status}; see {}",
                    log_path.display()
                )),
                Err(e) => Exit::Failed(anyhow::Error::from(e).context("cannot wait for it")),
            };
            (name, exit)
        });
        Ok(Process { pid, killed })
    }
}

/// Builds each daemon's flags.
struct Launch<'a> {
    options: &'a StackOptions,
    state: &'a Path,
    /// The flags every daemon takes (the NATS URL).
    common: Vec<String>,
    specs: Vec<DaemonSpec>,
}

impl Launch<'_> {
    fn state_arg(&self, part: &str) -> String {
        self.state.join(part).display().to_string()
    }

    fn add(&mut self, name: &str, kind: Kind, own: Vec<String>, extra: &[Vec<String>]) {
        let args = own
            .into_iter()
            .chain(self.common.iter().cloned())
            .chain(extra.iter().flatten().cloned())
            .collect();
        self.specs.push(DaemonSpec {
            name: name.to_owned(),
            kind,
            args,
            no_policy: kind == Kind::Gateway && self.options.policy.is_none(),
        });
    }

    fn gateway(&mut self) {
        let options = self.options;
        let trust = match &options.policy {
            Some(path) => vec!["--policy".to_owned(), path.display().to_string()],
            None => vec!["--insecure-allow-unsigned".to_owned()],
        };
        let own = strings([
            "--repo",
            &options.repo,
            "--branch",
            &options.branch,
            "--poll-interval",
            &options.poll_interval,
            "--work-dir",
            &self.state_arg("gateway"),
        ]);
        self.add(
            "gateway",
            Kind::Gateway,
            own,
            &[trust, options.extra_args.gateway.clone()],
        );
    }

    fn dispatcher(&mut self) {
        let extra = self.options.extra_args.dispatcher.clone();
        self.add("dispatcher", Kind::Dispatcher, Vec::new(), &[extra]);
    }

    /// One runner per cluster, each in a work folder of its own.
    async fn runners(&mut self, model_args: &[String]) -> Result<()> {
        let options = self.options;
        let claude_bin = options.claude_bin.display().to_string();
        for cluster in &options.clusters {
            let work_root = self.state.join("runner").join(cluster);
            tokio::fs::create_dir_all(&work_root)
                .await
                .with_context(|| format!("cannot create {}", work_root.display()))?;
            let own = strings([
                "--cluster",
                cluster.as_str(),
                "--claude-bin",
                &claude_bin,
                "--work-root",
                &work_root.display().to_string(),
            ])
            .into_iter()
            .chain(model_args.iter().cloned())
            .collect();
            let extra = [
                options.extra_args.runner.clone(),
                options
                    .extra_args
                    .runner_of
                    .get(cluster)
                    .cloned()
                    .unwrap_or_default(),
            ];
            self.add(&format!("runner-{cluster}"), Kind::Runner, own, &extra);
        }
        Ok(())
    }

    /// Adds the publisher; returns the throwaway signing key it made, if it made one.
    async fn publisher(&mut self, model_args: &[String]) -> Result<Option<(PathBuf, String)>> {
        let options = self.options;
        // The publisher signs its commits with a throwaway key kept in the state folder
        // (unless the caller gave one), so `claude-warroom status --verify` works locally.
        let given_key = options
            .extra_args
            .publisher
            .iter()
            .any(|a| a.starts_with("--signing-key"))
            || std::env::var_os("WARROOM_SIGNING_KEY").is_some();
        let mut signing_args = Vec::new();
        let publisher_key = if given_key {
            None
        } else {
            let path = self.state.join("publisher-signing-key");
            let key = {
                let path = path.clone();
                tokio::task::spawn_blocking(move || throwaway_signing_key(&path))
                    .await
                    .context("the key maker stopped")??
            };
            signing_args.extend(["--signing-key".to_owned(), path.display().to_string()]);
            Some(key)
        };
        let own = strings([
            "--repo",
            &options.repo,
            "--branch",
            &options.branch,
            "--work-dir",
            &self.state_arg("publisher"),
        ]);
        self.add(
            "publisher",
            Kind::Publisher,
            own,
            &[
                model_args.to_vec(),
                signing_args,
                options.extra_args.publisher.clone(),
            ],
        );
        Ok(publisher_key)
    }
}

fn strings<const N: usize>(items: [&str; N]) -> Vec<String> {
    items.into_iter().map(str::to_owned).collect()
}

/// Makes (once) an SSH key pair without passphrase at `path` for the publisher to sign with,
/// and returns its public key file and line. Local use only: it is a key of this machine's
/// state folder, never of a secure zone.
fn throwaway_signing_key(path: &Path) -> Result<(PathBuf, String)> {
    let public = path.with_extension("pub");
    if !path.exists() {
        let output = std::process::Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "warroom-dev-publisher",
                "-f",
            ])
            .arg(path)
            .stdin(std::process::Stdio::null())
            .output()
            .context(
                "cannot run ssh-keygen to make the publisher's signing key (install OpenSSH's \
                 client)",
            )?;
        if !output.status.success() {
            bail!(
                "ssh-keygen could not make the publisher's signing key {}: {}",
                path.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
    }
    let line = std::fs::read_to_string(&public)
        .with_context(|| format!("cannot read {}", public.display()))?;
    Ok((public, line.trim().to_owned()))
}

async fn install_replay_kubectl(bin: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    tokio::fs::create_dir_all(bin).await?;
    for name in ["kubectl", "oc"] {
        let path = bin.join(name);
        tokio::fs::write(&path, REPLAY_KUBECTL).await?;
        tokio::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).await?;
    }
    Ok(())
}

/// A `nats-server` with JetStream started for the local stack, stopped on drop.
struct LocalNats {
    url: String,
    _child: tokio::process::Child,
}

impl LocalNats {
    async fn start(store: &Path) -> Result<LocalNats> {
        // Looking for the binary reads the file system: off the async threads.
        let binary = tokio::task::spawn_blocking(|| {
            find_tool("nats-server", "WARROOM_NATS_SERVER_BIN")
        })
        .await?
        .context("nats-server was not found: run scripts/setup, give --nats-url, or set WARROOM_NATS_SERVER_BIN")?;
        tokio::fs::create_dir_all(store).await?;
        let ports_dir = store.join("ports");
        let _ = tokio::fs::remove_dir_all(&ports_dir).await;
        tokio::fs::create_dir_all(&ports_dir).await?;
        let log = tokio::fs::File::create(store.join("nats-server.log"))
            .await?
            .into_std()
            .await;
        let child = tokio::process::Command::new(&binary)
            .args(["-a", "127.0.0.1", "-p", "-1", "-js", "-sd"])
            .arg(store)
            .arg("--ports_file_dir")
            .arg(&ports_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(url) = read_ports_file(&ports_dir).await {
                return Ok(LocalNats { url, _child: child });
            }
            if Instant::now() > deadline {
                bail!(
                    "nats-server did not start within 20 s; see {}",
                    store.join("nats-server.log").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The client URL `nats-server` wrote into its ports file, once it has.
async fn read_ports_file(dir: &Path) -> Option<String> {
    let mut entries = tokio::fs::read_dir(dir).await.ok()?;
    while let Ok(Some(entry)) = entries.next_entry().await {
        if !entry.file_name().to_string_lossy().ends_with(".ports") {
            continue;
        }
        let text = tokio::fs::read_to_string(entry.path()).await.ok()?;
        let ports: serde_json::Value = serde_json::from_str(&text).ok()?;
        return ports["nats"][0].as_str().map(str::to_owned);
    }
    None
}

/// A tool from an environment variable, `.tools/bin` of the current folder or of the
/// workspace this binary was built in, or `PATH`.
pub fn find_tool(name: &str, env_var: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env_var) {
        return Some(PathBuf::from(path));
    }
    let built_in = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../.tools/bin")
        .join(name);
    let here = PathBuf::from(".tools/bin").join(name);
    for candidate in [here, built_in] {
        if candidate.is_file() {
            return candidate.canonicalize().ok();
        }
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}
