//! How long until the last GitHub status of a 1,000-request burst is final: the real
//! publisher (`run`, with git into a bare remote as well) against the GitHub fixture server,
//! every request published as accepted and then completed on a real nats-server.
//!
//! `cargo bench -p warroom-testkit --bench github` prints the figures.
//! `WARROOM_BENCH_REQUESTS` sets the burst (default 1000); `WARROOM_BENCH_GITHUB_WPM` the
//! publisher's `--github-writes-per-minute` (default 60000: the pacing out of the way, so the
//! figure is ours; at GitHub's 80 per minute the writes alone take requests / 80 minutes).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clap::Parser as _;
use warroom_proto::{RequestPhase, RequestStatus, StatusUpdate, Subject};
use warroom_runtime::daemon::Daemon as _;
use warroom_testkit::github::{Credentials, GitHubFixture};
use warroom_testkit::{BareRemote, NatsServer, wait_until};

const TOKEN: &str = "ghp_benchtoken";

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

fn update(index: u64, phase: RequestPhase, revision: u64) -> StatusUpdate {
    let id: warroom_proto::RequestId = format!("burst-{index:04}").parse().expect("an id");
    StatusUpdate {
        status: RequestStatus {
            results_dir: warroom_proto::ResultsDir::default_for(&id),
            id,
            phase,
            clusters: BTreeMap::new(),
            error: None,
            errors: Vec::new(),
            mode: None,
            engineer: Some("bench".to_owned()),
            commit: Some(format!("{index:040x}")),
            revision,
            updated_at: warroom_proto::now(),
            verification: None,
            notices: Vec::new(),
            cancelled: None,
            synthesis: None,
            session: None,
            turns: Vec::new(),
        },
        request: None,
        reports: BTreeMap::new(),
        synthesis: None,
    }
}

#[tokio::main]
async fn main() {
    let requests = env_number("WARROOM_BENCH_REQUESTS", 1000);
    let per_minute = env_number("WARROOM_BENCH_GITHUB_WPM", 60_000);
    let nats = NatsServer::start().await;
    let remote = BareRemote::new();
    let work = tempfile::tempdir().expect("a work folder");
    let github = GitHubFixture::start(Credentials::Token(TOKEN.to_owned())).await;
    let config = warroom_publisher::Config::try_parse_from([
        "warroom-publisher".to_owned(),
        "--repo".to_owned(),
        remote.file_url(),
        "--work-dir".to_owned(),
        work.path().display().to_string(),
        "--nats-url".to_owned(),
        nats.url().to_owned(),
        "--github-api-url".to_owned(),
        github.api_url(),
        "--github-repo".to_owned(),
        "acme/warroom".to_owned(),
        "--github-token".to_owned(),
        TOKEN.to_owned(),
        "--github-writes-per-minute".to_owned(),
        per_minute.to_string(),
    ])
    .expect("the bench's arguments parse");
    let settings = config.validate().expect("a valid configuration");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let publisher = tokio::spawn(warroom_publisher::run(
        settings,
        warroom_publisher::Health::new(),
        async move {
            let _ = stopped.await;
        },
    ));
    let bus = warroom_runtime::Bus::connect(
        &warroom_runtime::Connection::plain(nats.url()),
        "github-bench",
    )
    .await
    .expect("the bench connects to NATS");

    let start = Instant::now();
    for (phase, revision) in [(RequestPhase::Accepted, 1), (RequestPhase::Completed, 2)] {
        for index in 0..requests {
            let update = update(index, phase, revision);
            let id = update.status.id.clone();
            bus.publish(
                &Subject::Status(id.clone()),
                Some(&format!("{id}-{revision}")),
                &update,
            )
            .await
            .expect("the snapshot is stored");
        }
    }
    let published = start.elapsed();
    let finals = || {
        github
            .statuses()
            .iter()
            .filter(|s| s.state == "success")
            .count() as u64
    };
    wait_until(
        "every request's final GitHub status",
        Duration::from_secs(3600),
        || async { finals() >= requests },
    )
    .await;
    let last_final = github
        .received()
        .iter()
        .filter(|r| r.body.get("state").and_then(|s| s.as_str()) == Some("success"))
        .map(|r| r.at)
        .max()
        .expect("final statuses were written");
    let statuses = github.statuses();
    let pending = statuses.iter().filter(|s| s.state == "pending").count();
    println!(
        "github burst: {requests} requests, each accepted then completed ({} snapshots)",
        2 * requests
    );
    println!("  published in {} ms", published.as_millis());
    println!(
        "  last GitHub status final after {} ms (--github-writes-per-minute {per_minute})",
        last_final.duration_since(start).as_millis()
    );
    println!(
        "  writes: {} ({pending} pending, {} final); {} snapshots coalesced away",
        statuses.len(),
        statuses.len() - pending,
        2 * requests as usize - statuses.len()
    );
    println!(
        "  at GitHub's 80 writes per minute the same {} writes take at least {:.1} min",
        statuses.len(),
        statuses.len() as f64 / 80.0
    );
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(60), publisher).await;
}
