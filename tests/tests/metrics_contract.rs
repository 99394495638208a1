//! The metrics the daemons export are the ones `deploy/` relies on: every `warroom_` metric
//! an alert, a dashboard or `deploy/METRICS.md` names exists on the `/metrics` of its daemon
//! with the same type and the labels used there, and every metric a daemon exports is listed
//! in `deploy/METRICS.md` with its type and labels.
//!
//! The exposition is each daemon's own: its `Health` is built (which registers every metric
//! of its `Metrics` at zero) and rendered, as `/metrics` serves it. A renamed metric, a
//! changed type or a dropped label makes these tests fail; `the_check_catches_*` below
//! prove it on a doctored exposition. The NATS exporter's metrics (not `warroom_`) are out
//! of scope.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use regex::Regex;
use serde::Deserialize as _;
use serde_yaml_ng::Value;
use warroom_testkit::tools::workspace_root;

/// Labels every series gets from the scrape, not from the daemon.
const SCRAPE_LABELS: [&str; 5] = ["namespace", "pod", "service", "job", "instance"];

/// What one exported metric is, as its exposition says.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Exported {
    /// The `# TYPE` line's type: `counter`, `gauge`, `histogram`.
    kind: String,
    /// The names of its labels.
    labels: BTreeSet<String>,
    /// The daemon exporting it.
    daemon: &'static str,
}

/// Every daemon's `/metrics` text, with one series recorded in each labelled family so it
/// shows with its label names: prometheus-client renders nothing of a family without a series
/// (an unlabelled counter or gauge always has its one series). A new labelled family must get
/// a series here: until then only its row in METRICS.md, if any, catches it (as exported by
/// no daemon).
fn expositions() -> Vec<(&'static str, String)> {
    let gateway = warroom_gateway::Health::new();
    gateway
        .metrics
        .policy_refusals
        .get_or_create(&warroom_gateway::RefusalLabels { code: "unsigned" })
        .inc();
    let dispatcher = warroom_dispatcher::Health::new();
    dispatcher
        .metrics
        .runner_last_heartbeat_timestamp_seconds
        .get_or_create(&warroom_dispatcher::ClusterLabels {
            cluster: "hub".to_owned(),
        })
        .set(1);
    let runner = warroom_runner::Health::new();
    runner
        .metrics
        .tasks_finished
        .get_or_create(&warroom_runner::OutcomeLabels {
            outcome: "completed",
        })
        .inc();
    runner
        .metrics
        .tasks_not_run
        .get_or_create(&warroom_runner::NotRunLabels {
            reason: warroom_runner::NotRun::MaxRuns,
        })
        .inc();
    let publisher = warroom_publisher::Health::new();
    let surface = warroom_publisher::SurfaceLabels { surface: "slack" };
    let m = &publisher.metrics;
    for family in [
        &m.surface_updates,
        &m.surface_skipped,
        &m.surface_retries,
        &m.surface_gave_up,
        &m.surface_unconfirmed,
    ] {
        family.get_or_create(&surface).inc();
    }
    vec![
        ("gateway", gateway.render()),
        ("dispatcher", dispatcher.render()),
        ("runner", runner.render()),
        ("publisher", publisher.render()),
    ]
}

/// The metrics of an OpenMetrics exposition by the name a query uses: a counter's with
/// `_total`.
fn parse_exposition(daemon: &'static str, text: &str) -> BTreeMap<String, Exported> {
    let mut kinds: BTreeMap<String, String> = BTreeMap::new();
    let mut labels: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let label = Regex::new(r#"([a-zA-Z_][a-zA-Z0-9_]*)=""#).expect("regex");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (family, kind) = rest.split_once(' ').expect("# TYPE <name> <type>");
            kinds.insert(family.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let sample = &line[..name_end];
        // The family is the longest declared name the sample's name starts with.
        let family = kinds
            .keys()
            .filter(|f| {
                sample.strip_prefix(f.as_str()).is_some_and(|suffix| {
                    ["", "_total", "_created", "_bucket", "_sum", "_count"].contains(&suffix)
                })
            })
            .max_by_key(|f| f.len())
            .unwrap_or_else(|| panic!("{daemon}: sample {line:?} has no # TYPE line"))
            .clone();
        let set = labels.entry(family).or_default();
        if line[name_end..].starts_with('{') {
            let end = line.find('}').expect("a label set ends with }");
            set.extend(
                label
                    .captures_iter(&line[name_end..end])
                    .map(|c| c[1].to_owned()),
            );
        }
    }
    kinds
        .into_iter()
        .map(|(family, kind)| {
            let labels = labels.remove(&family).unwrap_or_default();
            let name = if kind == "counter" {
                format!("{family}_total")
            } else {
                family
            };
            (
                name,
                Exported {
                    kind,
                    labels,
                    daemon,
                },
            )
        })
        .collect()
}

/// Every metric the daemons export.
fn exported() -> BTreeMap<String, Exported> {
    let mut all = BTreeMap::new();
    for (daemon, text) in expositions() {
        for (name, metric) in parse_exposition(daemon, &text) {
            assert!(
                name.starts_with(&format!("warroom_{daemon}_")),
                "{daemon} exports {name}, outside its prefix"
            );
            assert!(all.insert(name.clone(), metric).is_none(), "{name} twice");
        }
    }
    all
}

/// A metric as `deploy/METRICS.md` lists it: a table row `| `name` | type ... | labels | ...`,
/// the labels in backticks.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Documented {
    kind: String,
    labels: BTreeSet<String>,
}

fn parse_metrics_md(text: &str) -> BTreeMap<String, Documented> {
    let ticked = Regex::new(r"`([a-z_]+)`").expect("regex");
    let mut rows = BTreeMap::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // `| a | b | c |` splits into ["", a, b, c, ""].
        if cells.len() < 5 || !cells[0].is_empty() {
            continue;
        }
        let Some(name) = cells[1]
            .strip_prefix('`')
            .and_then(|c| c.strip_suffix('`'))
            .filter(|n| n.starts_with("warroom_"))
        else {
            continue;
        };
        let kind = cells[2]
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned();
        let labels = ticked
            .captures_iter(cells[3])
            .map(|c| c[1].to_owned())
            .collect();
        let row = Documented { kind, labels };
        assert!(
            rows.insert(name.to_owned(), row).is_none(),
            "deploy/METRICS.md lists {name} twice"
        );
    }
    rows
}

/// What `deploy/` (besides METRICS.md) asks of the warroom metrics.
#[derive(Debug, Default)]
struct Wanted {
    /// Metric name -> where it is used.
    names: BTreeMap<String, BTreeSet<String>>,
    /// Metric name -> labels a `{label=...}` matcher or a `$labels.x` template needs.
    labels: BTreeMap<String, BTreeSet<(String, String)>>,
    /// Metrics read with `rate`/`increase`: counters.
    counters: BTreeMap<String, String>,
    /// `$labels.x` templated by an alert whose expression names these metrics: one of them
    /// must carry the label (or the scrape adds it).
    templated: Vec<(String, String, BTreeSet<String>)>,
}

/// The files under `deploy/` that may name metrics: manifests, dashboards, anything but
/// METRICS.md (read for itself).
fn deploy_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            deploy_files(&path, out);
        } else if path.file_name().is_some_and(|n| n != "METRICS.md") {
            out.push(path);
        }
    }
}

/// Reads the metric names, label matchers and counter reads out of `text` (a file of
/// `deploy/`, named `what`), and the templated labels of the alerts of its PrometheusRules.
fn read_deploy_file(what: &str, text: &str, wanted: &mut Wanted) {
    let name = metric_name_regex();
    let matcher = Regex::new(r"(warroom_[a-z_]+)\{([^}]*)\}").expect("regex");
    let matched_label = Regex::new(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)").expect("regex");
    let counter_read =
        Regex::new(r"\b(?:rate|irate|increase|resets)\(\s*(warroom_[a-z_]+)").expect("regex");
    for m in name.find_iter(text) {
        wanted
            .names
            .entry(m.as_str().to_owned())
            .or_default()
            .insert(what.to_owned());
    }
    for c in matcher.captures_iter(text) {
        for l in matched_label.captures_iter(&c[2]) {
            wanted
                .labels
                .entry(c[1].to_owned())
                .or_default()
                .insert((l[1].to_owned(), what.to_owned()));
        }
    }
    for c in counter_read.captures_iter(text) {
        wanted.counters.insert(c[1].to_owned(), what.to_owned());
    }
    if !what.ends_with(".yaml") && !what.ends_with(".yml") {
        return;
    }
    let template = Regex::new(r"\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)").expect("regex");
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let Ok(doc) = Value::deserialize(doc) else {
            continue;
        };
        if doc.get("kind").and_then(Value::as_str) != Some("PrometheusRule") {
            continue;
        }
        let groups = doc
            .get("spec")
            .and_then(|s| s.get("groups"))
            .and_then(Value::as_sequence);
        for rule in groups
            .into_iter()
            .flatten()
            .filter_map(|g| g.get("rules").and_then(Value::as_sequence))
            .flatten()
        {
            let alert = rule.get("alert").and_then(Value::as_str).unwrap_or("?");
            let expr = rule.get("expr").and_then(Value::as_str).unwrap_or_default();
            let metrics: BTreeSet<String> = name
                .find_iter(expr)
                .map(|m| m.as_str().to_owned())
                .collect();
            if metrics.is_empty() {
                continue;
            }
            let annotations =
                serde_yaml_ng::to_string(rule.get("annotations").unwrap_or(&Value::Null))
                    .unwrap_or_default();
            let labels: BTreeSet<String> = template
                .captures_iter(&annotations)
                .map(|c| c[1].to_owned())
                .filter(|l| !SCRAPE_LABELS.contains(&l.as_str()))
                .collect();
            for label in labels {
                wanted
                    .templated
                    .push((format!("{what}: {alert}"), label, metrics.clone()));
            }
        }
    }
}

/// A daemon's metric name (the NATS exporter's are not `warroom_`).
fn metric_name_regex() -> Regex {
    Regex::new(r"\bwarroom_(?:gateway|dispatcher|runner|publisher)_[a-z_]+").expect("regex")
}

fn wanted_by_deploy() -> Wanted {
    let root = workspace_root();
    let mut files = Vec::new();
    deploy_files(&root.join("deploy"), &mut files);
    let mut wanted = Wanted::default();
    for path in files {
        // Binary files and files that are not UTF-8 name no metrics.
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let what = path
            .strip_prefix(&root)
            .unwrap_or(&path)
            .display()
            .to_string();
        read_deploy_file(&what, &text, &mut wanted);
    }
    wanted
}

/// What is wrong between the exported metrics and what `deploy/` and METRICS.md want.
fn problems(
    exported: &BTreeMap<String, Exported>,
    documented: &BTreeMap<String, Documented>,
    wanted: &Wanted,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, places) in &wanted.names {
        if !exported.contains_key(name) {
            let places: Vec<&str> = places.iter().map(String::as_str).collect();
            problems.push(format!(
                "{name} (used in {}) is exported by no daemon",
                places.join(", ")
            ));
        }
    }
    for (name, labels) in &wanted.labels {
        let Some(metric) = exported.get(name) else {
            continue;
        };
        for (label, what) in labels {
            if !metric.labels.contains(label) && !SCRAPE_LABELS.contains(&label.as_str()) {
                problems.push(format!(
                    "{what} matches {name} on label `{label}`, which it does not have (it has {:?})",
                    metric.labels
                ));
            }
        }
    }
    for (name, what) in &wanted.counters {
        if let Some(metric) = exported.get(name)
            && metric.kind != "counter"
        {
            problems.push(format!(
                "{what} reads {name} with rate/increase, but it is a {}",
                metric.kind
            ));
        }
    }
    for (alert, label, metrics) in &wanted.templated {
        let carried = metrics
            .iter()
            .filter_map(|m| exported.get(m))
            .any(|m| m.labels.contains(label));
        if !carried {
            problems.push(format!(
                "{alert} templates $labels.{label}, which none of {metrics:?} has"
            ));
        }
    }
    for (name, row) in documented {
        match exported.get(name) {
            None => problems.push(format!(
                "deploy/METRICS.md lists {name}, which no daemon exports"
            )),
            Some(metric) if metric.kind != row.kind => problems.push(format!(
                "deploy/METRICS.md says {name} is a {}, the {} exports a {}",
                row.kind, metric.daemon, metric.kind
            )),
            Some(metric) if metric.labels != row.labels => problems.push(format!(
                "deploy/METRICS.md gives {name} the labels {:?}, the {} exports {:?}",
                row.labels, metric.daemon, metric.labels
            )),
            Some(_) => {}
        }
    }
    for (name, metric) in exported {
        if !documented.contains_key(name) {
            problems.push(format!(
                "the {} exports {name} ({}, labels {:?}), which deploy/METRICS.md does not list",
                metric.daemon, metric.kind, metric.labels
            ));
        }
    }
    problems
}

fn metrics_md() -> BTreeMap<String, Documented> {
    let path = workspace_root().join("deploy/METRICS.md");
    parse_metrics_md(&std::fs::read_to_string(&path).expect("deploy/METRICS.md"))
}

/// Fails if a metric that an alert, a dashboard or deploy/METRICS.md names is renamed, changes
/// type or loses a label there used, or if a daemon exports a metric METRICS.md does not
/// list with its type and labels.
#[test]
fn the_daemons_export_what_deploy_relies_on() {
    let exported = exported();
    let wanted = wanted_by_deploy();
    // The alerts of both PrometheusRules are read (a path that stopped finding them would
    // check nothing).
    for name in [
        "warroom_gateway_poll_errors_total",
        "warroom_dispatcher_runner_last_heartbeat_timestamp_seconds",
        "warroom_runner_heartbeat_timestamp_seconds",
        "warroom_publisher_push_failures_total",
    ] {
        assert!(
            wanted.names.contains_key(name),
            "deploy/ no longer names {name}"
        );
    }
    assert!(
        wanted
            .templated
            .iter()
            .any(|(_, label, _)| label == "cluster"),
        "no alert templates $labels.cluster any more"
    );
    let problems = problems(&exported, &metrics_md(), &wanted);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The check itself: a renamed metric, a dropped label and a changed type are each caught.
#[test]
fn the_check_catches_a_renamed_metric_a_dropped_label_and_a_changed_type() {
    let documented = metrics_md();
    let wanted = wanted_by_deploy();
    let exported = exported();
    assert!(problems(&exported, &documented, &wanted).is_empty());

    let mut renamed = exported.clone();
    let metric = renamed
        .remove("warroom_gateway_poll_errors_total")
        .expect("exported");
    renamed.insert("warroom_gateway_poll_failures_total".to_owned(), metric);
    let found = problems(&renamed, &documented, &wanted);
    assert!(
        found.iter().any(|p| p.starts_with(
            "warroom_gateway_poll_errors_total (used in deploy/control-plane/monitoring.yaml"
        )),
        "{found:#?}"
    );
    assert!(
        found
            .iter()
            .any(|p| p.contains("exports warroom_gateway_poll_failures_total")),
        "{found:#?}"
    );

    let mut unlabelled = exported.clone();
    unlabelled
        .get_mut("warroom_dispatcher_runner_last_heartbeat_timestamp_seconds")
        .expect("exported")
        .labels
        .clear();
    let found = problems(&unlabelled, &documented, &wanted);
    assert!(
        found
            .iter()
            .any(|p| p.contains("WarroomRunnerAbsent templates $labels.cluster")),
        "{found:#?}"
    );
    assert!(
        found.iter().any(|p| p.starts_with(
            "deploy/METRICS.md gives warroom_dispatcher_runner_last_heartbeat_timestamp_seconds the labels"
        )),
        "{found:#?}"
    );

    let mut retyped = exported;
    retyped
        .get_mut("warroom_runner_pull_errors_total")
        .expect("exported")
        .kind = "gauge".to_owned();
    let found = problems(&retyped, &documented, &wanted);
    assert!(
        found
            .iter()
            .any(|p| p.contains("reads warroom_runner_pull_errors_total with rate/increase")),
        "{found:#?}"
    );
}

/// Label matchers in PromQL are read per metric, the scrape's labels allowed on any.
#[test]
fn the_deploy_reader_finds_label_matchers_and_counter_reads() {
    let mut wanted = Wanted::default();
    read_deploy_file(
        "x.json",
        r#"sum(rate(warroom_runner_tasks_finished_total{outcome!="completed", job=~"a"}[5m])) / jetstream_x{y="z"}"#,
        &mut wanted,
    );
    assert_eq!(
        wanted.names.keys().collect::<Vec<_>>(),
        ["warroom_runner_tasks_finished_total"]
    );
    let labels: Vec<&str> = wanted.labels["warroom_runner_tasks_finished_total"]
        .iter()
        .map(|(l, _)| l.as_str())
        .collect();
    assert_eq!(labels, ["job", "outcome"]);
    assert!(
        wanted
            .counters
            .contains_key("warroom_runner_tasks_finished_total")
    );
    let documented = BTreeMap::new();
    let mut exported = BTreeMap::new();
    exported.insert(
        "warroom_runner_tasks_finished_total".to_owned(),
        Exported {
            kind: "counter".to_owned(),
            labels: BTreeSet::new(),
            daemon: "runner",
        },
    );
    let found = problems(&exported, &documented, &wanted);
    assert!(
        found
            .iter()
            .any(|p| p.contains("on label `outcome`, which it does not have")),
        "{found:#?}"
    );
    assert!(
        !found.iter().any(|p| p.contains("label `job`")),
        "{found:#?}"
    );
}
