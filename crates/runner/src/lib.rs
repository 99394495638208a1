//! The runner: one per cluster. Pulls that cluster's tasks from NATS, one at a time, and runs
//! the Claude Code CLI headless on each in a fresh, empty workspace with its own `HOME`, under
//! a read-only tool policy ([`policy`]). Every tool call, tool result and refused call is
//! published as an audit event while the agent runs; the task's result (final text, cost,
//! turns, denials and an honest outcome) is published last, and only then is the task acked.
//!
//! Module map: [`policy`] (request tools -> CLI permission arguments), [`prompt`] (what the
//! agent is told), [`stream`] (reading stream-json, judging the outcome), [`agent`] (the
//! process: environment, process group, timeout), [`proxy`] (the model API on loopback: the
//! key and the budget), [`reaper`] (nothing of a run outlives it), [`task`] (one task from
//! message to ack).

pub mod agent;
pub mod policy;
pub mod prompt;
pub mod proxy;
pub mod reaper;
pub mod stream;
pub mod task;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use tracing::{info, warn};
use warroom_proto::{ClusterName, Stream, Subject, Task, names};
use warroom_runtime::{Bus, ConsumerSpec, Health};

use crate::agent::AgentEnv;
use crate::proxy::{ModelApi, Price, Prices};

/// How often a task is delivered before it is given up (a runner that crashes on it each time
/// must not loop forever).
pub const MAX_DELIVER: i64 = 3;
/// How long one pull waits for a task, so shutdown is noticed between pulls.
const PULL_EXPIRES: Duration = Duration::from_secs(5);
/// How long shutdown waits for unsent messages to reach NATS.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// Backoff after NATS errors in the pull loop.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Errors of the runner.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Bus(#[from] warroom_runtime::BusError),
    #[error("cannot set up the task consumer {consumer}: {message}")]
    Consumer { consumer: String, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The Anthropic API key, kept out of `Debug` output and `--help`.
#[derive(Clone)]
pub struct ApiKey(pub String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::str::FromStr for ApiKey {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Ok(ApiKey(s.to_owned()))
    }
}

/// The runner's configuration.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "warroom-runner",
    version,
    about = "Runs the Claude Code CLI on one cluster's warroom tasks."
)]
pub struct Config {
    /// The cluster this runner serves; its tasks come from `warroom.tasks.<cluster>`.
    #[arg(long, env = "WARROOM_CLUSTER")]
    pub cluster: ClusterName,
    /// The Claude Code CLI binary (a name looked up on PATH, or a path).
    #[arg(long, env = "WARROOM_CLAUDE_BIN", default_value = "claude")]
    pub claude_bin: PathBuf,
    /// The tool-call guard the CLI runs before every tool call (a `PreToolUse` hook). A bare
    /// name is looked up next to the runner's own executable, then on the agent's PATH.
    #[arg(long, env = "WARROOM_GUARD_BIN", default_value = "warroom-guard")]
    pub guard_bin: PathBuf,
    /// A guard configuration (YAML) extending the guard's built-in policy; loaded at start,
    /// so a bad file stops the runner with the guard's own error.
    #[arg(long, env = "WARROOM_GUARD_CONFIG")]
    pub guard_config: Option<PathBuf>,
    /// Where per-task workspaces and HOME folders are created (default: the system's temp).
    #[arg(long, env = "WARROOM_WORK_ROOT")]
    pub work_root: Option<PathBuf>,
    /// The most model turns one investigation may take.
    #[arg(long, env = "WARROOM_MAX_TURNS", default_value_t = 30)]
    pub max_turns: u32,
    /// The longest one investigation may run, whatever its request asks: a secure-zone cap
    /// (e.g. `1h`); a request's longer `timeout` is cut to it.
    #[arg(long, env = "WARROOM_MAX_TIMEOUT", default_value = "4h", value_parser = parse_duration)]
    pub max_timeout: Duration,
    /// How long a stopped agent gets between SIGINT and SIGKILL (e.g. `10s`, `500ms`).
    #[arg(long, env = "WARROOM_KILL_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub kill_grace: Duration,
    /// The Anthropic API endpoint the runner's proxy forwards the agent's model calls to
    /// (default https://api.anthropic.com). The CLI itself only talks to the proxy.
    #[arg(long, env = "ANTHROPIC_BASE_URL")]
    pub anthropic_base_url: Option<String>,
    /// The Anthropic API key. Only the runner's proxy holds it; the CLI gets a placeholder.
    /// Set it through the environment: a flag shows in process lists.
    #[arg(long, env = "ANTHROPIC_API_KEY", hide_env_values = true)]
    pub anthropic_api_key: Option<ApiKey>,
    /// The most one investigation may spend on model calls, in USD, as the proxy prices them;
    /// past it the next call is refused and the run fails with "budget exceeded".
    #[arg(long, env = "WARROOM_BUDGET_USD", default_value = "5.00", value_parser = parse_budget)]
    pub budget_usd: f64,
    /// The price of Opus models (and of models of no known family), `INPUT/OUTPUT` in USD per
    /// million tokens; cache writes cost 1.25x input, cache reads 0.1x.
    #[arg(long, env = "WARROOM_PRICE_OPUS", default_value = "15/75")]
    pub price_opus: Price,
    /// The price of Sonnet models, `INPUT/OUTPUT` in USD per million tokens.
    #[arg(long, env = "WARROOM_PRICE_SONNET", default_value = "3/15")]
    pub price_sonnet: Price,
    /// The price of Haiku models, `INPUT/OUTPUT` in USD per million tokens.
    #[arg(long, env = "WARROOM_PRICE_HAIKU", default_value = "1/5")]
    pub price_haiku: Price,
    /// The model the CLI uses (its default when not given).
    #[arg(long, env = "WARROOM_MODEL")]
    pub model: Option<String>,
    /// Retries of failed model API calls, passed as CLAUDE_CODE_MAX_RETRIES (CLI default 10).
    #[arg(long, env = "WARROOM_MAX_RETRIES")]
    pub max_retries: Option<u32>,
    /// A kubeconfig for the agent's kubectl/oc, passed as KUBECONFIG. In a pod, leave it out:
    /// KUBERNETES_SERVICE_HOST/PORT are passed through for in-cluster access.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// How long a task may go without an ack before NATS gives it to another replica; the
    /// runner sends a progress ack every third of it while the agent runs. Applies when the
    /// cluster's durable consumer is created (the first runner of the cluster creates it).
    #[arg(long, env = "WARROOM_ACK_WAIT", default_value = "60s", value_parser = parse_duration)]
    pub ack_wait: Duration,
    /// The PATH of the CLI and the commands it runs (default: the runner's own PATH).
    #[arg(long, env = "WARROOM_AGENT_PATH")]
    pub path: Option<String>,
    #[command(flatten)]
    pub common: warroom_runtime::CommonArgs,
}

impl Config {
    /// Checks what clap cannot; called before any I/O.
    pub fn validate(&self) -> Result<()> {
        // Every problem is reported at once, one per line.
        let mut problems = warroom_runtime::config::Problems::new();
        problems.extend(self.common.problems());
        if self.claude_bin.as_os_str().is_empty() {
            problems.push("--claude-bin must not be empty");
        } else if self.resolve_claude_bin().is_none() {
            problems.push(format!(
                "--claude-bin {} is not an executable file{}",
                self.claude_bin.display(),
                if self.claude_bin.components().count() == 1 {
                    " on the agent's PATH"
                } else {
                    ""
                }
            ));
        }
        if self.resolve_guard_bin().is_none() {
            let beside = std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(|dir| dir.display().to_string()));
            problems.push(if self.guard_bin.components().count() > 1 {
                format!(
                    "--guard-bin {} is not an executable file",
                    self.guard_bin.display()
                )
            } else {
                format!(
                    "--guard-bin {} was not found next to the runner ({}) or on the agent's PATH \
                     (build it with `cargo build -p warroom-guard`, or give its path)",
                    self.guard_bin.display(),
                    beside.as_deref().unwrap_or("unknown folder"),
                )
            });
        }
        if let Some(path) = &self.guard_config
            && let Err(e) = warroom_guard::Guard::load(path)
        {
            problems.push(format!("--guard-config: {e}"));
        }
        if self.ack_wait < Duration::from_secs(1) {
            problems.push("--ack-wait must be at least 1s");
        }
        if self.max_timeout < Duration::from_secs(1) {
            problems.push("--max-timeout must be at least 1s");
        }
        if self.max_turns == 0 {
            problems.push("--max-turns must be at least 1");
        }
        if let Some(root) = &self.work_root
            && !root.is_dir()
        {
            problems.push(format!(
                "--work-root {} is not an existing folder",
                root.display()
            ));
        }
        if let Some(url) = &self.anthropic_base_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            problems.push(format!(
                "--anthropic-base-url {url:?} must start with http:// or https://"
            ));
        }
        problems.finish().map_err(Error::Config)
    }

    /// The Claude Code CLI binary: `--claude-bin` itself when it is a path, otherwise the
    /// first executable of that name on the agent's PATH (where the process would look).
    pub fn resolve_claude_bin(&self) -> Option<PathBuf> {
        if self.claude_bin.components().count() > 1 {
            return is_executable(&self.claude_bin).then(|| self.claude_bin.clone());
        }
        std::env::split_paths(&self.agent_env().path)
            .map(|dir| dir.join(&self.claude_bin))
            .find(|candidate| is_executable(candidate))
    }

    /// The guard binary, as an absolute path: `--guard-bin` itself when it is a path,
    /// otherwise the executable of that name next to the runner's own executable, then the
    /// first on the agent's PATH.
    pub fn resolve_guard_bin(&self) -> Option<PathBuf> {
        let found = if self.guard_bin.components().count() > 1 {
            is_executable(&self.guard_bin).then(|| self.guard_bin.clone())
        } else {
            beside_runner()
                .into_iter()
                .chain(std::env::split_paths(&self.agent_env().path).filter(|d| d.is_absolute()))
                .map(|dir| dir.join(&self.guard_bin))
                .find(|candidate| is_executable(candidate))
        };
        found.and_then(|path| std::path::absolute(path).ok())
    }

    /// The environment the agent gets, from this configuration and the runner's own PATH and
    /// in-cluster service variables.
    pub fn agent_env(&self) -> AgentEnv {
        let path = self
            .path
            .clone()
            .or_else(|| std::env::var("PATH").ok())
            .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".to_owned());
        let kubernetes_service = ["KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"]
            .into_iter()
            .filter_map(|name| std::env::var(name).ok().map(|v| (name.to_owned(), v)))
            .collect();
        AgentEnv {
            path,
            max_retries: self.max_retries,
            kubeconfig: self.kubeconfig.clone(),
            kubernetes_service,
        }
    }

    /// The real model API the proxies forward to, with the key, prices and budget.
    pub fn model_api(&self) -> Result<ModelApi> {
        ModelApi::new(
            self.anthropic_base_url
                .as_deref()
                .unwrap_or(proxy::DEFAULT_UPSTREAM),
            self.anthropic_api_key.clone(),
            Prices {
                opus: self.price_opus,
                sonnet: self.price_sonnet,
                haiku: self.price_haiku,
            },
            self.budget_usd,
        )
    }

    /// Where per-task workspaces are made.
    pub fn work_root(&self) -> PathBuf {
        self.work_root.clone().unwrap_or_else(std::env::temp_dir)
    }
}

pub use warroom_runtime::parse_duration;

/// A budget in USD: a positive, finite number.
fn parse_budget(text: &str) -> std::result::Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(usd) if usd.is_finite() && usd > 0.0 => Ok(usd),
        _ => Err(format!(
            "{text:?}: expected a positive amount in USD, such as 5.00"
        )),
    }
}

fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The folders "next to the runner": its executable's own, and, when that is Cargo's `deps`
/// folder (a test binary running the runner as a library), the profile folder above it, where
/// Cargo puts the workspace's binaries.
fn beside_runner() -> Vec<PathBuf> {
    let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(std::path::Path::to_path_buf))
    else {
        return Vec::new();
    };
    let mut dirs = vec![dir.clone()];
    if dir.file_name().is_some_and(|name| name == "deps")
        && let Some(profile) = dir.parent()
    {
        dirs.push(profile.to_path_buf());
    }
    dirs
}

/// Runs the runner until `shutdown` resolves. A task in flight at shutdown is stopped and
/// handed back (nak) so another replica, or the next start, runs it.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    config.validate()?;
    let model_api = config.model_api()?;
    // Orphans of the agent's commands come to the runner, and a crashed run's leftovers go
    // before the first task.
    reaper::become_subreaper();
    let work_root = config.work_root();
    if let Err(e) = tokio::task::spawn_blocking(move || reaper::clean_work_root(&work_root)).await {
        warn!(cause = %e, "cannot clean the work root");
    }
    let stop = warroom_runtime::shutdown::token(shutdown);

    let health = Health::new("runner");
    health.spawn_server(config.common.health_addr, stop.clone().cancelled_owned());

    // The connection is retried until NATS is up; shutdown must still end that wait.
    let client_name = format!("warroom-runner-{}", config.cluster);
    let connection = config.common.connection();
    let bus = tokio::select! {
        () = stop.cancelled() => {
            info!(cluster = %config.cluster, "stopped before NATS was reachable");
            return Ok(());
        }
        bus = Bus::connect(&connection, &client_name) => bus?,
    };
    let consumer_name = names::runner_consumer(&config.cluster);
    let mut consumer = bus
        .consume::<Task>(ConsumerSpec {
            filter: Some(Subject::Task(config.cluster.clone())),
            ack_wait: config.ack_wait,
            max_deliver: MAX_DELIVER,
            batch: 1,
            ..ConsumerSpec::new(
                Stream::Tasks,
                consumer_name.clone(),
                "claude-warroom runner: this cluster's tasks",
            )
        })
        .await?;

    let runner = task::Runner::new(&config, model_api, bus.clone(), health.clone());
    health.set_ready(true);
    info!(cluster = %config.cluster, consumer = %consumer_name, "runner ready");

    loop {
        if stop.is_cancelled() {
            break;
        }
        // `warroom_runner_heartbeat_timestamp_seconds`: the pull loop is alive (it comes
        // round at least every PULL_EXPIRES while idle, and after every task).
        health.metrics.set(
            "heartbeat_timestamp_seconds",
            warroom_proto::now().unix_timestamp(),
        );
        // One message per pull: a task waits in the stream, where another replica can take
        // it, rather than in this replica's buffer while it is busy.
        let next = tokio::select! {
            () = stop.cancelled() => break,
            next = consumer.fetch_one(PULL_EXPIRES) => next,
        };
        match next {
            Ok(Some(delivery)) => runner.handle(delivery, stop.clone()).await,
            Ok(None) => {}
            Err(e) => {
                warn!(cause = %e, "cannot pull a task; retrying");
                health.metrics.inc("pull_errors");
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(RETRY_PAUSE) => {}
                }
            }
        }
    }
    health.set_ready(false);
    // Acks and naks sent last must reach the server before the connection goes away.
    bus.flush(FLUSH_TIMEOUT).await;
    info!(cluster = %config.cluster, "runner stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    fn parse(args: &[&str]) -> Config {
        let mut all = vec!["warroom-runner"];
        all.extend_from_slice(args);
        Config::try_parse_from(all).expect("parses")
    }

    #[test]
    fn defaults_and_validation() {
        let config = parse(&["--cluster", "prod-cluster-1"]);
        assert_eq!(config.max_turns, 30);
        assert_eq!(config.kill_grace, Duration::from_secs(10));
        assert_eq!(config.ack_wait, Duration::from_secs(60));
        assert_eq!(config.claude_bin, PathBuf::from("claude"));
        assert_eq!(config.guard_bin, PathBuf::from("warroom-guard"));
        assert_eq!(config.guard_config, None);
        // `sh` stands in for the CLI: found on PATH, or given as a path.
        let config = parse(&["--cluster", "prod-cluster-1", "--claude-bin", "sh"]);
        assert!(config.validate().is_ok());
        assert!(config.resolve_claude_bin().is_some());
        let config = parse(&["--cluster", "a", "--claude-bin", "/bin/sh"]);
        assert_eq!(config.resolve_claude_bin(), Some(PathBuf::from("/bin/sh")));

        let missing = parse(&["--cluster", "a", "--claude-bin", "no-such-claude-xyz"]);
        let err = missing.validate().expect_err("missing binary").to_string();
        assert!(err.contains("on the agent's PATH"), "{err}");
        let missing = parse(&["--cluster", "a", "--claude-bin", "/nope/claude"]);
        assert!(missing.validate().is_err());

        // The cluster name is checked while parsing: it becomes a subject token.
        let err = Config::try_parse_from(["warroom-runner", "--cluster", "prod.cluster"])
            .expect_err("a dot in a cluster name")
            .to_string();
        assert!(
            err.contains("--cluster") && err.contains("prod.cluster"),
            "{err}"
        );

        let bad = parse(&["--cluster", "a", "--claude-bin", "sh", "--max-turns", "0"]);
        assert!(bad.validate().is_err());
        // Every bad flag is reported at once.
        let bad = parse(&[
            "--cluster",
            "a",
            "--claude-bin",
            "no-such-claude-xyz",
            "--max-turns",
            "0",
            "--anthropic-base-url",
            "ftp://x",
        ]);
        let err = bad.validate().expect_err("three problems").to_string();
        for expected in ["--claude-bin", "--max-turns", "--anthropic-base-url"] {
            assert!(err.contains(expected), "{expected} missing from: {err}");
        }
        let bad = parse(&[
            "--cluster",
            "a",
            "--claude-bin",
            "sh",
            "--anthropic-base-url",
            "localhost:1",
        ]);
        assert!(bad.validate().is_err());
        let bad = parse(&[
            "--cluster",
            "a",
            "--claude-bin",
            "sh",
            "--work-root",
            "/does/not/exist",
        ]);
        assert!(bad.validate().is_err());
    }

    #[test]
    fn api_key_never_shows() {
        let config = parse(&["--cluster", "a", "--anthropic-api-key", "sk-ant-secret"]);
        assert!(!format!("{config:?}").contains("sk-ant-secret"));
        // `--help` shows env values unless told not to; the key's value must never show.
        let command = <Config as clap::CommandFactory>::command();
        let key = command
            .get_arguments()
            .find(|arg| arg.get_id() == "anthropic_api_key")
            .expect("the key argument");
        assert!(key.is_hide_env_values_set());
    }
}
