//! Trust end to end, with a secure-zone policy: real `ssh-keygen` keys, commits signed by
//! the real git (`gpg.format=ssh`), the gateway verifying them, the publisher signing its
//! results and `claude-warroom status --verify` checking them.

use std::path::Path;
use std::process::{Command, Stdio};

use warroom_proto::{NoticeKind, RequestPhase, RequestStatus};
use warroom_scripted_model::{Script, Turn};
use warroom_testkit::{SshKey, WorkClone, tools, wait_for};

use crate::harness::{FINAL_TIMEOUT, Pipeline, assert_phase, request_yaml};

const ALLOWED: &str = "prod-cluster-1";
/// A cluster the policy lets carol target but that has no runner: her request stays in
/// flight, which is what her limit of one active request is measured against.
const NO_RUNNER: &str = "prod-cluster-9";
const FINDING: &str = "FINDING: the API server is healthy.";
/// Text only the edited version of a request holds; the model must never see it.
const EDIT_MARKER: &str = "EDITED-AFTER-ACCEPTANCE-7731";

fn policy(alice: &SshKey, bob: &SshKey, carol: &SshKey) -> String {
    format!(
        r#"apiVersion: warroom.intility.io/v1
kind: WarroomPolicy
engineers:
  - name: platform-engineer-1
    keys: ["{}"]
    clusters: ["prod-cluster-*"]
  - name: bob
    keys: ["{}"]
    clusters: [other-hub]
  - name: carol
    keys: ["{}"]
    clusters: ["prod-cluster-*"]
    maxConcurrentRequests: 1
"#,
        alice.public_key(),
        bob.public_key(),
        carol.public_key()
    )
}

/// A request of `engineer` for one hosted cluster.
fn request(engineer: &str, cluster: &str, prompt: &str) -> String {
    request_yaml(&[("hosted", cluster)], "parallel", prompt, 300).replace(
        "engineer: platform-engineer-1",
        &format!("engineer: {engineer}"),
    )
}

/// Writes `files` into `clone` and commits them, signed with `key` when given.
fn commit(clone: &WorkClone, files: &[(&str, &str)], key: Option<&SshKey>, message: &str) {
    clone.pull();
    for (path, text) in files {
        clone.write(path, text);
    }
    clone.git(["add", "--all"]);
    let mut args = key.map(SshKey::signing_args).unwrap_or_default();
    args.extend(["commit", "--quiet", "--message", message].map(str::to_owned));
    clone.git(&args);
}

fn pending(id: &str) -> String {
    format!("requests/pending/{id}.yaml")
}

/// The single field error of a rejected request's status: (field, message).
fn refusal(status: &RequestStatus) -> (&str, &str) {
    assert_phase(status, RequestPhase::Rejected);
    assert_eq!(status.errors.len(), 1, "{status:?}");
    (&status.errors[0].field, &status.errors[0].message)
}

/// Runs `claude-warroom` in `dir`; returns (exit code, stdout + stderr).
fn claude_warroom(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(tools::workspace_binary("claude-warroom"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run claude-warroom");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

/// Everything issue #10 asks of a secured deployment, on one running product: only signed
/// requests of an allowed engineer run, each refusal says why in git, an edit after
/// acceptance never runs, a re-used id is answered, a planted status.json stops nothing,
/// the engineer's limit holds, and `status --verify` trusts the publisher's results only.
#[tokio::test(flavor = "multi_thread")]
async fn only_signed_requests_of_allowed_engineers_run_and_results_verify() {
    let alice = SshKey::generate("platform-engineer-1@example.com");
    let bob = SshKey::generate("bob@example.com");
    let carol = SshKey::generate("carol@example.com");
    let stranger = SshKey::generate("stranger@example.com");
    let policy_dir = tempfile::tempdir().expect("a folder for the policy");
    let policy_file = policy_dir.path().join("policy.yaml");
    std::fs::write(&policy_file, policy(&alice, &bob, &carol)).expect("write the policy");

    let script = Script::single(vec![Turn::text(FINDING)]);
    let pipeline = Pipeline::start_with(&[ALLOWED], script, |options| {
        options.policy = Some(policy_file.clone());
    })
    .await;
    let engineer = &pipeline.engineer;

    // A status.json planted before its request, with a revision the publisher would never
    // reach, is pushed in its own unsigned commit.
    commit(
        engineer,
        &[(
            "results/r-planted/status.json",
            r#"{"id":"r-planted","phase":"completed","clusters":{},"results_dir":"results/r-planted","revision":999999,"updated_at":"2026-11-29T00:00:00Z"}"#,
        )],
        None,
        "a planted status",
    );
    let allowed = request("platform-engineer-1", ALLOWED, "Why is the API slow?");
    commit(
        engineer,
        &[
            (&pending("r-signed"), &allowed),
            (&pending("r-planted"), &allowed),
        ],
        Some(&alice),
        "signed by alice",
    );
    commit(
        engineer,
        &[(&pending("r-unsigned"), &allowed)],
        None,
        "unsigned",
    );
    commit(
        engineer,
        &[(&pending("r-stranger"), &allowed)],
        Some(&stranger),
        "signed by a key nobody knows",
    );
    commit(
        engineer,
        &[(&pending("r-bob-as-alice"), &allowed)],
        Some(&bob),
        "bob claims to be alice",
    );
    commit(
        engineer,
        &[(
            &pending("r-other-cluster"),
            &request("platform-engineer-1", "other-hub", "Look at the hub."),
        )],
        Some(&alice),
        "a cluster alice may not target",
    );
    commit(
        engineer,
        &[(
            &pending("r-carol-1"),
            &request("carol", NO_RUNNER, "Why is prod-cluster-9 down?"),
        )],
        Some(&carol),
        "carol's first request",
    );
    engineer.push();

    let signed = pipeline.wait_report("r-signed", &[ALLOWED]).await;
    assert_phase(&signed, RequestPhase::Completed);
    let verification = signed.verification.clone().expect("a verification record");
    assert!(verification.verified, "{verification:?}");
    assert_eq!(verification.signed_by, vec![alice.fingerprint()]);
    let readme = pipeline.result("r-signed", "README.md").expect("README");
    assert!(readme.contains("| Verified | yes, signed by"), "{readme}");
    let report = pipeline
        .result("r-signed", &format!("{ALLOWED}.md"))
        .expect("report");
    assert!(report.contains(FINDING), "{report}");
    assert!(!report.contains("Not verified"), "{report}");

    let planted = pipeline.wait_report("r-planted", &[ALLOWED]).await;
    assert_phase(&planted, RequestPhase::Completed);
    assert!(
        planted.revision < 100,
        "the publisher's own revision: {planted:?}"
    );

    for (id, field, code) in [
        ("r-unsigned", "metadata.engineer", "unsigned"),
        ("r-stranger", "metadata.engineer", "unknown_key"),
        ("r-bob-as-alice", "metadata.engineer", "other_engineer"),
        (
            "r-other-cluster",
            "spec.targetCluster.name",
            "cluster_not_allowed",
        ),
    ] {
        let status = pipeline.wait_final(id).await;
        let (got_field, message) = refusal(&status);
        assert_eq!(got_field, field, "{id}: {message}");
        assert!(message.starts_with(&format!("{code}: ")), "{id}: {message}");
    }

    // carol's first request waits for a runner that does not exist: it is in flight, so her
    // second one is over her limit of one.
    wait_for(
        "carol's first request dispatched",
        FINAL_TIMEOUT,
        || async {
            pipeline
                .status("r-carol-1")
                .filter(|s| s.phase == RequestPhase::Dispatched)
        },
    )
    .await;
    commit(
        engineer,
        &[(
            &pending("r-carol-2"),
            &request("carol", ALLOWED, "And prod-cluster-1?"),
        )],
        Some(&carol),
        "carol's second request",
    );
    // alice edits her accepted request in an unsigned commit, and re-uses its id in a new
    // file, signed.
    let edited = request(
        "platform-engineer-1",
        ALLOWED,
        &format!("Delete everything. {EDIT_MARKER}"),
    );
    commit(
        engineer,
        &[(&pending("r-signed"), &edited)],
        None,
        "an edit",
    );
    commit(
        engineer,
        &[("requests/pending/r-signed.yml", &edited)],
        Some(&alice),
        "the same id again",
    );
    engineer.push();

    let carol_2 = pipeline.wait_final("r-carol-2").await;
    let (field, message) = refusal(&carol_2);
    assert_eq!(field, "metadata.engineer");
    assert!(
        message.starts_with(
            "too_many_requests: the engineer `carol` already has 1 active request; the limit is 1"
        ),
        "{message}"
    );

    let noticed = wait_for(
        "both notices in r-signed's status",
        FINAL_TIMEOUT,
        || async { pipeline.status("r-signed").filter(|s| s.notices.len() == 2) },
    )
    .await;
    assert_phase(&noticed, RequestPhase::Completed);
    let kinds: Vec<NoticeKind> = noticed.notices.iter().map(|n| n.kind).collect();
    assert!(
        kinds.contains(&NoticeKind::ChangedAfterAcceptance),
        "{kinds:?}"
    );
    assert!(kinds.contains(&NoticeKind::IdReused), "{kinds:?}");
    let readme = wait_for(
        "the notices in r-signed's README",
        FINAL_TIMEOUT,
        || async {
            pipeline
                .result("r-signed", "README.md")
                .filter(|r| r.contains("## Notices"))
        },
    )
    .await;
    assert!(readme.contains("`id_reused`"), "{readme}");
    let seen_by_model = pipeline
        .model
        .requests()
        .iter()
        .any(|r| r.body.to_string().contains(EDIT_MARKER));
    assert!(!seen_by_model, "the edited text reached the model");

    // The engineer checks the results against the publisher's key.
    engineer.pull();
    let key = pipeline.publisher_key_file().display().to_string();
    let (code, out) = claude_warroom(engineer.path(), &["init", "--publisher-key", &key]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = claude_warroom(engineer.path(), &["status", "--verify", "r-signed"]);
    assert_eq!(code, Some(0), "the publisher's results verify: {out}");
    let (code, out) = claude_warroom(engineer.path(), &["status", "--verify", "r-planted"]);
    assert_ne!(
        code,
        Some(0),
        "a planted status.json must not verify: {out}"
    );
    assert!(
        out.contains("results/r-planted/")
            && out.contains("\"a planted status\"")
            && out.contains("not signed"),
        "the refusal names the planted commit: {out}"
    );
    pipeline.shutdown().await;
}
