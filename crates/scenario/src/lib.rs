//! The format of the recorded incident scenarios (`tests/scenarios/<name>/`): what an
//! engineer asked, what each cluster's read-only commands printed, what a scripted model does
//! with it, and what a judge expects of the report. `tests/scenarios/README.md` describes it.
//!
//! A scenario is read into [`Scenario`] and checked as a whole ([`Scenario::load`] reports
//! every problem at once, each with its file). [`install_recorded_kubectl`] and
//! [`ClusterRecording::write_answers`] give the agents an `oc`/`kubectl` that answers from the
//! recorded outputs of their own cluster, so that the real CLI runs real Bash tool calls under
//! the real guard without a cluster.
//!
//! Two users read it: the test kit, which replays the scenarios with the scripted model
//! (`warroom_testkit::scenario` turns the scripted parts into its conversations), and
//! `claude-warroom eval --live`, which runs them against a real model. That is why the format
//! is a crate of its own with no test dependency: the engineer's command may link it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;
use warroom_proto::report::NO_RUNBOOK;

/// What writing a cluster's recorded answers can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot write {}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The file of a scenario that says what it is and what is expected.
pub const SCENARIO_FILE: &str = "scenario.yaml";

/// The first words of a synthesis run's prompt, before the request id (for a scripted
/// model's matcher).
pub use warroom_proto::synthesis::PROMPT_HEADING;

/// The scripted model's cross-cluster synthesis of a scenario with several clusters.
pub const SYNTHESIS_FILE: &str = "synthesis.yaml";

/// The name of the kubeconfig [`ClusterRecording::write_answers`] writes: the recorded
/// `oc`/`kubectl` finds its cluster's answers next to the file `KUBECONFIG` names.
pub const KUBECONFIG_FILE: &str = "kubeconfig";

/// One scenario: its `scenario.yaml` and, per cluster, its `<cluster>.yaml`.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The folder's name, which is also the scenario's name.
    pub name: String,
    pub dir: PathBuf,
    pub spec: ScenarioSpec,
    /// In the order `spec.clusters` lists them.
    pub recordings: Vec<ClusterRecording>,
    /// `synthesis.yaml`, for a scenario with several clusters.
    pub synthesis: Option<SynthesisRecording>,
}

/// `synthesis.yaml`: the scripted model's synthesis over the clusters' answers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SynthesisRecording {
    /// The answer (`schema/synthesis.schema.json`), where claims may carry `planted: true`:
    /// a claim whose citations do not hold, which must come out unsupported.
    pub answer: Value,
}

impl SynthesisRecording {
    /// The answer as the model gives it: `planted` removed from every claim.
    pub fn model_answer(&self) -> Value {
        let mut answer = self.answer.clone();
        if let Some(claims) = answer.get_mut("claims").and_then(Value::as_array_mut) {
            for claim in claims {
                if let Some(fields) = claim.as_object_mut() {
                    fields.remove("planted");
                }
            }
        }
        answer
    }

    /// Whether each claim, in order, is marked `planted: true`.
    pub fn planted(&self) -> Vec<bool> {
        self.answer
            .get("claims")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .map(|c| c.get("planted").and_then(Value::as_bool) == Some(true))
            .collect()
    }

    /// What is wrong with it: it must fit the schema, name the shared cause and the outlier
    /// as `spec` records them in supported claims, plant at least one claim, and its claims
    /// must check out, against the clusters' answers with their planted findings
    /// unsupported, exactly where they are not planted.
    fn problems(&self, spec: &SynthesisSpec, recordings: &[ClusterRecording]) -> Vec<String> {
        use warroom_proto::synthesis::{self, AgentSynthesis, ClaimKind, SynthesisCluster};
        let mut problems = Vec::new();
        let answer: AgentSynthesis = match serde_json::from_value(self.model_answer()) {
            Ok(answer) => answer,
            Err(e) => return vec![format!("answer does not fit the synthesis form: {e}")],
        };
        let planted = self.planted();
        if !planted.contains(&true) {
            problems.push("answer needs a claim with `planted: true`".to_owned());
        }
        let names =
            |clusters: &[String]| -> BTreeSet<String> { clusters.iter().cloned().collect() };
        let real = || {
            answer
                .claims
                .iter()
                .zip(&planted)
                .filter(|(_, p)| !**p)
                .map(|(c, _)| c)
        };
        let shared: BTreeSet<String> = spec.shared_by.iter().cloned().collect();
        if !real().any(|c| c.kind == ClaimKind::SharedCause && names(&c.clusters) == shared) {
            problems.push(format!(
                "answer needs a shared_cause claim (not planted) about exactly {:?}",
                spec.shared_by
            ));
        }
        if !real().any(|c| c.kind == ClaimKind::Outlier && c.clusters == [spec.outlier.clone()]) {
            problems.push(format!(
                "answer needs an outlier claim (not planted) about `{}` alone",
                spec.outlier
            ));
        }
        let mut clusters = Vec::new();
        for recording in recordings {
            let Ok(name) = recording.cluster.parse() else {
                continue;
            };
            clusters.push(SynthesisCluster {
                name,
                phase: warroom_proto::ClusterPhase::Completed,
                report: Some(recording.checked_as_planted()),
                left_out: false,
            });
        }
        let input = synthesis::SynthesisInput::new(clusters);
        let checked = synthesis::check(answer, &input);
        for (n, (claim, planted)) in checked.claims.iter().zip(&planted).enumerate() {
            if claim.supported == *planted {
                problems.push(format!(
                    "claim {} is {}planted but its citations {}",
                    n + 1,
                    if *planted { "" } else { "not " },
                    if claim.supported {
                        "hold"
                    } else {
                        "do not hold"
                    }
                ));
            }
        }
        problems
    }
}

/// `scenario.yaml`: everything a live run and its judge need, and nothing scripted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioSpec {
    /// What happened, in a sentence or two, for the people reading the suite.
    pub description: String,
    pub request: RequestSpec,
    pub clusters: Vec<ClusterSpec>,
    /// For a request over several clusters: what they share and which one stands out. The
    /// replay holds the synthesis to it; a live judge reads it.
    #[serde(default)]
    pub synthesis: Option<SynthesisSpec>,
}

/// The request an engineer would write.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    /// The instructions for the agent (`spec.investigation.prompt`).
    pub prompt: String,
    /// `spec.issue.category`.
    pub category: String,
    /// `spec.issue.description`.
    pub description: String,
    /// A runbook name (`--strategy`), or absent for the agent to pick one.
    #[serde(default)]
    pub strategy: Option<String>,
    /// `parallel` or `sequential`; only for more than one cluster (default `parallel`).
    #[serde(default)]
    pub mode: Option<String>,
}

/// One cluster of the request and what its report must show.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    /// Unique across all scenarios: the suite runs them on one stack, a runner per cluster.
    pub name: String,
    /// `hosted` or `hub`.
    #[serde(rename = "type")]
    pub kind: String,
    pub expect: Expectation,
}

/// What a good investigation of one cluster shows.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// The runbook the report must name (a name from `context/runbooks/`, or `none`).
    pub runbook: String,
    /// Commands that must appear in `audit.jsonl`, exactly as the agent runs them.
    pub commands: Vec<String>,
    /// The facts of the root cause, for a judge: each a sentence a report must establish.
    pub root_cause: Vec<String>,
}

/// The cross-cluster picture of a multi-cluster scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SynthesisSpec {
    /// The fault the clusters in `shared_by` have in common.
    pub shared_cause: String,
    pub shared_by: Vec<String>,
    /// The cluster that stands out, and why.
    pub outlier: String,
    pub outlier_cause: String,
}

/// `<cluster>.yaml`: the cluster's recorded outputs and the scripted model's part.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterRecording {
    /// Filled from the file name.
    #[serde(skip)]
    pub cluster: String,
    /// The recorded output of each command: the program and its arguments as the program
    /// receives them (quotes removed), joined by single spaces.
    pub outputs: BTreeMap<String, String>,
    /// The model's tool-call turns, in order.
    pub turns: Vec<RecordedTurn>,
    /// The structured answer (`schema/agent-report.schema.json`), where findings may carry
    /// `planted: true`: a finding whose evidence is fabricated and must come out unsupported.
    pub answer: Value,
}

/// One assistant message of tool calls.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedTurn {
    /// What the model says before its calls.
    #[serde(default)]
    pub text: Option<String>,
    pub calls: Vec<RecordedCall>,
}

/// One Bash call. Without an `id` it gets `toolu_<turn>_<call>` (both from 0).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedCall {
    #[serde(default)]
    pub id: Option<String>,
    pub command: String,
}

/// Everything wrong with one scenario, each problem naming its file.
#[derive(Debug, Clone)]
pub struct ScenarioError {
    pub dir: PathBuf,
    pub problems: Vec<String>,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "scenario {} is invalid:", self.dir.display())?;
        for problem in &self.problems {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ScenarioError {}

/// Every scenario below `dir` (each sub-folder holding a `scenario.yaml`), by name; the
/// errors of all invalid ones at once. Cluster names must be unique across scenarios.
pub fn load_all(dir: &Path) -> Result<Vec<Scenario>, Vec<ScenarioError>> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        vec![ScenarioError {
            dir: dir.to_path_buf(),
            problems: vec![format!("cannot read the scenarios folder: {e}")],
        }]
    })?;
    let mut folders: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.join(SCENARIO_FILE).is_file())
        .collect();
    folders.sort();
    let mut scenarios = Vec::new();
    let mut errors = Vec::new();
    for folder in folders {
        match Scenario::load(&folder) {
            Ok(scenario) => scenarios.push(scenario),
            Err(error) => errors.push(error),
        }
    }
    let mut owners: BTreeMap<&str, &str> = BTreeMap::new();
    for scenario in &scenarios {
        for cluster in &scenario.spec.clusters {
            if let Some(other) = owners.insert(&cluster.name, &scenario.name) {
                errors.push(ScenarioError {
                    dir: scenario.dir.clone(),
                    problems: vec![format!(
                        "cluster `{}` is also a cluster of scenario `{other}`; the suite runs \
                         every scenario on one stack, so cluster names must be unique",
                        cluster.name
                    )],
                });
            }
        }
    }
    if errors.is_empty() {
        Ok(scenarios)
    } else {
        Err(errors)
    }
}

impl Scenario {
    /// Reads and checks the scenario in `dir`.
    pub fn load(dir: &Path) -> Result<Scenario, ScenarioError> {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let fail = |problems: Vec<String>| ScenarioError {
            dir: dir.to_path_buf(),
            problems,
        };
        let spec: ScenarioSpec = read_yaml(&dir.join(SCENARIO_FILE)).map_err(|p| fail(vec![p]))?;
        let mut problems = Vec::new();
        let mut recordings = Vec::new();
        for cluster in &spec.clusters {
            let file = dir.join(format!("{}.yaml", cluster.name));
            match read_yaml::<ClusterRecording>(&file) {
                Ok(mut recording) => {
                    recording.cluster = cluster.name.clone();
                    let file = format!("{}.yaml", cluster.name);
                    problems.extend(
                        recording
                            .problems(&cluster.expect)
                            .into_iter()
                            .map(|p| format!("{file}: {p}")),
                    );
                    recordings.push(recording);
                }
                Err(problem) => problems.push(problem),
            }
        }
        problems.extend(
            spec.problems()
                .into_iter()
                .map(|p| format!("{SCENARIO_FILE}: {p}")),
        );
        let synthesis_file = dir.join(SYNTHESIS_FILE);
        let synthesis = match (&spec.synthesis, synthesis_file.is_file()) {
            (Some(expected), true) => match read_yaml::<SynthesisRecording>(&synthesis_file) {
                Ok(recording) => {
                    problems.extend(
                        recording
                            .problems(expected, &recordings)
                            .into_iter()
                            .map(|p| format!("{SYNTHESIS_FILE}: {p}")),
                    );
                    Some(recording)
                }
                Err(problem) => {
                    problems.push(problem);
                    None
                }
            },
            (Some(_), false) => {
                problems.push(format!(
                    "{SYNTHESIS_FILE} is missing: a scenario with several clusters scripts its \
                     synthesis there"
                ));
                None
            }
            (None, true) => {
                problems.push(format!("{SYNTHESIS_FILE} needs several clusters"));
                None
            }
            (None, false) => None,
        };
        if problems.is_empty() {
            Ok(Scenario {
                name,
                dir: dir.to_path_buf(),
                spec,
                recordings,
                synthesis,
            })
        } else {
            Err(fail(problems))
        }
    }

    /// The request id the scenario's request file carries: `scenario-<name>`.
    pub fn request_id(&self) -> String {
        format!("scenario-{}", self.name)
    }

    /// The expectations and recording of each cluster, in the order `spec.clusters` lists
    /// them.
    pub fn clusters(&self) -> impl Iterator<Item = (&ClusterSpec, &ClusterRecording)> {
        self.spec.clusters.iter().zip(&self.recordings)
    }

    /// The request file (`requests/pending/<id>.yaml`) for this scenario.
    pub fn request_yaml(&self, timeout_secs: u64) -> String {
        let request = &self.spec.request;
        let targets = match self.spec.clusters.as_slice() {
            [one] => format!(
                "  targetCluster:\n    type: {}\n    name: {}\n",
                one.kind, one.name
            ),
            many => {
                let list: String = many
                    .iter()
                    .map(|c| format!("    - type: {}\n      name: {}\n", c.kind, c.name))
                    .collect();
                let mode = request.mode.as_deref().unwrap_or("parallel");
                format!("  targetClusters:\n{list}  coordination:\n    mode: {mode}\n")
            }
        };
        let block = |text: &str| -> String {
            text.trim_end()
                .lines()
                .map(|l| format!("      {l}\n"))
                .collect()
        };
        let strategy = request
            .strategy
            .as_ref()
            .map(|s| format!("    strategy: {s}\n"))
            .unwrap_or_default();
        format!(
            "apiVersion: warroom.intility.io/v1\n\
             kind: TroubleshootingRequest\n\
             metadata:\n  name: {name}\n  timestamp: \"2026-11-24T10:00:00Z\"\n  \
             engineer: platform-engineer-1\n\
             spec:\n{targets}  issue:\n    category: {category}\n    description: |\n{description}  \
             investigation:\n    prompt: |\n{prompt}    allowedTools:\n      - bash\n    \
             timeout: {timeout_secs}\n{strategy}",
            name = self.name,
            category = request.category,
            description = block(&request.description),
            prompt = block(&request.prompt),
        )
    }
}

impl ScenarioSpec {
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.clusters.is_empty() {
            problems.push("`clusters` is empty".to_owned());
        }
        if let Some(strategy) = &self.request.strategy
            && !runbook_exists(strategy)
        {
            problems.push(format!(
                "request.strategy `{strategy}` is not a runbook of context/runbooks/"
            ));
        }
        let names: BTreeSet<&str> = self.clusters.iter().map(|c| c.name.as_str()).collect();
        if names.len() != self.clusters.len() {
            problems.push("a cluster is listed twice".to_owned());
        }
        for cluster in &self.clusters {
            if !matches!(cluster.kind.as_str(), "hosted" | "hub") {
                problems.push(format!(
                    "cluster `{}` has type `{}`; expected `hosted` or `hub`",
                    cluster.name, cluster.kind
                ));
            }
            let expect = &cluster.expect;
            if expect.runbook != NO_RUNBOOK && !runbook_exists(&expect.runbook) {
                problems.push(format!(
                    "cluster `{}`: expect.runbook `{}` is not a runbook of context/runbooks/",
                    cluster.name, expect.runbook
                ));
            }
            if expect.commands.is_empty() || expect.root_cause.is_empty() {
                problems.push(format!(
                    "cluster `{}`: expect needs at least one command and one root-cause fact",
                    cluster.name
                ));
            }
        }
        match (&self.synthesis, self.clusters.len()) {
            (None, n) if n > 1 => problems.push(
                "a scenario with several clusters needs `synthesis` (shared cause, outlier)"
                    .to_owned(),
            ),
            (Some(_), 1) => problems.push("`synthesis` needs several clusters".to_owned()),
            (Some(synthesis), _) => {
                for cluster in synthesis
                    .shared_by
                    .iter()
                    .chain(std::iter::once(&synthesis.outlier))
                {
                    if !names.contains(cluster.as_str()) {
                        problems.push(format!(
                            "synthesis names `{cluster}`, which is not a cluster of this scenario"
                        ));
                    }
                }
                if synthesis.shared_by.len() < 2 || synthesis.shared_by.contains(&synthesis.outlier)
                {
                    problems.push(
                        "synthesis.shared_by needs two clusters or more, the outlier not among \
                         them"
                            .to_owned(),
                    );
                }
            }
            _ => {}
        }
        problems
    }
}

impl ClusterRecording {
    /// The answer as the model gives it: `planted` removed from every finding.
    pub fn model_answer(&self) -> Value {
        let mut answer = self.answer.clone();
        if let Some(findings) = answer.get_mut("findings").and_then(Value::as_array_mut) {
            for finding in findings {
                if let Some(fields) = finding.as_object_mut() {
                    fields.remove("planted");
                }
            }
        }
        answer
    }

    /// The 0-based indices of the findings marked `planted: true`.
    pub fn planted(&self) -> Vec<usize> {
        self.findings()
            .iter()
            .enumerate()
            .filter(|(_, f)| f.get("planted").and_then(Value::as_bool) == Some(true))
            .map(|(i, _)| i)
            .collect()
    }

    /// The answer as the runner would check it were every planted finding unsupported and
    /// every other supported (the replay asserts that it is); findings without evidence.
    pub fn checked_as_planted(&self) -> warroom_proto::CheckedReport {
        use warroom_proto::report::{CheckedFinding, Confidence};
        let planted = self.planted();
        let claim = |f: &Value| {
            f.get("claim")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        warroom_proto::CheckedReport {
            summary: String::new(),
            findings: self
                .findings()
                .iter()
                .enumerate()
                .map(|(i, f)| CheckedFinding {
                    claim: claim(f),
                    supported: !planted.contains(&i),
                    evidence: Vec::new(),
                })
                .collect(),
            ruled_out: Vec::new(),
            confidence: Confidence::High,
            next_steps: Vec::new(),
            not_checked: Vec::new(),
            runbook: None,
        }
    }

    /// The answer's findings as written.
    pub fn findings(&self) -> &[Value] {
        self.answer
            .get("findings")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }

    /// The commands of the tool calls, in order.
    pub fn commands(&self) -> Vec<&str> {
        self.turns
            .iter()
            .flat_map(|t| &t.calls)
            .map(|c| c.command.as_str())
            .collect()
    }

    /// Writes this cluster's answers for the recorded `oc`/`kubectl` into `dir` (an index of
    /// the command lines and one file per output) and a placeholder kubeconfig; returns the
    /// kubeconfig's path, for the runner's `--kubeconfig`.
    pub fn write_answers(&self, dir: &Path, scenario: &str) -> Result<PathBuf> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut index = String::new();
        for (n, (command, output)) in self.outputs.iter().enumerate() {
            index.push_str(&format!("{command}\t{n}\n"));
            write(&dir.join(format!("{n}.out")), output)?;
        }
        write(&dir.join("index.tsv"), &index)?;
        write(
            &dir.join("origin"),
            &format!("cluster {} of scenario {scenario}", self.cluster),
        )?;
        let kubeconfig = dir.join(KUBECONFIG_FILE);
        write(
            &kubeconfig,
            "# Recorded answers stand in for this cluster; nothing connects.\n\
             apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n",
        )?;
        Ok(kubeconfig)
    }

    /// What is wrong with the recording, given what its cluster is expected to show.
    fn problems(&self, expect: &Expectation) -> Vec<String> {
        let mut problems = Vec::new();
        for command in self.outputs.keys() {
            let words: Vec<&str> = command.split(' ').collect();
            if !matches!(words.first(), Some(&("oc" | "kubectl")))
                || words.iter().any(|w| w.is_empty())
                || command.contains(['\t', '\n'])
            {
                problems.push(format!(
                    "outputs: `{command}` must be `oc` or `kubectl` and its arguments, joined \
                     by single spaces, with no tab or line break"
                ));
            }
        }
        let mut ids = BTreeSet::new();
        for (t, turn) in self.turns.iter().enumerate() {
            if turn.calls.is_empty() {
                problems.push(format!("turns[{t}] has no calls"));
            }
            for (c, call) in turn.calls.iter().enumerate() {
                if !ids.insert(call_id(call, t, c)) {
                    problems.push(format!("turns[{t}].calls[{c}]: its id is used twice"));
                }
                match recorded_key(&call.command) {
                    Some(key) if self.outputs.contains_key(&key) => {}
                    Some(key) => problems.push(format!(
                        "turns[{t}].calls[{c}] runs `{key}`, which has no recorded output"
                    )),
                    None => problems.push(format!(
                        "turns[{t}].calls[{c}] `{}` does not start with `oc` or `kubectl`",
                        call.command
                    )),
                }
            }
        }
        let commands = self.commands();
        for required in &expect.commands {
            if !commands.contains(&required.as_str()) {
                problems.push(format!(
                    "expect.commands has `{required}`, which no scripted call runs"
                ));
            }
        }
        let runbook = self.answer.get("runbook").and_then(Value::as_str);
        if runbook != Some(expect.runbook.as_str()) {
            problems.push(format!(
                "answer.runbook is {runbook:?}, the expected runbook is `{}`",
                expect.runbook
            ));
        }
        let findings = self.findings();
        if self.planted().is_empty() || self.planted().len() == findings.len() {
            problems.push(
                "answer.findings needs supported findings and at least one `planted: true`"
                    .to_owned(),
            );
        }
        problems
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|source| Error::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// The id a call gets: its own, or `toolu_<turn>_<call>`.
pub fn call_id(call: &RecordedCall, turn: usize, index: usize) -> String {
    call.id
        .clone()
        .unwrap_or_else(|| format!("toolu_{turn}_{index}"))
}

/// The command line the recorded `oc`/`kubectl` of `command` receives: the words before the
/// first unquoted `|`, quotes removed, joined by single spaces. `None` when that is not an
/// `oc` or `kubectl` call.
pub fn recorded_key(command: &str) -> Option<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in command.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '|') => break,
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    // `2>&1` and `2>/dev/null` are the shell's, not the program's.
    words.retain(|w| w != "2>&1" && w != "2>/dev/null");
    matches!(words.first().map(String::as_str), Some("oc" | "kubectl")).then(|| words.join(" "))
}

/// Whether `name` is a runbook of `context/runbooks/` (its index, compiled into `proto`).
fn runbook_exists(name: &str) -> bool {
    warroom_proto::strategy::find(name).is_some()
}

fn read_yaml<T: serde::de::DeserializeOwned>(file: &Path) -> Result<T, String> {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let text = std::fs::read_to_string(file).map_err(|e| format!("{name}: cannot read it: {e}"))?;
    serde_yaml_ng::from_str(&text).map_err(|e| format!("{name}: {e}"))
}

/// The recorded `oc`/`kubectl`: answers a call from the index next to `$KUBECONFIG` (written
/// by [`ClusterRecording::write_answers`]) and fails, naming the cluster, on anything else.
const RECORDED_KUBECTL: &str = r#"#!/bin/sh
# Recorded `oc`/`kubectl` of the incident scenarios (tests/scenarios/README.md): prints the
# recorded output of this exact command line for the cluster whose answers lie next to
# $KUBECONFIG. It never contacts a cluster.
dir=$(dirname "${KUBECONFIG:?the recorded kubectl needs KUBECONFIG}")
call="$(basename "$0") $*"
n=$(K="$call" awk -F '\t' '$1 == ENVIRON["K"] { print $2; exit }' "$dir/index.tsv")
if [ -n "$n" ]; then
  cat "$dir/$n.out"
  exit 0
fi
printf 'error: no recorded output for `%s` (%s); record it in the scenario or run a recorded command\n' \
  "$call" "$(cat "$dir/origin")" >&2
exit 1
"#;

/// Installs the recorded `oc` and `kubectl` in `bin` (created if need be).
pub fn install_recorded_kubectl(bin: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(bin).map_err(|source| Error::Write {
        path: bin.to_path_buf(),
        source,
    })?;
    for name in ["kubectl", "oc"] {
        let path = bin.join(name);
        write(&path, RECORDED_KUBECTL)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .map_err(|source| Error::Write { path, source })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorded_key_is_the_program_and_its_words_before_a_pipe() {
        assert_eq!(
            recorded_key("oc get pods -n clusters-a -o wide | grep etcd").as_deref(),
            Some("oc get pods -n clusters-a -o wide")
        );
        assert_eq!(
            recorded_key("oc  get hc -o jsonpath='{.items[*].status}' 2>&1").as_deref(),
            Some("oc get hc -o jsonpath={.items[*].status}")
        );
        assert_eq!(
            recorded_key(r#"oc logs x --since=1h | grep -E "a|b""#).as_deref(),
            Some("oc logs x --since=1h")
        );
        assert_eq!(recorded_key("grep x"), None);
    }

    /// The recorded `oc` answers a recorded command line with its output, and anything else
    /// with an error naming the command and the scenario's cluster, exit code 1.
    #[test]
    fn the_recorded_kubectl_answers_its_cluster_and_refuses_the_rest() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let bin = dir.path().join("bin");
        install_recorded_kubectl(&bin).expect("install the recorded kubectl");
        let recording = ClusterRecording {
            cluster: "osl-prod-01".to_owned(),
            outputs: BTreeMap::from([(
                "oc get co -o jsonpath={.items[*].metadata.name}".to_owned(),
                "dns ingress\n".to_owned(),
            )]),
            turns: Vec::new(),
            answer: Value::Null,
        };
        let kubeconfig = recording
            .write_answers(&dir.path().join("osl-prod-01"), "demo")
            .expect("write the answers");
        let run = |args: &[&str]| {
            std::process::Command::new(bin.join("oc"))
                .args(args)
                .env("KUBECONFIG", &kubeconfig)
                .output()
                .expect("run the recorded oc")
        };
        let known = run(&["get", "co", "-o", "jsonpath={.items[*].metadata.name}"]);
        assert!(known.status.success(), "{known:?}");
        assert_eq!(String::from_utf8_lossy(&known.stdout), "dns ingress\n");
        let unknown = run(&["get", "nodes"]);
        assert_eq!(unknown.status.code(), Some(1), "{unknown:?}");
        assert!(unknown.stdout.is_empty(), "{unknown:?}");
        let stderr = String::from_utf8_lossy(&unknown.stderr);
        assert!(
            stderr.contains("no recorded output for `oc get nodes`")
                && stderr.contains("cluster osl-prod-01 of scenario demo"),
            "{stderr}"
        );
    }
}
