//! The publisher against a real nats-server and a real bare git remote: the test publishes
//! status updates and audit events the way the gateway, the dispatcher and the runners do,
//! and reads what landed in git.

use std::collections::BTreeMap;
use std::time::Duration;
use warroom_runtime::daemon::Daemon as _;

use async_nats::jetstream;
use clap::Parser as _;
use futures::StreamExt as _;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use warroom_proto::{
    AuditEvent, AuditKind, ClusterPhase, ClusterReport, ClusterStatus, ClusterType, Denial,
    FieldError, Outcome, RequestPhase, RequestStatus, RequestSummary, StatusUpdate,
};
use warroom_proto::{ClusterName, RequestId, ResultsDir, Stream, Subject, names};
use warroom_publisher::{Config, Health};
use warroom_runtime::{Bus, DeadLetter};
use warroom_testkit::{BareRemote, DEFAULT_TIMEOUT, NatsServer, SshKey, wait_for, wait_until};

#[path = "publisher/configmap.rs"]
mod configmap;
#[path = "publisher/slack.rs"]
mod slack;

/// A nats-server, a bare remote, and a publisher writing into it.
struct Stack {
    nats: NatsServer,
    remote: BareRemote,
    _work_dir: tempfile::TempDir,
    extra_args: Vec<String>,
    /// How many publishers were started; each gets a fresh working clone.
    clones: u32,
    bus: Bus,
    health: Health,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<warroom_publisher::Result<()>>>,
}

impl Stack {
    async fn start() -> Self {
        Self::start_with(&[]).await
    }

    async fn start_with(extra_args: &[&str]) -> Self {
        let mut stack = Self::without_publisher(extra_args).await;
        stack.spawn();
        stack
    }

    /// NATS (with every stream) and the remote, but no publisher yet: messages published
    /// now wait in the stream and reach the publisher started later in one batch.
    async fn without_publisher(extra_args: &[&str]) -> Self {
        let nats = NatsServer::start().await;
        let remote = BareRemote::new();
        let work_dir = tempfile::tempdir().expect("a temporary work directory");
        let bus = Bus::connect(
            &warroom_runtime::Connection::plain(nats.url()),
            "publisher-test",
        )
        .await
        .expect("the test connects to NATS");
        Stack {
            nats,
            remote,
            _work_dir: work_dir,
            extra_args: extra_args.iter().map(|s| (*s).to_owned()).collect(),
            clones: 0,
            bus,
            health: Health::new(),
            stop: None,
            task: None,
        }
    }

    /// Starts a publisher with a working clone of its own.
    fn spawn(&mut self) {
        self.clones += 1;
        self.spawn_in(self.clones);
    }

    /// The working clone of the `n`th publisher started.
    fn clone_dir(&self, n: u32) -> std::path::PathBuf {
        self._work_dir.path().join(format!("clone-{n}"))
    }

    /// Starts a publisher in the working clone of the `n`th one (a restart keeps its clone).
    fn spawn_in(&mut self, n: u32) {
        let settings = self.settings_in(n);
        self.health = Health::new();
        let (stop, stopped) = oneshot::channel::<()>();
        self.task = Some(tokio::spawn(warroom_publisher::run(
            settings,
            self.health.clone(),
            async move {
                let _ = stopped.await;
            },
        )));
        self.stop = Some(stop);
    }

    /// The settings of a publisher working in the clone of the `n`th one.
    fn settings_in(&self, n: u32) -> warroom_publisher::Settings {
        let clone = self
            ._work_dir
            .path()
            .join(format!("clone-{n}"))
            .display()
            .to_string();
        let repo = self.remote.file_url();
        let mut args = vec![
            "warroom-publisher".to_owned(),
            "--repo".to_owned(),
            repo,
            "--work-dir".to_owned(),
            clone,
            "--nats-url".to_owned(),
            self.nats.url().to_owned(),
        ];
        if !self.extra_args.iter().any(|arg| arg == "--batch-window") {
            args.extend(["--batch-window".to_owned(), "100ms".to_owned()]);
        }
        args.extend(self.extra_args.iter().cloned());
        Config::try_parse_from(args)
            .expect("the test's arguments parse")
            .validate()
            .expect("the test's configuration is valid")
    }

    /// Stops the running publisher and waits for it to end cleanly.
    async fn halt(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().expect("the publisher is running");
        let result = tokio::time::timeout(DEFAULT_TIMEOUT, task)
            .await
            .expect("the publisher stops within the deadline")
            .expect("the publisher task did not panic");
        result.expect("the publisher ends without an error");
    }

    async fn stop(mut self) {
        self.halt().await;
    }

    async fn status(&self, update: &StatusUpdate) {
        let id = &update.status.id;
        let dedup = format!("{id}-{}", update.status.revision);
        self.bus
            .publish(&Subject::Status(id.clone()), Some(&dedup), update)
            .await
            .expect("the status update is stored");
    }

    /// Publishes an audit event without a dedup id, so that a repeat is stored again, the
    /// way a redelivery after a crash reaches the publisher.
    async fn event(&self, event: &AuditEvent) {
        self.bus
            .publish(
                &Subject::Event(event.request_id.clone(), event.cluster.clone()),
                None,
                event,
            )
            .await
            .expect("the audit event is stored");
    }

    async fn raw(&self, subject: &str, payload: &[u8]) {
        self.nats
            .jetstream()
            .await
            .publish(subject.to_owned(), payload.to_vec().into())
            .await
            .expect("the message is sent")
            .await
            .expect("the message is stored");
    }

    /// Every letter the publisher's consumer left in the dead-letter stream, in order.
    async fn dead_letters(&self) -> Vec<DeadLetter> {
        stored(
            &self.nats.jetstream().await,
            Stream::DeadLetters,
            &Subject::DeadLetter(names::PUBLISHER_CONSUMER.to_owned()),
        )
        .await
    }

    /// Whether the publisher's consumer has nothing left: nothing undelivered and nothing
    /// delivered but unsettled (so no message is stuck or waiting for a redelivery).
    async fn consumer_is_drained(&self) -> bool {
        self.is_drained(names::PUBLISHER_CONSUMER).await
    }

    /// Whether `consumer` on the events stream has nothing undelivered or unsettled.
    async fn is_drained(&self, consumer: &str) -> bool {
        let js = self.nats.jetstream().await;
        let Ok(stream) = js.get_stream(Stream::Events.name()).await else {
            return false;
        };
        let Ok(mut consumer) = stream
            .get_consumer::<jetstream::consumer::pull::Config>(consumer)
            .await
        else {
            return false;
        };
        consumer
            .info()
            .await
            .is_ok_and(|info| info.num_ack_pending == 0 && info.num_pending == 0)
    }

    /// Waits until no pull request is open at the server for `consumer`: the server drops
    /// those of a closed connection when it is asked.
    async fn wait_no_pull_open(&self, consumer: &str) {
        let js = self.nats.jetstream().await;
        wait_until(
            format!("no pull request open for {consumer}"),
            DEFAULT_TIMEOUT,
            || async {
                let Ok(stream) = js.get_stream(Stream::Events.name()).await else {
                    return false;
                };
                stream
                    .consumer_info(consumer)
                    .await
                    .is_ok_and(|info| info.num_waiting == 0)
            },
        )
        .await;
    }

    /// Waits until `path` on the remote's `main` satisfies `check`, and returns it.
    async fn wait_file(&self, path: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
        wait_for(format!("{path} {what}"), DEFAULT_TIMEOUT, || {
            let found = self.remote.read(path).filter(|text| check(text));
            async move { found }
        })
        .await
    }

    async fn wait_status(&self, id: &str, phase: &str) -> serde_json::Value {
        let text = self
            .wait_file(
                &format!("results/{id}/status.json"),
                &format!("says {phase}"),
                |t| serde_json::from_str::<serde_json::Value>(t).is_ok_and(|v| v["phase"] == phase),
            )
            .await;
        serde_json::from_str(&text).expect("status.json is JSON")
    }

    /// Every file on the remote's `main`.
    fn files(&self) -> Vec<String> {
        self.remote
            .git(["ls-tree", "-r", "--name-only", "main"])
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// Every message stored on `subject` in `stream`, in order.
async fn stored<T: DeserializeOwned>(
    js: &jetstream::Context,
    stream: Stream,
    subject: &Subject,
) -> Vec<T> {
    let subject = subject.to_string();
    let Ok(mut stream) = js.get_stream(stream.name()).await else {
        return Vec::new();
    };
    let state = stream.info().await.expect("stream info").state.clone();
    let mut out = Vec::new();
    if state.messages == 0 {
        return out;
    }
    for seq in state.first_sequence..=state.last_sequence {
        if let Ok(message) = stream.get_raw_message(seq).await
            && message.subject.as_str() == subject
        {
            out.push(serde_json::from_slice(&message.payload).expect("a stored message decodes"));
        }
    }
    out
}

fn rid(id: &str) -> RequestId {
    id.parse().expect("a valid request id")
}

fn cname(name: &str) -> ClusterName {
    name.parse().expect("a valid cluster name")
}

fn dir(path: &str) -> ResultsDir {
    path.parse().expect("a valid results folder")
}

/// The event as the runner of a request with its results in `folder` sends it.
fn in_folder(folder: &str, mut event: AuditEvent) -> AuditEvent {
    event.results_dir = dir(folder);
    event
}

fn status(id: &str, phase: RequestPhase, revision: u64) -> StatusUpdate {
    StatusUpdate {
        status: RequestStatus {
            id: rid(id),
            phase,
            clusters: BTreeMap::new(),
            error: None,
            errors: Vec::new(),
            mode: None,
            engineer: Some("alice".to_owned()),
            results_dir: dir(&format!("results/{id}")),
            commit: None,
            revision,
            updated_at: warroom_proto::now(),
            verification: None,
            notices: Vec::new(),
            cancelled: None,
            synthesis: None,
            session: None,
            turns: Vec::new(),
        },
        request: Some(RequestSummary {
            name: "etcd-latency".to_owned(),
            engineer: "alice".to_owned(),
            category: "etcd".to_owned(),
            description: "etcd latency above 500ms".to_owned(),
            prompt: "Check etcd health.".to_owned(),
        }),
        reports: BTreeMap::new(),
        synthesis: None,
    }
}

/// Request `id` completed on its one cluster, `hub`, at revision 2.
fn completed_on_hub(id: &str) -> StatusUpdate {
    with_cluster(
        status(id, RequestPhase::Completed, 2),
        "hub",
        ClusterPhase::Completed,
    )
}

fn with_cluster(mut update: StatusUpdate, cluster: &str, phase: ClusterPhase) -> StatusUpdate {
    let mut line = ClusterStatus::new(ClusterType::Hosted, phase);
    if phase.is_final() {
        line.duration_secs = Some(83.0);
        line.cost_usd = Some(0.0421);
        line.num_turns = Some(6);
    }
    update.status.clusters.insert(cname(cluster), line);
    update
}

fn with_report(mut update: StatusUpdate, cluster: &str, text: &str) -> StatusUpdate {
    update.reports.insert(
        cname(cluster),
        ClusterReport {
            structured: None,
            final_text: text.to_owned(),
            permission_denials: Vec::new(),
        },
    );
    update
}

fn event(request: &str, cluster: &str, seq: u32, kind: AuditKind) -> AuditEvent {
    AuditEvent {
        id: format!("{request}/{cluster}/1/{seq}"),
        request_id: rid(request),
        cluster: cname(cluster),
        results_dir: dir(&format!("results/{request}")),
        at: warroom_proto::now(),
        attempt: 1,
        turn: 0,
        kind,
        redacted: BTreeMap::new(),
    }
}

fn tool_call(command: &str) -> AuditKind {
    AuditKind::ToolCall {
        tool_use_id: "toolu_1".to_owned(),
        tool: "Bash".to_owned(),
        input: serde_json::json!({ "command": command }),
    }
}

fn tool_result(output: &str) -> AuditKind {
    AuditKind::ToolResult {
        tool_use_id: "toolu_1".to_owned(),
        is_error: false,
        output: output.to_owned(),
    }
}

fn audit_ids(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| {
            let value: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?} is not JSON: {e}"));
            value["id"]
                .as_str()
                .expect("every line has an id")
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_request_lands_in_git_with_reports_and_audit() {
    let stack = Stack::start().await;
    let id = "r-complete";
    stack
        .status(&with_cluster(
            status(id, RequestPhase::Dispatched, 1),
            "prod-1",
            ClusterPhase::Dispatched,
        ))
        .await;
    let events = [
        event(
            id,
            "prod-1",
            1,
            AuditKind::Started {
                runner: "runner-0".to_owned(),
                allowed: vec!["Bash(kubectl get:*)".to_owned()],
                denied: Vec::new(),
            },
        ),
        event(id, "prod-1", 2, tool_call("kubectl get pods -n etcd")),
        event(
            id,
            "prod-1",
            3,
            tool_result(
                "NAME     READY   STATUS    RESTARTS   AGE\netcd-0   1/1     Running   0          3d",
            ),
        ),
        event(
            id,
            "prod-1",
            4,
            AuditKind::Finished {
                outcome: Outcome::Completed,
                error: None,
                report_redacted: BTreeMap::new(),
            },
        ),
    ];
    for e in &events {
        stack.event(e).await;
    }
    let done = with_report(
        with_cluster(
            status(id, RequestPhase::Completed, 3),
            "prod-1",
            ClusterPhase::Completed,
        ),
        "prod-1",
        "## Root cause\n\netcd-0 is healthy; the latency comes from the disk.",
    );
    stack.status(&done).await;

    let status = stack.wait_status(id, "completed").await;
    assert_eq!(status["id"], id);
    assert_eq!(status["revision"], 3);
    assert_eq!(status["results_dir"], format!("results/{id}"));
    assert_eq!(status["clusters"]["prod-1"]["phase"], "completed");
    assert_eq!(status["clusters"]["prod-1"]["report"], "prod-1.md");
    assert!(status.get("error").is_none(), "{status}");
    let updated_at = status["updated_at"]
        .as_str()
        .expect("updated_at is a string");
    assert!(
        time::OffsetDateTime::parse(updated_at, &time::format_description::well_known::Rfc3339)
            .is_ok()
    );

    let report = stack
        .remote
        .read(&format!("results/{id}/prod-1.md"))
        .expect("the cluster report");
    assert!(
        report.contains("etcd-0 is healthy; the latency comes from the disk."),
        "{report}"
    );
    assert!(
        report.contains("**completed**") && report.contains("1m 23s") && report.contains("$0.0421"),
        "{report}"
    );

    let readme = stack
        .remote
        .read(&format!("results/{id}/README.md"))
        .expect("the aggregated report");
    assert!(readme.starts_with("# etcd-latency"), "{readme}");
    assert!(readme.contains("[prod-1.md](prod-1.md)"), "{readme}");
    assert!(readme.contains("| Engineer | alice |"), "{readme}");
    assert!(readme.contains("Check etcd health."), "{readme}");

    let audit = stack
        .wait_file(&format!("results/{id}/audit.jsonl"), "has 4 lines", |t| {
            t.lines().count() == 4
        })
        .await;
    let expected: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    assert_eq!(audit_ids(&audit), expected);
    assert!(
        audit.contains(r#""command":"kubectl get pods -n etcd""#),
        "{audit}"
    );
    // Every line says which run of the task it belongs to.
    assert!(
        audit.lines().all(|line| line.contains(r#""attempt":1"#)),
        "{audit}"
    );

    let author = stack
        .remote
        .git(["log", "-1", "--format=%an <%ae>", "main"]);
    assert_eq!(author.trim(), "claude-warroom <warroom@localhost>");
    assert!(
        stack
            .remote
            .log_subjects()
            .iter()
            .any(|s| s.starts_with(&format!("results: {id}"))),
        "{:?}",
        stack.remote.log_subjects()
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_in_reports_and_audit_lines_never_reach_git() {
    let stack = Stack::start().await;
    let id = "r-secrets";
    let jwt = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJzdWIiOiJzeXN0ZW06c2EifQ.c2lnbmF0dXJlMTIz";
    let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEAsecretkeymaterial\n-----END RSA PRIVATE KEY-----";
    let github = "ghp_0123456789abcdefghijABCDEFGHIJ0123";
    stack
        .status(&with_cluster(
            status(id, RequestPhase::Running, 1),
            "hub",
            ClusterPhase::Running,
        ))
        .await;
    stack
        .event(&event(
            id,
            "hub",
            1,
            tool_call(&format!(
                "curl -H 'Authorization: Bearer {jwt}' https://api"
            )),
        ))
        .await;
    stack
        .event(&event(
            id,
            "hub",
            2,
            tool_result(&format!("{pem}\nGITHUB_TOKEN={github}\n")),
        ))
        .await;
    let mut done = with_report(
        with_cluster(
            status(id, RequestPhase::Completed, 2),
            "hub",
            ClusterPhase::Completed,
        ),
        "hub",
        &format!("Found the DB credentials: password=hunter2, and a token {jwt}."),
    );
    done.reports
        .get_mut("hub")
        .expect("the report")
        .permission_denials = vec![Denial {
        tool: "Bash".to_owned(),
        tool_use_id: "toolu_9".to_owned(),
        input: serde_json::json!({ "command": "kubectl get secret db -o yaml", "token": "sha256~leaked" }),
    }];
    stack.status(&done).await;
    stack.wait_status(id, "completed").await;
    let audit = stack
        .wait_file(&format!("results/{id}/audit.jsonl"), "has 2 lines", |t| {
            t.lines().count() == 2
        })
        .await;
    assert_eq!(audit_ids(&audit).len(), 2, "every line stays valid JSON");

    let mut everything = String::new();
    for file in stack.files().iter().filter(|f| f.starts_with("results/")) {
        everything.push_str(&stack.remote.read(file).expect("a listed file"));
    }
    for secret in [
        "hunter2",
        "c2lnbmF0dXJlMTIz",
        "secretkeymaterial",
        github,
        "sha256~leaked",
    ] {
        assert!(
            !everything.contains(secret),
            "{secret} reached git:\n{everything}"
        );
    }
    for kind in ["password", "jwt", "private_key", "github_token"] {
        assert!(
            everything.contains(&format!("[REDACTED:{kind}]")),
            "no [REDACTED:{kind}] in:\n{everything}"
        );
    }
    let report = stack
        .remote
        .read(&format!("results/{id}/hub.md"))
        .expect("the report");
    assert!(report.contains("password=[REDACTED:password]"), "{report}");
    assert!(report.contains("kubectl get secret db -o yaml"), "{report}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_race_with_an_engineer_loses_nothing() {
    let stack = Stack::start().await;
    // The remote holds the publisher's first push until the test has pushed an engineer's
    // request, so the publisher's push is the one that loses the race, every time.
    let markers = tempfile::tempdir().expect("a marker folder");
    let first = markers.path().join("first-push");
    let release = markers.path().join("release");
    let hook = stack.remote.path().join("hooks").join("pre-receive");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nif [ ! -e '{first}' ]; then\n  touch '{first}'\n  i=0\n  while [ ! -e '{release}' ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done\nfi\nexit 0\n",
            first = first.display(),
            release = release.display()
        ),
    )
    .expect("the hook is written");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))
            .expect("the hook is executable");
    }
    let engineer = stack.remote.work_clone();

    let id = "r-race";
    stack
        .status(&with_report(
            with_cluster(
                status(id, RequestPhase::Completed, 2),
                "hub",
                ClusterPhase::Completed,
            ),
            "hub",
            "Nothing wrong.",
        ))
        .await;
    wait_until(
        "the publisher's first push reaches the remote",
        DEFAULT_TIMEOUT,
        || {
            let seen = first.exists();
            async move { seen }
        },
    )
    .await;
    let engineer = tokio::task::spawn_blocking(move || {
        engineer.write(
            "requests/pending/r-next.yaml",
            "kind: TroubleshootingRequest\n",
        );
        engineer.commit_all("add request r-next");
        engineer.push();
        engineer
    })
    .await
    .expect("the engineer pushes");
    std::fs::write(&release, "").expect("the hook is released");

    stack.wait_status(id, "completed").await;
    assert_eq!(
        stack.remote.read("requests/pending/r-next.yaml").as_deref(),
        Some("kind: TroubleshootingRequest\n"),
        "the engineer's request survived"
    );
    let subjects = stack.remote.log_subjects();
    assert!(
        subjects.contains(&"add request r-next".to_owned()),
        "{subjects:?}"
    );
    assert!(subjects[0].starts_with("results: r-race"), "{subjects:?}");
    assert!(stack.health.metrics.push_retries.get() >= 1);
    drop(engineer);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_audit_event_is_written_once() {
    let stack = Stack::start().await;
    let id = "r-dup";
    stack
        .status(&with_cluster(
            status(id, RequestPhase::Running, 1),
            "hub",
            ClusterPhase::Running,
        ))
        .await;
    let one = event(id, "hub", 1, tool_call("kubectl get nodes"));
    let two = event(id, "hub", 2, tool_call("kubectl top nodes"));
    // A repeat within one batch...
    stack.event(&one).await;
    stack.event(&one).await;
    stack.event(&two).await;
    let path = format!("results/{id}/audit.jsonl");
    stack
        .wait_file(&path, "has event 2", |t| t.contains(&two.id))
        .await;
    // ...and in a later batch, after the first one was pushed.
    stack.event(&one).await;
    let three = event(id, "hub", 3, tool_call("kubectl get events"));
    stack.event(&three).await;
    let audit = stack
        .wait_file(&path, "has event 3", |t| t.contains(&three.id))
        .await;
    assert_eq!(
        audit_ids(&audit),
        [one.id.clone(), two.id.clone(), three.id.clone()]
    );
    // The counters move just after the push that the file came with.
    wait_until(
        "both repeats counted as skipped",
        DEFAULT_TIMEOUT,
        || async { stack.health.metrics.messages_skipped.get() >= 2 },
    )
    .await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_redelivered_events_are_not_duplicated_and_find_their_folder() {
    let mut stack = Stack::start().await;
    let id = "r-restart";
    let mut running = with_cluster(
        status(id, RequestPhase::Running, 1),
        "hub",
        ClusterPhase::Running,
    );
    running.status.results_dir = dir(&format!("results/2026/{id}"));
    stack.status(&running).await;
    let one = in_folder(
        "results/2026/r-restart",
        event(id, "hub", 1, tool_call("kubectl get nodes")),
    );
    stack.event(&one).await;
    let path = format!("results/2026/{id}/audit.jsonl");
    stack
        .wait_file(&path, "has event 1", |t| t.contains(&one.id))
        .await;

    // A new publisher, with a new working clone and no memory of the request's folder,
    // receives the event again (as after a crash before its ack) and a new one.
    stack.halt().await;
    stack.event(&one).await;
    let two = in_folder(
        "results/2026/r-restart",
        event(id, "hub", 2, tool_call("kubectl top nodes")),
    );
    stack.event(&two).await;
    stack.spawn();
    let audit = stack
        .wait_file(&path, "has event 2", |t| t.contains(&two.id))
        .await;
    assert_eq!(audit_ids(&audit), [one.id.clone(), two.id.clone()]);
    assert!(
        !stack
            .files()
            .iter()
            .any(|f| f.starts_with(&format!("results/{id}/"))),
        "{:?}",
        stack.files()
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_status_never_overwrites_a_newer_one() {
    let stack = Stack::start().await;
    let id = "r-order";
    stack
        .status(&with_cluster(
            status(id, RequestPhase::Running, 3),
            "hub",
            ClusterPhase::Running,
        ))
        .await;
    stack.wait_status(id, "running").await;
    stack
        .status(&with_cluster(
            status(id, RequestPhase::Dispatched, 2),
            "hub",
            ClusterPhase::Dispatched,
        ))
        .await;
    let marker = event(id, "hub", 1, tool_call("kubectl get pods"));
    stack.event(&marker).await;
    stack
        .wait_file(
            &format!("results/{id}/audit.jsonl"),
            "has the marker",
            |t| t.contains(&marker.id),
        )
        .await;
    let status: serde_json::Value = serde_json::from_str(
        &stack
            .remote
            .read(&format!("results/{id}/status.json"))
            .expect("status.json"),
    )
    .expect("JSON");
    assert_eq!(status["revision"], 3);
    assert_eq!(status["phase"], "running");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_request_lists_its_field_errors() {
    let stack = Stack::start().await;
    let id = "r-rejected";
    let mut rejected = status(id, RequestPhase::Rejected, 1);
    rejected.request = None;
    rejected.status.error = Some(format!(
        "invalid request requests/pending/{id}.yaml: spec.investigation.timeout: 5 is below 30 (and 1 more)"
    ));
    rejected.status.errors = vec![
        FieldError {
            field: "spec.investigation.timeout".to_owned(),
            message: "5 is below 30".to_owned(),
        },
        FieldError {
            field: "metadata.engineer".to_owned(),
            message: "is required".to_owned(),
        },
    ];
    stack.status(&rejected).await;
    let status = stack.wait_status(id, "rejected").await;
    assert_eq!(
        status["errors"],
        serde_json::json!([
            {"field": "spec.investigation.timeout", "message": "5 is below 30"},
            {"field": "metadata.engineer", "message": "is required"},
        ])
    );
    assert!(
        status["error"]
            .as_str()
            .is_some_and(|e| e.contains("(and 1 more)")),
        "{status}"
    );
    let readme = stack
        .remote
        .read(&format!("results/{id}/README.md"))
        .expect("README.md");
    assert!(readme.contains("## Validation errors"), "{readme}");
    assert!(
        readme.contains("- `metadata.engineer`: is required"),
        "{readme}"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_with_a_bad_path_is_refused_and_does_not_block_the_next() {
    let stack = Stack::start().await;
    // A folder outside results/ cannot even be built as a ResultsDir: send the JSON by hand.
    let mut escaping =
        serde_json::to_value(status("r-bad", RequestPhase::Running, 1)).expect("JSON");
    escaping["status"]["results_dir"] = serde_json::json!("../x");
    stack
        .raw(
            &Subject::Status(rid("r-bad")).to_string(),
            escaping.to_string().as_bytes(),
        )
        .await;
    stack
        .raw(&Subject::Status(rid("r-garbage")).to_string(), b"{not json")
        .await;
    let bad_cluster = event("r-bad", "hub", 1, tool_call("x"));
    let mut bad_cluster_json = serde_json::to_value(&bad_cluster).expect("JSON");
    bad_cluster_json["cluster"] = serde_json::json!("../../etc");
    stack
        .raw(
            &Subject::Event(rid("r-bad"), cname("hub")).to_string(),
            bad_cluster_json.to_string().as_bytes(),
        )
        .await;

    // The next request, with its results in a folder of its own choosing.
    let id = "r-good";
    let mut good = with_cluster(
        status(id, RequestPhase::Running, 1),
        "hub",
        ClusterPhase::Running,
    );
    good.status.results_dir = dir(&format!("results/team-a/{id}"));
    stack.status(&good).await;
    let marker = in_folder(
        "results/team-a/r-good",
        event(id, "hub", 1, tool_call("kubectl get pods")),
    );
    stack.event(&marker).await;
    stack
        .wait_file(
            &format!("results/team-a/{id}/audit.jsonl"),
            "has the event",
            |t| t.contains(&marker.id),
        )
        .await;
    let status: serde_json::Value = serde_json::from_str(
        &stack
            .remote
            .read(&format!("results/team-a/{id}/status.json"))
            .expect("status.json"),
    )
    .expect("JSON");
    assert_eq!(status["results_dir"], format!("results/team-a/{id}"));

    for file in stack.files() {
        assert!(
            file.starts_with("results/team-a/r-good/")
                || file == "README.md"
                || file.starts_with("requests/"),
            "unexpected file {file}"
        );
    }
    // Refused at decoding by the bus (dead-lettered there), never reaching the publisher's
    // own counters.
    let dead = stack.nats.jetstream().await;
    wait_until("the bad messages are dead letters", DEFAULT_TIMEOUT, || {
        let js = dead.clone();
        async move {
            let Ok(mut stream) = js.get_stream(Stream::DeadLetters.name()).await else {
                return false;
            };
            stream
                .info()
                .await
                .is_ok_and(|info| info.state.messages >= 3)
        }
    })
    .await;
    // The refused messages were terminated, not left for redelivery.
    let js = stack.nats.jetstream().await;
    wait_until("no message is left unacknowledged", DEFAULT_TIMEOUT, || {
        let js = js.clone();
        async move {
            let Ok(stream) = js.get_stream(Stream::Events.name()).await else {
                return false;
            };
            let Ok(mut consumer) = stream
                .get_consumer::<async_nats::jetstream::consumer::pull::Config>(
                    names::PUBLISHER_CONSUMER,
                )
                .await
            else {
                return false;
            };
            consumer
                .info()
                .await
                .is_ok_and(|info| info.num_ack_pending == 0 && info.num_pending == 0)
        }
    })
    .await;
    stack.stop().await;
}

/// The poison messages of the issue: one batch holds a status whose folder is far too long,
/// a status and an event whose folder cannot be created because a file is in the way, and a
/// normal request's status. The normal one lands, the others end in the dead letters with
/// their reason, and after a restart nothing is stuck.
///
/// The first case is refused at the bus, before the publisher sees it: `ResultsDir` allows
/// at most 3 folders of 63 characters plus a request id of 128, far below NAME_MAX (255)
/// and PATH_MAX, and cluster report names are at most 63 + `.md`. So a message can no longer
/// make the file system answer ENAMETOOLONG, and `is_permanent` is checked by a unit test
/// (`tree::tests::file_system_errors_that_repeat_are_permanent`) instead of here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_are_dead_lettered_and_the_rest_of_the_batch_lands() {
    // Everything is in the stream before the publisher starts, so it comes as one batch.
    let mut stack = Stack::without_publisher(&[]).await;

    // Someone who can push committed a regular file where a results folder goes.
    let engineer = stack.remote.work_clone();
    engineer.write("results/r-blocked", "not a folder\n");
    engineer.commit_all("a file where a results folder goes");
    engineer.push();

    let long = format!("results/{}/r-long", "a".repeat(300));
    let mut too_long =
        serde_json::to_value(status("r-long", RequestPhase::Running, 1)).expect("a status encodes");
    too_long["status"]["results_dir"] = serde_json::json!(long);
    stack
        .raw(
            &Subject::Status(rid("r-long")).to_string(),
            too_long.to_string().as_bytes(),
        )
        .await;
    stack
        .status(&with_cluster(
            status("r-blocked", RequestPhase::Running, 1),
            "hub",
            ClusterPhase::Running,
        ))
        .await;
    stack
        .event(&event("r-blocked", "hub", 1, tool_call("kubectl get pods")))
        .await;
    stack
        .status(&with_cluster(
            status("r-normal", RequestPhase::Running, 1),
            "hub",
            ClusterPhase::Running,
        ))
        .await;
    stack.spawn();

    stack.wait_status("r-normal", "running").await;
    let letters = wait_for("three dead letters", DEFAULT_TIMEOUT, || async {
        let letters = stack.dead_letters().await;
        (letters.len() >= 3).then_some(letters)
    })
    .await;
    let by_subject = |subject: &str| {
        letters
            .iter()
            .find(|l| l.subject == subject)
            .unwrap_or_else(|| panic!("no dead letter for {subject}: {letters:?}"))
    };
    let long_letter = by_subject(&Subject::Status(rid("r-long")).to_string());
    assert!(
        long_letter.reason.contains("300 characters long"),
        "{long_letter:?}"
    );
    assert_eq!(long_letter.stream, Stream::Events.name());
    assert_eq!(long_letter.consumer, names::PUBLISHER_CONSUMER);
    assert!(
        long_letter.payload.contains(&long),
        "the message is kept as it was"
    );
    for subject in [
        Subject::Status(rid("r-blocked")),
        Subject::Event(rid("r-blocked"), cname("hub")),
    ] {
        let letter = by_subject(&subject.to_string());
        assert!(
            letter.reason.contains("results/r-blocked") && letter.reason.contains("not a folder"),
            "{letter:?}"
        );
        assert_eq!(
            letter.deliveries, 1,
            "refused at once, not retried: {letter:?}"
        );
    }
    assert_eq!(letters.len(), 3, "{letters:?}");

    // Every dead letter is counted: the two the publisher refused (a file in the way) and
    // the undecodable one the consumer set aside before it reached the publisher.
    wait_until(
        "the publisher counted its dead letters",
        DEFAULT_TIMEOUT,
        || async { stack.health.metrics.runtime.dead_letters.get() >= 3 },
    )
    .await;
    assert_eq!(stack.health.metrics.runtime.dead_letters.get(), 3);
    assert_eq!(stack.health.metrics.messages_refused.get(), 2);
    wait_until("nothing is left for the publisher", DEFAULT_TIMEOUT, || {
        stack.consumer_is_drained()
    })
    .await;
    assert_eq!(
        stack.remote.read("results/r-blocked").as_deref(),
        Some("not a folder\n"),
        "the file in the way is left alone"
    );
    for file in stack.files() {
        assert!(
            file.starts_with("results/r-normal/")
                || file == "results/r-blocked"
                || file == "README.md"
                || file.starts_with("requests/"),
            "unexpected file {file}"
        );
    }

    // A new publisher finds nothing stuck: no poison message comes back, and a new request's
    // status lands.
    stack.halt().await;
    stack.spawn();
    stack
        .status(&with_cluster(
            status("r-after", RequestPhase::Running, 1),
            "hub",
            ClusterPhase::Running,
        ))
        .await;
    stack.wait_status("r-after", "running").await;
    wait_until("nothing is left after the restart", DEFAULT_TIMEOUT, || {
        stack.consumer_is_drained()
    })
    .await;
    assert_eq!(
        stack.dead_letters().await.len(),
        3,
        "nothing was dead-lettered again"
    );
    assert_eq!(stack.health.metrics.runtime.dead_letters.get(), 0);
    assert!(stack.health.metrics.batches_pushed.get() >= 1);
    drop(engineer);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_the_remote_does_not_have_yet_is_created() {
    let stack = Stack::start_with(&["--branch", "warroom-results"]).await;
    let id = "r-branch";
    stack
        .status(&with_cluster(
            status(id, RequestPhase::Dispatched, 1),
            "hub",
            ClusterPhase::Dispatched,
        ))
        .await;
    let spec = format!("warroom-results:results/{id}/status.json");
    wait_until("the new branch holds the status", DEFAULT_TIMEOUT, || {
        let found = stack.remote.try_git(["cat-file", "-e", &spec]).is_ok();
        async move { found }
    })
    .await;
    // A second batch builds on the branch it created.
    stack
        .status(&with_cluster(
            status(id, RequestPhase::Running, 2),
            "hub",
            ClusterPhase::Running,
        ))
        .await;
    wait_until(
        "the branch holds the second status",
        DEFAULT_TIMEOUT,
        || {
            let running = stack
                .remote
                .try_git(["cat-file", "blob", &spec])
                .is_ok_and(|t| t.contains("\"running\""));
            async move { running }
        },
    )
    .await;
    let commits = stack.remote.git(["rev-list", "--count", "warroom-results"]);
    assert_eq!(commits.trim(), "2");
    assert!(
        stack.remote.read("results/r-branch/status.json").is_none(),
        "main was not touched"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_signing_key_every_result_commit_is_signed_by_it() {
    let key = SshKey::generate("warroom-publisher");
    let stack =
        Stack::start_with(&["--signing-key", &key.private_key().display().to_string()]).await;
    let id = "r-signed";
    stack.status(&status(id, RequestPhase::Dispatched, 1)).await;
    stack.wait_status(id, "dispatched").await;
    stack.status(&status(id, RequestPhase::Completed, 2)).await;
    stack.wait_status(id, "completed").await;

    // git itself checks each signature against an allowed-signers file with only this key.
    let allowed = key.allowed_signers("publisher");
    let allowed = format!("gpg.ssh.allowedSignersFile={}", allowed.display());
    let commits = stack
        .remote
        .git(["log", "--format=%H", "main", "--", "results/"]);
    let commits: Vec<&str> = commits.lines().collect();
    assert!(!commits.is_empty(), "no result commits on main");
    for commit in &commits {
        stack
            .remote
            .try_git(["-c", &allowed, "verify-commit", commit])
            .unwrap_or_else(|failure| panic!("result commit {commit} does not verify: {failure}"));
    }
    let signers = stack.remote.git([
        "-c",
        &allowed,
        "log",
        "--format=%G? %GK %GS",
        "main",
        "--",
        "results/",
    ]);
    for line in signers.lines() {
        assert_eq!(
            line,
            format!("G {} publisher", key.fingerprint()),
            "{signers}"
        );
    }

    // Another key's allowed-signers file does not vouch for them.
    let other = SshKey::generate("someone-else").allowed_signers("publisher");
    let refused = stack.remote.try_git([
        "-c",
        &format!("gpg.ssh.allowedSignersFile={}", other.display()),
        "verify-commit",
        commits[0],
    ]);
    assert!(refused.is_err(), "a commit verified under another key");
    stack.stop().await;
}

#[tokio::test]
async fn a_signing_key_that_cannot_sign_stops_the_publisher_at_start() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let public_only = SshKey::generate("public-only");
    let config = Config::try_parse_from([
        "warroom-publisher",
        "--repo",
        "/srv/git/warroom.git",
        // A public key is not a signing key.
        "--signing-key",
        &public_only.public_key_file().display().to_string(),
        "--work-dir",
        &dir.path().display().to_string(),
        "--nats-url",
        "nats://127.0.0.1:1",
    ])
    .expect("the arguments parse");
    let result = tokio::time::timeout(Duration::from_secs(5), validated_run(config))
        .await
        .expect("run returns at once");
    let error = result.expect_err("the key is refused").to_string();
    assert!(
        error.contains("--signing-key") && error.contains("not a usable SSH private key"),
        "{error}"
    );
}

#[tokio::test]
async fn an_invalid_configuration_fails_before_any_io() {
    let config = Config::try_parse_from([
        "warroom-publisher",
        "--repo",
        "https://user:token@example.com/r.git",
        // Nothing listens here: the error must come before a connection is tried.
        "--nats-url",
        "nats://127.0.0.1:1",
    ])
    .expect("the arguments parse");
    let result = tokio::time::timeout(Duration::from_secs(5), validated_run(config))
        .await
        .expect("run returns at once");
    let error = result
        .expect_err("the configuration is refused")
        .to_string();
    assert!(error.contains("credentials"), "{error}");
}

fn git_in(dir: &std::path::Path, args: &[&str]) -> String {
    let output = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(output.status.success(), "git {args:?}: {output:?}");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// The publisher fetches only the branch's tip, so its first batch after a start costs the
/// same whatever the history; a restart keeps its working clone; pushes from the shallow
/// clone keep the remote's history whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publisher_fetches_only_the_tip_and_keeps_its_clone_across_restarts() {
    let mut stack = Stack::without_publisher(&[]).await;
    let engineer = stack.remote.work_clone();
    for n in 0..30 {
        engineer.write("requests/pending/history.txt", format!("commit {n}\n"));
        engineer.commit_all(&format!("history {n}"));
    }
    engineer.push();
    let before = git_in(&stack.remote.path(), &["rev-list", "--count", "main"]);
    stack.spawn();
    stack.status(&completed_on_hub("r-tip-1")).await;
    stack.wait_status("r-tip-1", "completed").await;

    let clone = stack.clone_dir(1);
    assert!(clone.join(".git/shallow").is_file(), "the clone is shallow");
    let local: u32 = git_in(&clone, &["rev-list", "--count", "HEAD"])
        .parse()
        .expect("a count");
    assert!(local <= 2, "the clone holds {local} commits of the history");
    // A marker in the clone's .git survives the restart: the folder is reused, not cloned again.
    let marker = clone.join(".git/warroom-test-marker");
    std::fs::write(&marker, "kept").expect("write the marker");
    stack.halt().await;
    stack.spawn_in(1);
    stack.status(&completed_on_hub("r-tip-2")).await;
    stack.wait_status("r-tip-2", "completed").await;
    assert!(marker.is_file(), "the working clone was made anew");
    let after: u32 = git_in(&stack.remote.path(), &["rev-list", "--count", "main"])
        .parse()
        .expect("a count");
    let before: u32 = before.parse().expect("a count");
    assert!(
        after >= before + 2,
        "the remote's history is whole: {before} -> {after}"
    );
    assert!(stack.remote.read("results/r-tip-1/status.json").is_some());
    stack.stop().await;
}

/// Two publishers: the lease holder writes, the other stands by; when the holder stops, the
/// other takes over and writes the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_publishers_write_one_at_a_time() {
    let mut stack = Stack::start_with(&["--replica-id", "publisher-a", "--lease-ttl", "2s"]).await;
    let first = stack.health.clone();
    wait_until(
        "the first publisher holds the lease",
        DEFAULT_TIMEOUT,
        || {
            let first = first.clone();
            async move { first.metrics.runtime.active.get() == 1 }
        },
    )
    .await;
    let config = Config::try_parse_from([
        "warroom-publisher",
        "--repo",
        &stack.remote.file_url(),
        "--work-dir",
        &stack.clone_dir(99).display().to_string(),
        "--batch-window",
        "100ms",
        "--nats-url",
        stack.nats.url(),
        "--replica-id",
        "publisher-b",
        "--lease-ttl",
        "2s",
    ])
    .expect("the test's arguments parse");
    let second = Health::new();
    let (stop_second, stopped) = oneshot::channel::<()>();
    let settings = config
        .validate()
        .expect("the test's configuration is valid");
    let second_task = tokio::spawn(warroom_publisher::run(
        settings,
        second.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    stack.status(&completed_on_hub("r-one")).await;
    stack.wait_status("r-one", "completed").await;
    let pushed = first.clone();
    wait_until(
        "the first publisher counts its push",
        DEFAULT_TIMEOUT,
        || {
            let pushed = pushed.clone();
            async move { pushed.metrics.batches_pushed.get() >= 1 }
        },
    )
    .await;
    assert_eq!(
        second.metrics.runtime.active.get(),
        0,
        "the second stands by"
    );
    assert_eq!(second.metrics.batches_pushed.get(), 0);

    stack.halt().await;
    stack.status(&completed_on_hub("r-two")).await;
    stack.wait_status("r-two", "completed").await;
    assert_eq!(
        second.metrics.runtime.active.get(),
        1,
        "the second took over"
    );
    let pushed = second.clone();
    wait_until(
        "the second publisher counts its push",
        DEFAULT_TIMEOUT,
        || {
            let pushed = pushed.clone();
            async move { pushed.metrics.batches_pushed.get() >= 1 }
        },
    )
    .await;
    let _ = stop_second.send(());
    second_task
        .await
        .expect("the second publisher did not panic")
        .expect("the second publisher ends without an error");
}

/// A batch's new files go into one pack in the working clone, not one loose object file each:
/// on a slow file system, a file per object made a wide request's batch cost a second.
#[tokio::test]
async fn a_batchs_files_are_added_as_one_pack_not_a_file_each() {
    const CLUSTERS: usize = 40;
    let stack = Stack::start().await;
    let mut update = status("r-wide", RequestPhase::Completed, 2);
    for n in 0..CLUSTERS {
        let cluster = format!("hosted-{n:02}");
        update = with_cluster(update, &cluster, ClusterPhase::Completed);
        update = with_report(update, &cluster, &format!("FINDING: cluster {n} is fine."));
    }
    stack.status(&update).await;
    stack.wait_status("r-wide", "completed").await;
    for n in [0, CLUSTERS - 1] {
        let report = stack
            .remote
            .read(&format!("results/r-wide/hosted-{n:02}.md"))
            .expect("the cluster's report is in git");
        assert!(report.contains(&format!("cluster {n} is fine")), "{report}");
    }

    // The loose objects left are the commit and its trees (and what the first fetch
    // unpacked), not the 40 reports, the README and the status.
    let clone = stack.clone_dir(1);
    let counts = git_in(&clone, &["count-objects", "-v"]);
    let loose: usize = counts
        .lines()
        .find_map(|line| line.strip_prefix("count: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("git count-objects -v says: {counts}"));
    assert!(
        loose < 20,
        "{loose} loose objects after a batch of {} files:\n{counts}",
        CLUSTERS + 2
    );
    stack.stop().await;
}

/// Right after its own push, the publisher's next batch goes on top of that commit without a
/// fetch. When the branch moved meanwhile (an engineer's push), the batch is redone on the
/// new head within the same attempt and the engineer's commit is kept; when it was set back
/// (an administrator rewound it), the publisher's push does not bring the dropped commit
/// back either: every push is leased on the commit its batch started from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_after_the_publishers_own_push_skips_the_fetch_but_never_a_moved_branch() {
    let stack = Stack::start().await;
    let metrics = &stack.health.metrics;

    stack.status(&completed_on_hub("r-own-1")).await;
    stack.wait_status("r-own-1", "completed").await;
    let first = stack.remote.head();
    let fetched = metrics.fetches.get();
    assert!(fetched >= 1, "the first batch fetched the branch");

    // Nobody else pushed: no fetch, and the commit goes right on top of the last one.
    stack.status(&completed_on_hub("r-own-2")).await;
    stack.wait_status("r-own-2", "completed").await;
    let second = stack.remote.head();
    assert_eq!(metrics.fetches.get(), fetched, "the second batch fetched");
    assert_eq!(
        stack
            .remote
            .git(["rev-parse", &format!("{second}^")])
            .trim(),
        first
    );

    // An engineer pushes a request: the publisher's push on its own last commit is refused,
    // and the batch lands on the engineer's commit at once (no retry pause).
    let engineer = stack.remote.work_clone();
    engineer.write(
        "requests/pending/r-next.yaml",
        "kind: TroubleshootingRequest\n",
    );
    let engineers = engineer.commit_all("add request r-next");
    engineer.push();
    stack.status(&completed_on_hub("r-own-3")).await;
    stack.wait_status("r-own-3", "completed").await;
    let third = stack.remote.head();
    assert_eq!(
        stack.remote.git(["rev-parse", &format!("{third}^")]).trim(),
        engineers.trim(),
        "the batch was redone on the engineer's commit"
    );
    assert_eq!(
        stack.remote.read("requests/pending/r-next.yaml").as_deref(),
        Some("kind: TroubleshootingRequest\n")
    );
    assert_eq!(metrics.pushes_on_moved_branch.get(), 1);
    assert_eq!(metrics.fetches.get(), fetched + 1);
    assert_eq!(metrics.push_retries.get(), 0);

    // The branch is set back to the engineer's commit. A plain fast-forward push of a batch
    // built on `third` would succeed and bring `third` back; the lease refuses it and the
    // batch lands on the rewound branch.
    stack
        .remote
        .git(["update-ref", "refs/heads/main", engineers.trim()]);
    stack.status(&completed_on_hub("r-own-4")).await;
    stack.wait_status("r-own-4", "completed").await;
    let fourth = stack.remote.head();
    assert_eq!(
        stack
            .remote
            .git(["rev-parse", &format!("{fourth}^")])
            .trim(),
        engineers.trim(),
        "the rewound commit came back"
    );
    assert_eq!(stack.remote.read("results/r-own-3/status.json"), None);
    assert_eq!(metrics.pushes_on_moved_branch.get(), 2);
    stack.stop().await;
}

/// A request's final status is committed as soon as no more messages are waiting, not at the
/// end of the batch window: with a window longer than the tests' deadline, the batch that
/// a `running` snapshot opened still lands once the final one of another request arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_status_closes_its_batch_without_waiting_out_the_window() {
    let stack = Stack::start_with(&["--batch-window", "60s"]).await;
    stack
        .status(&with_cluster(
            status("r-open", RequestPhase::Running, 1),
            "hub",
            ClusterPhase::Running,
        ))
        .await;
    stack.status(&completed_on_hub("r-close")).await;
    stack.wait_status("r-close", "completed").await;
    stack.wait_status("r-open", "running").await;
    // The commit is on the remote as soon as the push has updated the branch, but the
    // publisher counts the batch only after `git push` returned and it acked every message:
    // reading the count right after seeing the files raced that (on a loaded machine it was
    // still 0). Wait for the count; a second batch would have taken the 60 s window.
    wait_until("the batch is counted", DEFAULT_TIMEOUT, || async {
        stack.health.metrics.batches_pushed.get() >= 1
    })
    .await;
    assert_eq!(stack.health.metrics.batches_pushed.get(), 1);
    stack.stop().await;
}

/// `warroom-publisher --check`: a good configuration (a usable signing key, the token as a
/// file) passes without NATS being there; a bad one lists every problem at once.
#[test]
fn check_reads_every_file_and_reports_every_problem_without_connecting() {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_warroom-publisher"));
    let key = warroom_testkit::SshKey::generate("publisher");
    let dir = tempfile::tempdir().expect("a temporary folder");
    let token = dir.path().join("token");
    std::fs::write(&token, "ghp_push\n").expect("writing the token");
    let url = warroom_testkit::unused_nats_url();
    let key_path = key.private_key();
    let good = warroom_testkit::run_check(
        bin,
        &[
            "--repo",
            "https://git.example.com/org/warroom.git",
            "--signing-key",
            key_path.to_str().expect("utf-8"),
            "--git-token-file",
            token.to_str().expect("utf-8"),
            "--nats-url",
            &url,
        ],
        &[],
    );
    good.assert_ok();
    assert!(
        good.stdout
            .contains(&format!("signing with {}", key.public_key())),
        "{good:#?}"
    );

    let empty = dir.path().join("empty-token");
    std::fs::write(&empty, "\n").expect("writing the empty token");
    let bad = warroom_testkit::run_check(
        bin,
        &[
            "--repo",
            "https://git.example.com/org/warroom.git",
            "--signing-key",
            token.to_str().expect("utf-8"),
            "--nats-url",
            &url,
        ],
        &[("WARROOM_GIT_TOKEN_FILE", empty.to_str().expect("utf-8"))],
    );
    bad.assert_problems(
        "warroom-publisher",
        &[
            "--git-token-file (WARROOM_GIT_TOKEN_FILE)",
            "the file is empty",
            "is not a usable SSH private key",
        ],
    );
}

/// OpenShift runs the publisher under an arbitrary UID that /etc/passwd does not list, where
/// `ssh-keygen` refuses to run ("No user exists for uid ..."). The publisher wraps its
/// children with nss_wrapper there, so its signing key is still usable.
#[test]
fn the_signing_key_works_under_a_uid_without_a_passwd_entry() {
    use warroom_testkit::{command_without_passwd, give_to_uid_without_passwd};
    let key = warroom_testkit::SshKey::generate("publisher");
    let key_path = key.private_key();
    let key_dir = key_path.parent().expect("the key's folder").to_owned();
    give_to_uid_without_passwd(&key_dir);

    // Without the wrapper, ssh-keygen fails the way the issue says.
    let bare = command_without_passwd(std::path::Path::new("ssh-keygen"))
        .args(["-y", "-P", "", "-f"])
        .arg(&key_path)
        .output()
        .expect("running ssh-keygen through setpriv");
    assert!(!bare.status.success());
    let stderr = String::from_utf8_lossy(&bare.stderr);
    assert!(
        stderr.contains(&format!(
            "No user exists for uid {}",
            warroom_testkit::UID_WITHOUT_PASSWD
        )),
        "{stderr}"
    );

    let url = warroom_testkit::unused_nats_url();
    let output = command_without_passwd(std::path::Path::new(env!(
        "CARGO_BIN_EXE_warroom-publisher"
    )))
    .args([
        "--check",
        "--repo",
        "/srv/git/warroom.git",
        "--nats-url",
        &url,
    ])
    .arg("--signing-key")
    .arg(&key_path)
    .output()
    .expect("running the publisher through setpriv");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains(key.public_key()),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// What the publisher's binary does with `config`: validate it, then run; the refusal of
/// either, as its message.
async fn validated_run(config: Config) -> Result<(), String> {
    let settings = config.validate().map_err(|e| e.to_string())?;
    warroom_publisher::run(settings, Health::new(), std::future::pending())
        .await
        .map_err(|e| e.to_string())
}

#[path = "publisher/s3.rs"]
mod s3;

/// A burst's backlog goes to git in one commit: 1,200 requests' snapshots (2,400 messages,
/// more than one pull asks for) waiting when the publisher starts land together, and each
/// request's newest snapshot is the one written.
///
/// Fails if a batch is capped below a burst (at 500 messages this took five commits, one
/// after another, each costing about as much as the whole), or if the batch closes after
/// the first pull's messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bursts_backlog_is_committed_at_once() {
    const REQUESTS: usize = 1200;
    let mut stack = Stack::without_publisher(&["--batch-window", "5s"]).await;
    let bus = &stack.bus;
    futures::stream::iter(0..REQUESTS)
        .for_each_concurrent(64, |n| async move {
            let id = format!("burst-{n:04}");
            for (phase, revision) in [(RequestPhase::Accepted, 1), (RequestPhase::Dispatched, 2)] {
                let update = status(&id, phase, revision);
                bus.publish(&Subject::Status(update.status.id.clone()), None, &update)
                    .await
                    .expect("the status update is stored");
            }
        })
        .await;
    stack.spawn();
    wait_until("the batch is counted", DEFAULT_TIMEOUT * 3, || async {
        stack.health.metrics.batches_pushed.get() >= 1
    })
    .await;
    assert_eq!(stack.health.metrics.batches_pushed.get(), 1, "one commit");
    for n in [0, REQUESTS / 2, REQUESTS - 1] {
        let text = stack
            .remote
            .read(&format!("results/burst-{n:04}/status.json"))
            .unwrap_or_else(|| panic!("burst-{n:04}'s status is in git"));
        assert!(text.contains("\"dispatched\""), "{text}");
    }
    stack.stop().await;
}
