//! The runner's configuration: its flags (each with an environment variable), checked
//! before any I/O.

use std::path::PathBuf;
use std::time::Duration;

use warroom_proto::ClusterName;
use warroom_runtime::config::{Invalid, InvalidConfig};

use crate::agent::AgentEnv;
use crate::proxy::{self, ModelApi, Price, Prices};
use crate::{Error, Result};

/// The most tasks one replica may run at once (`--concurrency`): each is a CLI process tree
/// and a model proxy, and their budgets add up.
pub const MAX_CONCURRENCY: u32 = 16;

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
    about = "Runs the Claude Code CLI on one cluster's warroom tasks.",
    after_help = "A session pod's two containers run `warroom-runner model-proxy` and \
                  `warroom-runner session-shell` (each has its own --help); see --session-pods."
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
    /// A guard configuration (YAML) extending the guard's built-in rules; loaded at start,
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
    /// The most one investigation may spend on model calls, in USD, as the proxy prices them;
    /// past it the next call is refused and the run fails with "budget exceeded".
    #[arg(long, env = "WARROOM_BUDGET_USD", default_value = "5.00", value_parser = parse_budget)]
    pub budget_usd: f64,
    #[command(flatten)]
    pub api: ModelApiArgs,
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
    /// At most how often a running agent's progress (turns, tool calls, refused calls, cost
    /// so far, the last tool calls) is reported to the dispatcher for `status.json`; a report
    /// goes out with the agent's next tool call once this has passed.
    #[arg(long, env = "WARROOM_PROGRESS_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub progress_interval: Duration,
    /// How many tasks this replica runs at once (1 to 16), each in its own workspace with its
    /// own agent, HOME and model proxy. A task is pulled only when a slot is free, so tasks
    /// beyond that wait in the stream, where another replica of the cluster can take them.
    #[arg(long, env = "WARROOM_CONCURRENCY", default_value_t = 1)]
    pub concurrency: u32,
    /// The PATH of the CLI and the commands it runs (default: the runner's own PATH).
    #[arg(long, env = "WARROOM_AGENT_PATH")]
    pub path: Option<String>,
    #[command(flatten)]
    pub session: SessionPodArgs,
    #[command(flatten)]
    pub common: warroom_runtime::CommonArgs,
}

/// Where the namespace of the runner's own pod is written (the service account's mount).
pub const POD_NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";
/// The session namespace when neither `--session-namespace` nor [`POD_NAMESPACE_FILE`] says.
pub const DEFAULT_SESSION_NAMESPACE: &str = "claude-warroom";

/// The session pods' flags: the pod a session with `spec.exec` is held as, for
/// `kubectl exec -it <pod> -c session -- claude` (see [`crate::session_pod`]).
#[derive(Debug, Clone, clap::Args)]
pub struct SessionPodArgs {
    /// Hold session pods: a session with `spec.exec` gets a pod in --session-namespace that
    /// engineers exec into (`kubectl exec -it <pod> -c session -- claude`). Needs
    /// --session-image and RBAC to create, list and delete pods there (the
    /// deploy/components/session-exec component).
    #[arg(long, env = "WARROOM_SESSION_PODS")]
    pub session_pods: bool,
    /// The image of session pods (the runner's own image: both containers run
    /// `warroom-runner`). Required with --session-pods.
    #[arg(long, env = "WARROOM_SESSION_IMAGE")]
    pub session_image: Option<String>,
    /// The namespace session pods are made in (default: the runner's own, read from the
    /// service account mount, else `claude-warroom`).
    #[arg(long, env = "WARROOM_SESSION_NAMESPACE")]
    pub session_namespace: Option<String>,
    /// The service account of session pods: its token is the session's kubectl identity
    /// (bind it read-only).
    #[arg(
        long,
        env = "WARROOM_SESSION_SERVICE_ACCOUNT",
        default_value = "warroom-session"
    )]
    pub session_service_account: String,
    /// The loopback port of a session pod's model proxy (its `model-proxy` container).
    #[arg(long, env = "WARROOM_SESSION_PROXY_PORT", default_value_t = 8787)]
    pub session_proxy_port: u16,
    /// The Secret holding the model API key (key `api-key`), mounted into the session pod's
    /// `model-proxy` container only.
    #[arg(
        long,
        env = "WARROOM_SESSION_MODEL_SECRET",
        default_value = "warroom-model"
    )]
    pub session_model_secret: String,
}

impl SessionPodArgs {
    /// The namespace session pods are made in: the flag, else the runner's own pod's
    /// namespace, else [`DEFAULT_SESSION_NAMESPACE`].
    pub fn namespace(&self) -> String {
        self.session_namespace.clone().unwrap_or_else(|| {
            std::fs::read_to_string(POD_NAMESPACE_FILE)
                .ok()
                .map(|text| text.trim().to_owned())
                .filter(|ns| !ns.is_empty())
                .unwrap_or_else(|| DEFAULT_SESSION_NAMESPACE.to_owned())
        })
    }

    /// Every problem of the session pod flags.
    fn problems(&self, problems: &mut warroom_runtime::config::Problems) {
        if !self.session_pods {
            return;
        }
        match &self.session_image {
            None => problems.push(
                "--session-pods needs --session-image (WARROOM_SESSION_IMAGE): the image of \
                 the session pods, the runner's own",
            ),
            Some(image) if image.trim().is_empty() => {
                problems.push("--session-image must not be empty")
            }
            Some(_) => {}
        }
        if self.session_proxy_port == 0 {
            problems.push("--session-proxy-port must be a port from 1 to 65535");
        }
        for (flag, value, dots) in [
            ("--session-namespace", self.namespace(), false),
            (
                "--session-service-account",
                self.session_service_account.clone(),
                true,
            ),
            (
                "--session-model-secret",
                self.session_model_secret.clone(),
                true,
            ),
        ] {
            if !is_kube_name(&value, dots) {
                problems.push(format!(
                    "{flag} {value:?} is not a Kubernetes name (lower-case letters, digits, \
                     '-'{}, alphanumeric at both ends)",
                    if dots { " and '.'" } else { ", at most 63" }
                ));
            }
        }
    }
}

/// Whether `name` is a DNS-1123 label (a namespace), or with `dots` a DNS-1123 subdomain
/// (a Secret, a service account).
fn is_kube_name(name: &str, dots: bool) -> bool {
    !name.is_empty()
        && name.len() <= if dots { 253 } else { 63 }
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (dots && c == '.'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// The runner's configuration, checked by `validate`: only a valid configuration
/// becomes `Settings`, and [`crate::run`] takes nothing else.
#[derive(Debug, Clone)]
pub struct Settings(Config);

impl std::ops::Deref for Settings {
    type Target = Config;
    fn deref(&self) -> &Config {
        &self.0
    }
}

impl warroom_runtime::daemon::Daemon for Config {
    const PROGRAM: &'static str = "warroom-runner";
    type Settings = Settings;
    type Metrics = crate::metrics::Metrics;

    fn common(&self) -> &warroom_runtime::CommonArgs {
        &self.common
    }

    /// Checks what clap cannot, before any I/O: the settings, or every problem at once.
    fn validate(&self) -> std::result::Result<Settings, InvalidConfig> {
        self.problems().finish()?;
        Ok(Settings(self.clone()))
    }
    /// `--check`: everything `validate` checks (the CLI and the guard found and
    /// executable, the guard configuration loaded, the API key file read, the NATS files
    /// read as the connection would). Touches no network. `Ok` is the summary; `Err` every
    /// problem, one per line.
    fn check(&self) -> std::result::Result<String, InvalidConfig> {
        self.problems().finish()?;
        let session_pods = if self.session.session_pods {
            format!(
                ", session pods in namespace {} as {} from {}",
                self.session.namespace(),
                self.session.session_service_account,
                self.session.session_image.as_deref().unwrap_or_default()
            )
        } else {
            String::new()
        };
        Ok(format!(
            "warroom-runner: cluster {}, claude {}, guard {}, {}{}{session_pods}",
            self.cluster,
            self.resolve_claude_bin()
                .unwrap_or_else(|| self.claude_bin.clone())
                .display(),
            self.resolve_guard_bin()
                .unwrap_or_else(|| self.guard_bin.clone())
                .display(),
            self.common.summary(),
            match self.api_key() {
                Ok(Some(_)) => ", API key",
                _ => ", no API key",
            }
        ))
    }
}

/// Where the model API is, its key and its prices: the runner's, and a session pod's
/// `model-proxy`'s (`crate::pod_programs`). Only a proxy holds the key; the CLI it serves gets
/// a placeholder.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelApiArgs {
    /// The Anthropic API endpoint the proxy forwards the agent's model calls to (default
    /// https://api.anthropic.com). The CLI itself only talks to the proxy.
    #[arg(long, env = "ANTHROPIC_BASE_URL")]
    pub anthropic_base_url: Option<String>,
    /// The Anthropic API key. Only the proxy holds it; the CLI gets a placeholder. Set it
    /// through the environment: a flag shows in process lists.
    #[arg(long, env = "ANTHROPIC_API_KEY", hide_env_values = true)]
    pub anthropic_api_key: Option<ApiKey>,
    /// A file holding the Anthropic API key (a mounted Secret), read once at start, its
    /// trailing line break dropped. Instead of --anthropic-api-key.
    #[arg(long, env = "ANTHROPIC_API_KEY_FILE", value_name = "FILE")]
    pub api_key_file: Option<PathBuf>,
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
}

impl ModelApiArgs {
    /// The API key, from --anthropic-api-key or --api-key-file (never both).
    pub fn api_key(&self) -> std::result::Result<Option<ApiKey>, Invalid> {
        let inline = self
            .anthropic_api_key
            .as_ref()
            .map(|key| warroom_runtime::config::Secret::new(key.0.clone()));
        let key = warroom_runtime::config::secret_setting(
            ("--anthropic-api-key (ANTHROPIC_API_KEY)", inline.as_ref()),
            (
                "--api-key-file (ANTHROPIC_API_KEY_FILE)",
                self.api_key_file.as_deref(),
            ),
        )?;
        Ok(key.map(|key| ApiKey(key.expose().to_owned())))
    }

    /// The endpoint the proxy forwards to.
    pub fn upstream(&self) -> &str {
        self.anthropic_base_url
            .as_deref()
            .unwrap_or(proxy::DEFAULT_UPSTREAM)
    }

    pub fn prices(&self) -> Prices {
        Prices {
            opus: self.price_opus,
            sonnet: self.price_sonnet,
            haiku: self.price_haiku,
        }
    }
}

impl Config {
    /// The API key, from --anthropic-api-key or --api-key-file (never both).
    pub fn api_key(&self) -> std::result::Result<Option<ApiKey>, Invalid> {
        self.api.api_key()
    }

    /// The Claude Code CLI and the guard: found and executable.
    fn program_problems(&self, problems: &mut warroom_runtime::config::Problems) {
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
    }

    /// Every problem of this configuration, one per line.
    fn problems(&self) -> warroom_runtime::config::Problems {
        // Every problem is reported at once, one per line.
        let mut problems = warroom_runtime::config::Problems::new();
        problems.extend(self.common.problems());
        problems.check(self.api_key());
        self.program_problems(&mut problems);
        self.session.problems(&mut problems);
        if let Some(path) = &self.guard_config
            && let Err(e) = warroom_guard::Guard::load(path)
        {
            problems.push(format!("--guard-config: {}", warroom_runtime::Chain(&e)));
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
        if self.progress_interval < Duration::from_secs(1) {
            problems.push("--progress-interval must be at least 1s");
        }
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            problems.push(format!(
                "--concurrency {} is out of range: one replica runs 1 to {MAX_CONCURRENCY} tasks \
                 at once (each is a Claude Code CLI with its own workspace); for more, run more \
                 replicas",
                self.concurrency
            ));
        }
        if let Some(root) = &self.work_root
            && !root.is_dir()
        {
            problems.push(format!(
                "--work-root {} is not an existing folder",
                root.display()
            ));
        }
        // KUBECONFIG may list several files, as kubectl reads it.
        for kubeconfig in self.kubeconfig.iter().flat_map(std::env::split_paths) {
            if let Err(e) = std::fs::read(&kubeconfig) {
                problems.push(format!(
                    "--kubeconfig (KUBECONFIG) {}: cannot read it: {e}",
                    kubeconfig.display()
                ));
            }
        }
        if let Some(url) = &self.api.anthropic_base_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            problems.push(format!(
                "--anthropic-base-url {url:?} must start with http:// or https://"
            ));
        }
        problems
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
            self.api.upstream(),
            self.api_key()
                .map_err(|e| Error::Config(InvalidConfig::one(e.0)))?,
            self.api.prices(),
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
pub(crate) fn parse_budget(text: &str) -> std::result::Result<f64, String> {
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
