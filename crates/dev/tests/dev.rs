//! `warroom-dev`, run as a new user runs it: the quick start's `demo`, and
//! `up` against a remote an engineer pushes to, stopped with Ctrl-C, with the publisher's
//! surfaces configured by their environment variables. Real nats-server, real git, the real
//! Claude Code CLI in replay mode, a real S3-compatible server (moto) and a fixture Slack
//! webhook.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use warroom_proto::{ClusterPhase, RequestPhase, RequestStatus};
use warroom_testkit::{BareRemote, S3Server, SlackFixture, tools, wait_for, wait_for_ok};

/// Two real CLI runs in replay mode take a few seconds; this only stops a hang.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a surface may take after the request's final status is in git: the Slack post
/// and the S3 mirror's round after the push, on a loaded machine.
const SURFACE_TIMEOUT: Duration = Duration::from_secs(60);

/// The binary with the tools found the way the test kit finds them, no API key (so the stack
/// runs in replay mode whatever the machine has set), and none of the machine's `WARROOM_*`,
/// `AWS_*` or GitHub settings, so that only what a test sets reaches the daemons.
fn dev(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_warroom-dev"));
    for (var, _) in std::env::vars_os() {
        let name = var.to_string_lossy();
        if ["WARROOM_", "AWS_", "ANTHROPIC_"]
            .iter()
            .any(|prefix| name.starts_with(prefix))
            || ["RUST_LOG", "GITHUB_TOKEN"].contains(&name.as_ref())
        {
            cmd.env_remove(&var);
        }
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

/// `warroom-dev up` for `prod-cluster-1` against a remote, its output in a log file.
struct Up {
    child: std::sync::Mutex<Child>,
    log: PathBuf,
}

impl Up {
    /// Starts `command` (from [`dev`], with the test's own environment added) as `up`
    /// against `remote`, polling every 200 ms.
    fn start(mut command: Command, dir: &Path, remote: &BareRemote) -> Up {
        // The daemons log to stderr: a file, so that nothing blocks on a full pipe.
        let log = dir.join("dev-up.log");
        let file = std::fs::File::create(&log).expect("create the log");
        let child = command
            .args([
                "up",
                "--repo",
                &remote.url(),
                "--clusters",
                "prod-cluster-1",
            ])
            .args(["--poll-interval", "200ms"])
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start warroom-dev up");
        Up {
            child: std::sync::Mutex::new(child),
            log,
        }
    }

    /// What `up` logged so far.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails the test, with the log, if `up` has stopped.
    fn assert_running(&self) {
        let stopped = self
            .child
            .lock()
            .expect("child lock")
            .try_wait()
            .expect("poll dev up");
        assert!(stopped.is_none(), "dev up stopped:\n{}", self.log());
    }

    /// Waits for the request's final `status.json` on the remote, failing at once if `up`
    /// stops.
    async fn wait_final(&self, remote: &BareRemote, id: &str) -> RequestStatus {
        wait_for("a final status.json", RUN_TIMEOUT, || async {
            self.assert_running();
            let text = remote.read(&format!("results/{id}/status.json"))?;
            let status: RequestStatus = serde_json::from_str(&text).ok()?;
            status.phase.is_final().then_some(status)
        })
        .await
    }

    /// Stops `up` with Ctrl-C (SIGINT); returns whether it exited cleanly, and its log.
    fn interrupt(self) -> (ExitStatus, String) {
        let mut child = self.child.into_inner().expect("child lock");
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("a pid"));
        kill(pid, Signal::SIGINT).expect("send SIGINT");
        let exit = child.wait().expect("dev up ends");
        let log = std::fs::read_to_string(&self.log).expect("read the log");
        (exit, log)
    }
}

/// Pushes the design's single-cluster example as request `id` on `prod-cluster-1`, as an
/// engineer's plain commit.
fn push_request(remote: &BareRemote, id: &str) {
    let engineer = remote.work_clone();
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
    engineer.commit_all(&format!("Request {id}"));
    engineer.push();
}

#[tokio::test(flavor = "multi_thread")]
async fn up_runs_pushed_requests_until_interrupted() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let remote = BareRemote::new();
    let up = Up::start(dev(dir.path()), dir.path(), &remote);
    let id = "2026-11-24-1200-dev-up";
    push_request(&remote, id);

    let status = up.wait_final(&remote, id).await;
    assert_eq!(status.phase, RequestPhase::Completed, "{status:?}");
    assert_eq!(
        status.clusters["prod-cluster-1"].phase,
        ClusterPhase::Completed
    );

    let (exit, stderr) = up.interrupt();
    assert!(exit.success(), "dev up did not stop cleanly:\n{stderr}");
    assert!(stderr.contains("stopping"), "{stderr}");
    assert!(stderr.contains("requests are NOT verified"), "{stderr}");
    assert!(
        stderr.contains("INSECURE"),
        "the gateway warns too:\n{stderr}"
    );
}

/// The publisher's surfaces are configured by its environment variables alone, in `up` as
/// in the secure zone: a Slack webhook (a fixture) gets the request's end message, and a
/// real S3-compatible server (moto) gets its results, byte for byte as in git.
#[tokio::test(flavor = "multi_thread")]
async fn up_hands_the_slack_and_s3_variables_to_its_publisher() {
    const BUCKET: &str = "warroom-dev-results";
    const PREFIX: &str = "team-a/warroom";
    let dir = tempfile::tempdir().expect("temporary folder");
    let remote = BareRemote::new();
    let slack = SlackFixture::start(&[]).await;
    let s3 = S3Server::start().await;
    s3.create_bucket(BUCKET);

    let mut command = dev(dir.path());
    command.envs([
        ("WARROOM_SLACK_WEBHOOK_URL", slack.url()),
        ("WARROOM_S3_ENDPOINT", &s3.endpoint()),
        ("WARROOM_S3_BUCKET", BUCKET),
        ("WARROOM_S3_PREFIX", PREFIX),
        ("WARROOM_S3_PATH_STYLE", "true"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ]);
    let up = Up::start(command, dir.path(), &remote);
    let id = "2026-11-24-1300-dev-up-surfaces";
    push_request(&remote, id);

    let status = up.wait_final(&remote, id).await;
    assert_eq!(status.phase, RequestPhase::Completed, "{status:?}");

    let message = wait_for("the request's Slack message", SURFACE_TIMEOUT, || {
        up.assert_running();
        let found = slack
            .delivered()
            .into_iter()
            .find(|m| m.contains(&format!("`{id}`")));
        async move { found }
    })
    .await;
    assert!(message.contains("*completed*"), "{message}");
    assert!(message.contains("`prod-cluster-1`: completed"), "{message}");

    // The bucket holds git's `results/<id>/` under the prefix, once the mirror caught up
    // with the publisher's last push.
    let mirrored = wait_for_ok("the results in the bucket", SURFACE_TIMEOUT, || {
        up.assert_running();
        let want = results_in_git(&remote, id);
        let have: BTreeMap<String, String> = s3
            .objects(BUCKET, &format!("{PREFIX}/results/{id}/"))
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(key, text)| {
                Some((key.strip_prefix(&format!("{PREFIX}/"))?.to_owned(), text))
            })
            .collect();
        let seen = if !want.is_empty() && have == want {
            Ok(have)
        } else {
            let mirror_log: Vec<String> = up
                .log()
                .lines()
                .filter(|l| l.contains("s3") || l.contains("S3"))
                .map(str::to_owned)
                .collect();
            Err(format!(
                "git has {:?}, the bucket {:?}; the mirror logged: {mirror_log:#?}",
                want.keys(),
                have.keys()
            ))
        };
        async move { seen }
    })
    .await;
    for file in ["status.json", "README.md", "prod-cluster-1.md"] {
        let path = format!("results/{id}/{file}");
        assert!(
            mirrored.contains_key(&path),
            "{path} is not in the bucket: {:?}",
            mirrored.keys()
        );
    }

    let (exit, stderr) = up.interrupt();
    assert!(exit.success(), "dev up did not stop cleanly:\n{stderr}");
    assert!(
        stderr.contains(&format!("S3 mirror to s3://{BUCKET}/{PREFIX}/results/")),
        "the publisher names the mirror:\n{stderr}"
    );
    assert!(
        !stderr.contains(slack.url()),
        "the webhook URL is a secret and reached the log:\n{stderr}"
    );
    assert_eq!(slack.calls(), 1, "{:?}", slack.delivered());
}

/// Every file of `results/<id>/` on the remote's `main`, by path, with its content.
fn results_in_git(remote: &BareRemote, id: &str) -> BTreeMap<String, String> {
    let folder = format!("results/{id}/");
    remote
        .git(["ls-tree", "-r", "--name-only", "main", "--", &folder])
        .lines()
        .filter_map(|path| Some((path.to_owned(), remote.read(path)?)))
        .collect()
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

/// `--kubeconfig CLUSTER=FILE` names one of `--clusters` and a file that exists; anything
/// else is said before anything starts.
#[test]
fn up_refuses_a_kubeconfig_for_another_cluster_or_a_missing_file() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let remote = dir.path().join("remote.git");
    std::fs::create_dir(&remote).expect("a remote folder");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, "apiVersion: v1\nkind: Config\n").expect("a kubeconfig");
    let up = |value: String| {
        dev(dir.path())
            .args(["up", "--clusters", "prod-cluster-1", "--repo"])
            .arg(&remote)
            .args(["--kubeconfig", &value])
            .output()
            .expect("run warroom-dev up")
    };
    let cases = [
        (
            format!("other-cluster={}", kubeconfig.display()),
            "`other-cluster` is not one of --clusters",
            1,
        ),
        (
            format!("prod-cluster-1={}", dir.path().join("none").display()),
            "no such file",
            1,
        ),
        ("prod-cluster-1".to_owned(), "expected CLUSTER=FILE", 2),
    ];
    for (value, said, code) in cases {
        let output = up(value.clone());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(code), "{value}: {stderr}");
        assert!(stderr.contains(said), "{value}: {stderr}");
    }
    assert!(
        !dir.path().join(".warroom-dev").exists(),
        "nothing was started"
    );
}
