//! The scale figures of issue #11, each printed as it is taken: `scripts/bench` builds the
//! release binaries and runs this (`cargo bench -p warroom-testkit --bench scale`).
//!
//! Every daemon runs as its own release binary (`warroom_dev::Daemons::Processes`) against a
//! real nats-server and a bare git remote, so each one's memory and CPU can be read from
//! `/proc`; only the 500-cluster fan-out runs its 500 runners as tasks of this process. The
//! agent is a stand-in `claude` that prints a valid stream-json transcript at once (the model
//! is out of these figures; `--bench wake` runs the real CLI end to end).
//!
//! `WARROOM_BENCH_ONLY` picks sections (comma-separated: `memory`, `wake`, `fan-out`,
//! `burst`, `poll`, `cold-start`, `cancel`); `WARROOM_BENCH_RUNS` sets the requests per wake
//! and per cancel setting (default 20).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{free_port, send_webhook, unix_now, webhook_args};
use warroom_dev::{Daemons, Model, Stack, StackOptions};
use warroom_proto::Stream;
use warroom_scripted_model::{Script, ScriptedModel, Turn};
use warroom_testkit::{BareRemote, NatsServer, WorkClone, tools, wait_for, wait_until};

/// The gateway's default poll interval.
const DEFAULT_POLL: &str = "5s";
/// Long enough for any section on a slow machine; only stops a hung run.
const LONG: Duration = Duration::from_secs(600);

/// A `claude` that records when it started and ended (Unix nanoseconds, one line each in
/// `starts.log` and `ends.log` of its folder) and prints a finished investigation at once;
/// when its prompt asks it to hold (the cancel section), it records its pid in `held.log`
/// and runs until it is stopped.
const STAND_IN_CLAUDE: &str = r#"#!/bin/sh
date +%s%N >> "__DIR__/starts.log"
prompt=$(cat)
case "$prompt" in
  *hold-for-cancel*) echo $$ >> "__DIR__/held.log"; exec sleep 3600 ;;
esac
cat <<'EOF'
{"type":"system","subtype":"init","session_id":"stand-in","tools":["Bash"]}
{"type":"assistant","message":{"content":[{"type":"text","text":"FINDING: nothing is wrong."}]}}
{"type":"result","subtype":"success","is_error":false,"num_turns":1,"result":"FINDING: nothing is wrong.","total_cost_usd":0}
EOF
date +%s%N >> "__DIR__/ends.log"
"#;

fn request(cluster: &str, description: &str) -> String {
    request_for(&[cluster], description)
}

fn request_for(clusters: &[&str], description: &str) -> String {
    let targets = match clusters {
        [one] => format!("  targetCluster:\n    type: hosted\n    name: {one}\n"),
        many => {
            let mut text = "  targetClusters:\n".to_owned();
            for c in many {
                text.push_str(&format!("    - type: hosted\n      name: {c}\n"));
            }
            text.push_str("  coordination:\n    mode: parallel\n");
            text
        }
    };
    format!(
        "apiVersion: warroom.intility.io/v1
kind: TroubleshootingRequest
metadata:
  name: bench
  timestamp: \"2026-11-24T10:00:00Z\"
  engineer: bench
spec:
{targets}  issue:
    category: bench
    description: {description}
  investigation:
    prompt: Say what you see.
    allowedTools: [bash]
    timeout: 300
"
    )
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// p50, p99, min, max of `values` as one line.
fn spread(values: &mut [Duration]) -> String {
    values.sort();
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    format!(
        "p50 {:>9}   p99 {:>9}   min {:>9}   max {:>9}",
        ms(at(0.5)),
        ms(at(0.99)),
        ms(values[0]),
        ms(values[values.len() - 1])
    )
}

/// A pseudo-random pause shorter than `max`, from the clock's nanoseconds.
fn jitter(max: Duration) -> Duration {
    let nanos = u64::from(unix_now().subsec_nanos());
    let max = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX).max(1);
    Duration::from_nanos(nanos.wrapping_mul(6_364_136_223_846_793_005) % max)
}

/// The folder of this build's daemon binaries (`target/release` under `cargo bench`).
fn bin_dir() -> PathBuf {
    tools::workspace_binary("warroom-gateway")
        .parent()
        .expect("a binary lives in a folder")
        .to_path_buf()
}

/// What a bench stack is made of.
struct Setup<'a> {
    clusters: &'a [&'a str],
    poll: &'a str,
    webhook: bool,
    processes: bool,
    remote: Option<BareRemote>,
    runner_args: Vec<String>,
}

impl<'a> Setup<'a> {
    fn new(clusters: &'a [&'a str]) -> Self {
        Setup {
            clusters,
            poll: DEFAULT_POLL,
            webhook: false,
            processes: true,
            remote: None,
            runner_args: Vec::new(),
        }
    }
}

/// The product with the stand-in agent, and the engineer's clone that feeds it.
struct Bench {
    remote: BareRemote,
    engineer: WorkClone,
    nats: NatsServer,
    stack: Option<Stack>,
    options: StackOptions,
    webhook_port: Option<u16>,
    deliveries: usize,
    dir: tempfile::TempDir,
    _model: ScriptedModel,
}

impl Bench {
    async fn start(setup: Setup<'_>) -> Bench {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::Builder::new()
            .prefix("warroom-bench-")
            .tempdir()
            .expect("a state folder");
        let claude = dir.path().join("claude");
        std::fs::write(
            &claude,
            STAND_IN_CLAUDE.replace("__DIR__", &dir.path().display().to_string()),
        )
        .expect("write the stand-in agent");
        std::fs::set_permissions(&claude, std::fs::Permissions::from_mode(0o755))
            .expect("make the stand-in executable");
        for log in ["starts.log", "ends.log"] {
            std::fs::write(dir.path().join(log), "").expect("create the agent's logs");
        }
        let remote = setup.remote.unwrap_or_default();
        let engineer = remote.work_clone();
        let nats = NatsServer::start().await;
        // The stand-in never calls it; the runners insist on a model to point the CLI at.
        let model = ScriptedModel::start(Script::single(vec![Turn::text("unused")]))
            .await
            .expect("scripted model");

        let mut options = StackOptions::new(remote.url(), setup.clusters, dir.path().join("stack"));
        options.nats_url = Some(nats.url().to_owned());
        options.claude_bin = claude;
        options.poll_interval = setup.poll.to_owned();
        options.model = Model::At {
            base_url: model.base_url(),
        };
        options.extra_args.runner = setup.runner_args;
        if setup.processes {
            options.daemons = Daemons::Processes { bin_dir: bin_dir() };
        }
        let webhook_port = setup.webhook.then(free_port);
        if let Some(port) = webhook_port {
            options.extra_args.gateway = webhook_args(port);
        }
        let stack = Stack::start(&options).await.expect("start the stack");
        Bench {
            remote,
            engineer,
            nats,
            stack: Some(stack),
            options,
            webhook_port,
            deliveries: 0,
            dir,
            _model: model,
        }
    }

    fn stack(&self) -> &Stack {
        self.stack.as_ref().expect("the stack runs")
    }

    fn stack_mut(&mut self) -> &mut Stack {
        self.stack.as_mut().expect("the stack runs")
    }

    /// Commits `files` (id, YAML) into `requests/pending/` and pushes; returns when the push
    /// returned, having sent the webhook if the gateway has one.
    async fn push(&mut self, files: &[(String, String)]) -> Duration {
        let files: Vec<(String, String)> = files
            .iter()
            .map(|(id, yaml)| (format!("requests/pending/{id}.yaml"), yaml.clone()))
            .collect();
        self.push_paths(&files).await
    }

    /// Commits `files` (path in the repository, content), pushes, and wakes the gateway
    /// when it has a webhook; returns when the push returned.
    async fn push_paths(&mut self, files: &[(String, String)]) -> Duration {
        self.engineer.pull();
        for (path, content) in files {
            self.engineer.write(path, content);
        }
        self.engineer.commit_all("requests");
        // The publisher pushes too while a request runs: a push it beat is rebased and
        // pushed again, as an engineer would.
        let mut tries = 0;
        while let Err(failure) = self.engineer.try_push() {
            tries += 1;
            assert!(tries < 20, "{failure}");
            self.engineer.pull();
        }
        let pushed = unix_now();
        if let Some(port) = self.webhook_port {
            self.deliveries += 1;
            let answer = send_webhook(port, &format!("delivery-{}", self.deliveries)).await;
            assert!(
                answer.contains("202"),
                "the webhook was not taken: {answer}"
            );
        }
        pushed
    }

    /// The times the stand-in agent recorded in `log` (`starts.log`, `ends.log`).
    fn agent_times(&self, log: &str) -> Vec<Duration> {
        std::fs::read_to_string(self.dir.path().join(log))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse::<u64>().ok())
            .map(Duration::from_nanos)
            .collect()
    }

    /// Waits until the stand-in agent has started `n` times in all; returns the `n`th start.
    async fn agent_started(&self, n: usize) -> Duration {
        wait_for(format!("{n} agent starts"), LONG, || async {
            self.agent_times("starts.log").get(n - 1).copied()
        })
        .await
    }

    /// Waits until `n` stand-in agents in all have started holding; returns the `n`th's pid.
    async fn held_agent(&self, n: usize) -> u32 {
        wait_for(format!("{n} held agents"), LONG, || async {
            std::fs::read_to_string(self.dir.path().join("held.log"))
                .unwrap_or_default()
                .lines()
                .nth(n - 1)
                .and_then(|l| l.trim().parse::<u32>().ok())
        })
        .await
    }

    /// Waits until the stand-in agent has ended `n` times in all; returns the `n`th end.
    async fn agent_ended(&self, n: usize) -> Duration {
        wait_for(format!("{n} agent ends"), LONG, || async {
            self.agent_times("ends.log").get(n - 1).copied()
        })
        .await
    }

    /// Waits until `results/<id>/status.json` on the remote is final; returns when it saw it
    /// (checked every 10 ms).
    async fn final_status(&self, id: &str) -> Duration {
        let path = format!("results/{id}/status.json");
        loop {
            if let Some(text) = self.remote.read(&path)
                && let Ok(status) = serde_json::from_str::<warroom_proto::RequestStatus>(&text)
                && status.phase.is_final()
            {
                return unix_now();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits for the request's first status in git and stops the bench, with the status's
    /// error, if the request was refused: a figure for a refused request would mean nothing.
    async fn expect_not_refused(&self, id: &str) {
        let path = format!("results/{id}/status.json");
        let text = wait_for(format!("{path} on the remote"), LONG, || async {
            self.remote.read(&path)
        })
        .await;
        let status: warroom_proto::RequestStatus =
            serde_json::from_str(&text).expect("a valid status.json");
        assert!(
            status.phase != warroom_proto::RequestPhase::Rejected,
            "{id} was rejected: {text}"
        );
    }

    /// How many `status.json` there are under `results/` on the remote.
    fn statuses(&self) -> usize {
        self.remote
            .try_git(["ls-tree", "-r", "--name-only", "main", "results/"])
            .map(|out| out.lines().filter(|l| l.ends_with("/status.json")).count())
            .unwrap_or(0)
    }

    /// How many `status.json` under `results/` on the remote are in a final phase.
    fn final_statuses(&self) -> usize {
        let found = self.remote.try_git([
            "grep",
            "-l",
            "-E",
            "\"phase\": ?\"(completed|failed|rejected|timed_out|cancelled)\"",
            "main",
            "--",
            "results/*/status.json",
        ]);
        found.map(|out| out.lines().count()).unwrap_or(0)
    }

    /// How many messages were ever published to one of our streams (a work queue deletes
    /// them once taken).
    async fn published_to(&self, stream: Stream) -> u64 {
        self.stream_state(stream.name())
            .await
            .map_or(0, |state| state.last_sequence)
    }

    /// The messages a JetStream stream holds now (0 before it exists).
    async fn messages_in(&self, stream: &str) -> u64 {
        self.stream_state(stream)
            .await
            .map_or(0, |state| state.messages)
    }

    async fn stream_state(&self, stream: &str) -> Option<async_nats::jetstream::stream::State> {
        let js = self.nats.jetstream().await;
        let mut handle = js.get_stream(stream).await.ok()?;
        handle.info().await.ok().map(|info| info.state.clone())
    }

    /// The CPU time used so far by each daemon (the runners with their agents, all runners
    /// together) and by nats-server.
    fn cpu(&self) -> Vec<(String, Duration)> {
        let stack = self.stack();
        let mut used: Vec<(String, Duration)> = Vec::new();
        for name in stack.daemon_names() {
            let spent = cpu_time(stack.pid(&name).expect("a daemon process"));
            let group = if name.starts_with("runner-") {
                "runners and their agents".to_owned()
            } else {
                name
            };
            match used.iter_mut().find(|(g, _)| *g == group) {
                Some((_, total)) => *total += spent,
                None => used.push((group, spent)),
            }
        }
        used.push((
            "nats-server".to_owned(),
            cpu_time(self.nats.pid().expect("nats-server runs")),
        ));
        used
    }

    fn memory(&self, daemon: &str) -> warroom_dev::Memory {
        self.stack()
            .memory(daemon)
            .unwrap_or_else(|e| panic!("the {daemon}'s memory: {e:#}"))
    }

    async fn stop(mut self) {
        if let Some(stack) = self.stack.take() {
            stack.shutdown().await.expect("the stack stops cleanly");
        }
    }
}

/// CPU time a process and its reaped children (git) used so far, from `/proc/<pid>/stat`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read the stat");
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')').expect("a stat line") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime, stime, cutime, cstime are fields 14 to 17, i.e. 11 to 14 after the name.
    let ticks: u64 = fields[11..15]
        .iter()
        .map(|f| f.parse::<u64>().expect("a tick count"))
        .sum();
    Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64)
}

fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

const DAEMONS: [&str; 4] = ["gateway", "dispatcher", "runner-bench-cluster", "publisher"];

/// Idle memory of each daemon: after one request went through, and the stack sat idle.
async fn memory() {
    println!("\n## Idle memory of each daemon (RSS; one request done, then 5 s idle)");
    let mut bench = Bench::start(Setup::new(&["bench-cluster"])).await;
    bench
        .push(&[("warm-up".to_owned(), request("bench-cluster", "warm up"))])
        .await;
    bench.final_status("warm-up").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    for daemon in DAEMONS {
        let memory = bench.memory(daemon);
        println!(
            "  {daemon:<22} {:>10}   (peak so far {})",
            mib(memory.rss_kib),
            mib(memory.peak_kib)
        );
    }
    bench.stop().await;
}

/// Push to agent start at the default poll, at 1 s, and with the webhook; with the webhook
/// also the agent's end to the final status in git, which with the push to agent start is our
/// own overhead per task.
async fn wake(runs: usize) {
    println!(
        "\n## Push to agent start (stand-in agent, {runs} requests per setting, one after another)"
    );
    for (name, poll, webhook, floor) in [
        (
            "poll every 5s (default)",
            DEFAULT_POLL,
            false,
            "2.5 s average wait for the poll",
        ),
        ("poll every 1s", "1s", false, "0.5 s average wait"),
        ("webhook, poll every 30s", "30s", true, "0 (woken at once)"),
    ] {
        let mut bench = Bench::start(Setup {
            poll,
            webhook,
            ..Setup::new(&["bench-cluster"])
        })
        .await;
        let mut to_start = Vec::with_capacity(runs);
        let mut to_final = Vec::with_capacity(runs);
        let mut overhead = Vec::with_capacity(runs);
        let interval = Duration::from_secs(poll.trim_end_matches('s').parse().expect("seconds"));
        for run in 0..runs {
            // Pushes land at random points of the poll cycle, as engineers' do; one right
            // after the previous request's end would always land at the same point.
            tokio::time::sleep(jitter(interval)).await;
            let id = format!("wake-{run:03}");
            let pushed = bench
                .push(&[(id.clone(), request("bench-cluster", "push to agent start"))])
                .await;
            let started = bench.agent_started(run + 1).await;
            let ended = bench.agent_ended(run + 1).await;
            let done = bench.final_status(&id).await;
            to_start.push(started.saturating_sub(pushed));
            to_final.push(done.saturating_sub(ended));
            overhead.push(done.saturating_sub(pushed) - ended.saturating_sub(started));
        }
        println!("  {name:<26} {}   (floor: {floor})", spread(&mut to_start));
        if webhook {
            println!(
                "  {:<26} {}   (publisher batch window 300 ms, default)",
                "agent end -> final in git",
                spread(&mut to_final)
            );
            println!(
                "  {:<26} {}   (push to final status, less the agent's own time)",
                "own overhead per task",
                spread(&mut overhead)
            );
        }
        bench.stop().await;
    }
}

/// Cancelling a running investigation: from the push of the cancel file to the agent's
/// process gone (the runner stops it: SIGINT, a grace, then the group killed), `runs` times
/// one after another, with the webhook and by polling.
async fn cancel(runs: usize) {
    println!(
        "\n## Cancel: push of the cancel file -> the agent's process gone ({runs} requests per \
         setting; target p95 5 s with the webhook, poll interval + 5 s without)"
    );
    for (name, poll, webhook) in [
        ("webhook, poll every 30s", "30s", true),
        ("poll every 5s (default)", DEFAULT_POLL, false),
    ] {
        let mut bench = Bench::start(Setup {
            poll,
            webhook,
            ..Setup::new(&["bench-cluster"])
        })
        .await;
        let interval = Duration::from_secs(poll.trim_end_matches('s').parse().expect("seconds"));
        let mut to_gone = Vec::with_capacity(runs);
        for run in 0..runs {
            let id = format!("cancel-{run:03}");
            bench
                .push(&[(id.clone(), request("bench-cluster", "hold-for-cancel"))])
                .await;
            let pid = bench.held_agent(run + 1).await;
            // Cancels land at random points of the poll cycle, as engineers' do (the webhook
            // wakes the gateway at once, whatever the point).
            tokio::time::sleep(jitter(if webhook {
                Duration::from_millis(500)
            } else {
                interval
            }))
            .await;
            let pushed = bench
                .push_paths(&[(
                    format!("requests/cancel/{id}.yaml"),
                    "apiVersion: warroom.intility.io/v1\nkind: CancelRequest\nmetadata:\n  \
                     engineer: bench\n  timestamp: \"2026-11-24T10:00:00Z\"\nspec:\n  \
                     reason: the bench\n"
                        .to_owned(),
                )])
                .await;
            // Checked every 10 ms, as `final_status` does.
            let proc_dir = PathBuf::from(format!("/proc/{pid}"));
            let gone = loop {
                if !proc_dir.exists() {
                    break unix_now();
                }
                assert!(
                    unix_now().saturating_sub(pushed) < LONG,
                    "the agent of {id} was not stopped"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            };
            to_gone.push(gone.saturating_sub(pushed));
            bench.final_status(&id).await;
        }
        to_gone.sort();
        let p95 = to_gone[((to_gone.len() - 1) as f64 * 0.95).round() as usize];
        println!("  {name:<26} {}   p95 {:>9}", spread(&mut to_gone), ms(p95));
        bench.stop().await;
    }
}

/// One request for 500 clusters, parallel: push to every agent started, and the last agent's
/// end to the final aggregated status in git.
async fn fan_out() {
    const CLUSTERS: usize = 500;
    println!(
        "\n## {CLUSTERS} clusters in one parallel request (500 runners as tasks of one process)"
    );
    let names: Vec<String> = (0..CLUSTERS).map(|n| format!("hosted-{n:03}")).collect();
    let clusters: Vec<&str> = names.iter().map(String::as_str).collect();
    let started = Instant::now();
    let mut bench = Bench::start(Setup {
        poll: "1s",
        webhook: true,
        processes: false,
        ..Setup::new(&clusters)
    })
    .await;
    // Every runner has announced itself (one heartbeat key each) before the request goes in.
    let heartbeats = format!("KV_{}", warroom_proto::names::RUNNERS_BUCKET);
    wait_until("every runner's heartbeat", LONG, || async {
        bench.messages_in(&heartbeats).await >= CLUSTERS as u64
    })
    .await;
    println!(
        "  stack with {CLUSTERS} runners ready in {}",
        ms(started.elapsed())
    );
    // When each runner report (started, finished) and each event (the dispatcher's status
    // snapshots among them) reaches NATS.
    let reports = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let client = async_nats::connect(bench.nats.url())
        .await
        .expect("connect to NATS");
    for (stream, times) in [(Stream::Results, &reports), (Stream::Events, &events)] {
        for subject in stream.subjects() {
            let mut subscription = client.subscribe(subject).await.expect("subscribe");
            let times = times.clone();
            tokio::spawn(async move {
                use futures::StreamExt as _;
                while subscription.next().await.is_some() {
                    times.lock().expect("not poisoned").push(unix_now());
                }
            });
        }
    }
    client.flush().await.expect("flush the subscriptions");
    let commits_before = commits(&bench.remote);
    let pushed = bench
        .push(&[("fan-out".to_owned(), request_for(&clusters, "fan-out"))])
        .await;
    bench.expect_not_refused("fan-out").await;
    let first = bench.agent_started(1).await;
    let all = bench.agent_started(CLUSTERS).await;
    let done = bench.final_status("fan-out").await;
    // The last arrival at or before the final status reached git.
    let last_before_done = |times: &std::sync::Mutex<Vec<Duration>>, what: &str| {
        times
            .lock()
            .expect("not poisoned")
            .iter()
            .copied()
            .filter(|at| *at <= done)
            .max()
            .unwrap_or_else(|| panic!("{what}"))
    };
    let last_result = last_before_done(&reports, "the runners reported");
    let last_event = last_before_done(&events, "the dispatcher published snapshots");
    println!(
        "  push -> first agent start               {:>9}",
        ms(first.saturating_sub(pushed))
    );
    println!(
        "  push -> all {CLUSTERS} agents started          {:>9}",
        ms(all.saturating_sub(pushed))
    );
    println!(
        "  last result in NATS -> final status in git {:>9}   (target: 2 s)",
        ms(done.saturating_sub(last_result))
    );
    println!(
        "    of which: to the final snapshot in NATS (dispatcher) {:>9}, then to git (publisher) {:>9}",
        ms(last_event.saturating_sub(last_result)),
        ms(done.saturating_sub(last_event))
    );
    println!(
        "  publisher commits from the push to the final status {:>3}",
        commits(&bench.remote).saturating_sub(commits_before + 1)
    );
    bench.stop().await;
}

/// How many commits the remote's `main` has.
fn commits(remote: &BareRemote) -> usize {
    warroom_testkit::git::git(&remote.path(), ["rev-list", "--count", "main"])
        .trim()
        .parse()
        .expect("a commit count")
}

/// 1,000 request files in one push: accepted, dispatched, (with runners here) all final;
/// each daemon's peak memory. With `runners_here`, the clusters' runners run their agents on
/// the same 2 cores as everything else; without, the requests are for clusters whose runners
/// are elsewhere (as in production, where each runs in its own cluster), so the gateway and
/// the dispatcher have the machine to themselves.
async fn burst(runners_here: bool) {
    const FILES: usize = 1000;
    const CLUSTERS: [&str; 10] = [
        "burst-0", "burst-1", "burst-2", "burst-3", "burst-4", "burst-5", "burst-6", "burst-7",
        "burst-8", "burst-9",
    ];
    if runners_here {
        println!(
            "\n## {FILES} request files in one push, for {} clusters whose runners run here \
             (--concurrency 4 each; webhook)",
            CLUSTERS.len()
        );
    } else {
        println!(
            "\n## {FILES} request files in one push, for {} clusters whose runners are elsewhere \
             (webhook)",
            CLUSTERS.len()
        );
    }
    let here: &[&str] = if runners_here {
        &CLUSTERS
    } else {
        &["bench-cluster"]
    };
    let mut bench = Bench::start(Setup {
        webhook: true,
        runner_args: vec!["--concurrency".to_owned(), "4".to_owned()],
        ..Setup::new(here)
    })
    .await;
    let files: Vec<(String, String)> = (0..FILES)
        .map(|n| {
            (
                format!("burst-{n:04}"),
                request(CLUSTERS[n % CLUSTERS.len()], "a burst"),
            )
        })
        .collect();
    let cpu_before = bench.cpu();
    let commits_before = commits(&bench.remote);
    let pushed = bench.push(&files).await;
    let push_instant = Instant::now();
    let mut accepted = None;
    let mut dispatched = None;
    while dispatched.is_none() {
        if accepted.is_none() && bench.published_to(Stream::Requests).await >= FILES as u64 {
            accepted = Some(push_instant.elapsed());
        }
        if bench.published_to(Stream::Tasks).await >= FILES as u64 {
            dispatched = Some(push_instant.elapsed());
        }
        assert!(
            push_instant.elapsed() < LONG,
            "the burst was not dispatched"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu_spent: Vec<(String, Duration)> = bench
        .cpu()
        .into_iter()
        .map(|(name, after)| {
            let before = cpu_before
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(Duration::ZERO, |(_, before)| *before);
            (name, after.saturating_sub(before))
        })
        .collect();
    let accepted = accepted.unwrap_or_else(|| dispatched.unwrap_or_default());
    let dispatched = dispatched.unwrap_or_default();
    println!(
        "  push -> all {FILES} accepted (requests stream)   {:>9}",
        ms(accepted)
    );
    println!(
        "  push -> all {FILES} dispatched (tasks stream)    {:>9}   (target: 5 s)",
        ms(dispatched)
    );
    println!("  CPU time used from the push until all were dispatched:");
    for (name, spent) in &cpu_spent {
        println!("    {name:<26} {:>9}", ms(*spent));
    }
    // With the runners here every request ends; without, the publisher writes every
    // request's `dispatched` status.
    let (what, count): (&str, fn(&Bench) -> usize) = if runners_here {
        ("final in git", Bench::final_statuses)
    } else {
        ("statuses in git", Bench::statuses)
    };
    wait_until(format!("{FILES} {what}"), LONG, || async {
        count(&bench) >= FILES
    })
    .await;
    println!(
        "  push -> all {FILES} {what:<28} {:>9}",
        ms(unix_now().saturating_sub(pushed))
    );
    // The engineer's push is one of them.
    println!(
        "  publisher commits until then                  {:>3}",
        commits(&bench.remote).saturating_sub(commits_before + 1)
    );
    println!("  peak memory (VmHWM) of each daemon:");
    for daemon in ["gateway", "dispatcher", "publisher"] {
        println!("    {daemon:<22} {}", mib(bench.memory(daemon).peak_kib));
    }
    let runner_peak = here
        .iter()
        .map(|c| bench.memory(&format!("runner-{c}")).peak_kib)
        .max()
        .unwrap_or_default();
    println!(
        "    {:<22} {}   (the highest of the {} runners)",
        "runner",
        mib(runner_peak),
        here.len()
    );
    bench.stop().await;
}

/// A remote whose `main` has `commits` commits.
fn remote_with_history(commits: usize) -> BareRemote {
    let remote = BareRemote::new();
    remote.add_history(commits - 1);
    remote
}

/// A stack polling every second (and woken by the webhook, with `webhook`) on a remote whose
/// `main` has `commits` commits, after one request went through it.
async fn warmed_up(commits: usize, webhook: bool) -> Bench {
    let mut bench = Bench::start(Setup {
        poll: "1s",
        webhook,
        remote: Some(remote_with_history(commits)),
        ..Setup::new(&["bench-cluster"])
    })
    .await;
    bench
        .push(&[("warm-up".to_owned(), request("bench-cluster", "warm up"))])
        .await;
    bench.final_status("warm-up").await;
    bench
}

/// The CPU the gateway (and its git) spends on one poll that finds nothing new, at 1,000 and
/// 100,000 commits.
async fn poll_cost() {
    const POLLS: u32 = 10;
    println!("\n## Gateway poll cost (nothing new; CPU of the gateway and its git per poll)");
    for commits in [1_000, 100_000] {
        let mut bench = warmed_up(commits, false).await;
        let pid = bench.stack_mut().pid("gateway").expect("the gateway's pid");
        let before = cpu_time(pid);
        tokio::time::sleep(Duration::from_secs(u64::from(POLLS))).await;
        let spent = cpu_time(pid) - before;
        println!(
            "  {:>7} commits   {} CPU per poll   ({POLLS} polls at 1 s)",
            commits,
            ms(spent / POLLS)
        );
        bench.stop().await;
    }
}

/// From a publisher's start with an empty work folder (a new pod) to the first status in git,
/// at 1,000 and 100,000 commits; and with its work folder kept (a restart).
async fn cold_start() {
    println!("\n## Publisher start to its first status in git (a status waiting in NATS)");
    for commits in [1_000, 100_000] {
        let mut bench = warmed_up(commits, true).await;
        let work_dir = bench.options.state_dir.join("publisher");
        let mut line = format!("  {commits:>7} commits");
        for (n, cold) in [(2, true), (3, false)] {
            // Stopped as Kubernetes stops a pod (SIGTERM): it releases its lease.
            bench
                .stack_mut()
                .stop("publisher")
                .await
                .expect("stop the publisher");
            if cold {
                remove_dir(&work_dir);
            }
            let id = format!("start-{n}");
            bench
                .push(&[(id.clone(), request("bench-cluster", "publisher start"))])
                .await;
            bench.agent_ended(n).await;
            // Time for the runner's result and the dispatcher's final snapshot to reach NATS
            // (milliseconds; the publisher's start is what is measured).
            tokio::time::sleep(Duration::from_secs(1)).await;
            let restarted = unix_now();
            bench
                .stack_mut()
                .start_again("publisher")
                .expect("start the publisher");
            let done = bench.final_status(&id).await;
            line.push_str(&format!(
                "   {} {:>9}",
                if cold {
                    "empty work folder"
                } else {
                    "kept work folder"
                },
                ms(done.saturating_sub(restarted))
            ));
        }
        println!("{line}");
        bench.stop().await;
    }
}

fn remove_dir(dir: &Path) {
    if dir.exists() {
        std::fs::remove_dir_all(dir).expect("remove the publisher's work folder");
    }
}

#[tokio::main]
async fn main() {
    // The daemons that run inside the bench process log to stderr only when asked.
    if std::env::var_os("RUST_LOG").is_some() {
        warroom_runtime::telemetry::init("text");
    }
    let only = std::env::var("WARROOM_BENCH_ONLY").unwrap_or_default();
    let wanted = |section: &str| only.is_empty() || only.split(',').any(|s| s.trim() == section);
    let runs: usize = std::env::var("WARROOM_BENCH_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20)
        .max(1);
    println!(
        "# claude-warroom scale benchmarks ({} build, {} CPUs)",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if wanted("memory") {
        memory().await;
    }
    if wanted("wake") {
        wake(runs).await;
    }
    if wanted("fan-out") {
        fan_out().await;
    }
    if wanted("burst") {
        burst(false).await;
        burst(true).await;
    }
    if wanted("poll") {
        poll_cost().await;
    }
    if wanted("cold-start") {
        cold_start().await;
    }
    if wanted("cancel") {
        cancel(runs).await;
    }
}
