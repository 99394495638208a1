//! The request contract: the design's examples parse, and every kind of bad input is refused
//! with an error that names the field and what was expected.

use std::path::Path;

use warroom_proto::validate::{Document, MAX_FILE_BYTES, parse_document};
use warroom_proto::{
    ClusterType, CoordinationMode, FieldError, Tool, TroubleshootingRequest, parse_request,
};

const DESIGN_EXAMPLE: &str =
    include_str!("../../../examples/requests/2024-01-15-1430-api-timeout.yaml");
const CROSS_CLUSTER_EXAMPLE: &str =
    include_str!("../../../examples/requests/2024-01-15-1500-cross-cluster-api-timeout.yaml");

/// A small valid request that the cases below break one field at a time.
const VALID: &str = r#"
apiVersion: warroom.intility.io/v1
kind: TroubleshootingRequest
metadata:
  name: etcd-latency
  timestamp: "2026-11-23T10:00:00Z"
  engineer: alice
spec:
  targetCluster:
    type: hosted
    name: prod-cluster-1
  issue:
    category: etcd
    description: etcd latency above 500ms
  investigation:
    prompt: Check etcd health.
    allowedTools: [bash, read]
    timeout: 600
"#;

fn errors(file: &str, yaml: &str) -> Vec<FieldError> {
    match parse_request(Path::new(file), yaml.as_bytes()) {
        Ok(request) => panic!("{file} was accepted: {request:?}"),
        Err(e) => {
            assert_eq!(e.file, file, "errors must name the file");
            e.errors
        }
    }
}

/// The errors of `VALID` with `from` replaced by `to`.
fn errors_with(from: &str, to: &str) -> Vec<FieldError> {
    assert!(VALID.contains(from), "the fixture has no {from:?}");
    errors("requests/pending/r1.yaml", &VALID.replacen(from, to, 1))
}

#[track_caller]
fn assert_error(errors: &[FieldError], field: &str, needle: &str) {
    assert!(
        errors
            .iter()
            .any(|e| e.field == field && e.message.contains(needle)),
        "no error on `{field}` containing {needle:?}; got: {errors:#?}"
    );
}

#[test]
fn the_design_example_parses_exactly_as_written() {
    let path = Path::new("requests/pending/2024-01-15-1430-api-timeout.yaml");
    let parsed =
        parse_request(path, DESIGN_EXAMPLE.as_bytes()).expect("the design example is valid");
    assert_eq!(parsed.id, "2024-01-15-1430-api-timeout");
    assert_eq!(parsed.results_dir, "results/2024-01-15-1430-api-timeout");
    assert_eq!(parsed.mode, None);
    assert_eq!(parsed.clusters.len(), 1);
    assert_eq!(parsed.clusters[0].kind, ClusterType::Hub);
    assert_eq!(parsed.clusters[0].name, "production-hub");
    let spec = &parsed.request.spec;
    assert_eq!(spec.issue.category, "api-timeout");
    assert_eq!(
        spec.issue.affected_resources,
        ["hosted-cluster-prod-1", "hosted-cluster-prod-2"]
    );
    assert_eq!(
        spec.investigation.allowed_tools,
        [Tool::Bash, Tool::Read, Tool::Grep, Tool::Write]
    );
    assert_eq!(spec.investigation.timeout, 1800);
    assert!(
        spec.investigation
            .prompt
            .starts_with("Investigate API server timeout issues")
    );
    assert_eq!(parsed.request.metadata.engineer, "platform-engineer-1");
}

#[test]
fn the_cross_cluster_example_parses_with_its_mode_and_order() {
    let path = Path::new("2024-01-15-1500-cross-cluster-api-timeout.yaml");
    let parsed = parse_request(path, CROSS_CLUSTER_EXAMPLE.as_bytes()).expect("valid");
    assert_eq!(parsed.mode, Some(CoordinationMode::Sequential));
    let names: Vec<_> = parsed.clusters.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["production-hub", "prod-cluster-1"]);
    assert_eq!(
        parsed.results_dir,
        "results/2024-01-15-1500-cross-cluster-api-timeout"
    );
}

#[test]
fn unknown_api_version_and_kind_are_named() {
    let found = errors_with("warroom.intility.io/v1", "warroom.intility.io/v2");
    assert_error(&found, "apiVersion", "expected `warroom.intility.io/v1`");
    let found = errors_with("kind: TroubleshootingRequest", "kind: Troubleshooting");
    assert_error(&found, "kind", "expected `TroubleshootingRequest`");
}

#[test]
fn missing_and_empty_required_fields_are_named() {
    assert_error(
        &errors_with("  engineer: alice\n", ""),
        "metadata.engineer",
        "is required",
    );
    assert_error(
        &errors_with("Check etcd health.", "\"  \""),
        "spec.investigation.prompt",
        "must not be empty",
    );
    assert_error(
        &errors_with("    timeout: 600\n", ""),
        "spec.investigation.timeout",
        "is required",
    );
    assert_error(
        &errors_with("  issue:\n", "  isue:\n"),
        "spec.issue",
        "is required",
    );
}

#[test]
fn a_typo_is_an_unknown_field_with_a_suggestion() {
    let found = errors_with("timeout: 600", "tiemout: 600");
    assert_error(
        &found,
        "spec.investigation.tiemout",
        "did you mean `timeout`?",
    );
    assert_error(&found, "spec.investigation.timeout", "is required");
    let found = errors_with("metadata:", "metdata: {}\nmetadata:");
    assert_error(&found, "metdata", "did you mean `metadata`?");
}

#[test]
fn cluster_names_unsafe_as_subject_tokens_are_refused() {
    let long = "a".repeat(64);
    for bad in [
        "prod.cluster",
        "prod*",
        "'>'",
        "'prod cluster'",
        "''",
        long.as_str(),
    ] {
        let found = errors_with("name: prod-cluster-1", &format!("name: {bad}"));
        assert!(
            found.iter().any(|e| e.field == "spec.targetCluster.name"),
            "{bad}: {found:#?}"
        );
    }
    let found = errors_with("name: prod-cluster-1", "name: prod.cluster");
    assert_error(&found, "spec.targetCluster.name", "NATS subject token");
    let found = errors_with("type: hosted", "type: spoke");
    assert_error(
        &found,
        "spec.targetCluster.type",
        "expected `hub` or `hosted`",
    );
}

#[test]
fn timeouts_out_of_range_are_refused() {
    assert_error(
        &errors_with("timeout: 600", "timeout: 5"),
        "spec.investigation.timeout",
        "from 30 to 14400",
    );
    assert_error(
        &errors_with("timeout: 600", "timeout: 86400"),
        "spec.investigation.timeout",
        "out of range",
    );
    assert_error(
        &errors_with("timeout: 600", "timeout: -1"),
        "spec.investigation.timeout",
        "found `-1`",
    );
    assert_error(
        &errors_with("timeout: 600", "timeout: 10m"),
        "spec.investigation.timeout",
        "found a string",
    );
}

#[test]
fn unknown_tools_are_refused() {
    let found = errors_with("[bash, read]", "[bash, wirte, kubectl]");
    assert_error(
        &found,
        "spec.investigation.allowedTools[1]",
        "did you mean `write`?",
    );
    assert_error(
        &found,
        "spec.investigation.allowedTools[2]",
        "unknown tool `kubectl`",
    );
    assert_error(
        &errors_with("[bash, read]", "[]"),
        "spec.investigation.allowedTools",
        "at least one",
    );
}

#[test]
fn a_strategy_must_name_a_runbook() {
    let with = |strategy: &str| format!("timeout: 600\n    strategy: {strategy}\n");
    let parsed = parse_request(
        Path::new("r1.yaml"),
        VALID
            .replacen("timeout: 600\n", &with("etcd"), 1)
            .as_bytes(),
    )
    .expect("a runbook's name is a strategy");
    assert_eq!(
        parsed.request.spec.investigation.strategy.as_deref(),
        Some("etcd")
    );

    let found = errors_with("timeout: 600\n", &with("etdc"));
    assert_error(
        &found,
        "spec.investigation.strategy",
        "unknown strategy `etdc` (did you mean `etcd`?); expected one of: ",
    );
    // The list is every runbook, from the one source the CLI and the gateway share.
    let expected = warroom_proto::walk::one_of(&warroom_proto::strategy::names());
    assert_error(&found, "spec.investigation.strategy", &expected);
    for name in ["`control-plane-health`", "`workload-crashloop`"] {
        assert!(expected.contains(name), "{expected}");
    }
    let found = errors_with("timeout: 600\n", &with("fix-everything"));
    assert_error(
        &found,
        "spec.investigation.strategy",
        "unknown strategy `fix-everything`; expected one of: `control-plane-health`, ",
    );
}

#[test]
fn destinations_outside_results_are_refused() {
    for bad in [
        "/results/../etc",
        "requests/pending/x",
        "/etc/passwd",
        "results",
        "results/..",
        "results\\\\x",
    ] {
        let yaml = format!("{VALID}  output:\n    destination: \"{bad}\"\n");
        let found = errors("r1.yaml", &yaml);
        assert_error(&found, "spec.output.destination", "inside `results/`");
    }
    let yaml =
        format!("{VALID}  output:\n    format: markdown\n    destination: /results/team-a/r1/\n");
    let parsed = parse_request(Path::new("r1.yaml"), yaml.as_bytes()).expect("valid");
    assert_eq!(parsed.results_dir, "results/team-a/r1");
}

#[test]
fn destinations_that_could_collide_or_break_the_file_system_are_refused() {
    // Another request's folder, a shared folder, and a folder name no file system takes
    // (the outage of a 300-character folder that stopped all publishing).
    let long = format!("results/{}/", "a".repeat(300));
    let long_folder = format!("results/{}/r1/", "a".repeat(300));
    for (bad, why) in [
        ("results/other-request/", "does not end in the request id"),
        ("results/shared/", "does not end in the request id"),
        (long.as_str(), "does not end in the request id"),
        (long_folder.as_str(), "characters long"),
        ("results/a b/r1/", "a space"),
        ("results//r1/", "empty folder"),
        ("results/a/b/c/d/r1/", "4 folders"),
    ] {
        let yaml = format!("{VALID}  output:\n    destination: \"{bad}\"\n");
        let found = errors("r1.yaml", &yaml);
        assert_error(&found, "spec.output.destination", why);
    }
}

#[test]
fn files_over_the_size_limit_are_refused() {
    let yaml = format!("{VALID}# {}\n", "x".repeat(MAX_FILE_BYTES));
    let found = errors("r1.yaml", &yaml);
    assert_error(&found, "", "at most 65536 bytes");
}

#[test]
fn text_that_is_not_utf8_is_refused() {
    let mut bytes = VALID.as_bytes().to_vec();
    bytes.extend_from_slice(b"# \xff\xfe\n");
    let error = parse_request(Path::new("r1.yaml"), &bytes).expect_err("not UTF-8");
    assert_error(&error.errors, "", "not UTF-8");
}

#[test]
fn more_than_one_document_is_refused() {
    let found = errors("r1.yaml", &format!("{VALID}---\n{VALID}"));
    assert_error(&found, "", "more than one YAML document");
}

#[test]
fn alias_expansion_bombs_are_refused() {
    let mut yaml = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for (name, prev) in ["b", "c", "d", "e", "f", "g", "h", "i"]
        .iter()
        .zip(["a", "b", "c", "d", "e", "f", "g", "h"])
    {
        yaml.push_str(&format!("{name}: &{name} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"));
    }
    let found = errors("r1.yaml", &yaml);
    assert_error(&found, "", "alias");
}

#[test]
fn invalid_yaml_reports_where() {
    let found = errors("r1.yaml", "apiVersion: [unclosed\n");
    assert_error(&found, "", "not valid YAML");
    assert_error(&found, "", "line");
}

#[test]
fn every_problem_is_reported_at_once() {
    let yaml = VALID
        .replace("name: prod-cluster-1", "name: prod.1")
        .replace("timeout: 600", "timeout: 1")
        .replace("[bash, read]", "[bash, sudo]")
        .replace("engineer: alice", "enginer: alice");
    let found = errors("r1.yaml", &yaml);
    assert_error(&found, "spec.targetCluster.name", "prod.1");
    assert_error(&found, "spec.investigation.timeout", "out of range");
    assert_error(&found, "spec.investigation.allowedTools[1]", "sudo");
    assert_error(&found, "metadata.enginer", "did you mean `engineer`?");
    assert_error(&found, "metadata.engineer", "is required");
    assert_eq!(found.len(), 5, "{found:#?}");
}

#[test]
fn targets_are_one_cluster_or_a_coordinated_list() {
    let both = VALID.replace(
        "  issue:",
        "  targetClusters:\n    - type: hub\n      name: hub\n  issue:",
    );
    assert_error(&errors("r1.yaml", &both), "spec.targetClusters", "not both");

    let list = "  targetClusters:\n    - type: hub\n      name: hub\n    - type: hosted\n      name: hub\n";
    let yaml = VALID.replace(
        "  targetCluster:\n    type: hosted\n    name: prod-cluster-1\n",
        list,
    );
    let found = errors("r1.yaml", &yaml);
    assert_error(
        &found,
        "spec.coordination.mode",
        "is required with `targetClusters`",
    );
    assert_error(&found, "spec.targetClusters[1].name", "listed twice");

    let none = VALID.replace(
        "  targetCluster:\n    type: hosted\n    name: prod-cluster-1\n",
        "",
    );
    assert_error(
        &errors("r1.yaml", &none),
        "spec.targetCluster",
        "is required",
    );

    let parallel = VALID.replace(
        "  targetCluster:\n    type: hosted\n    name: prod-cluster-1\n",
        "  targetClusters:\n    - {type: hub, name: hub}\n    - {type: hosted, name: c1}\n  coordination:\n    mode: parallel\n",
    );
    let parsed = parse_request(Path::new("r1.yaml"), parallel.as_bytes()).expect("valid");
    assert_eq!(parsed.mode, Some(CoordinationMode::Parallel));
    assert_eq!(parsed.clusters.len(), 2);
}

#[test]
fn the_request_id_must_be_a_safe_file_stem() {
    assert_error(
        &errors("requests/pending/bad.id.yaml", VALID),
        "",
        "request id",
    );
    assert_error(
        &errors("requests/pending/r1.json", VALID),
        "",
        "`.yaml` or `.yml`",
    );
}

#[test]
fn timestamps_must_be_rfc3339() {
    let found = errors_with("2026-11-23T10:00:00Z", "yesterday");
    assert_error(&found, "metadata.timestamp", "RFC 3339");
}

#[test]
fn the_error_display_names_file_field_and_expectation() {
    let error = parse_request(
        Path::new("requests/pending/r1.yaml"),
        VALID.replace("timeout: 600", "timeout: 1").as_bytes(),
    )
    .expect_err("invalid");
    assert_eq!(
        error.to_string(),
        "requests/pending/r1.yaml: spec.investigation.timeout: 1 is out of range; \
         expected a whole number of seconds from 30 to 14400"
    );
}

/// Guards the validator and the serde types against drifting apart: a request that uses
/// every field survives a trip through YAML and the validator unchanged.
#[test]
fn a_request_with_every_field_round_trips() {
    let yaml = CROSS_CLUSTER_EXAMPLE.replace(
        "    namespace: clusters-prod-1\n",
        "    namespace: clusters-prod-1\n    strategy: control-plane-health\n  output:\n    format: markdown\n    destination: results/team/x/\n",
    );
    let parsed = parse_request(Path::new("x.yaml"), yaml.as_bytes()).expect("valid");
    let written = serde_yaml_ng::to_string(&parsed.request).expect("serializes");
    let again = parse_request(Path::new("x.yaml"), written.as_bytes()).expect("re-parses");
    assert_eq!(again.request, parsed.request);
    let typed: TroubleshootingRequest = serde_yaml_ng::from_str(&written).expect("typed");
    assert_eq!(
        typed.spec.investigation.strategy.as_deref(),
        Some("control-plane-health")
    );
}

#[test]
fn session_requests_have_their_own_contract() {
    let yaml = r#"
apiVersion: warroom.intility.io/v1
kind: SessionRequest
metadata: {name: node-issues, timestamp: "2026-11-23T10:00:00Z", engineer: alice}
spec:
  targetCluster: {type: hosted, name: hosted-prod-1}
  duration: 7200
"#;
    match parse_document(Path::new("s1.yaml"), yaml.as_bytes()).expect("valid") {
        Document::Session(session) => assert_eq!(session.request.spec.duration, 7200),
        other => panic!("parsed as {other:?}"),
    }
    // The secure zone runs it as the investigation of its one cluster, kept open.
    let run = parse_request(Path::new("s1.yaml"), yaml.as_bytes()).expect("a session");
    let terms = run.session.expect("session terms");
    assert_eq!((terms.duration_secs, terms.opening_prompt), (7200, false));
    assert_eq!(run.clusters.len(), 1);
    assert_eq!(run.request.kind, "SessionRequest");
    assert_eq!(run.request.spec.investigation.timeout, 1800);
    let with_prompt = yaml.replace(
        "duration: 7200",
        "duration: 600\n  prompt: Why are nodes NotReady?\n  exec: true",
    );
    let run = parse_request(Path::new("s1.yaml"), with_prompt.as_bytes()).expect("a session");
    let terms = run.session.expect("session terms");
    assert!(terms.opening_prompt && terms.exec);
    assert_eq!(
        run.request.spec.investigation.prompt,
        "Why are nodes NotReady?"
    );
    assert_eq!(run.request.spec.investigation.timeout, 600);
    let bad_exec = yaml.replace("duration: 7200", "duration: 7200\n  exec: sometimes");
    let error = parse_document(Path::new("s1.yaml"), bad_exec.as_bytes()).expect_err("bad exec");
    assert_error(&error.errors, "spec.exec", "true");
    let bad = yaml.replace("duration: 7200", "duration: 999999");
    let error = parse_document(Path::new("s1.yaml"), bad.as_bytes()).expect_err("out of range");
    assert_error(&error.errors, "spec.duration", "out of range");
}

/// The committed schema is what the types generate; regenerate it with
/// `cargo run -p claude-warroom -- schema > schema/troubleshooting-request.schema.json`
/// (or run this test with `WARROOM_BLESS=1`).
#[test]
fn the_committed_json_schema_is_current() {
    let committed = include_str!("../../../schema/troubleshooting-request.schema.json");
    let generated = warroom_proto::schema::troubleshooting_request_pretty();
    if std::env::var_os("WARROOM_BLESS").is_some() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../schema/troubleshooting-request.schema.json"
        );
        std::fs::write(path, &generated).expect("writes the schema");
        return;
    }
    assert!(
        committed == generated,
        "schema/troubleshooting-request.schema.json is stale; regenerate it with \
         `cargo run -p claude-warroom -- schema > schema/troubleshooting-request.schema.json`"
    );
}

/// Follows `$ref`s and `properties` from the schema root to a field's schema.
fn schema_at<'s>(schema: &'s serde_json::Value, path: &[&str]) -> &'s serde_json::Value {
    fn resolve<'s>(
        root: &'s serde_json::Value,
        node: &'s serde_json::Value,
    ) -> &'s serde_json::Value {
        let node = match node.get("anyOf").and_then(|a| a.as_array()) {
            // `Option<T>`: the non-null branch.
            Some(branches) => branches
                .iter()
                .find(|b| b.get("type") != Some(&serde_json::json!("null")))
                .unwrap_or(node),
            None => node,
        };
        match node.get("$ref").and_then(|r| r.as_str()) {
            Some(reference) => {
                let name = reference
                    .rsplit('/')
                    .next()
                    .expect("a $ref has a last part");
                resolve(root, &root["$defs"][name])
            }
            None => node,
        }
    }
    let mut node = resolve(schema, schema);
    for part in path {
        node = match *part {
            "[]" => resolve(schema, &node["items"]),
            field => resolve(schema, &node["properties"][field]),
        };
    }
    node
}

/// The JSON Schema states every limit the validator enforces, with the same numbers, and
/// the validator enforces each at exactly that number.
#[test]
fn the_schema_states_every_limit_the_validator_enforces() {
    use warroom_proto::ids::{MAX_CLUSTER_NAME_LEN, MAX_REQUEST_ID_LEN};
    use warroom_proto::request::{MAX_TIMEOUT_SECS, MIN_TIMEOUT_SECS};
    use warroom_proto::validate::*;
    let schema = warroom_proto::schema::troubleshooting_request();
    let limit = |path: &[&str], key: &str| -> u64 {
        schema_at(&schema, path)[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{path:?} has no {key} in the schema"))
    };
    let limits: [(&[&str], &str, usize); 11] = [
        (&["metadata", "name"], "maxLength", MAX_NAME_LEN),
        (&["metadata", "engineer"], "maxLength", MAX_NAME_LEN),
        (&["spec", "targetClusters"], "maxItems", MAX_CLUSTERS),
        (
            &["spec", "targetCluster", "name"],
            "maxLength",
            MAX_CLUSTER_NAME_LEN,
        ),
        (&["spec", "issue", "category"], "maxLength", MAX_NAME_LEN),
        (
            &["spec", "issue", "description"],
            "maxLength",
            MAX_DESCRIPTION_LEN,
        ),
        (
            &["spec", "issue", "affectedResources"],
            "maxItems",
            MAX_AFFECTED_RESOURCES,
        ),
        (
            &["spec", "issue", "affectedResources", "[]"],
            "maxLength",
            MAX_NAME_LEN,
        ),
        (
            &["spec", "investigation", "prompt"],
            "maxLength",
            MAX_PROMPT_LEN,
        ),
        (
            &["spec", "output", "destination"],
            "maxLength",
            MAX_DESTINATION_LEN,
        ),
        (
            &["spec", "investigation", "timeout"],
            "maximum",
            MAX_TIMEOUT_SECS as usize,
        ),
    ];
    for (path, key, expected) in limits {
        assert_eq!(limit(path, key), expected as u64, "{path:?} {key}");
    }
    assert_eq!(
        limit(&["spec", "investigation", "timeout"], "minimum"),
        MIN_TIMEOUT_SECS
    );
    // The schema's pattern for request ids is generated from the same constant.
    let id_schema = <warroom_proto::RequestId as schemars::JsonSchema>::json_schema(
        &mut schemars::SchemaGenerator::default(),
    );
    assert_eq!(
        id_schema.get("maxLength").and_then(|v| v.as_u64()),
        Some(MAX_REQUEST_ID_LEN as u64)
    );

    // The validator enforces each at that number: one more is refused, the limit itself
    // passes.
    let clusters = |n: usize| {
        let list: String = (0..n)
            .map(|i| format!("    - {{type: hosted, name: c{i}}}\n"))
            .collect();
        VALID.replace(
            "  targetCluster:\n    type: hosted\n    name: prod-cluster-1\n",
            &format!("  targetClusters:\n{list}  coordination:\n    mode: parallel\n"),
        )
    };
    assert!(VALID.contains("  targetCluster:\n    type: hosted\n    name: prod-cluster-1\n"));
    parse_request(Path::new("r1.yaml"), clusters(MAX_CLUSTERS).as_bytes()).expect("at the limit");
    assert_error(
        &errors("r1.yaml", &clusters(MAX_CLUSTERS + 1)),
        "spec.targetClusters",
        "at most",
    );
    let prompt = |n: usize| VALID.replace("Check etcd health.", &"x".repeat(n));
    assert!(VALID.contains("Check etcd health."));
    let at_limit = prompt(MAX_PROMPT_LEN);
    let parsed = parse_request(Path::new("r1.yaml"), at_limit.as_bytes());
    // The prompt line holds only the replaced text, so its length is the limit exactly.
    assert!(parsed.is_ok(), "{parsed:?}");
    assert_error(
        &errors("r1.yaml", &prompt(MAX_PROMPT_LEN + 1)),
        "spec.investigation.prompt",
        "at most",
    );
}

/// The committed schema of the agent's answer is what the types and the runbook index
/// generate; regenerate it with `WARROOM_BLESS=1` on this test.
#[test]
fn the_committed_agent_report_schema_is_current() {
    let committed = include_str!("../../../schema/agent-report.schema.json");
    let generated = warroom_proto::report::agent_report_schema_pretty();
    if std::env::var_os("WARROOM_BLESS").is_some() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../schema/agent-report.schema.json"
        );
        std::fs::write(path, &generated).expect("writes the schema");
        return;
    }
    assert!(
        committed == generated,
        "schema/agent-report.schema.json is stale; regenerate it with \
         `WARROOM_BLESS=1 cargo nextest run -p warroom-proto the_committed_agent_report_schema_is_current`"
    );
}

/// The committed schema of the synthesis answer is what the types generate; regenerate it
/// with `WARROOM_BLESS=1` on this test.
#[test]
fn the_committed_synthesis_schema_is_current() {
    let committed = include_str!("../../../schema/synthesis.schema.json");
    let generated = warroom_proto::synthesis::schema_pretty();
    if std::env::var_os("WARROOM_BLESS").is_some() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../schema/synthesis.schema.json"
        );
        std::fs::write(path, &generated).expect("writes the schema");
        return;
    }
    assert!(
        committed == generated,
        "schema/synthesis.schema.json is stale; regenerate it with \
         `WARROOM_BLESS=1 cargo nextest run -p warroom-proto the_committed_synthesis_schema_is_current`"
    );
}

/// The committed schema of follow-up files is what the types generate; regenerate it with
/// `WARROOM_BLESS=1` on this test.
#[test]
fn the_committed_follow_up_schema_is_current() {
    let committed = include_str!("../../../schema/follow-up.schema.json");
    let generated = warroom_proto::followup::schema_pretty();
    if std::env::var_os("WARROOM_BLESS").is_some() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../schema/follow-up.schema.json"
        );
        std::fs::write(path, &generated).expect("writes the schema");
        return;
    }
    assert!(
        committed == generated,
        "schema/follow-up.schema.json is stale; regenerate it with \
         `WARROOM_BLESS=1 cargo nextest run -p warroom-proto the_committed_follow_up_schema_is_current`"
    );
}
