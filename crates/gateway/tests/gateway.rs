//! The gateway against a real nats-server and a real bare git remote: what an engineer's
//! push turns into on NATS, across restarts.

use std::time::Duration;
use warroom_runtime::daemon::Daemon as _;

use clap::Parser as _;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use warroom_gateway::{Config, Health};
use warroom_proto::names;
use warroom_proto::wire::{AcceptedRequest, StatusUpdate};
use warroom_proto::{
    FieldError, GatewayMessage, Inbound, NoticeKind, RequestId, RequestPhase, RequestStatus,
    ResultsDir, Stream, Subject,
};
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
            "--work-dir".to_owned(),
            self.work_dir.path().join("mirror").display().to_string(),
            "--nats-url".to_owned(),
            self.nats.url().to_owned(),
        ];
        if !self.extra_args.iter().any(|a| a == "--poll-interval") {
            args.extend(["--poll-interval".to_owned(), "100ms".to_owned()]);
        }
        // Without a policy of their own, the tests run unverified, as the local stack does.
        if !self.extra_args.iter().any(|a| a == "--policy") {
            args.push("--insecure-allow-unsigned".to_owned());
        }
        args.extend(self.extra_args.iter().cloned());
        let config = Config::try_parse_from(args).expect("the test's arguments parse");
        let health = Health::new();
        let (stop, stopped) = oneshot::channel::<()>();
        let settings = config
            .validate()
            .expect("the test's configuration is valid");
        let task = tokio::spawn(warroom_gateway::run(settings, health.clone(), async move {
            let _ = stopped.await;
        }));
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
        self.wait_cursor_within(commit, DEFAULT_TIMEOUT).await;
    }

    /// [`Stack::wait_cursor`] with a deadline of its own, for the large pushes.
    async fn wait_cursor_within(&self, commit: &str, deadline: Duration) {
        let js = self.nats.jetstream().await;
        wait_until(format!("the cursor reaches {commit}"), deadline, || {
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
        let target = health.metrics.polls.get() + n;
        wait_until(format!("{n} more polls"), DEFAULT_TIMEOUT, || {
            let health = health.clone();
            async move { health.metrics.polls.get() >= target }
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
    assert_eq!(health.metrics.requests_accepted.get(), 1);
    assert_eq!(health.metrics.requests_rejected.get(), 2);
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
    assert_eq!(health.metrics.requests_accepted.get(), 2);
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
    let fetches = health.metrics.fetches.get();
    assert_eq!(fetches, 1, "the first poll fetches once");
    assert!(health.is_ready());

    stack.wait_polls(5).await;
    assert_eq!(health.metrics.fetches.get(), fetches);

    let commit = stack.push(&[("requests/pending/r1.yaml", VALID)]);
    stack.wait_cursor(&commit).await;
    assert_eq!(health.metrics.fetches.get(), fetches + 1);
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
        commit: None,
        revision: 1_000_000,
        updated_at: warroom_proto::now(),
        verification: None,
        notices: Vec::new(),
        cancelled: None,
        synthesis: None,
        session: None,
        turns: Vec::new(),
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
    assert_eq!(health.metrics.requests_accepted.get(), 1);
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
    let result = tokio::time::timeout(Duration::from_secs(5), validated_run(config))
        .await
        .expect("validation does not wait for NATS");
    let error = result.expect_err("credentials in the URL are refused");
    assert!(error.to_string().contains("WARROOM_GIT_TOKEN"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_files_are_rejected_and_sessions_accepted_without_blocking_others() {
    let mut stack = Stack::new(&[]).await;
    stack.start();
    let huge = format!("{VALID}# {}\n", "x".repeat(70 * 1024));
    let pod = r#"apiVersion: warroom.intility.io/v1
kind: SessionRequest
metadata:
  name: pod-session
  timestamp: "2026-11-23T10:00:00Z"
  engineer: alice
spec:
  targetCluster:
    type: hub
    name: production-hub
  duration: 3600
  exec: true
"#;
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
        ("requests/pending/r-pod.yaml", pod),
        ("requests/pending/r-ok.yml", VALID),
    ]);
    let huge = stack.wait_status("r-huge").await;
    assert!(
        huge.status.errors[0].message.contains("at most"),
        "{:?}",
        huge.status.errors
    );
    // A session runs as the investigation of its one cluster, kept open for its duration.
    let session = stack.wait_accepted("r-session").await;
    let terms = session.session.expect("the session's terms");
    assert_eq!(terms.duration_secs, 3600);
    assert!(!terms.opening_prompt);
    assert_eq!(session.request.kind, "SessionRequest");
    // A session held as a pod carries that to its cluster's runner, which makes the pod.
    let pod = stack.wait_accepted("r-pod").await;
    assert!(pod.session.expect("the pod session's terms").exec);
    stack.wait_accepted("r-ok").await;
    stack.wait_cursor(&head).await;
    stack.stop().await;
}

// ---------------------------------------------------------------------------------------
// The secure-zone policy: real `ssh-keygen` keys, commits signed with `gpg.format=ssh`.

/// An SSH key pair made by the real `ssh-keygen`, in its own temporary folder.
struct SshKey {
    _dir: tempfile::TempDir,
    private: std::path::PathBuf,
    public: String,
}

fn ssh_key(name: &str) -> SshKey {
    let dir = tempfile::tempdir().expect("a folder for the key");
    let private = dir.path().join(name);
    let output = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&private)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("ssh-keygen runs");
    assert!(
        output.status.success(),
        "ssh-keygen: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let public = std::fs::read_to_string(private.with_extension("pub"))
        .expect("the public key")
        .trim()
        .to_owned();
    SshKey {
        _dir: dir,
        private,
        public,
    }
}

/// A policy: alice (`alice_key`) may target `prod-cluster-*`, bob (`bob_key`) `other-hub`.
fn policy_text(alice_key: &str, bob_key: &str, alice_clusters: &str) -> String {
    format!(
        r#"apiVersion: warroom.intility.io/v1
kind: WarroomPolicy
engineers:
  - name: alice
    keys: ["{alice_key}"]
    clusters: [{alice_clusters}]
  - name: bob
    keys: ["{bob_key}"]
    clusters: [other-hub]
"#
    )
}

impl Stack {
    /// Writes `files` and commits them, signed with `key` when given; does not push.
    fn commit_signed(&self, files: &[(&str, &str)], key: Option<&SshKey>) -> String {
        for (path, contents) in files {
            self.clone.write(path, contents);
        }
        self.clone.git(["add", "--all"]);
        match key {
            None => {
                self.clone
                    .git(["commit", "--quiet", "--message", "unsigned commit"]);
            }
            Some(key) => {
                let signingkey = format!("user.signingkey={}", key.private.display());
                self.clone.git([
                    "-c",
                    "gpg.format=ssh",
                    "-c",
                    &signingkey,
                    "commit",
                    "--quiet",
                    "-S",
                    "--message",
                    "signed commit",
                ]);
            }
        }
        self.clone.head()
    }
}

/// A gateway with a policy in a file the test can rewrite. Keep `_policy_dir` bound while
/// the gateway runs: it holds the file.
struct Secured {
    stack: Stack,
    policy: std::path::PathBuf,
    _policy_dir: tempfile::TempDir,
    alice: SshKey,
    bob: SshKey,
}

async fn secured(extra: &[&str]) -> Secured {
    let alice = ssh_key("alice");
    let bob = ssh_key("bob");
    let policy_dir = tempfile::tempdir().expect("a folder for the policy");
    let policy = policy_dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        policy_text(&alice.public, &bob.public, "\"prod-cluster-*\""),
    )
    .expect("write the policy");
    let policy_arg = policy.display().to_string();
    let mut args = vec!["--policy", policy_arg.as_str()];
    args.extend_from_slice(extra);
    Secured {
        stack: Stack::new(&args).await,
        policy,
        _policy_dir: policy_dir,
        alice,
        bob,
    }
}

/// The one policy refusal of a rejected request: (field, message).
fn refusal(update: &StatusUpdate) -> (&str, &str) {
    assert_eq!(update.status.phase, RequestPhase::Rejected);
    assert_eq!(update.status.errors.len(), 1, "{:?}", update.status.errors);
    let error = &update.status.errors[0];
    (error.field.as_str(), error.message.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_requests_signed_by_their_allowed_engineer_run() {
    let Secured {
        _policy_dir: _keep,
        mut stack,
        alice,
        bob,
        ..
    } = secured(&[]).await;
    let mallory = ssh_key("mallory");
    let health = stack.start();
    stack.wait_cursor(&stack.remote.head()).await;

    let path = |id: &str| format!("requests/pending/{id}.yaml");
    let signed = stack.commit_signed(&[(&path("r-signed"), VALID)], Some(&alice));
    let unsigned = stack.commit_signed(&[(&path("r-unsigned"), VALID)], None);
    let unknown = stack.commit_signed(&[(&path("r-unknown"), VALID)], Some(&mallory));
    let other = stack.commit_signed(&[(&path("r-other"), VALID)], Some(&bob));
    stack.commit_signed(
        &[(
            &path("r-cluster"),
            &VALID.replace("prod-cluster-1", "other-hub"),
        )],
        Some(&alice),
    );
    stack.commit_signed(
        &[(
            &path("r-nobody"),
            &VALID.replace("engineer: alice", "engineer: nobody"),
        )],
        Some(&alice),
    );
    stack.clone.push();
    let head = stack.clone.head();

    let accepted = stack.wait_accepted("r-signed").await;
    assert_eq!(accepted.commit, signed);

    let update = stack.wait_status("r-unsigned").await;
    let (field, message) = refusal(&update);
    assert_eq!(field, "metadata.engineer");
    assert!(message.starts_with("unsigned: "), "{message}");
    assert!(message.contains(&unsigned), "{message}");
    let error = update.status.error.as_deref().unwrap_or_default();
    assert!(error.contains("without a signature"), "{error}");

    let update = stack.wait_status("r-unknown").await;
    let (field, message) = refusal(&update);
    assert_eq!(field, "metadata.engineer");
    assert!(message.starts_with("unknown_key: "), "{message}");
    assert!(message.contains(&unknown), "{message}");

    let update = stack.wait_status("r-other").await;
    let (field, message) = refusal(&update);
    assert_eq!(field, "metadata.engineer");
    assert!(message.starts_with("other_engineer: "), "{message}");
    assert!(
        message.contains(&other) && message.contains("bob"),
        "{message}"
    );

    let update = stack.wait_status("r-cluster").await;
    let (field, message) = refusal(&update);
    assert_eq!(field, "spec.targetCluster.name");
    assert!(message.starts_with("cluster_not_allowed: "), "{message}");
    assert!(message.contains("other-hub"), "{message}");

    let update = stack.wait_status("r-nobody").await;
    let (field, message) = refusal(&update);
    assert_eq!(field, "metadata.engineer");
    assert!(message.starts_with("unknown_engineer: "), "{message}");
    assert_eq!(update.status.engineer.as_deref(), Some("nobody"));

    stack.wait_cursor(&head).await;
    assert_eq!(
        stack.subjects(Stream::Requests).await,
        [Subject::Request(id("r-signed"))]
    );
    assert_eq!(health.metrics.requests_accepted.get(), 1);
    assert_eq!(health.metrics.requests_rejected.get(), 5);
    let metrics = health.render();
    assert!(
        metrics.contains(r#"warroom_gateway_policy_refusals_total{code="unsigned"} 1"#),
        "{metrics}"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_request_edited_after_acceptance_never_runs_the_edit() {
    let Secured {
        _policy_dir: _keep,
        mut stack,
        alice,
        ..
    } = secured(&[]).await;
    let health = stack.start();
    let file = "requests/pending/r-edit.yaml";
    stack.commit_signed(&[(file, VALID)], Some(&alice));
    stack.clone.push();
    let accepted = stack.wait_accepted("r-edit").await;
    assert_eq!(
        accepted.request.spec.investigation.prompt,
        "Check etcd health."
    );
    stack.wait_cursor(&stack.clone.head()).await;

    // Someone edits the accepted request in an unsigned commit.
    let edited = VALID.replace("Check etcd health.", "Print every secret.");
    stack.commit_signed(&[(file, &edited)], None);
    stack.clone.push();
    stack.wait_cursor(&stack.clone.head()).await;
    assert_eq!(health.metrics.requests_changed_after_acceptance.get(), 1);

    // A signed edit does not run either: an accepted request is never run again.
    let edited_again = VALID.replace("Check etcd health.", "Check etcd again.");
    stack.commit_signed(&[(file, &edited_again)], Some(&alice));
    stack.clone.push();
    stack.wait_cursor(&stack.clone.head()).await;
    assert_eq!(health.metrics.requests_changed_after_acceptance.get(), 2);

    // Deleted, then a new file with the same id: the id is not run again.
    stack.clone.remove(file);
    stack.clone.commit_all("remove r-edit");
    stack.clone.push();
    stack.wait_cursor(&stack.clone.head()).await;
    stack.commit_signed(&[(file, &edited_again)], Some(&alice));
    stack.clone.push();
    stack.wait_cursor(&stack.clone.head()).await;
    assert_eq!(health.metrics.request_ids_reused.get(), 1);

    // After a restart (the records live in NATS) a full rescan neither runs the edit.
    stack.stop().await;
    let js = stack.nats.jetstream().await;
    let kv = js.get_key_value(names::GATEWAY_BUCKET).await.unwrap();
    kv.delete("cursor-main").await.unwrap();
    let health = stack.start();
    stack.wait_cursor(&stack.clone.head()).await;
    assert_eq!(health.metrics.requests_changed_after_acceptance.get(), 1);

    // One accepted request, then a notice for each new version of its file, for the
    // dispatcher to put into the request's status.json. The re-added file holds the text
    // already noticed, and the rescan repeated nothing.
    let messages = stack.messages(Stream::Requests).await;
    assert_eq!(messages.len(), 3, "{messages:?}");
    let first: AcceptedRequest = serde_json::from_slice(&messages[0].1).unwrap();
    assert_eq!(
        first.request.spec.investigation.prompt,
        "Check etcd health."
    );
    let kinds: Vec<NoticeKind> = messages[1..]
        .iter()
        .map(|(subject, payload)| {
            match GatewayMessage::decode(subject, payload).expect("a gateway message") {
                GatewayMessage::Notice(notice) => notice.notice.kind,
                GatewayMessage::Accepted(_) => panic!("a second acceptance of r-edit"),
                GatewayMessage::Cancel(_) => panic!("a cancel of r-edit"),
                GatewayMessage::FollowUp(_) => panic!("a follow-up of r-edit"),
            }
        })
        .collect();
    assert_eq!(
        kinds,
        [
            NoticeKind::ChangedAfterAcceptance,
            NoticeKind::ChangedAfterAcceptance
        ]
    );
    // The accepted request's status belongs to the dispatcher: nothing was said over it.
    assert_eq!(stack.message_count(Stream::Events).await, 0);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_cancel_files_are_answered_only_for_requests_that_exist() {
    // Found attacking the local stack: an invalid cancel file named after an id nobody
    // requested made a notice the dispatcher could never apply, retried until it became a
    // dead letter. Only a request that was accepted gets the refusal in its status.json.
    let mut stack = Stack::new(&[]).await;
    stack.start();
    stack.wait_cursor(&stack.remote.head()).await;
    stack.push(&[("requests/pending/r-known.yaml", VALID)]);
    stack.wait_accepted("r-known").await;
    let bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n\
                c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n\
                e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n";
    let big = format!("kind: CancelRequest\n#{}\n", "x".repeat(100_000));
    let commit = stack.push(&[
        ("requests/cancel/r-unknown-bomb.yaml", bomb),
        ("requests/cancel/r-unknown-big.yaml", &big),
        ("requests/cancel/r-unknown-kind.yaml", VALID),
        ("requests/cancel/r-known.yaml", "kind: CancelRequest\n"),
        ("requests/cancel/r known.yaml", "kind: CancelRequest\n"),
    ]);
    stack.wait_cursor(&commit).await;
    let messages = stack.messages(Stream::Requests).await;
    let subjects: Vec<&Subject> = messages.iter().map(|(s, _)| s).collect();
    assert_eq!(
        messages.len(),
        2,
        "the acceptance and one refusal: {subjects:?}"
    );
    let (subject, payload) = &messages[1];
    assert_eq!(*subject, Subject::Request(id("r-known")));
    match GatewayMessage::decode(subject, payload).expect("a gateway message") {
        GatewayMessage::Notice(notice) => {
            assert_eq!(notice.notice.kind, NoticeKind::CancelRefused);
            assert!(notice.notice.message.contains("invalid"), "{notice:?}");
        }
        other => panic!("not a refusal: {other:?}"),
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_request_corrected_in_place_is_judged_again() {
    let mut stack = Stack::new(&[]).await;
    let health = stack.start();
    let file = "requests/pending/r-fix.yaml";
    stack.push(&[(file, &invalid())]);
    let update = stack.wait_status("r-fix").await;
    assert_eq!(update.status.phase, RequestPhase::Rejected);
    stack.wait_cursor(&stack.clone.head()).await;

    let head = stack.push(&[(file, VALID)]);
    stack.wait_accepted("r-fix").await;
    stack.wait_cursor(&head).await;
    assert_eq!(health.metrics.requests_accepted.get(), 1);
    assert_eq!(health.metrics.requests_changed_after_acceptance.get(), 0);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_policy_the_gateway_does_not_start_unless_told_to_run_unverified() {
    let nats = NatsServer::start().await;
    let remote = BareRemote::new();
    let config = Config::try_parse_from([
        "warroom-gateway",
        "--repo",
        &remote.file_url(),
        "--nats-url",
        nats.url(),
    ])
    .unwrap();
    let result = tokio::time::timeout(Duration::from_secs(5), validated_run(config))
        .await
        .expect("the refusal comes at once");
    let error = result.expect_err("no policy, no start").to_string();
    assert!(error.contains("--policy"), "{error}");
    assert!(error.contains("--insecure-allow-unsigned"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_policy_stops_the_start_with_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "apiVersion: warroom.intility.io/v1\nkind: WarroomPolicy\nengineers:\n  - name: alice\n    keys: [nonsense]\n    clusters: [hub]\n    maxConcurentRequests: 2\n",
    )
    .unwrap();
    let config = Config::try_parse_from([
        "warroom-gateway",
        "--repo",
        "/srv/git/warroom.git",
        "--policy",
        &policy.display().to_string(),
        // Nothing listens here: the error must come before connecting.
        "--nats-url",
        "nats://127.0.0.1:1",
    ])
    .unwrap();
    let result = tokio::time::timeout(Duration::from_secs(10), validated_run(config))
        .await
        .expect("the policy is checked before connecting");
    let error = result
        .expect_err("an invalid policy stops the start")
        .to_string();
    assert!(error.contains("engineers[0].keys[0]"), "{error}");
    assert!(
        error.contains("engineers[0].maxConcurentRequests"),
        "{error}"
    );
    assert!(error.contains("policy.yaml"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_policy_at_reload_keeps_the_old_one() {
    let Secured {
        _policy_dir: _keep,
        mut stack,
        policy,
        alice,
        bob,
        ..
    } = secured(&[]).await;
    let health = stack.start();
    stack.wait_cursor(&stack.remote.head()).await;

    std::fs::write(&policy, "kind: WarroomPolicy\nengineers: nonsense\n").unwrap();
    let h = health.clone();
    wait_until("the invalid policy is refused", DEFAULT_TIMEOUT, || {
        let h = h.clone();
        async move { h.metrics.policy_reloads_refused.get() == 1 }
    })
    .await;
    // Alice's signed request runs under the old policy.
    stack.commit_signed(&[("requests/pending/r-old.yaml", VALID)], Some(&alice));
    stack.clone.push();
    stack.wait_accepted("r-old").await;
    stack.wait_cursor(&stack.clone.head()).await;
    assert_eq!(
        health.metrics.policy_reloads_refused.get(),
        1,
        "reported once"
    );

    // A valid new version is used: alice may no longer target prod-cluster-*.
    std::fs::write(&policy, policy_text(&alice.public, &bob.public, "staging")).unwrap();
    let h = health.clone();
    wait_until("the new policy is loaded", DEFAULT_TIMEOUT, || {
        let h = h.clone();
        async move { h.metrics.policy_reloads.get() == 1 }
    })
    .await;
    stack.commit_signed(&[("requests/pending/r-new.yaml", VALID)], Some(&alice));
    stack.clone.push();
    let update = stack.wait_status("r-new").await;
    let (_, message) = refusal(&update);
    assert!(message.starts_with("cluster_not_allowed: "), "{message}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_clusters_narrow_the_policy_further() {
    let Secured {
        _policy_dir: _keep,
        mut stack,
        alice,
        ..
    } = secured(&["--allowed-clusters", "prod-cluster-2"]).await;
    stack.start();
    stack.commit_signed(&[("requests/pending/r-narrow.yaml", VALID)], Some(&alice));
    stack.clone.push();
    let update = stack.wait_status("r-narrow").await;
    assert!(
        has_error(&update.status.errors, "spec.targetCluster.name"),
        "{:?}",
        update.status.errors
    );
    stack.stop().await;
}

// ---------------------------------------------------------------------------------------
// The webhook.

/// A port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `sha256=<hex>` of `body` with `secret`, as GitHub signs deliveries.
fn github_signature(secret: &str, body: &[u8]) -> String {
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// POSTs `body` to `/webhook` over a plain HTTP/1.1 connection; returns the status code.
async fn post_webhook(port: u16, headers: &[(&str, &str)], body: Vec<u8>) -> u16 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("the webhook listens");
    let (mut read, mut write) = stream.into_split();
    let mut head = format!(
        "POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    // The body is written while the answer is read: a server refusing a large body may
    // answer before reading it all.
    let writer = tokio::spawn(async move {
        let _ = write.write_all(head.as_bytes()).await;
        let _ = write.write_all(&body).await;
        let _ = write.flush().await;
        write
    });
    let mut response = Vec::new();
    let mut buffer = [0u8; 1024];
    loop {
        match read.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => response.extend_from_slice(&buffer[..n]),
        }
        if response.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    drop(writer);
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_webhook_wakes_the_gateway_and_nothing_else_does() {
    const SECRET: &str = "shared webhook secret";
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut stack = Stack::new(&[
        "--poll-interval",
        "30s",
        "--webhook-addr",
        &addr,
        "--webhook-secret",
        SECRET,
    ])
    .await;
    let health = stack.start();
    // The first poll happens at start; the next regular one is 30 s later.
    stack.wait_cursor(&stack.remote.head()).await;
    let started = std::time::Instant::now();
    assert_eq!(health.metrics.polls.get(), 1);
    // The gauge the "gateway not polling" alert reads was set by that poll (once the poll
    // returned, a moment after it wrote the cursor).
    wait_until("the last poll's time is recorded", DEFAULT_TIMEOUT, || {
        let set = health.metrics.last_poll_timestamp_seconds.get() != 0;
        async move { set }
    })
    .await;
    let last_poll = health.metrics.last_poll_timestamp_seconds.get();
    assert!(
        (warroom_proto::now().unix_timestamp() - last_poll) < 120,
        "last poll at {last_poll}"
    );

    let head = stack.push(&[("requests/pending/r-hook.yaml", VALID)]);
    let body = br#"{"ref":"refs/heads/main"}"#.to_vec();
    let signature = github_signature(SECRET, &body);

    // A bad signature is refused and wakes nothing.
    let forged = github_signature("another secret", &body);
    let status = post_webhook(
        port,
        &[
            ("X-GitHub-Event", "push"),
            ("X-GitHub-Delivery", "d-forged"),
            ("X-Hub-Signature-256", &forged),
        ],
        body.clone(),
    )
    .await;
    assert_eq!(status, 401);
    let status = post_webhook(port, &[("X-GitHub-Event", "push")], body.clone()).await;
    assert_eq!(status, 401, "an unsigned delivery");
    assert_eq!(health.metrics.webhook_rejected.get(), 2);

    // Too large a body is refused before its signature is looked at.
    let huge = vec![b' '; warroom_gateway::webhook::MAX_BODY_BYTES + 1];
    let huge_signature = github_signature(SECRET, &huge);
    let status = post_webhook(
        port,
        &[
            ("X-GitHub-Event", "push"),
            ("X-GitHub-Delivery", "d-huge"),
            ("X-Hub-Signature-256", &huge_signature),
        ],
        huge,
    )
    .await;
    assert_eq!(status, 413);
    assert_eq!(health.metrics.webhook_too_large.get(), 1);
    assert_eq!(health.metrics.webhook_wakes.get(), 0);
    assert_eq!(health.metrics.polls.get(), 1, "nothing woke the poller");

    // A signed push wakes it.
    let delivery = [
        ("X-GitHub-Event", "push"),
        ("X-GitHub-Delivery", "d-1"),
        ("X-Hub-Signature-256", signature.as_str()),
    ];
    assert_eq!(post_webhook(port, &delivery, body.clone()).await, 202);
    stack.wait_accepted("r-hook").await;
    stack.wait_cursor(&head).await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "published {:?} after the start: the webhook did not wake the poller",
        started.elapsed()
    );
    assert_eq!(health.metrics.webhook_wakes.get(), 1);

    // The same delivery again is ignored: counted, no second wake.
    assert_eq!(post_webhook(port, &delivery, body.clone()).await, 200);
    assert_eq!(health.metrics.webhook_replays.get(), 1);
    assert_eq!(health.metrics.webhook_wakes.get(), 1);
    stack.stop().await;
}

/// How many request files the burst test pushes at once.
const BURST: usize = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_of_a_thousand_signed_files_is_accepted_whole() {
    let Secured {
        _policy_dir: _keep,
        mut stack,
        alice,
        ..
    } = secured(&[]).await;
    let health = stack.start();
    stack.wait_cursor(&stack.remote.head()).await;

    // One signed commit with the whole burst, a few bad files among them, and then a second,
    // unsigned commit that edits one burst file and adds another: the edit is refused for
    // its unsigned commit, the new file too, and neither holds the others back.
    let path = |n: usize| format!("requests/pending/burst-{n:04}.yaml");
    let mut files: Vec<(String, String)> =
        (0..BURST).map(|n| (path(n), VALID.to_owned())).collect();
    files.push(("requests/pending/bad-1.yaml".to_owned(), invalid()));
    files.push((
        "requests/pending/bad-2.yaml".to_owned(),
        "[not a mapping".to_owned(),
    ));
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let burst = stack.commit_signed(&files, Some(&alice));
    stack.commit_signed(
        &[
            (
                &path(7),
                &VALID.replace("etcd latency", "etcd latency, edited"),
            ),
            ("requests/pending/late.yaml", VALID),
        ],
        None,
    );
    stack.clone.push();
    let head = stack.clone.head();

    // A generous deadline: this asserts counts, not speed (tests/benches measure that),
    // and the debug build shares two cores with other work.
    stack
        .wait_cursor_within(&head, Duration::from_secs(180))
        .await;
    assert_eq!(health.metrics.requests_accepted.get(), (BURST - 1) as u64);
    assert_eq!(health.metrics.requests_rejected.get(), 4);
    assert_eq!(
        stack.message_count(Stream::Requests).await,
        (BURST - 1) as u64
    );
    let accepted = stack.wait_accepted("burst-0999").await;
    assert_eq!(accepted.commit, burst);
    let edited = stack.wait_status("burst-0007").await;
    let (field, message) = refusal(&edited);
    assert_eq!(field, "metadata.engineer");
    assert!(message.starts_with("unsigned: "), "{message}");
    let late = stack.wait_status("late").await;
    let (_, message) = refusal(&late);
    assert!(message.starts_with("unsigned: "), "{message}");
    assert!(has_error(
        &stack.wait_status("bad-1").await.status.errors,
        "spec.investigation.timeout"
    ));

    // Every accepted request has its record, so a later edit of its file never runs.
    let js = stack.nats.jetstream().await;
    let records = js
        .get_key_value(names::GATEWAY_BUCKET)
        .await
        .expect("the gateway's bucket");
    let mut keys = records.keys().await.expect("the bucket's keys");
    let mut accepted_records = 0;
    while let Some(key) = futures::StreamExt::next(&mut keys).await {
        if key.expect("a key").starts_with("accepted-burst-") {
            accepted_records += 1;
        }
    }
    assert_eq!(accepted_records, BURST - 1);
    stack.stop().await;
}

/// `warroom-gateway --check`: a good configuration passes without NATS being there; a bad
/// one lists every problem at once, one line each naming the setting and the file.
#[test]
fn check_reads_every_file_and_reports_every_problem_without_connecting() {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_warroom-gateway"));
    let dir = tempfile::tempdir().unwrap();
    let policy =
        warroom_testkit::tools::workspace_root().join("examples/policy/warroom-policy.yaml");
    let token = dir.path().join("token");
    std::fs::write(&token, "ghp_readonly\n").unwrap();
    let secret = dir.path().join("webhook-secret");
    std::fs::write(&secret, "hush\n").unwrap();
    let url = warroom_testkit::unused_nats_url();
    let good = warroom_testkit::run_check(
        bin,
        &[
            "--repo",
            "https://git.example.com/org/warroom.git",
            "--policy",
            policy.to_str().unwrap(),
            "--nats-url",
            &url,
            "--webhook-addr",
            "127.0.0.1:0",
        ],
        &[
            ("WARROOM_GIT_TOKEN_FILE", token.to_str().unwrap()),
            ("WARROOM_WEBHOOK_SECRET_FILE", secret.to_str().unwrap()),
        ],
    );
    good.assert_ok();
    assert!(good.stdout.contains("2 engineers"), "{good:#?}");
    assert!(good.stdout.contains(&url), "{good:#?}");
    assert!(good.stdout.contains("git token"), "{good:#?}");

    let bad_policy = dir.path().join("policy.yaml");
    std::fs::write(
        &bad_policy,
        "allowedClusters: [hub]\nmaxTimeoutSeconds: 3600\nallowedTools: [bash]\n",
    )
    .unwrap();
    let seed = dir.path().join("gateway.nk");
    std::fs::write(&seed, "not a seed\n").unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let bad = warroom_testkit::run_check(
        bin,
        &[
            "--repo",
            "https://git.example.com/org/warroom.git",
            "--policy",
            bad_policy.to_str().unwrap(),
            "--nats-url",
            &url,
            "--nats-nkey",
            seed.to_str().unwrap(),
            "--nats-tls-ca",
            empty.to_str().unwrap(),
            "--git-token",
            "inline",
            "--webhook-addr",
            "127.0.0.1:0",
        ],
        &[
            ("WARROOM_GIT_TOKEN_FILE", token.to_str().unwrap()),
            ("WARROOM_WEBHOOK_SECRET_FILE", "/nonexistent/webhook-secret"),
        ],
    );
    bad.assert_problems(
        "warroom-gateway",
        &[
            "policy.yaml: allowedClusters: unknown field",
            "policy.yaml: apiVersion: is required",
            "policy.yaml: kind: is required",
            "policy.yaml: engineers: is required",
            "--nats-nkey",
            "expected an NKey user seed",
            "--nats-tls-ca",
            "--git-token (WARROOM_GIT_TOKEN) and --git-token-file (WARROOM_GIT_TOKEN_FILE) are \
             both set",
            "--webhook-secret-file (WARROOM_WEBHOOK_SECRET_FILE) /nonexistent/webhook-secret: \
             cannot read it",
        ],
    );
    assert!(bad.stdout.is_empty(), "{bad:#?}");
    assert!(
        bad.stderr.starts_with("warroom-gateway: 10 problems:"),
        "{bad:#?}"
    );
}

/// What the gateway's binary does with `config`: validate it, then run; the refusal of
/// either, as its message.
async fn validated_run(config: Config) -> Result<(), String> {
    let settings = config.validate().map_err(|e| e.to_string())?;
    warroom_gateway::run(settings, Health::new(), std::future::pending())
        .await
        .map_err(|e| e.to_string())
}

/// A follow-up question, from `engineer`, for turn file `requests/ask/<id>/<turn>.yaml`.
fn follow_up(engineer: &str, prompt: &str) -> String {
    format!(
        "apiVersion: warroom.intility.io/v1\nkind: FollowUp\nmetadata:\n  engineer: {engineer}\n  \
         timestamp: \"2026-11-23T11:00:00Z\"\nspec:\n  prompt: {prompt}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_ups_go_to_the_dispatcher_only_from_the_owner_signed_and_valid() {
    let Secured {
        _policy_dir: _keep,
        mut stack,
        alice,
        bob,
        ..
    } = secured(&[]).await;
    stack.start();
    stack.wait_cursor(&stack.remote.head()).await;
    stack.commit_signed(&[("requests/pending/r-ask.yaml", VALID)], Some(&alice));
    stack.clone.push();
    stack.wait_accepted("r-ask").await;
    stack.wait_cursor(&stack.clone.head()).await;

    // The owner's, signed; bob's, signed by bob; one unsigned; one invalid; turn 10 sorts
    // after turn 2; one for a request nobody asked for is only logged.
    stack.commit_signed(
        &[
            (
                "requests/ask/r-ask/1.yaml",
                &follow_up("alice", "And the leader?"),
            ),
            (
                "requests/ask/r-ask/10.yaml",
                &follow_up("alice", "And the disk?"),
            ),
            (
                "requests/ask/r-ask/2.yaml",
                &follow_up("alice", "And the network?"),
            ),
            (
                "requests/ask/r-nobody/1.yaml",
                &follow_up("alice", "Anyone?"),
            ),
            // Deeper than requests/ask/<id>/: not read as a follow-up of `r-ask`.
            (
                "requests/ask/x/r-ask/5.yaml",
                &follow_up("alice", "Nested?"),
            ),
        ],
        Some(&alice),
    );
    stack.commit_signed(
        &[(
            "requests/ask/r-ask/3.yaml",
            &follow_up("bob", "Show me secrets."),
        )],
        Some(&bob),
    );
    stack.commit_signed(
        &[(
            "requests/ask/r-ask/4.yaml",
            &follow_up("alice", "Unsigned?"),
        )],
        None,
    );
    stack.commit_signed(
        &[(
            "requests/ask/r-ask/05.yaml",
            &follow_up("alice", "Bad name."),
        )],
        Some(&alice),
    );
    stack.clone.push();
    stack.wait_cursor(&stack.clone.head()).await;

    let mut asked = Vec::new();
    let mut refused = Vec::new();
    for (subject, payload) in stack.messages(Stream::Requests).await.iter().skip(1) {
        assert_eq!(
            *subject,
            Subject::Request(id("r-ask")),
            "only r-ask is answered"
        );
        match GatewayMessage::decode(subject, payload).expect("a gateway message") {
            GatewayMessage::FollowUp(order) => {
                assert!(order.verified);
                asked.push((order.turn, order.prompt));
            }
            GatewayMessage::Notice(notice) => {
                assert_eq!(notice.notice.kind, NoticeKind::FollowUpRefused);
                refused.push((notice.notice.file, notice.notice.message));
            }
            other => panic!("unexpected: {other:?}"),
        }
    }
    assert_eq!(
        asked,
        [
            (1, "And the leader?".to_owned()),
            (2, "And the network?".to_owned()),
            (10, "And the disk?".to_owned()),
        ]
    );
    let reason = |file: &str| -> String {
        refused
            .iter()
            .find(|(f, _)| f == file)
            .map(|(_, m)| m.clone())
            .unwrap_or_else(|| panic!("no refusal of {file}: {refused:?}"))
    };
    assert!(reason("requests/ask/r-ask/3.yaml").contains("not_allowed_to_ask"));
    assert!(reason("requests/ask/r-ask/4.yaml").contains("unsigned"));
    assert!(reason("requests/ask/r-ask/05.yaml").contains("is not a turn"));
    assert_eq!(refused.len(), 3, "{refused:?}");
    stack.stop().await;
}
