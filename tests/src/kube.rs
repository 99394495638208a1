//! A fixture Kubernetes API server for pods: a small HTTP server speaking the core v1 Pod
//! API's JSON (create, get, delete, list by label selector, with 404 and 409 `Status` answers
//! as the API gives them), reached through a kubeconfig file it writes. The real `kube` client
//! of the code under test talks to it; the test reads back what was made and every call.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

#[derive(Default)]
struct Api {
    /// Pods by (namespace, name).
    pods: Mutex<BTreeMap<(String, String), Value>>,
    version: Mutex<u64>,
    /// Calls to answer with 500 before serving again.
    fail_next: Mutex<u32>,
    /// Every call: `METHOD path`.
    calls: Mutex<Vec<String>>,
    /// Every pod deleted, in order: (namespace, name).
    deleted: Mutex<Vec<(String, String)>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An API server fixture serving `app` on a free port of loopback, and a kubeconfig file
/// that reaches it; the server stops when this is dropped. [`KubeApi`] is one; a test of
/// another API (ConfigMaps, say) serves its own routes the same way.
pub struct Served {
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Served {
    /// Serves `app` and writes the kubeconfig.
    pub async fn start(app: axum::Router) -> Served {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let dir = tempfile::tempdir().expect("a temporary folder");
        let kubeconfig = dir.path().join("kubeconfig");
        let config = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fixture", "cluster": {"server": url}}],
            "users": [{"name": "fixture", "user": {}}],
            "contexts": [{"name": "fixture", "context": {"cluster": "fixture", "user": "fixture"}}],
            "current-context": "fixture",
        });
        std::fs::write(&kubeconfig, config.to_string()).expect("the kubeconfig is written");
        Served {
            kubeconfig,
            _dir: dir,
            server,
        }
    }

    /// The kubeconfig file that reaches the server.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }
}

/// The running Pod API fixture; the server stops when it is dropped.
pub struct KubeApi {
    state: Arc<Api>,
    served: Served,
}

impl KubeApi {
    /// Starts the server on a free port and writes its kubeconfig.
    pub async fn start() -> KubeApi {
        let state = Arc::new(Api::default());
        let app = axum::Router::new()
            .route(
                "/api/v1/namespaces/{ns}/pods",
                axum::routing::get(list).post(create),
            )
            .route(
                "/api/v1/namespaces/{ns}/pods/{name}",
                axum::routing::get(get_one).delete(delete),
            )
            .with_state(state.clone());
        KubeApi {
            state,
            served: Served::start(app).await,
        }
    }

    /// The kubeconfig file that reaches this server.
    pub fn kubeconfig(&self) -> &Path {
        self.served.kubeconfig()
    }

    /// Pod `name` of `namespace`, as stored.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<Value> {
        lock(&self.state.pods)
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Every pod's (namespace, name).
    pub fn pods(&self) -> Vec<(String, String)> {
        lock(&self.state.pods).keys().cloned().collect()
    }

    /// Stores `pod` as if someone had made it (its metadata names its namespace and name).
    pub fn insert_pod(&self, mut pod: Value) {
        let namespace = pod["metadata"]["namespace"]
            .as_str()
            .expect("a namespace")
            .to_owned();
        let name = pod["metadata"]["name"].as_str().expect("a name").to_owned();
        stamp(&self.state, &mut pod);
        lock(&self.state.pods).insert((namespace, name), pod);
    }

    /// Every call so far, `METHOD path` (`POST /api/v1/namespaces/x/pods`).
    pub fn calls(&self) -> Vec<String> {
        lock(&self.state.calls).clone()
    }

    /// Every pod deleted so far, in order.
    pub fn deleted(&self) -> Vec<(String, String)> {
        lock(&self.state.deleted).clone()
    }

    /// Answers the next `n` calls with a 500.
    pub fn fail_next(&self, n: u32) {
        *lock(&self.state.fail_next) = n;
    }
}

/// Gives `pod` the fields the API server sets: uid, resourceVersion, creationTimestamp.
fn stamp(api: &Api, pod: &mut Value) {
    let mut version = lock(&api.version);
    *version += 1;
    let metadata = &mut pod["metadata"];
    metadata["resourceVersion"] = json!(version.to_string());
    metadata["uid"] = json!(format!("uid-{version}"));
    metadata["creationTimestamp"] = json!("2026-12-08T00:00:00Z");
    pod["apiVersion"] = json!("v1");
    pod["kind"] = json!("Pod");
}

fn status(code: u16, reason: &str, message: String) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    });
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, axum::Json(body)).into_response()
}

/// Records the call; the 500 to answer when it is to fail.
fn called(api: &Api, method: &Method, path: &str) -> Option<Response> {
    lock(&api.calls).push(format!("{method} {path}"));
    let mut fail = lock(&api.fail_next);
    if *fail > 0 {
        *fail -= 1;
        return Some(status(
            500,
            "InternalError",
            "the fixture fails this call".to_owned(),
        ));
    }
    None
}

/// Whether `pod` has every `key=value` of a `labelSelector` (equality terms only).
fn selected(pod: &Value, selector: Option<&str>) -> bool {
    let Some(selector) = selector.filter(|s| !s.is_empty()) else {
        return true;
    };
    selector.split(',').all(|term| match term.split_once('=') {
        Some((key, value)) => {
            pod["metadata"]["labels"][key.trim()].as_str() == Some(value.trim_start_matches('='))
        }
        None => false,
    })
}

async fn list(
    State(api): State<Arc<Api>>,
    UrlPath(ns): UrlPath<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    if let Some(failed) = called(&api, &Method::GET, &format!("/api/v1/namespaces/{ns}/pods")) {
        return failed;
    }
    let items: Vec<Value> = lock(&api.pods)
        .iter()
        .filter(|((namespace, _), pod)| {
            *namespace == ns && selected(pod, query.get("labelSelector").map(String::as_str))
        })
        .map(|(_, pod)| pod.clone())
        .collect();
    let version = lock(&api.version).to_string();
    axum::Json(json!({
        "apiVersion": "v1", "kind": "PodList",
        "metadata": {"resourceVersion": version},
        "items": items,
    }))
    .into_response()
}

async fn create(
    State(api): State<Arc<Api>>,
    UrlPath(ns): UrlPath<String>,
    body: String,
) -> Response {
    if let Some(failed) = called(
        &api,
        &Method::POST,
        &format!("/api/v1/namespaces/{ns}/pods"),
    ) {
        return failed;
    }
    let Ok(mut pod) = serde_json::from_str::<Value>(&body) else {
        return status(400, "BadRequest", "the body is not JSON".to_owned());
    };
    let Some(name) = pod["metadata"]["name"].as_str().map(str::to_owned) else {
        return status(422, "Invalid", "metadata.name: Required value".to_owned());
    };
    if pod["metadata"]["namespace"]
        .as_str()
        .is_some_and(|given| given != ns)
    {
        return status(
            400,
            "BadRequest",
            "the namespace of the object does not match the namespace of the request".to_owned(),
        );
    }
    pod["metadata"]["namespace"] = json!(ns);
    let key = (ns, name.clone());
    if lock(&api.pods).contains_key(&key) {
        return status(
            409,
            "AlreadyExists",
            format!("pods \"{name}\" already exists"),
        );
    }
    stamp(&api, &mut pod);
    lock(&api.pods).insert(key, pod.clone());
    (StatusCode::CREATED, axum::Json(pod)).into_response()
}

async fn get_one(
    State(api): State<Arc<Api>>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
) -> Response {
    if let Some(failed) = called(
        &api,
        &Method::GET,
        &format!("/api/v1/namespaces/{ns}/pods/{name}"),
    ) {
        return failed;
    }
    match lock(&api.pods).get(&(ns, name.clone())) {
        Some(pod) => axum::Json(pod.clone()).into_response(),
        None => status(404, "NotFound", format!("pods \"{name}\" not found")),
    }
}

async fn delete(
    State(api): State<Arc<Api>>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
) -> Response {
    if let Some(failed) = called(
        &api,
        &Method::DELETE,
        &format!("/api/v1/namespaces/{ns}/pods/{name}"),
    ) {
        return failed;
    }
    let key = (ns, name.clone());
    match lock(&api.pods).remove(&key) {
        Some(pod) => {
            lock(&api.deleted).push(key);
            axum::Json(pod).into_response()
        }
        None => status(404, "NotFound", format!("pods \"{name}\" not found")),
    }
}
