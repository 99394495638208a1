//! Sessions and follow-up questions end to end (issue #22), as an engineer runs them: the
//! real `claude-warroom session start|ask|stop` pushes the files, the gateway accepts them,
//! the dispatcher turns each question into a turn of the cluster's conversation, and the
//! runner continues the same Claude Code conversation (`--resume`, the conversation kept in
//! the NATS object store between turns) with the real CLI against the scripted model. The
//! model's recorded requests show whether a turn really carried the turns before it.

use std::path::Path;
use std::process::{Command, Stdio};

use warroom_proto::{
    ClusterPhase, NoticeKind, PodPhase, RequestPhase, RequestStatus, SessionState,
};
use warroom_scripted_model::{Conversation, Script, Turn};
use warroom_testkit::{tools, wait_for};

use crate::harness::{FINAL_TIMEOUT, Pipeline, request_yaml};

const CLUSTER: &str = "prod-session-1";
const ENGINEER: &str = "platform-engineer-1";

/// The scripted conversations. On a resume the CLI may add an assistant message of its own
/// before the question, so a conversation's answers are not tied to a turn number: each
/// answer names its conversation, and the last one repeats.
fn script() -> Script {
    let answers = |prefix: &str| -> Vec<Turn> {
        ["A", "B", "C", "D", "E", "F"]
            .iter()
            .map(|n| Turn::text(format!("{prefix}-{n}: all looks as expected.")))
            .collect()
    };
    Script::new()
        .with(
            Conversation::new(answers("SESSION-ANSWER"))
                .matching("SESSION-OPENING")
                .repeat_last(),
        )
        .with(
            Conversation::new(answers("INVESTIGATION-ANSWER"))
                .matching("INVESTIGATION-MARKER")
                .repeat_last(),
        )
        .with(
            Conversation::new(answers("IDLE-ANSWER"))
                .matching("IDLE-QUESTION")
                .repeat_last(),
        )
}

/// The answer token (`SESSION-ANSWER-B`) an answer file holds.
fn answer_token(text: &str, prefix: &str) -> String {
    let at = text
        .find(prefix)
        .unwrap_or_else(|| panic!("no {prefix} in:\n{text}"));
    text[at..].chars().take(prefix.len() + 2).collect()
}

/// Runs `claude-warroom` in `dir`; returns (exit code, stdout, stderr).
fn claude_warroom(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(tools::workspace_binary("claude-warroom"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .env("WARROOM_ENGINEER", ENGINEER)
        .env_remove("WARROOM_REPO")
        .output()
        .expect("run claude-warroom");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs `claude-warroom` in the engineer's clone and expects it to succeed.
fn run(pipeline: &Pipeline, args: &[&str]) -> String {
    pipeline.engineer.pull();
    let (code, out, err) = claude_warroom(pipeline.engineer.path(), args);
    assert_eq!(
        code,
        Some(0),
        "claude-warroom {args:?}\nstdout: {out}\nstderr: {err}"
    );
    out
}

async fn wait_status(
    pipeline: &Pipeline,
    id: &str,
    what: &str,
    holds: impl Fn(&RequestStatus) -> bool,
) -> RequestStatus {
    wait_for(format!("results/{id}: {what}"), FINAL_TIMEOUT, || async {
        pipeline.status(id).filter(|s| holds(s))
    })
    .await
}

/// Waits until turn `turn` of `id` ended and its answer is in git; returns the answer file.
async fn wait_turn(pipeline: &Pipeline, id: &str, turn: u32) -> String {
    let status = wait_status(pipeline, id, &format!("turn {turn} ended"), |s| {
        s.turns.iter().any(|t| t.turn == turn && t.phase.is_final())
    })
    .await;
    let line = status
        .turns
        .iter()
        .find(|t| t.turn == turn)
        .expect("the turn");
    assert_eq!(line.phase, ClusterPhase::Completed, "{line:?}");
    wait_for(format!("turn-{turn}.md of {id}"), FINAL_TIMEOUT, || async {
        pipeline.result(id, &format!("turn-{turn}.md"))
    })
    .await
}

/// The body of the last model request that holds `marker`: the conversation sent with it.
fn conversation_sent_with(pipeline: &Pipeline, marker: &str) -> String {
    pipeline
        .model
        .requests()
        .into_iter()
        .map(|request| request.body.to_string())
        .rfind(|body| body.contains(marker))
        .unwrap_or_else(|| panic!("no model request carried {marker:?}"))
}

/// A session with a first question and two follow-ups: each follow-up's model request
/// carries the whole conversation before it, even after the runner process was killed and
/// started again between the turns; the answers land in order; `session stop` ends it, and
/// a question after that is refused with a notice.
#[tokio::test(flavor = "multi_thread")]
async fn a_session_continues_one_conversation_across_turns_and_a_runner_restart() {
    let mut pipeline = Pipeline::start_processes(&[CLUSTER], script(), |_| {}).await;
    let id = "2026-12-07-1600-session";
    let printed = run(
        &pipeline,
        &[
            "session",
            "start",
            "--cluster",
            CLUSTER,
            "--duration",
            "30m",
            "--prompt",
            "SESSION-OPENING: how is etcd?",
            "--id",
            id,
        ],
    );
    assert_eq!(printed.trim(), id);
    let opened = wait_status(&pipeline, id, "the first question answered", |s| {
        s.clusters
            .get(CLUSTER)
            .is_some_and(|c| c.phase == ClusterPhase::Completed)
    })
    .await;
    assert_eq!(
        opened.phase,
        RequestPhase::Running,
        "an open session runs on"
    );
    let session = opened.session.expect("a session");
    assert_eq!(session.state, SessionState::Open);
    assert_eq!(session.duration_secs, 30 * 60);

    run(&pipeline, &["session", "ask", id, "FOLLOW-ONE: who leads?"]);
    let first = wait_turn(&pipeline, id, 1).await;
    assert!(first.contains("FOLLOW-ONE: who leads?"), "{first}");
    let first_answer = answer_token(&first, "SESSION-ANSWER");

    // Another runner process continues the conversation: nothing of it was on the first
    // one's disk.
    let runner = format!("runner-{CLUSTER}");
    pipeline.kill(&runner).await;
    pipeline.start_again(&runner);

    run(
        &pipeline,
        &["session", "ask", id, "FOLLOW-TWO: and its disk?"],
    );
    let second = wait_turn(&pipeline, id, 2).await;
    let second_answer = answer_token(&second, "SESSION-ANSWER");
    assert_ne!(first_answer, second_answer, "each turn got its own answer");
    let opening = pipeline
        .result(id, &format!("{CLUSTER}.md"))
        .expect("the first question's report");
    let opening_answer = answer_token(&opening, "SESSION-ANSWER");
    let sent = conversation_sent_with(&pipeline, "FOLLOW-TWO");
    for earlier in [
        "SESSION-OPENING",
        opening_answer.as_str(),
        "FOLLOW-ONE",
        first_answer.as_str(),
    ] {
        assert!(
            sent.contains(earlier),
            "turn 2's model request lacks {earlier}: the conversation was not resumed"
        );
    }
    let status = pipeline.status(id).expect("a status");
    assert!(
        status.turns.iter().all(|t| t.resumed == Some(true)),
        "{:?}",
        status.turns
    );
    let audit = pipeline.audit(id);
    assert!(
        !audit.iter().any(|line| line["event"] == "turn_answer"),
        "answers are files of their own, not audit lines"
    );

    run(&pipeline, &["session", "stop", id]);
    let stopped = wait_status(&pipeline, id, "the session stopped", |s| s.phase.is_final()).await;
    assert_eq!(stopped.phase, RequestPhase::Completed, "{stopped:?}");
    let session = stopped.session.expect("a session");
    assert_eq!(session.state, SessionState::Ended);
    assert_eq!(session.turns, 2);
    assert!(
        session
            .ended
            .as_deref()
            .is_some_and(|e| e.starts_with(&format!("stopped by {ENGINEER}"))),
        "{session:?}"
    );
    let readme = pipeline.result(id, "README.md").expect("a README");
    assert!(readme.contains("[turn-2.md](turn-2.md)"), "{readme}");

    run(
        &pipeline,
        &["session", "ask", id, "FOLLOW-THREE: still there?"],
    );
    let refused = wait_status(&pipeline, id, "the late question refused", |s| {
        s.notices
            .iter()
            .any(|n| n.kind == NoticeKind::FollowUpRefused)
    })
    .await;
    assert!(
        refused.turns.iter().all(|t| t.turn != 3),
        "{:?}",
        refused.turns
    );
    pipeline.shutdown().await;
}

/// A follow-up on an investigation that already finished continues its conversation; a
/// session opened without a question runs nothing until asked and ends when its duration
/// does.
#[tokio::test(flavor = "multi_thread")]
async fn a_finished_investigation_takes_follow_ups_and_a_session_ends_at_its_duration() {
    let pipeline = Pipeline::start(&[CLUSTER], script()).await;
    let investigation = "2026-12-07-1600-investigation";
    pipeline.push_request(
        investigation,
        &request_yaml(
            &[("hosted", CLUSTER)],
            "parallel",
            "INVESTIGATION-MARKER: why did the API server restart?",
            600,
        ),
    );
    pipeline.wait_final(investigation).await;
    run(
        &pipeline,
        &[
            "session",
            "ask",
            investigation,
            "FOLLOW-UP-Q: what killed it?",
        ],
    );
    let answer = wait_turn(&pipeline, investigation, 1).await;
    let report = pipeline
        .result(investigation, &format!("{CLUSTER}.md"))
        .expect("the investigation's report");
    let reported = answer_token(&report, "INVESTIGATION-ANSWER");
    assert_ne!(answer_token(&answer, "INVESTIGATION-ANSWER"), reported);
    let sent = conversation_sent_with(&pipeline, "FOLLOW-UP-Q");
    assert!(
        sent.contains("INVESTIGATION-MARKER") && sent.contains(&reported),
        "the follow-up's model request lacks the investigation"
    );
    let status = pipeline.status(investigation).expect("a status");
    assert_eq!(status.phase, RequestPhase::Completed);

    let idle = "2026-12-07-1600-idle";
    run(
        &pipeline,
        &[
            "session",
            "start",
            "--cluster",
            CLUSTER,
            "--duration",
            "1m",
            "--id",
            idle,
        ],
    );
    let open = wait_status(&pipeline, idle, "the session opened", |s| {
        s.session
            .as_ref()
            .is_some_and(|x| x.state == SessionState::Open)
    })
    .await;
    assert_eq!(open.clusters[CLUSTER].started_at, None, "nothing ran");
    run(
        &pipeline,
        &["session", "ask", idle, "IDLE-QUESTION: anything?"],
    );
    let answer = wait_turn(&pipeline, idle, 1).await;
    assert!(answer.contains("IDLE-ANSWER"), "{answer}");
    let ended = wait_status(&pipeline, idle, "the session ended at its duration", |s| {
        s.phase.is_final()
    })
    .await;
    assert_eq!(ended.phase, RequestPhase::Completed);
    let session = ended.session.expect("a session");
    assert_eq!(session.ended.as_deref(), Some("its duration of 1m ended"));
    pipeline.shutdown().await;
}

/// A session held as a pod (`session start --exec`) on a runner deployed with session pods:
/// the runner makes the pod through the Kubernetes API (a fixture server) when the session
/// opens, `status` names it and says how to exec into it, and `session stop` removes it.
#[tokio::test(flavor = "multi_thread")]
async fn a_session_held_as_a_pod_is_made_at_its_start_and_removed_at_its_stop() {
    const NAMESPACE: &str = "claude-warroom-sessions";
    let kube = warroom_testkit::KubeApi::start().await;
    let kubeconfig = kube.kubeconfig().display().to_string();
    let pipeline = Pipeline::start_with(&[CLUSTER], script(), |options| {
        options.extra_args.runner.extend(
            [
                "--session-pods",
                "--session-image",
                "registry.example.internal/claude-warroom:e2e",
                "--session-namespace",
                NAMESPACE,
                "--kubeconfig",
                &kubeconfig,
            ]
            .map(str::to_owned),
        );
    })
    .await;
    let id = "2026-12-08-0900-pod";
    run(
        &pipeline,
        &[
            "session",
            "start",
            "--cluster",
            CLUSTER,
            "--duration",
            "1h",
            "--exec",
            "--id",
            id,
        ],
    );
    let held = wait_status(&pipeline, id, "the session's pod is held", |s| {
        s.session
            .as_ref()
            .is_some_and(|x| x.pod_phase == Some(PodPhase::Held))
    })
    .await;
    let session = held.session.expect("a session");
    let pod = session.pod.expect("the pod's name");
    assert_eq!(pod, format!("warroom-session-{id}"));
    let made = kube.pod(NAMESPACE, &pod).expect("the pod exists");
    assert_eq!(
        made["metadata"]["annotations"]["warroom.io/request-id"].as_str(),
        Some(id)
    );
    assert_eq!(
        made["spec"]["containers"][0]["image"].as_str(),
        Some("registry.example.internal/claude-warroom:e2e")
    );
    // The engineer is told how to get in.
    let shown = run(&pipeline, &["status", id]);
    assert!(
        shown.contains(&format!("kubectl exec -it {pod} -c session -- claude")),
        "{shown}"
    );

    run(&pipeline, &["session", "stop", id]);
    let removed = wait_status(&pipeline, id, "the session's pod is removed", |s| {
        s.session
            .as_ref()
            .is_some_and(|x| x.pod_phase == Some(PodPhase::Removed))
    })
    .await;
    assert_eq!(removed.phase, RequestPhase::Completed);
    assert_eq!(kube.pod(NAMESPACE, &pod), None);
    assert_eq!(kube.deleted(), vec![(NAMESPACE.to_owned(), pod.clone())]);
    let readme = wait_for(
        format!("{id}'s README names the removed pod"),
        FINAL_TIMEOUT,
        || async {
            pipeline
                .result(id, "README.md")
                .filter(|r| r.contains(&format!("`{pod}` is removed")))
        },
    )
    .await;
    assert!(readme.contains("## Session"), "{readme}");
    pipeline.shutdown().await;
}
