//! The publisher's GitHub surface against a fixture GitHub REST API: status snapshots are
//! published on a real nats-server the way the gateway and the dispatcher send them, the
//! real publisher `run`s (writing git into a bare remote as well), and the test reads what
//! the fixture received.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Parser as _;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use warroom_proto::{
    ClusterPhase, ClusterStatus, ClusterType, RequestPhase, RequestStatus, StatusUpdate, Subject,
    names,
};
use warroom_publisher::{Config, Health};
use warroom_runtime::Bus;
use warroom_runtime::daemon::Daemon as _;
use warroom_testkit::github::{Credentials, GitHubFixture};
use warroom_testkit::{BareRemote, DEFAULT_TIMEOUT, NatsServer, wait_until};

const TOKEN: &str = "ghp_fixturetoken";
const APP_ID: u64 = 4242;
const INSTALLATION: u64 = 77;
const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

/// NATS, a bare remote, the GitHub fixture and a publisher showing on it.
struct Stack {
    nats: NatsServer,
    remote: BareRemote,
    dir: tempfile::TempDir,
    github: GitHubFixture,
    args: Vec<String>,
    bus: Bus,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<warroom_publisher::Result<()>>>,
}

impl Stack {
    /// A stack whose publisher authenticates with a token (commit statuses).
    async fn token(extra: &[&str]) -> Stack {
        let github = GitHubFixture::start(Credentials::Token(TOKEN.to_owned())).await;
        let mut args = vec!["--github-token".to_owned(), TOKEN.to_owned()];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        Stack::start(github, args).await
    }

    /// A stack whose publisher is a GitHub App (check runs).
    async fn app(extra: &[&str]) -> Stack {
        let github = GitHubFixture::start(Credentials::App {
            app_id: APP_ID,
            installation: INSTALLATION,
        })
        .await;
        let dir = tempfile::tempdir().expect("a temporary folder");
        let key = app_key(dir.path());
        let mut args = vec![
            "--github-app-id".to_owned(),
            APP_ID.to_string(),
            "--github-app-installation-id".to_owned(),
            INSTALLATION.to_string(),
            "--github-app-key-file".to_owned(),
            key.display().to_string(),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let mut stack = Stack::start(github, args).await;
        // The key's folder lives as long as the stack.
        stack.dir = dir;
        stack
    }

    async fn start(github: GitHubFixture, args: Vec<String>) -> Stack {
        let nats = NatsServer::start().await;
        let bus = Bus::connect(
            &warroom_runtime::Connection::plain(nats.url()),
            "github-test",
        )
        .await
        .expect("the test connects to NATS");
        let mut stack = Stack {
            nats,
            remote: BareRemote::new(),
            dir: tempfile::tempdir().expect("a temporary folder"),
            github,
            args,
            bus,
            stop: None,
            task: None,
        };
        stack.spawn();
        stack
    }

    fn spawn(&mut self) {
        let mut args = vec![
            "warroom-publisher".to_owned(),
            "--repo".to_owned(),
            self.remote.file_url(),
            "--work-dir".to_owned(),
            self.dir.path().join("clone").display().to_string(),
            "--nats-url".to_owned(),
            self.nats.url().to_owned(),
            "--batch-window".to_owned(),
            "50ms".to_owned(),
            "--github-api-url".to_owned(),
            self.github.api_url(),
            "--github-repo".to_owned(),
            "acme/warroom".to_owned(),
            "--github-web-url".to_owned(),
            "https://github.example".to_owned(),
        ];
        args.extend(self.args.iter().cloned());
        let config = Config::try_parse_from(args).expect("the test's arguments parse");
        let settings = config
            .validate()
            .expect("the test's configuration is valid");
        let (stop, stopped) = oneshot::channel::<()>();
        self.task = Some(tokio::spawn(warroom_publisher::run(
            settings,
            Health::new(),
            async move {
                let _ = stopped.await;
            },
        )));
        self.stop = Some(stop);
    }

    /// Stops the publisher and waits for it to end cleanly.
    async fn halt(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().expect("the publisher is running");
        tokio::time::timeout(DEFAULT_TIMEOUT, task)
            .await
            .expect("the publisher stops within the deadline")
            .expect("the publisher task did not panic")
            .expect("the publisher ends without an error");
    }

    async fn status(&self, update: &StatusUpdate) {
        let id = &update.status.id;
        let dedup = format!("{id}-{}", update.status.revision);
        self.bus
            .publish(&Subject::Status(id.clone()), Some(&dedup), update)
            .await
            .expect("the status update is stored");
    }

    /// Waits until the commit status `claude-warroom/<id>` has had `count` states.
    async fn wait_statuses(&self, id: &str, count: usize) -> Vec<String> {
        let context = format!("claude-warroom/{id}");
        wait_until(
            format!("{count} states of {context}"),
            DEFAULT_TIMEOUT,
            || async { self.github.status_states(&context).len() >= count },
        )
        .await;
        self.github.status_states(&context)
    }

    /// Waits until the check run of `id` has had `count` states.
    async fn wait_check_run(&self, id: &str, count: usize) -> Vec<(String, Option<String>)> {
        let name = format!("claude-warroom/{id}");
        let states = || {
            self.github
                .check_runs()
                .into_iter()
                .filter(|run| run.name == name)
                .flat_map(|run| run.states)
                .collect::<Vec<_>>()
        };
        wait_until(
            format!("{count} states of the check run {name}"),
            DEFAULT_TIMEOUT,
            || async { states().len() >= count },
        )
        .await;
        states()
    }
}

/// A 2048-bit RSA key in the PEM form GitHub gives an App (`BEGIN RSA PRIVATE KEY`).
fn app_key(dir: &std::path::Path) -> PathBuf {
    let key = dir.join("app.pem");
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "rsa", "-b", "2048", "-m", "PEM", "-N", "", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen runs");
    assert!(status.success(), "ssh-keygen made the App key");
    key
}

fn update(
    id: &str,
    phase: RequestPhase,
    revision: u64,
    clusters: &[(&str, ClusterPhase)],
) -> StatusUpdate {
    let id: warroom_proto::RequestId = id.parse().expect("a valid request id");
    let clusters = clusters
        .iter()
        .map(|(name, phase)| {
            let mut line = ClusterStatus::new(ClusterType::Hosted, *phase);
            if phase.is_final() {
                line.duration_secs = Some(83.0);
                line.cost_usd = Some(0.0421);
            }
            (name.parse().expect("a valid cluster name"), line)
        })
        .collect::<BTreeMap<_, _>>();
    StatusUpdate {
        status: RequestStatus {
            results_dir: warroom_proto::ResultsDir::default_for(&id),
            id,
            phase,
            clusters,
            error: phase
                .is_final()
                .then(|| format!("the request ended {phase}"))
                .filter(|_| phase != RequestPhase::Completed),
            errors: Vec::new(),
            mode: None,
            engineer: Some("alice".to_owned()),
            commit: Some(SHA.to_owned()),
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

#[tokio::test]
async fn a_token_shows_one_commit_status_per_request_through_its_phases() {
    let stack = Stack::token(&[]).await;
    let both = [
        ("hub", ClusterPhase::Running),
        ("edge", ClusterPhase::Dispatched),
    ];
    stack
        .status(&update("done-1", RequestPhase::Accepted, 1, &[]))
        .await;
    assert_eq!(stack.wait_statuses("done-1", 1).await, ["pending"]);
    stack
        .status(&update("done-1", RequestPhase::Running, 2, &both))
        .await;
    assert_eq!(
        stack.wait_statuses("done-1", 2).await,
        ["pending", "pending"]
    );
    let done = [
        ("hub", ClusterPhase::Completed),
        ("edge", ClusterPhase::Completed),
    ];
    stack
        .status(&update("done-1", RequestPhase::Completed, 3, &done))
        .await;
    assert_eq!(
        stack.wait_statuses("done-1", 3).await,
        ["pending", "pending", "success"]
    );

    let statuses = stack.github.statuses();
    // One context for the request, never one per cluster; all on the request's commit.
    assert!(
        statuses
            .iter()
            .all(|s| s.context == "claude-warroom/done-1" && s.sha == SHA)
    );
    assert_eq!(
        statuses[1].description,
        "running: edge dispatched, hub running"
    );
    assert_eq!(
        statuses[2].description,
        "completed: edge completed, hub completed"
    );
    assert_eq!(
        statuses[2].target_url,
        "https://github.example/acme/warroom/blob/main/results/done-1/README.md"
    );
    let received = stack.github.received();
    assert!(
        received
            .iter()
            .all(|r| r.authorization.as_deref() == Some(&format!("Bearer {TOKEN}"))),
        "every request carries the token"
    );
}

#[tokio::test]
async fn failed_and_rejected_requests_end_in_failure_never_success() {
    let stack = Stack::token(&[]).await;
    stack
        .status(&update(
            "bad-1",
            RequestPhase::Running,
            1,
            &[("hub", ClusterPhase::Running)],
        ))
        .await;
    stack.wait_statuses("bad-1", 1).await;
    stack
        .status(&update(
            "bad-1",
            RequestPhase::Failed,
            2,
            &[("hub", ClusterPhase::Failed)],
        ))
        .await;
    stack
        .status(&update("refused-1", RequestPhase::Rejected, 1, &[]))
        .await;
    assert_eq!(
        stack.wait_statuses("bad-1", 2).await,
        ["pending", "failure"]
    );
    assert_eq!(stack.wait_statuses("refused-1", 1).await, ["failure"]);
    let refused = stack
        .github
        .statuses()
        .into_iter()
        .find(|s| s.context == "claude-warroom/refused-1")
        .expect("the rejection is shown");
    assert_eq!(refused.description, "rejected: the request ended rejected");
    assert!(
        stack.github.statuses().iter().all(|s| s.state != "success"),
        "no success for a failed or rejected request"
    );
}

#[tokio::test]
async fn a_github_app_keeps_one_check_run_and_one_comment_per_request() {
    let stack = Stack::app(&["--github-comment"]).await;
    stack
        .status(&update("app-1", RequestPhase::Accepted, 1, &[]))
        .await;
    stack.wait_check_run("app-1", 1).await;
    stack
        .status(&update(
            "app-1",
            RequestPhase::Running,
            2,
            &[("hub", ClusterPhase::Running)],
        ))
        .await;
    stack.wait_check_run("app-1", 2).await;
    stack
        .status(&update(
            "app-1",
            RequestPhase::Completed,
            3,
            &[("hub", ClusterPhase::Completed)],
        ))
        .await;
    let states = stack.wait_check_run("app-1", 3).await;
    assert_eq!(
        states,
        [
            ("queued".to_owned(), None),
            ("in_progress".to_owned(), None),
            ("completed".to_owned(), Some("success".to_owned())),
        ]
    );
    let runs = stack.github.check_runs();
    assert_eq!(runs.len(), 1, "one check run, edited in place: {runs:?}");
    assert_eq!(runs[0].sha, SHA);
    assert!(
        runs[0]
            .summary
            .contains("| hub | completed | 1m 23s | $0.04 |"),
        "{}",
        runs[0].summary
    );
    assert_eq!(
        runs[0].details_url,
        "https://github.example/acme/warroom/blob/main/results/app-1/README.md"
    );
    wait_until("the comment's final state", DEFAULT_TIMEOUT, || async {
        stack
            .github
            .comments()
            .iter()
            .any(|c| c.bodies.last().is_some_and(|b| b.contains("**completed**")))
    })
    .await;
    let comments = stack.github.comments();
    assert_eq!(comments.len(), 1, "one comment, edited in place");
    assert!(comments[0].bodies.len() >= 2, "{comments:?}");
    // The App exchanged its JWT for an installation token, and used only that token.
    assert!(stack.github.tokens_issued() >= 1);
    let repo_calls: Vec<_> = stack
        .github
        .received()
        .into_iter()
        .filter(|r| r.path.starts_with("/repos/"))
        .collect();
    assert!(
        repo_calls
            .iter()
            .all(|r| r.authorization.as_deref() == Some("Bearer ghs_fixture1"))
    );

    stack
        .status(&update(
            "app-2",
            RequestPhase::TimedOut,
            1,
            &[("hub", ClusterPhase::TimedOut)],
        ))
        .await;
    assert_eq!(
        stack.wait_check_run("app-2", 1).await,
        [("completed".to_owned(), Some("failure".to_owned()))]
    );
    // Failed and rejected end in failure on the App path too, never success.
    stack
        .status(&update(
            "app-3",
            RequestPhase::Failed,
            1,
            &[("hub", ClusterPhase::Failed)],
        ))
        .await;
    stack
        .status(&update("app-4", RequestPhase::Rejected, 1, &[]))
        .await;
    for id in ["app-3", "app-4"] {
        assert_eq!(
            stack.wait_check_run(id, 1).await,
            [("completed".to_owned(), Some("failure".to_owned()))],
            "{id}"
        );
    }
}

#[tokio::test]
async fn a_502_and_a_rate_limit_are_retried_until_the_final_state_lands() {
    let stack = Stack::token(&[]).await;
    fail_with_a_502_then_a_rate_limit(&stack);
    stack
        .status(&update(
            "flaky-1",
            RequestPhase::Completed,
            2,
            &[("hub", ClusterPhase::Completed)],
        ))
        .await;
    assert_eq!(stack.wait_statuses("flaky-1", 1).await, ["success"]);
    let answers: Vec<u16> = stack
        .github
        .received()
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.answered)
        .collect();
    assert_eq!(answers, [502, 403, 201]);
    let received = stack.github.received();
    let limited = received[1].at;
    let landed = received[2].at;
    assert!(
        landed.duration_since(limited) >= std::time::Duration::from_secs(1),
        "the write waited out Retry-After"
    );
}

/// The next two writes to GitHub fail: a 502, then a secondary rate limit with
/// `Retry-After: 1`.
fn fail_with_a_502_then_a_rate_limit(stack: &Stack) {
    stack.github.fail_next_writes(1, 502, &[]);
    stack.github.fail_next_writes(
        1,
        403,
        &[("retry-after", "1"), ("x-ratelimit-remaining", "0")],
    );
}

/// The same on the App path: the check run's writes are retried through a 502 and a rate
/// limit, and the final conclusion lands.
#[tokio::test]
async fn a_github_app_retries_a_502_and_a_rate_limit_until_the_conclusion_lands() {
    let stack = Stack::app(&[]).await;
    fail_with_a_502_then_a_rate_limit(&stack);
    stack
        .status(&update(
            "flaky-app-1",
            RequestPhase::Failed,
            2,
            &[("hub", ClusterPhase::Failed)],
        ))
        .await;
    assert_eq!(
        stack.wait_check_run("flaky-app-1", 1).await,
        [("completed".to_owned(), Some("failure".to_owned()))]
    );
    let writes: Vec<u16> = stack
        .github
        .received()
        .iter()
        .filter(|r| r.path.starts_with("/repos/") && r.method == "POST")
        .map(|r| r.answered)
        .collect();
    assert_eq!(writes.first(), Some(&502), "{writes:?}");
    assert_eq!(writes.get(1), Some(&403), "{writes:?}");
    assert_eq!(stack.github.check_runs().len(), 1, "one check run");
}

#[tokio::test]
async fn a_restart_mid_request_keeps_the_same_check_run_and_comment() {
    let mut stack = Stack::app(&["--github-comment"]).await;
    stack
        .status(&update(
            "long-1",
            RequestPhase::Running,
            1,
            &[("hub", ClusterPhase::Running)],
        ))
        .await;
    stack.wait_check_run("long-1", 1).await;
    wait_until("the first comment", DEFAULT_TIMEOUT, || async {
        stack.github.comments().len() == 1
    })
    .await;
    stack.halt().await;

    // The same snapshot again (a redelivery), then the final one, to a new publisher.
    stack.spawn();
    stack
        .status(&update(
            "long-1",
            RequestPhase::Running,
            1,
            &[("hub", ClusterPhase::Running)],
        ))
        .await;
    stack
        .status(&update(
            "long-1",
            RequestPhase::Completed,
            2,
            &[("hub", ClusterPhase::Completed)],
        ))
        .await;
    let states = stack.wait_check_run("long-1", 2).await;
    assert_eq!(
        states.last().map(|s| s.1.clone()),
        Some(Some("success".to_owned()))
    );
    assert_eq!(stack.github.check_runs().len(), 1, "no second check run");
    wait_until("the comment's final state", DEFAULT_TIMEOUT, || async {
        stack
            .github
            .comments()
            .iter()
            .any(|c| c.bodies.last().is_some_and(|b| b.contains("**completed**")))
    })
    .await;
    assert_eq!(stack.github.comments().len(), 1, "no second comment");
    assert_eq!(
        states.len(),
        2,
        "the redelivered snapshot was not shown again: {states:?}"
    );
    stack.halt().await;
}

#[tokio::test]
async fn a_crash_between_creating_and_recording_finds_the_check_run_again() {
    let mut stack = Stack::app(&[]).await;
    stack
        .status(&update(
            "crash-1",
            RequestPhase::Running,
            1,
            &[("hub", ClusterPhase::Running)],
        ))
        .await;
    stack.wait_check_run("crash-1", 1).await;
    stack.halt().await;
    // As if the publisher had died after creating the check run but before recording its id.
    let js = stack.nats.jetstream().await;
    let records = js
        .get_key_value(names::SURFACES_BUCKET)
        .await
        .expect("the surfaces' bucket");
    records
        .put(
            "github.crash-1",
            br#"{"revision":0,"handles":{"check_run":"creating"}}"#
                .to_vec()
                .into(),
        )
        .await
        .expect("the record is rewritten");

    stack.spawn();
    stack
        .status(&update(
            "crash-1",
            RequestPhase::Failed,
            2,
            &[("hub", ClusterPhase::Failed)],
        ))
        .await;
    let states = stack.wait_check_run("crash-1", 2).await;
    assert_eq!(
        states[1],
        ("completed".to_owned(), Some("failure".to_owned()))
    );
    assert_eq!(
        stack.github.check_runs().len(),
        1,
        "found again, not created twice"
    );
    assert!(
        stack
            .github
            .received()
            .iter()
            .any(|r| r.method == "GET" && r.path.contains("check_name=claude-warroom%2Fcrash-1")),
        "the check run was looked up by name"
    );
    stack.halt().await;
}
