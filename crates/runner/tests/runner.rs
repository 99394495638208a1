//! The runner against a real nats-server and the REAL Claude Code CLI, driven by the scripted
//! model. The agent's `kubectl` is a script placed first on its PATH: it logs its arguments,
//! prints a fake pod table, with `-l app=hang` records its pid and hangs (a long-running
//! tool the timeout must stop; a selector, because the guard refuses `--watch`), and with
//! `-l app=gate` marks that it entered and waits until the test opens the gate.

use std::path::{Path, PathBuf};
use std::time::Duration;
use warroom_runtime::daemon::Daemon as _;

use async_nats::jetstream;
use futures::StreamExt as _;
use serde::de::DeserializeOwned;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use warroom_proto::{
    AuditEvent, AuditKind, ClusterPhase, ClusterRef, ClusterType, Issue, Outcome, RunnerHeartbeat,
    RunnerReport, Task, TaskRecord, TaskResult, Tool, names,
};
use warroom_runner::Config;
use warroom_runtime::Bus;
use warroom_scripted_model::{Conversation, Script, ScriptedModel, ToolCall, Turn};
use warroom_testkit::{NatsServer, tools, wait_for, wait_until};

// One test binary per crate: further test modules live in `tests/runner/`.
#[path = "runner/conversation.rs"]
mod conversation;
#[path = "runner/session_pods.rs"]
mod session_pods;
#[path = "runner/turns.rs"]
mod turns;

const CLUSTER: &str = "prod-cluster-1";
/// Long enough for a loaded two-core machine to start the CLI a few times.
const WAIT: Duration = Duration::from_secs(60);
const FAKE_TABLE: &str = "NAMESPACE     NAME                 READY   STATUS\n\
                          kube-system   etcd-0               1/1     Running\n\
                          openshift-api api-7d9f-warroomx    0/1     CrashLoopBackOff";

/// A nats-server, a scripted model, the fake `kubectl`, and a runner started with `run()`.
struct Harness {
    nats: NatsServer,
    model: ScriptedModel,
    dir: TempDir,
    bus: Bus,
    js: jetstream::Context,
    /// The running runners (replicas of the same cluster), each with its shutdown trigger.
    runners: Vec<(oneshot::Sender<()>, JoinHandle<warroom_runner::Result<()>>)>,
    url: String,
}

impl Harness {
    async fn start(script: Script, extra_args: &[&str]) -> Harness {
        let mut harness = Harness::without_runner(script).await;
        harness.start_runner(extra_args);
        harness
    }

    /// Everything but the runner.
    async fn without_runner(script: Script) -> Harness {
        let nats = NatsServer::start().await;
        let model = ScriptedModel::start(script).await.expect("start the model");
        let dir = tempfile::tempdir().expect("temp dir");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).expect("bin dir");
        std::fs::create_dir(dir.path().join("work")).expect("work root");
        std::fs::create_dir(dir.path().join("gate")).expect("gate dir");
        let kubectl = bin.join("kubectl");
        std::fs::write(
            &kubectl,
            format!(
                "#!/bin/sh\n\
                 echo \"$*\" >> '{log}'\n\
                 env > '{env}'\n\
                 case \"$*\" in\n\
                 *app=hang*)\n\
                   if [ ! -e '{once}' ]; then touch '{once}'; echo $$ > '{pid}'; exec sleep 60; fi;;\n\
                 *app=gate*)\n\
                   touch '{gate}/entered-'$$\n\
                   while [ ! -e '{gate}/open' ]; do sleep 0.1; done;;\n\
                 esac\n\
                 printf '%s\\n' '{table}'\n",
                log = dir.path().join("kubectl.log").display(),
                env = dir.path().join("kubectl.env").display(),
                once = dir.path().join("hung-once").display(),
                pid = dir.path().join("kubectl.pid").display(),
                gate = dir.path().join("gate").display(),
                table = FAKE_TABLE.replace('\'', ""),
            ),
        )
        .expect("write kubectl");
        make_executable(&kubectl);

        let bus = Bus::connect(
            &warroom_runtime::Connection::plain(nats.url()),
            "runner-test",
        )
        .await
        .expect("bus");
        let js = nats.jetstream().await;
        Harness {
            url: nats.url().to_owned(),
            nats,
            model,
            dir,
            bus,
            js,
            runners: Vec::new(),
        }
    }

    /// The runner's arguments (without the program name): the harness's, then `extra_args`.
    /// The model key is `test-key` unless `extra_args` gives one.
    fn runner_args(&self, extra_args: &[&str]) -> Vec<String> {
        let path = format!(
            "{}:{}",
            self.dir.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".to_owned())
        );
        let claude = tools::claude();
        let work = self.dir.path().join("work");
        let mut args: Vec<String> = [
            "--cluster",
            CLUSTER,
            "--nats-url",
            &self.url,
            "--claude-bin",
            claude.to_str().expect("utf-8 path"),
            "--work-root",
            work.to_str().expect("utf-8 path"),
            "--anthropic-base-url",
            &self.model.base_url(),
            "--path",
            &path,
            "--kill-grace",
            "2s",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        if !extra_args.contains(&"--anthropic-api-key") {
            args.extend(["--anthropic-api-key".to_owned(), "test-key".to_owned()]);
        }
        args.extend(extra_args.iter().map(|arg| (*arg).to_owned()));
        args
    }

    fn start_runner(&mut self, extra_args: &[&str]) {
        let args = std::iter::once("warroom-runner".to_owned()).chain(self.runner_args(extra_args));
        let config: Config = clap::Parser::try_parse_from(args).expect("valid runner arguments");
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let settings = config.validate().expect("valid runner configuration");
        let runner = tokio::spawn(warroom_runner::run(
            settings,
            warroom_runner::Health::new(),
            async move {
                let _ = stop_rx.await;
            },
        ));
        self.runners.push((stop_tx, runner));
    }

    /// Stops every runner and waits for their `run()` to return.
    async fn stop_runner(&mut self) {
        for (stop, runner) in self.runners.drain(..) {
            let _ = stop.send(());
            tokio::time::timeout(WAIT, runner)
                .await
                .expect("the runner stops within the deadline")
                .expect("the runner task did not panic")
                .expect("run() ends without an error");
        }
    }

    async fn publish_task(&self, task: &Task) {
        self.bus
            .publish(
                &warroom_proto::Subject::Task(task.cluster.name.clone()),
                Some(&format!("{}-{}", task.request_id, task.cluster.name)),
                task,
            )
            .await
            .expect("publish the task");
    }

    async fn events(&self, request: &str) -> Vec<AuditEvent> {
        stored(
            &self.js,
            warroom_proto::Stream::Events.name(),
            &warroom_proto::Subject::Event(
                request.parse().expect("request id"),
                CLUSTER.parse().expect("cluster"),
            )
            .to_string(),
        )
        .await
    }

    async fn reports(&self, request: &str) -> Vec<RunnerReport> {
        stored(
            &self.js,
            warroom_proto::Stream::Results.name(),
            &warroom_proto::Subject::Result(
                request.parse().expect("request id"),
                CLUSTER.parse().expect("cluster"),
            )
            .to_string(),
        )
        .await
    }

    /// Waits for the task's `Finished` report.
    async fn finished(&self, request: &str) -> TaskResult {
        wait_for(format!("a Finished report for {request}"), WAIT, || async {
            self.reports(request)
                .await
                .into_iter()
                .find_map(|r| match r {
                    RunnerReport::Finished(result) => Some(result),
                    RunnerReport::Started { .. }
                    | RunnerReport::Progress { .. }
                    | RunnerReport::Synthesis(_)
                    | RunnerReport::TurnStarted { .. }
                    | RunnerReport::TurnFinished(_)
                    | RunnerReport::SessionPod(_) => None,
                })
        })
        .await
    }

    /// The attempt of every `Started` report, in order.
    async fn started_attempts(&self, request: &str) -> Vec<u32> {
        self.reports(request)
            .await
            .into_iter()
            .filter_map(|r| match r {
                RunnerReport::Started { attempt, .. } => Some(attempt),
                RunnerReport::Finished(_)
                | RunnerReport::Progress { .. }
                | RunnerReport::Synthesis(_)
                | RunnerReport::TurnStarted { .. }
                | RunnerReport::TurnFinished(_)
                | RunnerReport::SessionPod(_) => None,
            })
            .collect()
    }

    /// Writes the dispatcher's record of a task, as the dispatcher does.
    async fn record(&self, request: &str, phase: ClusterPhase) {
        let records = self
            .bus
            .bucket(names::TASKS_BUCKET, 1)
            .await
            .expect("the task records bucket");
        let record = TaskRecord {
            phase,
            attempts: 1,
            updated_at: warroom_proto::now(),
        };
        records
            .put(
                names::task_record_key(
                    &CLUSTER.parse().expect("cluster"),
                    &request.parse().expect("request id"),
                ),
                serde_json::to_vec(&record).expect("encodes").into(),
            )
            .await
            .expect("write the record");
    }

    async fn tasks_left(&self) -> u64 {
        let mut stream = self
            .js
            .get_stream(warroom_proto::Stream::Tasks.name())
            .await
            .expect("tasks stream");
        stream.info().await.expect("stream info").state.messages
    }

    async fn wait_tasks_acked(&self) {
        wait_until("the task stream is empty (acked)", WAIT, || async {
            self.tasks_left().await == 0
        })
        .await;
    }

    /// How many `kubectl -l app=gate` calls entered the gate so far.
    fn gate_entries(&self) -> usize {
        std::fs::read_dir(self.dir.path().join("gate"))
            .expect("read the gate dir")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("entered-"))
            .count()
    }

    /// Lets every `kubectl -l app=gate` call through, those waiting and those to come.
    fn open_gate(&self) {
        std::fs::write(self.dir.path().join("gate").join("open"), "").expect("open the gate");
    }

    /// Every heartbeat in the runners bucket.
    async fn heartbeats(&self) -> Vec<RunnerHeartbeat> {
        let bucket = self.bus.runners_bucket().await.expect("runners bucket");
        let Ok(keys) = bucket.keys().await else {
            return Vec::new();
        };
        let keys: Vec<String> = keys.filter_map(|k| async { k.ok() }).collect().await;
        let mut beats = Vec::new();
        for key in keys {
            if let Ok(Some(value)) = bucket.get(&key).await {
                beats.push(serde_json::from_slice(&value).expect("a heartbeat decodes"));
            }
        }
        beats
    }

    /// The cluster consumer's tasks (delivered but not acked, not delivered yet).
    async fn consumer_backlog(&self) -> (usize, u64) {
        let mut consumer: jetstream::consumer::PullConsumer = self
            .js
            .get_stream(warroom_proto::Stream::Tasks.name())
            .await
            .expect("tasks stream")
            .get_consumer(&warroom_proto::names::runner_consumer(
                &CLUSTER.parse().expect("cluster"),
            ))
            .await
            .expect("the runner's consumer");
        let info = consumer.info().await.expect("consumer info");
        (info.num_ack_pending, info.num_pending)
    }

    fn kubectl_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("kubectl.log")).unwrap_or_default()
    }

    fn work_root_entries(&self) -> usize {
        std::fs::read_dir(self.dir.path().join("work"))
            .expect("read work root")
            .count()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        for (_, runner) in &self.runners {
            runner.abort();
        }
    }
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let mut perms = std::fs::metadata(path).expect("metadata").permissions();
    perms.set_mode(0o755);
    std::fs::set_permissions(path, perms).expect("chmod");
}

/// Every message stored on `subject` in `stream`, in order.
async fn stored<T: DeserializeOwned>(
    js: &jetstream::Context,
    stream: &str,
    subject: &str,
) -> Vec<T> {
    let mut stream = js.get_stream(stream).await.expect("stream");
    let state = stream.info().await.expect("stream info").state.clone();
    let mut out = Vec::new();
    if state.messages == 0 {
        return out;
    }
    for seq in state.first_sequence..=state.last_sequence {
        if let Ok(message) = stream.get_raw_message(seq).await
            && message.subject.as_str() == subject
        {
            out.push(serde_json::from_slice(&message.payload).expect("decodes"));
        }
    }
    out
}

fn task(request: &str, timeout_secs: u64) -> Task {
    Task {
        request_id: request.parse().expect("request id"),
        results_dir: format!("results/{request}")
            .parse()
            .expect("results folder"),
        cluster: ClusterRef {
            kind: ClusterType::Hosted,
            name: CLUSTER.parse().expect("cluster"),
        },
        engineer: "jane".to_owned(),
        issue: Issue {
            category: "api-timeout".to_owned(),
            description: "The API server times out".to_owned(),
            affected_resources: vec!["deployment/api".to_owned()],
        },
        prompt: "Find out why the API times out.".to_owned(),
        allowed_tools: vec![Tool::Bash, Tool::Read],
        timeout_secs,
        strategy: None,
        namespace: Some("openshift-api".to_owned()),
        mode: None,
        prior_findings: Vec::new(),
        synthesis: None,
        follow_up: None,
        pod: None,
    }
}

fn outcomes(events: &[AuditEvent]) -> Vec<Outcome> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            AuditKind::Finished { outcome, .. } => Some(*outcome),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_command_runs_and_the_report_completes() {
    let report = "## Summary\nThe API pod is in CrashLoopBackOff.";
    let mut harness = Harness::start(
        Script::single(vec![Turn::bash("kubectl get pods -A"), Turn::text(report)]),
        &[],
    )
    .await;
    // A message that is not a task is terminated and does not block the next one.
    harness
        .js
        .publish(
            warroom_proto::Subject::Task(CLUSTER.parse().expect("cluster")).to_string(),
            "not json".into(),
        )
        .await
        .expect("publish")
        .await
        .expect("stored");
    harness.publish_task(&task("req-ok", 60)).await;

    let result = harness.finished("req-ok").await;
    assert_eq!(result.outcome, Outcome::Completed, "{result:?}");
    assert_eq!(result.final_text, report);
    assert_eq!(result.error, None);
    assert!(result.num_turns >= 2, "{result:?}");
    assert!(result.cost_usd > 0.0, "{result:?}");
    assert!(result.permission_denials.is_empty());
    harness.wait_tasks_acked().await;

    // The fake kubectl really ran, with a clean environment.
    assert_eq!(harness.kubectl_log().trim(), "get pods -A");
    let env = std::fs::read_to_string(harness.dir.path().join("kubectl.env")).expect("env");
    assert!(
        !env.contains("CARGO"),
        "the runner's environment leaked:\n{env}"
    );
    assert!(env.contains("DISABLE_AUTOUPDATER=1"));

    let events = harness.events("req-ok").await;
    for (seq, event) in events.iter().enumerate() {
        assert_eq!(event.id, format!("req-ok/{CLUSTER}/1/{seq}"));
    }
    let AuditKind::Started {
        allowed, denied, ..
    } = &events[0].kind
    else {
        panic!("first event is not Started: {events:?}");
    };
    assert!(allowed.contains(&"Bash(kubectl get:*)".to_owned()));
    assert!(denied.contains(&"Bash(kubectl delete:*)".to_owned()));
    let call = events
        .iter()
        .find_map(|e| match &e.kind {
            AuditKind::ToolCall {
                tool,
                input,
                tool_use_id,
            } => Some((tool.clone(), input["command"].clone(), tool_use_id.clone())),
            _ => None,
        })
        .expect("a ToolCall event");
    assert_eq!(call.0, "Bash");
    assert_eq!(call.1, "kubectl get pods -A");
    let output = events
        .iter()
        .find_map(|e| match &e.kind {
            AuditKind::ToolResult {
                tool_use_id,
                output,
                is_error,
            } if *tool_use_id == call.2 => Some((output.clone(), *is_error)),
            _ => None,
        })
        .expect("the call's ToolResult event");
    assert!(output.0.contains("api-7d9f-warroomx"), "{output:?}");
    assert!(!output.1);
    assert_eq!(outcomes(&events), vec![Outcome::Completed]);
    assert!(matches!(
        events.last().map(|e| &e.kind),
        Some(AuditKind::Finished { .. })
    ));

    let reports = harness.reports("req-ok").await;
    assert!(matches!(reports[0], RunnerReport::Started { .. }));
    assert_eq!(reports.len(), 3, "{reports:?}");
    // The first tool call reported the agent's progress at once, for status.json.
    let RunnerReport::Progress {
        attempt, progress, ..
    } = &reports[1]
    else {
        panic!("the second report is not a progress report: {reports:?}");
    };
    assert_eq!(*attempt, 1);
    assert_eq!(progress.tool_calls, 1);
    assert_eq!(progress.last_tool_calls, ["Bash: kubectl get pods -A"]);
    assert!(progress.turns >= 1, "{progress:?}");
    assert!(matches!(reports[2], RunnerReport::Finished(_)));

    // The agent was told where it is; its workspace and HOME are gone.
    let prompt = harness.model.turn_requests()[0].first_user_text();
    assert!(
        prompt.contains("Find out why the API times out."),
        "{prompt}"
    );
    assert!(
        prompt.contains("- Cluster: prod-cluster-1 (hosted cluster)"),
        "{prompt}"
    );
    assert_eq!(harness.work_root_entries(), 0);
    harness.stop_runner().await;
}

/// The agent answers through `--json-schema`'s StructuredOutput tool: a finding quoting the
/// output of a call it made is supported and names that call's audit line; a planted finding
/// quoting a line no call printed is kept and marked unsupported. A run that ends in free
/// text still completes, with that text and no structured report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_structured_answer_has_its_evidence_checked() {
    let answer = serde_json::json!({
        "summary": "The API pod crash-loops.",
        "findings": [
            {"claim": "The API pod crash-loops.",
             "evidence": [{"tool_use_id": "toolu_pods", "command": "kubectl get pods -A",
                           "quote": ["api-7d9f-warroomx    0/1     CrashLoopBackOff"]}]},
            {"claim": "etcd lost quorum.",
             "evidence": [{"command": "kubectl get pods -A",
                           "quote": ["etcd-0 0/1 Error"]}]}
        ],
        "ruled_out": [{"hypothesis": "node pressure", "why": "not looked at"}],
        "confidence": "medium",
        "next_steps": ["Look at the API pod's logs."],
        "not_checked": [],
        "runbook": "control-plane-health"
    });
    let script = Script::new()
        .with(
            Conversation::new(vec![
                Turn::tools(vec![
                    ToolCall::bash("kubectl get pods -A").with_id("toolu_pods"),
                ]),
                Turn::structured(answer),
            ])
            .matching("req-structured"),
        )
        .with(Conversation::new(vec![Turn::text("free text only")]));
    let harness = Harness::start(script, &[]).await;
    harness.publish_task(&task("req-structured", 60)).await;
    harness.publish_task(&task("req-free", 60)).await;

    let result = harness.finished("req-structured").await;
    assert_eq!(result.outcome, Outcome::Completed, "{result:?}");
    let report = result.report.expect("a structured report");
    assert_eq!(report.runbook.as_deref(), Some("control-plane-health"));
    assert!(report.findings[0].supported, "{report:?}");
    assert!(!report.findings[1].supported, "{report:?}");
    assert!(
        report.findings[1].evidence[0]
            .problem
            .as_deref()
            .is_some_and(|p| p.contains("is not in the call's output")),
        "{report:?}"
    );
    let events = harness.events("req-structured").await;
    let audit_id = report.findings[0].evidence[0]
        .audit_id
        .clone()
        .expect("an audit id");
    let cited = events
        .iter()
        .find(|e| e.id == audit_id)
        .expect("the cited event");
    assert!(
        matches!(&cited.kind, AuditKind::ToolResult { tool_use_id, output, .. }
            if tool_use_id == "toolu_pods" && output.contains("CrashLoopBackOff")),
        "{cited:?}"
    );
    let run = result.run.expect("run facts");
    assert!(run.cli_version.is_some(), "{run:?}");
    assert!(run.tokens.total() > 0, "{run:?}");

    let free = harness.finished("req-free").await;
    assert_eq!(free.outcome, Outcome::Completed, "{free:?}");
    assert_eq!(free.final_text, "free text only");
    assert!(free.report.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutating_command_is_refused_and_audited() {
    let mut harness = Harness::start(
        Script::single(vec![
            Turn::bash("kubectl delete pod api-7d9f-warroomx"),
            Turn::bash("kubectl get secrets -A"),
            Turn::text("I may not delete pods or read secrets."),
        ]),
        &[],
    )
    .await;
    harness.publish_task(&task("req-deny", 60)).await;
    let result = harness.finished("req-deny").await;
    // Refusals are not failures: the investigation itself completed.
    assert_eq!(result.outcome, Outcome::Completed, "{result:?}");
    let denied: Vec<_> = result
        .permission_denials
        .iter()
        .map(|d| (d.tool.as_str(), d.input["command"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        denied,
        vec![
            ("Bash", "kubectl delete pod api-7d9f-warroomx"),
            ("Bash", "kubectl get secrets -A")
        ]
    );
    let events = harness.events("req-deny").await;
    let refused: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            AuditKind::ToolRefused { input, tool, .. } => {
                Some((tool.clone(), input["command"].clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(refused.len(), 2, "{events:?}");
    assert_eq!(refused[0].1, "kubectl delete pod api-7d9f-warroomx");
    assert!(
        !harness.kubectl_log().contains("delete") && !harness.kubectl_log().contains("secret"),
        "a refused command ran: {}",
        harness.kubectl_log()
    );
    harness.wait_tasks_acked().await;
    harness.stop_runner().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn looping_model_fails_at_the_turn_limit() {
    let mut harness = Harness::start(
        Script::new()
            .with(Conversation::new(vec![Turn::bash("kubectl get pods -A")]).repeat_last()),
        &["--max-turns", "2"],
    )
    .await;
    harness.publish_task(&task("req-loop", 60)).await;
    let result = harness.finished("req-loop").await;
    assert_eq!(result.outcome, Outcome::Failed, "{result:?}");
    assert_eq!(
        result.error.as_deref(),
        Some("reached the turn limit of 2 turns")
    );
    assert_eq!(
        outcomes(&harness.events("req-loop").await),
        vec![Outcome::Failed]
    );
    harness.wait_tasks_acked().await;
    harness.stop_runner().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_error_fails_with_the_status() {
    let mut harness = Harness::start(
        Script::single(vec![Turn::server_error()]),
        &["--max-retries", "0"],
    )
    .await;
    harness.publish_task(&task("req-api", 60)).await;
    let result = harness.finished("req-api").await;
    assert_eq!(result.outcome, Outcome::Failed, "{result:?}");
    let error = result.error.unwrap_or_default();
    assert!(
        error.starts_with("the model API failed: HTTP 500"),
        "{error}"
    );
    // The API's error text is the reason, not a report.
    assert!(
        !result.final_text.contains("API Error"),
        "{}",
        result.final_text
    );
    harness.wait_tasks_acked().await;
    harness.stop_runner().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_model_times_out() {
    let mut harness = Harness::start(
        Script::single(vec![
            Turn::text("too late").delayed(Duration::from_secs(30)),
        ]),
        &[],
    )
    .await;
    let started = std::time::Instant::now();
    harness.publish_task(&task("req-slow", 2)).await;
    let result = harness.finished("req-slow").await;
    assert_eq!(result.outcome, Outcome::TimedOut, "{result:?}");
    assert!(
        result
            .error
            .as_deref()
            .unwrap_or("")
            .contains("timeout of 2 s"),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        outcomes(&harness.events("req-slow").await),
        vec![Outcome::TimedOut]
    );
    harness.wait_tasks_acked().await;
    harness.stop_runner().await;
}

/// Whether `pid` is gone (or a zombie nobody reaped yet: it runs no more).
fn process_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

async fn hung_kubectl_pid(dir: &Path) -> i32 {
    let pid_file: PathBuf = dir.join("kubectl.pid");
    wait_for("the hanging kubectl records its pid", WAIT, || async {
        std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|text| text.trim().parse::<i32>().ok())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_stops_the_whole_process_group() {
    let mut harness = Harness::start(
        Script::single(vec![
            Turn::bash("kubectl get pods -A -l app=hang"),
            Turn::text("never reached"),
        ]),
        &[],
    )
    .await;
    // Long enough for the CLI to start the tool even on a loaded machine; the tool hangs
    // for a minute, so the run ends by its timeout.
    harness.publish_task(&task("req-hang", 15)).await;
    let pid = hung_kubectl_pid(harness.dir.path()).await;
    assert!(!process_gone(pid), "the tool should be running now");
    let result = harness.finished("req-hang").await;
    assert_eq!(result.outcome, Outcome::TimedOut, "{result:?}");
    // The hung command runs in a session of its own, out of the CLI's process group: the
    // sweep at the end of the run killed it before the result was published (it would
    // otherwise sleep on for a minute).
    assert!(process_gone(pid), "the hung tool outlived its run");
    harness.wait_tasks_acked().await;
    assert_eq!(harness.work_root_entries(), 0);
    harness.stop_runner().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_hands_the_task_back_and_the_next_runner_finishes_it() {
    let mut harness = Harness::start(
        Script::single(vec![
            Turn::bash("kubectl get pods -A -l app=hang"),
            Turn::text("Second attempt finished."),
        ]),
        &[],
    )
    .await;
    harness.publish_task(&task("req-handback", 120)).await;
    let pid = hung_kubectl_pid(harness.dir.path()).await;
    harness.stop_runner().await;

    // No result, the tool is stopped, the task is back in the stream.
    assert!(
        !harness
            .reports("req-handback")
            .await
            .iter()
            .any(|r| matches!(r, RunnerReport::Finished(_))),
        "a handed-back task must not report a result"
    );
    assert!(process_gone(pid), "the agent's tool survived shutdown");
    assert!(outcomes(&harness.events("req-handback").await).is_empty());
    assert_eq!(harness.tasks_left().await, 1);

    // The fake kubectl hangs only once: the next runner completes the task as attempt 2.
    let restarted = std::time::Instant::now();
    harness.start_runner(&[]);
    let result = harness.finished("req-handback").await;
    // At once, not after the 60 s ack wait: the task was really handed back.
    assert!(
        restarted.elapsed() < Duration::from_secs(30),
        "the task came back only after {:?}",
        restarted.elapsed()
    );
    assert_eq!(result.outcome, Outcome::Completed, "{result:?}");
    assert_eq!(result.final_text, "Second attempt finished.");
    let events = harness.events("req-handback").await;
    assert!(
        events
            .iter()
            .any(|e| e.id.starts_with(&format!("req-handback/{CLUSTER}/2/"))),
        "{events:?}"
    );
    harness.wait_tasks_acked().await;
    harness.stop_runner().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_acks_keep_a_second_replica_from_taking_a_long_task() {
    // Two replicas share the cluster's consumer. The task outlives the ack wait several
    // times over; only progress acks keep the idle replica from getting it as attempt 2.
    let args = ["--ack-wait", "1s"];
    let mut harness = Harness::start(
        Script::single(vec![
            Turn::text("Slow but done.").delayed(Duration::from_secs(4)),
        ]),
        &args,
    )
    .await;
    harness.start_runner(&args);
    harness.publish_task(&task("req-long", 60)).await;
    let result = harness.finished("req-long").await;
    assert_eq!(result.outcome, Outcome::Completed, "{result:?}");
    harness.wait_tasks_acked().await;
    let started = harness
        .reports("req-long")
        .await
        .into_iter()
        .filter(|r| matches!(r, RunnerReport::Started { .. }))
        .count();
    assert_eq!(started, 1, "the task was delivered again while it ran");
    harness.stop_runner().await;
}

// --- concurrency and heartbeats ---

/// With `--concurrency 2` one replica runs two tasks at once, and a third waits in the stream
/// (where another replica could take it) rather than in the replica. Proven by what is
/// observable, not by timing: both agents are inside their `kubectl` call together, held there
/// until the test opens the gate, so neither run can have ended before the other began.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_concurrency_two_a_replica_runs_two_tasks_at_once() {
    build_guard();
    let mut harness = Harness::start(
        Script::single(vec![
            Turn::bash("kubectl get pods -A -l app=gate"),
            Turn::text("Through the gate."),
        ]),
        &["--concurrency", "2"],
    )
    .await;
    // A replica that runs nothing yet says so.
    let idle = wait_for("the replica's first heartbeat", WAIT, || async {
        harness.heartbeats().await.into_iter().next()
    })
    .await;
    assert_eq!(
        (idle.cluster.as_str(), idle.concurrency, idle.running),
        (CLUSTER, 2, 0)
    );

    for request in ["req-one", "req-two", "req-three"] {
        harness.publish_task(&task(request, 120)).await;
    }
    wait_until("two agents are inside kubectl at once", WAIT, || async {
        harness.gate_entries() == 2
    })
    .await;
    let busy = wait_for("a heartbeat saying two tasks run", WAIT, || async {
        harness
            .heartbeats()
            .await
            .into_iter()
            .find(|beat| beat.running == 2)
    })
    .await;
    assert_eq!(busy.replica, idle.replica);
    // Both slots are taken: the third task was not even fetched.
    assert_eq!(harness.consumer_backlog().await, (2, 1));
    assert_eq!(harness.gate_entries(), 2);

    harness.open_gate();
    let mut results = Vec::new();
    for request in ["req-one", "req-two", "req-three"] {
        let result = harness.finished(request).await;
        assert_eq!(result.outcome, Outcome::Completed, "{result:?}");
        assert_eq!(result.final_text, "Through the gate.");
        results.push(result);
    }
    harness.wait_tasks_acked().await;
    assert_eq!(harness.work_root_entries(), 0);
    let ran_together = results[..2].iter().all(|a| {
        results[..2]
            .iter()
            .all(|b| a.started_at < b.finished_at && b.started_at < a.finished_at)
    });
    assert!(ran_together, "{results:#?}");

    // A replica that stops removes its heartbeat at once, rather than after the TTL.
    harness.stop_runner().await;
    assert!(
        harness.heartbeats().await.is_empty(),
        "{:?}",
        harness.heartbeats().await
    );
}

// --- guard ---

/// Builds the real `warroom-guard` (a no-op when it is fresh). The runner finds it beside the
/// test binary's `deps` folder, where Cargo puts the workspace's binaries; a test run of this
/// crate alone does not build another crate's binary by itself.
fn build_guard() {
    let output = std::process::Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--offline", "-p", "warroom-guard"])
        .args(["--bin", "warroom-guard"])
        .current_dir(tools::workspace_root())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running cargo build");
    assert!(
        output.status.success(),
        "cannot build warroom-guard: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Every attempt to step outside read-only troubleshooting is refused by the guard hook
/// before the command runs, and audited with the guard's rule and reason; the legal command
/// runs, and the investigation completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_refuses_hostile_commands_with_its_reason() {
    build_guard();
    let hostile = [
        ("kubectl get SeCrEtS -A", "kubectl.refused-kind"),
        ("kubectl get pods -s http://127.0.0.1:1", "kubectl.flag"),
        ("oc whoami -ct", "kubectl.flag"),
        (
            "kubectl get pods -o go-template='{{range .items}}{{.data.token | base64decode}}{{end}}'",
            "kubectl.output-format",
        ),
        ("kubectl get pods --kubeconfig /etc/x", "kubectl.flag"),
        ("kubectl get -f /etc/passwd", "kubectl.flag"),
    ];
    let mut turns: Vec<Turn> = hostile.iter().map(|(cmd, _)| Turn::bash(*cmd)).collect();
    turns.push(Turn::bash("kubectl get pods -A"));
    turns.push(Turn::text("Only the pod list was allowed."));
    let mut harness = Harness::start(Script::single(turns), &[]).await;
    harness.publish_task(&task("req-guard", 120)).await;

    let result = harness.finished("req-guard").await;
    assert_eq!(result.outcome, Outcome::Completed, "{result:?}");
    assert_eq!(result.final_text, "Only the pod list was allowed.");
    // Only the allowed command reached kubectl.
    assert_eq!(harness.kubectl_log().trim(), "get pods -A");

    let events = harness.events("req-guard").await;
    let refused: Vec<(String, serde_json::Value)> = events
        .iter()
        .filter_map(|e| match &e.kind {
            AuditKind::ToolRefused { input, tool, .. } => Some((tool.clone(), input.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(refused.len(), hostile.len(), "{refused:#?}");
    for ((tool, input), (command, rule)) in refused.iter().zip(hostile) {
        assert_eq!(tool, "Bash");
        assert_eq!(input["command"], command, "{input}");
        assert_eq!(input["guard_rule"], rule, "{command}: {input}");
        let reason = input["guard_reason"].as_str().unwrap_or_default();
        assert!(!reason.is_empty(), "{command}: no guard reason in {input}");
    }
    // The allowed call is audited with the guard's rule and reason too: every decision is.
    let allowed: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            AuditKind::GuardAllowed {
                tool, input, rule, ..
            } => Some((tool.as_str(), input.as_str(), rule.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(
        allowed,
        [("Bash", "kubectl get pods -A", "kubectl.read-only")],
        "{events:#?}"
    );
    // No guard refusal was left unmatched.
    assert!(
        !events.iter().any(|e| matches!(&e.kind,
            AuditKind::ToolResult { output, .. } if output.starts_with("guard: "))),
        "{events:#?}"
    );
    // The model was told why, in the guard's words, so it can choose a legal command.
    let seen = harness.model.tool_results();
    let secrets = seen
        .iter()
        .find(|r| r.content_text.contains("[kubectl.refused-kind]"))
        .unwrap_or_else(|| panic!("the model never saw the guard's reason: {seen:#?}"));
    assert!(secrets.is_error, "{secrets:?}");
    // The hook's files lived beside the workspace and went with it.
    assert_eq!(harness.work_root_entries(), 0);
    harness.wait_tasks_acked().await;
    harness.stop_runner().await;
}

/// A guard configuration that does not load stops the runner at start with the guard's
/// field-precise error; a missing guard binary is a clear configuration error too.
#[tokio::test]
async fn a_bad_guard_setup_stops_the_runner_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("guard.yaml");
    std::fs::write(&config, "programs:\n  - name: ''\n").expect("write config");
    let parse = |extra: &[&str]| -> Config {
        let mut args = vec![
            "warroom-runner",
            "--cluster",
            CLUSTER,
            "--claude-bin",
            "/bin/sh",
        ];
        args.extend_from_slice(extra);
        clap::Parser::try_parse_from(&args).expect("valid runner arguments")
    };
    let guard = dir.path().join("warroom-guard");
    std::fs::write(&guard, "#!/bin/sh\n").expect("write a stand-in guard");
    make_executable(&guard);
    let guard = guard.to_str().expect("utf-8 path");

    let err = parse(&[
        "--guard-bin",
        guard,
        "--guard-config",
        config.to_str().expect("utf-8"),
    ])
    .validate()
    .expect_err("a bad guard config")
    .to_string();
    assert!(
        err.contains("--guard-config: invalid guard config")
            && err.contains(config.to_str().expect("utf-8"))
            && err.contains("programs[0]"),
        "{err}"
    );
    let err = parse(&["--guard-bin", "/no/such/warroom-guard"])
        .validate()
        .expect_err("a missing guard")
        .to_string();
    assert!(err.contains("--guard-bin /no/such/warroom-guard"), "{err}");
    let err = parse(&["--guard-bin", "no-such-guard-xyz"])
        .validate()
        .expect_err("a missing guard")
        .to_string();
    assert!(err.contains("on the agent's PATH"), "{err}");
    assert!(parse(&["--guard-bin", guard]).validate().is_ok());
}

// --- secrets of the runner, and nothing outlives a run ---

/// Every process's environment that can be read, by pid.
fn environments() -> Vec<(i32, Vec<u8>)> {
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| Some((pid, std::fs::read(format!("/proc/{pid}/environ")).ok()?)))
        .collect()
}

fn env_var(environ: &[u8], name: &str) -> Option<String> {
    environ.split(|b| *b == 0).find_map(|var| {
        let var = String::from_utf8_lossy(var);
        var.strip_prefix(&format!("{name}=")).map(str::to_owned)
    })
}

/// The agent tries every way we know to read the model key: its own and its parents'
/// environment, the CLI's config files, `/proc/<pid>/environ` of the CLI and of the runner.
/// None of it shows the key, because the agent's process tree never had it: the CLI holds a
/// placeholder and talks to the runner's proxy, which adds the real key on the way out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_command_of_the_agent_can_reveal_the_model_key() {
    build_guard();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let marker = format!("sk-ant-warroom-marker-{}-{nanos}", std::process::id());
    let runner_pid = std::process::id();
    let mut turns = vec![
        Turn::bash("cat /proc/self/environ"),
        Turn::bash("env"),
        Turn::bash("printenv"),
        Turn::bash("printenv ANTHROPIC_API_KEY"),
        Turn::bash("grep -r sk- ~/.claude"),
        Turn::bash("cat ~/.claude.json"),
        Turn::tool(
            "Read",
            serde_json::json!({ "file_path": "/proc/self/environ" }),
        ),
        Turn::tool(
            "Read",
            serde_json::json!({ "file_path": format!("/proc/{runner_pid}/environ") }),
        ),
        // Allowed: its environment is the CLI's, as every command gets it.
        Turn::bash("kubectl get pods -A"),
    ];
    let attempts = turns.len();
    // The last answer waits, so the test can look at the live CLI's environment.
    turns.push(Turn::text("Nothing to see.").delayed(Duration::from_secs(3)));
    let mut harness = Harness::start(
        Script::single(turns),
        &["--anthropic-api-key", marker.as_str()],
    )
    .await;
    harness.publish_task(&task("req-key", 120)).await;

    let waiting = harness
        .model
        .wait_for(WAIT, |requests| {
            requests.iter().any(|r| {
                r.answer
                    == warroom_scripted_model::Answer::Turn {
                        conversation: 0,
                        turn: attempts,
                    }
            })
        })
        .await
        .expect("the CLI asks for its last answer");
    assert!(!waiting.is_empty());
    // While the CLI waits: no process anywhere holds the key in its environment, and the
    // processes of the run hold the placeholder.
    let mut run_processes = 0;
    for (pid, environ) in environments() {
        assert!(
            !String::from_utf8_lossy(&environ).contains(&marker),
            "process {pid} has the model key in its environment"
        );
        if env_var(&environ, "WARROOM_RUN").is_some() {
            run_processes += 1;
            assert_eq!(
                env_var(&environ, "ANTHROPIC_API_KEY").as_deref(),
                Some(warroom_runner::proxy::PLACEHOLDER_KEY),
                "process {pid} of the run"
            );
            let base = env_var(&environ, "ANTHROPIC_BASE_URL").unwrap_or_default();
            assert!(base.starts_with("http://127.0.0.1:"), "{base}");
        }
    }
    assert!(run_processes >= 1, "the CLI was not found in /proc");

    let result = harness.finished("req-key").await;
    assert_eq!(result.outcome, Outcome::Completed, "{result:?}");
    let events = harness.events("req-key").await;
    let published = format!(
        "{}\n{}",
        serde_json::to_string(&events).expect("events as JSON"),
        serde_json::to_string(&result).expect("result as JSON")
    );
    assert!(
        !published.contains(&marker) && !published.contains("sk-ant-warroom-marker"),
        "the key reached the audit trail"
    );
    // Neither did the model see it in any tool result.
    for seen in harness.model.tool_results() {
        assert!(!seen.content_text.contains(&marker), "{seen:?}");
    }
    // The command that ran saw the placeholder.
    let env = std::fs::read_to_string(harness.dir.path().join("kubectl.env")).expect("env");
    assert!(env.contains("ANTHROPIC_API_KEY=warroom-proxy"), "{env}");
    assert!(!env.contains(&marker));

    // Every model call went through the proxy and reached the model with the real key.
    let calls: Vec<_> = harness
        .model
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/v1/messages"))
        .collect();
    assert!(calls.len() > attempts, "{} calls", calls.len());
    for call in &calls {
        assert_eq!(
            call.header("x-api-key"),
            Some(marker.as_str()),
            "{}",
            call.path
        );
        assert_eq!(call.header("authorization"), None);
    }
    assert!(
        result.cost_usd > 0.0,
        "the proxy metered the calls: {result:?}"
    );
    harness.wait_tasks_acked().await;
    harness.stop_runner().await;
}

/// Past the budget the proxy refuses the next model call, and the run fails for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_past_its_budget_fails() {
    build_guard();
    let mut harness = Harness::start(
        Script::single(vec![
            Turn::bash("kubectl get pods -A"),
            Turn::text("Never sent: the budget is spent."),
        ]),
        &["--budget-usd", "0.000001", "--max-retries", "0"],
    )
    .await;
    harness.publish_task(&task("req-budget", 120)).await;
    let result = harness.finished("req-budget").await;
    assert_eq!(result.outcome, Outcome::Failed, "{result:?}");
    let error = result.error.clone().unwrap_or_default();
    assert!(error.starts_with("budget exceeded: "), "{error}");
    assert!(result.cost_usd > 0.000001, "{result:?}");
    // The refused call never reached the model.
    assert!(
        !harness.model.turn_requests().iter().any(|r| r.answer
            == warroom_scripted_model::Answer::Turn {
                conversation: 0,
                turn: 1
            }),
        "a call past the budget reached the model"
    );
    assert_eq!(
        outcomes(&harness.events("req-budget").await),
        vec![Outcome::Failed]
    );
    harness.wait_tasks_acked().await;
    harness.stop_runner().await;
}

/// A runner process that is killed outright leaves its run behind: the workspace, and the
/// CLI and its hung command, orphaned. The next runner on the same work root removes the
/// workspace and kills what still runs of that run (found by its run id), and the task,
/// never acked, comes back and completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_runner_removes_what_a_killed_one_left() {
    build_guard();
    let mut harness = Harness::without_runner(Script::single(vec![
        Turn::bash("kubectl get pods -A -l app=hang"),
        Turn::text("Finished after the restart."),
    ]))
    .await;
    let args = ["--ack-wait", "2s"];
    let log = std::fs::File::create(harness.dir.path().join("killed-runner.log")).expect("log");
    let mut killed = KillOnDrop(
        std::process::Command::new(env!("CARGO_BIN_EXE_warroom-runner"))
            .args(harness.runner_args(&args))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start the runner binary"),
    );
    harness.publish_task(&task("req-crash", 300)).await;
    let pid = hung_kubectl_pid(harness.dir.path()).await;
    let work = harness.dir.path().join("work");
    let workspaces: Vec<PathBuf> = std::fs::read_dir(&work)
        .expect("work root")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(workspaces.len(), 1, "{workspaces:?}");

    killed.0.kill().expect("SIGKILL the runner");
    killed.0.wait().expect("reap the runner");
    // Nothing cleaned up after the killed runner.
    assert!(workspaces[0].is_dir());
    assert!(
        !process_gone(pid),
        "the hung tool should have outlived its runner"
    );

    harness.start_runner(&args);
    wait_until("the old workspace is removed", WAIT, || async {
        !workspaces[0].exists()
    })
    .await;
    // Killed before the folder went (it would otherwise sleep on for a minute).
    assert!(
        process_gone(pid),
        "the old run's hung tool survived the restart"
    );
    let result = harness.finished("req-crash").await;
    assert_eq!(result.outcome, Outcome::Completed, "{result:?}");
    assert_eq!(result.final_text, "Finished after the restart.");
    // The killed run was attempt 1; the rerun is attempt 2, and every event says which.
    assert_eq!(result.attempt, 2);
    assert_eq!(harness.started_attempts("req-crash").await, [1, 2]);
    let events = harness.events("req-crash").await;
    assert!(events.iter().any(|e| e.attempt == 1), "{events:?}");
    assert!(
        events.iter().all(|e| e
            .id
            .starts_with(&format!("req-crash/{CLUSTER}/{}/", e.attempt))),
        "{events:?}"
    );
    assert_eq!(outcomes(&events), [Outcome::Completed]);
    harness.wait_tasks_acked().await;
    assert_eq!(harness.work_root_entries(), 0);
    harness.stop_runner().await;
}

/// A child process killed when the test ends, whatever way it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// --- attempts ---

/// A task whose cluster the dispatcher already recorded as final is acknowledged and not
/// run; so is a task delivered again after its run finished (a failed ack, simulated by
/// delivering it once more after the dispatcher's record turned final).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_whose_cluster_is_final_is_not_run_again() {
    let mut harness = Harness::start(
        Script::single(vec![
            Turn::bash("kubectl get pods -A"),
            Turn::text("Done once."),
        ]),
        &[],
    )
    .await;
    harness.record("req-gone", ClusterPhase::Cancelled).await;
    harness.publish_task(&task("req-gone", 120)).await;
    harness.wait_tasks_acked().await;
    assert!(harness.reports("req-gone").await.is_empty());
    assert!(harness.events("req-gone").await.is_empty());

    harness.publish_task(&task("req-once", 120)).await;
    let result = harness.finished("req-once").await;
    assert_eq!(result.outcome, Outcome::Completed, "{result:?}");
    harness.wait_tasks_acked().await;
    let calls = harness.kubectl_log().lines().count();
    assert_eq!(calls, 1, "{}", harness.kubectl_log());
    // The dispatcher records the result; then the task comes once more.
    harness.record("req-once", ClusterPhase::Completed).await;
    harness
        .bus
        .publish(
            &warroom_proto::Subject::Task(CLUSTER.parse().expect("cluster")),
            None,
            &task("req-once", 120),
        )
        .await
        .expect("deliver the task again");
    harness.wait_tasks_acked().await;
    assert_eq!(harness.started_attempts("req-once").await, [1]);
    assert_eq!(harness.kubectl_log().lines().count(), calls);
    harness.stop_runner().await;
}

/// A task delivered a third time (two runs were interrupted) fails its cluster with the
/// reason instead of running a third time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_delivery_fails_instead_of_running() {
    let mut harness = Harness::without_runner(Script::single(vec![Turn::text("never")])).await;
    harness.publish_task(&task("req-third", 120)).await;
    // Two deliveries that ended without a result, on the runner's own consumer.
    let cluster: warroom_proto::ClusterName = CLUSTER.parse().expect("cluster");
    let mut consumer = harness
        .bus
        .consume::<Task>(warroom_runtime::ConsumerSpec {
            filter: Some(warroom_proto::Subject::Task(cluster.clone()).to_string()),
            ack_wait: Duration::from_secs(60),
            max_deliver: warroom_runner::MAX_DELIVER,
            batch: 1,
            ..warroom_runtime::ConsumerSpec::new(
                warroom_proto::Stream::Tasks,
                names::runner_consumer(&cluster),
                "claude-warroom runner: this cluster's tasks",
            )
        })
        .await
        .expect("the runner's consumer");
    for delivered in 1..=2 {
        let delivery = consumer
            .fetch_one(Duration::from_secs(5))
            .await
            .expect("pull")
            .expect("the task");
        assert_eq!(delivery.delivered(), delivered);
        delivery.nak_confirmed(None).await.expect("hand it back");
    }
    harness.start_runner(&[]);
    let result = harness.finished("req-third").await;
    assert_eq!(result.outcome, Outcome::Failed);
    assert_eq!(result.attempt, 3);
    let error = result.error.unwrap_or_default();
    assert!(error.contains("not run a third time"), "{error}");
    harness.wait_tasks_acked().await;
    assert!(harness.started_attempts("req-third").await.is_empty());
    assert_eq!(
        outcomes(&harness.events("req-third").await),
        [Outcome::Failed]
    );
    assert_eq!(harness.model.requests().len(), 0);
    harness.stop_runner().await;
}

/// nats-server goes away mid-run and comes back: the agent is not cancelled, what it did
/// while NATS was away arrives afterwards in order, and the task completes once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_outage_mid_run_does_not_stop_the_agent() {
    let mut harness = Harness::start(
        Script::single(vec![
            Turn::bash("kubectl get pods -A"),
            // Answered while NATS is away: the model is not behind NATS.
            Turn::bash("kubectl get pods -n openshift-api").delayed(Duration::from_secs(2)),
            Turn::text("Done despite the outage."),
        ]),
        &[],
    )
    .await;
    harness.publish_task(&task("req-outage", 120)).await;
    wait_until("the first tool call is stored", WAIT, || async {
        harness
            .events("req-outage")
            .await
            .iter()
            .any(|e| matches!(e.kind, AuditKind::ToolCall { .. }))
    })
    .await;
    harness.nats.stop().await;
    // The agent carries on and ends while NATS is away: its workspace goes.
    wait_until("the agent's second call ran", WAIT, || async {
        harness.kubectl_log().contains("-n openshift-api")
    })
    .await;
    wait_until("the run ended during the outage", WAIT, || async {
        harness.work_root_entries() == 0
    })
    .await;
    harness.nats.start_again().await;

    let result = harness.finished("req-outage").await;
    assert_eq!(result.outcome, Outcome::Completed, "{result:?}");
    assert_eq!(result.final_text, "Done despite the outage.");
    harness.wait_tasks_acked().await;
    assert_eq!(harness.started_attempts("req-outage").await, [1]);
    let events = harness.events("req-outage").await;
    let sequence: Vec<String> = events
        .iter()
        .map(|e| e.id.rsplit('/').next().unwrap_or_default().to_owned())
        .collect();
    let expected: Vec<String> = (0..events.len()).map(|n| n.to_string()).collect();
    assert_eq!(sequence, expected, "events out of order or missing");
    let calls = events
        .iter()
        .filter(|e| matches!(e.kind, AuditKind::ToolCall { .. }))
        .count();
    assert_eq!(calls, 2, "{events:?}");
    assert_eq!(outcomes(&events), [Outcome::Completed]);
    // The result came after every event of the run.
    let reports = harness.reports("req-outage").await;
    let started_and_finished = reports
        .iter()
        .filter(|r| !matches!(r, RunnerReport::Progress { .. }))
        .count();
    assert_eq!(started_and_finished, 2, "{reports:?}");
    assert!(
        matches!(reports.last(), Some(RunnerReport::Finished(_))),
        "{reports:?}"
    );
    harness.stop_runner().await;
}

/// `warroom-runner --check`: a good configuration (the CLI and the guard found, the API key
/// as a file) passes without NATS being there; a bad one lists every problem at once.
#[test]
fn check_reads_every_file_and_reports_every_problem_without_connecting() {
    let bin = Path::new(env!("CARGO_BIN_EXE_warroom-runner"));
    let dir = TempDir::new().expect("a temporary folder");
    let key = dir.path().join("api-key");
    std::fs::write(&key, "sk-ant-test\n").expect("writing the key");
    // `--check` only needs the guard to be an executable file; it does not run it.
    let guard = dir.path().join("warroom-guard");
    std::fs::write(&guard, "#!/bin/sh\nexit 0\n").expect("writing the guard");
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&guard, std::fs::Permissions::from_mode(0o755))
            .expect("making the guard executable");
    }
    let claude = tools::claude();
    let url = warroom_testkit::unused_nats_url();
    let good = warroom_testkit::run_check(
        bin,
        &[
            "--cluster",
            CLUSTER,
            "--claude-bin",
            claude.to_str().expect("utf-8"),
            "--guard-bin",
            guard.to_str().expect("utf-8"),
            "--nats-url",
            &url,
        ],
        &[("ANTHROPIC_API_KEY_FILE", key.to_str().expect("utf-8"))],
    );
    good.assert_ok();
    assert!(good.stdout.contains(", API key"), "{good:#?}");

    let guard_config = dir.path().join("guard.yaml");
    std::fs::write(&guard_config, "nonsense: [\n").expect("writing the guard config");
    let bad = warroom_testkit::run_check(
        bin,
        &[
            "--cluster",
            CLUSTER,
            "--claude-bin",
            "/nonexistent/claude",
            "--guard-bin",
            guard.to_str().expect("utf-8"),
            "--guard-config",
            guard_config.to_str().expect("utf-8"),
            "--anthropic-api-key",
            "inline",
            "--nats-url",
            &url,
        ],
        &[("ANTHROPIC_API_KEY_FILE", "/nonexistent/api-key")],
    );
    bad.assert_problems(
        "warroom-runner",
        &[
            "--claude-bin /nonexistent/claude is not an executable file",
            "--guard-config",
            "--anthropic-api-key (ANTHROPIC_API_KEY) and --api-key-file (ANTHROPIC_API_KEY_FILE) \
             are both set",
        ],
    );
    // A flag clap itself refuses is a failed check too: exit 1, never clap's usage exit 2.
    let unparsed = warroom_testkit::run_check(bin, &["--nats-url", &url], &[]);
    assert_eq!(unparsed.code, Some(1), "{unparsed:#?}");
    assert!(unparsed.stderr.contains("--cluster"), "{unparsed:#?}");
}
