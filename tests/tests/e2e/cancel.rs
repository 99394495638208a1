//! Cancellation end to end (issue #22): `claude-warroom cancel` pushes a cancel file, the
//! gateway authorizes it, the dispatcher ends what waits and the runner stops what runs. The
//! agent's long command is a `kubectl` call the test holds; whether anything of the run is
//! left is read from `/proc` (every process of a run has its `HOME` below the stack's state
//! folder).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use warroom_proto::{ClusterPhase, NoticeKind, RequestPhase, RequestStatus};
use warroom_scripted_model::{Conversation, Script, Turn};
use warroom_testkit::{SshKey, WorkClone, tools, wait_for};

use crate::harness::{FINAL_TIMEOUT, Pipeline, assert_phase, request_yaml};

const CLUSTER: &str = "prod-cluster-1";
/// The call each first investigation makes, which the test holds: the long command.
const HELD: &str = "get pods -n clusters-slow -l app=slow";
/// From the cancel's push to the agent's processes gone, with a 200 ms poll: generous, for a
/// loaded machine (the runner checks every second, then SIGINT and a grace period).
const CANCEL_DEADLINE: Duration = Duration::from_secs(45);

fn script() -> Script {
    Script::new()
        .with(
            Conversation::new(vec![
                Turn::bash(format!("kubectl {HELD}")),
                Turn::text("FINDING: never reached, the run was cancelled."),
            ])
            .matching("LONG-INVESTIGATION"),
        )
        .with(
            Conversation::new(vec![
                Turn::bash("kubectl get nodes -l queued=second"),
                Turn::text("FINDING: the queued investigation ran."),
            ])
            .matching("QUEUED-INVESTIGATION"),
        )
        .with(
            Conversation::new(vec![Turn::text(
                "FINDING: the quick investigation is done.",
            )])
            .matching("QUICK-INVESTIGATION"),
        )
}

fn request(marker: &str, engineer: &str) -> String {
    request_yaml(
        &[("hosted", CLUSTER)],
        "parallel",
        &format!("{marker}: why does the API server time out?"),
        600,
    )
    .replace(
        "engineer: platform-engineer-1",
        &format!("engineer: {engineer}"),
    )
}

/// Runs `claude-warroom` in `dir`; returns (exit code, stdout + stderr).
fn claude_warroom(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(tools::workspace_binary("claude-warroom"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .env_remove("WARROOM_ENGINEER")
        .env_remove("WARROOM_REPO")
        .output()
        .expect("run claude-warroom");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

/// The pids of every process whose `HOME` lies below `state`: the agents' and all their
/// descendants (the CLI, its shells, the held `kubectl`).
fn processes_of_runs(state: &Path) -> Vec<(i32, String)> {
    let prefix = format!("HOME={}", state.display());
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
            let ours = environ
                .split(|b| *b == 0)
                .any(|var| String::from_utf8_lossy(var).starts_with(&prefix));
            // A zombie is gone already; only its entry waits for its parent.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let zombie = stat
                .rsplit(')')
                .next()
                .is_some_and(|s| s.trim_start().starts_with('Z'));
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            (ours && !zombie).then_some((pid, cmdline))
        })
        .collect()
}

async fn wait_phase(pipeline: &Pipeline, id: &str, phase: RequestPhase) -> RequestStatus {
    wait_for(
        format!("results/{id}/status.json {phase}"),
        FINAL_TIMEOUT,
        || async { pipeline.status(id).filter(|s| s.phase == phase) },
    )
    .await
}

/// Without a policy: the engineer cancels a queued request (it never runs) and a running one
/// whose agent is inside a long command (it ends `cancelled`, its audit lines and partial
/// report kept, and no process of the run is left); a second cancel and a cancel of a
/// completed request change nothing but a notice.
#[tokio::test(flavor = "multi_thread")]
async fn cancelling_stops_a_running_agent_and_a_queued_task_and_changes_nothing_after() {
    let pipeline = Pipeline::start(&[CLUSTER], script()).await;
    let clone = pipeline.engineer.path();
    pipeline.kubectl_hold(HELD);
    let state = pipeline.state_dir().to_path_buf();

    let running = "2026-12-07-1500-cancel-running";
    pipeline.push_request(
        running,
        &request("LONG-INVESTIGATION", "platform-engineer-1"),
    );
    wait_for(
        "the agent is inside its long command",
        FINAL_TIMEOUT,
        || async { pipeline.kubectl_held(HELD).then_some(()) },
    )
    .await;
    let queued = "2026-12-07-1500-cancel-queued";
    pipeline.push_request(
        queued,
        &request("QUEUED-INVESTIGATION", "platform-engineer-1"),
    );
    wait_for(
        "the second request waits in the queue",
        FINAL_TIMEOUT,
        || async {
            let status = pipeline.status(queued)?;
            (status.clusters[CLUSTER].phase == ClusterPhase::Dispatched).then_some(())
        },
    )
    .await;
    let before = processes_of_runs(&state);
    assert!(
        before.iter().any(|(_, cmd)| cmd.contains("kubectl")),
        "the held kubectl of the run is visible before the cancel: {before:?}"
    );

    // The queued one first: it must end without ever running.
    pipeline.engineer.pull();
    let (code, out) = claude_warroom(
        clone,
        &[
            "cancel",
            queued,
            "--reason",
            "not needed",
            "--engineer",
            "platform-engineer-1",
        ],
    );
    assert_eq!(code, Some(0), "{out}");
    let cancelled = wait_phase(&pipeline, queued, RequestPhase::Cancelled).await;
    assert_eq!(cancelled.clusters[CLUSTER].phase, ClusterPhase::Cancelled);
    assert_eq!(
        cancelled.clusters[CLUSTER].started_at, None,
        "{cancelled:?}"
    );
    let who = cancelled.cancelled.clone().expect("who cancelled it");
    assert_eq!(who.by, "platform-engineer-1");
    assert_eq!(who.reason.as_deref(), Some("not needed"));
    assert!(!who.verified, "no policy: the cancel is unverified");

    // Then the running one: its agent is stopped and nothing of the run is left.
    let pushed = std::time::Instant::now();
    let (code, out) = claude_warroom(
        clone,
        &[
            "cancel",
            running,
            "--reason",
            "wrong cluster",
            "--engineer",
            "platform-engineer-1",
        ],
    );
    assert_eq!(code, Some(0), "{out}");
    let status = wait_phase(&pipeline, running, RequestPhase::Cancelled).await;
    wait_for("no process of the run is left", CANCEL_DEADLINE, || async {
        processes_of_runs(&state).is_empty().then_some(())
    })
    .await;
    let gone = pushed.elapsed();
    assert!(gone < CANCEL_DEADLINE, "took {gone:?}");
    assert!(
        status
            .error
            .as_deref()
            .is_some_and(|e| e.contains("cancelled by platform-engineer-1: wrong cluster")),
        "{status:?}"
    );
    let report = wait_for("the partial report", FINAL_TIMEOUT, || async {
        pipeline
            .result(running, &format!("{CLUSTER}.md"))
            .filter(|r| r.contains("what follows is partial") || r.contains("no findings yet"))
    })
    .await;
    assert!(report.contains("cancelled"), "{report}");
    let audit = pipeline.audit(running);
    assert!(
        audit.iter().any(|line| line["event"] == "tool_call"),
        "the audit lines so far are kept: {audit:?}"
    );
    assert!(
        audit
            .iter()
            .any(|line| line["event"] == "finished" && line["outcome"] == "cancelled"),
        "{audit:?}"
    );
    // The queued investigation never ran: its command never reached kubectl, nor its
    // prompt the model.
    pipeline.kubectl_release(HELD);
    assert!(
        !pipeline
            .kubectl_calls()
            .iter()
            .any(|c| c.contains("queued=second")),
        "{:?}",
        pipeline.kubectl_calls()
    );
    assert!(
        !pipeline
            .model
            .requests()
            .iter()
            .any(|r| r.first_user_text().contains("QUEUED-INVESTIGATION")),
        "the queued request's prompt reached the model"
    );

    // A completed request, and a second cancel of a cancelled one: a notice, nothing else.
    let quick = "2026-12-07-1500-cancel-quick";
    pipeline.push_request(
        quick,
        &request("QUICK-INVESTIGATION", "platform-engineer-1"),
    );
    let done = pipeline.wait_report(quick, &[CLUSTER]).await;
    assert_phase(&done, RequestPhase::Completed);
    pipeline.engineer.pull();
    let (code, out) = claude_warroom(clone, &["cancel", quick, "--engineer", "someone"]);
    assert_eq!(code, Some(0), "{out}");
    let noticed = wait_for("the late cancel's notice", FINAL_TIMEOUT, || async {
        pipeline.status(quick).filter(|s| !s.notices.is_empty())
    })
    .await;
    assert_phase(&noticed, RequestPhase::Completed);
    assert_eq!(noticed.notices[0].kind, NoticeKind::CancelIgnored);
    assert!(
        noticed.notices[0]
            .message
            .contains("already ended completed"),
        "{noticed:?}"
    );
    assert_eq!(noticed.clusters, done.clusters);
    assert_eq!(noticed.cancelled, None);

    // A second cancel file for the cancelled request (the file changed).
    pipeline.engineer.pull();
    let path = format!("requests/cancel/{running}.yaml");
    let again = pipeline
        .engineer
        .read(&path)
        .expect("the first cancel file")
        .replace("wrong cluster", "really");
    commit_and_push(&pipeline.engineer, &path, &again, None);
    let noticed = wait_for("the second cancel's notice", FINAL_TIMEOUT, || async {
        pipeline.status(running).filter(|s| !s.notices.is_empty())
    })
    .await;
    assert_phase(&noticed, RequestPhase::Cancelled);
    assert!(
        noticed.notices[0]
            .message
            .contains("already cancelled by platform-engineer-1"),
        "{noticed:?}"
    );
    assert_eq!(noticed.cancelled, status.cancelled);
    pipeline.shutdown().await;
}

/// Commits `text` as `path`, signed with `key`, and pushes. The publisher pushes results
/// meanwhile, so a push can be refused as stale: the commit is then made again on the new
/// head (a rebase would drop its signature), as an engineer would.
fn commit_and_push(clone: &WorkClone, path: &str, text: &str, key: Option<&SshKey>) {
    for attempt in 1..=5 {
        clone.pull();
        clone.write(path, text);
        clone.git(["add", "--all"]);
        let mut args = key.map(SshKey::signing_args).unwrap_or_default();
        args.extend(["commit", "--quiet", "--message", "cancel"].map(str::to_owned));
        clone.git(&args);
        if attempt == 5 {
            clone.push();
        } else if clone.try_push().is_ok() {
            return;
        } else {
            clone.git(["reset", "--quiet", "--hard", "HEAD~1"]);
        }
    }
}

fn cancel_yaml(engineer: &str, reason: &str) -> String {
    format!(
        "apiVersion: warroom.intility.io/v1\nkind: CancelRequest\nmetadata:\n  engineer: {engineer}\n  timestamp: \"2026-12-07T15:00:00Z\"\nspec:\n  reason: {reason}\n"
    )
}

/// With a policy: a signed cancel by an engineer who neither owns the request nor is an
/// admin is refused with the reason in `status.json`, and the agent runs on; the signed
/// cancel of an admin then stops it.
#[tokio::test(flavor = "multi_thread")]
async fn a_cancel_the_policy_does_not_allow_is_refused_and_an_admins_is_not() {
    let alice = SshKey::generate("platform-engineer-1@example.com");
    let bob = SshKey::generate("bob@example.com");
    let admin = SshKey::generate("oncall@example.com");
    let policy_dir = tempfile::tempdir().expect("a folder for the policy");
    let policy_file = policy_dir.path().join("policy.yaml");
    let policy = format!(
        "apiVersion: warroom.intility.io/v1\nkind: WarroomPolicy\nadmins: [oncall]\nengineers:\n  - name: platform-engineer-1\n    keys: [\"{}\"]\n    clusters: [\"prod-cluster-*\"]\n  - name: bob\n    keys: [\"{}\"]\n    clusters: [\"prod-cluster-*\"]\n  - name: oncall\n    keys: [\"{}\"]\n    clusters: [\"prod-cluster-*\"]\n",
        alice.public_key(),
        bob.public_key(),
        admin.public_key()
    );
    std::fs::write(&policy_file, policy).expect("write the policy");
    let pipeline = Pipeline::start_with(&[CLUSTER], script(), |options| {
        options.policy = Some(policy_file.clone());
    })
    .await;
    pipeline.kubectl_hold(HELD);
    let id = "2026-12-07-1500-cancel-policy";
    commit_and_push(
        &pipeline.engineer,
        &format!("requests/pending/{id}.yaml"),
        &request("LONG-INVESTIGATION", "platform-engineer-1"),
        Some(&alice),
    );
    wait_for(
        "the agent is inside its long command",
        FINAL_TIMEOUT,
        || async { pipeline.kubectl_held(HELD).then_some(()) },
    )
    .await;

    let path = format!("requests/cancel/{id}.yaml");
    commit_and_push(
        &pipeline.engineer,
        &path,
        &cancel_yaml("bob", "mine now"),
        Some(&bob),
    );
    let refused = wait_for("the refused cancel's notice", FINAL_TIMEOUT, || async {
        pipeline.status(id).filter(|s| !s.notices.is_empty())
    })
    .await;
    assert_phase(&refused, RequestPhase::Running);
    assert_eq!(refused.notices[0].kind, NoticeKind::CancelRefused);
    assert!(
        refused.notices[0].message.contains("not_allowed_to_cancel"),
        "{refused:?}"
    );
    assert_eq!(refused.cancelled, None);
    assert!(pipeline.kubectl_held(HELD));

    commit_and_push(
        &pipeline.engineer,
        &path,
        &cancel_yaml("oncall", "on-call stops it"),
        Some(&admin),
    );
    let cancelled = wait_phase(&pipeline, id, RequestPhase::Cancelled).await;
    let who = cancelled.cancelled.expect("who cancelled it");
    assert_eq!((who.by.as_str(), who.verified), ("oncall", true));
    assert_eq!(who.reason.as_deref(), Some("on-call stops it"));
    pipeline.kubectl_release(HELD);
    pipeline.shutdown().await;
}
