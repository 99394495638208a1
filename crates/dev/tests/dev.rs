//! `warroom-dev`, run as a new user runs it: the quick start's `demo`, and
//! `up` against a remote an engineer pushes to, stopped with Ctrl-C. Real nats-server,
//! real git, the real Claude Code CLI in replay mode.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use warroom_proto::{ClusterPhase, RequestPhase, RequestStatus};
use warroom_testkit::{BareRemote, tools, wait_for};

/// Two real CLI runs in replay mode take a few seconds; this only stops a hang.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// The binary with the tools found the way the test kit finds them and no API key, so the
/// stack runs in replay mode whatever the machine has set.
fn dev(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_warroom-dev"));
    for var in [
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_BASE_URL",
        "RUST_LOG",
        "WARROOM_REPO",
        "WARROOM_POLICY",
        "WARROOM_INSECURE_ALLOW_UNSIGNED",
    ] {
        cmd.env_remove(var);
    }
    cmd.current_dir(dir)
        .env("WARROOM_NATS_SERVER_BIN", tools::nats_server())
        .env("WARROOM_CLAUDE_BIN", tools::claude())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdin(Stdio::null());
    cmd
}

#[test]
fn demo_submits_the_sample_and_prints_where_the_replayed_reports_landed() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let output = dev(dir.path())
        .args(["demo", "--timeout", "2m"])
        .output()
        .expect("run warroom-dev demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "dev demo failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stderr.contains("replay mode"), "{stderr}");
    assert!(stderr.contains("requests are NOT verified"), "{stderr}");

    let report = stdout
        .lines()
        .find_map(|line| line.strip_prefix("report: "))
        .unwrap_or_else(|| panic!("no `report:` line:\n{stdout}"));
    let results = Path::new(report).parent().expect("the report's folder");
    assert!(
        results.starts_with(dir.path().canonicalize().expect("canonical temp dir")),
        "the report is in the state folder: {report}"
    );
    let status: RequestStatus = serde_json::from_str(
        &std::fs::read_to_string(results.join("status.json")).expect("status.json"),
    )
    .expect("a valid status.json");
    assert_eq!(status.phase, RequestPhase::Completed, "{status:?}");
    assert_eq!(
        status
            .clusters
            .keys()
            .map(|c| c.as_str())
            .collect::<Vec<_>>(),
        ["prod-cluster-1", "production-hub"]
    );
    assert!(
        stdout.contains(&format!("request {}: completed", status.id)),
        "{stdout}"
    );

    let aggregated = std::fs::read_to_string(report).expect("the aggregated report");
    assert!(aggregated.contains("Replay"), "{aggregated}");
    for cluster in ["production-hub", "prod-cluster-1"] {
        let text = std::fs::read_to_string(results.join(format!("{cluster}.md")))
            .expect("the cluster's report");
        assert!(text.contains("**Replay.**"), "{cluster}.md:\n{text}");
        assert!(text.contains(&format!("Findings on {cluster}")), "{text}");
    }
    // Sequential: the hosted cluster started only after the hub had finished.
    let hub = &status.clusters["production-hub"];
    let hosted = &status.clusters["prod-cluster-1"];
    assert!(hub.finished_at <= hosted.started_at, "{status:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn up_runs_pushed_requests_until_interrupted() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let remote = BareRemote::new();
    // The daemons log to stderr: a file, so that nothing blocks on a full pipe.
    let log_path = dir.path().join("dev-up.log");
    let log = std::fs::File::create(&log_path).expect("create the log");
    let child = dev(dir.path())
        .args([
            "up",
            "--repo",
            &remote.url(),
            "--clusters",
            "prod-cluster-1",
        ])
        .args(["--poll-interval", "200ms"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start warroom-dev up");

    let engineer = remote.work_clone();
    let id = "2026-11-24-1200-dev-up";
    engineer.write(
        format!("requests/pending/{id}.yaml"),
        include_str!("../../../examples/requests/2024-01-15-1430-api-timeout.yaml")
            .replace("name: production-hub", "name: prod-cluster-1")
            .replace("type: hub", "type: hosted")
            .replace(
                "destination: \"/results/2024-01-15-1430-api-timeout/\"",
                &format!("destination: results/{id}"),
            ),
    );
    engineer.commit_all("Request dev up");
    engineer.push();

    let child = std::sync::Mutex::new(child);
    let status: RequestStatus = wait_for("a final status.json", RUN_TIMEOUT, || async {
        let stopped = child
            .lock()
            .expect("child lock")
            .try_wait()
            .expect("poll dev up");
        assert!(
            stopped.is_none(),
            "dev up stopped:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        let text = remote.read(&format!("results/{id}/status.json"))?;
        let status: RequestStatus = serde_json::from_str(&text).ok()?;
        status.phase.is_final().then_some(status)
    })
    .await;
    assert_eq!(status.phase, RequestPhase::Completed, "{status:?}");
    assert_eq!(
        status.clusters["prod-cluster-1"].phase,
        ClusterPhase::Completed
    );

    let mut child = child.into_inner().expect("child lock");
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("a pid"));
    kill(pid, Signal::SIGINT).expect("send SIGINT");
    let exit = child.wait().expect("dev up ends");
    let stderr = std::fs::read_to_string(&log_path).expect("read the log");
    assert!(exit.success(), "dev up did not stop cleanly:\n{stderr}");
    assert!(stderr.contains("stopping"), "{stderr}");
    assert!(stderr.contains("requests are NOT verified"), "{stderr}");
    assert!(
        stderr.contains("INSECURE"),
        "the gateway warns too:\n{stderr}"
    );
}

#[test]
fn up_hands_the_policy_to_the_gateway_which_refuses_an_invalid_one() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let remote = BareRemote::new();
    let missing = dir.path().join("no-such-policy.yaml");
    let output = dev(dir.path())
        .args([
            "up",
            "--clusters",
            "prod-cluster-1",
            "--repo",
            &remote.url(),
        ])
        .arg("--policy")
        .arg(&missing)
        .output()
        .expect("run warroom-dev up");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no such file"), "{stderr}");

    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "apiVersion: warroom.intility.io/v1\nkind: WarroomPolicy\nengineers:\n  - name: alice\n    keys: [nonsense]\n    clusters: [hub]\n",
    )
    .expect("write the policy");
    let output = dev(dir.path())
        .args([
            "up",
            "--clusters",
            "prod-cluster-1",
            "--repo",
            &remote.url(),
        ])
        .arg("--policy")
        .arg(&policy)
        .output()
        .expect("run warroom-dev up");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("gateway") && stderr.contains("engineers[0].keys[0]"),
        "{stderr}"
    );
}

#[test]
fn up_refuses_a_local_remote_that_does_not_exist() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let missing = dir.path().join("no-such-remote.git");
    let output = dev(dir.path())
        .args(["up", "--clusters", "prod-cluster-1", "--repo"])
        .arg(&missing)
        .output()
        .expect("run warroom-dev up");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--repo") && stderr.contains("no such folder"),
        "{stderr}"
    );
    assert!(
        !dir.path().join(".warroom-dev").exists(),
        "nothing was started"
    );
}
