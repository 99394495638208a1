//! The runner: one per cluster. Pulls that cluster's tasks from NATS, up to `--concurrency` at
//! a time (one by default), and runs the Claude Code CLI headless on each in a fresh, empty
//! workspace with its own `HOME`, under read-only tool rules ([`guard`]). Every tool call,
//! tool result and refused call is published as an audit event while the agent runs; the
//! task's result (final text, cost, turns, denials and an honest outcome) is published last,
//! and only then is the task acked. Meanwhile [`heartbeat`] tells the dispatcher the replica
//! is alive, however long its runs take.
//!
//! No tool output reaches the model API in clear: the CLI's `PostToolUse` hook
//! (`warroom-guard post-tool-use`, registered by [`policy`]) replaces each output that holds
//! a secret by its redaction, and the [`proxy`] redacts every `tool_result` of each request
//! again on its way out. Both hooks run bounded in time (`guard::HOOK_BOUND_SECS`), below
//! the CLI's hook timeout, because a hook that times out lets the call through. What is
//! published is redacted whole first and cut afterwards.
//!
//! Module map: [`policy`] (request tools -> CLI permission arguments), [`prompt`] (what the
//! agent is told), [`stream`] (reading stream-json, judging the outcome), [`agent`] (the
//! process: environment, process group, timeout), [`proxy`] (the model API on loopback: the
//! key, the budget and the last redaction before the model), [`reaper`] (nothing of a run outlives it), [`task`] (one task from
//! message to ack), [`heartbeat`] (the replica's record in the runners bucket).

mod agent;
mod config;
pub mod conversation;
mod evidence;
mod guard;
mod heartbeat;
mod metrics;
mod outbox;
pub mod pod_programs;
mod progress;
mod prompt;
pub mod proxy;
mod reaper;
mod rerun;
pub mod session_pod;
mod stream;
mod task;

use std::future::Future;
use std::hash::{BuildHasher as _, Hasher as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use warroom_runtime::Chain;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::{error, info, warn};
use warroom_proto::{ReplicaId, RunnerHeartbeat, Stream, Subject, Task, names};
use warroom_runtime::shutdown::CancellationToken;
use warroom_runtime::{Bus, Consumer, ConsumerSpec};

pub use crate::config::{ApiKey, Config, MAX_CONCURRENCY, Settings};
pub use crate::metrics::{Health, Metrics, NotRun, NotRunLabels, OutcomeLabels};

/// How often a task is delivered before the server gives it up. A task runs at most
/// [`warroom_proto::status::MAX_RUNS`] (two) times; the third delivery fails its cluster
/// without running (`rerun`), and the deliveries after it are there only for when that
/// failure could not be reported.
pub const MAX_DELIVER: i64 = 5;
/// How long one pull waits for a task, so shutdown is noticed between pulls.
const PULL_EXPIRES: Duration = Duration::from_secs(5);
/// How long shutdown waits for unsent messages to reach NATS.
pub(crate) const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// Backoff after NATS errors in the pull loop.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Errors of the runner.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(warroom_runtime::config::InvalidConfig),
    #[error(transparent)]
    Bus(#[from] warroom_runtime::BusError),
    #[error("cannot set up the task consumer {consumer}: {message}")]
    Consumer { consumer: String, message: String },
    #[error("cannot build the model API client")]
    ModelClient(#[source] reqwest::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs the runner until `shutdown` resolves. The tasks in flight at shutdown are stopped and
/// handed back (nak) so another replica, or the next start, runs them.
pub async fn run(
    config: Settings,
    health: Health,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let model_api = config.model_api()?;
    // Orphans of the agent's commands come to the runner, and a crashed run's leftovers go
    // before the first task.
    reaper::become_subreaper();
    let work_root = config.work_root();
    if let Err(e) = tokio::task::spawn_blocking(move || reaper::clean_work_root(&work_root)).await {
        warn!(cause = %Chain(&e), "cannot clean the work root");
    }
    let stop = warroom_runtime::shutdown::token(shutdown);

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
    let mut consumer = task_consumer(&bus, &config, &consumer_name).await?;

    let session_pods = session_pod::SessionPods::connect(&config)
        .await
        .map(Arc::new);
    let sweep = session_pods
        .clone()
        .map(|pods| tokio::spawn(session_pod::sweep(pods, bus.clone(), stop.clone())));
    let runner = Arc::new(task::Runner::new(
        &config,
        model_api,
        session_pods,
        bus.clone(),
        health.clone(),
    ));
    let running = Arc::new(AtomicU32::new(0));
    let replica = ReplicaId::for_host(runner.name(), &instance_suffix());
    let heartbeat = tokio::spawn(heartbeat::beat(
        bus.clone(),
        first_heartbeat(&config, &replica, runner.name()),
        running.clone(),
        health.metrics.clone(),
        stop.clone(),
    ));
    health.set_ready(true);
    info!(cluster = %config.cluster, consumer = %consumer_name, %replica, concurrency = config.concurrency, "runner ready");

    work(
        &runner,
        &mut consumer,
        config.concurrency,
        &running,
        &health,
        &stop,
    )
    .await;
    health.set_ready(false);
    if let Some(sweep) = sweep
        && let Err(e) = sweep.await
    {
        warn!(cause = %Chain(&e), "the session pod sweep failed");
    }
    // The heartbeat ends with `stop` and removes itself.
    if let Err(e) = heartbeat.await {
        warn!(cause = %Chain(&e), "the heartbeat task failed");
    }
    // Acks and naks sent last must reach the server before the connection goes away.
    bus.flush(FLUSH_TIMEOUT).await;
    info!(cluster = %config.cluster, "runner stopped");
    Ok(())
}

/// The durable consumer of this cluster's tasks, one at a time per pull.
async fn task_consumer(
    bus: &Bus,
    config: &Config,
    consumer_name: &str,
) -> Result<warroom_runtime::Consumer<Task>> {
    Ok(bus
        .consume::<Task>(ConsumerSpec {
            filter: Some(Subject::Task(config.cluster.clone()).to_string()),
            ack_wait: config.ack_wait,
            max_deliver: MAX_DELIVER,
            batch: 1,
            ..ConsumerSpec::new(
                Stream::Tasks,
                consumer_name.to_owned(),
                "claude-warroom runner: this cluster's tasks",
            )
        })
        .await?)
}

/// The heartbeat this replica starts with: `running` 0, both times now.
fn first_heartbeat(config: &Config, replica: &ReplicaId, host: &str) -> RunnerHeartbeat {
    RunnerHeartbeat {
        cluster: config.cluster.clone(),
        replica: replica.clone(),
        host: host.to_owned(),
        concurrency: config.concurrency,
        running: 0,
        started_at: warroom_proto::now(),
        at: warroom_proto::now(),
    }
}

/// The pull loop: takes a task only when one of the `concurrency` slots is free and runs it
/// on a task of its own, so tasks beyond the free slots stay in the stream for another
/// replica. Returns at `stop` once every run in flight has ended (each stops its agent and
/// hands its task back).
async fn work(
    runner: &Arc<task::Runner>,
    consumer: &mut Consumer<Task>,
    concurrency: u32,
    running: &Arc<AtomicU32>,
    health: &Health,
    stop: &CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(
        usize::try_from(concurrency.max(1)).unwrap_or(1),
    ));
    let mut runs = JoinSet::new();
    loop {
        while let Some(ended) = runs.try_join_next() {
            log_run_end(ended);
        }
        let permit = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        // One message per pull: a task waits in the stream, where another replica can take
        // it, rather than in this replica's buffer while its slots are busy.
        let next = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            next = consumer.fetch_one(PULL_EXPIRES) => next,
        };
        match next {
            Ok(Some(delivery)) => {
                let slot = Slot::take(permit, running.clone());
                let (runner, stop) = (runner.clone(), stop.clone());
                runs.spawn(async move {
                    runner.handle(delivery, stop).await;
                    drop(slot);
                });
            }
            Ok(None) => {}
            Err(e) => {
                warn!(cause = %Chain(&e), "cannot pull a task; retrying");
                health.metrics.pull_errors.inc();
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(RETRY_PAUSE) => {}
                }
            }
        }
    }
    if !runs.is_empty() {
        info!(
            runs = runs.len(),
            "stopping the runs in flight; their tasks go back to the stream"
        );
    }
    while let Some(ended) = runs.join_next().await {
        log_run_end(ended);
    }
}

fn log_run_end(ended: Result<(), tokio::task::JoinError>) {
    if let Err(e) = ended {
        // Its slot was freed as the task unwound; the task itself comes back after the ack
        // wait (or is dead-lettered after its last delivery).
        error!(cause = %Chain(&e), "a run ended abnormally");
    }
}

/// One busy slot: counted in the heartbeat's `running` while it lives, and freed for the next
/// task when dropped (also when the run panics).
struct Slot {
    _permit: OwnedSemaphorePermit,
    running: Arc<AtomicU32>,
}

impl Slot {
    fn take(permit: OwnedSemaphorePermit, running: Arc<AtomicU32>) -> Slot {
        running.fetch_add(1, Ordering::Relaxed);
        Slot {
            _permit: permit,
            running,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.running.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A random suffix that tells this runner's heartbeat key from that of another runner on the
/// same host (a restarted pod keeps its host name; its old key simply expires).
fn instance_suffix() -> String {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("{:08x}", random & 0xffff_ffff)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use warroom_runtime::daemon::Daemon as _;

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
        // One task at a time unless told otherwise; more only within a sane bound.
        assert_eq!(parse(&["--cluster", "a"]).concurrency, 1);
        let four = parse(&["--cluster", "a", "--claude-bin", "sh", "--concurrency", "4"]);
        assert_eq!(four.concurrency, 4);
        assert!(four.validate().is_ok());
        for out_of_range in ["0", "17"] {
            let bad = parse(&[
                "--cluster",
                "a",
                "--claude-bin",
                "sh",
                "--concurrency",
                out_of_range,
            ]);
            let err = bad.validate().expect_err("out of range").to_string();
            assert!(
                err.contains(&format!("--concurrency {out_of_range} is out of range"))
                    && err.contains("1 to 16"),
                "{err}"
            );
        }
        assert!(
            Config::try_parse_from(["warroom-runner", "--cluster", "a", "--concurrency", "-1"])
                .is_err()
        );
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
    fn session_pods_need_an_image() {
        let off = parse(&["--cluster", "a", "--claude-bin", "sh"]);
        assert!(!off.session.session_pods);
        assert_eq!(off.session.session_proxy_port, 8787);
        assert_eq!(off.session.session_service_account, "warroom-session");
        assert_eq!(off.session.session_model_secret, "warroom-model");
        let bad = parse(&["--cluster", "a", "--claude-bin", "sh", "--session-pods"]);
        let err = bad.validate().expect_err("no image").to_string();
        assert!(
            err.contains("--session-pods needs --session-image"),
            "{err}"
        );
        let bad = parse(&[
            "--cluster",
            "a",
            "--claude-bin",
            "sh",
            "--session-pods",
            "--session-image",
            "x",
            "--session-namespace",
            "Bad_NS",
        ]);
        let err = bad.validate().expect_err("a bad namespace").to_string();
        assert!(err.contains("--session-namespace \"Bad_NS\""), "{err}");
        let good = parse(&[
            "--cluster",
            "a",
            "--claude-bin",
            "sh",
            "--session-pods",
            "--session-image",
            "registry.example/warroom:1",
            "--session-namespace",
            "warroom",
        ]);
        assert!(good.validate().is_ok());
        assert_eq!(good.session.namespace(), "warroom");
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
