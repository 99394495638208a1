//! Self-tests of the test kit: the real `nats-server` starts, keeps JetStream data over a
//! restart and dies with its guard; bare remotes and clones behave like a real git remote;
//! the waits return values and fail with their description.

use std::time::Duration;

use async_nats::jetstream::kv;
use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use warroom_testkit::{BareRemote, DEFAULT_TIMEOUT, NatsServer, wait_for, wait_for_ok, wait_until};

async fn create_bucket(js: &async_nats::jetstream::Context, bucket: &str) -> kv::Store {
    js.create_key_value(kv::Config {
        bucket: bucket.to_owned(),
        ..Default::default()
    })
    .await
    .unwrap_or_else(|err| panic!("creating KV bucket {bucket} failed: {err}"))
}

#[tokio::test]
async fn nats_server_starts_with_jetstream_kv() {
    let server = NatsServer::start().await;
    assert!(
        server.url().starts_with("nats://127.0.0.1:"),
        "{}",
        server.url()
    );
    assert!(server.url().ends_with(&format!(":{}", server.port())));

    let js = server.jetstream().await;
    let bucket = create_bucket(&js, "testkit").await;
    bucket.put("greeting", "hello".into()).await.unwrap();
    let value = bucket.get("greeting").await.unwrap();
    assert_eq!(value.as_deref(), Some(&b"hello"[..]));
    assert_eq!(bucket.get("missing").await.unwrap(), None);

    // The store is the one we gave it, not somewhere shared between tests.
    assert!(server.store_dir().join("jetstream").is_dir());
    assert!(
        server.log_tail(50).contains("Server is ready"),
        "{}",
        server.log_tail(50)
    );
}

#[tokio::test]
async fn nats_restart_keeps_kv_data_and_url() {
    let mut server = NatsServer::start().await;
    let url_before = server.url().to_owned();
    let pid_before = server.pid().unwrap();

    let client = server.connect().await;
    let js = async_nats::jetstream::new(client.clone());
    let bucket = create_bucket(&js, "durable").await;
    bucket.put("key", "before restart".into()).await.unwrap();

    server.restart().await;
    assert_eq!(server.url(), url_before);
    assert_ne!(
        server.pid(),
        Some(pid_before),
        "restart must run a new process"
    );

    // A fresh client sees the value straight away: the store was recovered before the
    // server accepted connections.
    let fresh = server.jetstream().await;
    let fresh_bucket = fresh.get_key_value("durable").await.unwrap();
    let value = fresh_bucket.get("key").await.unwrap();
    assert_eq!(value.as_deref(), Some(&b"before restart"[..]));

    // The client from before the restart reconnects on its own, as a daemon's would.
    let value = wait_for_ok(
        "the old client reads the key after the restart",
        DEFAULT_TIMEOUT,
        || {
            let bucket = bucket.clone();
            async move {
                match bucket.get("key").await {
                    Ok(Some(value)) => Ok(value),
                    Ok(None) => Err("key missing".to_owned()),
                    Err(err) => Err(err.to_string()),
                }
            }
        },
    )
    .await;
    assert_eq!(&value[..], b"before restart");

    // A second stop/start cycle through the explicit calls works the same way.
    server.stop().await;
    assert_eq!(server.pid(), None);
    server.start_again().await;
    assert_eq!(server.url(), url_before);
    let value = server
        .jetstream()
        .await
        .get_key_value("durable")
        .await
        .unwrap()
        .get("key")
        .await
        .unwrap();
    assert_eq!(value.as_deref(), Some(&b"before restart"[..]));
}

#[tokio::test]
async fn nats_restart_after_kill_comes_back_on_the_same_url() {
    let mut server = NatsServer::start().await;
    let url_before = server.url().to_owned();
    let client = server.connect().await;

    server.kill();
    assert_eq!(server.pid(), None);
    wait_until(
        "the client notices the server is gone",
        DEFAULT_TIMEOUT,
        || {
            let state = client.connection_state();
            async move { state != async_nats::connection::State::Connected }
        },
    )
    .await;

    server.start_again().await;
    assert_eq!(server.url(), url_before);
    wait_until(
        "the client reconnects to the restarted server",
        DEFAULT_TIMEOUT,
        || {
            let state = client.connection_state();
            async move { state == async_nats::connection::State::Connected }
        },
    )
    .await;
    client.flush().await.unwrap();
}

#[tokio::test]
async fn nats_drop_kills_the_process() {
    let server = NatsServer::start().await;
    let pid = Pid::from_raw(i32::try_from(server.pid().unwrap()).unwrap());
    let port = server.port();
    assert_eq!(
        kill(pid, None),
        Ok(()),
        "the server should be running before the drop"
    );
    let dir = server.store_dir();

    drop(server);

    // Drop kills and reaps, so the pid is gone at once: no waiting needed.
    assert_eq!(
        kill(pid, None),
        Err(Errno::ESRCH),
        "nats-server {pid} outlived its guard"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still accepts connections after the drop"
    );
    assert!(
        !dir.exists(),
        "the temporary store {} was not removed",
        dir.display()
    );
}

#[tokio::test]
async fn nats_start_with_config_and_args_applies_them() {
    let mut server = NatsServer::start_with_config("max_payload: 2MB\n").await;
    assert_eq!(
        server.connect().await.server_info().max_payload,
        2 * 1024 * 1024
    );
    // The configuration survives a restart.
    server.restart().await;
    assert_eq!(
        server.connect().await.server_info().max_payload,
        2 * 1024 * 1024
    );

    let server = NatsServer::start_with_args(["--server_name", "testkit-args"]).await;
    assert_eq!(
        server.connect().await.server_info().server_name,
        "testkit-args"
    );
}

#[tokio::test]
#[should_panic(expected = "flag provided but not defined: -no_such_flag")]
async fn nats_startup_failure_quotes_the_server_log() {
    NatsServer::start_with_args(["--no_such_flag"]).await;
}

#[test]
fn git_remote_is_seeded_and_clones_use_a_local_identity() {
    let remote = BareRemote::new();
    assert!(
        remote.path().join("HEAD").is_file(),
        "not a bare repository"
    );
    assert!(
        remote.file_url().starts_with("file:///"),
        "{}",
        remote.file_url()
    );
    assert_eq!(remote.log_subjects(), ["Initial commit"]);
    assert_eq!(
        remote.read("requests/pending/.gitkeep").as_deref(),
        Some("")
    );
    assert!(remote.read("README.md").is_some());
    assert_eq!(remote.read("no/such/file"), None);

    let clone = remote.work_clone();
    assert_eq!(clone.head(), remote.head());
    assert_eq!(clone.git(["branch", "--show-current"]).trim(), "main");
    assert!(clone.path().join("requests/pending/.gitkeep").is_file());
    assert_eq!(clone.read("missing.txt"), None);

    // The identity comes from the clone's local config, and no global config is read at
    // all, so a CI machine without an identity behaves the same.
    assert_eq!(
        clone.git(["config", "--local", "user.email"]).trim(),
        warroom_testkit::git::TEST_USER_EMAIL
    );
    assert!(clone.try_git(["config", "--global", "user.email"]).is_err());
    clone.write("a.txt", "a\n");
    clone.commit_all("add a");
    assert_eq!(
        clone.git(["log", "-1", "--format=%an <%ae>"]).trim(),
        "Warroom Test <test@warroom.invalid>"
    );

    // A file:// clone works as well as the plain path.
    let by_url = warroom_testkit::WorkClone::new(&remote.file_url());
    assert_eq!(by_url.head(), remote.head());
}

#[test]
fn git_commit_pushed_by_one_clone_is_pulled_by_another() {
    let remote = BareRemote::new();
    let alice = remote.work_clone();
    let bob = remote.work_clone();

    alice.write("requests/pending/r1.json", "{\"id\":\"r1\"}\n");
    let commit = alice.commit_all("add r1");
    alice.push();
    assert_eq!(remote.head(), commit);
    assert_eq!(
        remote.read("requests/pending/r1.json").as_deref(),
        Some("{\"id\":\"r1\"}\n")
    );

    assert_eq!(bob.read("requests/pending/r1.json"), None);
    bob.pull();
    assert_eq!(bob.head(), commit);
    assert_eq!(
        bob.read("requests/pending/r1.json").as_deref(),
        Some("{\"id\":\"r1\"}\n")
    );
}

#[test]
fn git_push_from_a_stale_clone_is_rejected() {
    let remote = BareRemote::new();
    let fresh = remote.work_clone();
    let stale = remote.work_clone();

    fresh.write("one.txt", "1\n");
    let pushed = fresh.commit_all("one");
    fresh.push();

    stale.write("two.txt", "2\n");
    stale.commit_all("two");
    let failure = stale.try_push().unwrap_err();
    assert!(
        failure.stderr.contains("rejected"),
        "unexpected failure: {failure}"
    );
    assert_eq!(
        remote.head(),
        pushed,
        "the rejected push must not move main"
    );

    // After pulling (a rebase onto the pushed commit) the same push goes through.
    stale.pull();
    stale.push();
    assert_eq!(remote.log_subjects(), ["two", "one", "Initial commit"]);
    assert_eq!(remote.read("one.txt").as_deref(), Some("1\n"));
    assert_eq!(remote.read("two.txt").as_deref(), Some("2\n"));
}

#[tokio::test]
async fn wait_for_returns_the_first_value() {
    let mut calls = 0;
    let value = wait_for("the third call", Duration::from_secs(5), || {
        calls += 1;
        let current = calls;
        async move { (current >= 3).then_some(current) }
    })
    .await;
    assert_eq!(value, 3);
}

#[tokio::test]
#[should_panic(expected = "waiting for: something that never happens")]
async fn wait_until_panics_with_the_description() {
    wait_until(
        "something that never happens",
        Duration::from_millis(100),
        || async { false },
    )
    .await;
}

#[tokio::test]
#[should_panic(expected = "last observed: \"state is red\"")]
async fn wait_for_ok_reports_the_last_error() {
    wait_for_ok("green", Duration::from_millis(100), || async {
        Err::<(), _>("state is red")
    })
    .await;
}

#[tokio::test]
#[should_panic(expected = "the check itself did not finish")]
async fn wait_cuts_off_a_hanging_check_at_the_deadline() {
    wait_until("a check that hangs", Duration::from_millis(100), || {
        std::future::pending::<bool>()
    })
    .await;
}

#[test]
fn add_history_puts_commits_on_top_of_main_and_keeps_its_files() {
    let remote = BareRemote::new();
    let before = remote.head();
    remote.add_history(50);
    let count = remote.git(["rev-list", "--count", "main"]);
    assert_eq!(count.trim(), "51", "the seed commit and 50 more");
    assert_eq!(remote.read("history.txt").as_deref(), Some("commit 49\n"));
    assert!(
        remote.read("README.md").is_some(),
        "the seed's files are kept"
    );
    let first_parent = remote.git(["rev-parse", "main~50"]);
    assert_eq!(first_parent.trim(), before);
}
