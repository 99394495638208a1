//! The S3 mirror against a real S3-compatible server (moto's server mode): every results
//! file lands with git's bytes, an outage is retried without holding back git, and a restart
//! or a fresh shallow clone catches up.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::TryStreamExt as _;
use object_store::ObjectStore as _;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use warroom_testkit::S3Server;

use super::*;

const BUCKET: &str = "warroom-results";
const PREFIX: &str = "team-a/warroom";
/// Long enough for a mirror that backed off during an outage to try again.
const CATCH_UP: Duration = Duration::from_secs(90);

fn s3_args(server: &S3Server) -> Vec<String> {
    [
        "--s3-endpoint",
        &server.endpoint(),
        "--s3-bucket",
        BUCKET,
        "--s3-prefix",
        PREFIX,
        "--s3-path-style",
        "--s3-access-key-id",
        "testing",
        "--s3-secret-access-key",
        "testing",
    ]
    .map(str::to_owned)
    .to_vec()
}

async fn stack_with(server: &S3Server) -> Stack {
    let args = s3_args(server);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Stack::start_with(&args).await
}

/// The test's own client of the bucket.
fn bucket(server: &S3Server) -> AmazonS3 {
    AmazonS3Builder::new()
        .with_endpoint(server.endpoint())
        .with_bucket_name(BUCKET)
        .with_region("us-east-1")
        .with_access_key_id("testing")
        .with_secret_access_key("testing")
        .with_allow_http(true)
        .build()
        .expect("an S3 client")
}

/// Every object below `<prefix>/results/<id>/`, by its path in the repository.
async fn objects(store: &AmazonS3, id: &str) -> Option<BTreeMap<String, String>> {
    let folder = Path::from(format!("{PREFIX}/results/{id}"));
    let metas: Vec<_> = store.list(Some(&folder)).try_collect().await.ok()?;
    let mut found = BTreeMap::new();
    for meta in metas {
        let bytes = store.get(&meta.location).await.ok()?.bytes().await.ok()?;
        let path = meta
            .location
            .as_ref()
            .strip_prefix(&format!("{PREFIX}/"))?
            .to_owned();
        found.insert(path, String::from_utf8_lossy(&bytes).into_owned());
    }
    Some(found)
}

/// Every file of `results/<id>/` on the remote's `main`.
fn git_files(stack: &Stack, id: &str) -> BTreeMap<String, String> {
    stack
        .files()
        .into_iter()
        .filter(|f| f.starts_with(&format!("results/{id}/")))
        .map(|f| {
            let text = stack.remote.read(&f).expect("a listed file");
            (f, text)
        })
        .collect()
}

/// Waits until the bucket holds exactly git's `results/<id>/`, byte for byte.
async fn wait_mirrored(stack: &Stack, store: &AmazonS3, id: &str) -> BTreeMap<String, String> {
    let mut last = None;
    let found = tokio::time::timeout(CATCH_UP, async {
        loop {
            let want = git_files(stack, id);
            let have = objects(store, id).await;
            if !want.is_empty() && have.as_ref() == Some(&want) {
                return want;
            }
            last = Some((want, have));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let metrics = &stack.health.metrics;
    found.unwrap_or_else(|_| {
        panic!(
            "results/{id} was not mirrored in {CATCH_UP:?} ({} uploads, {} failures, {} full \
             comparisons): {last:#?}",
            metrics.s3_uploads.get(),
            metrics.s3_failures.get(),
            metrics.s3_full_syncs.get(),
        )
    })
}

/// A request that completes on `hub` with a report that holds a secret, and one audit line.
async fn complete(stack: &Stack, id: &str) {
    stack
        .event(&event(id, "hub", 1, tool_call("kubectl get pods -A")))
        .await;
    let done = with_report(
        completed_on_hub(id),
        "hub",
        "The database password=hunter2 is wrong.",
    );
    stack.status(&done).await;
    stack.wait_status(id, "completed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_every_results_file_lands_with_the_bytes_git_has() {
    let server = S3Server::start().await;
    server.create_bucket(BUCKET);
    let store = bucket(&server);
    let stack = stack_with(&server).await;
    let id = "r-s3-lands";
    complete(&stack, id).await;

    let mirrored = wait_mirrored(&stack, &store, id).await;
    let names: Vec<&str> = mirrored.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "results/r-s3-lands/README.md",
            "results/r-s3-lands/audit.jsonl",
            "results/r-s3-lands/hub.md",
            "results/r-s3-lands/status.json",
        ]
    );
    let report = &mirrored["results/r-s3-lands/hub.md"];
    assert!(!report.contains("hunter2"), "{report}");
    assert!(report.contains("password=[REDACTED:password]"), "{report}");
    let status = store
        .get(&Path::from(format!("{PREFIX}/results/{id}/status.json")))
        .await
        .expect("status.json is in the bucket");
    assert_eq!(
        status
            .attributes
            .get(&object_store::Attribute::ContentType)
            .map(|v| v.as_ref()),
        Some("application/json")
    );
    assert!(stack.health.metrics.s3_uploads.get() >= 4);
    assert_eq!(stack.health.metrics.s3_failures.get(), 0);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_an_outage_is_retried_and_caught_up_while_git_goes_on() {
    let mut server = S3Server::start().await;
    server.create_bucket(BUCKET);
    let store = bucket(&server);
    let stack = stack_with(&server).await;
    complete(&stack, "r-before").await;
    wait_mirrored(&stack, &store, "r-before").await;

    // The server goes away: results keep reaching git, and the mirror keeps failing.
    server.stop();
    for id in ["r-during-1", "r-during-2"] {
        complete(&stack, id).await;
    }
    wait_until("the mirror failed and retried", CATCH_UP, || async {
        stack.health.metrics.s3_failures.get() >= 2
    })
    .await;
    assert!(git_files(&stack, "r-during-2").contains_key("results/r-during-2/hub.md"));

    // Back, empty (moto keeps nothing across a restart): everything pushed meanwhile lands.
    server.restart().await;
    server.create_bucket(BUCKET);
    for id in ["r-during-1", "r-during-2"] {
        wait_mirrored(&stack, &store, id).await;
    }
    complete(&stack, "r-after").await;
    wait_mirrored(&stack, &store, "r-after").await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_a_restart_catches_up_from_the_recorded_commit() {
    let mut server = S3Server::start().await;
    server.create_bucket(BUCKET);
    let store = bucket(&server);
    let mut stack = stack_with(&server).await;
    complete(&stack, "r-first").await;
    wait_mirrored(&stack, &store, "r-first").await;

    // Pushed while the bucket is gone, then the publisher stops before it could mirror.
    server.stop();
    complete(&stack, "r-unmirrored").await;
    wait_until("the mirror failed", CATCH_UP, || async {
        stack.health.metrics.s3_failures.get() >= 1
    })
    .await;
    stack.halt().await;
    server.restart().await;
    server.create_bucket(BUCKET);

    // The same clone: the recorded commit is in it, so the mirror diffs from there.
    stack.spawn_in(1);
    complete(&stack, "r-second").await;
    for id in ["r-unmirrored", "r-second"] {
        wait_mirrored(&stack, &store, id).await;
    }
    assert_eq!(
        stack.health.metrics.s3_full_syncs.get(),
        0,
        "a diff, not a full comparison"
    );
    assert!(
        objects(&store, "r-first")
            .await
            .is_some_and(|o| o.is_empty()),
        "only what changed since the recorded commit is uploaded"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_a_shallow_clone_without_the_recorded_commit_compares_the_whole_bucket() {
    let server = S3Server::start().await;
    server.create_bucket(BUCKET);
    let store = bucket(&server);
    let mut stack = stack_with(&server).await;
    complete(&stack, "r-old").await;
    wait_mirrored(&stack, &store, "r-old").await;
    stack.halt().await;

    // An engineer's commit moves the branch past the recorded commit, so a new clone's
    // one-commit fetch does not have it. Meanwhile the bucket drifted: an object git never
    // had, and a file whose object was changed.
    let engineer = stack.remote.work_clone();
    engineer.write("requests/pending/r-next.yaml", "name: next\n");
    engineer.commit_all("request r-next");
    engineer.push();
    let stray = Path::from(format!("{PREFIX}/results/r-gone/README.md"));
    store
        .put(&stray, "stale".into())
        .await
        .expect("a stray object");
    let status = Path::from(format!("{PREFIX}/results/r-old/status.json"));
    store
        .put(&status, "{}".into())
        .await
        .expect("a changed object");

    stack.spawn();
    complete(&stack, "r-new").await;
    wait_mirrored(&stack, &store, "r-new").await;
    wait_mirrored(&stack, &store, "r-old").await;
    wait_until("the stray object is deleted", CATCH_UP, || async {
        store.head(&stray).await.is_err()
    })
    .await;
    assert_eq!(stack.health.metrics.s3_full_syncs.get(), 1);
    stack.stop().await;
}
