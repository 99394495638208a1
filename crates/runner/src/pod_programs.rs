//! The two programs of a session pod ([`crate::session_pod`]), subcommands of the
//! `warroom-runner` binary (the pod runs the runner's own image):
//!
//! - `warroom-runner model-proxy`: the model-API proxy ([`Proxy`]) on a fixed loopback
//!   address, holding the key (from its mounted Secret) and the session's budget;
//! - `warroom-runner session-shell`: writes the guard hooks, the workspace and a `claude`
//!   wrapper into the engineer's HOME, then waits. `kubectl exec -it <pod> -c session --
//!   claude` runs the wrapper (first on the container's `PATH`), so an engineer's Claude Code
//!   runs under the same `PreToolUse` guard, `PostToolUse` redaction, tool rules and model
//!   proxy as any run of the runner.
//!
//! Both end at SIGTERM/SIGINT or at `--until` (the session's end), whichever comes first; the
//! pod's deadline ends them at the same moment in any case.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use time::format_description::well_known::Rfc3339;
use tracing::info;
use warroom_proto::{Timestamp, Tool};
use warroom_runtime::Chain;

use crate::config::{ApiKey, ModelApiArgs, parse_budget};
use crate::guard::{GuardHook, ToolRules, sh_quote};
use crate::proxy::{ModelApi, Proxy};

/// The environment variable carrying the runner's guard configuration (YAML) into a session
/// pod's `session` container, which has no mount of the runner's file.
pub const GUARD_CONFIG_TEXT_ENV: &str = "WARROOM_GUARD_CONFIG_TEXT";

/// The session pod programs, as subcommands of `warroom-runner`.
#[derive(Debug, clap::Parser)]
#[command(name = "warroom-runner", version)]
pub struct Programs {
    #[command(subcommand)]
    pub program: Program,
}

/// A program of a session pod.
#[derive(Debug, clap::Subcommand)]
pub enum Program {
    /// Serves the model API on a fixed loopback address for a session pod's Claude Code:
    /// holds the key, redacts tool results on the way out, meters spend, refuses past the
    /// budget.
    ModelProxy(ModelProxyArgs),
    /// Prepares a session pod's HOME (guard hooks, workspace, a `claude` wrapper under the
    /// runner's tool rules) and waits until the session ends.
    SessionShell(SessionShellArgs),
}

/// The subcommand names, as [`Program::from_args`] recognises them.
const SUBCOMMANDS: [&str; 2] = ["model-proxy", "session-shell"];

impl Program {
    /// The program the command line names, `None` when it names none (the runner daemon:
    /// `warroom-runner` with flags only, exactly as before). Exits with clap's message for
    /// a subcommand with bad flags.
    pub fn from_args() -> Option<Program> {
        let first = std::env::args_os().nth(1)?;
        if !SUBCOMMANDS.iter().any(|name| first == *name) {
            return None;
        }
        Some(<Programs as clap::Parser>::parse().program)
    }

    /// Runs the program to its end.
    pub async fn run(self) -> ExitCode {
        let (result, program) = match self {
            Program::ModelProxy(args) => {
                warroom_runtime::telemetry::init(&args.log_format);
                (args.run().await, "warroom-runner model-proxy")
            }
            Program::SessionShell(args) => {
                warroom_runtime::telemetry::init(&args.log_format);
                (args.run().await, "warroom-runner session-shell")
            }
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{program}: {e}");
                ExitCode::FAILURE
            }
        }
    }
}

/// `warroom-runner model-proxy`.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelProxyArgs {
    /// The address to serve on (a session pod: `127.0.0.1:<--session-proxy-port>`).
    #[arg(long, env = "WARROOM_PROXY_LISTEN")]
    pub listen: SocketAddr,
    /// When to stop (RFC 3339): the session's end.
    #[arg(long, value_parser = parse_time)]
    pub until: Option<Timestamp>,
    /// What the session's model calls may cost together, in USD.
    #[arg(long, env = "WARROOM_BUDGET_USD", default_value = "5.00", value_parser = parse_budget)]
    pub budget_usd: f64,
    #[command(flatten)]
    pub api: ModelApiArgs,
    /// Log format: `text` or `json`.
    #[arg(long, env = "WARROOM_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

impl ModelProxyArgs {
    /// The key, from --anthropic-api-key or --api-key-file (never both), as the runner reads it.
    fn api_key(&self) -> Result<ApiKey, String> {
        self.api.api_key().map_err(|e| e.0)?.ok_or_else(|| {
            "no model API key: set ANTHROPIC_API_KEY_FILE (the mounted model Secret) or \
             ANTHROPIC_API_KEY"
                .to_owned()
        })
    }

    async fn run(self) -> Result<(), String> {
        let key = self.api_key()?;
        let upstream = self.api.upstream();
        if !(upstream.starts_with("http://") || upstream.starts_with("https://")) {
            return Err(format!(
                "--anthropic-base-url {upstream:?} must start with http:// or https://"
            ));
        }
        let api = ModelApi::new(upstream, Some(key), self.api.prices(), self.budget_usd)
            .map_err(|e| Chain(&e).to_string())?;
        let proxy = Proxy::start_on(&api, self.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", self.listen))?;
        info!(listen = %self.listen, upstream, budget_usd = self.budget_usd, "model proxy ready");
        let reason = wait_for_end(self.until).await;
        let spend = proxy.spend();
        info!(
            reason,
            cost_usd = spend.cost_usd,
            budget_usd = spend.budget_usd,
            calls = spend.requests,
            refused = spend.refused,
            redacted = spend.redacted,
            "model proxy stopped"
        );
        Ok(())
    }
}

/// `warroom-runner session-shell`.
#[derive(Debug, Clone, clap::Args)]
pub struct SessionShellArgs {
    /// The engineer's HOME (an emptyDir): the guard hooks go to `HOME/.warroom`, the
    /// workspace is `HOME/work`, the `claude` wrapper `HOME/bin/claude`.
    #[arg(long)]
    pub home: PathBuf,
    /// When to stop (RFC 3339): the session's end.
    #[arg(long, value_parser = parse_time)]
    pub until: Option<Timestamp>,
    /// The request's tools, comma-separated (`bash,read`), as the runner's tool rules take them.
    #[arg(long, value_parser = parse_tools)]
    pub tools: ToolList,
    /// The real Claude Code CLI the wrapper runs (an absolute path, or a name looked up on
    /// PATH outside HOME/bin).
    #[arg(
        long,
        env = "WARROOM_CLAUDE_BIN",
        default_value = "/usr/local/bin/claude"
    )]
    pub claude_bin: PathBuf,
    /// The tool-call guard (a bare name is looked up next to this executable, then on PATH).
    #[arg(long, env = "WARROOM_GUARD_BIN", default_value = "warroom-guard")]
    pub guard_bin: PathBuf,
    /// A guard configuration file extending the guard's built-in rules.
    #[arg(long, env = "WARROOM_GUARD_CONFIG")]
    pub guard_config: Option<PathBuf>,
    /// The model the wrapper asks for (the CLI's default when not given).
    #[arg(long, env = "WARROOM_MODEL")]
    pub model: Option<String>,
    /// Log format: `text` or `json`.
    #[arg(long, env = "WARROOM_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

/// The tools of `--tools`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolList(pub Vec<Tool>);

fn parse_tools(text: &str) -> Result<ToolList, String> {
    let mut tools = Vec::new();
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let tool = Tool::parse(&name.to_ascii_lowercase()).ok_or_else(|| {
            let known: Vec<&str> = Tool::ALL.iter().map(|t| t.as_str()).collect();
            format!(
                "unknown tool {name:?}: expected some of {}",
                known.join(", ")
            )
        })?;
        tools.push(tool);
    }
    Ok(ToolList(tools))
}

fn parse_time(text: &str) -> Result<Timestamp, String> {
    Timestamp::parse(text, &Rfc3339).map_err(|e| {
        format!("{text:?}: expected an RFC 3339 time such as 2026-12-08T10:00:00Z ({e})")
    })
}

/// What `session-shell` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shell {
    /// The `claude` wrapper.
    pub wrapper: PathBuf,
    /// The guard's workspace, the wrapper's working directory.
    pub workspace: PathBuf,
    /// The CLI settings registering the hooks.
    pub settings: PathBuf,
}

impl SessionShellArgs {
    async fn run(self) -> Result<(), String> {
        let shell = self.prepare()?;
        info!(wrapper = %shell.wrapper.display(), workspace = %shell.workspace.display(), "session shell ready");
        let reason = wait_for_end(self.until).await;
        info!(reason, "session shell stopped");
        Ok(())
    }

    /// Writes the hooks, the workspace and the wrapper into `--home`.
    fn prepare(&self) -> Result<Shell, String> {
        let home = std::path::absolute(&self.home)
            .map_err(|e| format!("--home {}: {e}", self.home.display()))?;
        let bin_dir = home.join("bin");
        let claude = self.resolve_claude(&bin_dir)?;
        let guard = self.resolve_guard()?;
        let private = home.join(".warroom");
        let workspace = home.join("work");
        // A container started again in the same pod finds its earlier files: they are made
        // afresh, since the hook files are written once and never overwritten.
        match std::fs::remove_dir_all(&private) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", private.display())),
        }
        for dir in [&private, &workspace, &bin_dir] {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        set_mode(&private, 0o700)?;
        let config = match (
            &self.guard_config,
            std::env::var(GUARD_CONFIG_TEXT_ENV).ok(),
        ) {
            (Some(path), _) => {
                Some(std::path::absolute(path).map_err(|e| format!("--guard-config: {e}"))?)
            }
            (None, Some(text)) if !text.trim().is_empty() => {
                let path = private.join("guard-config.yaml");
                std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
                Some(path)
            }
            (None, _) => None,
        };
        if let Some(path) = &config {
            warroom_guard::Guard::load(path).map_err(|e| {
                format!("the guard configuration {}: {}", path.display(), Chain(&e))
            })?;
        }
        let hook = GuardHook { bin: guard, config }
            .write(&private, &workspace)
            .map_err(|e| {
                format!(
                    "cannot write the guard hooks into {}: {e}",
                    private.display()
                )
            })?;
        let mut args = vec!["--settings".to_owned(), hook.settings.display().to_string()];
        args.extend(ToolRules::for_tools(&self.tools.0).cli_args());
        if let Some(model) = &self.model {
            args.push("--model".to_owned());
            args.push(model.clone());
        }
        let wrapper = bin_dir.join("claude");
        let script = wrapper_script(&workspace, &claude, &args);
        // Replaced whole, so a wrapper left by an earlier start is never run half-written.
        let staged = bin_dir.join(".claude.new");
        std::fs::write(&staged, script).map_err(|e| format!("{}: {e}", staged.display()))?;
        set_mode(&staged, 0o555)?;
        std::fs::rename(&staged, &wrapper).map_err(|e| format!("{}: {e}", wrapper.display()))?;
        Ok(Shell {
            wrapper,
            workspace,
            settings: hook.settings,
        })
    }

    /// The real CLI, absolute: never the wrapper itself.
    fn resolve_claude(&self, wrapper_dir: &Path) -> Result<PathBuf, String> {
        let found = if self.claude_bin.components().count() > 1 {
            std::path::absolute(&self.claude_bin).ok()
        } else {
            std::env::var_os("PATH").and_then(|path| {
                std::env::split_paths(&path)
                    .filter(|dir| dir.is_absolute() && dir != wrapper_dir)
                    .map(|dir| dir.join(&self.claude_bin))
                    .find(|candidate| is_executable(candidate))
            })
        };
        found.filter(|path| is_executable(path)).ok_or_else(|| {
            format!(
                "--claude-bin {} is not an executable file",
                self.claude_bin.display()
            )
        })
    }

    /// The guard, absolute: as the runner resolves it.
    fn resolve_guard(&self) -> Result<PathBuf, String> {
        let found = if self.guard_bin.components().count() > 1 {
            Some(self.guard_bin.clone())
        } else {
            let beside = std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(Path::to_path_buf));
            let path = std::env::var_os("PATH").unwrap_or_default();
            beside
                .into_iter()
                .chain(std::env::split_paths(&path).filter(|d| d.is_absolute()))
                .map(|dir| dir.join(&self.guard_bin))
                .find(|candidate| is_executable(candidate))
        };
        found
            .filter(|path| is_executable(path))
            .and_then(|path| std::path::absolute(path).ok())
            .ok_or_else(|| {
                format!(
                    "--guard-bin {} is not an executable file (next to this program or on PATH)",
                    self.guard_bin.display()
                )
            })
    }
}

/// The `claude` wrapper: into the workspace, then the real CLI with the hooks and tool rules
/// before the engineer's own arguments.
fn wrapper_script(workspace: &Path, claude: &Path, args: &[String]) -> String {
    let mut command = format!("exec {}", sh_quote(&claude.display().to_string()));
    for arg in args {
        command.push(' ');
        command.push_str(&sh_quote(arg));
    }
    format!(
        "#!/bin/sh\n\
         # Claude Code under the warroom guard hooks and tool rules, written by \
         warroom-runner session-shell.\n\
         cd {} || exit 1\n\
         {command} \"$@\"\n",
        sh_quote(&workspace.display().to_string()),
    )
}

/// Waits for SIGTERM/SIGINT or `until`; says which.
async fn wait_for_end(until: Option<Timestamp>) -> &'static str {
    let deadline = async {
        match until {
            Some(until) => {
                let left = (until - warroom_proto::now()).max(time::Duration::ZERO);
                tokio::time::sleep(Duration::try_from(left).unwrap_or_default()).await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = warroom_runtime::shutdown::signal() => "signal",
        () = deadline => "the session ended",
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[test]
    fn subcommands_parse_and_tools_are_checked() {
        let programs = Programs::try_parse_from([
            "warroom-runner",
            "session-shell",
            "--home",
            "/session",
            "--tools",
            "bash,read",
            "--until",
            "2026-12-08T10:00:00Z",
        ])
        .expect("parses");
        let Program::SessionShell(args) = programs.program else {
            panic!("a session shell");
        };
        assert_eq!(args.tools, ToolList(vec![Tool::Bash, Tool::Read]));
        assert_eq!(args.claude_bin, PathBuf::from("/usr/local/bin/claude"));
        let err = Programs::try_parse_from([
            "warroom-runner",
            "session-shell",
            "--home",
            "/s",
            "--tools",
            "bash,exec",
        ])
        .expect_err("an unknown tool")
        .to_string();
        assert!(err.contains("unknown tool \"exec\""), "{err}");

        let programs = Programs::try_parse_from([
            "warroom-runner",
            "model-proxy",
            "--listen",
            "127.0.0.1:8787",
            "--budget-usd",
            "2.5",
        ])
        .expect("parses");
        let Program::ModelProxy(args) = programs.program else {
            panic!("a model proxy");
        };
        assert_eq!(args.budget_usd, 2.5);
        assert_eq!(
            args.api.price_opus.to_string().parse(),
            Ok(args.api.price_opus)
        );
    }

    #[test]
    fn the_wrapper_runs_the_real_cli_under_the_hooks_in_the_workspace() {
        let home = tempfile::tempdir().expect("a temp dir");
        let args = SessionShellArgs {
            home: home.path().to_owned(),
            until: None,
            tools: ToolList(vec![Tool::Bash]),
            claude_bin: PathBuf::from("/bin/sh"),
            guard_bin: PathBuf::from("/bin/true"),
            guard_config: None,
            model: None,
            log_format: "text".to_owned(),
        };
        let shell = args.prepare().expect("prepared");
        let script = std::fs::read_to_string(&shell.wrapper).expect("the wrapper");
        assert!(script.starts_with("#!/bin/sh\n"), "{script}");
        assert!(
            script.contains(&format!("cd '{}'", home.path().join("work").display())),
            "{script}"
        );
        assert!(script.contains("exec '/bin/sh' '--settings'"), "{script}");
        assert!(script.contains("'--permission-mode' 'dontAsk'"), "{script}");
        assert!(script.trim_end().ends_with("\"$@\""), "{script}");
        assert!(is_executable(&shell.wrapper));
        // Prepared again (a restarted container), it writes everything afresh.
        args.prepare().expect("prepared twice");
    }
}
