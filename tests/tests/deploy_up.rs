//! The secure zone as shipped, brought up on this machine from what `deploy/` renders.
//!
//! Every overlay is rendered with `kubectl kustomize`; every container of the control plane
//! and of each runner is started with exactly its rendered program, arguments, environment and
//! mounted files (`warroom_testkit::deploy`), the Secrets made the way `docs/deploying.md`
//! tells an operator to make them (`warroom-admin nats-auth`, `ssh-keygen`, token files).
//! First each daemon's `--check` must pass with that; then the control plane is started
//! (three `nats-server`s with the rendered `nats.conf`, the gateway, both dispatchers, the
//! publisher) with one runner from the hub overlay with the session-exec component, a signed
//! request goes through to a completed report whose commits verify against the publisher's
//! key, and a signed session is held as a pod where the component says until its signed stop.
//!
//! What one machine cannot give as rendered is rewritten, and every rewrite is printed with
//! its reason: mount paths (all pods share one file system), Service host names and ports
//! (one loopback address for all), the repository URL (a bare repository here), the model
//! API (the scripted model), the programs of the image (this workspace's builds), the
//! example policy's engineer (the test's own key), and the hub's Kubernetes API (a fixture
//! Pod API, through `KUBECONFIG`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use warroom_scripted_model::{Script, ScriptedModel, Turn};
use warroom_testkit::deploy::{Pod, Rendered, Secrets, Workload};
use warroom_testkit::{BareRemote, SshKey, WorkClone, reserved_port, tools, wait_for};

/// The control plane's overlay and the runner overlay started with it.
const CONTROL_PLANE: &str = "deploy/control-plane";
const RUNNER_OVERLAYS: &[&str] = &[
    "deploy/runner/overlays/hub",
    "deploy/runner/overlays/hosted",
];
/// The hub runner the zone runs: the hub overlay with the opt-in session-exec component, so
/// that the default overlay and the component both run as rendered.
const HUB_RUNNER: &str = "deploy/runner/examples/hub-with-session-exec";
/// Examples of the opt-in components whose daemons must pass `--check` as rendered too.
const EXAMPLES: &[&str] = &[
    "deploy/examples/control-plane-with-configmaps",
    "deploy/runner/examples/hub-with-session-exec",
];
/// Where the session-exec component puts session pods.
const SESSION_NAMESPACE: &str = "claude-warroom-sessions";
/// How long the whole zone may take to come up and finish one request on a loaded machine.
const ZONE_TIMEOUT: Duration = Duration::from_secs(120);
/// The image's `PATH` for the programs a daemon runs (git, ssh-keygen, timeout).
const IMAGE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const FINDING: &str = "FINDING: etcd on the hub answers within 5 ms; the API server is healthy.";

/// The test's stand-ins for the image's programs.
fn program(name: &str) -> Option<PathBuf> {
    let base = name.rsplit('/').next().unwrap_or(name);
    match base {
        "warroom-gateway" | "warroom-dispatcher" | "warroom-publisher" | "warroom-runner"
        | "warroom-guard" | "warroom-admin" | "claude-warroom" => {
            Some(tools::workspace_binary(base))
        }
        "claude" => Some(tools::claude()),
        "nats-server" => Some(tools::nats_server()),
        _ => None,
    }
}

/// Everything an operator makes before the first deployment, made here the same way.
struct Zone {
    dir: tempfile::TempDir,
    /// `warroom-admin nats-auth` output: seeds, authorization config, CA and certificates.
    creds: PathBuf,
    publisher_key: SshKey,
    engineer_key: SshKey,
    secrets: Secrets,
}

/// The clusters the runner overlays render, for `warroom-admin nats-auth --clusters`.
fn runner_clusters() -> Vec<String> {
    RUNNER_OVERLAYS
        .iter()
        .map(|overlay| {
            let rendered = Rendered::render(overlay);
            let runner = rendered.workload("warroom-runner");
            let env = &runner.pod_spec()["containers"][0]["env"];
            env.as_sequence()
                .into_iter()
                .flatten()
                .find(|v| v["name"].as_str() == Some("WARROOM_CLUSTER"))
                .and_then(|v| v["value"].as_str())
                .unwrap_or_else(|| panic!("{overlay}: the runner has no WARROOM_CLUSTER value"))
                .to_owned()
        })
        .collect()
}

impl Zone {
    fn new() -> Zone {
        let dir = tempfile::Builder::new()
            .prefix("warroom-zone-")
            .tempdir()
            .expect("a folder for the zone");
        let creds = dir.path().join("nats-auth");
        // As docs/deploying.md: the server certificate names the Services' hosts; 127.0.0.1
        // is added because on this machine every Service is reached on loopback.
        let clusters = runner_clusters().join(",");
        let output = Command::new(tools::workspace_binary("warroom-admin"))
            .args(["nats-auth", "--clusters", &clusters, "--out"])
            .arg(&creds)
            .args([
                "--tls-hosts",
                "nats.claude-warroom.svc,nats-0.nats-headless.claude-warroom.svc,\
                 nats-1.nats-headless.claude-warroom.svc,nats-2.nats-headless.claude-warroom.svc,\
                 127.0.0.1",
            ])
            .output()
            .expect("run warroom-admin");
        assert!(
            output.status.success(),
            "warroom-admin nats-auth failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let publisher_key = SshKey::generate("warroom-publisher@example.internal");
        let engineer_key = SshKey::generate("platform-engineer-1@example.com");
        let mut zone = Zone {
            dir,
            creds,
            publisher_key,
            engineer_key,
            secrets: Secrets::new(),
        };
        zone.secrets = zone.make_secrets();
        zone
    }

    fn cred(&self, name: &str) -> PathBuf {
        self.creds.join(name)
    }

    /// The Secrets of docs/deploying.md ("4. Secrets"), from the generated files.
    fn make_secrets(&self) -> Secrets {
        let mut s = Secrets::new();
        let mut nats_client = |secret: &str, stem: &str| {
            s.insert_file(secret, "nats.nk", &self.cred(&format!("{stem}.nk")))
                .insert_file(secret, "client.pem", &self.cred(&format!("{stem}.pem")))
                .insert_file(
                    secret,
                    "client-key.pem",
                    &self.cred(&format!("{stem}-key.pem")),
                )
                .insert_file(secret, "ca.pem", &self.cred("ca.pem"));
        };
        for component in ["gateway", "dispatcher", "publisher"] {
            nats_client(&format!("warroom-nats-{component}"), component);
        }
        // Each runner cluster has its own `warroom-nats`: the hub's is the one started here.
        nats_client("warroom-nats", &format!("runner-{}", runner_clusters()[0]));
        s.insert_file(
            "warroom-nats-auth",
            "nats-auth.conf",
            &self.cred("nats-auth.conf"),
        )
        .insert_file("warroom-nats-tls", "server.pem", &self.cred("server.pem"))
        .insert_file(
            "warroom-nats-tls",
            "server-key.pem",
            &self.cred("server-key.pem"),
        )
        .insert_file("warroom-nats-tls", "ca.pem", &self.cred("ca.pem"))
        // A file:// remote needs no token, but the daemons read theirs as shipped.
        .insert(
            "warroom-git-read",
            "token",
            "read-token-unused-by-a-local-remote\n",
        )
        .insert(
            "warroom-git-push",
            "token",
            "push-token-unused-by-a-local-remote\n",
        )
        .insert_file(
            "warroom-publisher-signing",
            "signing-key",
            &self.publisher_key.private_key(),
        )
        .insert("warroom-model", "api-key", "sk-ant-test-key\n");
        s
    }

    /// A pod of `workload` below the zone's folder.
    fn pod(&self, rendered: &Rendered, workload: &Workload, container: &str, ordinal: u64) -> Pod {
        let root = self
            .dir
            .path()
            .join("pods")
            .join(rendered.overlay.replace('/', "-"))
            .join(workload.pod_name(ordinal))
            .join(container);
        Pod::materialize(
            rendered,
            workload,
            container,
            ordinal,
            &self.secrets,
            &program,
            &root,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }
}

/// The daemon containers of an overlay (everything but NATS and its exporter), `replicas`
/// pods of each workload, or one each.
fn daemon_pods(zone: &Zone, rendered: &Rendered, all_replicas: bool) -> Vec<Pod> {
    let mut pods = Vec::new();
    for workload in rendered.workloads() {
        let replicas = if all_replicas { workload.replicas } else { 1 };
        for (ordinal, container) in
            (0..replicas).flat_map(|o| workload.containers().into_iter().map(move |c| (o, c)))
        {
            // The product's image; NATS and its exporter are started by start_nats.
            let image = workload.image(&container);
            if !image.contains("claude-warroom") {
                continue;
            }
            let pod = zone.pod(rendered, &workload, &container, ordinal);
            let program = Path::new(&pod.argv[0])
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if program.starts_with("warroom-") {
                pods.push(pod);
            }
        }
    }
    pods
}

/// Every daemon container of the control plane and of every runner overlay passes its own
/// `--check` with exactly its rendered arguments, environment and files.
#[test]
fn every_daemon_passes_its_check_as_rendered() {
    let zone = Zone::new();
    let mut report = String::new();
    let mut failed = Vec::new();
    let mut checked = Vec::new();
    for overlay in std::iter::once(&CONTROL_PLANE)
        .chain(RUNNER_OVERLAYS)
        .chain(EXAMPLES)
    {
        let rendered = Rendered::render(overlay);
        for pod in daemon_pods(&zone, &rendered, false) {
            let output = pod
                .command(&["--check"], IMAGE_PATH)
                .stdin(Stdio::null())
                .output()
                .expect("run the daemon's --check");
            report.push_str(&format!(
                "{overlay} {}/{}: exit {:?}\n{}{}{}",
                pod.name,
                pod.container,
                output.status.code(),
                pod.describe_rewrites(),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
            ));
            checked.push(format!("{overlay}/{}", pod.workload));
            if !output.status.success() {
                failed.push(format!("{overlay}/{}", pod.workload));
            }
        }
    }
    println!("{report}");
    for daemon in ["gateway", "dispatcher", "publisher"] {
        assert!(
            checked
                .iter()
                .any(|c| c.ends_with(&format!("warroom-{daemon}"))),
            "the control plane renders no warroom-{daemon}: {checked:?}"
        );
    }
    assert!(
        checked
            .iter()
            .filter(|c| c.ends_with("warroom-runner"))
            .count()
            == RUNNER_OVERLAYS.len() + 1,
        "every runner overlay and the session-exec example render a runner: {checked:?}"
    );
    assert!(
        report.contains("ConfigMaps in namespace claude-warroom"),
        "the configmaps example turns the publisher's ConfigMap surface on:\n{report}"
    );
    assert!(
        report.contains(&format!(
            "session pods in namespace {SESSION_NAMESPACE} as warroom-session from \
             registry.example.internal/claude-warroom:0.1.0"
        )),
        "the session-exec example turns the runner's session pods on, with its own image:\n\
         {report}"
    );
    assert!(
        failed.is_empty(),
        "--check failed for {failed:?}:\n{report}"
    );
}

/// A process of a pod, killed when dropped.
struct Running {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Running {
    fn start(pod: &Pod, extra: &[&str], path: &str) -> Running {
        let log = pod.root.join("container.log");
        let file = std::fs::File::create(&log).expect("create the container log");
        let child = pod
            .command(extra, path)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone the log file"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", pod.argv[0]));
        Running {
            name: format!("{}/{}", pod.name, pod.container),
            child,
            log,
        }
    }

    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(30);
        format!("--- {} ---\n{}\n", self.name, lines[from..].join("\n"))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` on `127.0.0.1:port`: the status code, or None when nothing answers yet.
fn http_status(port: u16, path: &str) -> Option<u16> {
    http_get(port, path)?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// `GET path` on `127.0.0.1:port`: the whole answer, or None when nothing answers yet.
fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    Some(answer)
}

/// The path and port name of a container's readiness probe.
fn readiness_probe(workload: &Workload, container: &str) -> (String, String) {
    let c = workload.pod_spec()["containers"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|c| c["name"].as_str() == Some(container))
        .expect("the container");
    let probe = &c["readinessProbe"]["httpGet"];
    (
        probe["path"].as_str().unwrap_or("/").to_owned(),
        probe["port"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Rewrites `from` to `to` in the mounted file at `mount_path`, saying why.
fn rewrite_file(pod: &mut Pod, mount_path: &str, from: &str, to: &str, why: &str) {
    let file = pod.local_path(mount_path);
    let text = std::fs::read_to_string(&file).expect("read the mounted file");
    assert!(
        text.contains(from),
        "{}: {mount_path} no longer contains {from:?}: update this test's rewrite",
        pod.name
    );
    std::fs::write(&file, text.replace(from, to)).expect("write the mounted file");
    pod.rewrites.push(warroom_testkit::deploy::Rewrite {
        what: format!("{}/{}: {mount_path}", pod.name, pod.container),
        from: from.to_owned(),
        to: to.to_owned(),
        why: why.to_owned(),
    });
}

/// Starts the rendered NATS StatefulSet: one `nats-server` per replica, with the rendered
/// `nats.conf`, the generated authorization and TLS. Returns the processes and client ports.
async fn start_nats(zone: &Zone, rendered: &Rendered) -> (Vec<Running>, Vec<u16>, Vec<Pod>) {
    let workload = rendered.workload("nats");
    let replicas = workload.replicas;
    assert!(
        replicas >= 3,
        "NATS runs as a cluster of 3, rendered {replicas}"
    );
    let ports: Vec<(u16, u16, u16)> = (0..replicas)
        .map(|_| (reserved_port(), reserved_port(), reserved_port()))
        .collect();
    let mut pods = Vec::new();
    let mut running = Vec::new();
    for ordinal in 0..replicas {
        let mut pod = zone.pod(rendered, &workload, "nats", ordinal);
        let (client, cluster, monitor) = ports[ordinal as usize];
        let conf = "/etc/nats/nats.conf";
        let why_port = "every pod listens on loopback here, each on a port of its own";
        rewrite_file(
            &mut pod,
            conf,
            "0.0.0.0:4222",
            &format!("127.0.0.1:{client}"),
            why_port,
        );
        rewrite_file(
            &mut pod,
            conf,
            "0.0.0.0:6222",
            &format!("127.0.0.1:{cluster}"),
            why_port,
        );
        rewrite_file(
            &mut pod,
            conf,
            "0.0.0.0:8222",
            &format!("127.0.0.1:{monitor}"),
            why_port,
        );
        for (other, (_, other_cluster, _)) in ports.iter().enumerate() {
            rewrite_file(
                &mut pod,
                conf,
                &format!("nats-{other}.nats-headless.claude-warroom.svc:6222"),
                &format!("127.0.0.1:{other_cluster}"),
                "the headless Service's pod names resolve to loopback here",
            );
        }
        // Absolute paths in the config file are mount paths of the pod.
        pod.rewrite_mount_paths_in(conf);
        running.push(Running::start(&pod, &[], IMAGE_PATH));
        pods.push(pod);
    }
    let (path, _port) = readiness_probe(&workload, "nats");
    for (i, (_, _, monitor)) in ports.iter().enumerate() {
        let logs: String = running.iter().map(Running::tail).collect();
        wait_for(
            format!("nats-{i} passes its readiness probe {path}\n{logs}"),
            ZONE_TIMEOUT,
            || async { (http_status(*monitor, &path) == Some(200)).then_some(()) },
        )
        .await;
    }
    // The routes: mutual TLS between the nodes, which only a certificate valid for client
    // authentication too can pass. A node may hold several connections to each peer (route
    // pooling): the peers are counted by their server ids.
    let peers = (replicas - 1) as usize;
    for (i, (_, _, monitor)) in ports.iter().enumerate() {
        let logs: String = running.iter().map(Running::tail).collect();
        wait_for(
            format!("nats-{i} has routes to its {peers} peers\n{logs}"),
            ZONE_TIMEOUT,
            || async {
                let routez = http_get(*monitor, "/routez")?;
                let ids: std::collections::BTreeSet<&str> = routez
                    .split("\"remote_id\": \"")
                    .skip(1)
                    .filter_map(|rest| rest.split('"').next())
                    .collect();
                (ids.len() == peers).then_some(())
            },
        )
        .await;
    }
    // JetStream has its meta leader: the full health check passes on every node.
    for (i, (_, _, monitor)) in ports.iter().enumerate() {
        wait_for(
            format!("nats-{i} is healthy with JetStream"),
            ZONE_TIMEOUT,
            || async { (http_status(*monitor, "/healthz") == Some(200)).then_some(()) },
        )
        .await;
    }
    let clients = ports.iter().map(|(c, _, _)| *c).collect();
    (running, clients, pods)
}

/// The rendered control plane and a hub runner (with the session-exec component) complete a
/// signed request with verified results, and hold a signed session as a pod (through a
/// fixture Pod API) until its signed stop.
#[tokio::test(flavor = "multi_thread")]
async fn the_rendered_zone_completes_a_signed_request_with_verified_results() {
    let zone = Zone::new();
    let control = Rendered::render(CONTROL_PLANE);
    let hub = Rendered::render(HUB_RUNNER);
    let remote = BareRemote::new();
    let engineer = remote.work_clone();
    let model = ScriptedModel::start(Script::single(vec![Turn::text(FINDING)]))
        .await
        .expect("start the scripted model");

    let (nats, client_ports, _nats_pods) = start_nats(&zone, &control).await;
    let nats_url = client_ports
        .iter()
        .map(|p| format!("tls://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");

    // The policy: the rendered ConfigMap's, with the test's engineer as its engineer.
    // Every replica the manifests ask for: both dispatchers, one holding the lease.
    let mut pods = daemon_pods(&zone, &control, true);
    pods.extend(daemon_pods(&zone, &hub, true));
    let dispatchers = pods
        .iter()
        .filter(|p| p.workload == "warroom-dispatcher")
        .count();
    assert!(
        dispatchers >= 2,
        "the control plane runs standby dispatchers: {dispatchers}"
    );
    let hub_cluster = runner_clusters()[0].clone();
    // The hub's Kubernetes API, where the runner makes session pods.
    let kube = warroom_testkit::KubeApi::start().await;
    let mut running = Vec::new();
    let bin = zone.dir.path().join("agent-bin");
    install_stand_in_kubectl(&bin);
    for pod in &mut pods {
        let why_nats = "the nats Service resolves to the three nats-servers on loopback here";
        pod.rewrite_env("WARROOM_NATS_URL", nats_url.clone(), why_nats);
        if pod.env("WARROOM_HEALTH_ADDR").is_some() {
            pod.rewrite_env(
                "WARROOM_HEALTH_ADDR",
                "127.0.0.1:0",
                "every pod has its own network namespace in a cluster; here they share one",
            );
        }
        if pod.env("WARROOM_REPO").is_some() {
            pod.rewrite_env(
                "WARROOM_REPO",
                remote.url(),
                "the git host is a bare repository here",
            );
        }
        if pod.env("WARROOM_POLICY").is_some() {
            let policy = PathBuf::from(pod.env("WARROOM_POLICY").expect("set"));
            let text = std::fs::read_to_string(&policy).expect("read the rendered policy");
            let ours = test_policy(&zone.engineer_key, &hub_cluster);
            std::fs::write(&policy, &ours).expect("write the policy");
            pod.rewrites.push(warroom_testkit::deploy::Rewrite {
                what: format!("{}: policy.yaml", pod.name),
                from: format!("the example policy ({} bytes)", text.len()),
                to: "the test's engineer and key".to_owned(),
                why: "the shipped policy names example engineers; an operator writes the zone's"
                    .to_owned(),
            });
        }
        if pod.env("ANTHROPIC_BASE_URL").is_some() {
            pod.rewrite_env(
                "ANTHROPIC_BASE_URL",
                model.base_url(),
                "the model is scripted here",
            );
        }
        if pod.env("WARROOM_SESSION_PODS").is_some() {
            let kubeconfig = kube.kubeconfig().display().to_string();
            pod.env.push(("KUBECONFIG".to_owned(), kubeconfig.clone()));
            pod.rewrites.push(warroom_testkit::deploy::Rewrite {
                what: format!("{}: env KUBECONFIG", pod.name),
                from: "the in-cluster configuration (the pod's ServiceAccount)".to_owned(),
                to: kubeconfig,
                why: "no cluster here: a fixture Pod API stands in for the hub's API server"
                    .to_owned(),
            });
        }
        let path = if pod.workload == "warroom-runner" {
            // The image's oc and kubectl: stand-ins here, no cluster can be reached.
            format!("{}:{IMAGE_PATH}", bin.display())
        } else {
            IMAGE_PATH.to_owned()
        };
        print!("{}", pod.describe_rewrites());
        running.push(Running::start(pod, &[], &path));
    }

    // The engineer's signed request.
    let id = "r-deploy-up";
    push_signed(
        &engineer,
        &zone.engineer_key,
        id,
        &request_yaml(&hub_cluster),
    );
    let logs = || -> String { running.iter().chain(&nats).map(Running::tail).collect() };
    let status = wait_for(
        format!("results/{id}/status.json completed"),
        ZONE_TIMEOUT,
        || async {
            remote
                .read(&format!("results/{id}/status.json"))
                .filter(|s| {
                    s.contains("\"phase\": \"completed\"") || s.contains("\"phase\":\"completed\"")
                })
        },
    )
    .await;
    let status: serde_json::Value = serde_json::from_str(&status).expect("status.json is JSON");
    assert_eq!(
        status["verification"]["verified"],
        true,
        "the gateway verified the engineer's signature: {status:#}\n{}",
        logs()
    );
    assert_eq!(
        status["clusters"][&hub_cluster]["phase"], "completed",
        "{status:#}"
    );
    let report = remote
        .read(&format!("results/{id}/{hub_cluster}.md"))
        .unwrap_or_else(|| panic!("the hub's report is missing\n{}", logs()));
    assert!(report.contains("etcd on the hub"), "{report}");

    // A signed session held as a pod: the runner, as rendered with the session-exec
    // component, makes it where the component's Roles are, as its ServiceAccount, from the
    // runner's own image; the signed stop removes it.
    let session = "s-deploy-up";
    engineer.pull();
    push_signed(
        &engineer,
        &zone.engineer_key,
        session,
        &session_yaml(&hub_cluster),
    );
    let pod_phase = |phase: &'static str| {
        let remote = &remote;
        move || async move {
            remote
                .read(&format!("results/{session}/status.json"))
                .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
                .filter(|s| s["session"]["pod_phase"] == phase)
        }
    };
    let held = wait_for(
        format!("results/{session}: its pod held"),
        ZONE_TIMEOUT,
        pod_phase("held"),
    )
    .await;
    let name = held["session"]["pod"].as_str().expect("the pod's name");
    let pod = kube
        .pod(SESSION_NAMESPACE, name)
        .unwrap_or_else(|| panic!("no pod {name} in {SESSION_NAMESPACE}: {:?}", kube.pods()));
    assert_eq!(pod["spec"]["serviceAccountName"], "warroom-session");
    let image = hub.workload("warroom-runner").image("runner");
    for container in pod["spec"]["containers"].as_array().expect("containers") {
        assert_eq!(container["image"], image.as_str(), "{container:#}");
    }
    let role = hub
        .objects
        .iter()
        .find(|o| {
            o["kind"].as_str() == Some("Role")
                && o["metadata"]["name"].as_str() == Some("warroom-runner-session-pods")
        })
        .expect("the runner's Role on session pods");
    assert_eq!(
        role["metadata"]["namespace"].as_str(),
        Some(SESSION_NAMESPACE)
    );
    engineer.pull();
    engineer.write(
        format!("requests/cancel/{session}.yaml"),
        "apiVersion: warroom.intility.io/v1\nkind: CancelRequest\nmetadata:\n  \
         engineer: platform-engineer-1\n  timestamp: \"2026-12-08T10:00:00Z\"\n\
         spec:\n  reason: done\n",
    );
    engineer.git(["add", "--all"]);
    let mut args = zone.engineer_key.signing_args();
    args.extend(["commit", "--quiet", "--message", "Stop"].map(str::to_owned));
    engineer.git(&args);
    push_rebasing(&engineer, &zone.engineer_key);
    wait_for(
        format!("results/{session}: its pod removed\n{}", logs()),
        ZONE_TIMEOUT,
        pod_phase("removed"),
    )
    .await;
    assert_eq!(kube.pod(SESSION_NAMESPACE, name), None);

    // The engineer verifies the results against the publisher's key.
    engineer.pull();
    let key = zone.publisher_key.public_key_file().display().to_string();
    let cli = |args: &[&str]| {
        Command::new(tools::workspace_binary("claude-warroom"))
            .args(args)
            .current_dir(engineer.path())
            .stdin(Stdio::null())
            .output()
            .expect("run claude-warroom")
    };
    let init = cli(&["init", "--publisher-key", &key]);
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let verify = cli(&["status", "--verify", id]);
    assert!(
        verify.status.success(),
        "the results verify: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}

fn test_policy(engineer: &SshKey, cluster: &str) -> String {
    format!(
        "apiVersion: warroom.intility.io/v1\nkind: WarroomPolicy\nengineers:\n  - name: platform-engineer-1\n    keys: [\"{}\"]\n    clusters: [\"{cluster}\"]\n",
        engineer.public_key()
    )
}

fn request_yaml(cluster: &str) -> String {
    format!(
        "apiVersion: warroom.intility.io/v1
kind: TroubleshootingRequest
metadata:
  name: deploy-up
  timestamp: \"2026-12-07T10:00:00Z\"
  engineer: platform-engineer-1
spec:
  targetCluster:
    type: hub
    name: {cluster}
  issue:
    category: api-timeout
    description: API server experiencing 30s+ response times
  investigation:
    prompt: |
      Check etcd latency on the hub.
    allowedTools:
      - bash
      - read
    timeout: 300
"
    )
}

fn session_yaml(cluster: &str) -> String {
    format!(
        "apiVersion: warroom.intility.io/v1
kind: SessionRequest
metadata:
  name: deploy-up-session
  timestamp: \"2026-12-08T10:00:00Z\"
  engineer: platform-engineer-1
spec:
  targetCluster:
    type: hub
    name: {cluster}
  duration: 3600
  exec: true
"
    )
}

fn push_signed(clone: &WorkClone, key: &SshKey, id: &str, yaml: &str) {
    clone.write(format!("requests/pending/{id}.yaml"), yaml);
    clone.git(["add", "--all"]);
    let mut args = key.signing_args();
    args.extend(["commit", "--quiet", "--message", "Request"].map(str::to_owned));
    clone.git(&args);
    push_rebasing(clone, key);
}

/// Pushes; while the publisher's pushes make the clone stale, pulls (rebasing, the commits
/// signed again with `key`) and pushes again, as an engineer would.
fn push_rebasing(clone: &WorkClone, key: &SshKey) {
    for _ in 0..4 {
        if clone.try_push().is_ok() {
            return;
        }
        let mut args = key.signing_args();
        args.extend(["pull", "--quiet", "--rebase"].map(str::to_owned));
        clone.git(&args);
    }
    clone.push();
}

fn install_stand_in_kubectl(bin: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(bin).expect("create the agents' bin folder");
    for name in ["kubectl", "oc"] {
        let path = bin.join(name);
        std::fs::write(&path, "#!/bin/sh\necho \"ok: $*\"\n").expect("write the stand-in");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("make it executable");
    }
}
