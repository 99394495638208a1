//! The ConfigMap surface against a fixture Kubernetes API server: a small HTTP server speaking
//! the ConfigMap API's JSON (get, create, replace, server-side apply, list by label,
//! delete, with 404 and 409 as the API answers them), reached through a kubeconfig file the
//! test writes, driven by the real publisher `run` on a real nats-server.

use std::collections::{BTreeMap as Map, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::*;

/// The API server's per-object limit.
const MAX_OBJECT: usize = 1024 * 1024;

#[derive(Default)]
struct Api {
    /// ConfigMaps by namespace and name.
    objects: Mutex<Map<(String, String), Value>>,
    version: Mutex<u64>,
    /// Calls to answer with 500 before serving again.
    fail_next: Mutex<u32>,
    /// Every call: method and path.
    calls: Mutex<Vec<String>>,
    /// When each ConfigMap was deleted.
    deleted: Mutex<HashMap<String, Instant>>,
}

struct KubeFixture {
    state: Arc<Api>,
    served: warroom_testkit::kube::Served,
}

impl KubeFixture {
    async fn start() -> KubeFixture {
        let state = Arc::new(Api::default());
        let app = axum::Router::new()
            .route(
                "/api/v1/namespaces/{ns}/configmaps",
                axum::routing::get(list).post(create),
            )
            .route(
                "/api/v1/namespaces/{ns}/configmaps/{name}",
                axum::routing::get(get_one)
                    .put(replace)
                    .patch(patch)
                    .delete(delete),
            )
            .with_state(state.clone());
        KubeFixture {
            state,
            served: warroom_testkit::kube::Served::start(app).await,
        }
    }

    fn args(&self) -> Vec<String> {
        vec![
            "--configmap-namespace".to_owned(),
            "warroom".to_owned(),
            "--configmap-kubeconfig".to_owned(),
            self.served.kubeconfig().display().to_string(),
        ]
    }

    fn get(&self, name: &str) -> Option<Value> {
        let objects = self.state.objects.lock().expect("lock");
        objects
            .get(&("warroom".to_owned(), name.to_owned()))
            .cloned()
    }

    fn names(&self) -> Vec<String> {
        let objects = self.state.objects.lock().expect("lock");
        objects.keys().map(|(_, name)| name.clone()).collect()
    }

    /// A ConfigMap somebody else keeps in the namespace.
    fn seed(&self, name: &str, labels: Value) {
        let object = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "warroom", "labels": labels, "resourceVersion": "1"},
            "data": {"k": "v"},
        });
        let mut objects = self.state.objects.lock().expect("lock");
        objects.insert(("warroom".to_owned(), name.to_owned()), object);
    }

    /// Waits until ConfigMap `name` satisfies `check`.
    async fn wait(&self, name: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        wait_for(format!("ConfigMap {name} {what}"), DEFAULT_TIMEOUT, || {
            let found = self.get(name).filter(|cm| check(cm));
            async move { found }
        })
        .await
    }
}

fn status_answer(code: u16, reason: &str, message: String) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    });
    let code = StatusCode::from_u16(code).expect("a status code");
    (code, axum::Json(body)).into_response()
}

fn not_found(name: &str) -> Response {
    status_answer(404, "NotFound", format!("configmaps \"{name}\" not found"))
}

/// Counts the call; `Some(500)` when it is to fail.
fn called(api: &Api, method: &Method, path: &str) -> Option<Response> {
    api.calls
        .lock()
        .expect("lock")
        .push(format!("{method} {path}"));
    let mut fail = api.fail_next.lock().expect("lock");
    if *fail > 0 {
        *fail -= 1;
        return Some(status_answer(
            500,
            "InternalError",
            "etcdserver: leader changed".to_owned(),
        ));
    }
    None
}

/// Stores `object` under a new resourceVersion and answers with it (`ok`), refusing what
/// the API server refuses.
fn store(api: &Api, ns: &str, name: &str, mut object: Value, ok: StatusCode) -> Response {
    if object.to_string().len() > MAX_OBJECT {
        return status_answer(
            422,
            "Invalid",
            format!(
                "ConfigMap \"{name}\" is invalid: []: Too long: must have at most 1048576 bytes"
            ),
        );
    }
    let mut version = api.version.lock().expect("lock");
    *version += 1;
    object["metadata"]["name"] = json!(name);
    object["metadata"]["namespace"] = json!(ns);
    object["metadata"]["resourceVersion"] = json!(version.to_string());
    object["apiVersion"] = json!("v1");
    object["kind"] = json!("ConfigMap");
    api.objects
        .lock()
        .expect("lock")
        .insert((ns.to_owned(), name.to_owned()), object.clone());
    (ok, axum::Json(object)).into_response()
}

async fn get_one(
    State(api): State<Arc<Api>>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    if let Some(failed) = called(&api, &Method::GET, &name) {
        return failed;
    }
    let found = api
        .objects
        .lock()
        .expect("lock")
        .get(&(ns, name.clone()))
        .cloned();
    match found {
        Some(object) => axum::Json(object).into_response(),
        None => not_found(&name),
    }
}

async fn create(State(api): State<Arc<Api>>, Path(ns): Path<String>, body: String) -> Response {
    if let Some(failed) = called(&api, &Method::POST, &ns) {
        return failed;
    }
    let Ok(object) = serde_json::from_str::<Value>(&body) else {
        return status_answer(400, "BadRequest", "not JSON".to_owned());
    };
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if api
        .objects
        .lock()
        .expect("lock")
        .contains_key(&(ns.clone(), name.clone()))
    {
        return status_answer(
            409,
            "AlreadyExists",
            format!("configmaps \"{name}\" already exists"),
        );
    }
    store(&api, &ns, &name, object, StatusCode::CREATED)
}

async fn replace(
    State(api): State<Arc<Api>>,
    Path((ns, name)): Path<(String, String)>,
    body: String,
) -> Response {
    if let Some(failed) = called(&api, &Method::PUT, &name) {
        return failed;
    }
    let Ok(object) = serde_json::from_str::<Value>(&body) else {
        return status_answer(400, "BadRequest", "not JSON".to_owned());
    };
    let current = api
        .objects
        .lock()
        .expect("lock")
        .get(&(ns.clone(), name.clone()))
        .cloned();
    let Some(current) = current else {
        return not_found(&name);
    };
    if object["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
        return status_answer(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on configmaps \"{name}\": the object has been modified"
            ),
        );
    }
    store(&api, &ns, &name, object, StatusCode::OK)
}

/// Server-side apply (`application/apply-patch+yaml`, JSON being YAML): the object as the
/// field manager gives it, created when missing. A JSON merge patch otherwise.
async fn patch(
    State(api): State<Arc<Api>>,
    Path((ns, name)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if let Some(failed) = called(&api, &Method::PATCH, &name) {
        return failed;
    }
    let Ok(given) = serde_json::from_str::<Value>(&body) else {
        return status_answer(400, "BadRequest", "not JSON".to_owned());
    };
    let kind = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let current = api
        .objects
        .lock()
        .expect("lock")
        .get(&(ns.clone(), name.clone()))
        .cloned();
    let object = if kind == "application/apply-patch+yaml" {
        if !query.contains_key("fieldManager") {
            return status_answer(
                422,
                "Invalid",
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value".to_owned(),
            );
        }
        given
    } else {
        let Some(mut current) = current else {
            return not_found(&name);
        };
        merge(&mut current, given);
        current
    };
    store(&api, &ns, &name, object, StatusCode::OK)
}

fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(&key);
                } else {
                    merge(target.entry(key).or_insert(Value::Null), value);
                }
            }
        }
        (target, patch) => *target = patch,
    }
}

async fn list(
    State(api): State<Arc<Api>>,
    Path(ns): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(failed) = called(&api, &Method::GET, &format!("{ns}?list")) {
        return failed;
    }
    let selector: Vec<(String, String)> = query
        .get("labelSelector")
        .map(|s| {
            s.split(',')
                .filter_map(|term| term.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .unwrap_or_default();
    let objects = api.objects.lock().expect("lock");
    let items: Vec<Value> = objects
        .iter()
        .filter(|((n, _), _)| *n == ns)
        .map(|(_, object)| object.clone())
        .filter(|object| {
            selector
                .iter()
                .all(|(k, v)| object["metadata"]["labels"][k].as_str() == Some(v))
        })
        .collect();
    let version = api.version.lock().expect("lock").to_string();
    axum::Json(json!({
        "apiVersion": "v1", "kind": "ConfigMapList",
        "metadata": {"resourceVersion": version},
        "items": items,
    }))
    .into_response()
}

async fn delete(State(api): State<Arc<Api>>, Path((ns, name)): Path<(String, String)>) -> Response {
    if let Some(failed) = called(&api, &Method::DELETE, &name) {
        return failed;
    }
    let removed = api
        .objects
        .lock()
        .expect("lock")
        .remove(&(ns, name.clone()));
    match removed {
        Some(_) => {
            api.deleted
                .lock()
                .expect("lock")
                .insert(name.clone(), Instant::now());
            axum::Json(json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Success", "details": {"name": name, "kind": "configmaps"},
            }))
            .into_response()
        }
        None => not_found(&name),
    }
}

fn label<'a>(cm: &'a Value, key: &str) -> Option<&'a str> {
    cm["metadata"]["labels"][key].as_str()
}

fn annotation<'a>(cm: &'a Value, key: &str) -> Option<&'a str> {
    cm["metadata"]["annotations"][key].as_str()
}

fn data_bytes(cm: &Value) -> usize {
    cm["data"].as_object().map_or(0, |data| {
        data.values()
            .map(|v| v.as_str().unwrap_or_default().len())
            .sum()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_configmap_per_request_follows_each_transition_labelled_and_capped() {
    let kube = KubeFixture::start().await;
    // The API server is down for the first two calls: retried.
    *kube.state.fail_next.lock().expect("lock") = 2;
    let mut args = kube.args();
    args.extend(["--configmap-max-bytes".to_owned(), "8192".to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let stack = Stack::start_with(&args).await;

    stack
        .status(&status("r-1", RequestPhase::Accepted, 1))
        .await;
    kube.wait("warroom-r-1", "is accepted", |cm| {
        label(cm, "warroom.io/phase") == Some("accepted")
    })
    .await;
    stack
        .status(&with_cluster(
            status("r-1", RequestPhase::Running, 2),
            "hub",
            ClusterPhase::Running,
        ))
        .await;
    kube.wait("warroom-r-1", "is running", |cm| {
        label(cm, "warroom.io/phase") == Some("running")
    })
    .await;
    stack
        .status(&with_cluster(
            status("r-1", RequestPhase::Completed, 3),
            "hub",
            ClusterPhase::Completed,
        ))
        .await;
    let cm = kube
        .wait("warroom-r-1", "is completed", |cm| {
            label(cm, "warroom.io/phase") == Some("completed")
        })
        .await;
    assert_eq!(
        label(&cm, "app.kubernetes.io/part-of"),
        Some("claude-warroom")
    );
    assert_eq!(
        label(&cm, "app.kubernetes.io/managed-by"),
        Some("warroom-publisher")
    );
    assert_eq!(label(&cm, "warroom.io/request-id"), Some("r-1"));
    assert!(annotation(&cm, "warroom.io/finished-at").is_some(), "{cm}");
    assert_eq!(annotation(&cm, "warroom.io/revision"), Some("3"));
    let status_json: Value =
        serde_json::from_str(cm["data"]["status.json"].as_str().expect("status.json"))
            .expect("JSON");
    assert_eq!(status_json["phase"], "completed");
    assert_eq!(status_json["clusters"]["hub"]["phase"], "completed");
    let summary = cm["data"]["summary.md"].as_str().expect("summary.md");
    assert!(summary.contains("| Phase | **completed** |"), "{summary}");
    assert_eq!(kube.names(), ["warroom-r-1"], "one ConfigMap per request");
    assert!(
        stack
            .health
            .metrics
            .surface_retries
            .get_or_create(&warroom_publisher::SurfaceLabels {
                surface: "configmap"
            })
            .get()
            >= 1
    );

    // A request id that is no DNS name, with 300 clusters and a secret in its error.
    let secret = "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB";
    let mut big = status("Big_Request", RequestPhase::Failed, 3);
    for n in 0..300 {
        big = with_cluster(big, &format!("cluster-{n:03}"), ClusterPhase::Failed);
    }
    big.status.error = Some(format!(
        "everything failed; token={secret} {}",
        "x".repeat(5000)
    ));
    stack.status(&big).await;
    let name = wait_for("the big request's ConfigMap", DEFAULT_TIMEOUT, || {
        let name = kube
            .names()
            .into_iter()
            .find(|n| n.starts_with("warroom-big-request-"));
        async move { name }
    })
    .await;
    let cm = kube
        .wait(&name, "is failed", |cm| {
            label(cm, "warroom.io/phase") == Some("failed")
        })
        .await;
    assert!(data_bytes(&cm) <= 8192, "{} bytes", data_bytes(&cm));
    assert_eq!(annotation(&cm, "warroom.io/truncated"), Some("true"));
    assert_eq!(
        annotation(&cm, "warroom.io/request-id"),
        Some("Big_Request")
    );
    assert_eq!(label(&cm, "warroom.io/request-id"), Some("Big_Request"));
    assert!(
        !cm.to_string().contains(secret),
        "the secret reached the ConfigMap"
    );
    let status_json: Value =
        serde_json::from_str(cm["data"]["status.json"].as_str().expect("status.json"))
            .expect("still JSON");
    assert_eq!(status_json["clusters_omitted"], 300);
    assert_eq!(status_json["phase"], "failed");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_requests_configmaps_are_deleted_after_the_retention() {
    let kube = KubeFixture::start().await;
    kube.seed("someone-elses", json!({"app": "other"}));
    kube.seed(
        "warroom-by-hand",
        json!({"app.kubernetes.io/part-of": "claude-warroom"}),
    );
    let mut args = kube.args();
    args.extend(["--configmap-retention".to_owned(), "2s".to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let stack = Stack::start_with(&args).await;

    let finished = Instant::now();
    stack.status(&completed_on_hub("r-done")).await;
    stack
        .status(&with_cluster(
            status("r-live", RequestPhase::Running, 2),
            "hub",
            ClusterPhase::Running,
        ))
        .await;
    kube.wait("warroom-r-live", "exists", |_| true).await;
    // On a loaded machine r-done's ConfigMap may come and go between two looks: its deletion
    // is what counts, and the fixture records it.
    wait_until("r-done's ConfigMap is deleted", DEFAULT_TIMEOUT, || {
        let gone = kube.get("warroom-r-done").is_none()
            && kube
                .state
                .deleted
                .lock()
                .expect("lock")
                .contains_key("warroom-r-done");
        async move { gone }
    })
    .await;
    let deleted = *kube
        .state
        .deleted
        .lock()
        .expect("lock")
        .get("warroom-r-done")
        .expect("r-done's ConfigMap was made, then deleted (not never made)");
    assert!(
        deleted - finished >= Duration::from_secs(2),
        "deleted {:?} after the end, before the retention",
        deleted - finished
    );
    let mut left = kube.names();
    left.sort();
    assert_eq!(left, ["someone-elses", "warroom-by-hand", "warroom-r-live"]);
    // The count goes up once the round that deleted it returns, just after the deletion.
    wait_until("the collection is counted", DEFAULT_TIMEOUT, || {
        let counted = stack.health.metrics.configmaps_collected.get();
        async move { counted == 1 }
    })
    .await;
    stack.stop().await;
}
