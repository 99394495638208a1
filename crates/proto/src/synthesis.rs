//! The cross-cluster synthesis: a final model pass, without tools, over the checked reports
//! of a request that targets several clusters.
//!
//! When every cluster of such a request has ended and at least two gave a structured answer
//! with supported findings, the dispatcher sends one of the request's runners a synthesis
//! task ([`SynthesisInput`] in [`crate::Task::synthesis`]). The runner runs the Claude Code CLI
//! with no tools and the [`AgentSynthesis`] schema as its `--json-schema`, over the reports
//! only, and checks every claim's citations against them with [`check`]: a claim is
//! supported only when each finding it cites exists, is itself supported, and every cluster
//! the claim speaks for is cited. Unsupported claims are kept and marked, as findings are.
//! A synthesis that fails or never comes only adds a note: the cluster reports stand.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::report::{CheckedReport, Confidence, FindingCounts, MAX_FIELD_CHARS, MAX_ITEMS};
use crate::status::ClusterPhase;
use crate::{ClusterName, RequestId};

/// The first words of every synthesis prompt, followed by the request id: what tells a
/// synthesis run from an investigation (the scripted model's tests match on it).
pub const PROMPT_HEADING: &str = "Cross-cluster synthesis of request";

/// The most clusters one claim may speak for, and the most citations it may carry.
pub const MAX_CLAIM_CLUSTERS: usize = 100;

/// How many bytes of cluster reports one synthesis prompt carries at most. Clusters whose
/// report does not fit are still listed, with their phase and "report left out for size".
pub const MAX_INPUT_BYTES: usize = 256 * 1024;

/// What the synthesis runs over: every cluster of the request in the request's order, with
/// its checked report when it gave one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthesisInput {
    pub clusters: Vec<SynthesisCluster>,
}

/// One cluster as the synthesis sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SynthesisCluster {
    pub name: ClusterName,
    pub phase: ClusterPhase,
    /// The cluster's checked report; `None` when it gave none, or it did not fit
    /// [`MAX_INPUT_BYTES`] (`left_out`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<CheckedReport>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub left_out: bool,
}

impl SynthesisInput {
    /// The input for these clusters, their reports kept in order while they fit
    /// [`MAX_INPUT_BYTES`].
    pub fn new(clusters: impl IntoIterator<Item = SynthesisCluster>) -> SynthesisInput {
        let mut used = 0usize;
        let clusters = clusters
            .into_iter()
            .map(|mut cluster| {
                if let Some(report) = &cluster.report {
                    let size = serde_json::to_vec(report).map_or(usize::MAX, |b| b.len());
                    if used.saturating_add(size) > MAX_INPUT_BYTES {
                        cluster.report = None;
                        cluster.left_out = true;
                    } else {
                        used += size;
                    }
                }
                cluster
            })
            .collect();
        SynthesisInput { clusters }
    }

    /// How many clusters have a report with at least one supported finding: a synthesis is
    /// worth running from two.
    pub fn with_supported_findings(&self) -> usize {
        self.clusters
            .iter()
            .filter(|c| c.report.as_ref().is_some_and(|r| r.counts().supported > 0))
            .count()
    }
}

/// The synthesis as the model must answer it (`--json-schema`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentSynthesis {
    /// Two to five sentences: what the clusters have in common, what differs, which stand
    /// out, and the most likely shared cause.
    #[schemars(length(max = 4000))]
    pub summary: String,
    /// Each statement of the synthesis, with the cluster findings it rests on.
    #[schemars(length(min = 1, max = 20))]
    pub claims: Vec<SynthesisClaim>,
    pub confidence: Confidence,
}

/// What a claim of the synthesis is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClaimKind {
    /// The most likely cause that several clusters share.
    SharedCause,
    /// Something the clusters have in common.
    Common,
    /// Something that differs between clusters.
    Difference,
    /// A cluster that stands out from the others, and why.
    Outlier,
}

impl ClaimKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimKind::SharedCause => "shared cause",
            ClaimKind::Common => "common",
            ClaimKind::Difference => "difference",
            ClaimKind::Outlier => "outlier",
        }
    }
}

/// One statement of the synthesis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SynthesisClaim {
    pub kind: ClaimKind,
    /// The statement, in one or two sentences.
    #[schemars(length(max = 4000))]
    pub claim: String,
    /// The clusters the statement is about (for an outlier: the cluster that stands out).
    #[schemars(length(min = 1, max = 100))]
    pub clusters: Vec<String>,
    /// The cluster findings it rests on: at least one finding of each cluster it names.
    #[schemars(length(min = 1, max = 100))]
    pub cites: Vec<Citation>,
}

/// One cluster finding a claim rests on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Citation {
    /// The cluster's name, as the reports give it.
    pub cluster: String,
    /// The finding's number in that cluster's report (1 is its first finding).
    #[schemars(range(min = 1))]
    pub finding: u32,
}

/// The synthesis after its citations were checked against the cluster reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckedSynthesis {
    pub summary: String,
    pub claims: Vec<CheckedClaim>,
    pub confidence: Confidence,
}

impl CheckedSynthesis {
    /// How many claims are supported and how many are not.
    pub fn counts(&self) -> FindingCounts {
        let supported = self.claims.iter().filter(|c| c.supported).count();
        FindingCounts {
            supported: u32::try_from(supported).unwrap_or(u32::MAX),
            unsupported: u32::try_from(self.claims.len() - supported).unwrap_or(u32::MAX),
        }
    }
}

/// A claim and the verdict on its citations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckedClaim {
    pub kind: ClaimKind,
    pub claim: String,
    pub clusters: Vec<String>,
    pub cites: Vec<CheckedCitation>,
    /// Every citation holds and every cluster the claim names is cited.
    pub supported: bool,
    /// Why the claim is not supported, beyond its citations' own problems (a cluster it
    /// names but does not cite); empty when it is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// One citation and what the check found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckedCitation {
    pub cluster: String,
    pub finding: u32,
    /// Why the citation does not hold; `None` when it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Checks every claim's citations against the cluster reports the synthesis ran over.
pub fn check(answer: AgentSynthesis, input: &SynthesisInput) -> CheckedSynthesis {
    let claims = answer
        .claims
        .into_iter()
        .take(MAX_ITEMS)
        .map(|claim| check_claim(claim, input))
        .collect();
    CheckedSynthesis {
        summary: cut(answer.summary),
        claims,
        confidence: answer.confidence,
    }
}

fn check_claim(claim: SynthesisClaim, input: &SynthesisInput) -> CheckedClaim {
    let cites: Vec<CheckedCitation> = claim
        .cites
        .into_iter()
        .take(MAX_CLAIM_CLUSTERS)
        .map(|cite| {
            let problem = citation_problem(&cite, input);
            CheckedCitation {
                cluster: cite.cluster,
                finding: cite.finding,
                problem,
            }
        })
        .collect();
    let clusters: Vec<String> = claim
        .clusters
        .into_iter()
        .take(MAX_CLAIM_CLUSTERS)
        .collect();
    let mut problems = Vec::new();
    if cites.is_empty() {
        problems.push("it cites no finding".to_owned());
    }
    for cluster in &clusters {
        if !input.clusters.iter().any(|c| c.name.as_str() == cluster) {
            problems.push(format!(
                "it names {cluster:?}, which is not a cluster of this request"
            ));
        } else if !cites.iter().any(|c| &c.cluster == cluster) {
            problems.push(format!(
                "it speaks for {cluster} but cites none of its findings"
            ));
        }
    }
    let supported = problems.is_empty() && cites.iter().all(|c| c.problem.is_none());
    CheckedClaim {
        kind: claim.kind,
        claim: cut(claim.claim),
        clusters,
        cites,
        supported,
        problems,
    }
}

/// Why `cite` does not hold against the reports, or `None`.
fn citation_problem(cite: &Citation, input: &SynthesisInput) -> Option<String> {
    let Some(cluster) = input
        .clusters
        .iter()
        .find(|c| c.name.as_str() == cite.cluster)
    else {
        return Some(format!(
            "{:?} is not a cluster of this request",
            cite.cluster
        ));
    };
    let Some(report) = &cluster.report else {
        return Some(format!("{} has no structured report to cite", cluster.name));
    };
    let number = usize::try_from(cite.finding).unwrap_or(usize::MAX);
    let Some(finding) = number.checked_sub(1).and_then(|i| report.findings.get(i)) else {
        return Some(format!(
            "{} has no finding {} (its report has {})",
            cluster.name,
            cite.finding,
            report.findings.len()
        ));
    };
    (!finding.supported).then(|| {
        format!(
            "finding {} of {} is itself unsupported by its evidence",
            cite.finding, cluster.name
        )
    })
}

/// A field cut to [`MAX_FIELD_CHARS`] characters, as the schema bounds it.
fn cut(text: String) -> String {
    match text.char_indices().nth(MAX_FIELD_CHARS) {
        Some((at, _)) => text[..at].to_owned(),
        None => text,
    }
}

/// The JSON Schema of [`AgentSynthesis`], as `--json-schema` takes it. The committed copy is
/// `schema/synthesis.schema.json`.
pub fn schema() -> serde_json::Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(AgentSynthesis))
        .expect("a generated schema is always valid JSON");
    // As for the agent's report: the CLI refuses the draft 2020-12 meta-schema URI.
    if let Some(fields) = schema.as_object_mut() {
        fields.remove("$schema");
    }
    schema
}

/// The schema as the committed file holds it: pretty-printed, with a final newline.
pub fn schema_pretty() -> String {
    let mut text = serde_json::to_string_pretty(&schema()).expect("a JSON value always serializes");
    text.push('\n');
    text
}

/// The prompt of a synthesis run over `input`: the request's own words, then each cluster's
/// report as the runner checked it, findings numbered and marked.
pub fn prompt(request: &RequestId, engineer_prompt: &str, input: &SynthesisInput) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "{PROMPT_HEADING} {request}\n\n\
         Several clusters were investigated for the same request. Their reports follow, each \
         finding numbered and marked SUPPORTED (its evidence checked against the tool output) \
         or UNSUPPORTED. You have no tools: answer from these reports only.\n\n\
         Say what the clusters have in common, what differs, which clusters stand out, and the \
         most likely shared cause. Every claim names the clusters it is about and cites, for \
         each of them, the supported findings it rests on as (cluster, finding number). A \
         claim that cites an unsupported or missing finding is shown to the engineer as \
         unsupported. Do not repeat the reports; do not propose commands beyond what the \
         reports' next steps say.\n\n\
         ## The engineer's request\n\n{}\n",
        engineer_prompt.trim()
    );
    for cluster in &input.clusters {
        // Writing to a String cannot fail; the results are ignored on purpose.
        let _ = write!(
            out,
            "\n## {} ({})\n\n",
            cluster.name,
            cluster.phase.as_str()
        );
        let Some(report) = &cluster.report else {
            out.push_str(if cluster.left_out {
                "(report left out: the reports before it fill the synthesis's input)\n"
            } else {
                "(no structured report)\n"
            });
            continue;
        };
        let _ = writeln!(
            out,
            "Summary ({} confidence): {}",
            report.confidence.as_str(),
            report.summary.trim()
        );
        if let Some(runbook) = &report.runbook {
            let _ = writeln!(out, "Runbook: {runbook}");
        }
        let _ = writeln!(out, "Findings:");
        for (n, finding) in report.findings.iter().enumerate() {
            let mark = if finding.supported {
                "SUPPORTED"
            } else {
                "UNSUPPORTED"
            };
            let _ = writeln!(out, "{}. [{mark}] {}", n + 1, finding.claim.trim());
            for quote in finding.evidence.iter().flat_map(|e| e.quote.iter()).take(5) {
                let _ = writeln!(out, "   > {}", quote.trim());
            }
        }
        for ruled in &report.ruled_out {
            let _ = writeln!(
                out,
                "Ruled out: {} ({})",
                ruled.hypothesis.trim(),
                ruled.why.trim()
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{CheckedEvidence, CheckedFinding};

    fn report(findings: &[bool]) -> CheckedReport {
        CheckedReport {
            summary: "s".to_owned(),
            findings: findings
                .iter()
                .map(|&supported| CheckedFinding {
                    claim: "c".to_owned(),
                    supported,
                    evidence: vec![CheckedEvidence {
                        tool_use_id: None,
                        command: None,
                        quote: vec!["q".to_owned()],
                        audit_id: None,
                        problem: None,
                    }],
                })
                .collect(),
            ruled_out: Vec::new(),
            confidence: Confidence::High,
            next_steps: Vec::new(),
            not_checked: Vec::new(),
            runbook: None,
        }
    }

    fn cluster(name: &str, findings: Option<&[bool]>) -> SynthesisCluster {
        SynthesisCluster {
            name: name.parse().expect("a valid name"),
            phase: ClusterPhase::Completed,
            report: findings.map(report),
            left_out: false,
        }
    }

    fn claim(kind: ClaimKind, clusters: &[&str], cites: &[(&str, u32)]) -> SynthesisClaim {
        SynthesisClaim {
            kind,
            claim: "x".to_owned(),
            clusters: clusters.iter().map(|c| (*c).to_owned()).collect(),
            cites: cites
                .iter()
                .map(|(cluster, finding)| Citation {
                    cluster: (*cluster).to_owned(),
                    finding: *finding,
                })
                .collect(),
        }
    }

    #[test]
    fn a_claim_holds_only_when_every_cluster_it_names_is_cited_by_a_supported_finding() {
        let input = SynthesisInput::new([
            cluster("a", Some(&[true, false])),
            cluster("b", Some(&[true])),
            cluster("c", None),
        ]);
        let answer = AgentSynthesis {
            summary: "s".to_owned(),
            claims: vec![
                claim(ClaimKind::SharedCause, &["a", "b"], &[("a", 1), ("b", 1)]),
                claim(ClaimKind::Common, &["a", "b"], &[("a", 1)]),
                claim(ClaimKind::Common, &["a"], &[("a", 2)]),
                claim(ClaimKind::Outlier, &["a"], &[("a", 3)]),
                claim(ClaimKind::Outlier, &["c"], &[("c", 1)]),
                claim(ClaimKind::Difference, &["zz"], &[("zz", 1)]),
                claim(ClaimKind::Difference, &["a"], &[("a", 0)]),
            ],
            confidence: Confidence::Medium,
        };
        let checked = check(answer, &input);
        let verdicts: Vec<bool> = checked.claims.iter().map(|c| c.supported).collect();
        assert_eq!(
            verdicts,
            [true, false, false, false, false, false, false],
            "{checked:#?}"
        );
        assert_eq!(
            checked.claims[1].problems,
            ["it speaks for b but cites none of its findings"]
        );
        let problem = |claim: usize| checked.claims[claim].cites[0].problem.clone();
        assert_eq!(
            problem(2).as_deref(),
            Some("finding 2 of a is itself unsupported by its evidence")
        );
        assert_eq!(
            problem(3).as_deref(),
            Some("a has no finding 3 (its report has 2)")
        );
        assert_eq!(
            problem(4).as_deref(),
            Some("c has no structured report to cite")
        );
        assert_eq!(
            problem(5).as_deref(),
            Some("\"zz\" is not a cluster of this request")
        );
        assert_eq!(
            problem(6).as_deref(),
            Some("a has no finding 0 (its report has 2)")
        );
        assert_eq!(
            checked.counts(),
            FindingCounts {
                supported: 1,
                unsupported: 6
            }
        );
    }

    #[test]
    fn reports_past_the_input_budget_are_left_out_but_their_clusters_listed() {
        let mut big = report(&[true]);
        big.summary = "x".repeat(MAX_INPUT_BYTES / 2 + 1);
        let with = |name: &str| SynthesisCluster {
            report: Some(big.clone()),
            ..cluster(name, None)
        };
        let input = SynthesisInput::new([with("a"), with("b"), cluster("c", Some(&[true]))]);
        let left: Vec<bool> = input.clusters.iter().map(|c| c.left_out).collect();
        assert_eq!(left, [false, true, false]);
        assert_eq!(input.with_supported_findings(), 2);
        let prompt = prompt(&"req-1".parse().expect("an id"), "why?", &input);
        assert!(prompt.starts_with(&format!("{PROMPT_HEADING} req-1")));
        assert!(
            prompt.contains("## b (completed)\n\n(report left out"),
            "{prompt}"
        );
        assert!(prompt.contains("1. [SUPPORTED] c\n   > q"), "{prompt}");
    }

    #[test]
    fn the_schema_requires_citations_and_names_the_claim_kinds() {
        let schema = schema();
        assert!(schema.get("$schema").is_none());
        let text = schema.to_string();
        for word in ["shared_cause", "outlier", "cites", "clusters"] {
            assert!(text.contains(word), "{word} in {text}");
        }
    }
}
