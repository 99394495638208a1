//! How long a request takes from `git push` to its final `status.json` on the remote, through
//! the whole product: real nats-server, real git, the real Claude Code CLI against the scripted
//! model (one Bash call, then the final text), every daemon in one process.
//!
//! `cargo bench -p warroom-testkit --bench pipeline` prints the figures; `WARROOM_BENCH_RUNS`
//! sets how many requests are pushed one after another (default 10). The gateway polls every
//! 200 ms and the publisher batches for 50 ms here, so those two set a floor of about 250 ms.

use std::time::{Duration, Instant};

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
    description: latency of one request through the whole product
  investigation:
    prompt: Say what you see.
    allowedTools: [bash]
    timeout: 300
";

#[tokio::main]
async fn main() {
    let runs: usize = std::env::var("WARROOM_BENCH_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10);
    let state = tempfile::tempdir().expect("state folder");
    let remote = BareRemote::new();
    let engineer = remote.work_clone();
    let nats = NatsServer::start().await;
    let model = ScriptedModel::start(Script::single(vec![
        Turn::bash("echo bench"),
        Turn::text("FINDING: nothing."),
    ]))
    .await
    .expect("scripted model");

    let mut options = StackOptions::new(remote.url(), &["bench-cluster"], state.path());
    options.nats_url = Some(nats.url().to_owned());
    options.claude_bin = tools::claude();
    options.poll_interval = "200ms".to_owned();
    options.model = Model::At {
        base_url: model.base_url(),
    };
    options.extra_args.publisher = vec!["--batch-window".to_owned(), "50ms".to_owned()];
    let stack = Stack::start(&options).await.expect("stack");

    let mut latencies = Vec::with_capacity(runs);
    for run in 0..runs {
        let id = format!("bench-{run:03}");
        engineer.write(format!("requests/pending/{id}.yaml"), REQUEST);
        engineer.commit_all(&id);
        let pushed = Instant::now();
        engineer.push();
        let path = format!("results/{id}/status.json");
        wait_for(&path, Duration::from_secs(120), || async {
            let status: RequestStatus = serde_json::from_str(&remote.read(&path)?).ok()?;
            status.phase.is_final().then_some(())
        })
        .await;
        latencies.push(pushed.elapsed());
        engineer.pull();
    }
    stack.shutdown().await.expect("clean shutdown");

    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("push -> final status.json on the remote, {runs} requests one after another:");
    println!(
        "  min {:.0} ms   p50 {:.0} ms   p90 {:.0} ms   max {:.0} ms",
        ms(latencies[0]),
        ms(at(0.5)),
        ms(at(0.9)),
        ms(latencies[latencies.len() - 1])
    );
}
