//! Session pods against a fixture Kubernetes API server ([`KubeApi`]: the Pod API's JSON,
//! create with 409, get, delete with 404, list by label selector), reached through the
//! runner's `--kubeconfig`, driven by the real runner `run` on a real
//! nats-server. Then the pod the runner sent is run as it says: its two containers as local
//! processes with exactly its arguments and environment, and `claude -p` as `kubectl exec`
//! runs it, under the real guard and the real Claude Code CLI against the scripted model.

use serde_json::{Value, json};
use warroom_proto::status::PodPhase;
use warroom_proto::wire::PodReport;
use warroom_proto::{PodOrder, Subject};
use warroom_runner::session_pod;
use warroom_testkit::KubeApi;
use warroom_testkit::deploy::{Pod as PodProcess, Rendered, Rewrite, Secrets, Workload};

use super::*;

const NAMESPACE: &str = "warroom";
/// The model key the session pod's Secret holds.
const REAL_KEY: &str = "sk-ant-session-pod-real-key";

/// The fixture Pod API ([`KubeApi`]) in this test's namespace, with the runner's flags to
/// reach it.
struct KubeFixture {
    api: KubeApi,
}

impl KubeFixture {
    async fn start() -> KubeFixture {
        KubeFixture {
            api: KubeApi::start().await,
        }
    }

    fn kubeconfig(&self) -> String {
        self.api.kubeconfig().display().to_string()
    }

    /// The runner's flags for session pods through this server.
    fn args(&self) -> Vec<String> {
        [
            "--session-pods",
            "--session-image",
            "registry.example/claude-warroom:test",
            "--session-namespace",
            NAMESPACE,
            "--kubeconfig",
            &self.kubeconfig(),
        ]
        .into_iter()
        .map(str::to_owned)
        .collect()
    }

    fn pod(&self, name: &str) -> Option<Value> {
        self.api.pod(NAMESPACE, name)
    }

    fn pod_names(&self) -> Vec<String> {
        self.api
            .pods()
            .into_iter()
            .filter(|(namespace, _)| namespace == NAMESPACE)
            .map(|(_, name)| name)
            .collect()
    }

    /// Every call, `METHOD path`.
    fn calls(&self) -> Vec<String> {
        self.api.calls()
    }

    /// How many calls were `METHOD path` for `path` below the namespace's pods (`""` for the
    /// collection, `/<name>` for one pod).
    fn count(&self, method: &str, path: &str) -> usize {
        let call = format!("{method} /api/v1/namespaces/{NAMESPACE}/pods{path}");
        self.calls().iter().filter(|c| **c == call).count()
    }

    fn fail_next(&self, n: u32) {
        self.api.fail_next(n);
    }

    /// A pod somebody (an earlier runner) made.
    fn seed(&self, object: Value) {
        self.api.insert_pod(object);
    }
}

/// A session's pod order as the dispatcher sends it.
fn pod_task(request: &str, order: PodOrder) -> Task {
    Task {
        allowed_tools: vec![Tool::Bash],
        pod: Some(order),
        ..task(request, 60)
    }
}

fn hold_for(minutes: i64) -> PodOrder {
    PodOrder::Hold {
        expires_at: warroom_proto::now() + time::Duration::minutes(minutes),
        budget_usd: Some(1.5),
    }
}

/// Publishes `task` as a message of its own (a second publication of the same order is a
/// redelivery to the runner, not a duplicate to NATS).
async fn publish_as(harness: &Harness, task: &Task, id: &str) {
    harness
        .bus
        .publish(&Subject::Task(task.cluster.name.clone()), Some(id), task)
        .await
        .expect("publish the task");
}

async fn pod_reports(harness: &Harness, request: &str) -> Vec<PodReport> {
    harness
        .reports(request)
        .await
        .into_iter()
        .filter_map(|r| match r {
            RunnerReport::SessionPod(report) => Some(report),
            _ => None,
        })
        .collect()
}

/// Waits until `request` has `n` pod reports, and returns them.
async fn wait_pod_reports(harness: &Harness, request: &str, n: usize) -> Vec<PodReport> {
    wait_for(format!("{n} pod report(s) for {request}"), WAIT, || async {
        let reports = pod_reports(harness, request).await;
        (reports.len() >= n).then_some(reports)
    })
    .await
}

fn script() -> Script {
    Script::single(vec![Turn::text("nothing to do")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_pod_is_held_once_and_released() {
    let kube = KubeFixture::start().await;
    let args = kube.args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let harness = Harness::start(script(), &args).await;
    let name = "warroom-session-inc-7";

    let hold = pod_task("inc-7", hold_for(30));
    harness.publish_task(&hold).await;
    let reports = wait_pod_reports(&harness, "inc-7", 1).await;
    assert_eq!(reports[0].phase, PodPhase::Held, "{reports:?}");
    assert_eq!(reports[0].pod, name);
    assert_eq!(reports[0].cluster.as_str(), CLUSTER);
    let pod = kube.pod(name).expect("the pod was created");
    let meta = &pod["metadata"];
    assert_eq!(meta["namespace"], NAMESPACE);
    assert_eq!(meta["labels"]["app.kubernetes.io/name"], "warroom-session");
    assert_eq!(
        meta["labels"]["app.kubernetes.io/managed-by"],
        "warroom-runner"
    );
    assert_eq!(meta["labels"]["warroom.io/request-id"], "inc-7");
    assert_eq!(meta["labels"]["warroom.io/cluster"], CLUSTER);
    assert_eq!(meta["annotations"]["warroom.io/request-id"], "inc-7");
    assert_eq!(meta["annotations"]["warroom.io/engineer"], "jane");
    let PodOrder::Hold { expires_at, .. } = hold.pod.clone().expect("an order") else {
        panic!("a hold");
    };
    assert_eq!(
        meta["annotations"]["warroom.io/expires-at"],
        session_pod::rfc3339(expires_at)
    );
    let deadline = pod["spec"]["activeDeadlineSeconds"]
        .as_i64()
        .expect("a deadline");
    assert!((1700..=1800).contains(&deadline), "{deadline}");
    assert_eq!(pod["spec"]["serviceAccountName"], "warroom-session");
    assert_eq!(
        pod["spec"]["containers"][0]["image"],
        "registry.example/claude-warroom:test"
    );

    // The same order again (a redelivery): still one pod, held.
    publish_as(&harness, &hold, "inc-7-hold-again").await;
    let reports = wait_pod_reports(&harness, "inc-7", 2).await;
    assert_eq!(reports[1].phase, PodPhase::Held, "{reports:?}");
    assert_eq!(kube.pod_names(), [name]);
    assert_eq!(
        kube.count("GET", &format!("/{name}")),
        1,
        "the existing pod was read: {:?}",
        kube.calls()
    );

    harness
        .publish_task(&pod_task("inc-7-release", PodOrder::Release))
        .await;
    // Released under its own request id.
    let release = Task {
        request_id: "inc-7".parse().expect("id"),
        ..pod_task("inc-7", PodOrder::Release)
    };
    publish_as(&harness, &release, "inc-7-release").await;
    let reports = wait_pod_reports(&harness, "inc-7", 3).await;
    assert_eq!(reports[2].phase, PodPhase::Removed, "{reports:?}");
    assert!(kube.pod(name).is_none());
    // A release of a pod that never existed (404) is removed too.
    let other = wait_pod_reports(&harness, "inc-7-release", 1).await;
    assert_eq!(other[0].phase, PodPhase::Removed, "{other:?}");
    harness.wait_tasks_acked().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_fails_without_session_pods_and_after_the_sessions_end() {
    let kube = KubeFixture::start().await;
    let kubeconfig = kube.kubeconfig();
    // A runner without --session-pods, though it could reach the API server.
    let mut harness = Harness::start(script(), &["--kubeconfig", &kubeconfig]).await;
    harness.publish_task(&pod_task("inc-8", hold_for(30))).await;
    let reports = wait_pod_reports(&harness, "inc-8", 1).await;
    assert_eq!(reports[0].phase, PodPhase::Failed);
    let error = reports[0].error.as_deref().unwrap_or_default();
    assert!(
        error.contains("does not hold session pods")
            && error.contains("deploy/components/session-exec"),
        "{error}"
    );
    harness.wait_tasks_acked().await;
    harness.stop_runner().await;

    // With session pods, a hold that arrives after the session's end makes nothing.
    let args = kube.args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    harness.start_runner(&args);
    harness.publish_task(&pod_task("inc-9", hold_for(-1))).await;
    let reports = wait_pod_reports(&harness, "inc-9", 1).await;
    assert_eq!(reports[0].phase, PodPhase::Failed);
    assert_eq!(
        reports[0].error.as_deref(),
        Some("the session ended before its pod was made")
    );
    harness.wait_tasks_acked().await;
    // No hold reached the API server (the sweep's list is all it saw).
    let calls = kube.calls();
    assert_eq!(kube.count("GET", ""), calls.len(), "{calls:?}");
    assert!(kube.pod_names().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_outlasts_a_server_error() {
    let kube = KubeFixture::start().await;
    let args = kube.args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let harness = Harness::start(script(), &args).await;
    // The sweep's first list goes first; then the create fails once.
    wait_until("the sweep listed the pods", WAIT, || async {
        kube.count("GET", "") > 0
    })
    .await;
    kube.fail_next(1);
    harness
        .publish_task(&pod_task("inc-10", hold_for(30)))
        .await;
    let reports = wait_pod_reports(&harness, "inc-10", 1).await;
    assert_eq!(reports[0].phase, PodPhase::Held, "{reports:?}");
    assert_eq!(kube.count("POST", ""), 2, "{:?}", kube.calls());
    assert!(kube.pod("warroom-session-inc-10").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_deletes_expired_session_pods() {
    let kube = KubeFixture::start().await;
    let pod = |name: &str, request: Option<&str>, expires: Option<String>| {
        let mut annotations = serde_json::Map::new();
        if let Some(request) = request {
            annotations.insert("warroom.io/request-id".to_owned(), json!(request));
        }
        if let Some(expires) = expires {
            annotations.insert("warroom.io/expires-at".to_owned(), json!(expires));
        }
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": name, "namespace": NAMESPACE,
                "labels": {"app.kubernetes.io/name": "warroom-session", "warroom.io/cluster": CLUSTER},
                "annotations": annotations,
            },
            "spec": {"containers": [{"name": "session", "image": "x"}]},
        })
    };
    let past = session_pod::rfc3339(warroom_proto::now() - time::Duration::minutes(5));
    let future = session_pod::rfc3339(warroom_proto::now() + time::Duration::minutes(5));
    kube.seed(pod("warroom-session-old", Some("old"), Some(past.clone())));
    kube.seed(pod("warroom-session-live", Some("live"), Some(future)));
    kube.seed(pod(
        "warroom-session-garbled",
        Some("not a valid id!"),
        Some("soon".to_owned()),
    ));
    // Another cluster's pod is not this runner's to sweep.
    let mut foreign = pod("warroom-session-foreign", Some("foreign"), Some(past));
    foreign["metadata"]["labels"]["warroom.io/cluster"] = json!("other-cluster");
    kube.seed(foreign);

    let args = kube.args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let harness = Harness::start(script(), &args).await;
    let reports = wait_pod_reports(&harness, "old", 1).await;
    assert_eq!(reports[0].phase, PodPhase::Removed, "{reports:?}");
    assert_eq!(reports[0].pod, "warroom-session-old");
    wait_until("the garbled pod is deleted", WAIT, || async {
        kube.pod("warroom-session-garbled").is_none()
    })
    .await;
    assert_eq!(
        kube.pod_names(),
        ["warroom-session-foreign", "warroom-session-live"]
    );
    assert!(pod_reports(&harness, "live").await.is_empty());
}

/// A child process killed when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Child {
    /// SIGTERM, as the kubelet stops a container, and its exit status.
    async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.0.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        wait_for("the container's process exits", WAIT, || {
            let status = self.0.try_wait().expect("try_wait");
            async move { status }
        })
        .await
    }
}

/// The image's programs: this workspace's builds, and the pinned CLI.
fn programs(name: &str) -> Option<PathBuf> {
    match name.rsplit('/').next().unwrap_or(name) {
        "warroom-runner" => Some(PathBuf::from(env!("CARGO_BIN_EXE_warroom-runner"))),
        "warroom-guard" => Some(warroom_testkit::tools::workspace_binary("warroom-guard")),
        "claude" => Some(tools::claude()),
        _ => None,
    }
}

/// Replaces argument `from` of `pod` by `to`, recording why.
fn rewrite_arg(pod: &mut PodProcess, from: &str, to: &str, why: &str) {
    let at = pod
        .argv
        .iter()
        .position(|a| a == from)
        .unwrap_or_else(|| panic!("{}: no argument {from}: {:?}", pod.container, pod.argv));
    pod.rewrites.push(Rewrite {
        what: format!("{}/{}: args[{at}]", pod.name, pod.container),
        from: from.to_owned(),
        to: to.to_owned(),
        why: why.to_owned(),
    });
    pod.argv[at] = to.to_owned();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_session_pod_says_runs_under_the_guard() {
    // A token-shaped value the ConfigMap "holds": it must reach the model redacted.
    let token = "ghp_u8jzPde0IgxLd6GncfBAepfJBd0Kh8oOOL8d";
    let script = Script::single(vec![
        Turn::bash("kubectl delete pod api-0 -n openshift-api"),
        Turn::bash("kubectl get configmap app-config -n openshift-api -o yaml"),
        Turn::text("The config holds a token."),
    ]);
    let kube = KubeFixture::start().await;
    let args = kube.args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let harness = Harness::start(script, &args).await;
    harness
        .publish_task(&pod_task("inc-11", hold_for(30)))
        .await;
    let reports = wait_pod_reports(&harness, "inc-11", 1).await;
    assert_eq!(reports[0].phase, PodPhase::Held, "{reports:?}");
    let sent = kube.pod("warroom-session-inc-11").expect("the pod");

    let workload = Workload::from_pod(&sent);
    let rendered = Rendered {
        overlay: "the session pod the runner sent".to_owned(),
        objects: Vec::new(),
    };
    let mut secrets = Secrets::new();
    secrets.insert("warroom-model", "api-key", REAL_KEY);
    let root = harness.dir.path().join("pod");
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener.local_addr().expect("an address").port()
    };
    let listen = format!("127.0.0.1:{port}");
    let why_port = "one machine: a free port instead of the pod's own loopback";

    let mut proxy = PodProcess::materialize(
        &rendered,
        &workload,
        "model-proxy",
        0,
        &secrets,
        &programs,
        &root.join("model-proxy"),
    )
    .expect("the model-proxy container is runnable");
    rewrite_arg(&mut proxy, "127.0.0.1:8787", &listen, why_port);
    proxy.rewrite_env(
        "ANTHROPIC_BASE_URL",
        harness.model.base_url(),
        "the upstream model is the scripted one",
    );
    eprintln!("model-proxy:\n{}", proxy.describe_rewrites());
    let proxy_process = Child(
        proxy
            .command(&[], "/usr/bin:/bin")
            .spawn()
            .expect("model-proxy starts"),
    );
    wait_until("the model proxy listens", WAIT, || async {
        tokio::net::TcpStream::connect(&listen).await.is_ok()
    })
    .await;

    // The image's kubectl: one that prints a ConfigMap holding the token, and logs its calls.
    let tools_dir = harness.dir.path().join("image-bin");
    std::fs::create_dir(&tools_dir).expect("a bin folder");
    let kubectl = tools_dir.join("kubectl");
    let calls = harness.dir.path().join("image-kubectl.log");
    std::fs::write(
        &kubectl,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nprintf 'apiVersion: v1\\nkind: ConfigMap\\ndata:\\n  GITHUB_TOKEN: {token}\\n'\n",
            calls.display()
        ),
    )
    .expect("write kubectl");
    make_executable(&kubectl);

    let mut session = PodProcess::materialize(
        &rendered,
        &workload,
        "session",
        0,
        &secrets,
        &programs,
        &root.join("session"),
    )
    .expect("the session container is runnable");
    session.rewrite_env("ANTHROPIC_BASE_URL", format!("http://{listen}"), why_port);
    let path = session.env("PATH").expect("a PATH").to_owned();
    session.rewrite_env(
        "PATH",
        path.replacen(
            ":/usr/local/bin",
            &format!(":{}:/usr/local/bin", tools_dir.display()),
            1,
        ),
        "the image's kubectl is a stand-in printing a ConfigMap",
    );
    eprintln!("session:\n{}", session.describe_rewrites());
    // The engineer's container holds no key: only the placeholder, no key file, no Secret.
    assert!(session.env.iter().all(|(_, v)| !v.contains(REAL_KEY)));
    assert_eq!(
        session.env("ANTHROPIC_API_KEY"),
        Some(warroom_runner::proxy::PLACEHOLDER_KEY)
    );
    assert_eq!(session.env("ANTHROPIC_API_KEY_FILE"), None);
    assert!(
        session
            .mounts
            .iter()
            .all(|(path, _)| !path.starts_with("/etc/warroom/model"))
    );
    let shell_process = Child(
        session
            .command(&[], "/usr/bin:/bin")
            .spawn()
            .expect("session-shell starts"),
    );

    // What `kubectl exec -it POD -c session -- claude -p ...` runs: `claude` on the
    // container's PATH, with the container's environment.
    let session_path = session.env("PATH").expect("a PATH").to_owned();
    let claude = wait_for("the claude wrapper is written", WAIT, || {
        let found = std::env::split_paths(&session_path)
            .map(|dir| dir.join("claude"))
            .find(|candidate| candidate.is_file());
        async move { found }
    })
    .await;
    assert_eq!(claude, session.local_path("/session/bin/claude"));
    let exec = tokio::process::Command::new(&claude)
        .args(["-p", "What does the app config hold?"])
        .env_clear()
        .envs(session.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&session.root)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(WAIT, exec)
        .await
        .expect("claude ends within the deadline")
        .expect("claude runs");
    assert!(
        output.status.success(),
        "claude failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    // The guard refused the delete before it ran, and the model was told why.
    let logged = std::fs::read_to_string(&calls).unwrap_or_default();
    assert!(!logged.contains("delete"), "{logged}");
    assert!(logged.contains("get configmap app-config"), "{logged}");
    let seen = harness.model.tool_results();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    assert!(seen[0].is_error, "{seen:#?}");
    assert!(seen[0].content_text.contains("[kubectl."), "{seen:#?}");
    // The ConfigMap reached the model redacted.
    assert!(!seen[1].content_text.contains(token), "{seen:#?}");
    assert!(seen[1].content_text.contains("[REDACTED:"), "{seen:#?}");
    // Every call reached the model with the real key, never the placeholder.
    let requests = harness.model.turn_requests();
    assert!(requests.len() >= 3, "{requests:#?}");
    for request in &requests {
        assert_eq!(request.header("x-api-key"), Some(REAL_KEY), "{request:?}");
    }
    assert!(
        harness
            .model
            .requests()
            .iter()
            .all(|r| r.header("x-api-key") != Some(warroom_runner::proxy::PLACEHOLDER_KEY))
    );

    // Both containers stop cleanly when the pod ends.
    assert!(shell_process.terminate().await.success());
    assert!(proxy_process.terminate().await.success());
}
