//! Follow-up turns through the runner: the investigation keeps its Claude Code conversation in
//! the object store, and each turn restores it into a fresh workspace and HOME and continues
//! it with `claude --resume`, on whichever runner takes the turn. The scripted model records
//! every request: a turn's request carries what came before it, or the resume did not happen.

use std::path::Path;

use warroom_proto::{FollowUpTurn, TurnResult};

use serde_json::Value;

use super::*;

/// The investigation's summary, in its structured answer.
const REPORT: &str = "The API pod crash-loops, and nothing else is wrong.";
const FIRST_QUESTION: &str = "Which container of the API pod restarts?";
const FIRST_ANSWER: &str = "The api container: it is the only one in the pod.";
const SECOND_QUESTION: &str = "Since when has it restarted?";
const SECOND_ANSWER: &str = "Since the last deployment, judging by the pod's age.";

/// The investigation (a tool call, then its structured answer: a free-text one would draw the
/// CLI's nudge, one more request), then one turn with a tool call and one without: turn `i`
/// of the script answers a request whose history holds `i` assistant messages, those the CLI
/// adds itself included.
fn conversation_script() -> Script {
    Script::single(vec![
        Turn::bash("kubectl get pods -A"),
        Turn::structured(serde_json::json!({
            "summary": REPORT,
            "findings": [],
            "ruled_out": [],
            "confidence": "medium",
            "next_steps": [],
            "not_checked": [],
            "runbook": "none"
        })),
        // Never asked for: resuming a conversation that ended in a tool result (the
        // StructuredOutput call), the CLI adds an assistant message of its own ("No response
        // requested.") before the question.
        Turn::text("not asked for"),
        Turn::bash("kubectl get pods -n openshift-api -l app=api"),
        Turn::text(FIRST_ANSWER),
        Turn::text(SECOND_ANSWER),
    ])
}

fn turn_task(request: &str, turn: u32, question: &str) -> Task {
    Task {
        follow_up: Some(FollowUpTurn {
            turn,
            prompt: question.to_owned(),
            asked_by: "jane".to_owned(),
        }),
        ..task(request, 120)
    }
}

impl Harness {
    /// Publishes a follow-up turn's task, as the dispatcher does (one deduplication id per
    /// turn).
    async fn publish_turn(&self, task: &Task) {
        let turn = task.follow_up.as_ref().map_or(0, |f| f.turn);
        self.bus
            .publish(
                &warroom_proto::Subject::Task(task.cluster.name.clone()),
                Some(&format!(
                    "{}-{}-turn-{turn}",
                    task.request_id, task.cluster.name
                )),
                task,
            )
            .await
            .expect("publish the turn");
    }

    /// Writes the dispatcher's record of a follow-up turn, as the dispatcher does.
    async fn record_turn(&self, request: &str, turn: u32, phase: ClusterPhase) {
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
                names::turn_record_key(
                    &CLUSTER.parse().expect("cluster"),
                    &request.parse().expect("request id"),
                    turn,
                ),
                serde_json::to_vec(&record).expect("encodes").into(),
            )
            .await
            .expect("write the turn's record");
    }

    /// Waits for the `TurnFinished` report of `turn`; returns it with the request's audit
    /// events as they were stored when it was seen.
    async fn turn_finished(&self, request: &str, turn: u32) -> (TurnResult, Vec<AuditEvent>) {
        let result = wait_for(
            format!("a TurnFinished report of turn {turn} of {request}"),
            WAIT,
            || async {
                self.reports(request)
                    .await
                    .into_iter()
                    .find_map(|r| match r {
                        RunnerReport::TurnFinished(result) if result.turn == turn => Some(result),
                        _ => None,
                    })
            },
        )
        .await;
        (result, self.events(request).await)
    }

    /// Starts a runner whose work root is `work` instead of the harness's.
    fn start_runner_in(&mut self, work: &Path) {
        let work = work.to_str().expect("utf-8 path").to_owned();
        let mut args = self.runner_args(&[]);
        let at = args
            .iter()
            .position(|arg| arg == "--work-root")
            .expect("the harness gives a work root");
        args[at + 1] = work;
        let args = std::iter::once("warroom-runner".to_owned()).chain(args);
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
}

/// The follow-up turns' answers among `events`, as (turn, question, answer, resumed).
fn answers(events: &[AuditEvent]) -> Vec<(u32, String, String, bool)> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            AuditKind::TurnAnswer {
                turn,
                question,
                answer,
                resumed,
                ..
            } => Some((*turn, question.clone(), answer.clone(), *resumed)),
            _ => None,
        })
        .collect()
}

/// Where in a request's history the message of `role` holding `text` (in a text block, a
/// tool call's input or a tool result) is.
fn position(messages: &[Value], role: &str, text: &str) -> usize {
    messages
        .iter()
        .position(|m| m["role"] == role && m["content"].to_string().contains(text))
        .unwrap_or_else(|| panic!("no {role} message with {text:?} in the request: {messages:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_up_turns_continue_the_investigations_conversation() {
    let mut harness = Harness::start(conversation_script(), &[]).await;
    harness.publish_task(&task("req-conv", 120)).await;
    let investigation = harness.finished("req-conv").await;
    assert_eq!(
        investigation.outcome,
        Outcome::Completed,
        "{investigation:?}"
    );
    let report = investigation.report.expect("a structured report");
    assert_eq!(report.summary, REPORT);

    harness
        .publish_turn(&turn_task("req-conv", 1, FIRST_QUESTION))
        .await;
    let (first, events) = harness.turn_finished("req-conv", 1).await;
    assert_eq!(first.outcome, Outcome::Completed, "{first:?}");
    assert!(first.resumed, "{first:?}");
    assert!(first.cost_usd > 0.0, "{first:?}");
    // The answer went out before the report, through the run's outbox.
    assert_eq!(
        answers(&events),
        [(1, FIRST_QUESTION.to_owned(), FIRST_ANSWER.to_owned(), true)]
    );

    harness
        .publish_turn(&turn_task("req-conv", 2, SECOND_QUESTION))
        .await;
    let (second, events) = harness.turn_finished("req-conv", 2).await;
    assert_eq!(second.outcome, Outcome::Completed, "{second:?}");
    assert!(second.resumed, "{second:?}");
    assert_eq!(
        answers(&events),
        [
            (1, FIRST_QUESTION.to_owned(), FIRST_ANSWER.to_owned(), true),
            (
                2,
                SECOND_QUESTION.to_owned(),
                SECOND_ANSWER.to_owned(),
                true
            ),
        ]
    );
    harness.wait_tasks_acked().await;

    // Turn 2's request holds the investigation and turn 1, in order: the resume happened.
    let requests = harness.model.turn_requests();
    let last = requests.last().expect("turn 2 reached the model");
    let messages = last.messages();
    let investigated = position(messages, "user", "Find out why the API times out.");
    let reported = position(messages, "assistant", REPORT);
    let asked = position(messages, "user", FIRST_QUESTION);
    let answered = position(messages, "assistant", FIRST_ANSWER);
    let asked_again = position(messages, "user", SECOND_QUESTION);
    assert!(
        investigated < reported && reported < asked && asked < answered && answered < asked_again,
        "{messages:#?}"
    );
    // A follow-up is asked as free text: no StructuredOutput tool, the same tool rules.
    assert!(
        !last.tool_names().iter().any(|t| t == "StructuredOutput"),
        "{:?}",
        last.tool_names()
    );
    assert_eq!(
        harness.kubectl_log().lines().collect::<Vec<_>>(),
        ["get pods -A", "get pods -n openshift-api -l app=api"]
    );

    // The reports, in order: the investigation's, then each turn's start and end.
    let turns: Vec<(u32, bool)> = harness
        .reports("req-conv")
        .await
        .into_iter()
        .filter_map(|r| match r {
            RunnerReport::TurnStarted { turn, .. } => Some((turn, false)),
            RunnerReport::TurnFinished(result) => Some((result.turn, true)),
            _ => None,
        })
        .collect();
    assert_eq!(turns, [(1, false), (1, true), (2, false), (2, true)]);

    // Each turn's events carry it, with ids of their own; the answer ends them. Only the
    // investigation ends with `finished`.
    assert_eq!(outcomes(&events), [Outcome::Completed]);
    for turn in [1, 2] {
        let of_turn: Vec<&AuditEvent> = events.iter().filter(|e| e.turn == turn).collect();
        assert!(
            matches!(
                of_turn.first().map(|e| &e.kind),
                Some(AuditKind::Started { .. })
            ),
            "{of_turn:?}"
        );
        assert!(
            matches!(
                of_turn.last().map(|e| &e.kind),
                Some(AuditKind::TurnAnswer { .. })
            ),
            "{of_turn:?}"
        );
        for (seq, event) in of_turn.iter().enumerate() {
            assert_eq!(event.id, format!("req-conv/{CLUSTER}/turn-{turn}-1/{seq}"));
        }
    }
    let turn_call = events.iter().find_map(|e| match &e.kind {
        AuditKind::ToolCall { input, .. } if e.turn == 1 => Some(input["command"].clone()),
        _ => None,
    });
    assert_eq!(
        turn_call,
        Some(serde_json::json!(
            "kubectl get pods -n openshift-api -l app=api"
        ))
    );
    assert_eq!(harness.work_root_entries(), 0);
    harness.stop_runner().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_runner_continues_the_conversation_after_a_restart() {
    let mut harness = Harness::without_runner(conversation_script()).await;
    let first_work = harness.dir.path().join("work-first");
    let second_work = harness.dir.path().join("work-second");
    std::fs::create_dir(&first_work).expect("first work root");
    std::fs::create_dir(&second_work).expect("second work root");

    harness.start_runner_in(&first_work);
    harness.publish_task(&task("req-moved", 120)).await;
    let investigation = harness.finished("req-moved").await;
    assert_eq!(
        investigation.outcome,
        Outcome::Completed,
        "{investigation:?}"
    );
    harness.wait_tasks_acked().await;
    harness.stop_runner().await;
    // Nothing of the first runner's runs is left to find.
    std::fs::remove_dir_all(&first_work).expect("remove the first work root");

    harness.start_runner_in(&second_work);
    harness
        .publish_turn(&turn_task("req-moved", 1, FIRST_QUESTION))
        .await;
    let (first, events) = harness.turn_finished("req-moved", 1).await;
    assert_eq!(first.outcome, Outcome::Completed, "{first:?}");
    assert!(first.resumed, "{first:?}");
    assert_eq!(
        answers(&events),
        [(1, FIRST_QUESTION.to_owned(), FIRST_ANSWER.to_owned(), true)]
    );
    let requests = harness.model.turn_requests();
    let messages = requests
        .last()
        .expect("the turn reached the model")
        .messages();
    assert!(
        position(messages, "assistant", REPORT) < position(messages, "user", FIRST_QUESTION),
        "{messages:#?}"
    );
    harness.wait_tasks_acked().await;
    harness.stop_runner().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_turn_is_not_run_and_a_turn_without_a_conversation_starts_one() {
    const FRESH_QUESTION: &str = "Is etcd-0 healthy now?";
    const FRESH_ANSWER: &str = "Yes: it is Running and ready.";
    let mut harness = Harness::start(
        Script::new()
            .with(Conversation::new(vec![Turn::text(FRESH_ANSWER)]).matching(FRESH_QUESTION)),
        &[],
    )
    .await;

    // The dispatcher's record says the turn ended: acknowledged, never run.
    harness
        .record_turn("req-done", 1, ClusterPhase::Completed)
        .await;
    harness
        .publish_turn(&turn_task("req-done", 1, FRESH_QUESTION))
        .await;
    harness.wait_tasks_acked().await;
    assert!(harness.reports("req-done").await.is_empty());
    assert!(harness.events("req-done").await.is_empty());
    assert!(harness.model.turn_requests().is_empty());

    // No conversation was kept for this request: the turn starts a new one, told the
    // request's context.
    harness
        .publish_turn(&turn_task("req-fresh", 1, FRESH_QUESTION))
        .await;
    let (fresh, events) = harness.turn_finished("req-fresh", 1).await;
    assert_eq!(fresh.outcome, Outcome::Completed, "{fresh:?}");
    assert!(!fresh.resumed, "{fresh:?}");
    assert_eq!(
        answers(&events),
        [(1, FRESH_QUESTION.to_owned(), FRESH_ANSWER.to_owned(), false)]
    );
    let prompt = harness.model.turn_requests()[0].first_user_text();
    assert!(
        prompt.contains(FRESH_QUESTION) && prompt.contains("- Cluster: prod-cluster-1"),
        "{prompt}"
    );
    harness.wait_tasks_acked().await;
    harness.stop_runner().await;
}
