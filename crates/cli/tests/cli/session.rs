//! `claude-warroom session` as an engineer runs it, against a bare remote: the session file
//! `start` pushes, the follow-up turns `ask` numbers from the remote (a race for a turn
//! included), the cancel file `stop` pushes, and `status` showing a session and its turns.

use std::path::Path;

use warroom_proto::cancel::parse_cancel;
use warroom_proto::followup::{ValidatedFollowUp, parse_follow_up};
use warroom_proto::validate::{Document, ValidatedSession, parse_document};
use warroom_proto::{
    ClusterPhase, ClusterType, PodPhase, RequestPhase, SessionState, SessionStatus,
};
use warroom_proto::{TurnStatus, status::turn_file};
use warroom_testkit::BareRemote;
use warroom_testkit::git::{TEST_USER_EMAIL, WorkClone};

use super::{Run, publish, run, status, status_json};

/// The pushed session file, parsed exactly as the gateway parses it.
fn pushed_session(remote: &BareRemote, id: &str) -> ValidatedSession {
    let path = format!("requests/pending/{id}.yaml");
    let text = remote
        .read(&path)
        .unwrap_or_else(|| panic!("{path} is not on the remote's main"));
    match parse_document(Path::new(&path), text.as_bytes()) {
        Ok(Document::Session(session)) => *session,
        Ok(Document::Troubleshooting(_)) => panic!("{path} is not a SessionRequest:\n{text}"),
        Err(errors) => panic!("the pushed session is invalid:\n{errors}\n{text}"),
    }
}

/// The pushed follow-up file of `turn`, parsed exactly as the gateway parses it.
fn pushed_turn(remote: &BareRemote, id: &str, turn: u32) -> ValidatedFollowUp {
    let path = format!("requests/ask/{id}/{turn}.yaml");
    let text = remote
        .read(&path)
        .unwrap_or_else(|| panic!("{path} is not on the remote's main"));
    parse_follow_up(Path::new(&path), text.as_bytes())
        .unwrap_or_else(|errors| panic!("the pushed question is invalid:\n{errors}\n{text}"))
}

/// `session start` with `args`; the printed id.
fn start(clone: &WorkClone, args: &[&str]) -> String {
    let mut all = vec!["session", "start"];
    all.extend(args);
    run(clone.path(), &all).id()
}

/// `session ask ID QUESTION` with `extra`; the run, which must have succeeded.
fn ask(clone: &WorkClone, id: &str, question: &str, extra: &[&str]) -> Run {
    let mut args = vec!["session", "ask", id, question];
    args.extend(extra);
    let result = run(clone.path(), &args);
    assert_eq!(result.code, Some(0), "{result}");
    result
}

/// The files the remote's last commit touched.
fn last_commit_files(remote: &BareRemote) -> String {
    remote
        .git(["show", "--name-only", "--format=", "main"])
        .trim()
        .to_owned()
}

#[test]
fn session_start_pushes_a_session_request_the_gateway_accepts() {
    let remote = BareRemote::new();
    let engineer = remote.work_clone();
    let id = start(
        &engineer,
        &[
            "--cluster",
            "prod-cluster-1",
            "--duration",
            "2h",
            "--prompt",
            "Why are the ingress pods restarting?",
            "--purpose",
            "ingress restarts since 09:00",
            "--namespace",
            "openshift-ingress",
            "--exec",
        ],
    );
    assert!(id.contains("-session-prod-cluster-1-"), "{id}");
    let session = pushed_session(&remote, &id);
    assert_eq!(session.id, id);
    let request = &session.request;
    assert_eq!(request.kind, "SessionRequest");
    assert_eq!(request.metadata.engineer, TEST_USER_EMAIL);
    let spec = &request.spec;
    assert_eq!(
        (spec.target_cluster.kind, spec.target_cluster.name.as_str()),
        (ClusterType::Hosted, "prod-cluster-1")
    );
    assert_eq!(spec.duration, 7200);
    assert_eq!(
        spec.prompt.as_deref(),
        Some("Why are the ingress pods restarting?")
    );
    assert_eq!(
        spec.purpose.as_deref(),
        Some("ingress restarts since 09:00")
    );
    assert_eq!(spec.namespace.as_deref(), Some("openshift-ingress"));
    assert!(spec.exec);
    assert_eq!(remote.log_subjects()[0], format!("session: {id}"));
    assert_eq!(
        last_commit_files(&remote),
        format!("requests/pending/{id}.yaml")
    );

    // The id and type as given; no first question, no exec pod.
    let id = start(
        &engineer,
        &[
            "--cluster",
            "edge",
            "--type",
            "hub",
            "--duration",
            "90m",
            "--id",
            "s-edge",
        ],
    );
    assert_eq!(id, "s-edge");
    let spec = pushed_session(&remote, "s-edge").request.spec;
    assert_eq!(spec.target_cluster.kind, ClusterType::Hub);
    assert_eq!(spec.duration, 5400);
    assert_eq!((spec.prompt, spec.exec), (None, false));
}

#[test]
fn session_ask_numbers_the_turns_from_the_remote() {
    let remote = BareRemote::new();
    let engineer = remote.work_clone();
    let id = start(
        &engineer,
        &["--cluster", "prod-cluster-1", "--duration", "1h"],
    );

    let first = ask(&engineer, &id, "Which pods restarted?", &[]);
    assert_eq!(
        first.stdout.trim(),
        format!("asked turn 1 of {id}"),
        "{first}"
    );
    assert!(
        first
            .stderr
            .contains(&format!("the answer lands in results/{id}/turn-1.md")),
        "{first}"
    );
    let second = ask(&engineer, &id, "And why?", &[]);
    assert_eq!(second.stdout.trim(), format!("asked turn 2 of {id}"));
    assert_eq!(
        last_commit_files(&remote),
        format!("requests/ask/{id}/2.yaml")
    );
    assert_eq!(remote.log_subjects()[0], format!("ask: {id} turn 2"));

    let one = pushed_turn(&remote, &id, 1);
    assert_eq!((one.id.as_str(), one.turn), (id.as_str(), 1));
    assert_eq!(one.follow_up.spec.prompt, "Which pods restarted?");
    assert_eq!(one.follow_up.spec.cluster, None);
    assert_eq!(one.follow_up.metadata.engineer, TEST_USER_EMAIL);
    let two = pushed_turn(&remote, &id, 2);
    assert_eq!(two.follow_up.spec.prompt, "And why?");

    // Another engineer's clone, behind the remote, counts from the remote's tree.
    let colleague = remote.work_clone();
    let third = ask(
        &colleague,
        &id,
        "Is the router's config map new?",
        &["--engineer", "bob"],
    );
    assert_eq!(third.stdout.trim(), format!("asked turn 3 of {id}"));
    assert_eq!(
        pushed_turn(&remote, &id, 3).follow_up.metadata.engineer,
        "bob"
    );
}

#[test]
fn session_ask_with_cluster_continues_one_cluster_of_an_investigation() {
    let remote = BareRemote::new();
    let engineer = remote.work_clone();
    let id = run(
        engineer.path(),
        &[
            "investigate",
            "--clusters",
            "prod-cluster-1,prod-cluster-2",
            "--mode",
            "parallel",
            "--issue",
            "API timeouts",
        ],
    )
    .id();
    let before = remote.head();

    let unnamed = run(engineer.path(), &["session", "ask", &id, "And etcd?"]);
    assert_eq!(unnamed.code, Some(1), "{unnamed}");
    assert!(
        unnamed.stderr.contains(
            "--cluster: {id} has several clusters (prod-cluster-1, prod-cluster-2)"
                .replace("{id}", &id)
                .as_str()
        ),
        "{unnamed}"
    );
    let unknown = run(
        engineer.path(),
        &[
            "session",
            "ask",
            &id,
            "And etcd?",
            "--cluster",
            "prod-cluster-9",
        ],
    );
    assert_eq!(unknown.code, Some(1), "{unknown}");
    assert!(
        unknown.stderr.contains("--cluster: ")
            && unknown.stderr.contains("has no cluster `prod-cluster-9`"),
        "{unknown}"
    );
    assert_eq!(remote.head(), before, "a refused question was pushed");

    let asked = ask(
        &engineer,
        &id,
        "And etcd?",
        &["--cluster", "prod-cluster-2"],
    );
    assert_eq!(asked.stdout.trim(), format!("asked turn 1 of {id}"));
    let turn = pushed_turn(&remote, &id, 1);
    assert_eq!(
        turn.follow_up.spec.cluster.as_ref().map(|c| c.as_str()),
        Some("prod-cluster-2")
    );
}

#[test]
fn session_ask_takes_the_next_turn_when_someone_else_pushed_the_same_one_meanwhile() {
    let remote = BareRemote::new();
    let engineer = remote.work_clone();
    let id = start(
        &engineer,
        &["--cluster", "prod-cluster-1", "--duration", "1h"],
    );
    // A colleague's turn 1, committed now and pushed by the engineer's post-commit hook:
    // after `ask` counted the turns, before it pushes.
    let colleague = remote.work_clone();
    colleague.write(
        format!("requests/ask/{id}/1.yaml"),
        "apiVersion: warroom.intility.io/v1\nkind: FollowUp\nmetadata:\n  engineer: bob\n  \
         timestamp: 2026-12-07T10:00:00Z\nspec:\n  prompt: Bob's question\n",
    );
    colleague.commit_all(&format!("ask: {id} turn 1"));
    let marker = tempfile::tempdir().expect("a temporary directory");
    let hook = engineer.path().join(".git/hooks/post-commit");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\n\
             [ -e '{marker}/pushed' ] && exit 0\n\
             touch '{marker}/pushed'\n\
             unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_PREFIX\n\
             cd '{colleague}' && git push --quiet origin HEAD:main\n",
            marker = marker.path().display(),
            colleague = colleague.path().display(),
        ),
    )
    .expect("writing the hook");
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("making the hook executable");

    let asked = ask(&engineer, &id, "My question", &[]);
    assert_eq!(
        asked.stdout.trim(),
        format!("asked turn 2 of {id}"),
        "{asked}"
    );
    assert!(
        asked
            .stderr
            .contains(&format!("someone else asked turn 1 of {id} meanwhile")),
        "{asked}"
    );
    assert!(
        asked.stderr.contains("asking again as the next turn"),
        "{asked}"
    );
    assert_eq!(
        pushed_turn(&remote, &id, 1).follow_up.spec.prompt,
        "Bob's question"
    );
    assert_eq!(
        pushed_turn(&remote, &id, 2).follow_up.spec.prompt,
        "My question"
    );
    // The taken-back turn left nothing behind: the clone is clean and equal to the remote.
    assert_eq!(engineer.git(["status", "--porcelain"]).trim(), "");
    assert_eq!(engineer.head(), remote.head());
}

#[test]
fn session_stop_pushes_the_cancel_file() {
    let remote = BareRemote::new();
    let engineer = remote.work_clone();
    let id = start(
        &engineer,
        &["--cluster", "prod-cluster-1", "--duration", "1h"],
    );
    let stopped = run(engineer.path(), &["session", "stop", &id]);
    assert_eq!(stopped.id(), id);
    let path = format!("requests/cancel/{id}.yaml");
    let text = remote.read(&path).expect("the cancel file is pushed");
    let cancel = parse_cancel(Path::new(&path), text.as_bytes())
        .unwrap_or_else(|errors| panic!("the pushed cancel is invalid:\n{errors}\n{text}"));
    assert_eq!(
        cancel.cancel.spec.reason.as_deref(),
        Some("session stopped")
    );
    assert_eq!(cancel.cancel.metadata.engineer, TEST_USER_EMAIL);
    assert_eq!(remote.log_subjects()[0], format!("cancel: {id}"));
    assert_eq!(last_commit_files(&remote), path);

    let other = start(
        &engineer,
        &["--cluster", "prod-cluster-1", "--duration", "1h"],
    );
    run(
        engineer.path(),
        &["session", "stop", &other, "--reason", "found it"],
    )
    .id();
    let path = format!("requests/cancel/{other}.yaml");
    let text = remote.read(&path).expect("the cancel file is pushed");
    let cancel = parse_cancel(Path::new(&path), text.as_bytes()).expect("a valid cancel");
    assert_eq!(cancel.cancel.spec.reason.as_deref(), Some("found it"));
}

#[test]
fn bad_durations_and_empty_questions_are_refused_naming_the_flag() {
    let remote = BareRemote::new();
    let engineer = remote.work_clone();
    let before = remote.head();
    for (duration, expected) in [
        ("9h", "longer than 8h"),
        ("30s", "shorter than 1m"),
        ("soon", "is not a duration"),
    ] {
        let refused = run(
            engineer.path(),
            &[
                "session",
                "start",
                "--cluster",
                "prod-cluster-1",
                "--duration",
                duration,
            ],
        );
        assert_eq!(refused.code, Some(2), "{duration}: {refused}");
        assert!(
            refused.stderr.contains("--duration") && refused.stderr.contains(expected),
            "{duration}: {refused}"
        );
    }
    let bad_cluster = run(
        engineer.path(),
        &[
            "session",
            "start",
            "--cluster",
            "prod 1",
            "--duration",
            "1h",
        ],
    );
    assert_eq!(bad_cluster.code, Some(1), "{bad_cluster}");
    assert!(
        bad_cluster
            .stderr
            .contains("spec.targetCluster.name (--cluster): "),
        "{bad_cluster}"
    );

    let id = "r-empty";
    for question in ["", "   "] {
        let refused = run(engineer.path(), &["session", "ask", id, question]);
        assert_eq!(refused.code, Some(1), "{refused}");
        assert!(
            refused
                .stderr
                .contains("spec.prompt (QUESTION): must not be empty"),
            "{refused}"
        );
    }
    assert_eq!(remote.head(), before, "a refused file was pushed");
    assert_eq!(engineer.git(["status", "--porcelain"]).trim(), "");
}

#[test]
fn status_shows_the_session_and_each_turn() {
    let remote = BareRemote::new();
    let engineer = remote.work_clone();
    let id = start(
        &engineer,
        &["--cluster", "prod-cluster-1", "--duration", "2h"],
    );
    let dir = format!("results/{id}");
    let mut shown = status(
        &id,
        RequestPhase::Running,
        &dir,
        &[("prod-cluster-1", ClusterPhase::Completed)],
    );
    let now = warroom_proto::now();
    shown.session = Some(SessionStatus {
        state: SessionState::Open,
        duration_secs: 7200,
        // A little over 1h12m: the status is read a few seconds later.
        expires_at: now + time::Duration::seconds(72 * 60 + 40),
        ended_at: None,
        ended: None,
        turns: 2,
        cost_usd: 0.42,
        pod: None,
        pod_phase: None,
        pod_error: None,
    });
    let turn = |turn: u32, phase: ClusterPhase| TurnStatus {
        turn,
        cluster: "prod-cluster-1".parse().expect("a cluster name"),
        asked_by: TEST_USER_EMAIL.to_owned(),
        asked_at: now,
        phase,
        finished_at: None,
        cost_usd: None,
        resumed: Some(true),
        error: None,
        report: phase.is_final().then(|| turn_file(turn)),
        progress: (phase == ClusterPhase::Running).then(|| warroom_proto::Progress {
            at: now,
            turns: 3,
            tool_calls: 5,
            refused: 1,
            cost_usd: Some(0.12),
            last_tool_calls: vec!["Bash: oc get pods -n openshift-ingress".to_owned()],
        }),
    };
    shown.turns = vec![
        turn(1, ClusterPhase::Completed),
        turn(2, ClusterPhase::Running),
    ];
    publish(&remote, &dir, &[("status.json", status_json(&shown))]);

    let result = run(engineer.path(), &["status", &id]);
    assert_eq!(result.code, Some(0), "{result}");
    for expected in [
        "session   open, 1h12m left, 2 turns, $0.42\n",
        "turn 1  prod-cluster-1  completed  turn-1.md\n",
        "turn 2  prod-cluster-1  running    3 turns, 5 tool calls (1 refused), $0.12  last: \
         Bash: oc get pods -n openshift-ingress\n",
    ] {
        assert!(result.stdout.contains(expected), "{expected:?}: {result}");
    }

    assert!(
        !result.stdout.contains("pod "),
        "no pod was asked for: {result}"
    );

    // Held as a pod: how to exec into it; and why, when it could not be held.
    let session = shown.session.as_mut().expect("set above");
    session.pod = Some("warroom-session-x".to_owned());
    session.pod_phase = Some(PodPhase::Held);
    shown.revision += 1;
    publish(&remote, &dir, &[("status.json", status_json(&shown))]);
    let result = run(engineer.path(), &["status", &id]);
    assert!(
        result.stdout.contains(
            "pod       warroom-session-x held: kubectl exec -it warroom-session-x -c session -- \
             claude (in the runner's namespace)\n"
        ),
        "{result}"
    );
    let session = shown.session.as_mut().expect("set above");
    session.pod_phase = Some(PodPhase::Failed);
    session.pod_error = Some("no session pods here\x1b[31m".to_owned());
    shown.revision += 1;
    publish(&remote, &dir, &[("status.json", status_json(&shown))]);
    let result = run(engineer.path(), &["status", &id]);
    assert!(
        result
            .stdout
            .contains("pod       warroom-session-x failed: no session pods here?[31m\n"),
        "{result}"
    );

    let session = shown.session.as_mut().expect("set above");
    session.state = SessionState::Ended;
    session.ended_at = Some(now);
    session.ended = Some(format!("stopped by {TEST_USER_EMAIL}: session stopped"));
    session.pod_phase = Some(PodPhase::Removed);
    session.pod_error = None;
    shown.revision += 1;
    publish(&remote, &dir, &[("status.json", status_json(&shown))]);
    let result = run(engineer.path(), &["status", &id]);
    assert!(
        result.stdout.contains(&format!(
            "session   ended: stopped by {TEST_USER_EMAIL}: session stopped (2 turns, $0.42)\n"
        )),
        "{result}"
    );
    assert!(
        result
            .stdout
            .contains("pod       warroom-session-x removed\n"),
        "{result}"
    );
}

#[test]
fn session_help_names_each_file_it_writes() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    for (command, expected) in [
        ("start", "requests/pending/<ID>.yaml"),
        ("ask", "requests/ask/<ID>/<N>.yaml"),
        ("stop", "requests/cancel/<ID>.yaml"),
    ] {
        let help = run(dir.path(), &["session", command, "--help"]);
        assert_eq!(help.code, Some(0), "{help}");
        assert!(help.stdout.contains(expected), "{command}: {help}");
    }
}
