//! What the `deploy_*` tests share: rendering a kustomization with `kubectl kustomize` (the
//! renderer Argo CD uses) and reading the rendered objects.
//!
//! kubectl comes from `WARROOM_KUBECTL_BIN`, `.tools/bin/kubectl` (scripts/setup) or `PATH`.

// Each test file uses its own part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml_ng::Value;
use warroom_testkit::tools::workspace_root;

pub use warroom_testkit::deploy::kubectl;

/// `kubectl kustomize <dir>`, parsed into its documents.
pub fn render(dir: &Path) -> Vec<Value> {
    let output = Command::new(kubectl())
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run kubectl ({e}): run scripts/setup"));
    assert!(
        output.status.success(),
        "kubectl kustomize {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("kustomize output is UTF-8");
    parse_documents(&text)
}

/// `deploy/<relative>` rendered.
pub fn render_deploy(relative: &str) -> Vec<Value> {
    render(&workspace_root().join("deploy").join(relative))
}

/// Splits a multi-document YAML stream (as kustomize writes it: `---` lines between
/// documents) and parses each document.
pub fn parse_documents(text: &str) -> Vec<Value> {
    let mut docs = Vec::new();
    let mut current = String::new();
    for line in text.lines().chain(std::iter::once("---")) {
        if line.trim_end() == "---" {
            if !current.trim().is_empty() {
                let doc: Value = serde_yaml_ng::from_str(&current)
                    .unwrap_or_else(|e| panic!("invalid YAML document ({e}):\n{current}"));
                docs.push(doc);
            }
            current.clear();
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    docs
}

/// The runner overlays under `deploy/runner/overlays`, sorted.
pub fn runner_overlays() -> Vec<PathBuf> {
    let dir = workspace_root().join("deploy/runner/overlays");
    let mut overlays: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("readable overlay folder").path())
        .filter(|path| path.join("kustomization.yaml").is_file())
        .collect();
    overlays.sort();
    overlays
}

pub fn kind(doc: &Value) -> &str {
    doc.get("kind").and_then(Value::as_str).unwrap_or_default()
}

pub fn name(doc: &Value) -> &str {
    doc.get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("<unnamed>")
}

/// The value at a path of mapping keys and sequence indexes, e.g. `&["spec", "template"]`.
pub fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut current = value;
    for step in path {
        current = match step.parse::<usize>() {
            Ok(index) => current.get(index)?,
            Err(_) => current.get(*step)?,
        };
    }
    Some(current)
}

pub fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(value, path).and_then(Value::as_str)
}

pub fn seq_at<'a>(value: &'a Value, path: &[&str]) -> &'a [Value] {
    at(value, path)
        .and_then(Value::as_sequence)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The workloads (Deployment, StatefulSet, DaemonSet, Job) among `docs`.
pub fn workloads(docs: &[Value]) -> impl Iterator<Item = &Value> {
    docs.iter().filter(|d| {
        matches!(
            kind(d),
            "Deployment" | "StatefulSet" | "DaemonSet" | "Job" | "CronJob"
        )
    })
}

/// The one document of this kind whose name is `wanted` or, for generated ConfigMaps and
/// Secrets, starts with `wanted-` followed by kustomize's hash.
pub fn find<'a>(docs: &'a [Value], wanted_kind: &str, wanted: &str) -> &'a Value {
    let hashed = format!("{wanted}-");
    docs.iter()
        .find(|d| {
            kind(d) == wanted_kind && {
                let n = name(d);
                n == wanted
                    || (n.starts_with(&hashed)
                        && !n[hashed.len()..].contains('-')
                        && matches!(wanted_kind, "ConfigMap" | "Secret"))
            }
        })
        .unwrap_or_else(|| panic!("no {wanted_kind} {wanted} in the rendered objects"))
}
