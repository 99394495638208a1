//! The ConfigMap surface (the design's option 3): one ConfigMap per request in
//! `--configmap-namespace`, with `status.json` and `summary.md`, replaced at each transition
//! and deleted `--configmap-retention` after the request ended.
//!
//! Operators read it with `kubectl get cm -l app.kubernetes.io/part-of=claude-warroom` and
//! `kubectl describe cm`. Each write is a server-side apply of the whole object by the field
//! manager `warroom-publisher`: one call, idempotent, creating the ConfigMap the first time.
//! Everything in it passes the redactor, and its data is capped at `--configmap-max-bytes`
//! (well under the API's 1 MiB per object), the cut marked. The garbage collection runs
//! beside the surface, in the replica that holds the publisher lease.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};

use time::format_description::well_known::Rfc3339;
use tracing::{debug, error, info, warn};
use warroom_proto::{RequestId, RequestStatus, names};
use warroom_runtime::Bus;
use warroom_runtime::config::Problems;
use warroom_runtime::shutdown::CancellationToken;

use super::{Context, Failure, Limits, Shown, Surface};
use crate::metrics::Metrics;
use crate::{redact, render};

/// Every ConfigMap of ours carries these labels.
pub const PART_OF: (&str, &str) = ("app.kubernetes.io/part-of", "claude-warroom");
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "warroom-publisher");
/// The request's id as a label value (shortened with a hash when it cannot be one as it is);
/// the full id is in the annotation of the same name.
pub const REQUEST_LABEL: &str = "warroom.io/request-id";
pub const PHASE_LABEL: &str = "warroom.io/phase";
/// When the request reached its final phase (RFC 3339): the retention counts from it.
pub const FINISHED_AT: &str = "warroom.io/finished-at";
/// The status revision shown.
pub const REVISION: &str = "warroom.io/revision";
/// Set to `true` when the data was cut to fit `--configmap-max-bytes`.
pub const TRUNCATED: &str = "warroom.io/truncated";
/// The field manager of the server-side applies.
const MANAGER: &str = "warroom-publisher";
/// The smallest `--configmap-max-bytes`: room for a status without its clusters.
const MIN_BYTES: u64 = 4096;
/// The largest `--configmap-max-bytes`: the API refuses objects over 1 MiB, metadata included.
const MAX_BYTES: u64 = 900 * 1024;

/// The ConfigMap surface's command line and environment.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigMapArgs {
    /// Keep one ConfigMap per request in this Kubernetes namespace (`warroom-<id>`, labelled
    /// `app.kubernetes.io/part-of=claude-warroom`), with `status.json` and `summary.md`,
    /// updated at each transition. Off when unset. Needs the RBAC of
    /// `deploy/components/publisher-configmaps`.
    #[arg(long, env = "WARROOM_CONFIGMAP_NAMESPACE", value_name = "NS")]
    pub configmap_namespace: Option<String>,

    /// The kubeconfig file to reach the API server with. Default: the in-cluster service
    /// account, else `KUBECONFIG` or `~/.kube/config`.
    #[arg(long, env = "WARROOM_CONFIGMAP_KUBECONFIG", value_name = "FILE")]
    pub configmap_kubeconfig: Option<PathBuf>,

    /// The most bytes of data one ConfigMap holds (`status.json` and `summary.md`); what does
    /// not fit is cut and marked (annotation `warroom.io/truncated`). 4096 to 921600.
    #[arg(long, env = "WARROOM_CONFIGMAP_MAX_BYTES", default_value_t = 256 * 1024)]
    pub configmap_max_bytes: u64,

    /// How long a finished request's ConfigMap is kept, counted from its final phase
    /// (annotation `warroom.io/finished-at`); then the publisher deletes it.
    #[arg(long, env = "WARROOM_CONFIGMAP_RETENTION", default_value = "7d", value_parser = warroom_runtime::parse_duration)]
    pub configmap_retention: Duration,
}

/// The checked ConfigMap settings.
#[derive(Clone)]
pub struct ConfigMapSettings {
    namespace: String,
    /// The kubeconfig read at start; it may hold tokens, so it is never printed.
    kubeconfig: Option<kube::config::Kubeconfig>,
    kubeconfig_path: Option<PathBuf>,
    max_bytes: usize,
    retention: Duration,
}

impl std::fmt::Debug for ConfigMapSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.summary())
    }
}

impl ConfigMapArgs {
    /// The ConfigMap settings, `None` when the surface is off or a value is refused (noted
    /// in `problems`). Reads the kubeconfig file, if one is given.
    pub(crate) fn settings(&self, problems: &mut Problems) -> Option<Arc<ConfigMapSettings>> {
        let Some(namespace) = &self.configmap_namespace else {
            if self.configmap_kubeconfig.is_some() {
                problems.push("--configmap-kubeconfig needs --configmap-namespace");
            }
            return None;
        };
        if !is_dns_label(namespace) {
            problems.push(format!(
                "--configmap-namespace `{namespace}` is not a namespace name; expected 1 to 63 \
                 lowercase letters, digits or `-`, starting and ending with a letter or digit"
            ));
        }
        if !(MIN_BYTES..=MAX_BYTES).contains(&self.configmap_max_bytes) {
            problems.push(format!(
                "--configmap-max-bytes {} is out of range; expected {MIN_BYTES} to {MAX_BYTES}",
                self.configmap_max_bytes
            ));
        }
        if self.configmap_retention < Duration::from_secs(1) {
            problems.push(format!(
                "--configmap-retention {:?} is shorter than 1s",
                self.configmap_retention
            ));
        }
        let kubeconfig = match &self.configmap_kubeconfig {
            None => None,
            Some(path) => problems.check(kube::config::Kubeconfig::read_from(path).map_err(|e| {
                format!(
                    "--configmap-kubeconfig {}: cannot read it as a kubeconfig ({e})",
                    path.display()
                )
            })),
        };
        Some(Arc::new(ConfigMapSettings {
            namespace: namespace.clone(),
            kubeconfig,
            kubeconfig_path: self.configmap_kubeconfig.clone(),
            max_bytes: usize::try_from(self.configmap_max_bytes).unwrap_or(usize::MAX),
            retention: self.configmap_retention,
        }))
    }
}

impl ConfigMapSettings {
    /// For `--check` and the start log.
    pub(crate) fn summary(&self) -> String {
        format!(
            "ConfigMaps in namespace {} ({}, kept {} after the end)",
            self.namespace,
            match &self.kubeconfig_path {
                Some(path) => format!("kubeconfig {}", path.display()),
                None => "in-cluster or KUBECONFIG".to_owned(),
            },
            humantime::format_duration(self.retention)
        )
    }

    async fn client(&self) -> Result<kube::Client, String> {
        let config = match &self.kubeconfig {
            Some(kubeconfig) => kube::Config::from_custom_kubeconfig(
                kubeconfig.clone(),
                &kube::config::KubeConfigOptions::default(),
            )
            .await
            .map_err(|e| e.to_string())?,
            None => kube::Config::infer().await.map_err(|e| e.to_string())?,
        };
        kube::Client::try_from(config).map_err(|e| e.to_string())
    }
}

/// Starts the ConfigMap surface and its garbage collection in `tasks`, until `stop`.
pub(crate) fn spawn(
    tasks: &mut tokio::task::JoinSet<()>,
    bus: &Bus,
    settings: Arc<ConfigMapSettings>,
    metrics: &Arc<Metrics>,
    limits: Limits,
    stop: &CancellationToken,
) {
    let (bus, metrics, stop) = (bus.clone(), metrics.clone(), stop.clone());
    tasks.spawn(async move {
        let client = match settings.client().await {
            Ok(client) => client,
            Err(e) => {
                error!(surface = ConfigMaps::NAME, cause = %e, "cannot reach Kubernetes: no ConfigMaps; git publishing goes on");
                return;
            }
        };
        let surface = ConfigMaps {
            api: Api::namespaced(client, &settings.namespace),
            settings,
        };
        let gc = collect_garbage(surface.api.clone(), surface.settings.retention, metrics.clone(), stop.clone());
        let shown = super::run(&bus, Arc::new(surface), metrics, limits, stop);
        let ((), shown) = tokio::join!(gc, shown);
        if let Err(e) = shown {
            error!(surface = ConfigMaps::NAME, cause = %warroom_runtime::Chain(&e), "the surface stopped; git publishing goes on");
        }
    });
}

/// The ConfigMap surface at work.
pub struct ConfigMaps {
    api: Api<ConfigMap>,
    settings: Arc<ConfigMapSettings>,
}

impl Surface for ConfigMaps {
    const NAME: &'static str = "configmap";

    async fn show(&self, status: &RequestStatus, _: &mut Context) -> Result<Shown, Failure> {
        let map = config_map(status, self.settings.max_bytes);
        let name = map.metadata.name.clone().unwrap_or_default();
        let params = PatchParams::apply(MANAGER).force();
        self.api
            .patch(&name, &params, &Patch::Apply(&map))
            .await
            .map_err(|e| failure(&name, e))?;
        debug!(surface = Self::NAME, request = %status.id, configmap = %name, "ConfigMap written");
        Ok(Shown::Done)
    }
}

/// Whether the API's refusal is worth another try.
fn failure(name: &str, error: kube::Error) -> Failure {
    let reason = format!("ConfigMap {name}: {error}");
    match &error {
        kube::Error::Api(status)
            if !(status.code == 409 || status.code == 429 || status.code >= 500) =>
        {
            Failure::Permanent(reason)
        }
        _ => Failure::retry(reason),
    }
}

/// Deletes, every so often until `stop`, the ConfigMaps of requests that ended longer than
/// `retention` ago.
async fn collect_garbage(
    api: Api<ConfigMap>,
    retention: Duration,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let every = (retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    loop {
        match collect_once(&api, retention).await {
            Ok(0) => {}
            Ok(deleted) => {
                metrics.configmaps_collected.inc_by(deleted);
                info!(
                    surface = ConfigMaps::NAME,
                    deleted, "old ConfigMaps deleted"
                );
            }
            Err(e) => {
                metrics.configmap_gc_failures.inc();
                warn!(surface = ConfigMaps::NAME, cause = %e, "cannot collect old ConfigMaps; trying again later");
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// One round of garbage collection: how many ConfigMaps it deleted.
async fn collect_once(api: &Api<ConfigMap>, retention: Duration) -> Result<u64, kube::Error> {
    let selector = format!(
        "{}={},{}={}",
        PART_OF.0, PART_OF.1, MANAGED_BY.0, MANAGED_BY.1
    );
    let list = api.list(&ListParams::default().labels(&selector)).await?;
    let now = warroom_proto::now();
    let mut deleted = 0;
    for map in list.items {
        let finished = map
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(FINISHED_AT))
            .and_then(|at| time::OffsetDateTime::parse(at, &Rfc3339).ok());
        let (Some(finished), Some(name)) = (finished, map.metadata.name.as_deref()) else {
            continue;
        };
        if now - finished < retention {
            continue;
        }
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => deleted += 1,
            Err(kube::Error::Api(status)) if status.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}

/// The ConfigMap showing `status`, its data at most `max_bytes`.
pub fn config_map(status: &RequestStatus, max_bytes: usize) -> ConfigMap {
    let (data, truncated) = data(status, max_bytes);
    let labels = BTreeMap::from([
        (PART_OF.0.to_owned(), PART_OF.1.to_owned()),
        (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
        (REQUEST_LABEL.to_owned(), label_value(&status.id)),
        (PHASE_LABEL.to_owned(), status.phase.as_str().to_owned()),
    ]);
    let mut annotations = BTreeMap::from([
        (REQUEST_LABEL.to_owned(), status.id.to_string()),
        (REVISION.to_owned(), status.revision.to_string()),
    ]);
    if status.phase.is_final() {
        let at = status
            .updated_at
            .format(&Rfc3339)
            .unwrap_or_else(|_| status.updated_at.to_string());
        annotations.insert(FINISHED_AT.to_owned(), at);
    }
    if truncated {
        annotations.insert(TRUNCATED.to_owned(), "true".to_owned());
    }
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name(&status.id)),
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        data: Some(data),
        ..ConfigMap::default()
    }
}

/// `status.json` and `summary.md`, redacted, together at most `max_bytes`; `true` when
/// something was cut. The status keeps its shape: when it does not fit in three quarters of
/// the budget its clusters are left out (`clusters_omitted` counts them); the summary gets
/// what is left, cut with a marker.
fn data(status: &RequestStatus, max_bytes: usize) -> (BTreeMap<String, String>, bool) {
    let mut truncated = false;
    let mut json = serde_json::to_value(status).unwrap_or_default();
    redact::json(&mut json);
    let mut status_text = serde_json::to_string_pretty(&json).unwrap_or_default();
    if status_text.len() > max_bytes / 4 * 3 {
        truncated = true;
        if let Some(object) = json.as_object_mut() {
            object.insert("clusters".to_owned(), serde_json::json!({}));
            object.insert(
                "clusters_omitted".to_owned(),
                serde_json::json!(status.clusters.len()),
            );
            for long in ["error", "errors", "notices"] {
                if let Some(value) = object.get_mut(long) {
                    let text = value.to_string();
                    if text.len() > max_bytes / 8 {
                        *value = serde_json::json!(format!(
                            "[omitted: {} bytes did not fit in the ConfigMap]",
                            text.len()
                        ));
                    }
                }
            }
        }
        status_text = serde_json::to_string(&json).unwrap_or_default();
    }
    let summary = render::readme(status, None, &BTreeMap::new(), None, None);
    let room = max_bytes.saturating_sub(status_text.len());
    let cut = redact::truncate(&summary, room);
    truncated |= cut.len() < summary.len();
    let summary = cut.into_owned();
    (
        BTreeMap::from([
            (render::STATUS_FILE.to_owned(), status_text),
            ("summary.md".to_owned(), summary),
        ]),
        truncated,
    )
}

/// The ConfigMap's name: `warroom-<id>` ([`names::kube_name`]).
pub fn name(id: &RequestId) -> String {
    names::kube_name("warroom", id)
}

/// The request id as a label value ([`names::kube_label_value`]).
pub fn label_value(id: &RequestId) -> String {
    names::kube_label_value(id)
}

/// A DNS-1123 label: what a namespace name must be.
fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> RequestId {
        text.parse().expect("a request id")
    }

    /// DNS-1123 subdomain, as the API server checks a ConfigMap's name: at most 253
    /// characters, dot-separated parts of lowercase letters, digits and `-`, each starting
    /// and ending with a letter or digit (no 63-character limit per part).
    fn is_dns_subdomain(name: &str) -> bool {
        name.len() <= 253
            && name.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && part.starts_with(|c: char| c.is_ascii_alphanumeric())
                    && part.ends_with(|c: char| c.is_ascii_alphanumeric())
            })
    }

    #[test]
    fn names_are_valid_deterministic_and_distinct() {
        let ids = [
            "2026-12-07-etcd",
            "Etcd_Latency",
            "etcd-latency",
            "etcd_latency",
            "r-",
            &"A".repeat(128),
        ];
        let names: Vec<String> = ids.iter().map(|i| name(&id(i))).collect();
        assert_eq!(names[0], "warroom-2026-12-07-etcd");
        assert_eq!(names[2], "warroom-etcd-latency");
        for (i, n) in names.iter().enumerate() {
            assert!(is_dns_subdomain(n), "{n}");
            assert_eq!(n, &name(&id(ids[i])), "deterministic");
            let label = label_value(&id(ids[i]));
            assert!(
                label.len() <= 63 && label.ends_with(|c: char| c.is_ascii_alphanumeric()),
                "{label}"
            );
        }
        let distinct: std::collections::BTreeSet<_> = names.iter().collect();
        assert_eq!(distinct.len(), names.len(), "{names:?}");
    }

    #[test]
    fn bad_settings_are_refused_with_the_flag_named() {
        let args = |ns: &str, bytes: u64, kubeconfig: Option<&str>| ConfigMapArgs {
            configmap_namespace: Some(ns.to_owned()),
            configmap_kubeconfig: kubeconfig.map(PathBuf::from),
            configmap_max_bytes: bytes,
            configmap_retention: Duration::from_secs(60),
        };
        for (args, expected) in [
            (
                args("Warroom", 8192, None),
                "--configmap-namespace `Warroom`",
            ),
            (
                args("warroom", 2 * 1024 * 1024, None),
                "--configmap-max-bytes 2097152",
            ),
            (
                args("warroom", 8192, Some("/nonexistent/kubeconfig")),
                "--configmap-kubeconfig /nonexistent/kubeconfig",
            ),
        ] {
            let mut problems = Problems::new();
            let _ = args.settings(&mut problems);
            let err = problems.finish().expect_err("refused").to_string();
            assert!(err.contains(expected), "{err}");
        }
    }
}
