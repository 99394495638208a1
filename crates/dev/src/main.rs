//! `warroom-dev`: the whole secure zone on one machine, for trying the product.
//!
//! `up` runs the gateway, the dispatcher, one runner per cluster and the publisher in this
//! process against a git remote, until Ctrl-C. `demo` makes a local remote, brings the stack
//! up for the design's two clusters, pushes the design's sample multi-cluster request, waits
//! for its report and says where it landed. `claude-warroom dev ...` runs this binary.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::Parser as _;
use warroom_dev::{Model, Stack, StackOptions, find_tool};
use warroom_proto::{RequestPhase, RequestStatus};

/// The design's sample multi-cluster request, which `demo` submits.
const SAMPLE_REQUEST: &str =
    include_str!("../../../examples/requests/2024-01-15-1500-cross-cluster-api-timeout.yaml");
/// The clusters the sample request targets.
const DEMO_CLUSTERS: [&str; 2] = ["production-hub", "prod-cluster-1"];

/// Run the whole stack locally: gateway, dispatcher, a runner per cluster, publisher.
///
/// The runners use the real Claude Code CLI. With ANTHROPIC_API_KEY set it talks to Anthropic
/// (ANTHROPIC_BASE_URL is honoured). Without it the stack runs in replay mode: a local scripted
/// model serves a recorded demo investigation and recorded `oc`/`kubectl` answers stand in for
/// the clusters; every report made that way says that it is a replay.
///
/// `claude-warroom dev <args>` runs `warroom-dev <args>` when this binary is installed next to
/// it or on PATH.
#[derive(Debug, clap::Parser)]
#[command(name = "warroom-dev", version)]
struct Args {
    #[command(subcommand)]
    command: DevCommand,
}

#[derive(Debug, clap::Subcommand)]
enum DevCommand {
    Up(UpArgs),
    Demo(DemoArgs),
}

/// Run the stack against a git remote until Ctrl-C.
///
/// Push requests to the remote (with `claude-warroom investigate` from a clone, or a plain
/// commit under `requests/pending/`); the reports come back to `results/<id>/` there.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  warroom-dev up --repo /srv/git/warroom.git --clusters production-hub,prod-cluster-1
  ANTHROPIC_API_KEY=... warroom-dev up --repo https://git.example.com/warroom.git \\
      --clusters prod-cluster-1 --nats-url nats://127.0.0.1:4222")]
struct UpArgs {
    /// The git remote the gateway follows and the publisher writes to: a path, or a
    /// `file://`, `ssh://` or `https://` URL (token from WARROOM_GIT_TOKEN).
    #[arg(long, env = "WARROOM_REPO")]
    repo: String,

    /// The clusters to run a runner for, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    clusters: Vec<String>,

    /// The branch to follow and write to.
    #[arg(long, default_value = "main")]
    branch: String,

    /// The secure-zone policy file the gateway enforces (see crates/access/POLICY.md): only
    /// requests whose commits are signed by their engineer's key run. Without it, the gateway
    /// runs with --insecure-allow-unsigned: every valid request runs, unverified.
    #[arg(long, env = "WARROOM_POLICY")]
    policy: Option<PathBuf>,

    /// The kubeconfig of one cluster's runner, as CLUSTER=FILE; repeat it for each cluster.
    /// A cluster without one uses the runner's default (KUBECONFIG). `claude-warroom eval`
    /// points each cluster at its recorded answers this way.
    #[arg(long = "kubeconfig", value_name = "CLUSTER=FILE", value_parser = cluster_file)]
    kubeconfigs: Vec<(String, PathBuf)>,

    #[command(flatten)]
    stack: StackArgs,
}

/// `CLUSTER=FILE`, for `--kubeconfig`.
fn cluster_file(value: &str) -> Result<(String, PathBuf), String> {
    match value.split_once('=') {
        Some((cluster, file)) if !cluster.is_empty() && !file.is_empty() => {
            Ok((cluster.to_owned(), PathBuf::from(file)))
        }
        _ => Err(format!("`{value}`: expected CLUSTER=FILE")),
    }
}

/// Bring the stack up on a fresh local remote, submit the design's sample multi-cluster
/// request, wait for its report, print where it landed, and stop.
///
/// Everything lives in `<STATE_DIR>/demo`, made anew at each run and left in place
/// afterwards: the bare remote `remote.git`, and `clone`, an engineer's clone in which
/// `claude-warroom status` and `get-results` work.
#[derive(Debug, clap::Args)]
struct DemoArgs {
    #[command(flatten)]
    stack: StackArgs,

    /// How long to wait for the report.
    #[arg(long, default_value = "10m", value_parser = warroom_runtime::parse_duration)]
    timeout: Duration,
}

#[derive(Debug, clap::Args)]
struct StackArgs {
    /// Where the stack keeps its state: the NATS store, the daemons' clones, the runners'
    /// workspaces.
    #[arg(long, default_value = ".warroom-dev")]
    state_dir: PathBuf,

    /// Use this NATS server (with JetStream) instead of starting one. Otherwise `nats-server`
    /// is taken from WARROOM_NATS_SERVER_BIN, `.tools/bin` (see scripts/setup) or PATH.
    #[arg(long)]
    nats_url: Option<String>,

    /// The Claude Code CLI; default: WARROOM_CLAUDE_BIN, `.tools/bin/claude` or `claude` on
    /// PATH.
    #[arg(long)]
    claude_bin: Option<PathBuf>,

    /// How often the gateway checks the remote for new requests.
    #[arg(long, default_value = "1s")]
    poll_interval: String,
}

impl StackArgs {
    fn options(&self, repo: String, branch: String, clusters: Vec<String>) -> StackOptions {
        let model = match std::env::var("ANTHROPIC_API_KEY") {
            Ok(api_key) if !api_key.trim().is_empty() => Model::Anthropic { api_key },
            _ => Model::Replay,
        };
        let claude_bin = self
            .claude_bin
            .clone()
            .or_else(|| find_tool("claude", "WARROOM_CLAUDE_BIN"))
            .unwrap_or_else(|| PathBuf::from("claude"));
        StackOptions {
            repo,
            branch,
            clusters,
            nats_url: self.nats_url.clone(),
            state_dir: self.state_dir.clone(),
            claude_bin,
            poll_interval: self.poll_interval.clone(),
            model,
            agent_path: Vec::new(),
            policy: None,
            extra_args: Default::default(),
            daemons: Default::default(),
        }
    }
}

fn main() -> ExitCode {
    // Started as `warroom-guard` (the link `start` makes for the runners' hook), this binary
    // is the guard: one binary to build for the local stack.
    let called = std::env::args_os().next().map(PathBuf::from);
    if called
        .as_deref()
        .and_then(|p| p.file_name())
        .is_some_and(|n| n == "warroom-guard")
    {
        warroom_guard::cli::main();
        return ExitCode::SUCCESS;
    }
    match run(Args::parse()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        match args.command {
            DevCommand::Up(args) => up(args).await,
            DevCommand::Demo(args) => demo(args).await,
        }
    })
}

async fn up(args: UpArgs) -> Result<ExitCode> {
    // The daemons retry an unreachable remote for ever, as they should; a local path that
    // does not exist is a typo, and is said at once.
    let local = !args.repo.contains("://") && !args.repo.contains(':');
    if local && !tokio::fs::try_exists(&args.repo).await.unwrap_or(false) {
        bail!(
            "--repo {}: no such folder; give a path to a git repository or a URL",
            args.repo
        );
    }
    if let Some(policy) = &args.policy
        && !policy.is_file()
    {
        bail!("--policy {}: no such file", policy.display());
    }
    for (cluster, file) in &args.kubeconfigs {
        if !args.clusters.contains(cluster) {
            bail!(
                "--kubeconfig {cluster}={}: `{cluster}` is not one of --clusters",
                file.display()
            );
        }
        if !file.is_file() {
            bail!("--kubeconfig {cluster}={}: no such file", file.display());
        }
    }
    warroom_runtime::telemetry::init("text");
    let mut options = args.stack.options(args.repo, args.branch, args.clusters);
    options.policy = args.policy;
    for (cluster, file) in args.kubeconfigs {
        options
            .extra_args
            .runner_of
            .entry(cluster)
            .or_default()
            .extend(["--kubeconfig".to_owned(), file.display().to_string()]);
    }
    let mut stack = start(&options).await?;
    eprintln!(
        "warroom-dev: following {} ({}) for {}; Ctrl-C stops",
        options.repo,
        options.branch,
        options.clusters.join(", ")
    );
    tokio::select! {
        () = warroom_runtime::shutdown::signal() => {
            eprintln!("warroom-dev: stopping");
            stack.shutdown().await?;
            Ok(ExitCode::SUCCESS)
        }
        (name, error) = stack.failed() => {
            let _ = stack.shutdown().await;
            Err(error.context(format!("the {name} stopped")))
        }
    }
}

async fn demo(args: DemoArgs) -> Result<ExitCode> {
    init_demo_logging();

    let demo = args.stack.state_dir.join("demo");
    if tokio::fs::try_exists(&demo).await.unwrap_or(false) {
        tokio::fs::remove_dir_all(&demo)
            .await
            .with_context(|| format!("cannot clear the previous demo in {}", demo.display()))?;
    }
    tokio::fs::create_dir_all(&demo)
        .await
        .with_context(|| format!("cannot create {}", demo.display()))?;
    let demo = tokio::fs::canonicalize(&demo).await?;
    let remote = demo.join("remote.git");
    let clone = {
        let (remote, clone) = (remote.clone(), demo.join("clone"));
        blocking(move || seed_remote(&remote, &clone)).await?
    };

    let clusters = DEMO_CLUSTERS.iter().map(|c| (*c).to_owned()).collect();
    let mut options = args
        .stack
        .options(remote.display().to_string(), "main".to_owned(), clusters);
    // A fresh remote needs a fresh NATS store: the gateway's cursor must not point into
    // the previous demo's history.
    options.state_dir = demo.join("stack");
    let mut stack = start(&options).await?;

    // What `claude-warroom init --publisher-key` records, so --verify works in the clone.
    let publisher_key = stack.publisher_key.as_ref().map(|(_, line)| {
        let key: Vec<&str> = line.split_whitespace().take(2).collect();
        key.join(" ")
    });
    let id = {
        let clone = clone.clone();
        blocking(move || {
            if let Some(key) = &publisher_key {
                git(
                    Some(&clone),
                    &["config", "--local", "warroom.publisherKey", key],
                )?;
            }
            submit_sample(&clone)
        })
        .await?
    };
    println!("submitted request {id} (sequential: production-hub, then prod-cluster-1)");

    let status = tokio::select! {
        status = follow(&remote, &id, args.timeout) => status,
        (name, error) = stack.failed() => Err(error.context(format!("the {name} stopped"))),
    };
    let shutdown = stack.shutdown().await;
    let status = status?;
    shutdown?;

    {
        let clone = clone.clone();
        blocking(move || git(Some(&clone), &["pull", "--quiet", "--ff-only"])).await?;
    }
    let results = clone.join(&status.results_dir);
    println!();
    println!("request {id}: {}", describe(&status));
    println!("report: {}", results.join("README.md").display());
    for (cluster, part) in &status.clusters {
        if let Some(report) = &part.report {
            println!("  {cluster}: {}", results.join(report).display());
        }
    }
    println!();
    println!("From the engineer's clone:");
    println!(
        "  claude-warroom status --verify {id} --repo {}\n  claude-warroom get-results --verify {id} --repo {}",
        clone.display(),
        clone.display()
    );
    Ok(if status.phase == RequestPhase::Completed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn start(options: &StackOptions) -> Result<Stack> {
    let mut options = options.clone();
    let guard = guard_link(&options.state_dir)?;
    options
        .extra_args
        .runner
        .extend(["--guard-bin".to_owned(), guard.display().to_string()]);
    let stack = Stack::start(&options).await?;
    if stack.replay {
        eprintln!(
            "warroom-dev: replay mode (ANTHROPIC_API_KEY is not set): a recorded demo \
             investigation, recorded oc/kubectl answers; every report says so"
        );
    } else {
        eprintln!("warroom-dev: the runners talk to Anthropic");
    }
    match &options.policy {
        Some(policy) => eprintln!(
            "warroom-dev: the gateway enforces the policy {}: only requests signed by their \
             engineer run",
            policy.display()
        ),
        None => eprintln!(
            "warroom-dev: no --policy: requests are NOT verified (the gateway runs with \
             --insecure-allow-unsigned); anyone who can push can run investigations"
        ),
    }
    eprintln!("warroom-dev: NATS at {}", stack.nats_url);
    if let Some((file, line)) = &stack.publisher_key {
        eprintln!(
            "warroom-dev: the publisher signs its commits with the throwaway key {line}; in a \
             clone, `claude-warroom init --publisher-key {}` lets `status --verify` check them",
            file.display()
        );
    }
    Ok(stack)
}

/// Runs `work` (git through `std::process`, file writes) on the blocking pool, off the
/// threads that drive the stack's daemons.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .context("a blocking step of the demo panicked")?
}

/// The daemons' progress is not the demo's story: only warnings, unless RUST_LOG asks more.
fn init_demo_logging() {
    if std::env::var_os("RUST_LOG").is_some() {
        warroom_runtime::telemetry::init("text");
    } else {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init();
    }
}

/// Makes the bare remote with one commit on `main` and an engineer's clone of it.
fn seed_remote(remote: &Path, clone: &Path) -> Result<PathBuf> {
    let remote_text = remote.display().to_string();
    let clone_text = clone.display().to_string();
    git(
        None,
        &[
            "init",
            "--quiet",
            "--bare",
            "--initial-branch",
            "main",
            &remote_text,
        ],
    )?;
    git(None, &["clone", "--quiet", &remote_text, &clone_text])?;
    // An empty clone's HEAD follows git's own default branch name: make it `main`.
    git(Some(clone), &["symbolic-ref", "HEAD", "refs/heads/main"])?;
    if !has_config(clone, "user.email") {
        git(Some(clone), &["config", "user.name", "warroom-dev demo"])?;
        git(
            Some(clone),
            &["config", "user.email", "demo@warroom.invalid"],
        )?;
    }
    std::fs::create_dir_all(clone.join("requests/pending"))?;
    std::fs::write(clone.join("requests/pending/.gitkeep"), "")?;
    std::fs::write(
        clone.join("README.md"),
        "# Warroom demo\n\nMade by `warroom-dev demo`.\n",
    )?;
    git(Some(clone), &["add", "--all"])?;
    git(Some(clone), &["commit", "--quiet", "-m", "Initial commit"])?;
    git(Some(clone), &["push", "--quiet", "origin", "main"])?;
    Ok(clone.to_path_buf())
}

/// Runs git outside any repository (for `init` and `clone`) or in `dir`.
fn git(dir: Option<&Path>, args: &[&str]) -> Result<()> {
    let mut command = Command::new("git");
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let output = command.args(args).output().context("cannot run git")?;
    if !output.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Whether git in `dir` has a non-empty value for `key` (from any configuration file).
fn has_config(dir: &Path, key: &str) -> bool {
    Command::new("git")
        .current_dir(dir)
        .args(["config", "--get", key])
        .output()
        .is_ok_and(|output| output.status.success() && !output.stdout.trim_ascii().is_empty())
}

/// Commits and pushes the sample request with a fresh id and timestamp; returns the id.
fn submit_sample(clone: &Path) -> Result<String> {
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .context("truncating the time")?;
    let stamp = now
        .format(time::macros::format_description!(
            "[year]-[month]-[day]-[hour][minute][second]"
        ))
        .context("formatting the time")?;
    let id = format!("{stamp}-cross-cluster-api-timeout");
    let timestamp = now
        .format(&time::format_description::well_known::Rfc3339)
        .context("formatting the time")?;
    let yaml = SAMPLE_REQUEST.replace("2024-01-15T15:00:00Z", &timestamp);
    let relative = format!("requests/pending/{id}.yaml");
    warroom_proto::parse_request(Path::new(&relative), yaml.as_bytes())
        .map_err(|errors| anyhow::anyhow!("the sample request is invalid: {errors}"))?;
    std::fs::write(clone.join(&relative), yaml)
        .with_context(|| format!("cannot write {relative}"))?;
    git(Some(clone), &["add", "--", &relative])?;
    git(
        Some(clone),
        &["commit", "--quiet", "-m", &format!("Request {id}")],
    )?;
    git(Some(clone), &["push", "--quiet", "origin", "main"])?;
    Ok(id)
}

/// Reads `status.json` from the remote until it is final, printing each change.
async fn follow(remote: &Path, id: &str, timeout: Duration) -> Result<RequestStatus> {
    let deadline = Instant::now() + timeout;
    let path = format!("main:results/{id}/status.json");
    let mut last = String::new();
    loop {
        let output = tokio::process::Command::new("git")
            .arg("--git-dir")
            .arg(remote)
            .args(["show", &path])
            .output()
            .await
            .context("cannot run git")?;
        if output.status.success() {
            let status: RequestStatus = serde_json::from_slice(&output.stdout)
                .with_context(|| format!("results/{id}/status.json is not a valid status"))?;
            let line = describe(&status);
            if line != last {
                println!("  {line}");
                last = line;
            }
            if status.phase.is_final() {
                return Ok(status);
            }
        }
        if Instant::now() > deadline {
            bail!(
                "no final status for {id} within {} s; the stack's state is in {}",
                timeout.as_secs(),
                remote.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `completed (production-hub: completed, prod-cluster-1: completed)`, and the error if any.
fn describe(status: &RequestStatus) -> String {
    let clusters: Vec<String> = status
        .clusters
        .iter()
        .map(|(name, part)| format!("{name}: {}", part.phase))
        .collect();
    let mut line = format!("{} ({})", status.phase, clusters.join(", "));
    if let Some(error) = &status.error {
        line.push_str(&format!(": {error}"));
    }
    line
}

/// A `warroom-guard` link to this binary in the state folder: the runners' tool-call guard
/// (see `main`), so `warroom-dev` needs no second binary next to it.
fn guard_link(state_dir: &std::path::Path) -> Result<PathBuf> {
    let dir = state_dir.join("bin");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let link = dir.join("warroom-guard");
    let exe = std::env::current_exe().context("cannot find this executable")?;
    match std::fs::remove_file(&link) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot replace {}", link.display())),
    }
    std::os::unix::fs::symlink(&exe, &link)
        .with_context(|| format!("cannot link {} to {}", link.display(), exe.display()))?;
    Ok(link)
}
