//! The runners' RBAC, as deployed: every runner overlay under `deploy/runner/overlays` is
//! rendered with `kubectl kustomize` (the same renderer Argo CD uses), and every Role and
//! ClusterRole in it must be read-only: verbs within get/list/watch, no wildcard, no
//! exec/attach/port-forward/token subresources, no aggregation, and no resource whose objects
//! embed credentials (Secrets, machineconfigs, routes, OAuth clients and tokens, ...): what the
//! agent reads reaches the model. Every kept rule has a `# reason:` comment in rbac.yaml. The opt-in
//! `deploy/components/session-exec` is the only place `pods/exec` and pod writes may appear, as
//! Roles of the session pods' own namespace, and no default overlay may contain it.

mod deploy_common;

use deploy_common::{parse_documents, render, runner_overlays};
use serde_yaml_ng::Value;
use warroom_testkit::tools::workspace_root;

/// The only verbs a runner role may grant.
const READ_VERBS: &[&str] = &["get", "list", "watch"];
/// Resources a runner role must never name, in any API group: ways into pods and nodes, and
/// kinds whose objects embed credentials (the guard refuses the same kinds).
const FORBIDDEN_RESOURCES: &[&str] = &[
    "secrets",
    "pods/exec",
    "pods/attach",
    "pods/portforward",
    "pods/proxy",
    "nodes/proxy",
    "services/proxy",
    "serviceaccounts/token",
    // The cluster's pull secret is inlined in machineconfigs; controllerconfigs carry the
    // CA bundles and the pull secret.
    "machineconfigs",
    "controllerconfigs",
    // Edge and re-encrypt routes carry spec.tls.key.
    "routes",
    // OAuth clients carry their secret; the token kinds are bearer tokens.
    "oauthclients",
    "oauthaccesstokens",
    "oauthauthorizetokens",
    "useroauthaccesstokens",
];
/// The opt-in component's Role for engineers: the one role allowed `pods/exec`.
const SESSION_EXEC_ROLE: &str = "warroom-session-exec";
/// The opt-in component's Role for the runner: the one role allowed to create and delete pods.
const SESSION_PODS_ROLE: &str = "warroom-runner-session-pods";
/// Where session pods live, and the only namespace those two Roles may be in.
const SESSION_NAMESPACE: &str = "claude-warroom-sessions";

/// What the checker allows beyond reading.
#[derive(Clone, Copy, PartialEq)]
enum Allow {
    /// Default overlays: read-only, nothing else.
    ReadOnly,
    /// Overlays with the session-exec component: its Roles, in the session namespace, may
    /// grant create/get on pods/exec (engineers) and create/delete on pods (the runner).
    SessionExec,
}

fn str_list(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_sequence)
        .map(|items| {
            items
                .iter()
                .map(|item| item.as_str().unwrap_or("<not a string>").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Every way the Roles and ClusterRoles among `docs` break the rules, one line each.
fn violations(docs: &[Value], allow: Allow) -> Vec<String> {
    let mut found = Vec::new();
    for doc in docs {
        let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
        if kind != "Role" && kind != "ClusterRole" {
            continue;
        }
        let name = doc
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("<unnamed>");
        let role = format!("{kind} {name}");
        if doc.get("aggregationRule").is_some() {
            found.push(format!(
                "{role}: aggregationRule pulls in rules from other roles"
            ));
        }
        let in_sessions = kind == "Role"
            && doc
                .get("metadata")
                .and_then(|m| m.get("namespace"))
                .and_then(Value::as_str)
                == Some(SESSION_NAMESPACE);
        let exec_allowed = allow == Allow::SessionExec && in_sessions && name == SESSION_EXEC_ROLE;
        let pods_allowed = allow == Allow::SessionExec && in_sessions && name == SESSION_PODS_ROLE;
        let rules = doc
            .get("rules")
            .and_then(Value::as_sequence)
            .cloned()
            .unwrap_or_default();
        for (i, rule) in rules.iter().enumerate() {
            let at = format!("{role} rule {i}");
            let verbs = str_list(rule.get("verbs"));
            let resources = str_list(rule.get("resources"));
            let groups = str_list(rule.get("apiGroups"));
            if rule.get("nonResourceURLs").is_some() {
                found.push(format!("{at}: nonResourceURLs"));
            }
            if verbs.is_empty() || resources.is_empty() {
                found.push(format!("{at}: a rule needs explicit verbs and resources"));
            }
            if groups.iter().any(|g| g.contains('*')) {
                found.push(format!("{at}: wildcard apiGroup"));
            }
            for resource in &resources {
                let lower = resource.to_ascii_lowercase();
                if lower.contains('*') {
                    found.push(format!("{at}: wildcard resource `{resource}`"));
                }
                let exec_here = exec_allowed && lower == "pods/exec";
                if FORBIDDEN_RESOURCES.contains(&lower.as_str()) && !exec_here {
                    found.push(format!("{at}: forbidden resource `{resource}`"));
                }
            }
            for verb in &verbs {
                let lower = verb.to_ascii_lowercase();
                let exec_verb = exec_allowed
                    && resources.iter().all(|r| r == "pods/exec")
                    && (lower == "create" || lower == "get");
                let pod_verb = pods_allowed
                    && resources.iter().all(|r| r == "pods")
                    && (lower == "create" || lower == "delete");
                if lower.contains('*') {
                    found.push(format!("{at}: wildcard verb `{verb}`"));
                } else if !READ_VERBS.contains(&lower.as_str()) && !exec_verb && !pod_verb {
                    found.push(format!("{at}: write or special verb `{verb}`"));
                }
            }
        }
    }
    found
}

fn roles(docs: &[Value]) -> Vec<String> {
    docs.iter()
        .filter(|d| {
            matches!(
                d.get("kind").and_then(Value::as_str),
                Some("Role" | "ClusterRole")
            )
        })
        .filter_map(|d| d.get("metadata")?.get("name")?.as_str().map(str::to_string))
        .collect()
}

#[test]
fn every_runner_overlay_is_read_only() {
    let overlays = runner_overlays();
    let names: Vec<String> = overlays
        .iter()
        .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
        .collect();
    assert!(
        names.contains(&"hub".to_string()) && names.contains(&"hosted".to_string()),
        "expected the hub and hosted overlays, found {names:?}"
    );
    for overlay in &overlays {
        let docs = render(overlay);
        let roles = roles(&docs);
        assert!(
            roles.contains(&"warroom-runner-read".to_string()),
            "{}: no warroom-runner-read ClusterRole (roles: {roles:?})",
            overlay.display()
        );
        assert!(
            !roles.contains(&SESSION_EXEC_ROLE.to_string()),
            "{}: a default overlay must not include the session-exec component",
            overlay.display()
        );
        let found = violations(&docs, Allow::ReadOnly);
        assert!(
            found.is_empty(),
            "{}:\n{}",
            overlay.display(),
            found.join("\n")
        );
        // The overlays (and Argo CD) set the cluster name by position: it must land there.
        let cluster = runner_env(&docs, "WARROOM_CLUSTER");
        assert!(
            cluster
                .as_deref()
                .is_some_and(|c| c != "set-by-overlay" && !c.is_empty()),
            "{}: WARROOM_CLUSTER is {cluster:?}",
            overlay.display()
        );
    }
}

/// The value of one environment variable of the runner container, if set.
fn runner_env(docs: &[Value], name: &str) -> Option<String> {
    let runner = docs.iter().find(|d| {
        d.get("kind").and_then(Value::as_str) == Some("StatefulSet")
            && d.get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(Value::as_str)
                == Some("warroom-runner")
    })?;
    let env = runner
        .get("spec")?
        .get("template")?
        .get("spec")?
        .get("containers")?
        .get(0)?
        .get("env")?
        .as_sequence()?;
    env.iter()
        .find(|e| e.get("name").and_then(Value::as_str) == Some(name))?
        .get("value")?
        .as_str()
        .map(str::to_string)
}

#[test]
fn session_exec_is_opt_in_and_grants_only_what_session_pods_need() {
    let example = workspace_root().join("deploy/runner/examples/hub-with-session-exec");
    let docs = render(&example);
    let roles = roles(&docs);
    assert!(roles.contains(&SESSION_EXEC_ROLE.to_string()), "{roles:?}");
    assert!(roles.contains(&SESSION_PODS_ROLE.to_string()), "{roles:?}");
    // With the component allowed, nothing else slips in.
    let found = violations(&docs, Allow::SessionExec);
    assert!(
        found.is_empty(),
        "{}:\n{}",
        example.display(),
        found.join("\n")
    );
    // Judged as a default overlay, exactly the two Roles' grants are flagged.
    let found = violations(&docs, Allow::ReadOnly);
    for line in &found {
        assert!(
            line.contains(SESSION_EXEC_ROLE) || line.contains(SESSION_PODS_ROLE),
            "only the session Roles may be flagged, got: {line}"
        );
    }
    assert!(found.iter().any(|l| l.contains("`pods/exec`")), "{found:?}");
    assert!(found.iter().any(|l| l.contains("`delete`")), "{found:?}");

    // The runner's ServiceAccount never gets exec: it is bound to reading and to the pods of
    // the session namespace.
    let runner_roles = bound_roles(&docs, "warroom-runner");
    assert_eq!(
        runner_roles,
        vec![
            (
                "ClusterRole".to_owned(),
                "warroom-runner-read".to_owned(),
                None
            ),
            (
                "Role".to_owned(),
                SESSION_PODS_ROLE.to_owned(),
                Some(SESSION_NAMESPACE.to_owned())
            ),
        ]
    );
    // The pods' own ServiceAccount reads, exactly as a run does.
    assert_eq!(
        bound_roles(&docs, "warroom-session"),
        vec![(
            "ClusterRole".to_owned(),
            "warroom-runner-read".to_owned(),
            None
        )]
    );
    // The runner makes its pods where the Roles are, from its own image.
    assert_eq!(
        runner_env(&docs, "WARROOM_SESSION_NAMESPACE").as_deref(),
        Some(SESSION_NAMESPACE)
    );
    assert_eq!(
        runner_env(&docs, "WARROOM_SESSION_PODS").as_deref(),
        Some("true")
    );
    let image = docs
        .iter()
        .find(|d| d.get("kind").and_then(Value::as_str) == Some("StatefulSet"))
        .and_then(|d| d["spec"]["template"]["spec"]["containers"][0]["image"].as_str())
        .map(str::to_owned);
    assert!(image.is_some());
    assert_eq!(runner_env(&docs, "WARROOM_SESSION_IMAGE"), image);
    // Nothing reaches a session pod.
    let policy = docs
        .iter()
        .find(|d| {
            d.get("kind").and_then(Value::as_str) == Some("NetworkPolicy")
                && d["metadata"]["namespace"].as_str() == Some(SESSION_NAMESPACE)
        })
        .expect("a NetworkPolicy for the session pods");
    assert_eq!(
        policy["spec"]["ingress"].as_sequence().map(Vec::len),
        Some(0)
    );
    assert!(
        policy["spec"]["policyTypes"]
            .as_sequence()
            .is_some_and(|t| t.iter().any(|t| t.as_str() == Some("Ingress"))),
        "{policy:?}"
    );
}

/// The roles bound to ServiceAccount `account`: (kind, name, namespace of the binding for a
/// RoleBinding), sorted.
fn bound_roles(docs: &[Value], account: &str) -> Vec<(String, String, Option<String>)> {
    let mut bound: Vec<(String, String, Option<String>)> = docs
        .iter()
        .filter(|d| {
            matches!(
                d.get("kind").and_then(Value::as_str),
                Some("RoleBinding" | "ClusterRoleBinding")
            )
        })
        .filter(|d| {
            d["subjects"].as_sequence().is_some_and(|subjects| {
                subjects.iter().any(|s| {
                    s["kind"].as_str() == Some("ServiceAccount")
                        && s["name"].as_str() == Some(account)
                })
            })
        })
        .map(|d| {
            let namespace = (d["kind"].as_str() == Some("RoleBinding"))
                .then(|| d["metadata"]["namespace"].as_str().map(str::to_owned))
                .flatten();
            (
                d["roleRef"]["kind"].as_str().unwrap_or_default().to_owned(),
                d["roleRef"]["name"].as_str().unwrap_or_default().to_owned(),
                namespace,
            )
        })
        .collect();
    bound.sort();
    bound
}

#[test]
fn the_checker_catches_bad_roles() {
    let bad = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: too-much}
rules:
  - apiGroups: [""]
    resources: ["pods", "Secrets"]
    verbs: ["get", "list"]
  - apiGroups: ["apps"]
    resources: ["deployments"]
    verbs: ["get", "patch"]
  - apiGroups: ["*"]
    resources: ["*"]
    verbs: ["*"]
  - apiGroups: [""]
    resources: ["pods/portforward", "pods/attach", "serviceaccounts/token"]
    verbs: ["create"]
  - nonResourceURLs: ["/metrics"]
    verbs: ["get"]
  - apiGroups: ["route.openshift.io", "machineconfiguration.openshift.io", "oauth.openshift.io"]
    resources: ["routes", "machineconfigs", "controllerconfigs", "oauthaccesstokens", "nodes/proxy"]
    verbs: ["get", "list"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: sneaky-exec, namespace: claude-warroom}
rules:
  - apiGroups: [""]
    resources: ["pods/exec"]
    verbs: ["create"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: aggregated}
aggregationRule:
  clusterRoleSelectors:
    - matchLabels: {rbac.example/aggregate-to-admin: "true"}
rules: []
"#;
    let docs = parse_documents(bad);
    assert_eq!(docs.len(), 3);
    let found = violations(&docs, Allow::ReadOnly);
    let expect = [
        "ClusterRole too-much rule 0: forbidden resource `Secrets`",
        "ClusterRole too-much rule 1: write or special verb `patch`",
        "ClusterRole too-much rule 2: wildcard apiGroup",
        "ClusterRole too-much rule 2: wildcard resource `*`",
        "ClusterRole too-much rule 2: wildcard verb `*`",
        "ClusterRole too-much rule 3: forbidden resource `pods/portforward`",
        "ClusterRole too-much rule 3: forbidden resource `pods/attach`",
        "ClusterRole too-much rule 3: forbidden resource `serviceaccounts/token`",
        "ClusterRole too-much rule 3: write or special verb `create`",
        "ClusterRole too-much rule 4: nonResourceURLs",
        "ClusterRole too-much rule 5: forbidden resource `routes`",
        "ClusterRole too-much rule 5: forbidden resource `machineconfigs`",
        "ClusterRole too-much rule 5: forbidden resource `controllerconfigs`",
        "ClusterRole too-much rule 5: forbidden resource `oauthaccesstokens`",
        "ClusterRole too-much rule 5: forbidden resource `nodes/proxy`",
        "Role sneaky-exec rule 0: forbidden resource `pods/exec`",
        "Role sneaky-exec rule 0: write or special verb `create`",
        "ClusterRole aggregated: aggregationRule pulls in rules from other roles",
    ];
    for line in expect {
        assert!(
            found.iter().any(|f| f == line),
            "not caught: {line}\nfound:\n{}",
            found.join("\n")
        );
    }
    // The session-exec allowance is for the component's role only, not for any exec role.
    let found = violations(&docs, Allow::SessionExec);
    assert!(
        found.iter().any(|f| f.starts_with("Role sneaky-exec")),
        "{found:?}"
    );
}

/// Every rule of the runner roles as written in deploy/ (rbac.yaml of the runner base and of
/// the session-exec component) is preceded by a `# reason:` comment saying why it is kept.
#[test]
fn every_runner_rule_says_why_it_is_kept() {
    for file in [
        "deploy/runner/base/rbac.yaml",
        "deploy/components/session-exec/rbac.yaml",
    ] {
        let text = std::fs::read_to_string(workspace_root().join(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let missing = rules_without_reason(&text);
        assert!(
            missing.is_empty(),
            "{file}: rules without a `# reason:` comment above them, at lines {missing:?}"
        );
    }
}

/// The 1-based line numbers of `- apiGroups:` rule starts with no `# reason:` in the comment
/// block right above them.
fn rules_without_reason(text: &str) -> Vec<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut missing = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if !line.trim_start().starts_with("- apiGroups:") {
            continue;
        }
        let has_reason = lines[..i]
            .iter()
            .rev()
            .take_while(|l| l.trim_start().starts_with('#'))
            .any(|l| l.trim_start().starts_with("# reason:"));
        if !has_reason {
            missing.push(i + 1);
        }
    }
    missing
}

#[test]
fn the_reason_check_catches_a_rule_without_one() {
    let text = "rules:\n  # reason: pods.\n  - apiGroups: [\"\"]\n    resources: [pods]\n  # just a note\n  - apiGroups: [apps]\n  - apiGroups: [batch]\n";
    assert_eq!(rules_without_reason(text), vec![6, 7]);
}
