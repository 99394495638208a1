//! Runs one Claude Code CLI process: its environment, its process group, its stream-json
//! output, and stopping it (SIGINT to the whole group, SIGKILL after a grace period).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use warroom_runtime::Chain;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, warn};
use warroom_runtime::shutdown::CancellationToken;

use crate::proxy::PLACEHOLDER_KEY;
use crate::reaper;
use crate::stream::{self, Ending, Item, RunResult};

/// How much of the CLI's stderr is kept for the error text.
const MAX_STDERR: usize = 16 * 1024;
/// How long the output of an exited CLI is still read: a tool's child that escaped the
/// process group could hold the pipe open forever.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);
/// How long the runner waits for the process after SIGKILL before giving up on it.
const AFTER_KILL: Duration = Duration::from_secs(5);

/// What the agent's process gets from the runner's configuration. Nothing else of the
/// runner's environment reaches it, and it holds no credential: the model API key stays with
/// the runner's proxy ([`crate::proxy`]), the agent gets [`PLACEHOLDER_KEY`].
#[derive(Debug, Clone, Default)]
pub struct AgentEnv {
    /// The `PATH` of the CLI (and so of every command it runs).
    pub path: String,
    pub max_retries: Option<u32>,
    pub kubeconfig: Option<PathBuf>,
    /// `KUBERNETES_SERVICE_HOST` / `_PORT` of the runner's pod, for in-cluster kubectl.
    pub kubernetes_service: Vec<(String, String)>,
}

/// Where one run happens: its folders, its id and its model endpoint.
#[derive(Debug, Clone, Copy)]
pub struct RunSite<'a> {
    pub home: &'a Path,
    pub tmp: &'a Path,
    /// The run's id, inherited by every process of the run ([`reaper::RUN_VAR`]).
    pub run_id: &'a str,
    /// The run's model-API proxy, `http://127.0.0.1:PORT`.
    pub model_url: &'a str,
}

impl AgentEnv {
    /// The complete environment of the CLI of the run at `site`.
    pub fn vars(&self, site: RunSite<'_>) -> Vec<(String, String)> {
        let tmp = site.tmp.display().to_string();
        let mut vars = vec![
            ("PATH".to_owned(), self.path.clone()),
            ("HOME".to_owned(), site.home.display().to_string()),
            // The CLI keeps sockets and notes in its temp folder (`/tmp/claude-<uid>`,
            // `/tmp/cc-socks` otherwise); the task's own is removed with the task.
            ("TMPDIR".to_owned(), tmp.clone()),
            ("CLAUDE_CODE_TMPDIR".to_owned(), tmp),
            // No telemetry, update checks or other side traffic from inside the secure zone.
            (
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC".to_owned(),
                "1".to_owned(),
            ),
            ("DISABLE_AUTOUPDATER".to_owned(), "1".to_owned()),
            // The proxy adds the real key; this one opens nothing.
            ("ANTHROPIC_API_KEY".to_owned(), PLACEHOLDER_KEY.to_owned()),
            ("ANTHROPIC_BASE_URL".to_owned(), site.model_url.to_owned()),
            (reaper::RUN_VAR.to_owned(), site.run_id.to_owned()),
        ];
        if let Some(retries) = self.max_retries {
            vars.push(("CLAUDE_CODE_MAX_RETRIES".to_owned(), retries.to_string()));
        }
        if let Some(kubeconfig) = &self.kubeconfig {
            vars.push(("KUBECONFIG".to_owned(), kubeconfig.display().to_string()));
        }
        vars.extend(self.kubernetes_service.iter().cloned());
        vars
    }
}

/// One CLI run.
#[derive(Debug, Clone)]
pub struct Launch {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Written to the CLI's stdin: a prompt can be longer than one argument may be.
    pub prompt: String,
    pub env: Vec<(String, String)>,
    /// The run's id (its [`reaper::RUN_VAR`]): what the sweep at its end looks for.
    pub run_id: String,
    pub cwd: PathBuf,
    pub timeout: Duration,
    pub timeout_secs: u64,
    pub kill_grace: Duration,
}

/// What happened in a run.
#[derive(Debug)]
pub struct Run {
    pub ending: Ending,
    /// The run was stopped because the runner was told to stop (`cancel`), not by the model or
    /// the timeout.
    pub cancelled: bool,
    /// The stop came because the request was cancelled (its task record said so), not
    /// because the runner shuts down: the run is reported `cancelled`, not handed back. Set
    /// by the caller that watched the record.
    pub request_cancelled: bool,
    pub result: Option<RunResult>,
    /// The model's last text, the partial report when there is no result.
    pub last_text: Option<String>,
    pub stderr: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum StopReason {
    Timeout,
    Cancel,
}

/// Runs the CLI to its end. Tool calls and results go to `items` as they happen; `cancel`
/// turning true stops the run (shutdown, or the audit events cannot be published).
pub async fn run(launch: &Launch, items: mpsc::Sender<Item>, cancel: CancellationToken) -> Run {
    let mut started = match Started::spawn(launch) {
        Ok(started) => started,
        Err(ending) => {
            return Run {
                ending,
                cancelled: false,
                request_cancelled: false,
                result: None,
                last_text: None,
                stderr: String::new(),
            };
        }
    };
    let mut watch = Watch {
        stopping: None,
        killed_at: None,
        exited: None,
        result: None,
        last_text: None,
        items: Some(items),
    };
    watch.supervise(launch, &mut started, &cancel).await;
    started.finish(launch, watch).await
}

/// The running CLI: its process, its process group, its output.
struct Started {
    child: tokio::process::Child,
    group: Option<Pid>,
    /// When the CLI started (`reaper::started_at`): no process of the run is older.
    since: Option<u64>,
    stderr: Option<tokio::task::JoinHandle<String>>,
    lines: Option<tokio::io::Lines<BufReader<tokio::process::ChildStdout>>>,
}

impl Started {
    /// Starts the CLI in its own process group and hands it the prompt on stdin.
    fn spawn(launch: &Launch) -> Result<Started, Ending> {
        let mut command = Command::new(&launch.program);
        command
            .args(&launch.args)
            .env_clear()
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&launch.cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so that stopping it reaches every command it started.
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| Ending::SpawnFailed(format!("{}: {e}", launch.program.display())))?;
        let group = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw);
        let since = group.and_then(|pid| reaper::started_at(pid.as_raw()));
        if let Some(mut stdin) = child.stdin.take() {
            let prompt = launch.prompt.clone();
            tokio::spawn(async move {
                // A CLI that exits before reading its prompt closes the pipe; its result says
                // why.
                let _ = stdin.write_all(prompt.as_bytes()).await;
                let _ = stdin.shutdown().await;
            });
        }
        let stderr = child
            .stderr
            .take()
            .map(|stderr| tokio::spawn(read_bounded(stderr, MAX_STDERR)));
        let lines = child.stdout.take().map(|out| BufReader::new(out).lines());
        Ok(Started {
            child,
            group,
            since,
            stderr,
            lines,
        })
    }

    /// After the run: kills what is left of it, reads the rest of stderr, and judges how it
    /// ended.
    async fn finish(self, launch: &Launch, watch: Watch) -> Run {
        let group = self.group;
        // Whatever the CLI left behind in its group (a backgrounded command) goes with it.
        // While anything is left the group id cannot be reused; when nothing is, this is
        // ESRCH.
        signal_group(group, Signal::SIGKILL);
        // The commands the CLI started run in sessions of their own, beyond the group: the
        // sweep finds them by the run id. The CLI is named only while it was not reaped (its
        // pid could be another process's by now).
        let run_id = launch.run_id.clone();
        let cli = group.filter(|_| watch.exited.is_none()).map(Pid::as_raw);
        let since = self.since;
        if let Err(e) =
            tokio::task::spawn_blocking(move || reaper::sweep(&run_id, cli, since)).await
        {
            warn!(cause = %Chain(&e), "the sweep of the run's processes failed");
        }
        let stderr = match self.stderr {
            Some(mut task) => match tokio::time::timeout(DRAIN_AFTER_EXIT, &mut task).await {
                Ok(Ok(text)) => text,
                _ => {
                    // Something outside the group still holds the pipe; stop reading it.
                    task.abort();
                    String::new()
                }
            },
            None => String::new(),
        };
        let ending = match watch.stopping.map(|(reason, _)| reason) {
            Some(StopReason::Timeout) => Ending::TimedOut {
                timeout_secs: launch.timeout_secs,
            },
            _ => Ending::Exited {
                code: watch.exited.and_then(|(code, _)| code),
            },
        };
        Run {
            ending,
            cancelled: matches!(watch.stopping, Some((StopReason::Cancel, _))),
            request_cancelled: false,
            result: watch.result,
            last_text: watch.last_text,
            stderr,
        }
    }
}

/// What is known while the CLI runs.
struct Watch {
    /// Why and since when it is being stopped (SIGINT sent; SIGKILL due at the instant).
    stopping: Option<(StopReason, Instant)>,
    killed_at: Option<Instant>,
    /// Its exit code and when it exited.
    exited: Option<(Option<i32>, Instant)>,
    result: Option<stream::RunResult>,
    last_text: Option<String>,
    /// Where tool calls and results go; `None` once nobody listens.
    items: Option<mpsc::Sender<Item>>,
}

impl Watch {
    /// Reads the CLI's output until it ended, stopping it at the timeout or when cancelled:
    /// SIGINT first, SIGKILL to the group after the grace period.
    async fn supervise(&mut self, launch: &Launch, cli: &mut Started, cancel: &CancellationToken) {
        let deadline = Instant::now() + launch.timeout;
        let group = cli.group;
        loop {
            if self.exited.is_some() && cli.lines.is_none() {
                break;
            }
            let kill_at = self
                .stopping
                .map(|(_, at)| at)
                .filter(|_| self.killed_at.is_none());
            let drain_until = self.exited.map(|(_, at)| at + DRAIN_AFTER_EXIT);
            let give_up_at = self.killed_at.map(|at| at + AFTER_KILL);
            tokio::select! {
                line = next_line(&mut cli.lines) => match line {
                    Some(line) => self.take(&line).await,
                    None => cli.lines = None,
                },
                status = cli.child.wait(), if self.exited.is_none() => {
                    let code = match status {
                        Ok(status) => status.code(),
                        Err(e) => {
                            warn!(cause = %Chain(&e), "cannot wait for the Claude Code CLI");
                            None
                        }
                    };
                    self.exited = Some((code, Instant::now()));
                }
                () = tokio::time::sleep_until(deadline), if self.stopping.is_none() && self.exited.is_none() => {
                    debug!("timeout reached, interrupting the agent");
                    signal_group(group, Signal::SIGINT);
                    self.stopping = Some((StopReason::Timeout, Instant::now() + launch.kill_grace));
                }
                () = cancel.cancelled(), if self.stopping.is_none() && self.exited.is_none() => {
                    debug!("cancelled, interrupting the agent");
                    signal_group(group, Signal::SIGINT);
                    self.stopping = Some((StopReason::Cancel, Instant::now() + launch.kill_grace));
                }
                () = sleep_until_some(kill_at) => {
                    warn!(grace = ?launch.kill_grace, "the agent did not stop after SIGINT, killing its process group");
                    signal_group(group, Signal::SIGKILL);
                    self.killed_at = Some(Instant::now());
                }
                () = sleep_until_some(drain_until), if cli.lines.is_some() => {
                    warn!("the agent exited but its output stayed open; stop reading it");
                    cli.lines = None;
                }
                () = sleep_until_some(give_up_at) => {
                    warn!("the agent's process did not end after SIGKILL; leaving it");
                    break;
                }
            }
        }
    }

    /// One line of the CLI's stream-json output.
    async fn take(&mut self, line: &str) {
        for item in stream::parse_line(line) {
            match item {
                Item::Result(r) => self.result = Some(*r),
                Item::Text(text) => self.last_text = Some(text),
                item => {
                    // A closed channel means nobody publishes any more; the cancel signal that
                    // follows stops the run.
                    if let Some(tx) = &self.items
                        && tx.send(item).await.is_err()
                    {
                        self.items = None;
                    }
                }
            }
        }
    }
}

async fn next_line<R: AsyncRead + Unpin>(
    lines: &mut Option<tokio::io::Lines<BufReader<R>>>,
) -> Option<String> {
    match lines {
        Some(lines) => match lines.next_line().await {
            Ok(line) => line,
            Err(e) => {
                warn!(cause = %Chain(&e), "cannot read the Claude Code CLI's output");
                None
            }
        },
        None => std::future::pending().await,
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn signal_group(group: Option<Pid>, signal: Signal) {
    if let Some(group) = group
        && let Err(e) = killpg(group, signal)
        && e != nix::errno::Errno::ESRCH
    {
        warn!(cause = %Chain(&e), ?signal, "cannot signal the agent's process group");
    }
}

/// Reads all of `reader`, keeping the first `max` bytes.
async fn read_bounded(mut reader: impl AsyncRead + Unpin, max: usize) -> String {
    let mut kept = Vec::new();
    let mut buf = [0_u8; 8192];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = max.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_is_rebuilt_from_the_configuration_only() {
        let env = AgentEnv {
            path: "/opt/bin:/usr/bin".to_owned(),
            max_retries: Some(0),
            kubeconfig: Some(PathBuf::from("/etc/kube/config")),
            kubernetes_service: vec![("KUBERNETES_SERVICE_HOST".to_owned(), "10.0.0.1".to_owned())],
        };
        let site = RunSite {
            home: Path::new("/tmp/home"),
            tmp: Path::new("/tmp/t"),
            run_id: "warroom-req-1-abc",
            model_url: "http://127.0.0.1:9",
        };
        let vars = env.vars(site);
        let get = |name: &str| {
            vars.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("PATH"), Some("/opt/bin:/usr/bin"));
        assert_eq!(get("HOME"), Some("/tmp/home"));
        // The key is the proxy's; the agent gets a placeholder and the proxy's address.
        assert_eq!(get("ANTHROPIC_API_KEY"), Some(PLACEHOLDER_KEY));
        assert_eq!(get("ANTHROPIC_BASE_URL"), Some("http://127.0.0.1:9"));
        assert_eq!(get(reaper::RUN_VAR), Some("warroom-req-1-abc"));
        assert_eq!(get("CLAUDE_CODE_MAX_RETRIES"), Some("0"));
        assert_eq!(get("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"), Some("1"));
        assert_eq!(get("DISABLE_AUTOUPDATER"), Some("1"));
        assert_eq!(get("KUBECONFIG"), Some("/etc/kube/config"));
        assert_eq!(get("KUBERNETES_SERVICE_HOST"), Some("10.0.0.1"));
        assert_eq!(get("TMPDIR"), Some("/tmp/t"));
        assert_eq!(vars.len(), 12);

        let minimal = AgentEnv {
            path: "/usr/bin".to_owned(),
            ..AgentEnv::default()
        };
        assert_eq!(minimal.vars(site).len(), 9);
    }
}
