//! The manifests of `deploy/`, rendered as Argo CD renders them (`kubectl kustomize`), hold
//! what the daemons need to come up and what keeps the zone safe:
//! - the gateway's policy ConfigMap is a `WarroomPolicy` the gateway's own parser accepts;
//! - every NetworkPolicy selector selects the pods it is meant for (the pod templates carry
//!   the labels), so `default-deny` does not cut the daemons off NATS;
//! - every daemon creates R3 streams on the 3-node NATS, gets every secret as a file (never
//!   an environment variable) from the Secret meant for it, the gateway a read-only git
//!   credential apart from the publisher's push credential, the publisher its signing key;
//! - NATS runs the tested version, its lame-duck mode fits the grace period, its TLS file
//!   names are those `warroom-admin nats-auth` writes, and a sidecar exports its metrics;
//! - the Argo CD project names its destinations and cluster-scoped objects, no wildcard;
//! - every alert has a `runbook_url` whose section exists in docs/deploying.md, and every
//!   metric it names is listed in deploy/METRICS.md.
//!
//! The connectivity the NetworkPolicies allow is checked by scripts/lint-deploy (nca).

mod deploy_common;

use std::collections::{BTreeMap, BTreeSet};

use deploy_common::{
    at, find, kind, name, render_deploy, runner_overlays, seq_at, str_at, workloads,
};
use serde_yaml_ng::Value;
use warroom_testkit::tools::workspace_root;

const PART_OF: (&str, &str) = ("app.kubernetes.io/part-of", "claude-warroom");

/// The control plane and every runner overlay, each with its name.
fn every_rendering() -> Vec<(String, Vec<Value>)> {
    let mut all = vec![("control-plane".to_string(), render_deploy("control-plane"))];
    for overlay in runner_overlays() {
        let docs = deploy_common::render(&overlay);
        all.push((format!("runner overlay {}", overlay.display()), docs));
    }
    all
}

#[test]
fn the_shipped_policy_is_a_warroom_policy() {
    let docs = render_deploy("control-plane");
    let config_map = find(&docs, "ConfigMap", "warroom-policy");
    let text = str_at(config_map, &["data", "policy.yaml"])
        .expect("the warroom-policy ConfigMap has a policy.yaml key");
    let policy =
        warroom_access::parse_policy("policy.yaml", text.as_bytes()).unwrap_or_else(|errors| {
            let lines: Vec<String> = errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect();
            panic!(
                "deploy/control-plane/policy.yaml is not a valid WarroomPolicy:\n{}",
                lines.join("\n")
            )
        });
    assert!(!policy.engineers.is_empty());
    // The gateway reads it where the ConfigMap is mounted.
    let gateway = container(&docs, "warroom-gateway", "gateway");
    let path = env_value(gateway, "WARROOM_POLICY").expect("the gateway has WARROOM_POLICY");
    let source = mounted_source(find(&docs, "Deployment", "warroom-gateway"), gateway, &path)
        .unwrap_or_else(|| panic!("WARROOM_POLICY {path} is on no mounted volume"));
    assert_eq!(source.kind, "configMap");
    assert!(source.name.starts_with("warroom-policy"), "{source:?}");
    assert_eq!(source.key, "policy.yaml");
}

/// A label selector (`matchLabels` and `matchExpressions` with In, NotIn, Exists,
/// DoesNotExist) against a set of labels.
fn selects(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    if let Some(match_labels) = selector.get("matchLabels").and_then(Value::as_mapping) {
        for (k, v) in match_labels {
            let (Some(k), Some(v)) = (k.as_str(), v.as_str()) else {
                return false;
            };
            if labels.get(k).map(String::as_str) != Some(v) {
                return false;
            }
        }
    }
    for expression in seq_at(selector, &["matchExpressions"]) {
        let key = str_at(expression, &["key"]).unwrap_or_default();
        let values: Vec<&str> = seq_at(expression, &["values"])
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let value = labels.get(key).map(String::as_str);
        let ok = match str_at(expression, &["operator"]).unwrap_or_default() {
            "In" => value.is_some_and(|v| values.contains(&v)),
            "NotIn" => value.is_none_or(|v| !values.contains(&v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            other => panic!("unknown selector operator {other}"),
        };
        if !ok {
            return false;
        }
    }
    true
}

fn labels_of(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_mapping)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Every way the NetworkPolicies among `docs` select no pod template of `docs`.
fn selectors_that_select_nothing(docs: &[Value]) -> Vec<String> {
    let templates: Vec<(String, BTreeMap<String, String>)> = workloads(docs)
        .map(|w| {
            (
                format!("{} {}", kind(w), name(w)),
                labels_of(at(w, &["spec", "template", "metadata", "labels"])),
            )
        })
        .collect();
    let selects_some = |selector: &Value| templates.iter().any(|(_, l)| selects(selector, l));
    let mut found = Vec::new();
    for policy in docs.iter().filter(|d| kind(d) == "NetworkPolicy") {
        let policy_name = name(policy);
        if let Some(selector) = at(policy, &["spec", "podSelector"])
            && !selects_some(selector)
        {
            found.push(format!("NetworkPolicy {policy_name}: spec.podSelector"));
        }
        for direction in ["ingress", "egress"] {
            let peers = if direction == "ingress" { "from" } else { "to" };
            for (i, rule) in seq_at(policy, &["spec", direction]).iter().enumerate() {
                for (j, peer) in seq_at(rule, &[peers]).iter().enumerate() {
                    // A peer with a namespaceSelector selects pods of other namespaces.
                    if peer.get("namespaceSelector").is_some() {
                        continue;
                    }
                    if let Some(selector) = peer.get("podSelector")
                        && !selects_some(selector)
                    {
                        found.push(format!(
                            "NetworkPolicy {policy_name}: spec.{direction}[{i}].{peers}[{j}].podSelector"
                        ));
                    }
                }
            }
        }
    }
    found
}

#[test]
fn every_network_policy_selector_selects_the_pods_it_names() {
    for (what, docs) in every_rendering() {
        for workload in workloads(&docs) {
            let labels = labels_of(at(workload, &["spec", "template", "metadata", "labels"]));
            assert_eq!(
                labels.get(PART_OF.0).map(String::as_str),
                Some(PART_OF.1),
                "{what}: the pod template of {} {} lacks {}: {}",
                kind(workload),
                name(workload),
                PART_OF.0,
                PART_OF.1
            );
        }
        let found = selectors_that_select_nothing(&docs);
        assert!(
            found.is_empty(),
            "{what}: selectors that select no pod template:\n{}",
            found.join("\n")
        );
    }
}

#[test]
fn the_selector_check_catches_a_policy_for_unlabelled_pods() {
    let docs = deploy_common::parse_documents(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: daemon}
spec:
  template:
    metadata:
      labels: {app.kubernetes.io/name: daemon}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: nats}
spec:
  podSelector:
    matchExpressions:
      - {key: app.kubernetes.io/name, operator: In, values: [daemon]}
  ingress:
    - from:
        - podSelector:
            matchLabels: {app.kubernetes.io/part-of: claude-warroom}
        - namespaceSelector: {}
"#,
    );
    assert_eq!(
        selectors_that_select_nothing(&docs),
        vec!["NetworkPolicy nats: spec.ingress[0].from[0].podSelector".to_string()]
    );
}

/// The pod spec's container of this name in the workload of this name.
fn container<'a>(docs: &'a [Value], workload: &str, container_name: &str) -> &'a Value {
    let w = workloads(docs)
        .find(|w| name(w) == workload)
        .unwrap_or_else(|| panic!("no workload {workload}"));
    seq_at(w, &["spec", "template", "spec", "containers"])
        .iter()
        .find(|c| str_at(c, &["name"]) == Some(container_name))
        .unwrap_or_else(|| panic!("{workload} has no container {container_name}"))
}

fn env_value(container: &Value, wanted: &str) -> Option<String> {
    seq_at(container, &["env"])
        .iter()
        .find(|e| str_at(e, &["name"]) == Some(wanted))
        .and_then(|e| str_at(e, &["value"]))
        .map(str::to_string)
}

/// Where a file path of a container comes from.
#[derive(Debug)]
struct Source {
    /// `secret` or `configMap`.
    kind: &'static str,
    name: String,
    key: String,
    read_only: bool,
    mode: Option<u64>,
}

/// The Secret or ConfigMap key behind `path`, through the container's volume mounts.
fn mounted_source(workload: &Value, container: &Value, path: &str) -> Option<Source> {
    let mount = seq_at(container, &["volumeMounts"]).iter().find(|m| {
        str_at(m, &["mountPath"])
            .is_some_and(|dir| path.starts_with(&format!("{}/", dir.trim_end_matches('/'))))
    })?;
    let dir = str_at(mount, &["mountPath"])?.trim_end_matches('/');
    let volume_name = str_at(mount, &["name"])?;
    let volume = seq_at(workload, &["spec", "template", "spec", "volumes"])
        .iter()
        .find(|v| str_at(v, &["name"]) == Some(volume_name))?;
    let (kind, name_key, body) = if let Some(secret) = volume.get("secret") {
        ("secret", "secretName", secret)
    } else if let Some(config_map) = volume.get("configMap") {
        ("configMap", "name", config_map)
    } else {
        return None;
    };
    Some(Source {
        kind,
        name: str_at(body, &[name_key])?.to_string(),
        key: path[dir.len() + 1..].to_string(),
        read_only: mount
            .get("readOnly")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        mode: body.get("defaultMode").and_then(Value::as_u64),
    })
}

/// Settings that name a secret file, per container: (workload, container, variable, Secret).
const SECRET_FILES: &[(&str, &str, &str, &str)] = &[
    (
        "warroom-gateway",
        "gateway",
        "WARROOM_GIT_TOKEN_FILE",
        "warroom-git-read",
    ),
    (
        "warroom-publisher",
        "publisher",
        "WARROOM_GIT_TOKEN_FILE",
        "warroom-git-push",
    ),
    (
        "warroom-publisher",
        "publisher",
        "WARROOM_SIGNING_KEY",
        "warroom-publisher-signing",
    ),
    (
        "warroom-runner",
        "runner",
        "ANTHROPIC_API_KEY_FILE",
        "warroom-model",
    ),
];

/// The NATS credentials every daemon reads as files, from its own Secret.
const NATS_FILES: &[&str] = &[
    "WARROOM_NATS_NKEY",
    "WARROOM_NATS_TLS_CA",
    "WARROOM_NATS_TLS_CERT",
    "WARROOM_NATS_TLS_KEY",
];

#[test]
fn daemons_get_secrets_as_files_and_create_r3_streams() {
    let daemons = [
        ("warroom-gateway", "gateway", "warroom-nats-gateway"),
        (
            "warroom-dispatcher",
            "dispatcher",
            "warroom-nats-dispatcher",
        ),
        ("warroom-publisher", "publisher", "warroom-nats-publisher"),
        ("warroom-runner", "runner", "warroom-nats"),
    ];
    for (what, docs) in every_rendering() {
        // No secret reaches any container as an environment variable.
        for workload in workloads(&docs) {
            for c in seq_at(workload, &["spec", "template", "spec", "containers"]) {
                let cname = str_at(c, &["name"]).unwrap_or_default();
                for e in seq_at(c, &["env"]) {
                    assert!(
                        at(e, &["valueFrom", "secretKeyRef"]).is_none(),
                        "{what}: {} container {cname}: env {} comes from a Secret; mount it as a file",
                        name(workload),
                        str_at(e, &["name"]).unwrap_or_default()
                    );
                }
                for e in seq_at(c, &["envFrom"]) {
                    assert!(
                        e.get("secretRef").is_none(),
                        "{what}: {} container {cname}: envFrom a Secret",
                        name(workload)
                    );
                }
            }
        }
        for (workload, container_name, nats_secret) in daemons {
            let Some(w) = workloads(&docs).find(|w| name(w) == workload) else {
                continue;
            };
            let c = container(&docs, workload, container_name);
            assert_eq!(
                env_value(c, "WARROOM_NATS_REPLICAS").as_deref(),
                Some("3"),
                "{what}: {workload}: WARROOM_NATS_REPLICAS must be 3 (the NATS cluster has 3 nodes)"
            );
            for variable in NATS_FILES {
                let path = env_value(c, variable)
                    .unwrap_or_else(|| panic!("{what}: {workload}: no {variable}"));
                let source = mounted_source(w, c, &path).unwrap_or_else(|| {
                    panic!("{what}: {workload}: {variable}={path} is on no mounted volume")
                });
                assert_eq!(
                    (source.kind, source.name.as_str(), source.read_only),
                    ("secret", nats_secret, true),
                    "{what}: {workload}: {variable}={path}: {source:?}"
                );
            }
        }
        for (workload, container_name, variable, secret) in SECRET_FILES {
            let Some(w) = workloads(&docs).find(|w| name(w) == *workload) else {
                continue;
            };
            let c = container(&docs, workload, container_name);
            let path = env_value(c, variable)
                .unwrap_or_else(|| panic!("{what}: {workload}: no {variable}"));
            let source = mounted_source(w, c, &path).unwrap_or_else(|| {
                panic!("{what}: {workload}: {variable}={path} is on no mounted volume")
            });
            assert_eq!(
                (source.kind, source.name.as_str(), source.read_only),
                ("secret", *secret, true),
                "{what}: {workload}: {variable}={path}: {source:?}"
            );
            // Credentials are readable by the owner (and the pod's fsGroup) only.
            let mode = source.mode.unwrap_or(0o644);
            assert_eq!(
                mode & 0o007,
                0,
                "{what}: {workload}: {secret} is mounted with mode {mode:o}"
            );
            if *variable == "WARROOM_SIGNING_KEY" {
                assert_eq!(mode, 0o400, "{what}: the signing key's mode");
            }
        }
    }
}

/// `NAME_VERSION="x"` of scripts/setup.
fn setup_pin(variable: &str) -> String {
    let text = std::fs::read_to_string(workspace_root().join("scripts/setup"))
        .expect("scripts/setup is readable");
    let prefix = format!("{variable}=\"");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix)?.strip_suffix('"'))
        .unwrap_or_else(|| panic!("scripts/setup sets no {variable}"))
        .to_string()
}

/// A duration of nats.conf (`30s`, `2m`) in seconds.
fn conf_seconds(conf: &str, key: &str) -> u64 {
    let line = conf
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{key}:")))
        .unwrap_or_else(|| panic!("nats.conf sets no {key}"));
    let value = line.split_once(':').expect("key: value").1.trim();
    let (number, unit) = value.split_at(value.len() - 1);
    let number: u64 = number
        .parse()
        .unwrap_or_else(|e| panic!("nats.conf {key}: {value}: {e}"));
    match unit {
        "s" => number,
        "m" => number * 60,
        _ => panic!("nats.conf {key}: {value}: expected seconds or minutes"),
    }
}

#[test]
fn nats_runs_the_tested_version_with_lame_duck_mode_and_an_exporter() {
    let docs = render_deploy("control-plane");
    let nats = container(&docs, "nats", "nats");
    let version = setup_pin("NATS_SERVER_VERSION");
    let image = str_at(nats, &["image"]).unwrap_or_default();
    assert!(
        image.contains(&format!(":{version}-")) || image.contains(&format!(":{version}@")),
        "the NATS image {image} is not the tested nats-server {version} (scripts/setup)"
    );

    let config = find(&docs, "ConfigMap", "nats-config");
    let conf = str_at(config, &["data", "nats.conf"]).expect("nats-config has nats.conf");
    let statefulset = find(&docs, "StatefulSet", "nats");
    let grace = at(
        statefulset,
        &["spec", "template", "spec", "terminationGracePeriodSeconds"],
    )
    .and_then(Value::as_u64)
    .unwrap_or(30);
    let lame_duck =
        conf_seconds(conf, "lame_duck_duration") + conf_seconds(conf, "lame_duck_grace_period");
    assert!(
        lame_duck < grace,
        "lame_duck_grace_period + lame_duck_duration ({lame_duck} s) must end within terminationGracePeriodSeconds ({grace} s)"
    );
    let pre_stop = serde_yaml_ng::to_string(
        at(nats, &["lifecycle", "preStop"]).expect("the nats container has a preStop hook"),
    )
    .expect("YAML");
    assert!(pre_stop.contains("ldm="), "preStop: {pre_stop}");

    // The exporter sidecar serves the JSON monitoring port as metrics, and the ServiceMonitor
    // `nats` scrapes it.
    let exporter = container(&docs, "nats", "exporter");
    let args: Vec<&str> = seq_at(exporter, &["args"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for wanted in [
        "-varz",
        "-jsz=all",
        "-connz",
        "-routez",
        "http://localhost:8222",
    ] {
        assert!(
            args.contains(&wanted),
            "exporter args {args:?} lack {wanted}"
        );
    }
    assert!(
        str_at(exporter, &["image"]).is_some_and(|i| i.contains("prometheus-nats-exporter:")),
        "{exporter:?}"
    );
    let monitor = find(&docs, "ServiceMonitor", "nats");
    let port = str_at(monitor, &["spec", "endpoints", "0", "port"]).unwrap_or_default();
    let selector = at(monitor, &["spec", "selector"]).expect("a selector");
    let scraped: Vec<&Value> = docs
        .iter()
        .filter(|d| kind(d) == "Service")
        .filter(|s| selects(selector, &labels_of(at(s, &["metadata", "labels"]))))
        .collect();
    assert!(
        !scraped.is_empty(),
        "the ServiceMonitor nats selects no Service"
    );
    for service in scraped {
        assert!(
            seq_at(service, &["spec", "ports"])
                .iter()
                .any(|p| str_at(p, &["name"]) == Some(port)
                    && str_at(p, &["targetPort"]) == Some("metrics")),
            "Service {} has no port {port} to the exporter",
            name(service)
        );
    }
}

/// nats.conf names the TLS files and the authorization include as `warroom-admin nats-auth`
/// writes them (the Secrets are made from its output), and both the client and the route
/// `tls` blocks verify.
#[test]
fn nats_conf_matches_what_warroom_admin_writes() {
    let out = tempfile::tempdir().expect("a temporary folder");
    let generated = warroom_admin::generate(&warroom_admin::Options {
        clusters: vec![warroom_proto::ClusterName::new("production-hub").expect("a cluster name")],
        out: out.path().to_path_buf(),
        tls_hosts: vec!["nats.claude-warroom.svc".to_string()],
        tls_server_dir: "/etc/nats/tls".into(),
        keep_existing: false,
        force: false,
    })
    .expect("warroom-admin nats-auth");
    let tls_conf = std::fs::read_to_string(out.path().join(warroom_admin::tls::TLS_CONF))
        .expect("nats-tls.conf");
    let docs = render_deploy("control-plane");
    let config = find(&docs, "ConfigMap", "nats-config");
    let conf = str_at(config, &["data", "nats.conf"]).expect("nats-config has nats.conf");
    for key in ["cert_file", "key_file", "ca_file"] {
        let wanted = tls_conf
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{key}:")))
            .unwrap_or_else(|| panic!("nats-tls.conf has no {key}:\n{tls_conf}"))
            .trim();
        let count = conf.lines().filter(|l| l.trim() == wanted).count();
        assert_eq!(
            count, 2,
            "nats.conf must name `{wanted}` (as warroom-admin writes it) in the client and the cluster tls blocks"
        );
    }
    assert_eq!(
        conf.lines().filter(|l| l.trim() == "verify: true").count(),
        2,
        "both tls blocks of nats.conf verify the peer's certificate"
    );
    let auth_name = generated
        .auth_conf
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a file name");
    assert!(
        conf.contains(&format!("include \"auth/{auth_name}\"")),
        "nats.conf does not include auth/{auth_name}"
    );
    // The Secrets hold those files where nats.conf looks for them.
    let statefulset = find(&docs, "StatefulSet", "nats");
    let nats = container(&docs, "nats", "nats");
    for (path, secret) in [
        ("/etc/nats/tls/server.pem", "warroom-nats-tls"),
        ("/etc/nats/tls/server-key.pem", "warroom-nats-tls"),
        ("/etc/nats/tls/ca.pem", "warroom-nats-tls"),
        (&*format!("/etc/nats/auth/{auth_name}"), "warroom-nats-auth"),
    ] {
        let source = mounted_source(statefulset, nats, path)
            .unwrap_or_else(|| panic!("{path} is on no mounted volume of nats"));
        assert_eq!(
            (source.kind, source.name.as_str()),
            ("secret", secret),
            "{path}"
        );
        assert!(
            out.path().join(&source.key).exists() || source.key == auth_name,
            "warroom-admin writes no {} (for {path})",
            source.key
        );
    }
}

/// Every `*` in the project's destinations and whitelists, and every rendered object the
/// project would refuse.
fn project_problems(project: &Value, renderings: &[(String, Vec<Value>)]) -> Vec<String> {
    let mut found = Vec::new();
    for field in [
        "destinations",
        "clusterResourceWhitelist",
        "namespaceResourceWhitelist",
    ] {
        for (i, entry) in seq_at(project, &["spec", field]).iter().enumerate() {
            let text = serde_yaml_ng::to_string(entry).unwrap_or_default();
            if text.contains('*') {
                found.push(format!("spec.{field}[{i}] has a wildcard: {}", text.trim()));
            }
        }
    }
    let group_of = |doc: &Value| {
        let api = str_at(doc, &["apiVersion"]).unwrap_or_default();
        api.rsplit_once('/')
            .map(|(g, _)| g)
            .unwrap_or("")
            .to_string()
    };
    let listed = |field: &str, group: &str, k: &str, n: Option<&str>| {
        seq_at(project, &["spec", field]).iter().any(|e| {
            str_at(e, &["group"]) == Some(group)
                && str_at(e, &["kind"]) == Some(k)
                && (n.is_none() || str_at(e, &["name"]) == n)
        })
    };
    for (what, docs) in renderings {
        for doc in docs {
            let (group, k, n) = (group_of(doc), kind(doc), name(doc));
            let cluster_scoped = at(doc, &["metadata", "namespace"]).is_none();
            let ok = if cluster_scoped {
                listed("clusterResourceWhitelist", &group, k, Some(n))
            } else {
                listed("namespaceResourceWhitelist", &group, k, None)
            };
            if !ok {
                found.push(format!(
                    "{what}: {k} {n} (group `{group}`) is not allowed by the project"
                ));
            }
            // Argo CD syncs a namespaced object only into a namespace of a destination.
            if let Some(namespace) = str_at(doc, &["metadata", "namespace"])
                && !seq_at(project, &["spec", "destinations"])
                    .iter()
                    .any(|d| str_at(d, &["namespace"]) == Some(namespace))
            {
                found.push(format!(
                    "{what}: {k} {n} is in namespace {namespace}, which no destination names"
                ));
            }
        }
    }
    for (i, destination) in seq_at(project, &["spec", "destinations"])
        .iter()
        .enumerate()
    {
        if !matches!(
            str_at(destination, &["namespace"]),
            Some("claude-warroom" | "claude-warroom-sessions")
        ) {
            found.push(format!(
                "spec.destinations[{i}] is neither the claude-warroom namespace nor \
                 claude-warroom-sessions"
            ));
        }
    }
    found
}

#[test]
fn the_argo_cd_project_allows_exactly_what_deploy_ships() {
    let argocd = render_deploy("argocd");
    let project = find(&argocd, "AppProject", "claude-warroom");
    let mut renderings = every_rendering();
    renderings.push((
        "session-exec example".to_string(),
        render_deploy("runner/examples/hub-with-session-exec"),
    ));
    renderings.push((
        "publisher-configmaps example".to_string(),
        render_deploy("examples/control-plane-with-configmaps"),
    ));
    let found = project_problems(project, &renderings);
    assert!(
        found.is_empty(),
        "deploy/argocd/appproject.yaml:\n{}",
        found.join("\n")
    );

    // The checker itself: a wildcard destination and an unlisted ClusterRole are caught.
    let loose = deploy_common::parse_documents(
        r#"
apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata: {name: loose}
spec:
  destinations:
    - {server: "*", namespace: claude-warroom}
  clusterResourceWhitelist:
    - {group: rbac.authorization.k8s.io, kind: ClusterRole}
"#,
    );
    let role = deploy_common::parse_documents(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: cluster-admin-ish}\n",
    );
    let found = project_problems(&loose[0], &[("fixture".to_string(), role)]);
    assert!(
        found
            .iter()
            .any(|f| f.contains("spec.destinations[0] has a wildcard")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|f| f.contains("ClusterRole cluster-admin-ish")),
        "{found:?}"
    );
}

/// GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The metric names in a PromQL expression: identifiers outside label matchers, ranges and
/// strings that are neither a function (followed by `(`), an operator keyword nor an
/// aggregation; the label lists of `by`, `without`, `on`, `ignoring` and `group_*` are skipped.
fn metrics_in(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: &[&str] = &[
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "group",
    ];
    const LABEL_LISTS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let skip_to = |mut i: usize, end: char| {
        while i < chars.len() && chars[i] != end {
            i += 1;
        }
        i + 1
    };
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' => i = skip_to(i + 1, '"'),
            '{' => i = skip_to(i + 1, '}'),
            '[' => i = skip_to(i + 1, ']'),
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let next = chars[i..].iter().find(|c| !c.is_whitespace()).copied();
                if LABEL_LISTS.contains(&word.as_str()) {
                    if next == Some('(') {
                        i = skip_to(i, ')');
                    }
                } else if !KEYWORDS.contains(&word.as_str()) && next != Some('(') {
                    names.insert(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

#[test]
fn the_metric_name_reader_finds_metrics_only() {
    let found = metrics_in(
        r#"(time() - warroom_x_seconds{job="a b"} > 180) and on(pod) (warroom_y == 1) unless on() sum by (cluster) (increase(z_total[15m])) > 0"#,
    );
    let wanted: BTreeSet<String> = ["warroom_x_seconds", "warroom_y", "z_total"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(found, wanted);
}

#[test]
fn every_alert_has_a_runbook_section_and_documented_metrics() {
    let root = workspace_root();
    let guide =
        std::fs::read_to_string(root.join("docs/deploying.md")).expect("docs/deploying.md exists");
    let anchors: BTreeSet<String> = guide
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| anchor(l.trim_start_matches('#')))
        .collect();
    let metrics_doc =
        std::fs::read_to_string(root.join("deploy/METRICS.md")).expect("deploy/METRICS.md");
    let documented = |metric: &str| {
        metrics_doc.contains(&format!("`{metric}`"))
            || metrics_doc
                .split('`')
                .filter_map(|t| t.strip_suffix('*'))
                .any(|prefix| metric.starts_with(prefix))
    };
    let mut rules = 0;
    let mut problems = Vec::new();
    for (what, docs) in every_rendering() {
        for rule_doc in docs.iter().filter(|d| kind(d) == "PrometheusRule") {
            for group in seq_at(rule_doc, &["spec", "groups"]) {
                for rule in seq_at(group, &["rules"]) {
                    let Some(alert) = str_at(rule, &["alert"]) else {
                        continue;
                    };
                    rules += 1;
                    match str_at(rule, &["annotations", "runbook_url"]) {
                        None => problems.push(format!("{what}: {alert}: no runbook_url")),
                        Some(url) => match url.split_once("docs/deploying.md#") {
                            Some((_, section)) if anchors.contains(section) => {}
                            Some((_, section)) => problems.push(format!(
                                "{what}: {alert}: runbook_url {url}: docs/deploying.md has no section #{section}"
                            )),
                            None => problems.push(format!(
                                "{what}: {alert}: runbook_url {url} is not a section of docs/deploying.md"
                            )),
                        },
                    }
                    let expr = str_at(rule, &["expr"]).unwrap_or_default();
                    for metric in metrics_in(expr) {
                        if !documented(&metric) {
                            problems.push(format!(
                                "{what}: {alert}: metric `{metric}` is not in deploy/METRICS.md"
                            ));
                        }
                    }
                    // Templated labels must exist on the alert's series: the runner's heartbeat
                    // gauge has no `cluster` label.
                    let annotations = serde_yaml_ng::to_string(
                        at(rule, &["annotations"]).unwrap_or(&Value::Null),
                    )
                    .unwrap_or_default();
                    if annotations.contains("$labels.cluster")
                        && expr.contains("warroom_runner_heartbeat_timestamp_seconds")
                    {
                        problems.push(format!(
                            "{what}: {alert}: templates $labels.cluster, which warroom_runner_heartbeat_timestamp_seconds does not have"
                        ));
                    }
                }
            }
        }
    }
    assert!(rules > 10, "only {rules} alerts found");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
