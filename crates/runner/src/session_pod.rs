//! Session pods: the pod a session with `spec.exec` is held as, so an engineer on an admin
//! workstation can `kubectl exec -it <pod> -c session -- claude`.
//!
//! The dispatcher orders a pod with a task whose `pod` is [`PodOrder::Hold`] when the session
//! opens and [`PodOrder::Release`] when it ends; the runner answers each with a
//! [`PodReport`]. The pod ([`pod`]) has two containers of the runner's own image:
//! `model-proxy` (`warroom-runner model-proxy`: the model key, mounted from a Secret, the
//! budget and the redaction of tool results on their way out) and `session`
//! (`warroom-runner session-shell`: the guard hooks, the tool rules and a `claude` wrapper
//! that applies them). The engineer execs into `session`, which has no key. The pod's own
//! `activeDeadlineSeconds` ends it at the session's end whatever happens to the runner, and a
//! sweep ([`sweep`]) deletes the expired ones the runner finds.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, Pod, PodSecurityContext, PodSpec,
    ResourceRequirements, SeccompProfile, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use time::format_description::well_known::Rfc3339;
use tracing::{info, warn};
use warroom_proto::status::PodPhase;
use warroom_proto::wire::PodReport;
use warroom_proto::{ClusterName, RequestId, RunnerReport, Subject, Timestamp, Tool, names};
use warroom_runtime::retry::{self, Retryable as _};
use warroom_runtime::shutdown::CancellationToken;
use warroom_runtime::{Bus, Chain};

use crate::Config;

/// The `app.kubernetes.io/name` of every session pod: what the sweep lists.
pub const APP_NAME: &str = "warroom-session";
/// The annotation holding the exact request id (the label holds a shortened one).
pub const REQUEST_ANNOTATION: &str = "warroom.io/request-id";
/// The annotation holding the engineer who opened the session.
pub const ENGINEER_ANNOTATION: &str = "warroom.io/engineer";
/// The annotation holding the end of the session (RFC 3339), after which the sweep deletes it.
pub const EXPIRES_ANNOTATION: &str = "warroom.io/expires-at";
/// The label holding the cluster whose runner made the pod.
pub const CLUSTER_LABEL: &str = "warroom.io/cluster";
/// Where the model key's Secret is mounted in the `model-proxy` container.
pub const MODEL_KEY_DIR: &str = "/etc/warroom/model";
/// The key of the model Secret that holds the API key.
pub const MODEL_KEY: &str = "api-key";
/// The HOME of the `session` container (an emptyDir), where `session-shell` writes the
/// guard hooks and the `claude` wrapper.
pub const SESSION_HOME: &str = "/session";
/// How long a deleted session pod's containers get before they are killed.
pub const GRACE_SECS: u32 = 5;
/// How often the sweep looks for expired pods.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// The reason a hold fails on a runner started without `--session-pods`.
pub const NOT_ENABLED: &str = "this cluster's runner does not hold session pods: deploy it \
     with the session-exec component (deploy/components/session-exec)";
/// The reason a hold fails when it arrives after the session's end.
pub const EXPIRED: &str = "the session ended before its pod was made";
/// Retries of an API call that failed on the server's side or on the way there.
const API_RETRIES: usize = 4;

/// What every session pod of this runner shares: where it goes and what its containers run.
#[derive(Debug, Clone, PartialEq)]
pub struct PodTemplate {
    pub cluster: ClusterName,
    pub namespace: String,
    pub image: String,
    pub service_account: String,
    pub proxy_port: u16,
    pub model_secret: String,
    /// The model API the proxy forwards to (the runner's own upstream).
    pub upstream: String,
    /// The proxy's further flags: the runner's prices.
    pub proxy_args: Vec<String>,
    /// The budget of a hold that names none: the runner's per-run budget.
    pub default_budget_usd: f64,
    /// `session-shell`'s further flags: the CLI, the guard and the model the runner uses.
    pub shell_args: Vec<String>,
    /// The runner's guard configuration (YAML), given to `session-shell` as text: the file
    /// the runner read is mounted into the runner's pod, not into session pods.
    pub guard_config: Option<String>,
}

impl PodTemplate {
    /// The template of this runner's session pods, from its configuration; `None` when
    /// `--session-pods` is off. Reads the guard configuration file (already checked at start).
    pub fn from_config(config: &Config) -> Option<PodTemplate> {
        let session = &config.session;
        if !session.session_pods {
            return None;
        }
        let mut proxy_args = Vec::new();
        for (flag, price) in [
            ("--price-opus", config.api.price_opus),
            ("--price-sonnet", config.api.price_sonnet),
            ("--price-haiku", config.api.price_haiku),
        ] {
            proxy_args.push(flag.to_owned());
            proxy_args.push(price.to_string());
        }
        let mut shell_args = vec![
            "--claude-bin".to_owned(),
            config
                .resolve_claude_bin()
                .and_then(|path| std::path::absolute(path).ok())
                .unwrap_or_else(|| "/usr/local/bin/claude".into())
                .display()
                .to_string(),
        ];
        if let Some(guard) = config.resolve_guard_bin() {
            shell_args.push("--guard-bin".to_owned());
            shell_args.push(guard.display().to_string());
        }
        if let Some(model) = &config.model {
            shell_args.push("--model".to_owned());
            shell_args.push(model.clone());
        }
        let guard_config = config
            .guard_config
            .as_ref()
            .and_then(|path| match std::fs::read_to_string(path) {
                Ok(text) => Some(text),
                Err(e) => {
                    warn!(cause = %e, path = %path.display(), "cannot read the guard configuration for session pods; they get the guard's built-in rules");
                    None
                }
            });
        Some(PodTemplate {
            cluster: config.cluster.clone(),
            namespace: session.namespace(),
            image: session.session_image.clone().unwrap_or_default(),
            service_account: session.session_service_account.clone(),
            proxy_port: session.session_proxy_port,
            model_secret: session.session_model_secret.clone(),
            upstream: config.api.upstream().to_owned(),
            proxy_args,
            default_budget_usd: config.budget_usd,
            shell_args,
            guard_config,
        })
    }
}

/// One hold order, with what the pod needs of its task.
#[derive(Debug, Clone, Copy)]
pub struct Hold<'a> {
    pub request: &'a RequestId,
    pub engineer: &'a str,
    pub expires_at: Timestamp,
    pub budget_usd: Option<f64>,
    pub tools: &'a [Tool],
}

/// `time` as RFC 3339, as the pod's annotations and arguments carry it.
pub fn rfc3339(time: Timestamp) -> String {
    time.format(&Rfc3339)
        .unwrap_or_else(|_| time.unix_timestamp().to_string())
}

/// The pod of `hold`, made at `now`.
pub fn pod(template: &PodTemplate, hold: &Hold<'_>, now: Timestamp) -> Pod {
    let name = names::session_pod_name(hold.request);
    let expires = rfc3339(hold.expires_at);
    let deadline = (hold.expires_at - now).whole_seconds().max(1);
    let labels = BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), APP_NAME.to_owned()),
        (
            "app.kubernetes.io/part-of".to_owned(),
            "claude-warroom".to_owned(),
        ),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "warroom-runner".to_owned(),
        ),
        (
            REQUEST_ANNOTATION.to_owned(),
            names::kube_label_value(hold.request),
        ),
        (CLUSTER_LABEL.to_owned(), template.cluster.to_string()),
    ]);
    let annotations = BTreeMap::from([
        (REQUEST_ANNOTATION.to_owned(), hold.request.to_string()),
        (ENGINEER_ANNOTATION.to_owned(), hold.engineer.to_owned()),
        (EXPIRES_ANNOTATION.to_owned(), expires.clone()),
    ]);
    let empty = |name: &str| Volume {
        name: name.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    };
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(template.namespace.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            service_account_name: Some(template.service_account.clone()),
            // The session's kubectl reads the cluster with this (read-only) account's token.
            automount_service_account_token: Some(true),
            restart_policy: Some("Never".to_owned()),
            active_deadline_seconds: Some(deadline),
            enable_service_links: Some(false),
            termination_grace_period_seconds: Some(i64::from(GRACE_SECS)),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".to_owned(),
                    ..SeccompProfile::default()
                }),
                ..PodSecurityContext::default()
            }),
            containers: vec![
                proxy_container(template, hold, &expires),
                session_container(template, hold, &expires),
            ],
            volumes: Some(vec![
                Volume {
                    name: "model-key".to_owned(),
                    secret: Some(SecretVolumeSource {
                        secret_name: Some(template.model_secret.clone()),
                        default_mode: Some(0o444),
                        ..SecretVolumeSource::default()
                    }),
                    ..Volume::default()
                },
                empty("proxy-tmp"),
                empty("session-home"),
                empty("session-tmp"),
            ]),
            ..PodSpec::default()
        }),
        status: None,
    }
}

/// `name=value` pairs as a container's environment.
fn env(pairs: &[(&str, &str)]) -> Vec<EnvVar> {
    pairs
        .iter()
        .map(|(name, value)| EnvVar {
            name: (*name).to_owned(),
            value: Some((*value).to_owned()),
            ..EnvVar::default()
        })
        .collect()
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

/// The `model-proxy` container: the key (its Secret mounted here only), the budget, the
/// runner's upstream and prices, on the pod's loopback until the session's end.
fn proxy_container(template: &PodTemplate, hold: &Hold<'_>, expires: &str) -> Container {
    let budget = hold.budget_usd.unwrap_or(template.default_budget_usd);
    let mut args = vec![
        "warroom-runner".to_owned(),
        "model-proxy".to_owned(),
        "--listen".to_owned(),
        format!("127.0.0.1:{}", template.proxy_port),
        "--until".to_owned(),
        expires.to_owned(),
        "--budget-usd".to_owned(),
        budget.to_string(),
    ];
    args.extend(template.proxy_args.iter().cloned());
    Container {
        name: "model-proxy".to_owned(),
        image: Some(template.image.clone()),
        args: Some(args),
        env: Some(env(&[
            ("ANTHROPIC_BASE_URL", &template.upstream),
            (
                "ANTHROPIC_API_KEY_FILE",
                &format!("{MODEL_KEY_DIR}/{MODEL_KEY}"),
            ),
        ])),
        volume_mounts: Some(vec![
            mount("model-key", MODEL_KEY_DIR, true),
            mount("proxy-tmp", "/tmp", false),
        ]),
        resources: Some(resources(("50m", "64Mi"), ("500m", "256Mi"))),
        security_context: Some(container_security()),
        ..Container::default()
    }
}

/// The `session` container engineers exec into: the guard hooks, the tool rules and the
/// `claude` wrapper of `session-shell`, the proxy's address and a placeholder key.
fn session_container(template: &PodTemplate, hold: &Hold<'_>, expires: &str) -> Container {
    let tools: Vec<&str> = hold.tools.iter().map(|t| t.as_str()).collect();
    let mut args = vec![
        "warroom-runner".to_owned(),
        "session-shell".to_owned(),
        "--home".to_owned(),
        SESSION_HOME.to_owned(),
        "--until".to_owned(),
        expires.to_owned(),
        "--tools".to_owned(),
        tools.join(","),
    ];
    args.extend(template.shell_args.iter().cloned());
    let proxy_url = format!("http://127.0.0.1:{}", template.proxy_port);
    let request = hold.request.to_string();
    let mut vars = env(&[
        ("HOME", SESSION_HOME),
        ("PATH", "/session/bin:/usr/local/bin:/usr/bin:/bin"),
        ("ANTHROPIC_BASE_URL", &proxy_url),
        ("ANTHROPIC_API_KEY", crate::proxy::PLACEHOLDER_KEY),
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
        ("DISABLE_AUTOUPDATER", "1"),
        ("WARROOM_SESSION", &request),
    ]);
    if let Some(text) = &template.guard_config {
        vars.extend(env(&[(crate::pod_programs::GUARD_CONFIG_TEXT_ENV, text)]));
    }
    Container {
        name: "session".to_owned(),
        image: Some(template.image.clone()),
        args: Some(args),
        env: Some(vars),
        volume_mounts: Some(vec![
            mount("session-home", SESSION_HOME, false),
            mount("session-tmp", "/tmp", false),
        ]),
        resources: Some(resources(("100m", "256Mi"), ("1", "1Gi"))),
        security_context: Some(container_security()),
        ..Container::default()
    }
}

/// What every container of a session pod may not do.
fn container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            ..Capabilities::default()
        }),
        ..SecurityContext::default()
    }
}

/// Requests and limits, each `(cpu, memory)`.
fn resources(requests: (&str, &str), limits: (&str, &str)) -> ResourceRequirements {
    let map = |(cpu, memory): (&str, &str)| {
        BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.to_owned())),
            ("memory".to_owned(), Quantity(memory.to_owned())),
        ])
    };
    ResourceRequirements {
        requests: Some(map(requests)),
        limits: Some(map(limits)),
        ..ResourceRequirements::default()
    }
}

/// How an order ended, as its report says.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub phase: PodPhase,
    pub error: Option<String>,
}

impl Answer {
    fn ok(phase: PodPhase) -> Answer {
        Answer { phase, error: None }
    }

    fn failed(error: impl Into<String>) -> Answer {
        Answer {
            phase: PodPhase::Failed,
            error: Some(error.into()),
        }
    }
}

/// The runner's session pods: the template and the API they are made through.
pub struct SessionPods {
    template: PodTemplate,
    /// The pods API of the session namespace, or why there is none (the client could not be
    /// built; each hold then fails with that reason).
    api: Result<Api<Pod>, String>,
}

impl std::fmt::Debug for SessionPods {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionPods")
            .field("template", &self.template)
            .field("api", &self.api.as_ref().map(|_| "pods"))
            .finish()
    }
}

impl SessionPods {
    /// The session pods of a runner started with `--session-pods` (`None` without), with a
    /// Kubernetes client from `--kubeconfig` when given, else the in-cluster configuration.
    pub async fn connect(config: &Config) -> Option<SessionPods> {
        let template = PodTemplate::from_config(config)?;
        let api = client(config.kubeconfig.as_deref())
            .await
            .map(|client| Api::namespaced(client, &template.namespace));
        match &api {
            Ok(_) => {
                info!(namespace = %template.namespace, image = %template.image, "holding session pods")
            }
            Err(e) => {
                warn!(cause = %e, "cannot reach Kubernetes: every session pod will fail")
            }
        }
        Some(SessionPods { template, api })
    }

    /// Creates the pod of `hold`; an existing pod of the same request is held already.
    pub async fn hold(&self, hold: &Hold<'_>, stop: &CancellationToken) -> Answer {
        let name = names::session_pod_name(hold.request);
        if warroom_proto::now() >= hold.expires_at {
            return Answer::failed(EXPIRED);
        }
        let api = match &self.api {
            Ok(api) => api,
            Err(e) => return Answer::failed(format!("cannot reach Kubernetes: {e}")),
        };
        let pod = pod(&self.template, hold, warroom_proto::now());
        let params = PostParams::default();
        let created = retrying(stop, || api.create(&params, &pod)).await;
        match created {
            Ok(_) => {
                info!(pod = %name, namespace = %self.template.namespace, "session pod created");
                Answer::ok(PodPhase::Held)
            }
            Err(kube::Error::Api(status)) if status.is_already_exists() => {
                match retrying(stop, || api.get(&name)).await {
                    Ok(existing) => {
                        let owner = existing
                            .metadata
                            .annotations
                            .as_ref()
                            .and_then(|a| a.get(REQUEST_ANNOTATION));
                        if owner.map(String::as_str) == Some(hold.request.as_str()) {
                            info!(pod = %name, "the session pod exists already");
                            Answer::ok(PodPhase::Held)
                        } else {
                            Answer::failed(format!(
                                "a pod named {name} already exists in namespace {} and belongs \
                                 to another request",
                                self.template.namespace
                            ))
                        }
                    }
                    Err(e) => Answer::failed(format!("pod {name}: {}", api_message(&e))),
                }
            }
            Err(e) => Answer::failed(format!(
                "cannot create pod {name} in namespace {}: {}",
                self.template.namespace,
                api_message(&e)
            )),
        }
    }

    /// Deletes the pod of session `request`; one already gone is removed too.
    pub async fn release(&self, request: &RequestId, stop: &CancellationToken) -> Answer {
        let name = names::session_pod_name(request);
        let api = match &self.api {
            Ok(api) => api,
            Err(e) => return Answer::failed(format!("cannot reach Kubernetes: {e}")),
        };
        match delete(api, &name, stop).await {
            Ok(()) => {
                info!(pod = %name, "session pod deleted");
                Answer::ok(PodPhase::Removed)
            }
            Err(e) => Answer::failed(format!(
                "cannot delete pod {name} (its own deadline still ends it): {}",
                api_message(&e)
            )),
        }
    }

    /// Deletes every session pod of this cluster whose end has passed (or says none), and
    /// returns the requests of those deleted, where the pod names one.
    async fn sweep_once(
        &self,
        stop: &CancellationToken,
    ) -> Result<Vec<(RequestId, String)>, String> {
        let api = self.api.as_ref().map_err(Clone::clone)?;
        let selector = format!(
            "app.kubernetes.io/name={APP_NAME},{CLUSTER_LABEL}={}",
            self.template.cluster
        );
        let params = ListParams::default().labels(&selector);
        let pods = retrying(stop, || api.list(&params))
            .await
            .map_err(|e| format!("cannot list session pods: {}", api_message(&e)))?;
        let now = warroom_proto::now();
        let mut removed = Vec::new();
        for pod in pods.items {
            let Some(name) = pod.metadata.name.clone() else {
                continue;
            };
            let annotations = pod.metadata.annotations.unwrap_or_default();
            let expires = annotations
                .get(EXPIRES_ANNOTATION)
                .and_then(|text| Timestamp::parse(text, &Rfc3339).ok());
            if expires.is_some_and(|at| at > now) {
                continue;
            }
            match delete(api, &name, stop).await {
                Ok(()) => {
                    info!(pod = %name, "expired session pod deleted");
                    match annotations
                        .get(REQUEST_ANNOTATION)
                        .and_then(|id| id.parse::<RequestId>().ok())
                    {
                        Some(request) => removed.push((request, name)),
                        None => warn!(pod = %name, "the deleted session pod names no request"),
                    }
                }
                Err(e) => {
                    warn!(pod = %name, cause = %api_message(&e), "cannot delete an expired session pod")
                }
            }
        }
        Ok(removed)
    }
}

/// A Kubernetes client: from the kubeconfig files at `kubeconfig` (merged, as kubectl reads
/// `KUBECONFIG`), else the in-cluster configuration or the default kubeconfig.
async fn client(kubeconfig: Option<&std::path::Path>) -> Result<kube::Client, String> {
    let config = match kubeconfig {
        Some(paths) => {
            let mut merged: Option<kube::config::Kubeconfig> = None;
            for path in std::env::split_paths(paths) {
                let file = kube::config::Kubeconfig::read_from(&path)
                    .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?;
                merged = Some(match merged {
                    None => file,
                    Some(earlier) => earlier.merge(file).map_err(|e| e.to_string())?,
                });
            }
            let merged = merged.ok_or("--kubeconfig names no file")?;
            kube::Config::from_custom_kubeconfig(
                merged,
                &kube::config::KubeConfigOptions::default(),
            )
            .await
            .map_err(|e| e.to_string())?
        }
        None => kube::Config::infer().await.map_err(|e| e.to_string())?,
    };
    kube::Client::try_from(config).map_err(|e| e.to_string())
}

/// Deletes pod `name` with a short grace period; `Ok` when it is gone already.
async fn delete(api: &Api<Pod>, name: &str, stop: &CancellationToken) -> Result<(), kube::Error> {
    let params = DeleteParams {
        grace_period_seconds: Some(GRACE_SECS),
        ..DeleteParams::default()
    };
    match retrying(stop, || api.delete(name, &params)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

/// `call`, tried again with backoff while it fails on the server's side (5xx, 429) or on the
/// way there, at most [`API_RETRIES`] more times and not past shutdown.
async fn retrying<T, F, Fut>(stop: &CancellationToken, call: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    call.retry(retry::backoff(
        Duration::from_millis(200),
        Duration::from_secs(3),
        API_RETRIES,
    ))
    .sleep(retry::until(stop.clone()))
    .when(|e| transient(e) && !stop.is_cancelled())
    .notify(
        |e, pause| warn!(cause = %api_message(e), ?pause, "Kubernetes API call failed; retrying"),
    )
    .await
}

/// Whether a failed call is worth another try.
fn transient(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => status.code >= 500 || status.code == 429,
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// What the API said: its own message for a refusal, the error chain otherwise.
fn api_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
        other => Chain(other).to_string(),
    }
}

/// The report of an order about session `request`'s pod.
pub fn report(cluster: &ClusterName, request: &RequestId, answer: Answer) -> PodReport {
    PodReport {
        request_id: request.clone(),
        cluster: cluster.clone(),
        pod: names::session_pod_name(request),
        phase: answer.phase,
        error: answer.error,
        at: warroom_proto::now(),
    }
}

/// The deduplication id of a pod report: one per report (a redelivered order is answered
/// again), the same for every retry of its publication.
pub fn report_id(report: &PodReport) -> String {
    format!(
        "{}/{}/pod/{}/{}",
        report.request_id,
        report.cluster,
        report.phase.as_str(),
        report.at.unix_timestamp_nanos()
    )
}

/// The sweep: at start and every [`SWEEP_EVERY`] until `stop`, deletes the expired session
/// pods of this cluster and reports each `removed`.
pub async fn sweep(pods: Arc<SessionPods>, bus: Bus, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(SWEEP_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let removed = match pods.sweep_once(&stop).await {
            Ok(removed) => removed,
            Err(e) => {
                warn!(cause = %e, "cannot sweep expired session pods; trying again later");
                continue;
            }
        };
        for (request, _) in removed {
            let report = report(
                &pods.template.cluster,
                &request,
                Answer::ok(PodPhase::Removed),
            );
            publish(&bus, report, &stop).await;
        }
    }
}

/// Publishes a report of the sweep, retrying until NATS stores it or shutdown.
async fn publish(bus: &Bus, report: PodReport, stop: &CancellationToken) {
    let subject = Subject::Result(report.request_id.clone(), report.cluster.clone());
    let id = report_id(&report);
    let message = RunnerReport::SessionPod(report);
    let published = (|| bus.publish(&subject, Some(&id), &message))
        .retry(retry::backoff(
            Duration::from_millis(250),
            Duration::from_secs(5),
            10,
        ))
        .sleep(retry::until(stop.clone()))
        .when(|_| !stop.is_cancelled())
        .await;
    if let Err(e) = published {
        warn!(cause = %Chain(&e), report = %id, "cannot report a swept session pod");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> PodTemplate {
        PodTemplate {
            cluster: "prod-cluster-1".parse().expect("cluster"),
            namespace: "warroom".to_owned(),
            image: "registry.example/warroom:1".to_owned(),
            service_account: "warroom-session".to_owned(),
            proxy_port: 8787,
            model_secret: "warroom-model".to_owned(),
            upstream: "https://api.anthropic.com".to_owned(),
            proxy_args: vec!["--price-opus".to_owned(), "15/75".to_owned()],
            default_budget_usd: 5.0,
            shell_args: vec![
                "--claude-bin".to_owned(),
                "/usr/local/bin/claude".to_owned(),
            ],
            guard_config: None,
        }
    }

    fn container<'a>(pod: &'a Pod, name: &str) -> &'a Container {
        pod.spec
            .as_ref()
            .expect("spec")
            .containers
            .iter()
            .find(|c| c.name == name)
            .expect("the container")
    }

    fn env<'a>(container: &'a Container, name: &str) -> Option<&'a str> {
        container
            .env
            .iter()
            .flatten()
            .find(|e| e.name == name)
            .and_then(|e| e.value.as_deref())
    }

    #[test]
    fn the_pod_is_named_labelled_and_bounded_by_the_session() {
        let request: RequestId = "inc-42".parse().expect("id");
        let now = Timestamp::UNIX_EPOCH + time::Duration::hours(1);
        let hold = Hold {
            request: &request,
            engineer: "jane",
            expires_at: now + time::Duration::minutes(30),
            budget_usd: Some(2.5),
            tools: &[Tool::Bash, Tool::Read],
        };
        let pod = pod(&template(), &hold, now);
        let meta = &pod.metadata;
        assert_eq!(meta.name.as_deref(), Some("warroom-session-inc-42"));
        assert_eq!(meta.namespace.as_deref(), Some("warroom"));
        let labels = meta.labels.as_ref().expect("labels");
        assert_eq!(labels["app.kubernetes.io/name"], "warroom-session");
        assert_eq!(labels["warroom.io/request-id"], "inc-42");
        assert_eq!(labels["warroom.io/cluster"], "prod-cluster-1");
        let annotations = meta.annotations.as_ref().expect("annotations");
        assert_eq!(annotations["warroom.io/engineer"], "jane");
        assert_eq!(annotations["warroom.io/expires-at"], "1970-01-01T01:30:00Z");

        let spec = pod.spec.as_ref().expect("spec");
        assert_eq!(spec.active_deadline_seconds, Some(1800));
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(spec.automount_service_account_token, Some(true));
        assert_eq!(spec.enable_service_links, Some(false));
        assert_eq!(spec.termination_grace_period_seconds, Some(5));
        for c in &spec.containers {
            let security = c.security_context.as_ref().expect("security context");
            assert_eq!(security.allow_privilege_escalation, Some(false));
            assert_eq!(security.read_only_root_filesystem, Some(true));
            assert!(c.resources.is_some());
        }

        let proxy = container(&pod, "model-proxy");
        let args = proxy.args.as_ref().expect("args");
        assert_eq!(
            args[..6],
            [
                "warroom-runner",
                "model-proxy",
                "--listen",
                "127.0.0.1:8787",
                "--until",
                "1970-01-01T01:30:00Z"
            ]
        );
        assert!(args.windows(2).any(|w| w == ["--budget-usd", "2.5"]));
        assert_eq!(
            env(proxy, "ANTHROPIC_API_KEY_FILE"),
            Some("/etc/warroom/model/api-key")
        );

        // The engineer's container has no key and no way to the Secret.
        let session = container(&pod, "session");
        let args = session.args.as_ref().expect("args");
        assert!(args.windows(2).any(|w| w == ["--tools", "bash,read"]));
        assert_eq!(env(session, "ANTHROPIC_API_KEY"), Some("warroom-proxy"));
        assert_eq!(
            env(session, "ANTHROPIC_BASE_URL"),
            Some("http://127.0.0.1:8787")
        );
        assert_eq!(env(session, "ANTHROPIC_API_KEY_FILE"), None);
        assert!(
            session
                .volume_mounts
                .iter()
                .flatten()
                .all(|m| m.name != "model-key")
        );
    }

    #[test]
    fn a_hold_without_budget_gets_the_runners_and_a_late_one_a_second() {
        let request: RequestId = "inc-43".parse().expect("id");
        let now = Timestamp::UNIX_EPOCH + time::Duration::hours(1);
        let hold = Hold {
            request: &request,
            engineer: "jane",
            expires_at: now - time::Duration::seconds(3),
            budget_usd: None,
            tools: &[Tool::Bash],
        };
        let pod = pod(&template(), &hold, now);
        assert_eq!(
            pod.spec.as_ref().expect("spec").active_deadline_seconds,
            Some(1)
        );
        let args = container(&pod, "model-proxy").args.clone().expect("args");
        assert!(args.windows(2).any(|w| w == ["--budget-usd", "5"]));
    }
}
