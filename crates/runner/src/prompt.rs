//! The prompt the agent receives: the engineer's instructions, the context of the request, in
//! sequential mode what the earlier clusters found, and how to end.

use std::fmt::Write as _;

use warroom_proto::{CoordinationMode, Task};

/// Builds the prompt for `task`. Pure, so what the agent is told can be tested and reviewed.
pub fn build(task: &Task) -> String {
    let mut out = String::new();
    out.push_str(task.prompt.trim());
    push_context(&mut out, task);
    if !task.prior_findings.is_empty() {
        let mode = task.mode.unwrap_or(CoordinationMode::Sequential);
        let _ = writeln!(
            out,
            "\n## Findings of the clusters investigated before this one\n\nThis is a {} \
             investigation. The clusters below were investigated first; build on what they \
             found and say where this cluster confirms or contradicts it.",
            mode.as_str()
        );
        for finding in &task.prior_findings {
            let _ = writeln!(
                out,
                "\n### {} ({})\n\n{}",
                finding.cluster,
                finding.phase.as_str(),
                finding.report.trim_end()
            );
        }
    }

    out.push_str(HOW_TO_WORK);
    push_runbook(&mut out, task.strategy.as_deref());
    out.push_str(
        "\n## Report\n\
         End by calling the StructuredOutput tool once with your report: a short summary; \
         your findings, each with its evidence: the `tool_use_id` and the exact `command` of \
         the call it came from and the lines of that call's output copied verbatim (one line \
         per quote entry; the runner checks every quoted line against the call's output and \
         marks a finding whose evidence it cannot find as unsupported); the hypotheses you \
         ruled out and why; your confidence; next steps for a human with write access (you \
         never take them); what you could not check; and the runbook you used.\n",
    );
    out
}

/// The prompt of a follow-up turn. When the turn continues the cluster's conversation, the
/// agent has its investigation before it, and the prompt is the engineer's question as
/// asked. When there is none to continue, the question comes with the request's context and
/// how to work, as an investigation's prompt has them.
pub fn follow_up(task: &Task, question: &str, resumed: bool) -> String {
    let mut out = String::new();
    out.push_str(question.trim());
    if resumed {
        return out;
    }
    out.push_str(
        "\n\nThis is a follow-up question about an earlier investigation whose conversation \
         was not kept: look again where you need to, and answer in prose.",
    );
    push_context(&mut out, task);
    out.push_str(HOW_TO_WORK);
    out
}

/// The request's context, as a `## Context` section.
fn push_context(out: &mut String, task: &Task) {
    out.push_str("\n\n## Context\n");
    // Writing to a String cannot fail; the results are ignored on purpose.
    let _ = writeln!(
        out,
        "- Cluster: {} ({} cluster)",
        task.cluster.name,
        task.cluster.kind.as_str()
    );
    if let Some(namespace) = &task.namespace {
        let _ = writeln!(out, "- Namespace: {namespace}");
    }
    let _ = writeln!(out, "- Issue category: {}", task.issue.category);
    let _ = writeln!(
        out,
        "- Issue description: {}",
        task.issue.description.trim()
    );
    if !task.issue.affected_resources.is_empty() {
        let _ = writeln!(
            out,
            "- Affected resources: {}",
            task.issue.affected_resources.join(", ")
        );
    }
    if let Some(strategy) = &task.strategy {
        let _ = writeln!(out, "- Troubleshooting strategy: {strategy}");
    }
    if let Some(mode) = task.mode {
        let _ = writeln!(out, "- Coordination: {} investigation", mode.as_str());
    }
    let _ = writeln!(out, "- Request: {}", task.request_id);
}

/// How the agent is to use its tools, the same for every run.
const HOW_TO_WORK: &str = "\n## How to work\n\
         - You have read-only access. Use `kubectl` or `oc` with a read-only verb first \
         (`kubectl get ...`, `kubectl describe ...`, `kubectl logs ...`, `oc adm top ...`); \
         put flags such as `-n` after the verb. Filter output with pipes into `grep`, `head`, \
         `tail`, `wc`, `sort`, `uniq`, `jq`, `cut`, `awk '{print $1}'` or `sed -n '2,5p'`.\n\
         - Do not read Secrets and do not try to change anything in the cluster: such calls \
         are refused and recorded.\n\
         - Run one command per call; chained commands (`&&`, `;`, `$(...)`) are refused.\n\
         \n";

/// The runbooks' text, compiled in: a task naming one gets it in its prompt (the agent's
/// workspace is empty). A test checks that every runbook of the index is here.
const RUNBOOKS: &[(&str, &str)] = &[
    (
        "control-plane-health",
        include_str!("../../../context/runbooks/control-plane-health.md"),
    ),
    ("etcd", include_str!("../../../context/runbooks/etcd.md")),
    (
        "api-latency",
        include_str!("../../../context/runbooks/api-latency.md"),
    ),
    (
        "hosted-cluster-nodepools",
        include_str!("../../../context/runbooks/hosted-cluster-nodepools.md"),
    ),
    (
        "hosted-cluster-upgrade",
        include_str!("../../../context/runbooks/hosted-cluster-upgrade.md"),
    ),
    (
        "konnectivity",
        include_str!("../../../context/runbooks/konnectivity.md"),
    ),
    (
        "ingress-routes",
        include_str!("../../../context/runbooks/ingress-routes.md"),
    ),
    (
        "certificates",
        include_str!("../../../context/runbooks/certificates.md"),
    ),
    (
        "image-pulls",
        include_str!("../../../context/runbooks/image-pulls.md"),
    ),
    (
        "ovn-kubernetes",
        include_str!("../../../context/runbooks/ovn-kubernetes.md"),
    ),
    ("oauth", include_str!("../../../context/runbooks/oauth.md")),
    (
        "cluster-operators",
        include_str!("../../../context/runbooks/cluster-operators.md"),
    ),
    (
        "workload-crashloop",
        include_str!("../../../context/runbooks/workload-crashloop.md"),
    ),
];

/// The runbook part: the runbook the request names, or the index to pick one from.
fn push_runbook(out: &mut String, strategy: Option<&str>) {
    match strategy.and_then(warroom_proto::strategy::find) {
        Some(runbook) => {
            let _ = writeln!(
                out,
                "\n## Runbook\n\nFollow the runbook `{}` ({}), below. Give `{}` as the \
                 runbook of your report.\n",
                runbook.name, runbook.description, runbook.name
            );
            if let Some((_, text)) = RUNBOOKS.iter().find(|(name, _)| *name == runbook.name) {
                out.push_str(text.trim_end());
                out.push('\n');
            }
        }
        None => {
            out.push_str(
                "\n## Runbook\n\nNo runbook was named. Pick the one below whose line matches \
                 the symptom best (when several match, start lowest in the stack: nodes, \
                 network, etcd, API), follow it, and give its name as the runbook of your \
                 report (`none` if none fits).\n\n",
            );
            for runbook in warroom_proto::strategies() {
                let _ = writeln!(out, "- `{}`: {}", runbook.name, runbook.description);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use warroom_proto::{ClusterPhase, ClusterRef, ClusterType, Finding, Issue, Tool};

    use super::*;

    fn task() -> Task {
        Task {
            request_id: "2024-01-15-api-timeout".parse().unwrap(),
            results_dir: "results/2024-01-15-api-timeout".parse().unwrap(),
            cluster: ClusterRef {
                kind: ClusterType::Hosted,
                name: "prod-cluster-1".parse().unwrap(),
            },
            engineer: "jane".to_owned(),
            issue: Issue {
                category: "api-timeout".to_owned(),
                description: "API calls time out under load".to_owned(),
                affected_resources: vec!["deployment/api".to_owned(), "svc/api".to_owned()],
            },
            prompt: "Find out why the API times out.".to_owned(),
            allowed_tools: vec![Tool::Bash],
            timeout_secs: 600,
            strategy: Some("control-plane-health".to_owned()),
            namespace: Some("clusters-prod-1".to_owned()),
            mode: None,
            prior_findings: Vec::new(),
            synthesis: None,
            follow_up: None,
            pod: None,
        }
    }

    #[test]
    fn prompt_starts_with_the_request_and_carries_the_context() {
        let prompt = build(&task());
        assert!(prompt.starts_with("Find out why the API times out.\n\n## Context\n"));
        for line in [
            "- Cluster: prod-cluster-1 (hosted cluster)",
            "- Namespace: clusters-prod-1",
            "- Issue category: api-timeout",
            "- Issue description: API calls time out under load",
            "- Affected resources: deployment/api, svc/api",
            "- Troubleshooting strategy: control-plane-health",
        ] {
            assert!(prompt.contains(line), "missing {line:?} in\n{prompt}");
        }
        assert!(!prompt.contains("Findings of the clusters"));
        assert!(prompt.contains("End by calling the StructuredOutput tool"));
        assert!(prompt.contains("Follow the runbook `control-plane-health`"));
        assert!(!prompt.contains("No runbook was named"));
    }

    #[test]
    fn every_runbook_of_the_index_is_compiled_in() {
        for runbook in warroom_proto::strategies() {
            assert!(
                RUNBOOKS.iter().any(|(name, _)| *name == runbook.name),
                "add {} to RUNBOOKS",
                runbook.name
            );
        }
        let prompt = build(&task());
        assert!(
            prompt.contains("## Symptoms") || prompt.contains("Symptoms"),
            "{prompt}"
        );
    }

    #[test]
    fn optional_context_is_left_out_when_absent() {
        let mut bare = task();
        bare.namespace = None;
        bare.strategy = None;
        bare.issue.affected_resources.clear();
        let prompt = build(&bare);
        assert!(!prompt.contains("Namespace:"));
        assert!(!prompt.contains("strategy:"));
        assert!(prompt.contains("No runbook was named"));
        for runbook in warroom_proto::strategies() {
            assert!(
                prompt.contains(&format!("- `{}`: ", runbook.name)),
                "{}",
                runbook.name
            );
        }
        assert!(!prompt.contains("Affected resources:"));
    }

    #[test]
    fn sequential_mode_carries_earlier_findings_verbatim_in_order() {
        let mut later = task();
        later.mode = Some(CoordinationMode::Sequential);
        later.prior_findings = vec![
            Finding {
                cluster: "production-hub".parse().unwrap(),
                phase: ClusterPhase::Completed,
                report: "## Summary\netcd is slow: `fsync` 800ms.\n".to_owned(),
            },
            Finding {
                cluster: "prod-cluster-0".parse().unwrap(),
                phase: ClusterPhase::TimedOut,
                report: "Partial: nodes look fine.".to_owned(),
            },
        ];
        let prompt = build(&later);
        assert!(prompt.contains("- Coordination: sequential investigation"));
        let hub = prompt
            .find("### production-hub (completed)\n\n## Summary\netcd is slow: `fsync` 800ms.")
            .expect("hub findings verbatim");
        let zero = prompt
            .find("### prod-cluster-0 (timed_out)\n\nPartial: nodes look fine.")
            .expect("second findings");
        assert!(hub < zero);
        assert!(zero < prompt.find("## Report").expect("report section"));
    }
}
