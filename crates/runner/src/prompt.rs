//! The prompt the agent receives: the engineer's instructions, the context of the request, in
//! sequential mode what the earlier clusters found, and how to end.

use std::fmt::Write as _;

use warroom_proto::{CoordinationMode, Task};

/// Builds the prompt for `task`. Pure, so what the agent is told can be tested and reviewed.
pub fn build(task: &Task) -> String {
    let mut out = String::new();
    out.push_str(task.prompt.trim());
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

    out.push_str(
        "\n## How to work\n\
         - You have read-only access. Use `kubectl` or `oc` with a read-only verb first \
         (`kubectl get ...`, `kubectl describe ...`, `kubectl logs ...`, `oc adm top ...`); \
         put flags such as `-n` after the verb. Filter output with pipes into `grep`, `head`, \
         `tail`, `wc`, `sort`, `uniq`, `jq`, `cut`, `awk '{print $1}'` or `sed -n '2,5p'`.\n\
         - Do not read Secrets and do not try to change anything in the cluster: such calls \
         are refused and recorded.\n\
         - Run one command per call; chained commands (`&&`, `;`, `$(...)`) are refused.\n\
         \n## Report\n\
         End with your report as your final message, in Markdown: a short summary, the \
         evidence (the commands you ran and what they showed), the likely root cause, and \
         recommended next steps. Say plainly what you could not check.\n",
    );
    out
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
        assert!(prompt.contains("End with your report as your final message, in Markdown"));
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
