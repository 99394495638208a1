//! NATS locked down by `warroom-admin nats-auth`, against a real `nats-server` configured with
//! what the command wrote (authorization and mutual TLS): a cluster's runner cannot take
//! another cluster's tasks, cannot publish requests, tasks or statuses, cannot read the
//! request state, cannot write another cluster's heartbeat; and the whole pipeline still
//! completes a request with every component on its own credentials.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt as _;
use tokio::io::AsyncReadExt as _;
use tokio::sync::mpsc;
use warroom_admin::{Options, generate};
use warroom_proto::{ClusterName, ReplicaId, Stream, Subject, names};
use warroom_runtime::{Bus, Connection};
use warroom_testkit::{BareRemote, NatsServer, tools, wait_for};

/// How long a request the server drops for lack of permission is waited for.
const DENIED_TIMEOUT: Duration = Duration::from_secs(2);

/// The generated credentials and a server configured with them.
struct Locked {
    creds: tempfile::TempDir,
    server: NatsServer,
}

impl Locked {
    async fn start(clusters: &[&str]) -> Locked {
        let creds = tempfile::tempdir().expect("a folder for the credentials");
        generate(&Options {
            clusters: clusters
                .iter()
                .map(|c| ClusterName::new(*c).expect("a valid cluster name"))
                .collect(),
            out: creds.path().to_owned(),
            tls_hosts: vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
            tls_server_dir: creds.path().to_owned(),
            keep_existing: false,
            force: false,
        })
        .expect("nats-auth generates");
        // The generated files are the server's config, as in the deployment (where they are
        // `include`d: nats-server resolves an include relative to the including file, so
        // they are pasted here instead).
        let read = |name: &str| {
            std::fs::read_to_string(creds.path().join(name))
                .unwrap_or_else(|e| panic!("reading the generated {name} failed: {e}"))
        };
        let config = format!("{}\n{}", read("nats-auth.conf"), read("nats-tls.conf"));
        let server = NatsServer::start_with_config(&config).await;
        Locked { creds, server }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.creds.path().join(name)
    }

    /// The connection of one component, as its `--nats-*` flags give it.
    fn connection(&self, component: &str) -> Connection {
        Connection {
            nkey_seed: Some(self.file(&format!("{component}.nk"))),
            tls_ca: Some(self.file("ca.pem")),
            tls_cert: Some(self.file(&format!("{component}.pem"))),
            tls_key: Some(self.file(&format!("{component}-key.pem"))),
            ..Connection::plain(self.server.url())
        }
    }

    /// The daemon flags of one component.
    fn flags(&self, component: &str) -> Vec<String> {
        let c = self.connection(component);
        let path = |p: Option<PathBuf>| p.map(|p| p.display().to_string()).unwrap_or_default();
        vec![
            "--nats-nkey".to_owned(),
            path(c.nkey_seed),
            "--nats-tls-ca".to_owned(),
            path(c.tls_ca),
            "--nats-tls-cert".to_owned(),
            path(c.tls_cert),
            "--nats-tls-key".to_owned(),
            path(c.tls_key),
        ]
    }

    /// A raw client of a component, with the inbox prefix its daemon uses, and the server's
    /// errors (permission violations) as they come.
    async fn raw_client(
        &self,
        component: &str,
        client_name: &str,
    ) -> (async_nats::Client, mpsc::UnboundedReceiver<String>) {
        let c = self.connection(component);
        let seed = std::fs::read_to_string(c.nkey_seed.expect("a seed")).expect("read the seed");
        let (tx, rx) = mpsc::unbounded_channel();
        let client = async_nats::ConnectOptions::new()
            .name(client_name)
            .custom_inbox_prefix(warroom_runtime::bus::inbox_prefix(client_name))
            .nkey(seed.trim().to_owned())
            .require_tls(true)
            .add_root_certificates(c.tls_ca.expect("a CA"))
            .add_client_certificate(
                c.tls_cert.expect("a certificate"),
                c.tls_key.expect("a key"),
            )
            .event_callback(move |event| {
                let tx = tx.clone();
                async move {
                    if let async_nats::Event::ServerError(e) = event {
                        let _ = tx.send(e.to_string());
                    }
                }
            })
            .connect(self.server.url())
            .await
            .expect("the component connects with its own credentials");
        (client, rx)
    }
}

fn jetstream_of(client: async_nats::Client) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(DENIED_TIMEOUT)
        .build(client)
}

fn cluster(name: &str) -> ClusterName {
    ClusterName::new(name).expect("a valid cluster name")
}

fn request(id: &str) -> warroom_proto::RequestId {
    warroom_proto::RequestId::new(id).expect("a valid request id")
}

/// Waits until the server reported a permission violation mentioning `subject`.
async fn violation(errors: &mut mpsc::UnboundedReceiver<String>, subject: &str) {
    let seen = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(e) = errors.recv().await {
            if e.to_lowercase().contains("permissions violation") && e.contains(subject) {
                return;
            }
        }
    })
    .await;
    assert!(seen.is_ok(), "no permissions violation for {subject}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runner_only_reaches_its_own_cluster() {
    let locked = Locked::start(&["hub", "prod-1"]).await;

    // The dispatcher sets up what a runner could covet: streams, a task per cluster, and
    // the request state.
    let dispatcher = Bus::connect(&locked.connection("dispatcher"), "warroom-dispatcher")
        .await
        .expect("the dispatcher connects and creates the streams");
    for c in ["hub", "prod-1"] {
        dispatcher
            .publish(&Subject::Task(cluster(c)), None, &format!("task for {c}"))
            .await
            .expect("the dispatcher publishes tasks");
    }
    let state = dispatcher
        .bucket(names::REQUESTS_BUCKET, 5)
        .await
        .expect("the dispatcher opens its bucket");
    state
        .put("r1", "secret state".into())
        .await
        .expect("the dispatcher writes its state");

    // prod-1's runner opens its own consumer, as its daemon does.
    let (prod, _prod_errors) = locked
        .raw_client("runner-prod-1", "warroom-runner-prod-1")
        .await;
    let prod_js = jetstream_of(prod);
    let tasks = prod_js
        .get_stream(Stream::Tasks.name())
        .await
        .expect("a runner may look at the tasks stream");
    tasks
        .get_or_create_consumer::<consumer::pull::Config>(
            &names::runner_consumer(&cluster("prod-1")),
            pull_config("prod-1"),
        )
        .await
        .expect("prod-1's runner creates its own consumer");

    let (hub, mut errors) = locked.raw_client("runner-hub", "warroom-runner-hub").await;
    let js = jetstream_of(hub.clone());
    let tasks = js
        .get_stream(Stream::Tasks.name())
        .await
        .expect("a runner may look at the tasks stream");

    // Its own task: allowed (the control that the denials below are about permissions).
    let own = tasks
        .get_or_create_consumer::<consumer::pull::Config>("runner-hub", pull_config("hub"))
        .await
        .expect("hub's runner creates its own consumer");
    let mut batch = own
        .fetch()
        .max_messages(1)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .expect("hub's runner pulls its own tasks");
    let message = batch
        .next()
        .await
        .expect("a task for hub")
        .expect("a task for hub");
    assert_eq!(message.subject.as_str(), "warroom.tasks.hub");
    message.ack().await.expect("hub's runner acks its own task");

    // prod-1's tasks: neither through prod-1's consumer, nor through a consumer of its own
    // that filters on prod-1's subject.
    let pull = format!(
        "$JS.API.CONSUMER.MSG.NEXT.{}.runner-prod-1",
        Stream::Tasks.name()
    );
    let pulled = tokio::time::timeout(
        DENIED_TIMEOUT,
        hub.request(pull.clone(), r#"{"batch":1,"expires":1000000000}"#.into()),
    )
    .await;
    assert!(
        !matches!(pulled, Ok(Ok(ref m)) if !m.payload.is_empty()),
        "hub's runner pulled from prod-1's consumer: {pulled:?}"
    );
    violation(&mut errors, &pull).await;
    let theirs = tasks
        .get_consumer::<consumer::pull::Config>("runner-prod-1")
        .await;
    assert!(theirs.is_err(), "hub's runner opened prod-1's consumer");
    let widened = tasks
        .create_consumer(consumer::pull::Config {
            durable_name: Some("runner-hub-2".to_owned()),
            filter_subject: "warroom.tasks.prod-1".to_owned(),
            ..Default::default()
        })
        .await;
    assert!(
        widened.is_err(),
        "hub's runner made a consumer on prod-1's tasks"
    );
    // Nor by listening in on prod-1's replies.
    let snoop = hub
        .subscribe("_INBOX.warroom-runner-prod-1.>")
        .await
        .expect("the client sends the subscription");
    violation(&mut errors, "_INBOX.warroom-runner-prod-1.>").await;
    drop(snoop);

    // Publishing what only the control plane publishes: refused, and nothing is stored.
    let before = counts(&dispatcher).await;
    for subject in [
        Subject::Request(request("x")),
        Subject::Task(cluster("hub")),
        Subject::Status(request("x")),
    ] {
        let sent = js.publish(subject.to_string(), "forged".into()).await;
        if let Ok(ack) = sent {
            assert!(ack.await.is_err(), "{subject} was stored");
        }
        violation(&mut errors, &subject.to_string()).await;
    }
    assert_eq!(
        counts(&dispatcher).await,
        before,
        "a forged message was stored"
    );

    // The request state: not readable, neither as a bucket nor by its subjects.
    assert!(
        js.get_key_value(names::REQUESTS_BUCKET).await.is_err(),
        "hub's runner opened the requests bucket"
    );
    let direct = format!(
        "$JS.API.DIRECT.GET.KV_{0}.$KV.{0}.r1",
        names::REQUESTS_BUCKET
    );
    let got = tokio::time::timeout(DENIED_TIMEOUT, hub.request(direct.clone(), "".into())).await;
    assert!(
        !matches!(got, Ok(Ok(ref m)) if m.payload.as_ref() == b"secret state"),
        "hub's runner read the request state"
    );
    violation(&mut errors, &direct).await;
    let watch = hub
        .subscribe(format!("$KV.{}.>", names::REQUESTS_BUCKET))
        .await
        .expect("the client sends the subscription");
    violation(&mut errors, &format!("$KV.{}.>", names::REQUESTS_BUCKET)).await;
    drop(watch);

    // Heartbeats: its own cluster's, yes; another cluster's, never (or it could keep a dead
    // cluster's tasks waiting, or make a live one look dead).
    let beats = dispatcher
        .runners_bucket()
        .await
        .expect("the dispatcher creates the runners bucket");
    let runners = js
        .get_key_value(names::RUNNERS_BUCKET)
        .await
        .expect("a runner may look the runners bucket up");
    let replica = ReplicaId::new("hub-0-ab12").expect("a valid replica id");
    let own = names::heartbeat_key(&cluster("hub"), &replica);
    runners
        .put(&own, "alive".into())
        .await
        .expect("hub's runner writes its own heartbeat");
    let forged = names::heartbeat_key(&cluster("prod-1"), &replica);
    let written = runners.put(&forged, "forged".into()).await;
    assert!(
        written.is_err(),
        "hub's runner wrote prod-1's heartbeat: {written:?}"
    );
    violation(
        &mut errors,
        &format!("$KV.{}.{forged}", names::RUNNERS_BUCKET),
    )
    .await;
    assert!(
        runners.delete(&forged).await.is_err(),
        "hub's runner deleted prod-1's heartbeat"
    );
    // The dispatcher reads what is there, the way it follows heartbeats (a watch) and by
    // key: the runner's own heartbeat, nothing forged.
    let mut watch = beats
        .watch_with_history(">")
        .await
        .expect("the dispatcher watches the heartbeats");
    let seen = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("the watch delivers the heartbeat in time")
        .expect("the watch is open")
        .expect("the watch delivers an entry");
    assert_eq!(seen.key, own);
    assert_eq!(
        tokio::time::timeout(Duration::from_millis(500), watch.next())
            .await
            .ok()
            .flatten()
            .map(|entry| entry.map(|e| e.key).unwrap_or_default()),
        None,
        "a forged heartbeat was stored"
    );
    assert_eq!(
        beats
            .get(&own)
            .await
            .expect("the dispatcher reads heartbeats"),
        Some("alive".into())
    );
    assert_eq!(
        beats
            .get(&forged)
            .await
            .expect("the dispatcher reads heartbeats"),
        None
    );
    // Nor can a runner read the others' heartbeats.
    let read = format!(
        "$JS.API.DIRECT.GET.KV_{0}.$KV.{0}.{own}",
        names::RUNNERS_BUCKET
    );
    let got = tokio::time::timeout(DENIED_TIMEOUT, hub.request(read.clone(), "".into())).await;
    assert!(
        !matches!(got, Ok(Ok(ref m)) if m.payload.as_ref() == b"alive"),
        "hub's runner read the runners bucket"
    );
    violation(&mut errors, &read).await;
    // The dispatcher's task records: a runner reads its own cluster's, and no other's.
    let records = dispatcher
        .bucket(names::TASKS_BUCKET, 1)
        .await
        .expect("the dispatcher opens the task records");
    let record = warroom_proto::TaskRecord {
        phase: warroom_proto::ClusterPhase::Completed,
        attempts: 1,
        updated_at: warroom_proto::now(),
    };
    for c in ["hub", "prod-1"] {
        records
            .put(
                names::task_record_key(&cluster(c), &request("r1")),
                serde_json::to_vec(&record).expect("encodes").into(),
            )
            .await
            .expect("the dispatcher writes a task record");
    }
    let hub_bus = Bus::connect(&locked.connection("runner-hub"), "warroom-runner-hub")
        .await
        .expect("hub's runner connects");
    let own: Option<warroom_proto::TaskRecord> = hub_bus
        .read_key(
            names::TASKS_BUCKET,
            &names::task_record_key(&cluster("hub"), &request("r1")),
        )
        .await
        .expect("hub's runner reads its own task's record");
    assert_eq!(own, Some(record));
    let missing: Option<warroom_proto::TaskRecord> = hub_bus
        .read_key(
            names::TASKS_BUCKET,
            &names::task_record_key(&cluster("hub"), &request("r2")),
        )
        .await
        .expect("a record not written yet is no error");
    assert_eq!(missing, None);
    let theirs = format!(
        "$JS.API.DIRECT.GET.KV_{0}.$KV.{0}.{1}",
        names::TASKS_BUCKET,
        names::task_record_key(&cluster("prod-1"), &request("r1"))
    );
    let got = tokio::time::timeout(DENIED_TIMEOUT, hub.request(theirs.clone(), "".into())).await;
    assert!(
        !matches!(got, Ok(Ok(ref m)) if !m.payload.is_empty()),
        "hub's runner read prod-1's task record"
    );
    violation(&mut errors, &theirs).await;
    assert!(
        js.get_key_value(names::TASKS_BUCKET).await.is_err(),
        "hub's runner opened the task records as a bucket"
    );

    // Its cluster's conversations store, which the runner makes on first use: it keeps a
    // conversation, replaces it, and reads it back, as `Conversations` does.
    let store = hub_bus
        .conversations_store(&cluster("hub"))
        .await
        .expect("hub's runner opens its conversations store");
    let name = names::conversation_object(&cluster("hub"), &request("r1"));
    for transcript in ["turn 1", "turn 1, turn 2"] {
        store
            .put(name.as_str(), &mut transcript.as_bytes())
            .await
            .expect("hub's runner keeps a conversation");
    }
    let mut kept = String::new();
    store
        .get(&name)
        .await
        .expect("hub's runner finds its conversation")
        .read_to_string(&mut kept)
        .await
        .expect("hub's runner reads its conversation");
    assert_eq!(kept, "turn 1, turn 2");
    assert!(
        js.delete_object_store(names::conversations_bucket(&cluster("hub")))
            .await
            .is_err(),
        "hub's runner deleted its conversations store"
    );
    // Another cluster's conversations are out of its reach, even once they exist.
    let prod = Bus::connect(&locked.connection("runner-prod-1"), "warroom-runner-prod-1")
        .await
        .expect("prod-1's runner connects");
    prod.conversations_store(&cluster("prod-1"))
        .await
        .expect("prod-1's runner opens its conversations store")
        .put("prod-1.r1", &mut "their turn".as_bytes())
        .await
        .expect("prod-1's runner keeps a conversation");
    assert!(
        hub_bus
            .conversations_store(&cluster("prod-1"))
            .await
            .is_err(),
        "hub's runner opened prod-1's conversations store"
    );
    let theirs = format!(
        "$JS.API.DIRECT.GET.OBJ_{}",
        names::conversations_bucket(&cluster("prod-1"))
    );
    let got = tokio::time::timeout(DENIED_TIMEOUT, hub.request(theirs.clone(), "".into())).await;
    assert!(
        !matches!(got, Ok(Ok(ref m)) if !m.payload.is_empty()),
        "hub's runner read prod-1's conversations"
    );
    violation(&mut errors, &theirs).await;
    prod.close(Duration::from_secs(5)).await;
}

/// A runner's consumer on its cluster's tasks, as `warroom-runner` creates it.
fn pull_config(c: &str) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(names::runner_consumer(&cluster(c))),
        filter_subject: Subject::Task(cluster(c)).to_string(),
        ack_policy: consumer::AckPolicy::Explicit,
        ..Default::default()
    }
}

/// The number of messages in the requests, tasks and events streams.
async fn counts(bus: &Bus) -> Vec<u64> {
    let mut counts = Vec::new();
    for stream in [Stream::Requests, Stream::Tasks, Stream::Events] {
        let mut handle = bus
            .stream(stream)
            .await
            .expect("the dispatcher sees the stream");
        let info = handle.info().await.expect("stream info");
        counts.push(info.state.messages);
    }
    counts
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pipeline_completes_a_request_with_every_component_on_its_own_credentials() {
    use warroom_scripted_model::{Script, ScriptedModel, Turn};

    let locked = Locked::start(&["hub", "prod-1"]).await;
    // Runners may not create streams: a control-plane daemon made them first (in a
    // deployment, a runner that starts earlier fails and is restarted until they exist).
    let control = Bus::connect(&locked.connection("dispatcher"), "warroom-dispatcher")
        .await
        .expect("the dispatcher creates the streams");
    control.close(Duration::from_secs(5)).await;

    let state = tempfile::tempdir().expect("a state folder");
    let bin = state.path().join("bin");
    install_kubectl(&bin);
    let remote = BareRemote::new();
    let engineer = remote.work_clone();
    let model = ScriptedModel::start(Script::single(vec![
        Turn::bash("kubectl get pods"),
        Turn::text("FINDING: locked down and still working."),
    ]))
    .await
    .expect("the scripted model starts");

    let mut options = warroom_dev::StackOptions::new(
        remote.url(),
        &["hub", "prod-1"],
        state.path().join("stack"),
    );
    options.nats_url = Some(locked.server.url().to_owned());
    options.claude_bin = tools::claude();
    options.poll_interval = "200ms".to_owned();
    options.model = warroom_dev::Model::At {
        base_url: model.base_url(),
    };
    options.agent_path = vec![bin];
    options.extra_args.gateway = locked.flags("gateway");
    options.extra_args.dispatcher = locked.flags("dispatcher");
    options.extra_args.publisher = [
        locked.flags("publisher"),
        vec!["--batch-window".to_owned(), "50ms".to_owned()],
    ]
    .concat();
    for c in ["hub", "prod-1"] {
        options
            .extra_args
            .runner_of
            .insert(c.to_owned(), locked.flags(&format!("runner-{c}")));
    }
    let mut stack = warroom_dev::Stack::start(&options)
        .await
        .expect("the stack starts");

    let id = "2026-11-24-1000-locked-down";
    engineer.pull();
    engineer.write(
        format!("requests/pending/{id}.yaml"),
        request_yaml("prod-1"),
    );
    engineer.commit_all("Request on a locked-down NATS");
    engineer.push();

    let status = tokio::select! {
        status = wait_for(
            format!("results/{id}/status.json in a final phase"),
            Duration::from_secs(120),
            || async {
                let text = remote.read(&format!("results/{id}/status.json"))?;
                let status: warroom_proto::RequestStatus = serde_json::from_str(&text).ok()?;
                status.phase.is_final().then_some(status)
            },
        ) => status,
        (name, e) = stack.failed() => panic!("{name} failed on its own credentials: {e:#}"),
    };
    assert_eq!(
        status.phase,
        warroom_proto::RequestPhase::Completed,
        "{}",
        serde_json::to_string_pretty(&status).unwrap_or_default()
    );
    // Both runners beat on their own credentials, and the dispatcher may read it.
    let control = Bus::connect(&locked.connection("dispatcher"), "warroom-dispatcher")
        .await
        .expect("the dispatcher connects again");
    let beats = control
        .runners_bucket()
        .await
        .expect("the dispatcher opens the runners bucket");
    wait_for(
        "a heartbeat from each cluster's runner",
        Duration::from_secs(30),
        || async {
            let keys: Vec<String> = beats
                .keys()
                .await
                .ok()?
                .filter_map(|k| async { k.ok() })
                .collect()
                .await;
            let clusters: Vec<ClusterName> = keys
                .iter()
                .filter_map(|k| names::parse_heartbeat_key(k).map(|(c, _)| c))
                .collect();
            (clusters.contains(&cluster("hub")) && clusters.contains(&cluster("prod-1")))
                .then_some(())
        },
    )
    .await;
    control.close(Duration::from_secs(5)).await;
    // The runner kept the investigation's conversation, on its own credentials, before it
    // reported the result.
    let runner = Bus::connect(&locked.connection("runner-prod-1"), "warroom-runner-prod-1")
        .await
        .expect("prod-1's runner connects");
    let kept = runner
        .conversations_store(&cluster("prod-1"))
        .await
        .expect("prod-1's runner opens the conversations store")
        .info(names::conversation_object(&cluster("prod-1"), &request(id)))
        .await
        .expect("the investigation's conversation was kept");
    assert!(kept.size > 0, "{kept:?}");
    runner.close(Duration::from_secs(5)).await;
    stack.shutdown().await.expect("every daemon stops cleanly");
}

fn request_yaml(cluster: &str) -> String {
    format!(
        "apiVersion: warroom.intility.io/v1
kind: TroubleshootingRequest
metadata:
  name: locked
  timestamp: \"2026-11-24T10:00:00Z\"
  engineer: platform-engineer-1
spec:
  targetCluster:
    type: hosted
    name: {cluster}
  issue:
    category: api-timeout
    description: API server experiencing 30s+ response times
  investigation:
    prompt: |
      Why does the API server time out?
    allowedTools:
      - bash
    timeout: 300
"
    )
}

/// A `kubectl` for the agent that touches no cluster.
fn install_kubectl(bin: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(bin).expect("create the agents' bin folder");
    let path = bin.join("kubectl");
    std::fs::write(
        &path,
        "#!/bin/sh\necho 'kube-apiserver 0/1 CrashLoopBackOff'\n",
    )
    .expect("write kubectl");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .expect("make kubectl executable");
}

/// The cluster's routes, secured as deploy/control-plane/nats/nats.conf secures them: the
/// generated server certificate for both ends of every route, checked against the generated
/// CA (`verify: true`). A certificate with only the serverAuth usage fails every route
/// handshake ("incompatible key usage"), so no quorum forms and no R3 stream can be made.
#[tokio::test(flavor = "multi_thread")]
async fn the_generated_server_certificate_forms_a_cluster_over_verified_routes() {
    let creds = tempfile::tempdir().expect("a folder for the credentials");
    generate(&Options {
        clusters: vec![cluster("hub")],
        out: creds.path().to_owned(),
        tls_hosts: vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
        tls_server_dir: creds.path().to_owned(),
        keep_existing: false,
        force: false,
    })
    .expect("nats-auth generates");
    let at = |name: &str| creds.path().join(name).display().to_string();
    // The cluster block's `tls`, as in deploy/control-plane/nats/nats.conf (where
    // tls.crt/tls.key/ca.crt are server.pem/server-key.pem/ca.pem).
    let route_tls = format!(
        "  tls {{\n    cert_file: \"{}\"\n    key_file: \"{}\"\n    ca_file: \"{}\"\n    \
         verify: true\n    timeout: 3\n  }}",
        at("server.pem"),
        at("server-key.pem"),
        at("ca.pem"),
    );
    let nodes = warroom_testkit::NatsCluster::start_with_cluster_config(3, &route_tls).await;
    let js = nodes.nodes[0].jetstream().await;
    let stream = js
        .create_stream(jetstream::stream::Config {
            name: "ROUTES".to_owned(),
            subjects: vec!["routes.>".to_owned()],
            num_replicas: 3,
            ..Default::default()
        })
        .await
        .expect("an R3 stream needs all three nodes routed to each other");
    let cluster_info = stream.cached_info().cluster.clone().expect("cluster info");
    assert_eq!(cluster_info.replicas.len(), 2, "{cluster_info:?}");
    for node in &nodes.nodes {
        let log = std::fs::read_to_string(node.log_path()).expect("the node's log");
        assert!(
            !log.contains("incompatible key usage"),
            "a route handshake failed:\n{log}"
        );
    }
}

/// `warroom-admin policy check FILE`: the example policy passes; a file that is not a
/// `WarroomPolicy` lists every problem with its field path, and exits 1.
#[test]
fn policy_check_lists_every_problem_with_its_field() {
    let bin = Path::new(env!("CARGO_BIN_EXE_warroom-admin"));
    let run = |file: &Path| {
        std::process::Command::new(bin)
            .args(["policy", "check"])
            .arg(file)
            .output()
            .expect("running warroom-admin")
    };
    let example = tools::workspace_root().join("examples/policy/warroom-policy.yaml");
    let good = run(&example);
    let stdout = String::from_utf8_lossy(&good.stdout);
    assert!(good.status.success(), "{good:?}");
    assert!(
        stdout.starts_with("ok: ") && stdout.contains("2 engineers"),
        "{stdout}"
    );

    let dir = tempfile::tempdir().expect("a temporary folder");
    let bad = dir.path().join("policy.yaml");
    // What deploy/control-plane/policy.yaml held: not a WarroomPolicy at all.
    std::fs::write(
        &bad,
        "allowedClusters: [hub]\nmaxTimeoutSeconds: 3600\nallowedTools: [bash]\n",
    )
    .expect("writing the policy");
    let output = run(&bad);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    for field in [
        "allowedClusters: unknown field",
        "maxTimeoutSeconds: unknown field",
        "allowedTools: unknown field",
        "apiVersion: is required",
        "kind: is required",
        "engineers: is required",
    ] {
        assert_eq!(
            stderr.lines().filter(|l| l.contains(field)).count(),
            1,
            "{field} is not on exactly one line: {stderr}"
        );
    }
    let missing = run(&dir.path().join("missing.yaml"));
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("missing.yaml"),
        "{missing:?}"
    );
}
