//! How long from `git push` to the agent's start, with the gateway woken by a signed GitHub
//! webhook at a 30 s poll interval, next to polling alone every 5 s and every 1 s (issue #10).
//!
//! `cargo bench -p warroom-testkit --bench wake` prints p50 and p99 for each; `WARROOM_BENCH_RUNS`
//! sets the requests per setting (default 20). Everything is real (nats-server, git, every
//! daemon, the Claude Code CLI against the scripted model); the agent's start is the moment
//! the runner executes the `claude` binary, taken by a wrapper script that records the time
//! and `exec`s the real CLI. The webhook is sent the moment `git push` returns, as GitHub
//! sends it once it has the push.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{free_port, send_webhook, unix_now, webhook_args};
use warroom_dev::{Model, Stack, StackOptions};
use warroom_proto::RequestStatus;
use warroom_scripted_model::{Script, ScriptedModel, Turn};
use warroom_testkit::{BareRemote, NatsServer, tools, wait_for};

const REQUEST: &str = "apiVersion: warroom.intility.io/v1
kind: TroubleshootingRequest
metadata:
  name: bench
  timestamp: \"2026-11-24T10:00:00Z\"
  engineer: bench
spec:
  targetCluster:
    type: hosted
    name: bench-cluster
  issue:
    category: bench
    description: push to agent start
  investigation:
    prompt: Say what you see.
    allowedTools: [bash]
    timeout: 300
";

/// One way of noticing a push.
struct Setting {
    name: &'static str,
    poll: &'static str,
    webhook: bool,
}

const SETTINGS: [Setting; 3] = [
    Setting {
        name: "webhook, poll every 30s",
        poll: "30s",
        webhook: true,
    },
    Setting {
        name: "poll every 5s",
        poll: "5s",
        webhook: false,
    },
    Setting {
        name: "poll every 1s",
        poll: "1s",
        webhook: false,
    },
];

/// A `claude` that appends the time it was started (Unix nanoseconds) to `log`, then
/// becomes the real CLI.
fn install_timing_claude(dir: &Path, log: &Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join("claude");
    let script = format!(
        "#!/bin/sh\ndate +%s%N >> '{}'\nexec '{}' \"$@\"\n",
        log.display(),
        tools::claude().display()
    );
    std::fs::write(&path, script).expect("write the timing wrapper");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .expect("make the wrapper executable");
    path
}

/// Pushes `runs` requests one after another under `setting`; returns push -> agent start
/// of each.
async fn measure(setting: &Setting, runs: usize, model: &ScriptedModel) -> Vec<Duration> {
    let state = tempfile::tempdir().expect("state folder");
    let starts = state.path().join("starts.log");
    std::fs::write(&starts, "").expect("create the start log");
    let remote = BareRemote::new();
    let engineer = remote.work_clone();
    let nats = NatsServer::start().await;
    let port = free_port();

    let mut options =
        StackOptions::new(remote.url(), &["bench-cluster"], state.path().join("stack"));
    options.nats_url = Some(nats.url().to_owned());
    options.claude_bin = install_timing_claude(state.path(), &starts);
    options.poll_interval = setting.poll.to_owned();
    options.model = Model::At {
        base_url: model.base_url(),
    };
    options.extra_args.publisher = vec!["--batch-window".to_owned(), "50ms".to_owned()];
    if setting.webhook {
        options.extra_args.gateway = webhook_args(port);
    }
    let stack = Stack::start(&options).await.expect("stack");

    let mut latencies = Vec::with_capacity(runs);
    for run in 0..runs {
        let id = format!("wake-{run:03}");
        engineer.write(format!("requests/pending/{id}.yaml"), REQUEST);
        engineer.commit_all(&id);
        engineer.push();
        let pushed = unix_now();
        if setting.webhook {
            let answer = send_webhook(port, &format!("delivery-{run}")).await;
            assert!(
                answer.contains("202"),
                "the webhook was not taken: {answer}"
            );
        }
        let started = wait_for(
            format!("the agent of {id}"),
            Duration::from_secs(120),
            || async {
                let text = std::fs::read_to_string(&starts).ok()?;
                let line = text.lines().nth(run)?;
                line.trim().parse::<u64>().ok().map(Duration::from_nanos)
            },
        )
        .await;
        latencies.push(started.saturating_sub(pushed));
        let path = format!("results/{id}/status.json");
        wait_for(&path, Duration::from_secs(120), || async {
            let status: RequestStatus = serde_json::from_str(&remote.read(&path)?).ok()?;
            status.phase.is_final().then_some(())
        })
        .await;
        engineer.pull();
    }
    stack.shutdown().await.expect("clean shutdown");
    latencies
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::var("WARROOM_BENCH_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20)
        .max(1);
    let model = ScriptedModel::start(Script::single(vec![Turn::text("FINDING: nothing.")]))
        .await
        .expect("scripted model");
    println!("push -> agent start, {runs} requests per setting, one after another:");
    for setting in &SETTINGS {
        let mut latencies = measure(setting, runs, &model).await;
        latencies.sort();
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "  {:<24} p50 {:>7.0} ms   p99 {:>7.0} ms   min {:>6.0} ms   max {:>7.0} ms",
            setting.name,
            ms(at(0.5)),
            ms(at(0.99)),
            ms(latencies[0]),
            ms(latencies[latencies.len() - 1])
        );
    }
}
