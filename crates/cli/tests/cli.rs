//! The `claude-warroom` binary, run as an engineer runs it, against real git: a bare remote
//! from the test kit, the engineer's clone, and a second clone playing the publisher.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use warroom_proto::{
    ClusterPhase, ClusterStatus, ClusterType, CoordinationMode, RequestPhase, RequestStatus,
    parse_request,
};
use warroom_testkit::git::{TEST_USER_EMAIL, WorkClone};
use warroom_testkit::{BareRemote, SshKey};

#[path = "cli/init.rs"]
mod init;
#[path = "cli/session.rs"]
mod session;

/// The binary with a hermetic environment: no system or global git config (so the clone's
/// local test identity is what counts), no prompts, and none of our own env defaults.
fn cli(dir: &Path) -> Command {
    hermetic(Command::new(env!("CARGO_BIN_EXE_claude-warroom")), dir)
}

/// `cmd` with the environment of [`cli`].
fn hermetic(mut cmd: Command, dir: &Path) -> Command {
    for var in [
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_AUTHOR_NAME",
        "GIT_AUTHOR_EMAIL",
        "GIT_COMMITTER_NAME",
        "GIT_COMMITTER_EMAIL",
        "GIT_CONFIG_PARAMETERS",
        "GIT_CONFIG_COUNT",
        "WARROOM_REPO",
        "WARROOM_BRANCH",
        "WARROOM_ENGINEER",
    ] {
        cmd.env_remove(var);
    }
    cmd.current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
        .stdin(Stdio::null());
    cmd
}

/// What a run printed and how it ended.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn of(output: Output) -> Run {
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// The request id `investigate` printed: the last line of stdout.
    fn id(&self) -> String {
        assert_eq!(self.code, Some(0), "{self}");
        self.stdout
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .to_owned()
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn run(dir: &Path, args: &[&str]) -> Run {
    Run::of(
        cli(dir)
            .args(args)
            .output()
            .expect("running claude-warroom"),
    )
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The pushed request file, parsed exactly as the gateway parses it.
fn pushed_request(remote: &BareRemote, id: &str) -> warroom_proto::ValidatedRequest {
    let path = format!("requests/pending/{id}.yaml");
    let text = remote
        .read(&path)
        .unwrap_or_else(|| panic!("{path} is not on the remote's main"));
    parse_request(Path::new(&path), text.as_bytes())
        .unwrap_or_else(|errors| panic!("the pushed request is invalid:\n{errors}\n{text}"))
}

fn status(
    id: &str,
    phase: RequestPhase,
    dir: &str,
    clusters: &[(&str, ClusterPhase)],
) -> RequestStatus {
    RequestStatus {
        id: id.parse().expect("a valid request id"),
        phase,
        clusters: clusters
            .iter()
            .map(|(name, phase)| {
                let mut cluster = ClusterStatus::new(ClusterType::Hosted, *phase);
                if phase.is_final() {
                    cluster.duration_secs = Some(61.0);
                    cluster.cost_usd = Some(0.12);
                    cluster.num_turns = Some(4);
                    cluster.report = Some(format!("{name}.md"));
                }
                (name.parse().expect("a valid cluster name"), cluster)
            })
            .collect::<BTreeMap<_, _>>(),
        error: None,
        errors: Vec::new(),
        mode: None,
        engineer: Some(TEST_USER_EMAIL.to_owned()),
        results_dir: dir.parse().expect("a valid results folder"),
        commit: None,
        revision: 3,
        updated_at: warroom_proto::now(),
        verification: None,
        notices: Vec::new(),
        cancelled: None,
        synthesis: None,
        session: None,
        turns: Vec::new(),
    }
}

/// Plays the publisher: writes `files` into `dir` from its own clone and pushes.
fn publish(remote: &BareRemote, dir: &str, files: &[(&str, String)]) {
    let publisher = remote.work_clone();
    for (name, text) in files {
        publisher.write(format!("{dir}/{name}"), text);
    }
    publisher.commit_all("results");
    publisher.push();
}

#[test]
fn validate_accepts_the_design_examples() {
    let examples = workspace_root().join("examples/requests");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&examples)
        .expect("reading examples/requests")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no examples in {}", examples.display());
    let mut args = vec!["validate".to_owned()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = run(&examples, &args);
    assert_eq!(result.code, Some(0), "{result}");
    for file in &files {
        assert!(
            result.stdout.contains(&format!("{}: ok", file.display())),
            "{result}"
        );
    }
}

#[test]
fn validate_names_the_file_and_field_of_every_problem() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let broken = dir.path().join("broken-request.yaml");
    std::fs::write(
        &broken,
        "apiVersion: warroom.intility.io/v1\n\
         kind: TroubleshootingRequest\n\
         metadata: {name: n, timestamp: \"2024-01-15T14:30:00Z\", engineer: e}\n\
         spec:\n  targetCluster: {type: hub, name: production-hub}\n\
         \x20 issue: {category: c, description: d}\n\
         \x20 investigation: {prompt: p, allowedTools: [bash], timeout: 5}\n",
    )
    .expect("writing the broken file");
    let good = workspace_root().join("examples/requests/2024-01-15-1430-api-timeout.yaml");
    let missing = dir.path().join("missing.yaml");
    let result = run(
        dir.path(),
        &[
            "validate",
            &broken.display().to_string(),
            &good.display().to_string(),
            &missing.display().to_string(),
        ],
    );
    assert_eq!(result.code, Some(1), "{result}");
    assert!(
        result.stdout.contains(&format!(
            "{}: spec.investigation.timeout: 5 is out of range",
            broken.display()
        )),
        "{result}"
    );
    assert!(
        result.stdout.contains(&format!("{}: ok", good.display())),
        "{result}"
    );
    assert!(
        result
            .stdout
            .contains(&format!("{}: cannot read", missing.display())),
        "{result}"
    );
}

#[test]
fn schema_equals_the_committed_file() {
    let committed = std::fs::read_to_string(
        workspace_root().join("schema/troubleshooting-request.schema.json"),
    )
    .expect("reading the committed schema");
    let result = run(&workspace_root(), &["schema"]);
    assert_eq!(result.code, Some(0), "{result}");
    assert_eq!(result.stdout, committed, "the committed schema is stale");
    for (kind, file) in [
        ("cancel", "cancel-request.schema.json"),
        ("follow-up", "follow-up.schema.json"),
    ] {
        let committed = std::fs::read_to_string(workspace_root().join("schema").join(file))
            .expect("reading the committed schema");
        let result = run(&workspace_root(), &["schema", "--kind", kind]);
        assert_eq!(result.code, Some(0), "{result}");
        assert_eq!(
            result.stdout, committed,
            "{kind}: differs from schema/{file}"
        );
    }
}

#[test]
fn investigate_pushes_a_valid_request_named_by_the_printed_id() {
    let remote = BareRemote::new();
    let engineer = remote.work_clone();
    // Work of the engineer's own that must stay out of the request's commit.
    engineer.write("notes.txt", "mine\n");
    engineer.git(["add", "notes.txt"]);

    let result = run(
        engineer.path(),
        &[
            "investigate",
            "--cluster",
            "production-hub",
            "--namespace",
            "clusters-prod-1",
            "--issue",
            "etcd latency",
            "--strategy",
            "control-plane-health",
        ],
    );
    let id = result.id();
    assert!(id.contains("-etcd-latency-"), "{id}");
    let validated = pushed_request(&remote, &id);
    assert_eq!(validated.id, id);
    let request = &validated.request;
    let cluster = request.spec.target_cluster.as_ref().expect("targetCluster");
    assert_eq!(
        (cluster.kind, cluster.name.as_str()),
        (ClusterType::Hub, "production-hub")
    );
    assert_eq!(request.spec.issue.category, "etcd-latency");
    assert_eq!(request.spec.issue.description, "etcd latency");
    assert_eq!(request.metadata.engineer, TEST_USER_EMAIL);
    let investigation = &request.spec.investigation;
    assert_eq!(investigation.timeout, 1800);
    assert_eq!(investigation.namespace.as_deref(), Some("clusters-prod-1"));
    assert_eq!(
        investigation.strategy.as_deref(),
        Some("control-plane-health")
    );
    assert!(
        investigation.prompt.contains("etcd latency"),
        "{}",
        investigation.prompt
    );
    assert!(
        investigation.prompt.contains("clusters-prod-1"),
        "{}",
        investigation.prompt
    );
    assert_eq!(validated.results_dir, format!("results/{id}"));
    // The timestamp is a time, written in RFC 3339 and read back as the same instant.
    let text = remote
        .read(&format!("requests/pending/{id}.yaml"))
        .unwrap_or_default();
    let written = request
        .metadata
        .timestamp
        .format(&time::format_description::well_known::Rfc3339)
        .expect("formats");
    assert!(text.contains(&format!("timestamp: {written}")), "{text}");

    assert_eq!(remote.log_subjects()[0], format!("request: {id}"));
    let committed = remote.git(["show", "--name-only", "--format=", "main"]);
    assert_eq!(committed.trim(), format!("requests/pending/{id}.yaml"));
    let staged = engineer.git(["diff", "--cached", "--name-only"]);
    assert_eq!(
        staged.trim(),
        "notes.txt",
        "the engineer's staged work was touched"
    );
}

#[test]
fn create_with_several_clusters_writes_target_clusters_and_coordination() {
    let remote = BareRemote::new();
    let engineer = remote.work_clone();
    let result = run(
        engineer.path(),
        &[
            "create",
            "--clusters",
            "production-hub,prod-cluster-1,edge:hub",
            "--mode",
            "sequential",
            "--issue",
            "API timeouts",
            "--prompt",
            "Find why the API server times out.",
            "--tools",
            "bash,read",
            "--timeout",
            "900",
            "--engineer",
            "platform-engineer-1",
        ],
    );
    let id = result.id();
    let validated = pushed_request(&remote, &id);
    let spec = &validated.request.spec;
    assert_eq!(spec.target_cluster, None);
    let clusters: Vec<(ClusterType, &str)> = spec
        .target_clusters
        .as_ref()
        .expect("targetClusters")
        .iter()
        .map(|c| (c.kind, c.name.as_str()))
        .collect();
    assert_eq!(
        clusters,
        [
            (ClusterType::Hub, "production-hub"),
            (ClusterType::Hosted, "prod-cluster-1"),
            (ClusterType::Hub, "edge"),
        ]
    );
    assert_eq!(validated.mode, Some(CoordinationMode::Sequential));
    assert_eq!(
        spec.investigation.prompt,
        "Find why the API server times out."
    );
    assert_eq!(spec.investigation.timeout, 900);
    assert_eq!(
        spec.investigation.allowed_tools,
        [warroom_proto::Tool::Bash, warroom_proto::Tool::Read]
    );
    assert_eq!(validated.request.metadata.engineer, "platform-engineer-1");
}

#[test]
fn invalid_values_write_and_push_nothing() {
    let remote = BareRemote::new();
    let engineer = remote.work_clone();
    let before = remote.head();

    let result = run(
        engineer.path(),
        &[
            "investigate",
            "--cluster",
            "bad.name",
            "--issue",
            "x",
            "--timeout",
            "5",
        ],
    );
    assert_eq!(result.code, Some(1), "{result}");
    assert!(
        result
            .stderr
            .contains("spec.targetCluster.name (--cluster)"),
        "{result}"
    );
    assert!(
        result
            .stderr
            .contains("spec.investigation.timeout (--timeout)"),
        "{result}"
    );
    assert!(result.stdout.is_empty(), "{result}");

    // Usage errors: clap's exit code 2.
    for args in [
        &["investigate", "--clusters", "a,b", "--issue", "x"][..],
        &[
            "investigate",
            "--cluster",
            "a",
            "--mode",
            "parallel",
            "--issue",
            "x",
        ],
        &[
            "investigate",
            "--cluster",
            "a",
            "--clusters",
            "b",
            "--mode",
            "parallel",
            "--issue",
            "x",
        ],
        &[
            "investigate",
            "--cluster",
            "a",
            "--issue",
            "x",
            "--tools",
            "bash,sudo",
        ],
        &["investigate", "--issue", "x"],
    ] {
        let result = run(engineer.path(), args);
        assert_eq!(result.code, Some(2), "{args:?}: {result}");
    }

    assert_eq!(remote.head(), before, "something was pushed");
    assert_eq!(engineer.head(), before, "something was committed");
    let status = engineer.git(["status", "--porcelain", "--untracked-files=all"]);
    assert_eq!(status.trim(), "", "something was written");
}

/// The runbook names, from the files in `context/runbooks/`.
fn runbook_names() -> Vec<String> {
    let dir = workspace_root().join("context/runbooks");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .filter_map(|path| path.file_stem()?.to_str().map(str::to_owned))
        .filter(|name| name != "README")
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no runbooks in {}", dir.display());
    names
}

#[test]
fn strategies_lists_every_runbook_with_a_line_each() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let result = run(dir.path(), &["strategies"]);
    assert_eq!(result.code, Some(0), "{result}");
    let mut listed: Vec<String> = result
        .stdout
        .lines()
        .map(|line| {
            let (name, description) = line.split_once("  ").unwrap_or((line, ""));
            assert!(!description.trim().is_empty(), "no description: {line:?}");
            name.to_owned()
        })
        .collect();
    listed.sort();
    assert_eq!(listed, runbook_names(), "{result}");

    let result = run(dir.path(), &["strategies", "--json"]);
    assert_eq!(result.code, Some(0), "{result}");
    let json: Vec<serde_json::Value> =
        serde_json::from_str(&result.stdout).unwrap_or_else(|e| panic!("{e}: {result}"));
    let mut names: Vec<String> = json
        .iter()
        .map(|s| s["name"].as_str().expect("a name").to_owned())
        .collect();
    names.sort();
    assert_eq!(names, runbook_names());
}

#[test]
fn an_unknown_strategy_is_refused_with_the_list_and_nothing_is_pushed() {
    let remote = BareRemote::new();
    let engineer = remote.work_clone();
    let before = remote.head();

    let result = run(
        engineer.path(),
        &[
            "investigate",
            "--cluster",
            "production-hub",
            "--issue",
            "etcd latency",
            "--strategy",
            "etdc",
        ],
    );
    assert_eq!(result.code, Some(1), "{result}");
    assert!(
        result.stderr.contains(
            "spec.investigation.strategy (--strategy): unknown strategy `etdc` \
             (did you mean `etcd`?); expected one of: "
        ),
        "{result}"
    );
    for name in runbook_names() {
        assert!(
            result.stderr.contains(&format!("`{name}`")),
            "{name}: {result}"
        );
    }
    assert!(result.stdout.is_empty(), "{result}");
    assert_eq!(remote.head(), before, "something was pushed");
    let status = engineer.git(["status", "--porcelain", "--untracked-files=all"]);
    assert_eq!(status.trim(), "", "something was written");
}

#[test]
fn investigate_rebases_when_the_remote_moved() {
    let remote = BareRemote::new();
    let engineer = remote.work_clone();
    // Someone else pushes first; the engineer's clone is now behind.
    let other = remote.work_clone();
    other.write("requests/pending/someone-else.yaml", "x: 1\n");
    other.commit_all("request: someone-else");
    other.push();

    let result = run(
        engineer.path(),
        &[
            "investigate",
            "--cluster",
            "prod-cluster-1",
            "--issue",
            "node NotReady",
            "--id",
            "r-race",
        ],
    );
    assert_eq!(result.id(), "r-race");
    assert_eq!(
        remote.log_subjects()[..2],
        ["request: r-race", "request: someone-else"]
    );
    pushed_request(&remote, "r-race");
}

#[test]
fn status_and_results_of_a_finished_request() {
    let remote = BareRemote::new();
    let engineer = remote.work_clone();
    let id = run(
        engineer.path(),
        &[
            "investigate",
            "--cluster",
            "prod-cluster-1",
            "--issue",
            "etcd latency",
        ],
    )
    .id();

    // Not picked up yet: exit 3 for both commands.
    for command in ["status", "get-results"] {
        let result = run(engineer.path(), &[command, &id]);
        assert_eq!(result.code, Some(3), "{command}: {result}");
        assert!(
            result
                .stderr
                .contains(&format!("no results for {id} yet: the request is pending")),
            "{command}: {result}"
        );
    }

    let dir = format!("results/{id}");
    let status = status(
        &id,
        RequestPhase::Completed,
        &dir,
        &[("prod-cluster-1", ClusterPhase::Completed)],
    );
    let status_json = serde_json::to_string_pretty(&status).expect("serializing the status") + "\n";
    publish(
        &remote,
        &dir,
        &[
            ("status.json", status_json.clone()),
            ("README.md", "# Aggregated report\n".to_owned()),
            (
                "prod-cluster-1.md",
                "# etcd is slow on prod-cluster-1\n".to_owned(),
            ),
            ("audit.jsonl", "{\"command\":\"oc get pods\"}\n".to_owned()),
        ],
    );

    let shown = run(engineer.path(), &["status", &id]);
    assert_eq!(shown.code, Some(0), "{shown}");
    assert!(shown.stdout.contains("phase     completed"), "{shown}");
    assert!(
        shown
            .stdout
            .contains("prod-cluster-1  hosted  completed  1m 01s"),
        "{shown}"
    );

    let json = run(engineer.path(), &["status", "--request-id", &id, "--json"]);
    assert_eq!(json.code, Some(0), "{json}");
    assert_eq!(json.stdout, status_json);

    let printed = run(engineer.path(), &["get-results", "--request-id", &id]);
    assert_eq!(printed.code, Some(0), "{printed}");
    let readme = printed
        .stdout
        .find("# Aggregated report")
        .expect("README.md printed");
    let report = printed
        .stdout
        .find("# etcd is slow on prod-cluster-1")
        .expect("cluster report printed");
    assert!(readme < report, "{printed}");
    assert!(
        printed
            .stdout
            .contains(&format!("==> {dir}/prod-cluster-1.md <==")),
        "{printed}"
    );

    let out = tempfile::tempdir().expect("a temporary directory");
    let target = out.path().join("report");
    let copied = run(
        engineer.path(),
        &[
            "get-results",
            &id,
            "--output",
            &target.display().to_string(),
        ],
    );
    assert_eq!(copied.code, Some(0), "{copied}");
    for name in [
        "status.json",
        "README.md",
        "prod-cluster-1.md",
        "audit.jsonl",
    ] {
        assert!(
            target.join(name).is_file(),
            "{name} was not copied: {copied}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(target.join("status.json")).expect("status.json"),
        status_json
    );
}

/// Plays the publisher with its signing key: writes `files` into `dir`, commits signed with
/// `key` exactly as the publisher's git does (`-c gpg.format=ssh ...`), and pushes.
fn publish_signed(
    remote: &BareRemote,
    key: &SshKey,
    dir: &str,
    files: &[(&str, String)],
) -> String {
    let publisher = remote.work_clone();
    for (name, text) in files {
        publisher.write(format!("{dir}/{name}"), text);
    }
    publisher.git(["add", "--all"]);
    let mut args = key.signing_args();
    args.extend(["commit", "--quiet", "--message", "results"].map(str::to_owned));
    publisher.git(&args);
    publisher.push();
    publisher.head()
}

/// Someone else's clone rewrites `status.json` and pushes; `sign` signs it with their key.
fn forge(remote: &BareRemote, dir: &str, text: &str, sign: Option<&SshKey>) -> String {
    let forger = remote.work_clone();
    forger.write(format!("{dir}/status.json"), text);
    forger.git(["add", "--all"]);
    let mut args = sign.map(SshKey::signing_args).unwrap_or_default();
    args.extend(["commit", "--quiet", "--message", "forged status"].map(str::to_owned));
    forger.git(&args);
    forger.push();
    forger.head()
}

#[test]
fn verify_accepts_the_publishers_signed_results_and_names_every_forged_commit() {
    let remote = BareRemote::new();
    let engineer = remote.work_clone();
    let publisher_key = SshKey::generate("warroom-publisher");
    let id = "r-signed";
    let dir = format!("results/{id}");
    let completed = status(
        id,
        RequestPhase::Completed,
        &dir,
        &[("prod-1", ClusterPhase::Completed)],
    );
    let status_json = serde_json::to_string_pretty(&completed).expect("serializing") + "\n";
    publish_signed(
        &remote,
        &publisher_key,
        &dir,
        &[
            ("status.json", status_json.clone()),
            ("README.md", "# Aggregated report\n".to_owned()),
            ("prod-1.md", "# prod-1\n".to_owned()),
        ],
    );

    // No key known yet: --verify says how to set one.
    let unknown = run(engineer.path(), &["status", "--verify", id]);
    assert_eq!(unknown.code, Some(1), "{unknown}");
    assert!(
        unknown
            .stderr
            .contains("claude-warroom init --publisher-key"),
        "{unknown}"
    );

    let public_file = publisher_key.public_key_file().display().to_string();
    let init = run(engineer.path(), &["init", "--publisher-key", &public_file]);
    assert_eq!(init.code, Some(0), "{init}");
    let fingerprint = publisher_key.fingerprint();
    assert!(init.stderr.contains(&fingerprint), "{init}");
    let recorded = engineer.git(["config", "--local", "warroom.publisherKey"]);
    let key_without_comment = publisher_key
        .public_key()
        .rsplit_once(' ')
        .map(|(key, _comment)| key)
        .unwrap_or_default();
    assert_eq!(recorded.trim(), key_without_comment);

    let verified = run(engineer.path(), &["status", "--verify", id]);
    assert_eq!(verified.code, Some(0), "{verified}");
    assert!(
        verified.stdout.contains("phase     completed"),
        "{verified}"
    );
    assert!(
        verified
            .stderr
            .contains(&format!("verified: all 1 commit(s) that wrote {dir}/")),
        "{verified}"
    );
    assert!(verified.stderr.contains(&fingerprint), "{verified}");
    let results = run(engineer.path(), &["get-results", "--verify", id]);
    assert_eq!(results.code, Some(0), "{results}");
    assert!(results.stdout.contains("# Aggregated report"), "{results}");

    // Only the fingerprint, on the command line of a clone without `init`.
    let fresh = remote.work_clone();
    let by_fingerprint = run(
        fresh.path(),
        &["status", "--publisher-key", &fingerprint, id],
    );
    assert_eq!(by_fingerprint.code, Some(0), "{by_fingerprint}");
    // The flag wins over the clone's key: under another key the publisher's commit is unknown.
    let other_key = SshKey::generate("mallory");
    let other_public = other_key.public_key_file().display().to_string();
    let flag_wins = run(
        engineer.path(),
        &["status", "--verify", "--publisher-key", &other_public, id],
    );
    assert_eq!(flag_wins.code, Some(1), "{flag_wins}");
    assert!(
        flag_wins
            .stderr
            .contains(&format!("signed by an unknown key ({fingerprint})")),
        "{flag_wins}"
    );

    // A forged status.json, unsigned: refused, naming the commit, and nothing is shown.
    let mut forged = completed.clone();
    forged.error = Some("nothing to see here".to_owned());
    let forged_json = serde_json::to_string_pretty(&forged).expect("serializing") + "\n";
    let unsigned = forge(&remote, &dir, &forged_json, None);
    let refused = run(engineer.path(), &["status", "--verify", id]);
    assert_eq!(refused.code, Some(1), "{refused}");
    assert!(refused.stdout.is_empty(), "{refused}");
    assert!(
        refused
            .stderr
            .contains(&format!("commit {unsigned} \"forged status\"")),
        "{refused}"
    );
    assert!(refused.stderr.contains("not signed"), "{refused}");
    let refused = run(engineer.path(), &["get-results", "--verify", id]);
    assert_eq!(refused.code, Some(1), "{refused}");
    assert!(refused.stdout.is_empty(), "{refused}");
    assert!(refused.stderr.contains(&unsigned), "{refused}");
    // Without --verify the forgery is shown: checking is the engineer's choice.
    let unchecked = run(engineer.path(), &["status", id]);
    assert_eq!(unchecked.code, Some(0), "{unchecked}");

    // Signed, but with another key: refused, and the unsigned one is still named.
    let other_signed = forge(&remote, &dir, &status_json, Some(&other_key));
    let refused = run(engineer.path(), &["status", "--verify", id]);
    assert_eq!(refused.code, Some(1), "{refused}");
    assert!(
        refused.stderr.contains(&format!(
            "commit {other_signed} \"forged status\" by {}",
            warroom_testkit::git::TEST_USER_NAME
        )),
        "{refused}"
    );
    assert!(
        refused.stderr.contains(&format!(
            "signed by an unknown key ({})",
            other_key.fingerprint()
        )),
        "{refused}"
    );
    assert!(refused.stderr.contains(&unsigned), "{refused}");
}

#[test]
fn verify_refuses_a_publisher_commit_changed_after_it_was_signed() {
    let remote = BareRemote::new();
    let engineer = remote.work_clone();
    let publisher_key = SshKey::generate("warroom-publisher");
    let id = "r-tampered";
    let dir = format!("results/{id}");
    let completed = status(id, RequestPhase::Completed, &dir, &[]);
    let signed = publish_signed(
        &remote,
        &publisher_key,
        &dir,
        &[(
            "status.json",
            serde_json::to_string_pretty(&completed).expect("serializing"),
        )],
    );
    // The same commit with another message: its signature no longer matches it.
    let object = remote.git(["cat-file", "commit", &signed]);
    let tampered_object = object.replace("\nresults\n", "\nresults, tampered\n");
    assert_ne!(object, tampered_object);
    let scratch = tempfile::tempdir().expect("a temporary directory");
    let file = scratch.path().join("commit");
    std::fs::write(&file, tampered_object).expect("writing the commit object");
    let tampered = remote
        .git([
            "hash-object",
            "-t",
            "commit",
            "-w",
            &file.display().to_string(),
        ])
        .trim()
        .to_owned();
    remote.git(["update-ref", "refs/heads/main", &tampered]);

    let public_file = publisher_key.public_key_file().display().to_string();
    let refused = run(
        engineer.path(),
        &["status", "--publisher-key", &public_file, id],
    );
    assert_eq!(refused.code, Some(1), "{refused}");
    assert!(
        refused
            .stderr
            .contains(&format!("commit {tampered} \"results, tampered\"")),
        "{refused}"
    );
    assert!(refused.stderr.contains("bad signature"), "{refused}");
}

#[test]
fn investigate_signs_with_the_engineers_key_and_keeps_it_signed_through_a_rebase() {
    let remote = BareRemote::new();
    let engineer = remote.work_clone();
    let key = SshKey::generate("engineer");
    // A signing key without commit.gpgsign: investigate passes -S itself.
    engineer.git(["config", "--local", "gpg.format", "ssh"]);
    engineer.git([
        "config",
        "--local",
        "user.signingkey",
        &key.private_key().display().to_string(),
    ]);
    // Someone else pushes first, so the request commit is rebased before the push.
    let other = remote.work_clone();
    other.write("requests/pending/someone-else.yaml", "x: 1\n");
    other.commit_all("request: someone-else");
    other.push();

    let result = run(
        engineer.path(),
        &[
            "investigate",
            "--cluster",
            "prod-cluster-1",
            "--issue",
            "etcd latency",
            "--id",
            "r-sig",
        ],
    );
    assert_eq!(result.id(), "r-sig");
    assert!(!result.stderr.contains("not signed"), "{result}");
    assert_eq!(remote.log_subjects()[0], "request: r-sig");
    let allowed = format!(
        "gpg.ssh.allowedSignersFile={}",
        key.allowed_signers(TEST_USER_EMAIL).display()
    );
    remote
        .try_git(["-c", &allowed, "verify-commit", "main"])
        .unwrap_or_else(|failure| panic!("the pushed request commit is not signed: {failure}"));
}

#[test]
fn investigate_without_signing_warns_and_still_pushes() {
    let remote = BareRemote::new();
    let engineer = remote.work_clone();
    let result = run(
        engineer.path(),
        &[
            "investigate",
            "--cluster",
            "prod-cluster-1",
            "--issue",
            "etcd latency",
            "--id",
            "r-unsigned",
        ],
    );
    assert_eq!(result.id(), "r-unsigned");
    let warning = result
        .stderr
        .find("warning: this commit is not signed; a secure zone with a policy will reject it: set up commit signing with")
        .expect("the warning is printed");
    let pushed = result.stderr.find("pushed to origin/main").expect("pushed");
    assert!(
        warning < pushed,
        "the warning comes before the push: {result}"
    );
    pushed_request(&remote, "r-unsigned");
}

#[test]
fn status_follows_the_output_destination() {
    let remote = BareRemote::new();
    let engineer = remote.work_clone();
    let id = run(
        engineer.path(),
        &[
            "investigate",
            "--cluster",
            "hub",
            "--issue",
            "API timeout",
            "--destination",
            "/results/team-a/api-timeout/",
        ],
    )
    .id();
    // The CLI adds the request id as the last folder.
    let dir = format!("results/team-a/api-timeout/{id}");
    assert_eq!(pushed_request(&remote, &id).results_dir, dir);

    let pending = run(engineer.path(), &["status", &id]);
    assert_eq!(pending.code, Some(3), "{pending}");

    let dir = dir.as_str();
    let status = status(
        &id,
        RequestPhase::Running,
        dir,
        &[("hub", ClusterPhase::Running)],
    );
    publish(
        &remote,
        dir,
        &[(
            "status.json",
            serde_json::to_string_pretty(&status).expect("serializing"),
        )],
    );
    let shown = run(engineer.path(), &["status", &id]);
    assert_eq!(shown.code, Some(0), "{shown}");
    assert!(shown.stdout.contains("phase     running"), "{shown}");
    assert!(
        shown
            .stdout
            .contains(&format!("results   {dir}/ on origin/main")),
        "{shown}"
    );

    // Running, and no report written yet: nothing to show.
    let results = run(engineer.path(), &["get-results", &id]);
    assert_eq!(results.code, Some(3), "{results}");
}

#[test]
fn unknown_ids_are_errors() {
    let remote = BareRemote::new();
    let engineer: WorkClone = remote.work_clone();
    let result = run(engineer.path(), &["status", "no-such-request"]);
    assert_eq!(result.code, Some(1), "{result}");
    assert!(
        result.stderr.contains("unknown request `no-such-request`"),
        "{result}"
    );

    let result = run(engineer.path(), &["get-results", "../escape"]);
    assert_eq!(result.code, Some(2), "{result}");
}

#[test]
fn no_push_commits_locally_only() {
    let remote = BareRemote::new();
    let engineer = remote.work_clone();
    let before = remote.head();
    let result = run(
        engineer.path(),
        &[
            "investigate",
            "--cluster",
            "hub",
            "--issue",
            "API timeout",
            "--no-push",
        ],
    );
    let id = result.id();
    assert_eq!(remote.head(), before, "--no-push pushed: {result}");
    let subject = engineer.git(["log", "-1", "--format=%s"]);
    assert_eq!(subject.trim(), format!("request: {id}"));
}

#[test]
fn a_failed_commit_leaves_the_clone_as_it_was() {
    use std::os::unix::fs::PermissionsExt as _;

    let remote = BareRemote::new();
    let engineer = remote.work_clone();
    let hook = engineer.path().join(".git/hooks/pre-commit");
    std::fs::write(&hook, "#!/bin/sh\necho 'hook says no' >&2\nexit 1\n")
        .expect("writing the hook");
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))
        .expect("making the hook executable");
    let before = remote.head();

    let result = run(
        engineer.path(),
        &[
            "investigate",
            "--cluster",
            "hub",
            "--issue",
            "API timeout",
            "--id",
            "r-hook",
        ],
    );
    assert_eq!(result.code, Some(1), "{result}");
    assert!(result.stderr.contains("hook says no"), "{result}");
    assert_eq!(remote.head(), before);
    assert_eq!(engineer.head(), before);
    let status = engineer.git(["status", "--porcelain", "--untracked-files=all"]);
    assert_eq!(status.trim(), "", "the failed request was left behind");
}

/// A folder holding `claude-warroom` as an engineer installs it, and nothing else yet, so
/// that the real `warroom-dev` next to the test binary in `target/` is not what `dev` finds.
fn install_claude_warroom(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).expect("creating the install folder");
    let installed = dir.join("claude-warroom");
    let built = Path::new(env!("CARGO_BIN_EXE_claude-warroom"));
    // A hard link is instant; a temporary folder on another file system needs a copy.
    if std::fs::hard_link(built, &installed).is_err() {
        std::fs::copy(built, &installed).expect("copying claude-warroom");
    }
    installed
}

/// A stand-in `warroom-dev` in `dir` that writes its arguments, one a line, to `dir/args`
/// and exits 7, so a test sees both what it was given and that its exit code came through.
fn fake_warroom_dev(dir: &Path) {
    use std::os::unix::fs::PermissionsExt as _;

    std::fs::create_dir_all(dir).expect("creating the fake's folder");
    let path = dir.join("warroom-dev");
    std::fs::write(
        &path,
        // Only shell builtins: the tests give it a PATH without the usual tools.
        "#!/bin/sh\nprintf '%s\\n' \"$@\" > \"${0%/*}/args\"\nexit 7\n",
    )
    .expect("writing the fake warroom-dev");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .expect("making the fake warroom-dev executable");
}

/// `claude-warroom dev ARGS` run from `installed`, with only `path` as PATH.
fn run_dev(installed: &Path, path: &Path, args: &[&str]) -> Run {
    Run::of(
        Command::new(installed)
            .arg("dev")
            .args(args)
            .env("PATH", path)
            .stdin(Stdio::null())
            .output()
            .expect("running claude-warroom dev"),
    )
}

#[test]
fn dev_runs_the_warroom_dev_beside_it_with_every_argument() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let installed = install_claude_warroom(&dir.path().join("bin"));
    fake_warroom_dev(&dir.path().join("bin"));
    // Another one on PATH: the one beside the binary comes first.
    fake_warroom_dev(&dir.path().join("on-path"));

    let args = [
        "demo",
        "--timeout",
        "2m",
        "--state-dir",
        "/tmp/x y",
        "--help",
    ];
    let result = run_dev(&installed, &dir.path().join("on-path"), &args);
    assert_eq!(result.code, Some(7), "{result}");
    let given = std::fs::read_to_string(dir.path().join("bin/args")).expect("the fake ran");
    assert_eq!(given.lines().collect::<Vec<_>>(), args);
    assert!(!dir.path().join("on-path/args").exists());
}

#[test]
fn dev_runs_the_warroom_dev_on_path_when_none_is_beside_it() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let installed = install_claude_warroom(&dir.path().join("bin"));
    fake_warroom_dev(&dir.path().join("on-path"));

    let result = run_dev(
        &installed,
        &dir.path().join("on-path"),
        &["up", "--clusters", "a,b"],
    );
    assert_eq!(result.code, Some(7), "{result}");
    let given = std::fs::read_to_string(dir.path().join("on-path/args")).expect("the fake ran");
    assert_eq!(
        given.lines().collect::<Vec<_>>(),
        ["up", "--clusters", "a,b"]
    );
}

#[test]
fn dev_without_warroom_dev_says_how_to_build_it() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let installed = install_claude_warroom(&dir.path().join("bin"));
    std::fs::create_dir_all(dir.path().join("empty")).expect("an empty PATH folder");

    let result = run_dev(&installed, &dir.path().join("empty"), &["demo"]);
    assert_eq!(result.code, Some(2), "{result}");
    assert!(
        result
            .stderr
            .contains("needs the local-stack binary `warroom-dev`")
            && result.stderr.contains("cargo build -p warroom-dev"),
        "{result}"
    );
}

#[test]
fn dev_help_says_where_the_local_stack_is() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let result = run(dir.path(), &["dev", "--help"]);
    assert_eq!(result.code, Some(0), "{result}");
    for text in [
        "warroom-dev",
        "dev demo",
        "dev up",
        "cargo build -p warroom-dev",
    ] {
        assert!(result.stdout.contains(text), "no `{text}` in {result}");
    }
}

/// The engineer's command talks only to git: it must not link a NATS client, a daemon or
/// the scripted model (they belong to `warroom-dev`). Read from Cargo's own dependency graph,
/// for the host platform only: `--target all` needs every other platform's crates (such as
/// `anstyle-wincon`) in the cargo cache, which a machine that only built the workspace lacks,
/// and `--offline` then fails.
#[test]
fn the_engineers_command_links_no_daemon_and_no_nats_client() {
    let output = Command::new(env!("CARGO"))
        .args(["tree", "--offline", "--package", "claude-warroom"])
        .args(["--edges", "normal"])
        .args(["--prefix", "none", "--format", "{p}"])
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .output()
        .expect("running cargo tree");
    let tree = Run::of(output);
    assert_eq!(tree.code, Some(0), "{tree}");
    let crates: std::collections::BTreeSet<&str> = tree
        .stdout
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert!(crates.contains("warroom-proto"), "{tree}");
    for forbidden in [
        "async-nats",
        "warroom-runtime",
        "warroom-gateway",
        "warroom-dispatcher",
        "warroom-runner",
        "warroom-publisher",
        "warroom-scripted-model",
        "warroom-dev",
    ] {
        assert!(
            !crates.contains(forbidden),
            "claude-warroom links {forbidden}"
        );
    }
}

#[test]
fn completions_know_every_subcommand_and_the_bash_script_parses() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let subcommands = [
        "investigate",
        "init",
        "status",
        "get-results",
        "validate",
        "schema",
        "strategies",
        "dev",
        "completions",
        "cancel",
        "session",
        "ask",
        "stop",
        "duration",
    ];
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef claude-warroom"),
        ("fish", "complete -c claude-warroom"),
    ] {
        let result = run(dir.path(), &["completions", shell]);
        assert_eq!(result.code, Some(0), "{shell}: {result}");
        assert!(result.stdout.contains(marker), "{shell}: {result}");
        for subcommand in subcommands {
            assert!(
                result.stdout.contains(subcommand),
                "{shell} completion misses `{subcommand}`"
            );
        }
    }
    // bash itself reads the script without a syntax error.
    let bash = run(dir.path(), &["completions", "bash"]);
    let script = dir.path().join("claude-warroom.bash");
    std::fs::write(&script, &bash.stdout).expect("write the script");
    let parsed = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .expect("run bash -n");
    assert!(
        parsed.status.success(),
        "{}",
        String::from_utf8_lossy(&parsed.stderr)
    );

    let unknown = run(dir.path(), &["completions", "tcsh"]);
    assert_eq!(unknown.code, Some(2), "{unknown}");
    assert!(unknown.stderr.contains("bash, zsh, fish"), "{unknown}");
}

/// `claude-warroom wait` as a script runs it: stdout a pipe, every line read as it comes.
struct Watcher {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Watcher {
    fn start(dir: &Path, args: &[&str]) -> Watcher {
        let mut cmd = cli(dir);
        cmd.args(args);
        Watcher::spawn(cmd)
    }

    fn spawn(mut cmd: Command) -> Watcher {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting claude-warroom");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (send, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Watcher {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (up to a generous deadline) for a printed line containing `text`.
    fn expect(&mut self, text: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if self.seen.iter().any(|line| line.contains(text)) {
                return;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!(
                    "no line with {text:?}; printed so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Waits for the process to end; its exit code and everything it printed.
    fn finish(mut self) -> (Option<i32>, String) {
        let status = self.child.wait().expect("waiting for claude-warroom");
        self.seen.extend(self.lines.iter());
        (status.code(), self.seen.join("\n"))
    }
}

fn status_json(status: &RequestStatus) -> String {
    serde_json::to_string_pretty(status).expect("serializing the status") + "\n"
}

#[test]
fn wait_follows_a_request_to_its_end_and_exits_with_its_phase() {
    let remote = BareRemote::new();
    let engineer = remote.work_clone();
    let id = run(
        engineer.path(),
        &[
            "investigate",
            "--clusters",
            "prod-cluster-1,prod-cluster-2",
            "--mode",
            "parallel",
            "--issue",
            "etcd latency",
        ],
    )
    .id();
    let dir = format!("results/{id}");
    let mut watcher = Watcher::start(engineer.path(), &["wait", &id, "--interval", "100ms"]);
    watcher.expect("pending: not picked up by the secure zone yet");

    let mut running = status(
        &id,
        RequestPhase::Running,
        &dir,
        &[
            ("prod-cluster-1", ClusterPhase::Running),
            ("prod-cluster-2", ClusterPhase::Dispatched),
        ],
    );
    running.revision = 2;
    publish(&remote, &dir, &[("status.json", status_json(&running))]);
    watcher.expect(&format!("{id} running"));
    watcher.expect("  prod-cluster-1: running");
    watcher.expect("  prod-cluster-2: dispatched");

    let mut failed = status(
        &id,
        RequestPhase::Failed,
        &dir,
        &[
            ("prod-cluster-1", ClusterPhase::Completed),
            ("prod-cluster-2", ClusterPhase::Failed),
        ],
    );
    failed.revision = 5;
    failed.error = Some("prod-cluster-2 failed".to_owned());
    failed.clusters.get_mut("prod-cluster-2").unwrap().error =
        Some("the agent hit\u{1b}[2J the turn limit".to_owned());
    publish(&remote, &dir, &[("status.json", status_json(&failed))]);
    let (code, out) = watcher.finish();
    assert_eq!(code, Some(4), "failed exits 4:\n{out}");
    assert!(
        out.contains(&format!("{id} failed: prod-cluster-2 failed")),
        "{out}"
    );
    assert!(
        out.contains("  prod-cluster-1: running -> completed"),
        "{out}"
    );
    assert!(
        out.contains("  prod-cluster-2: dispatched -> failed (the agent hit?[2J the turn limit)"),
        "an error reaches the terminal without its control characters:\n{out}"
    );
    assert!(
        out.contains("phase     failed"),
        "the final summary is printed:\n{out}"
    );
    assert!(
        !out.contains('\u{1b}'),
        "no escape sequence in a pipe:\n{out}"
    );
}

#[test]
fn wait_exit_codes_name_the_final_phase_and_timeout() {
    let remote = BareRemote::new();
    let engineer = remote.work_clone();
    let id = run(
        engineer.path(),
        &[
            "investigate",
            "--cluster",
            "prod-cluster-1",
            "--issue",
            "etcd latency",
        ],
    )
    .id();
    let dir = format!("results/{id}");
    let mut revision = 1;
    for (phase, cluster, code) in [
        (RequestPhase::Running, ClusterPhase::Running, 8),
        (RequestPhase::Completed, ClusterPhase::Completed, 0),
        (RequestPhase::TimedOut, ClusterPhase::TimedOut, 5),
        (RequestPhase::Cancelled, ClusterPhase::Cancelled, 6),
        (RequestPhase::Rejected, ClusterPhase::Pending, 7),
    ] {
        let mut now = status(&id, phase, &dir, &[("prod-cluster-1", cluster)]);
        revision += 1;
        now.revision = revision;
        publish(&remote, &dir, &[("status.json", status_json(&now))]);
        let result = run(
            engineer.path(),
            &[
                "status",
                &id,
                "--watch",
                "--interval",
                "100ms",
                "--timeout",
                "1s",
            ],
        );
        assert_eq!(result.code, Some(code), "{phase}: {result}");
        if code == 8 {
            assert!(result.stderr.contains("is not final after"), "{result}");
        }
    }
    // --json --watch: one compact status per line.
    let json = run(engineer.path(), &["wait", &id, "--json"]);
    assert_eq!(json.code, Some(7), "{json}");
    let status: RequestStatus =
        serde_json::from_str(json.stdout.trim()).expect("one JSON status on one line");
    assert_eq!(status.phase, RequestPhase::Rejected);
}

#[test]
fn wait_on_a_terminal_draws_each_clusters_progress_in_place() {
    let remote = BareRemote::new();
    let engineer = remote.work_clone();
    let id = run(
        engineer.path(),
        &[
            "investigate",
            "--cluster",
            "prod-cluster-1",
            "--issue",
            "etcd latency",
        ],
    )
    .id();
    let dir = format!("results/{id}");
    let mut running = status(
        &id,
        RequestPhase::Running,
        &dir,
        &[("prod-cluster-1", ClusterPhase::Running)],
    );
    let cluster = running.clusters.get_mut("prod-cluster-1").unwrap();
    cluster.started_at = Some(warroom_proto::now() - time::Duration::seconds(3675));
    cluster.progress = Some(warroom_proto::Progress {
        at: warroom_proto::now(),
        turns: 3,
        tool_calls: 7,
        refused: 1,
        cost_usd: Some(0.05),
        // A hostile agent's tool call, trying to set the terminal's clipboard.
        last_tool_calls: vec!["oc get pods -n openshift-etcd\u{1b}]52;c;ZXZpbA==\u{7}".to_owned()],
    });
    publish(&remote, &dir, &[("status.json", status_json(&running))]);

    // `script` gives the command a real terminal and copies what it drew to its stdout.
    let binary = env!("CARGO_BIN_EXE_claude-warroom");
    let mut script = hermetic(Command::new("script"), engineer.path());
    script.args([
        "--quiet",
        "--return",
        "--command",
        &format!("{binary} wait {id} --interval 100ms"),
        "/dev/null",
    ]);
    let mut watcher = Watcher::spawn(script);
    watcher.expect("3 turns, 7 tool calls (1 refused), $0.05  last: oc get pods -n openshift-etcd?]52;c;ZXZpbA==?");
    watcher.expect("  prod-cluster-1           running    1h01m");

    let done = status(
        &id,
        RequestPhase::Completed,
        &dir,
        &[("prod-cluster-1", ClusterPhase::Completed)],
    );
    let mut done = done;
    done.revision = 9;
    publish(&remote, &dir, &[("status.json", status_json(&done))]);
    let (code, out) = watcher.finish();
    assert_eq!(code, Some(0), "completed exits 0:\n{out}");
    assert!(
        out.contains("\u{1b}[1F\u{1b}[J"),
        "the view is redrawn in place:\n{out:?}"
    );
    assert!(
        !out.contains("\u{1b}]52"),
        "no escape sequence of the agent reaches the terminal:\n{out:?}"
    );
    assert!(
        out.contains("prod-cluster-1: running -> completed"),
        "{out}"
    );
    assert!(out.contains("phase     completed"), "{out}");
}
