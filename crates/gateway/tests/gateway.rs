//! The gateway against a real nats-server and a real bare git remote: what an engineer's
//! push turns into on NATS, across restarts.

use std::time::Duration;

use clap::Parser as _;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use warroom_gateway::Config;
use warroom_proto::names;
use warroom_proto::wire::{AcceptedRequest, StatusUpdate};
use warroom_proto::{
    FieldError, RequestId, RequestPhase, RequestStatus, ResultsDir, Stream, Subject,
};
use warroom_runtime::Health;
use warroom_testkit::{BareRemote, DEFAULT_TIMEOUT, NatsServer, WorkClone, wait_for, wait_until};

const VALID: &str = r#"apiVersion: warroom.intility.io/v1
kind: TroubleshootingRequest
metadata:
  name: etcd-latency
  timestamp: "2026-11-23T10:00:00Z"
  engineer: alice
spec:
  targetCluster:
    type: hosted
    name: prod-cluster-1
  issue:
    category: etcd
    description: etcd latency above 500ms
  investigation:
    prompt: Check etcd health.
    allowedTools: [bash, read]
    timeout: 600
"#;

/// The valid request with a field error in `spec.investigation.timeout` and a missing
/// `metadata.engineer`.
fn invalid() -> String {
    VALID
        .replace("timeout: 600", "timeout: 5")
        .replace("  engineer: alice\n", "")
}

/// A request id for a test; the ids used here are all valid.
fn id(id: &str) -> RequestId {
    id.parse()
        .unwrap_or_else(|e| panic!("the test's request id: {e}"))
}

/// A nats-server, a git remote with a working clone, and a gateway that can be stopped
/// and started again against both.
struct Stack {
    nats: NatsServer,
    remote: BareRemote,
    clone: WorkClone,
    work_dir: tempfile::TempDir,
    extra_args: Vec<String>,
    running: Option<Running>,
}

struct Running {
    health: Health,
    stop: oneshot::Sender<()>,
    task: JoinHandle<warroom_gateway::Result<()>>,
}

impl Stack {
    async fn new(extra_args: &[&str]) -> Self {
        let remote = BareRemote::new();
        Stack {
            nats: NatsServer::start().await,
            clone: remote.work_clone(),
            remote,
            work_dir: tempfile::tempdir().expect("a temporary work directory"),
            extra_args: extra_args.iter().map(|s| (*s).to_owned()).collect(),
            running: None,
        }
    }

    fn start(&mut self) -> Health {
        assert!(self.running.is_none(), "the gateway is already running");
        let mut args = vec![
            "warroom-gateway".to_owned(),
            "--repo".to_owned(),
            self.remote.file_url(),
            "--poll-interval".to_owned(),
            "100ms".to_owned(),
            "--work-dir".to_owned(),
            self.work_dir.path().join("mirror").display().to_string(),
            "--nats-url".to_owned(),
            self.nats.url().to_owned(),
        ];
        args.extend(self.extra_args.iter().cloned());
        let config = Config::try_parse_from(args).expect("the test's arguments parse");
        let health = Health::new("gateway");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(warroom_gateway::run_with_health(
            config,
            health.clone(),
            async move {
                let _ = stopped.await;
            },
        ));
        self.running = Some(Running {
            health: health.clone(),
            stop,
            task,
        });
        health
    }

    async fn stop(&mut self) {
        let running = self.running.take().expect("the gateway is running");
        let _ = running.stop.send(());
        let result = tokio::time::timeout(DEFAULT_TIMEOUT, running.task)
            .await
            .expect("the gateway stops within the deadline")
            .expect("the gateway task did not panic");
        result.expect("the gateway ends without an error");
    }

    fn health(&self) -> &Health {
        &self
            .running
            .as_ref()
            .expect("the gateway is running")
            .health
    }

    /// Writes `files` in the working clone, commits them in one commit, and pushes.
    fn push(&self, files: &[(&str, &str)]) -> String {
        for (path, contents) in files {
            self.clone.write(path, contents);
        }
        let commit = self.clone.commit_all("add requests");
        self.clone.push();
        commit
    }

    async fn stream(&self, stream: Stream) -> async_nats::jetstream::stream::Stream {
        let js = self.nats.jetstream().await;
        wait_for(format!("stream {stream} exists"), DEFAULT_TIMEOUT, || {
            let js = js.clone();
            async move { js.get_stream(stream.name()).await.ok() }
        })
        .await
    }

    /// Every message in `stream`, as (subject, payload). A subject that is not one of ours
    /// fails the test: the gateway builds every subject with [`Subject`].
    async fn messages(&self, stream: Stream) -> Vec<(Subject, Vec<u8>)> {
        let mut handle = self.stream(stream).await;
        let state = handle.info().await.expect("stream info").state.clone();
        let mut out = Vec::new();
        if state.messages == 0 {
            return out;
        }
        for sequence in state.first_sequence..=state.last_sequence {
            if let Ok(message) = handle.get_raw_message(sequence).await {
                let subject = Subject::parse(message.subject.as_str())
                    .unwrap_or_else(|e| panic!("in {stream}: {e}"));
                out.push((subject, message.payload.to_vec()));
            }
        }
        out
    }

    /// The subjects of every message in `stream`, in order.
    async fn subjects(&self, stream: Stream) -> Vec<Subject> {
        let messages = self.messages(stream).await;
        messages.into_iter().map(|(subject, _)| subject).collect()
    }

    async fn message_count(&self, stream: Stream) -> u64 {
        let mut handle = self.stream(stream).await;
        handle.info().await.expect("stream info").state.messages
    }

    /// Waits for the last message on `subject` (in the stream that stores it) and decodes it.
    async fn wait_message<T: serde::de::DeserializeOwned>(&self, subject: &Subject) -> T {
        let stream = self.stream(subject.stream()).await;
        let subject = subject.to_string();
        let message = wait_for(format!("a message on {subject}"), DEFAULT_TIMEOUT, || {
            let stream = stream.clone();
            let subject = subject.clone();
            async move { stream.get_last_raw_message_by_subject(&subject).await.ok() }
        })
        .await;
        serde_json::from_slice(&message.payload).expect("the message decodes")
    }

    async fn wait_accepted(&self, request: &str) -> AcceptedRequest {
        self.wait_message(&Subject::Request(id(request))).await
    }

    async fn wait_status(&self, request: &str) -> StatusUpdate {
        self.wait_message(&Subject::Status(id(request))).await
    }

    /// The cursor the gateway keeps in NATS, once it equals `commit`.
    async fn wait_cursor(&self, commit: &str) {
        let js = self.nats.jetstream().await;
        wait_until(format!("the cursor reaches {commit}"), DEFAULT_TIMEOUT, || {
            let js = js.clone();
            async move {
                let Ok(kv) = js.get_key_value(names::GATEWAY_BUCKET).await else {
                    return false;
                };
                matches!(kv.get("cursor-main").await, Ok(Some(v)) if v.as_ref() == commit.as_bytes())
            }
        })
        .await;
    }

    /// Waits until the running gateway completed `n` more polls than it had so far.
    async fn wait_polls(&self, n: u64) {
        let health = self.health().clone();
        let target = health.metrics.get("polls") + n;
        wait_until(format!("{n} more polls"), DEFAULT_TIMEOUT, || {
            let health = health.clone();
            async move { health.metrics.get("polls") >= target }
        })
        .await;
    }
}

fn has_error(errors: &[FieldError], field: &str) -> bool {
    errors.iter().any(|e| e.field == field)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_push_publishes_the_valid_request_and_rejects_the_invalid_ones() {
    let mut stack = Stack::new(&[]).await;
    let health = stack.start();
    stack.wait_cursor(&stack.remote.head()).await;

    let commit = stack.push(&[
        ("requests/pending/r-valid.yaml", VALID),
        ("requests/pending/r-bad.yaml", &invalid()),
        ("requests/pending/my request.yaml", VALID),
        ("requests/pending/notes.txt", "not a request"),
        ("requests/pending/sub/r-nested.yaml", VALID),
    ]);

    let accepted = stack.wait_accepted("r-valid").await;
    assert_eq!(accepted.id, "r-valid");
    assert_eq!(accepted.commit, commit);
    assert_eq!(accepted.results_dir, "results/r-valid");
    assert_eq!(accepted.request.metadata.engineer, "alice");

    let rejected = stack.wait_status("r-bad").await;
    let status = rejected.status;
    assert_eq!(status.id, "r-bad");
    assert_eq!(status.phase, RequestPhase::Rejected);
    assert_eq!(status.results_dir, "results/r-bad");
    assert_eq!(status.revision, 1);
    assert!(
        has_error(&status.errors, "spec.investigation.timeout"),
        "{:?}",
        status.errors
    );
    assert!(
        has_error(&status.errors, "metadata.engineer"),
        "{:?}",
        status.errors
    );
    let error = status.error.expect("a rejection carries a summary");
    assert!(error.contains("requests/pending/r-bad.yaml"), "{error}");

    stack.wait_cursor(&commit).await;
    // The file whose name is not a request id is rejected under a sanitized id.
    let events = stack.messages(Stream::Events).await;
    let subjects: Vec<&Subject> = events.iter().map(|(s, _)| s).collect();
    assert_eq!(events.len(), 2, "{subjects:?}");
    let (subject, payload) = events
        .iter()
        .find(|(s, _)| matches!(s, Subject::Status(request) if request.starts_with("my-request-")))
        .unwrap_or_else(|| panic!("no rejection for `my request.yaml` in {subjects:?}"));
    let update: StatusUpdate = serde_json::from_slice(payload).unwrap();
    assert_eq!(*subject, Subject::Status(update.status.id.clone()));
    assert_eq!(
        update.status.results_dir,
        ResultsDir::default_for(&update.status.id)
    );
    assert!(
        update
            .status
            .errors
            .iter()
            .any(|e| e.message.contains("my request"))
    );

    // Only the valid request reached the dispatcher's stream; the text file and the file in
    // a subfolder were ignored.
    assert_eq!(stack.message_count(Stream::Requests).await, 1);
    assert_eq!(health.metrics.get("requests_accepted"), 1);
    assert_eq!(health.metrics.get("requests_rejected"), 2);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_neither_reruns_nor_skips_requests() {
    let mut stack = Stack::new(&[]).await;
    stack.start();
    let first = stack.push(&[("requests/pending/r1.yaml", VALID)]);
    stack.wait_accepted("r1").await;
    stack.wait_cursor(&first).await;
    stack.stop().await;

    // Pushed while the gateway is down: picked up after the restart.
    let while_down = stack.push(&[("requests/pending/r2.yaml", VALID)]);
    let health = stack.start();
    let r2 = stack.wait_accepted("r2").await;
    assert_eq!(r2.commit, while_down);
    stack.wait_cursor(&while_down).await;

    // Pushed after the restart: published too.
    let after = stack.push(&[("requests/pending/r3.yaml", VALID)]);
    stack.wait_accepted("r3").await;
    stack.wait_cursor(&after).await;
    stack.wait_polls(3).await;

    // r1 was not published again: the restarted gateway published two requests (a repeat
    // of r1 would be dropped by the stream's deduplication, so count at the source too),
    // and the stream holds exactly one message per request.
    assert_eq!(health.metrics.get("requests_accepted"), 2);
    assert_eq!(
        stack.subjects(Stream::Requests).await,
        ["r1", "r2", "r3"].map(|r| Subject::Request(id(r)))
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_head_check_fetches_only_when_the_head_moved() {
    let mut stack = Stack::new(&[]).await;
    let health = stack.start();
    stack.wait_cursor(&stack.remote.head()).await;
    let fetches = health.metrics.get("fetches");
    assert_eq!(fetches, 1, "the first poll fetches once");
    assert!(health.is_ready());

    stack.wait_polls(5).await;
    assert_eq!(health.metrics.get("fetches"), fetches);

    let commit = stack.push(&[("requests/pending/r1.yaml", VALID)]);
    stack.wait_cursor(&commit).await;
    assert_eq!(health.metrics.get("fetches"), fetches + 1);
    stack.stop().await;
}

/// What someone who can push but is not the publisher might commit to claim that request
/// `request` already ran: a finished status with a revision far above any real one.
fn planted_status(request: &str) -> String {
    let request = id(request);
    let status = RequestStatus {
        results_dir: ResultsDir::default_for(&request),
        id: request,
        phase: RequestPhase::Completed,
        clusters: Default::default(),
        error: None,
        errors: Vec::new(),
        mode: None,
        engineer: Some("mallory".to_owned()),
        revision: 1_000_000,
        updated_at: warroom_proto::now(),
    };
    serde_json::to_string_pretty(&status).expect("a status encodes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_status_does_not_stop_a_request_pushed_after_it() {
    let mut stack = Stack::new(&[]).await;
    let health = stack.start();
    stack.wait_cursor(&stack.remote.head()).await;

    // Someone else, from a clone of their own, plants a finished status for the id an
    // engineer is about to use.
    let someone = stack.remote.work_clone();
    someone.write("results/r-planted/status.json", planted_status("r-planted"));
    someone.git(["add", "--all"]);
    someone.git([
        "commit",
        "--quiet",
        "--author",
        "Someone <someone@example.invalid>",
        "--message",
        "results for r-planted",
    ]);
    someone.push();
    let planted = someone.head();
    stack.wait_cursor(&planted).await;

    // The engineer pushes the request on top of it.
    stack.clone.pull();
    let commit = stack.push(&[("requests/pending/r-planted.yaml", VALID)]);
    let accepted = stack.wait_accepted("r-planted").await;
    assert_eq!(accepted.commit, commit);
    assert_eq!(accepted.results_dir, "results/r-planted");
    stack.wait_cursor(&commit).await;
    assert_eq!(health.metrics.get("requests_accepted"), 1);
    assert_eq!(
        stack.subjects(Stream::Requests).await,
        [Subject::Request(id("r-planted"))]
    );
    // Nor was anything said about it on its behalf: no rejection, no status.
    assert_eq!(stack.message_count(Stream::Events).await, 0);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_start_publishes_every_pending_request_whatever_results_say() {
    let mut stack = Stack::new(&[]).await;
    let head = stack.push(&[
        ("requests/pending/r-planted.yaml", VALID),
        (
            "results/r-planted/status.json",
            &planted_status("r-planted"),
        ),
        ("requests/pending/r-new.yaml", VALID),
    ]);
    stack.start();
    stack.wait_cursor(&head).await;
    assert_eq!(
        stack.subjects(Stream::Requests).await,
        ["r-new", "r-planted"].map(|r| Subject::Request(id(r)))
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_must_end_in_the_request_id() {
    let mut stack = Stack::new(&[]).await;
    stack.start();
    let with_destination =
        |destination: &str| format!("{VALID}  output:\n    destination: {destination}\n");
    let head = stack.push(&[
        (
            "requests/pending/r-other.yaml",
            &with_destination("results/r-victim/"),
        ),
        (
            "requests/pending/r-team.yaml",
            &with_destination("results/team-a/r-team/"),
        ),
    ]);
    let update = stack.wait_status("r-other").await;
    assert_eq!(update.status.phase, RequestPhase::Rejected);
    assert!(
        has_error(&update.status.errors, "spec.output.destination"),
        "{:?}",
        update.status.errors
    );
    assert_eq!(update.status.results_dir, "results/r-other");
    let accepted = stack.wait_accepted("r-team").await;
    assert_eq!(accepted.results_dir, "results/team-a/r-team");
    stack.wait_cursor(&head).await;
    assert_eq!(
        stack.subjects(Stream::Requests).await,
        [Subject::Request(id("r-team"))]
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_force_push_past_the_cursor_rescans_the_head() {
    let mut stack = Stack::new(&[]).await;
    stack.start();
    let first = stack.push(&[("requests/pending/r1.yaml", VALID)]);
    stack.wait_accepted("r1").await;
    stack.wait_cursor(&first).await;

    // Rewrite history: drop the commit that added r1 and add r2 instead.
    stack.clone.git(["reset", "--hard", "HEAD~1"]);
    stack.clone.write("requests/pending/r2.yaml", VALID);
    let rewritten = stack.clone.commit_all("add r2 on rewritten history");
    stack
        .clone
        .git(["push", "--quiet", "--force", "origin", "HEAD"]);

    stack.wait_accepted("r2").await;
    stack.wait_cursor(&rewritten).await;
    assert_eq!(stack.message_count(Stream::Requests).await, 2);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_for_clusters_outside_the_policy_are_rejected() {
    let mut stack = Stack::new(&["--allowed-clusters", "production-hub"]).await;
    stack.start();
    let head = stack.push(&[
        ("requests/pending/r-denied.yaml", VALID),
        (
            "requests/pending/r-allowed.yaml",
            &VALID.replace("prod-cluster-1", "production-hub"),
        ),
    ]);
    let update = stack.wait_status("r-denied").await;
    assert_eq!(update.status.phase, RequestPhase::Rejected);
    assert!(
        has_error(&update.status.errors, "spec.targetCluster.name"),
        "{:?}",
        update.status.errors
    );
    assert_eq!(update.status.engineer.as_deref(), Some("alice"));
    stack.wait_accepted("r-allowed").await;
    stack.wait_cursor(&head).await;
    assert_eq!(stack.message_count(Stream::Requests).await, 1);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_configuration_fails_before_any_io() {
    let config = Config::try_parse_from([
        "warroom-gateway",
        "--repo",
        "https://user:token@example.com/org/repo.git",
        // Nothing listens here: the error must come from validation, not from connecting.
        "--nats-url",
        "nats://127.0.0.1:1",
    ])
    .unwrap();
    let result = tokio::time::timeout(
        Duration::from_secs(5),
        warroom_gateway::run(config, std::future::pending()),
    )
    .await
    .expect("validation does not wait for NATS");
    let error = result.expect_err("credentials in the URL are refused");
    assert!(error.to_string().contains("WARROOM_GIT_TOKEN"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_files_and_session_requests_are_rejected_without_blocking_others() {
    let mut stack = Stack::new(&[]).await;
    stack.start();
    let huge = format!("{VALID}# {}\n", "x".repeat(70 * 1024));
    let session = r#"apiVersion: warroom.intility.io/v1
kind: SessionRequest
metadata:
  name: debug-session
  timestamp: "2026-11-23T10:00:00Z"
  engineer: alice
spec:
  targetCluster:
    type: hub
    name: production-hub
  duration: 3600
"#;
    let head = stack.push(&[
        ("requests/pending/r-huge.yaml", &huge),
        ("requests/pending/r-session.yaml", session),
        ("requests/pending/r-ok.yml", VALID),
    ]);
    let huge = stack.wait_status("r-huge").await;
    assert!(
        huge.status.errors[0].message.contains("at most"),
        "{:?}",
        huge.status.errors
    );
    let session = stack.wait_status("r-session").await;
    assert!(
        has_error(&session.status.errors, "kind"),
        "{:?}",
        session.status.errors
    );
    stack.wait_accepted("r-ok").await;
    stack.wait_cursor(&head).await;
    stack.stop().await;
}
