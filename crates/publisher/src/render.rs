//! The markdown the publisher writes: one report per cluster (`<cluster>.md`) and the
//! aggregated report (`README.md`) of a request.
//!
//! Every piece of text that came from a message passes through [`redact::text`] before it
//! is placed into the document; the template around it is ours. Rendering is a pure function
//! of the status snapshot, so the same snapshot always renders the same bytes and a
//! redelivered status changes nothing in git.

use std::fmt::Write as _;

use time::format_description::well_known::Rfc3339;
use warroom_proto::synthesis::{CheckedCitation, CheckedSynthesis};
use warroom_proto::wire::Redacted;
use warroom_proto::{
    AnswerForm, CheckedEvidence, CheckedReport, ClusterPhase, ClusterReport, ClusterStatus,
    PodPhase, RequestPhase, RequestStatus, RequestSummary, SynthesisPhase, Tokens,
};
use warroom_proto::{AuditEvent, AuditKind};

use crate::redact;

/// The files of a results folder the publisher owns besides the cluster reports.
pub(crate) const STATUS_FILE: &str = "status.json";
pub(crate) const README_FILE: &str = "README.md";
pub(crate) const AUDIT_FILE: &str = "audit.jsonl";

/// The report file of `cluster`, relative to the results folder. A cluster named `README`
/// (in any case) would overwrite the aggregated report, so it gets `README.cluster.md`; a
/// cluster name never holds a `.`, so that name cannot be another cluster's.
pub(crate) fn report_file(cluster: &str) -> String {
    if cluster.eq_ignore_ascii_case("readme") {
        format!("{cluster}.cluster.md")
    } else {
        format!("{cluster}.md")
    }
}

/// `text` with secrets redacted, for a markdown table cell or a line of prose: one line, no
/// `|`, inert (no image, no raw HTML: engineers' and agents' words, such as a cancel reason,
/// land here).
fn cell(text: &str) -> String {
    redact::markdown::neutralize(
        &redact::text(text)
            .replace(['\r', '\n'], " ")
            .replace('|', "\\|"),
    )
}

/// `text` as an inline code span, with a fence longer than any backtick run inside it.
pub(crate) fn code(text: &str) -> String {
    let text = redact::text(text).replace(['\r', '\n'], " ");
    let longest = longest_backtick_run(&text);
    let fence = "`".repeat(longest + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{text}{pad}{fence}")
}

fn longest_backtick_run(text: &str) -> usize {
    text.split(|c| c != '`').map(str::len).max().unwrap_or(0)
}

/// `text` as a block quote, each line prefixed.
fn quote(text: &str) -> String {
    redact::markdown::neutralize(&redact::text(text))
        .lines()
        .map(|line| format!("> {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn timestamp(at: &warroom_proto::Timestamp) -> String {
    at.format(&Rfc3339).unwrap_or_else(|_| at.to_string())
}

pub(crate) fn duration(secs: Option<f64>) -> String {
    let Some(secs) = secs.filter(|s| s.is_finite() && *s >= 0.0) else {
        return "—".to_owned();
    };
    if secs < 60.0 {
        return format!("{secs:.1}s");
    }
    let whole = secs.round() as u64;
    if whole < 3600 {
        format!("{}m {:02}s", whole / 60, whole % 60)
    } else {
        format!("{}h {:02}m", whole / 3600, (whole % 3600) / 60)
    }
}

pub(crate) fn cost(cost: Option<f64>) -> String {
    cost.filter(|c| c.is_finite())
        .map_or_else(|| "—".to_owned(), |c| format!("${c:.4}"))
}

fn turns(turns: Option<u32>) -> String {
    turns.map_or_else(|| "—".to_owned(), |t| t.to_string())
}

/// A readable one-line form of a refused tool call's input: the shell command when there is
/// one, else the JSON.
fn tool_input(input: &serde_json::Value) -> String {
    if let Some(command) = input.get("command").and_then(|c| c.as_str()) {
        return command.to_owned();
    }
    let mut input = input.clone();
    redact::json(&mut input);
    input.to_string()
}

/// The `--report-note`, quoted, under a report's title.
fn push_note(out: &mut String, note: Option<&str>) {
    if let Some(note) = note {
        out.push_str(&quote(note));
        out.push_str("\n\n");
    }
}

/// The warning under a report's title when nobody verified who wrote the request (the
/// gateway runs with `--insecure-allow-unsigned`).
fn push_unverified(out: &mut String, status: &RequestStatus) {
    if status.verification.as_ref().is_some_and(|v| !v.verified) {
        out.push_str(UNVERIFIED);
        out.push_str("\n\n");
    }
}

/// What [`push_unverified`] says.
pub(crate) const UNVERIFIED: &str = "> **Not verified.** The gateway runs without a secure-zone \
     policy (`--insecure-allow-unsigned`): nobody checked who wrote this request, or whether \
     they may target these clusters.";

/// `<results_dir>/<cluster>.md`: one cluster's report.
///
/// `removed` is what redaction took out of the cluster's audit lines and of the result its
/// runner sent, by kind; what the second pass here still finds in the report is added.
pub(crate) fn cluster_report(
    status: &RequestStatus,
    cluster: &str,
    report: &ClusterReport,
    removed: &Redacted,
    audit_lines: &AuditLines,
    note: Option<&str>,
) -> String {
    let line = status.clusters.get(cluster);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Request {} on cluster {}\n",
        code(&status.id),
        code(cluster)
    );
    push_note(&mut out, note);
    push_unverified(&mut out, status);
    push_cluster_facts(&mut out, status, cluster, line);
    let refused = line
        .map_or(0, |l| l.permission_denials as usize)
        .max(report.permission_denials.len());
    let _ = writeln!(out, "| Refused tool calls | {refused} |");
    let final_text = redact::text(report.final_text.trim_end());
    let mut removed = removed.clone();
    let mut second_pass = final_text.removed.clone();
    for denial in &report.permission_denials {
        second_pass.merge(&redact::json(&mut denial.input.clone()));
    }
    for (kind, n) in second_pass.iter() {
        *removed.entry(kind.to_owned()).or_default() += n;
    }
    push_redacted(&mut out, &removed);
    if let Some(line) = line {
        push_attempt_and_error(&mut out, line);
    }
    if !report.permission_denials.is_empty() {
        out.push_str("\n## Refused tool calls\n\n");
        for denial in &report.permission_denials {
            let _ = writeln!(
                out,
                "- {} {}",
                code(&denial.tool),
                code(&tool_input(&denial.input))
            );
        }
    }
    if let Some(structured) = &report.structured {
        push_structured(&mut out, structured, audit_lines);
        return out;
    }
    out.push_str("\n## Report\n\n");
    if line.is_some_and(|l| l.answer == Some(AnswerForm::Unstructured)) {
        out.push_str(UNSTRUCTURED);
        out.push_str("\n\n");
    }
    // The agent read text anyone in the cluster can write (logs, events, annotations): its
    // Markdown is made inert (no remote images, no raw HTML) so that reading the report on
    // GitHub never contacts another host.
    let text = redact::markdown::neutralize(&final_text);
    if text.trim().is_empty() {
        out.push_str("_The agent wrote no final text._\n");
    } else {
        out.push_str(&text);
        out.push('\n');
    }
    out
}

/// Where each audit event is in `audit.jsonl`: its 1-based line, by event id.
pub(crate) type AuditLines = std::collections::HashMap<String, usize>;

/// What an answer without the report's structured form is marked with.
pub(crate) const UNSTRUCTURED: &str = "> **Unstructured answer.** The agent did not answer in \
     the report's structured form, so its findings could not be checked against the audit \
     log. Its text follows as it wrote it.";

/// Agent text for one line of Markdown: redacted, made inert, on one line.
fn inert_line(text: &str) -> String {
    redact::markdown::neutralize(&redact::text(text).replace(['\r', '\n'], " "))
}

/// A list of agent texts, each inert on one line.
fn push_list(out: &mut String, title: &str, items: &[String]) {
    if items.is_empty() {
        return;
    }
    let _ = write!(out, "\n## {title}\n\n");
    for item in items {
        let _ = writeln!(out, "- {}", inert_line(item));
    }
}

/// The structured answer: summary, findings with their evidence (supported ones linked to
/// their `audit.jsonl` line, unsupported ones marked with why), what was ruled out, next
/// steps and what was not checked. Every text of the agent is redacted and made inert.
fn push_structured(out: &mut String, report: &CheckedReport, audit_lines: &AuditLines) {
    let counts = report.counts();
    out.push_str("\n## Summary\n\n");
    let _ = writeln!(
        out,
        "{}\n",
        redact::markdown::neutralize(&redact::text(report.summary.trim()))
    );
    let _ = writeln!(
        out,
        "Confidence: **{}**. Findings: {} supported, {} unsupported.",
        report.confidence.as_str(),
        counts.supported,
        counts.unsupported
    );
    out.push_str("\n## Findings\n\n");
    if report.findings.is_empty() {
        out.push_str("_The agent reported no findings._\n");
    }
    for (n, finding) in report.findings.iter().enumerate() {
        let verdict = if finding.supported {
            "**Supported.**"
        } else {
            "**UNSUPPORTED:** its evidence is not in this run's audit log; do not act on it \
             without checking."
        };
        let _ = writeln!(out, "{}. {verdict} {}", n + 1, inert_line(&finding.claim));
        for evidence in &finding.evidence {
            push_evidence(out, evidence, audit_lines);
        }
    }
    if !report.ruled_out.is_empty() {
        out.push_str("\n## Ruled out\n\n");
        for ruled in &report.ruled_out {
            let _ = writeln!(
                out,
                "- {}: {}",
                inert_line(&ruled.hypothesis),
                inert_line(&ruled.why)
            );
        }
    }
    push_list(
        out,
        "Next steps (for a human with write access)",
        &report.next_steps,
    );
    push_list(out, "Not checked", &report.not_checked);
}

/// One piece of evidence under its finding: the call, its audit line, the quoted lines.
fn push_evidence(out: &mut String, evidence: &CheckedEvidence, audit_lines: &AuditLines) {
    let call = match (&evidence.command, &evidence.tool_use_id) {
        (Some(command), _) => code(command),
        (None, Some(id)) => code(id),
        (None, None) => "no call named".to_owned(),
    };
    let place = match (&evidence.problem, &evidence.audit_id) {
        (Some(problem), _) => format!(" (not checked out: {})", inert_line(problem)),
        (None, Some(id)) => match audit_lines.get(id) {
            Some(line) => format!(" ([{AUDIT_FILE} line {line}]({AUDIT_FILE}#L{line}))"),
            None => format!(" ({AUDIT_FILE} event {})", code(id)),
        },
        (None, None) => String::new(),
    };
    let _ = writeln!(out, "   - {call}{place}");
    for quote in &evidence.quote {
        let _ = writeln!(out, "     - {}", code(quote));
    }
}

/// The head of a cluster report's table: request, cluster, phase, duration, cost, turns and
/// the attempt when there was more than one.
fn push_cluster_facts(
    out: &mut String,
    status: &RequestStatus,
    cluster: &str,
    line: Option<&ClusterStatus>,
) {
    out.push_str("| | |\n|---|---|\n");
    let _ = writeln!(out, "| Request | {} |", code(&status.id));
    let Some(line) = line else {
        let _ = writeln!(out, "| Cluster | {} |", code(cluster));
        return;
    };
    let _ = writeln!(
        out,
        "| Cluster | {} ({}) |",
        code(cluster),
        line.kind.as_str()
    );
    let _ = writeln!(out, "| Phase | **{}** |", line.phase);
    let _ = writeln!(out, "| Duration | {} |", duration(line.duration_secs));
    let _ = writeln!(out, "| Cost | {} |", cost(line.cost_usd));
    let _ = writeln!(out, "| Turns | {} |", turns(line.num_turns));
    push_run_facts(out, line);
    if line.attempts > 1 {
        let _ = writeln!(
            out,
            "| Attempt | {} of {} |",
            line.attempts,
            warroom_proto::status::MAX_RUNS
        );
    }
}

/// The request's totals: cost, turns and tokens over every cluster, and the findings.
fn push_totals(out: &mut String, status: &RequestStatus) {
    let lines = status.clusters.values();
    let cost_total = warroom_proto::total_cost(lines.clone().filter_map(|l| l.cost_usd));
    let turns_total: u32 = lines.clone().filter_map(|l| l.num_turns).sum();
    let mut tokens_total = Tokens::default();
    let (mut supported, mut unsupported, mut unstructured) = (0, 0, 0);
    for line in lines {
        if let Some(run) = &line.run {
            tokens_total.add(&run.tokens);
        }
        if let Some(counts) = line.findings {
            supported += counts.supported;
            unsupported += counts.unsupported;
        }
        if line.answer == Some(AnswerForm::Unstructured) {
            unstructured += 1;
        }
    }
    let _ = write!(
        out,
        "\nIn total: {} over {turns_total} turns, {} tokens; findings {supported} supported, \
         {unsupported} unsupported",
        cost(Some(cost_total)),
        tokens_total.total()
    );
    if unstructured > 0 {
        let _ = write!(out, "; {unstructured} unstructured answer(s)");
    }
    out.push_str(".\n");
}

/// The rows of the model, the CLI, the runbook, the tokens and the findings' verdicts.
fn push_run_facts(out: &mut String, line: &ClusterStatus) {
    if let Some(run) = &line.run {
        let or_dash = |v: &Option<String>| v.as_deref().map_or_else(|| "—".to_owned(), code);
        let _ = writeln!(out, "| Model | {} |", or_dash(&run.model));
        let _ = writeln!(out, "| Claude Code | {} |", or_dash(&run.cli_version));
        let _ = writeln!(out, "| Tokens | {} |", tokens(&run.tokens));
    }
    if let Some(answer) = line.answer {
        let runbook = line
            .runbook
            .as_deref()
            .map_or_else(|| "none".to_owned(), code);
        let _ = writeln!(out, "| Runbook | {runbook} |");
        let findings = match (answer, line.findings) {
            (AnswerForm::Structured, Some(c)) => {
                format!("{} supported, {} unsupported", c.supported, c.unsupported)
            }
            _ => "unstructured answer, not checked".to_owned(),
        };
        let _ = writeln!(out, "| Findings | {findings} |");
    }
}

fn tokens(tokens: &Tokens) -> String {
    format!(
        "{} ({} in, {} out, {} cache read, {} cache write)",
        tokens.total(),
        tokens.input,
        tokens.output,
        tokens.cache_read,
        tokens.cache_creation
    )
}

/// The table's `Redacted values` row, and a sentence naming the kinds when any were removed.
fn push_redacted(out: &mut String, removed: &Redacted) {
    let total: u64 = removed.values().sum();
    let _ = writeln!(out, "| Redacted values | {total} |");
    if total > 0 {
        let kinds: Vec<String> = removed
            .iter()
            .map(|(kind, n)| format!("{n} {}", code(kind)))
            .collect();
        let _ = write!(
            out,
            "\n{total} value{} {} removed by redaction ({}); `audit.jsonl` counts them per \
             event.\n",
            if total == 1 { "" } else { "s" },
            if total == 1 { "was" } else { "were" },
            kinds.join(", ")
        );
    }
}

/// A quoted note when the report is from a later attempt, and the cluster's error if any.
fn push_attempt_and_error(out: &mut String, line: &ClusterStatus) {
    if line.attempts > 1 {
        let _ = write!(
            out,
            "\n{}\n",
            quote(&format!(
                "**Attempt {} of {}:** the first run was interrupted ({}). This report is from \
                 the last run; `audit.jsonl` labels every line with its `attempt`.",
                line.attempts,
                warroom_proto::status::MAX_RUNS,
                line.interrupted
                    .as_deref()
                    .unwrap_or("its runner stopped before it reported a result")
            ))
        );
    }
    if let Some(error) = line.error.as_deref() {
        let _ = write!(out, "\n{}\n", quote(&format!("**Error:** {error}")));
    }
}

/// `<results_dir>/turn-<n>.md`: one follow-up turn's question and answer. The answer is the
/// agent's text, redacted and made inert like a report's.
pub(crate) fn turn_report(event: &AuditEvent, note: Option<&str>) -> Option<String> {
    let AuditKind::TurnAnswer {
        turn,
        question,
        asked_by,
        outcome,
        answer,
        error,
        cost_usd,
        resumed,
    } = &event.kind
    else {
        return None;
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Request {}, turn {turn}, on cluster {}\n",
        code(&event.request_id),
        code(&event.cluster)
    );
    push_note(&mut out, note);
    out.push_str("| | |\n|---|---|\n");
    let _ = writeln!(out, "| Asked by | {} |", cell(asked_by));
    let _ = writeln!(out, "| Outcome | **{}** |", outcome.phase());
    let _ = writeln!(
        out,
        "| Conversation | {} |",
        if *resumed {
            "continued from the turns before"
        } else {
            "started anew: no earlier conversation was kept"
        }
    );
    let _ = writeln!(out, "| Cost | {} |", cost(Some(*cost_usd)));
    let _ = writeln!(
        out,
        "| Audit | lines of turn {turn} in [{AUDIT_FILE}]({AUDIT_FILE}) |"
    );
    if let Some(error) = error {
        let _ = write!(out, "\n{}\n", quote(&format!("**Error:** {error}")));
    }
    out.push_str("\n## Question\n\n");
    let _ = writeln!(out, "{}", quote(&redact::text(question.trim())));
    out.push_str("\n## Answer\n\n");
    let text = redact::markdown::neutralize(&redact::text(answer.trim_end()));
    if text.trim().is_empty() {
        out.push_str("_The agent wrote no answer._\n");
    } else {
        out.push_str(&text);
        out.push('\n');
    }
    Some(out)
}

/// `## Session` and `## Follow-up questions`: the session's term and every turn asked, each
/// linked to its answer.
fn push_turns(out: &mut String, status: &RequestStatus) {
    if let Some(session) = &status.session {
        out.push_str("\n## Session\n\n");
        let state = match (&session.ended, session.ended_at) {
            (Some(why), Some(at)) => format!("ended at {}: {}", timestamp(&at), cell(why)),
            _ => format!("open until {}", timestamp(&session.expires_at)),
        };
        let _ = writeln!(
            out,
            "The session is {state}. {} follow-up turns answered; {} spent so far.",
            session.turns,
            cost(Some(session.cost_usd))
        );
        if let (Some(pod), Some(phase)) = (&session.pod, session.pod_phase) {
            let _ = match phase {
                PodPhase::Held if session.ended_at.is_none() => writeln!(
                    out,
                    "\nHeld as the pod {} in the runner's namespace: `kubectl exec -it {} -c \
                     session -- claude`.",
                    code(pod),
                    cell(pod)
                ),
                PodPhase::Failed => writeln!(
                    out,
                    "\nThe pod {} could not be held: {}",
                    code(pod),
                    cell(session.pod_error.as_deref().unwrap_or("no reason given"))
                ),
                phase => writeln!(
                    out,
                    "\nThe session's pod {} is {}.",
                    code(pod),
                    phase.as_str()
                ),
            };
        }
    }
    if status.turns.is_empty() {
        return;
    }
    out.push_str("\n## Follow-up questions\n\n| Turn | Cluster | Asked by | Phase | Answer |\n|---|---|---|---|---|\n");
    for turn in &status.turns {
        let answer = match &turn.report {
            Some(file) => format!("[{file}]({file})"),
            None => "-".to_owned(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {answer} |",
            turn.turn,
            cell(turn.cluster.as_str()),
            cell(&turn.asked_by),
            turn.phase
        );
    }
}

/// `<results_dir>/README.md`: the aggregated report of a request, section by section.
pub(crate) fn readme(
    status: &RequestStatus,
    request: Option<&RequestSummary>,
    reports: &std::collections::BTreeMap<warroom_proto::ClusterName, ClusterReport>,
    synthesis: Option<&CheckedSynthesis>,
    note: Option<&str>,
) -> String {
    let mut out = String::new();
    let title = request.map_or(status.id.as_str(), |r| r.name.as_str());
    let _ = writeln!(out, "# {}\n", cell(title));
    push_note(&mut out, note);
    push_unverified(&mut out, status);
    push_synthesis(&mut out, status, synthesis);
    push_overview(&mut out, status, request);
    push_validation_errors(&mut out, status);
    push_notices(&mut out, status);
    if let Some(request) = request {
        push_request(&mut out, request);
    }
    push_clusters(&mut out, status, reports);
    push_turns(&mut out, status);
    if status.phase != RequestPhase::Rejected {
        let _ = write!(
            out,
            "\n## Audit log\n\nEvery tool call the agents made or were refused, one JSON object \
             per line: [{AUDIT_FILE}]({AUDIT_FILE}).\n"
        );
    }
    let _ = write!(
        out,
        "\n---\n_Written by claude-warroom from `{STATUS_FILE}` revision {}. Secrets are \
         replaced by `[REDACTED:<kind>]`._\n",
        status.revision
    );
    out
}

/// What marks the synthesis as what it is, under its heading.
pub(crate) const SYNTHESIS_MARK: &str = "_Synthesis: a model's pass over the cluster reports \
     below, without tools. Each claim cites the cluster findings it rests on; a claim whose \
     citations do not hold is marked UNSUPPORTED. The cluster reports are the evidence._";

/// `## Synthesis across clusters`, which opens the README of a request with several
/// clusters once every cluster ended: pending, the checked synthesis, or why there is none.
fn push_synthesis(out: &mut String, status: &RequestStatus, synthesis: Option<&CheckedSynthesis>) {
    let Some(state) = &status.synthesis else {
        return;
    };
    out.push_str("## Synthesis across clusters\n\n");
    match (state.phase, synthesis) {
        (SynthesisPhase::Completed, Some(synthesis)) => {
            let _ = writeln!(out, "{SYNTHESIS_MARK}\n");
            let _ = writeln!(
                out,
                "{}\n",
                redact::markdown::neutralize(&redact::text(synthesis.summary.trim()))
            );
            let counts = synthesis.counts();
            let _ = writeln!(
                out,
                "Confidence: **{}**. Claims: {} supported, {} unsupported.\n",
                synthesis.confidence.as_str(),
                counts.supported,
                counts.unsupported
            );
            for (n, claim) in synthesis.claims.iter().enumerate() {
                let verdict = if claim.supported {
                    "**Supported.**".to_owned()
                } else {
                    let mut why: Vec<String> = claim
                        .cites
                        .iter()
                        .filter_map(|c| c.problem.as_deref())
                        .chain(claim.problems.iter().map(String::as_str))
                        .map(inert_line)
                        .collect();
                    why.dedup();
                    format!("**UNSUPPORTED** ({}):", why.join("; "))
                };
                let clusters: Vec<String> = claim.clusters.iter().map(|c| cell(c)).collect();
                let _ = writeln!(
                    out,
                    "{}. {verdict} _{}_ ({}): {}",
                    n + 1,
                    claim.kind.as_str(),
                    clusters.join(", "),
                    inert_line(&claim.claim)
                );
                let cites: Vec<String> = claim.cites.iter().map(citation).collect();
                let _ = writeln!(out, "   - Rests on: {}", cites.join(", "));
            }
            out.push('\n');
        }
        (SynthesisPhase::Completed, None) => {
            let counts = state.claims.unwrap_or_default();
            let _ = write!(
                out,
                "_Completed: {} claims supported, {} unsupported. The results folder's \
                 README.md holds it._\n\n",
                counts.supported, counts.unsupported
            );
        }
        (SynthesisPhase::Pending, _) => {
            out.push_str(
                "_Pending: every cluster ended, and a synthesis of their reports is being \
                 made. The cluster reports below are complete._\n\n",
            );
        }
        (_, _) => {
            let why = state
                .error
                .as_deref()
                .unwrap_or("the synthesis gave no answer");
            let _ = write!(
                out,
                "{}\n\n",
                quote(&format!(
                    "**No synthesis:** {why}. The cluster reports below stand on their own."
                ))
            );
        }
    }
}

/// A citation as a link to the cited cluster's report, when the cluster is one of the
/// request's (its name is then a checked cluster name, safe in a path).
fn citation(cite: &CheckedCitation) -> String {
    let label = format!("{} finding {}", cell(&cite.cluster), cite.finding);
    match warroom_proto::ClusterName::new(&cite.cluster) {
        Ok(name) if cite.problem.is_none() => {
            format!("[{label}]({})", report_file(name.as_str()))
        }
        _ => label,
    }
}

/// The table at the top of the README (request, phase, engineer, category, mode, update)
/// and the request's error.
fn push_overview(out: &mut String, status: &RequestStatus, request: Option<&RequestSummary>) {
    out.push_str("| | |\n|---|---|\n");
    let _ = writeln!(out, "| Request | {} |", code(&status.id));
    let _ = writeln!(out, "| Phase | **{}** |", status.phase);
    let engineer = request
        .map(|r| r.engineer.as_str())
        .or(status.engineer.as_deref());
    if let Some(engineer) = engineer {
        let _ = writeln!(out, "| Engineer | {} |", cell(engineer));
    }
    if let Some(request) = request {
        let _ = writeln!(out, "| Category | {} |", cell(&request.category));
    }
    if let Some(mode) = status.mode {
        let _ = writeln!(out, "| Mode | {} |", mode.as_str());
    }
    match &status.verification {
        Some(v) if v.verified => {
            let keys: Vec<String> = v.signed_by.iter().map(|k| code(k)).collect();
            let _ = writeln!(out, "| Verified | yes, signed by {} |", keys.join(", "));
        }
        Some(_) => {
            let _ = writeln!(out, "| Verified | **no** |");
        }
        None => {}
    }
    let _ = writeln!(
        out,
        "| Updated | {} (revision {}) |",
        timestamp(&status.updated_at),
        status.revision
    );
    if let Some(error) = &status.error {
        let _ = write!(out, "\n{}\n", quote(&format!("**Error:** {error}")));
    }
}

/// `## Validation errors`, when the request file was rejected.
fn push_validation_errors(out: &mut String, status: &RequestStatus) {
    if status.errors.is_empty() {
        return;
    }
    out.push_str("\n## Validation errors\n\n");
    for error in &status.errors {
        let field = if error.field.is_empty() {
            "(the file)".to_owned()
        } else {
            code(&error.field)
        };
        let _ = writeln!(out, "- {field}: {}", cell(&error.message));
    }
}

/// `## Notices`: what happened to the request file after it was accepted.
fn push_notices(out: &mut String, status: &RequestStatus) {
    if status.notices.is_empty() {
        return;
    }
    out.push_str("\n## Notices\n\n");
    for notice in &status.notices {
        let _ = writeln!(
            out,
            "- {} ({}): {}",
            timestamp(&notice.at),
            code(notice.kind.as_str()),
            // The message names the file, whose name anyone who can push chooses.
            redact::markdown::neutralize(&cell(&notice.message))
        );
    }
}

/// `## Issue` and `## Prompt`: what the engineer asked.
fn push_request(out: &mut String, request: &RequestSummary) {
    out.push_str("\n## Issue\n\n");
    let _ = writeln!(out, "{}", quote(&request.description));
    out.push_str("\n## Prompt\n\n");
    let prompt = redact::text(request.prompt.trim_end());
    let fence = "`".repeat(longest_backtick_run(&prompt).max(2) + 1);
    let _ = writeln!(out, "{fence}text\n{prompt}\n{fence}");
}

/// Where a phase's group comes in the README: what needs attention first, then what
/// succeeded, then what is still under way.
fn phase_rank(phase: ClusterPhase) -> u8 {
    match phase {
        ClusterPhase::Failed => 0,
        ClusterPhase::TimedOut => 1,
        ClusterPhase::Cancelled => 2,
        ClusterPhase::Completed => 3,
        ClusterPhase::Running => 4,
        ClusterPhase::Dispatched => 5,
        ClusterPhase::Pending => 6,
    }
}

/// `## Clusters`: how many clusters ended in each phase, then the clusters grouped by
/// phase (failures first), a table per group with a link to each report and the group's
/// errors under it. A request may name hundreds of clusters: the counts come first so the
/// outcome reads at a glance, and one table per group keeps the rest scannable.
fn push_clusters(
    out: &mut String,
    status: &RequestStatus,
    reports: &std::collections::BTreeMap<warroom_proto::ClusterName, ClusterReport>,
) {
    if status.clusters.is_empty() {
        return;
    }
    let mut groups: std::collections::BTreeMap<
        (u8, &'static str),
        Vec<(&warroom_proto::ClusterName, &ClusterStatus)>,
    > = std::collections::BTreeMap::new();
    for (name, line) in &status.clusters {
        groups
            .entry((phase_rank(line.phase), line.phase.as_str()))
            .or_default()
            .push((name, line));
    }
    out.push_str("\n## Clusters\n\n");
    out.push_str("| Phase | Clusters |\n|---|---|\n");
    for ((_, phase), lines) in &groups {
        let _ = writeln!(out, "| {phase} | {} |", lines.len());
    }
    let _ = writeln!(out, "| **all** | **{}** |", status.clusters.len());
    push_totals(out, status);
    for ((_, phase), lines) in &groups {
        let _ = write!(out, "\n### {phase} ({})\n\n", lines.len());
        out.push_str("| Cluster | Type | Duration | Cost | Turns | Refused calls | Report |\n");
        out.push_str("|---|---|---|---|---|---|---|\n");
        for (name, line) in lines {
            let link = if reports.contains_key(*name) {
                let file = report_file(name);
                format!("[{file}]({file})")
            } else {
                "—".to_owned()
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {link} |",
                code(name),
                line.kind.as_str(),
                duration(line.duration_secs),
                cost(line.cost_usd),
                turns(line.num_turns),
                line.permission_denials
            );
        }
        let errors: Vec<_> = lines
            .iter()
            .filter(|(_, line)| line.error.is_some())
            .collect();
        if !errors.is_empty() {
            out.push('\n');
            for (name, line) in errors {
                let _ = writeln!(
                    out,
                    "- {}: {}",
                    code(name),
                    cell(line.error.as_deref().unwrap_or_default())
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use warroom_proto::{ClusterType, Denial, FieldError};

    use super::*;

    fn status(phase: RequestPhase) -> RequestStatus {
        RequestStatus {
            id: "r1".parse().unwrap(),
            phase,
            clusters: BTreeMap::new(),
            error: None,
            errors: Vec::new(),
            mode: None,
            engineer: Some("alice".to_owned()),
            results_dir: "results/r1".parse().unwrap(),
            commit: None,
            revision: 3,
            updated_at: time::macros::datetime!(2026-11-23 12:00 UTC),
            verification: None,
            notices: Vec::new(),
            cancelled: None,
            synthesis: None,
            session: None,
            turns: Vec::new(),
        }
    }

    #[test]
    fn a_turn_file_shows_the_question_and_answer_inert() {
        let event = AuditEvent {
            id: "r1/hub/1/9".to_owned(),
            request_id: "r1".parse().unwrap(),
            cluster: "hub".parse().unwrap(),
            results_dir: "results/r1".parse().unwrap(),
            at: time::macros::datetime!(2026-11-23 12:00 UTC),
            attempt: 1,
            turn: 2,
            kind: AuditKind::TurnAnswer {
                turn: 2,
                question: "why? ![q](https://evil.example/q.png)".to_owned(),
                asked_by: "jane".to_owned(),
                outcome: warroom_proto::Outcome::Completed,
                answer: "because <img src=https://evil.example/a.png>".to_owned(),
                error: Some("cut ![e](https://evil.example/e.png)".to_owned()),
                cost_usd: 0.5,
                resumed: true,
            },
            redacted: Default::default(),
        };
        let file = turn_report(&event, None).expect("a turn answer");
        assert!(file.contains("## Question\n\n> why?"), "{file}");
        assert!(file.contains("because"), "{file}");
        for live in ["![q](", "![e](", "<img"] {
            assert!(!file.contains(live), "{live} is live in:\n{file}");
        }
    }

    #[test]
    fn the_session_section_says_where_its_pod_is() {
        let mut shown = status(RequestPhase::Running);
        let at = time::macros::datetime!(2026-11-23 14:00 UTC);
        shown.session = Some(warroom_proto::SessionStatus {
            state: warroom_proto::SessionState::Open,
            duration_secs: 7200,
            expires_at: at,
            ended_at: None,
            ended: None,
            turns: 0,
            cost_usd: 0.0,
            pod: Some("warroom-session-r1".to_owned()),
            pod_phase: Some(PodPhase::Held),
            pod_error: None,
        });
        let none = BTreeMap::new();
        let held = readme(&shown, None, &none, None, None);
        assert!(
            held.contains(
                "Held as the pod `warroom-session-r1` in the runner's namespace: `kubectl exec \
                 -it warroom-session-r1 -c session -- claude`."
            ),
            "{held}"
        );
        let session = shown.session.as_mut().expect("set above");
        session.pod_phase = Some(PodPhase::Failed);
        session.pod_error = Some("no pods here | ![x](https://evil.example/x.png)".to_owned());
        let failed = readme(&shown, None, &none, None, None);
        assert!(
            failed.contains("The pod `warroom-session-r1` could not be held: no pods here"),
            "{failed}"
        );
        assert!(
            !failed.contains("![x]("),
            "a live image in the README: {failed}"
        );
        let session = shown.session.as_mut().expect("set above");
        session.ended_at = Some(at);
        session.ended = Some("stopped by alice: ![r](https://evil.example/r.png)".to_owned());
        session.pod_phase = Some(PodPhase::Removed);
        session.pod_error = None;
        let removed = readme(&shown, None, &none, None, None);
        assert!(
            removed.contains("The session's pod `warroom-session-r1` is removed."),
            "{removed}"
        );
        assert!(!removed.contains("kubectl exec"), "{removed}");
        assert!(
            !removed.contains("![r]("),
            "a live image in the README: {removed}"
        );
    }

    #[test]
    fn an_unverified_request_says_so_in_every_report_and_a_verified_one_names_its_keys() {
        let report = ClusterReport {
            structured: None,
            final_text: "all fine".to_owned(),
            permission_denials: Vec::new(),
        };
        let mut unverified = status(RequestPhase::Completed);
        unverified.verification = Some(warroom_proto::Verification::unverified());
        let readme_text = readme(&unverified, None, &BTreeMap::new(), None, None);
        assert!(readme_text.contains(UNVERIFIED), "{readme_text}");
        assert!(
            readme_text.contains("| Verified | **no** |"),
            "{readme_text}"
        );
        let cluster_text = cluster_report(
            &unverified,
            "hub",
            &report,
            &Redacted::new(),
            &AuditLines::new(),
            None,
        );
        assert!(cluster_text.contains(UNVERIFIED), "{cluster_text}");

        let mut verified = status(RequestPhase::Completed);
        verified.verification = Some(warroom_proto::Verification {
            verified: true,
            signed_by: vec!["SHA256:abc".to_owned()],
        });
        let readme_text = readme(&verified, None, &BTreeMap::new(), None, None);
        assert!(!readme_text.contains(UNVERIFIED), "{readme_text}");
        assert!(
            readme_text.contains("| Verified | yes, signed by `SHA256:abc` |"),
            "{readme_text}"
        );
        let cluster_text = cluster_report(
            &verified,
            "hub",
            &report,
            &Redacted::new(),
            &AuditLines::new(),
            None,
        );
        assert!(!cluster_text.contains(UNVERIFIED), "{cluster_text}");
    }

    #[test]
    fn notices_are_listed_inert() {
        let mut with_notice = status(RequestPhase::Completed);
        with_notice.notices.push(warroom_proto::Notice {
            kind: warroom_proto::NoticeKind::IdReused,
            file: "requests/pending/r1.yml".to_owned(),
            version: "0123456789abcdef".to_owned(),
            commit: "c0ffee".to_owned(),
            at: time::macros::datetime!(2026-11-23 12:05 UTC),
            message: "requests/pending/![x](https:evil.example/x.png) re-uses the id".to_owned(),
        });
        let text = readme(&with_notice, None, &BTreeMap::new(), None, None);
        assert!(text.contains("## Notices"), "{text}");
        assert!(text.contains("`id_reused`"), "{text}");
        assert!(!text.contains("![x](https:evil"), "{text}");
    }

    #[test]
    fn a_readme_cluster_cannot_overwrite_the_aggregated_report() {
        assert_eq!(report_file("hub"), "hub.md");
        assert_eq!(report_file("README"), "README.cluster.md");
        assert_eq!(report_file("readme"), "readme.cluster.md");
    }

    #[test]
    fn durations_costs_and_code_spans_read_well() {
        assert_eq!(duration(Some(12.34)), "12.3s");
        assert_eq!(duration(Some(125.0)), "2m 05s");
        assert_eq!(duration(Some(3725.0)), "1h 02m");
        assert_eq!(duration(None), "—");
        assert_eq!(cost(Some(0.01234)), "$0.0123");
        assert_eq!(code("a`b"), "``a`b``");
        assert_eq!(cell("a|b\nc"), "a\\|b c");
    }

    #[test]
    fn a_rerun_says_so_in_the_cluster_report() {
        let mut s = status(RequestPhase::Completed);
        let mut line = ClusterStatus::new(ClusterType::Hub, ClusterPhase::Completed);
        line.attempts = 2;
        line.interrupted =
            Some("attempt 1 on runner r-0, started 10:00, ended without a result".to_owned());
        s.clusters.insert("hub".parse().unwrap(), line.clone());
        let report = ClusterReport {
            structured: None,
            final_text: "fine".to_owned(),
            permission_denials: Vec::new(),
        };
        let md = cluster_report(
            &s,
            "hub",
            &report,
            &Redacted::new(),
            &AuditLines::new(),
            None,
        );
        assert!(md.contains("| Attempt | 2 of 2 |"), "{md}");
        assert!(
            md.contains(
                "**Attempt 2 of 2:** the first run was interrupted (attempt 1 on runner r-0"
            ),
            "{md}"
        );
        // A first run that went through says nothing about attempts.
        line.attempts = 1;
        line.interrupted = None;
        s.clusters.insert("hub".parse().unwrap(), line);
        let md = cluster_report(
            &s,
            "hub",
            &report,
            &Redacted::new(),
            &AuditLines::new(),
            None,
        );
        assert!(!md.contains("Attempt"), "{md}");
    }

    #[test]
    fn nothing_in_a_report_loads_by_itself() {
        let s = status(RequestPhase::Completed);
        let report = ClusterReport {
            structured: None,
            final_text: "## Findings\n![pixel](https://tracker.example/p.png?x=1)\n\
                         <img src=\"https://tracker.example/i.png\">\n- etcd is slow\n"
                .to_owned(),
            permission_denials: Vec::new(),
        };
        let md = cluster_report(
            &s,
            "hub",
            &report,
            &Redacted::new(),
            &AuditLines::new(),
            None,
        );
        assert!(!md.contains("![pixel]("), "{md}");
        assert!(!md.contains("<img"), "{md}");
        assert!(
            md.contains("## Findings") && md.contains("- etcd is slow"),
            "{md}"
        );
    }

    #[test]
    fn the_cluster_report_has_the_figures_denials_and_final_text() {
        let mut s = status(RequestPhase::Completed);
        let mut line = ClusterStatus::new(ClusterType::Hub, ClusterPhase::Completed);
        line.duration_secs = Some(90.0);
        line.cost_usd = Some(0.5);
        line.num_turns = Some(4);
        line.permission_denials = 1;
        s.clusters.insert("hub".parse().unwrap(), line);
        let report = ClusterReport {
            structured: None,
            final_text: "## Root cause\netcd is slow; password=hunter2".to_owned(),
            permission_denials: vec![Denial {
                tool: "Bash".to_owned(),
                tool_use_id: "t1".to_owned(),
                input: serde_json::json!({"command": "kubectl delete pod x"}),
            }],
        };
        // The runner removed three values already; the second pass finds the fourth.
        let removed = Redacted::from([("jwt".to_owned(), 1), ("password".to_owned(), 2)]);
        let md = cluster_report(&s, "hub", &report, &removed, &AuditLines::new(), None);
        assert!(md.starts_with("# Request `r1` on cluster `hub`"), "{md}");
        assert!(md.contains("| Redacted values | 4 |"), "{md}");
        assert!(
            md.contains("4 values were removed by redaction (1 `jwt`, 3 `password`)"),
            "{md}"
        );
        for expected in [
            "**completed**",
            "1m 30s",
            "$0.5000",
            "| Turns | 4 |",
            "`kubectl delete pod x`",
            "## Root cause",
            "password=[REDACTED:password]",
        ] {
            assert!(md.contains(expected), "{expected} missing in:\n{md}");
        }
        assert!(!md.contains("hunter2"));
    }

    #[test]
    fn the_report_note_heads_both_reports_redacted() {
        let s = status(RequestPhase::Completed);
        let note = "Staging.\ntoken=hunter2";
        let report = ClusterReport {
            structured: None,
            final_text: "All good.".to_owned(),
            permission_denials: Vec::new(),
        };
        let cluster = cluster_report(
            &s,
            "hub",
            &report,
            &Redacted::new(),
            &AuditLines::new(),
            Some(note),
        );
        let aggregated = readme(&s, None, &BTreeMap::new(), None, Some(note));
        for md in [&cluster, &aggregated] {
            let (title, rest) = md.split_once("\n\n").expect("a title line");
            assert!(title.starts_with("# "), "{md}");
            assert!(rest.starts_with("> Staging.\n> token=[REDACTED"), "{md}");
            assert!(!md.contains("hunter2"), "{md}");
        }
        assert!(
            !cluster_report(
                &s,
                "hub",
                &report,
                &Redacted::new(),
                &AuditLines::new(),
                None
            )
            .contains("Staging")
        );
    }

    #[test]
    fn a_wide_request_reads_as_counts_then_clusters_grouped_by_outcome() {
        let mut s = status(RequestPhase::Failed);
        for n in 0..warroom_proto::validate::MAX_CLUSTERS {
            let phase = match n % 10 {
                0 => ClusterPhase::Failed,
                1 => ClusterPhase::TimedOut,
                _ => ClusterPhase::Completed,
            };
            let mut line = ClusterStatus::new(ClusterType::Hosted, phase);
            if phase != ClusterPhase::Completed {
                line.error = Some(format!("cluster {n} did not answer"));
            }
            s.clusters
                .insert(format!("hosted-{n:03}").parse().unwrap(), line);
        }
        let md = readme(&s, None, &BTreeMap::new(), None, None);
        assert!(
            md.contains(
                "| failed | 50 |\n| timed_out | 50 |\n| completed | 400 |\n| **all** | **500** |"
            ),
            "{md}"
        );
        let failed = md.find("### failed (50)").expect("a failed group");
        let timed_out = md.find("### timed_out (50)").expect("a timed_out group");
        let completed = md.find("### completed (400)").expect("a completed group");
        assert!(
            failed < timed_out && timed_out < completed,
            "failures come first"
        );
        // Each group's errors sit under its own table.
        let error = md
            .find("- `hosted-010`: cluster 10 did not answer")
            .expect("the error");
        assert!(failed < error && error < timed_out, "{md}");
        assert_eq!(md.matches("| `hosted-").count(), 500);
    }

    #[test]
    fn the_readme_links_reports_and_lists_validation_errors() {
        let mut s = status(RequestPhase::Completed);
        s.clusters.insert(
            "hub".parse().unwrap(),
            ClusterStatus::new(ClusterType::Hub, ClusterPhase::Completed),
        );
        let mut reports = BTreeMap::new();
        reports.insert(
            "hub".parse().unwrap(),
            ClusterReport {
                structured: None,
                final_text: "ok".to_owned(),
                permission_denials: Vec::new(),
            },
        );
        let summary = RequestSummary {
            name: "api-timeouts".to_owned(),
            engineer: "alice".to_owned(),
            category: "api-timeout".to_owned(),
            description: "API slow".to_owned(),
            prompt: "Look at ```etcd```".to_owned(),
        };
        let md = readme(&s, Some(&summary), &reports, None, None);
        assert!(md.starts_with("# api-timeouts\n"), "{md}");
        assert!(md.contains("[hub.md](hub.md)"), "{md}");
        assert!(md.contains("````text\nLook at ```etcd```\n````"), "{md}");
        assert!(md.contains("[audit.jsonl](audit.jsonl)"), "{md}");

        let mut rejected = status(RequestPhase::Rejected);
        rejected.error = Some("invalid request r1.yaml: spec.issue: is required".to_owned());
        rejected.errors = vec![FieldError {
            field: "spec.issue".to_owned(),
            message: "is required".to_owned(),
        }];
        let md = readme(&rejected, None, &BTreeMap::new(), None, None);
        assert!(
            md.contains("## Validation errors\n\n- `spec.issue`: is required"),
            "{md}"
        );
        assert!(!md.contains("audit.jsonl"), "{md}");
    }

    #[test]
    fn the_readme_opens_with_the_synthesis_its_claims_marked_and_linked() {
        use warroom_proto::synthesis::{CheckedClaim, ClaimKind};
        use warroom_proto::{Confidence, SynthesisStatus};
        let claim = |supported: bool, text: &str| CheckedClaim {
            kind: if supported {
                ClaimKind::SharedCause
            } else {
                ClaimKind::Outlier
            },
            claim: text.to_owned(),
            clusters: vec!["ams-a".to_owned(), "ams-b".to_owned()],
            cites: vec![
                CheckedCitation {
                    cluster: "ams-a".to_owned(),
                    finding: 1,
                    problem: None,
                },
                CheckedCitation {
                    cluster: "ams-b".to_owned(),
                    finding: 4,
                    problem: (!supported)
                        .then(|| "ams-b has no finding 4 (its report has 2)".to_owned()),
                },
            ],
            supported,
            problems: Vec::new(),
        };
        let synthesis = CheckedSynthesis {
            summary: "Both serve the same expired certificate.".to_owned(),
            claims: vec![
                claim(true, "The wildcard certificate expired."),
                claim(
                    false,
                    "![x](https://tracker.example/p.png) ams-b is different.",
                ),
            ],
            confidence: Confidence::High,
        };
        let mut s = status(RequestPhase::Completed);
        s.synthesis = Some(SynthesisStatus {
            phase: SynthesisPhase::Completed,
            cluster: Some("ams-a".parse().unwrap()),
            claims: Some(synthesis.counts()),
            error: None,
            cost_usd: Some(0.02),
            run: None,
        });
        let md = readme(&s, None, &BTreeMap::new(), Some(&synthesis), None);
        let opening = md
            .find("## Synthesis across clusters")
            .expect("a synthesis section");
        assert!(
            opening < md.find("| Request |").expect("the overview"),
            "{md}"
        );
        assert!(md.contains(SYNTHESIS_MARK), "{md}");
        assert!(md.contains("Claims: 1 supported, 1 unsupported."), "{md}");
        assert!(
            md.contains(
                "1. **Supported.** _shared cause_ (ams-a, ams-b): The wildcard certificate expired.\n   \
                 - Rests on: [ams-a finding 1](ams-a.md), [ams-b finding 4](ams-b.md)\n"
            ),
            "{md}"
        );
        assert!(
            md.contains("2. **UNSUPPORTED** (ams-b has no finding 4 (its report has 2)):"),
            "{md}"
        );
        // A citation that does not hold is not a link.
        assert!(md.contains(", ams-b finding 4\n"), "{md}");
        assert!(!md.contains("![x]"), "an image that would load: {md}");

        // Pending, then failed: the reports stand.
        let mut pending = s.clone();
        pending.synthesis.as_mut().unwrap().phase = SynthesisPhase::Pending;
        let md = readme(&pending, None, &BTreeMap::new(), None, None);
        assert!(md.contains("_Pending: every cluster ended"), "{md}");
        let mut failed = s.clone();
        let line = failed.synthesis.as_mut().unwrap();
        line.phase = SynthesisPhase::Failed;
        line.error = Some("no synthesis from the runner of ams-a within 10m".to_owned());
        let md = readme(&failed, None, &BTreeMap::new(), None, None);
        assert!(
            md.contains("> **No synthesis:** no synthesis from the runner of ams-a within 10m. The cluster reports below stand on their own."),
            "{md}"
        );
        // A single-cluster request has no synthesis section.
        let md = readme(
            &status(RequestPhase::Completed),
            None,
            &BTreeMap::new(),
            None,
            None,
        );
        assert!(!md.contains("Synthesis"), "{md}");
    }
}
