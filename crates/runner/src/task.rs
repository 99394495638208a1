//! One task, from the JetStream message to its ack: decode, report `Started`, prepare a fresh
//! workspace and HOME, run the agent while publishing audit events and progress acks, judge
//! the outcome, publish the result, ack. Stopped by shutdown, the task is handed back (nak)
//! without a result. Every run's Claude Code conversation is kept ([`crate::conversation`])
//! for the follow-up turns ([`turn`]) that continue it.

use std::path::{Path, PathBuf};
use std::time::Duration;
use warroom_runtime::Chain;

use tokio::sync::mpsc;
use tracing::{Instrument as _, debug, error, info, info_span, warn};
use warroom_proto::report::{AgentReport, CheckedReport, RunFacts};
use warroom_proto::status::MAX_RUNS;
use warroom_proto::wire::Redacted;
use warroom_proto::{
    AuditEvent, AuditKind, ClusterName, Denial, FollowUpTurn, Outcome, PodOrder, RequestId,
    ResultsDir, RunnerReport, Subject, Task, TaskResult, names,
};
use warroom_redact as redact;
use warroom_runtime::bus::Progress;
use warroom_runtime::shutdown::CancellationToken;
use warroom_runtime::{Bus, Delivery};

use crate::agent::{self, AgentEnv, Launch, Run, RunSite};
use crate::conversation::{ConversationKey, Conversations};
use crate::evidence::{self, Transcript};
use crate::guard::{self, GuardHook, HookFiles, ToolRules};
use crate::metrics::{NotRun, NotRunLabels, OutcomeLabels};
use crate::outbox::{self, Limits, Message, Outbox, RunIdentity};
use crate::proxy::{ModelApi, Proxy, Spend};
use crate::reaper::{self, WorkspaceLock};
use crate::rerun::{self, Verdict};
use crate::session_pod::{self, SessionPods};
use crate::stream::{self, Ending, Item};
use crate::{Config, Health, prompt};

mod synthesis;
mod turn;

/// How long keeping or restoring a conversation may take: the object store is on NATS, and a
/// run's result must not wait on an outage for longer than this.
const CONVERSATION_TIMEOUT: Duration = Duration::from_secs(30);

/// What the runner needs for every task.
#[derive(Debug)]
pub struct Runner {
    cluster: ClusterName,
    /// This replica's name (its host name), as `RunnerReport::Started` reports it.
    name: String,
    claude_bin: PathBuf,
    work_root: PathBuf,
    max_turns: u32,
    max_timeout: Duration,
    kill_grace: Duration,
    progress_interval: Duration,
    ack_wait: Duration,
    model: Option<String>,
    /// The JSON Schema of the agent's answer, as one `--json-schema` argument.
    answer_schema: String,
    /// The JSON Schema of a synthesis's answer, likewise.
    synthesis_schema: String,
    env: AgentEnv,
    /// The real model API; each run reaches it through a proxy of its own.
    model_api: ModelApi,
    /// The tool-call guard every run registers as its `PreToolUse` hook.
    guard: GuardHook,
    /// The session pods, when the runner holds them (`--session-pods`).
    session_pods: Option<std::sync::Arc<SessionPods>>,
    bus: Bus,
    health: Health,
}

/// How the handling of a task ended, for the ack.
enum Done {
    /// The result is stored, or the task is not to run: ack.
    Finished,
    /// Shutdown stopped the agent, or came before its result reached NATS: hand the task
    /// back at once.
    HandedBack,
}

/// What one run of the agent is asked.
enum Ask<'a> {
    /// The task's investigation: its prompt, answered in the report's form
    /// (`--json-schema`), in a new conversation.
    Investigation,
    /// A follow-up question, answered in free text, continuing the conversation of session
    /// `resume` when one was kept.
    FollowUp {
        turn: &'a FollowUpTurn,
        resume: Option<String>,
    },
}

impl Ask<'_> {
    /// The session a follow-up turn continues.
    fn resume(&self) -> Option<&str> {
        match self {
            Ask::Investigation => None,
            Ask::FollowUp { resume, .. } => resume.as_deref(),
        }
    }
}

/// What a run needs before the agent starts: its folders, what it is asked, its guard hook
/// and its model proxy.
struct Prepared<'a> {
    dirs: TaskDirs,
    ask: Ask<'a>,
    hook: HookFiles,
    proxy: Proxy,
}

/// A run in its workspace, as it ended.
struct Ran {
    run: Run,
    /// The guard's decisions over the run's tool calls.
    decisions: Vec<warroom_guard::hook::DecisionRecord>,
    spend: Spend,
    /// Whether the run continued a kept conversation (`--resume`).
    resumed: bool,
}

impl Ran {
    /// A run that could not be started, for `reason`.
    fn not_started(reason: String) -> Ran {
        Ran {
            run: not_started(reason),
            decisions: Vec::new(),
            spend: Spend::default(),
            resumed: false,
        }
    }
}

/// What a finished run's result reports, redacted.
struct Judged {
    outcome: Outcome,
    error: Option<String>,
    final_text: String,
    denials: Vec<Denial>,
    report: Option<CheckedReport>,
}

impl Runner {
    pub fn new(
        config: &Config,
        model_api: ModelApi,
        session_pods: Option<std::sync::Arc<SessionPods>>,
        bus: Bus,
        health: Health,
    ) -> Runner {
        let name = nix::unistd::gethostname()
            .ok()
            .and_then(|name| name.into_string().ok())
            .unwrap_or_else(|| "runner".to_owned());
        Runner {
            cluster: config.cluster.clone(),
            name,
            claude_bin: config.claude_bin.clone(),
            work_root: config.work_root(),
            max_turns: config.max_turns,
            max_timeout: config.max_timeout,
            kill_grace: config.kill_grace,
            progress_interval: config.progress_interval,
            ack_wait: config.ack_wait,
            model: config.model.clone(),
            answer_schema: warroom_proto::report::agent_report_schema().to_string(),
            synthesis_schema: warroom_proto::synthesis::schema().to_string(),
            env: config.agent_env(),
            model_api,
            // `run` validated the configuration, so the guard binary was found; the name
            // itself is the fallback only for a runner built without validation.
            guard: GuardHook {
                bin: config
                    .resolve_guard_bin()
                    .unwrap_or_else(|| config.guard_bin.clone()),
                config: config
                    .guard_config
                    .as_ref()
                    .map(|path| std::path::absolute(path).unwrap_or_else(|_| path.clone())),
            },
            session_pods,
            bus,
            health,
        }
    }

    /// This replica's host name, as its reports and heartbeats give it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Handles one delivered task message to its ack, nak or term. Never fails: whatever goes
    /// wrong is logged and decided on here.
    pub async fn handle(&self, delivery: Delivery<Task>, stop: CancellationToken) {
        // The bus checked that the task arrived on this cluster's subject; a task naming
        // another cluster never gets here.
        let task = &delivery.message;
        if task.cluster.name != self.cluster {
            error!(request = %task.request_id, task_cluster = %task.cluster.name, cluster = %self.cluster,
                "a task for another cluster reached this runner; terminating it");
            self.health.metrics.tasks_terminated.inc();
            delivery.term("the task is for another cluster").await;
            return;
        }
        let attempt = u32::try_from(delivery.delivered()).unwrap_or(u32::MAX);
        let turn = task.follow_up.as_ref().map_or(0, |f| f.turn);
        let span =
            info_span!("task", request = %task.request_id, cluster = %self.cluster, attempt, turn);
        async {
            self.health.metrics.tasks.inc();
            let progress = spawn_progress_acks(delivery.progress_handle(), self.ack_wait / 3);
            // A synthesis runs after its clusters ended, so their records say final: it is
            // not an investigation, and the dispatcher bounds it on its own.
            // A pod order is not an investigation and has no task record of its own: a
            // session without a first question has its cluster record final at once, and its
            // pod must still be made.
            let done = if let Some(order) = &task.pod {
                self.pod_order(task, order, attempt, stop).await
            } else if let Some(input) = &task.synthesis {
                self.synthesize(task, input, attempt, stop).await
            } else if let Some(turn) = &task.follow_up {
                // A turn runs after its cluster's investigation ended: its own record decides.
                self.follow_up(task, turn, attempt, stop).await
            } else {
                self.investigate(task, attempt, stop).await
            };
            progress.abort();
            match done {
                Done::Finished => {
                    if let Err(e) = delivery.ack_confirmed().await {
                        // The result is stored; a redelivery finds the cluster final in the
                        // dispatcher's record and is acknowledged without a run.
                        warn!(cause = %Chain(&e), "cannot ack the finished task");
                    }
                }
                Done::HandedBack => {
                    info!("stopped by shutdown; handing the task back");
                    self.health.metrics.tasks_handed_back.inc();
                    if let Err(e) = delivery.nak_confirmed(None).await {
                        warn!(cause = %Chain(&e), "cannot nak the task; it comes back after the ack wait");
                    }
                }
            }
        }
        .instrument(span)
        .await;
    }

    /// Runs the task's investigation unless its record says it is not to run (its cluster
    /// already final, or the task back after its last run).
    async fn investigate(&self, task: &Task, attempt: u32, stop: CancellationToken) -> Done {
        let record = names::task_record_key(&self.cluster, &task.request_id);
        match rerun::check(&self.bus, &record, attempt).await {
            Verdict::AlreadyFinal(phase) => {
                info!(cluster_phase = %phase, "the task's cluster is already final; acknowledging it without running it");
                self.not_run(NotRun::Final);
                Done::Finished
            }
            Verdict::TooManyRuns => {
                warn!(
                    max_runs = MAX_RUNS,
                    "the task came back after its last run; failing it instead of running it again"
                );
                self.not_run(NotRun::MaxRuns);
                self.refuse(task, attempt, stop).await
            }
            Verdict::RunUnchecked(cause) => {
                warn!(%cause, "cannot read the task's record; running it anyway (a second result would be ignored)");
                self.execute(task, attempt, stop).await
            }
            Verdict::Run => self.execute(task, attempt, stop).await,
        }
    }

    /// Carries out a session's pod order and reports how it ended.
    async fn pod_order(
        &self,
        task: &Task,
        order: &PodOrder,
        attempt: u32,
        stop: CancellationToken,
    ) -> Done {
        let answer = match (order, &self.session_pods) {
            (PodOrder::Hold { .. }, None) => session_pod::Answer {
                phase: warroom_proto::status::PodPhase::Failed,
                error: Some(session_pod::NOT_ENABLED.to_owned()),
            },
            (
                PodOrder::Hold {
                    expires_at,
                    budget_usd,
                },
                Some(pods),
            ) => {
                let hold = session_pod::Hold {
                    request: &task.request_id,
                    engineer: &task.engineer,
                    expires_at: *expires_at,
                    budget_usd: *budget_usd,
                    tools: &task.allowed_tools,
                };
                pods.hold(&hold, &stop).await
            }
            // Without session pods there is none to delete; releasing is still what was asked.
            (PodOrder::Release, None) => session_pod::Answer {
                phase: warroom_proto::status::PodPhase::Removed,
                error: None,
            },
            (PodOrder::Release, Some(pods)) => pods.release(&task.request_id, &stop).await,
        };
        match &answer.error {
            Some(error) => warn!(phase = answer.phase.as_str(), %error, "session pod order failed"),
            None => info!(phase = answer.phase.as_str(), "session pod order done"),
        }
        let report = session_pod::report(&self.cluster, &task.request_id, answer);
        let outbox = self.outbox(task, attempt, &stop);
        outbox.send(
            Subject::Result(task.request_id.clone(), self.cluster.clone()),
            session_pod::report_id(&report),
            Message::Report(RunnerReport::SessionPod(report)),
        );
        self.deliver(&outbox, &stop).await
    }

    /// Counts a delivered task that was not run, and why.
    fn not_run(&self, reason: NotRun) {
        self.health
            .metrics
            .tasks_not_run
            .get_or_create(&NotRunLabels { reason })
            .inc();
    }

    /// Starts the run's outbox: everything the run publishes goes through it, in order.
    fn outbox(&self, task: &Task, attempt: u32, stop: &CancellationToken) -> Outbox {
        Outbox::start(
            self.bus.clone(),
            RunIdentity {
                request: task.request_id.clone(),
                cluster: self.cluster.clone(),
                results_dir: task.results_dir.clone(),
                attempt,
                turn: task.follow_up.as_ref().map_or(0, |f| f.turn),
            },
            Limits {
                count: outbox::MAX_BUFFERED,
                bytes: outbox::MAX_BUFFERED_BYTES,
            },
            self.health.metrics.clone(),
            stop.clone(),
        )
    }

    /// Waits until everything the run queued is stored by NATS: as long as it takes while the
    /// runner runs (the task's progress acks go on), a short grace at shutdown.
    async fn deliver(&self, outbox: &Outbox, stop: &CancellationToken) -> Done {
        tokio::select! {
            () = outbox.drained() => return Done::Finished,
            () = stop.cancelled() => {}
        }
        // The flusher stops at shutdown too; what is left is the next attempt's to redo.
        if outbox.pending() == 0 {
            return Done::Finished;
        }
        warn!(
            unsent = outbox.pending(),
            "shutdown before the run's messages reached NATS; handing the task back"
        );
        Done::HandedBack
    }

    /// Fails a task that came back after its last allowed run, without running it.
    async fn refuse(&self, task: &Task, attempt: u32, stop: CancellationToken) -> Done {
        let outbox = self.outbox(task, attempt, &stop);
        let mut events = Events::new(&outbox, task, &self.cluster, attempt);
        let error = rerun::too_many_runs_reason(attempt);
        events.push(AuditKind::Finished {
            outcome: Outcome::Failed,
            error: Some(error.clone()),
            report_redacted: Default::default(),
        });
        let now = warroom_proto::now();
        let request = &task.request_id;
        let cluster = &self.cluster;
        outbox.send(
            Subject::Result(request.clone(), cluster.clone()),
            format!("{request}/{cluster}/{attempt}/finished"),
            Message::Report(RunnerReport::Finished(TaskResult {
                request_id: request.clone(),
                cluster: cluster.clone(),
                outcome: Outcome::Failed,
                final_text: String::new(),
                error: Some(error),
                cost_usd: 0.0,
                num_turns: 0,
                permission_denials: Vec::new(),
                started_at: now,
                finished_at: now,
                attempt,
                report: None,
                run: None,
            })),
        );
        self.deliver(&outbox, &stop).await
    }

    /// Runs the task's agent and publishes its result after its audit events; a run stopped
    /// by shutdown is handed back without one.
    async fn execute(&self, task: &Task, attempt: u32, stop: CancellationToken) -> Done {
        let started_at = warroom_proto::now();
        let request = &task.request_id;
        let cluster = &self.cluster;
        let results = Subject::Result(request.clone(), cluster.clone());
        let outbox = self.outbox(task, attempt, &stop);
        outbox.send(
            results.clone(),
            format!("{request}/{cluster}/{attempt}/started"),
            Message::Report(RunnerReport::Started {
                request_id: request.clone(),
                cluster: cluster.clone(),
                runner: self.name.clone(),
                at: started_at,
                attempt,
            }),
        );

        let rules = ToolRules::for_tools(&task.allowed_tools);
        let mut events = Events::new(&outbox, task, cluster, attempt);
        events.push(AuditKind::Started {
            runner: self.name.clone(),
            allowed: rules.allowed.clone(),
            denied: rules.denied.clone(),
        });
        info!(timeout = ?self.timeout(task), tools = ?rules.tools, "agent starting");

        let Ran {
            run,
            decisions,
            spend,
            ..
        } = self
            .run_in_workspace(task, &rules, &mut events, None, stop.clone())
            .await;
        if run.cancelled && !run.request_cancelled {
            // Whatever of the run's events can still go out in the grace period does.
            let _ = tokio::time::timeout(crate::FLUSH_TIMEOUT, outbox.drained()).await;
            return Done::HandedBack;
        }

        let judged = self.judge(&mut events, &run, &decisions, &spend);
        let (outcome, error) = (judged.outcome, judged.error.clone());
        if outcome == Outcome::Completed && judged.report.is_none() {
            self.health.metrics.answers_unstructured.inc();
        }
        let mut facts = events.facts.clone();
        if facts.model.is_none() {
            facts.model.clone_from(&self.model);
        }
        facts.tokens = run
            .result
            .as_ref()
            .map(|r| r.usage.to_wire())
            .unwrap_or_default();
        let result = TaskResult {
            request_id: request.clone(),
            cluster: cluster.clone(),
            outcome,
            final_text: judged.final_text,
            error: judged.error,
            // What the proxy metered, the figure the budget holds the run to.
            cost_usd: spend.cost_usd,
            num_turns: run.result.as_ref().map_or(0, |r| r.num_turns),
            permission_denials: judged.denials,
            started_at,
            finished_at: warroom_proto::now(),
            attempt,
            report: judged.report.map(Box::new),
            run: Some(facts),
        };
        // Published after every event of the run, in order, once NATS takes it.
        outbox.send(
            results,
            format!("{request}/{cluster}/{attempt}/finished"),
            Message::Report(RunnerReport::Finished(result)),
        );
        self.count_finished(outcome, error.as_deref(), &spend);
        self.deliver(&outbox, &stop).await
    }

    /// How the run ended, as its result reports it: its outcome under the budget, its
    /// report and refused calls, redacted; the guard's decisions and the `finished` event
    /// are queued in `events` on the way.
    fn judge(
        &self,
        events: &mut Events<'_>,
        run: &Run,
        decisions: &[warroom_guard::hook::DecisionRecord],
        spend: &Spend,
    ) -> Judged {
        let (outcome, error) = stream::judge(
            &run.ending,
            run.result.as_ref(),
            self.max_turns,
            &run.stderr,
        );
        let (outcome, error) = if run.request_cancelled {
            (Outcome::Cancelled, Some(rerun::CANCELLED_REASON.to_owned()))
        } else {
            spend.judge(outcome, error)
        };
        let denials = self.refused_calls(events, run, decisions);
        let final_text = final_text(outcome, run);
        // The result goes to the dispatcher and from there into status snapshots: it is
        // redacted here, and what was removed is recorded with the `finished` event.
        let (final_text, error, denials, mut report_redacted) =
            redact_result(final_text, error, denials);
        let report = self.structured_report(events, run, &mut report_redacted);
        events.push(AuditKind::Finished {
            outcome,
            error: error.clone(),
            report_redacted: report_redacted.clone(),
        });
        Judged {
            outcome,
            error,
            final_text,
            denials,
            report,
        }
    }

    /// The run's structured answer, redacted, with every finding's evidence checked against
    /// what the run's audit lines hold; `None` when the run gave none that fits the schema.
    fn structured_report(
        &self,
        events: &Events<'_>,
        run: &Run,
        removed: &mut Redacted,
    ) -> Option<CheckedReport> {
        let mut answer = run.result.as_ref()?.structured_output.clone()?;
        for (kind, n) in redact::json(&mut answer).iter() {
            *removed.entry(kind.to_owned()).or_default() += n;
        }
        let answer: AgentReport = match serde_json::from_value(answer) {
            Ok(answer) => answer,
            Err(e) => {
                warn!(cause = %e, "the structured answer does not fit the report's form; keeping it as free text");
                return None;
            }
        };
        let report = evidence::check(answer, &events.transcript);
        let counts = report.counts();
        let metrics = &self.health.metrics;
        metrics
            .findings_supported
            .inc_by(u64::from(counts.supported));
        metrics
            .findings_unsupported
            .inc_by(u64::from(counts.unsupported));
        Some(report)
    }

    /// Counts a finished run in the metrics and logs how it ended.
    fn count_finished(&self, outcome: Outcome, error: Option<&str>, spend: &Spend) {
        let outcome_label = match outcome {
            Outcome::Completed => "completed",
            Outcome::Failed => "failed",
            Outcome::TimedOut => "timed_out",
            Outcome::Cancelled => "cancelled",
        };
        self.health
            .metrics
            .tasks_finished
            .get_or_create(&OutcomeLabels {
                outcome: outcome_label,
            })
            .inc();
        // What the model proxy still found in the tool results on their way to the model,
        // after the PostToolUse hook: zero while the hook does its work.
        self.health
            .metrics
            .model_request_redactions
            .inc_by(spend.redacted);
        self.health
            .metrics
            .model_requests_unreadable
            .inc_by(spend.unreadable);
        let (cost, calls, redacted) = (spend.cost_usd, spend.requests, spend.redacted);
        match error {
            Some(reason) => {
                warn!(outcome = ?outcome, reason = %reason, cost, calls, redacted, "agent finished");
            }
            None => info!(outcome = ?outcome, cost, calls, redacted, "agent finished"),
        }
    }

    /// The run's refused calls, as its result reports them, once [`Runner::audit_decisions`]
    /// queued them and the guard's decisions in `events`.
    fn refused_calls(
        &self,
        events: &mut Events<'_>,
        run: &Run,
        decisions: &[warroom_guard::hook::DecisionRecord],
    ) -> Vec<Denial> {
        let mut denials: Vec<Denial> = run
            .result
            .as_ref()
            .map(|r| r.permission_denials.iter().map(|d| d.to_wire()).collect())
            .unwrap_or_default();
        self.audit_decisions(events, &mut denials, decisions);
        denials
    }

    /// Audits every decision of the guard: a refusal goes into the refused call's input (its
    /// rule and reason), a refusal no denial of the CLI's result names (a run that ended
    /// without a result) is published on its own, and an allowed call is a `guard_allowed`
    /// line; then the refused calls themselves.
    fn audit_decisions(
        &self,
        events: &mut Events<'_>,
        denials: &mut [Denial],
        decisions: &[warroom_guard::hook::DecisionRecord],
    ) {
        for record in guard::attribute_denials(denials, decisions) {
            self.health.metrics.tool_refused.inc();
            events.push(AuditKind::ToolResult {
                tool_use_id: String::new(),
                is_error: true,
                output: format!("guard: {}: {}", record.rule, record.reason),
            })
        }
        for record in decisions.iter().filter(|r| r.decision == "allow") {
            events.push(AuditKind::GuardAllowed {
                tool: record.tool.clone(),
                input: record.input.clone(),
                rule: record.rule.clone(),
                reason: record.reason.clone(),
            })
        }
        for denial in denials.iter() {
            self.health.metrics.tool_refused.inc();
            events.push(AuditKind::ToolRefused {
                tool_use_id: denial.tool_use_id.clone(),
                tool: denial.tool.clone(),
                input: denial.input.clone(),
            })
        }
    }

    /// The request's timeout, cut to `--max-timeout`.
    fn timeout(&self, task: &Task) -> Duration {
        Duration::from_secs(task.timeout_secs).min(self.max_timeout)
    }

    /// Prepares the workspace, the guard hook and the model proxy, runs the agent in them and
    /// removes them again. The investigation (`turn` `None`) starts the conversation of the
    /// task's cluster and request; a follow-up turn continues it, restored from the object
    /// store into the fresh HOME. Either way the conversation is kept again after the run,
    /// unless shutdown stopped it (the run is done again from the conversation as it was).
    async fn run_in_workspace(
        &self,
        task: &Task,
        rules: &ToolRules,
        events: &mut Events<'_>,
        turn: Option<&FollowUpTurn>,
        stop: CancellationToken,
    ) -> Ran {
        let Prepared {
            dirs,
            ask,
            hook,
            proxy,
        } = match self.prepare(task, turn).await {
            Ok(prepared) => prepared,
            Err(reason) => return Ran::not_started(reason),
        };
        let launch = self.launch(task, rules, &dirs, &hook, &proxy.base_url(), &ask);
        // A turn's progress reports carry its turn: its cluster is final while it runs.
        events.progress = Some(crate::progress::Tally::new(
            self.progress_interval,
            proxy.meter(),
            hook.decisions.clone(),
        ));
        let run = self
            .run_agent(&launch, events, &hook.redactions, stop)
            .await;
        events.progress = None;
        let spend = proxy.spend();
        drop(proxy);
        let decisions = guard::read_decisions(&hook.decisions);
        if !run.cancelled || run.request_cancelled {
            // The CLI announced its session; a resumed one keeps the id it was given.
            let session = events.session.as_deref().or(ask.resume());
            self.keep_conversation(&task.request_id, &dirs, session)
                .await;
        }
        dirs.remove_in_background().await;
        Ran {
            run,
            decisions,
            spend,
            resumed: ask.resume().is_some(),
        }
    }

    /// Creates the run's workspace and HOME, restores the conversation a follow-up `turn`
    /// continues into them, writes the guard hook and starts the model proxy; or says why
    /// the run cannot start, with nothing of it left.
    async fn prepare<'a>(
        &self,
        task: &Task,
        turn: Option<&'a FollowUpTurn>,
    ) -> Result<Prepared<'a>, String> {
        // File system work runs on the blocking pool, off the threads that drive the run.
        let created = {
            let (root, id) = (self.work_root.clone(), task.request_id.clone());
            tokio::task::spawn_blocking(move || TaskDirs::create(&root, &id))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)))
        };
        let dirs = match created {
            Ok(dirs) => dirs,
            Err(e) => {
                let reason = format!(
                    "cannot create a workspace in {}: {e}",
                    self.work_root.display()
                );
                return Err(reason);
            }
        };
        let ask = match turn {
            None => Ask::Investigation,
            Some(turn) => match self.restore_conversation(&task.request_id, &dirs).await {
                Ok(resume) => Ask::FollowUp { turn, resume },
                Err(reason) => {
                    dirs.remove_in_background().await;
                    return Err(reason);
                }
            },
        };
        let hook = match self.guard.write(dirs.root.path(), &dirs.workspace) {
            Ok(hook) => hook,
            Err(e) => {
                let reason = format!(
                    "cannot write the guard hook into {}: {e}",
                    dirs.root.path().display()
                );
                dirs.remove_in_background().await;
                return Err(reason);
            }
        };
        let proxy = match Proxy::start(&self.model_api).await {
            Ok(proxy) => proxy,
            Err(e) => {
                dirs.remove_in_background().await;
                let reason = format!("cannot start the model API proxy on 127.0.0.1: {e}");
                return Err(reason);
            }
        };
        Ok(Prepared {
            dirs,
            ask,
            hook,
            proxy,
        })
    }

    /// Writes the kept conversation of the task's cluster and request into the run's HOME and
    /// returns its session id, `None` when none was kept. A conversation that cannot be read
    /// fails the turn (the reason): a turn run without it would answer out of context, and
    /// its conversation would replace the kept one.
    async fn restore_conversation(
        &self,
        request: &RequestId,
        dirs: &TaskDirs,
    ) -> Result<Option<String>, String> {
        let key = ConversationKey::new(self.cluster.clone(), request.clone());
        let restoring = async {
            let conversations = Conversations::open(&self.bus, &self.cluster).await?;
            conversations
                .restore(&key, &dirs.home, &dirs.transcript_cwd())
                .await
        };
        match tokio::time::timeout(CONVERSATION_TIMEOUT, restoring).await {
            Ok(Ok(session)) => {
                if session.is_none() {
                    info!(conversation = %key, "no conversation was kept; the turn starts a new one");
                }
                Ok(session)
            }
            Ok(Err(e)) => Err(format!(
                "cannot restore the conversation to continue: {}",
                Chain(&e)
            )),
            Err(_) => Err(format!(
                "cannot restore the conversation to continue: conversation {key} did not come \
                 from the object store within {CONVERSATION_TIMEOUT:?}"
            )),
        }
    }

    /// Keeps the run's conversation, the transcript of CLI session `session`, as that of the
    /// task's cluster and request, for the turns that follow. A failure is logged and changes
    /// nothing of the run: the next turn continues the conversation as it was last kept, or
    /// starts a new one.
    async fn keep_conversation(&self, request: &RequestId, dirs: &TaskDirs, session: Option<&str>) {
        let Some(session) = session else {
            debug!("the CLI announced no session; there is no conversation to keep");
            return;
        };
        let key = ConversationKey::new(self.cluster.clone(), request.clone());
        let saving = async {
            let conversations = Conversations::open(&self.bus, &self.cluster).await?;
            conversations
                .save(&key, &dirs.home, &dirs.transcript_cwd(), session)
                .await
        };
        match tokio::time::timeout(CONVERSATION_TIMEOUT, saving).await {
            Ok(Ok(())) => debug!(conversation = %key, "conversation kept"),
            Ok(Err(e)) => {
                warn!(cause = %Chain(&e), conversation = %key, "cannot keep the run's conversation")
            }
            Err(_) => warn!(conversation = %key, timeout = ?CONVERSATION_TIMEOUT,
                "cannot keep the run's conversation: the object store did not take it in time"),
        }
    }

    fn launch(
        &self,
        task: &Task,
        rules: &ToolRules,
        dirs: &TaskDirs,
        hook: &HookFiles,
        model_url: &str,
        ask: &Ask<'_>,
    ) -> Launch {
        // No `--no-session-persistence`: the CLI keeps the run's transcript under its HOME,
        // the conversation a follow-up turn continues.
        let mut args = vec![
            "-p".to_owned(),
            "--output-format".to_owned(),
            "stream-json".to_owned(),
            "--verbose".to_owned(),
            "--max-turns".to_owned(),
            self.max_turns.to_string(),
        ];
        if let Some(model) = &self.model {
            args.push("--model".to_owned());
            args.push(model.clone());
        }
        args.extend(rules.cli_args());
        let prompt = match ask {
            Ask::Investigation => {
                // The answer comes as the report's structured form (the CLI's
                // StructuredOutput tool); a run that gives none still reports its free text.
                args.push("--json-schema".to_owned());
                args.push(self.answer_schema.clone());
                prompt::build(task)
            }
            // A follow-up is answered in free text, in the conversation it continues.
            Ask::FollowUp { turn, resume } => {
                if let Some(session) = resume {
                    args.push("--resume".to_owned());
                    args.push(session.clone());
                }
                prompt::follow_up(task, &turn.prompt, resume.is_some())
            }
        };
        // The guard hook decides every call first; the permission rules stay the second layer.
        args.push("--settings".to_owned());
        args.push(hook.settings.display().to_string());
        Launch {
            program: self.claude_bin.clone(),
            args,
            prompt,
            env: self.env.vars(RunSite {
                home: &dirs.home,
                tmp: &dirs.tmp,
                run_id: &dirs.run_id(),
                model_url,
            }),
            run_id: dirs.run_id(),
            cwd: dirs.workspace.clone(),
            timeout: self.timeout(task),
            timeout_secs: self.timeout(task).as_secs().max(1),
            kill_grace: self.kill_grace,
        }
    }

    /// Runs the agent and queues its tool calls and results as they come. NATS being
    /// unreachable does not stop the agent: the run's outbox keeps its events until it is
    /// back. Shutdown stops the run (handed back), and so does the request's cancellation,
    /// which the task's (or the turn's) record says ([`rerun::cancelled`], checked every
    /// [`rerun::CANCEL_CHECK`]; the run is then reported `cancelled`).
    async fn run_agent(
        &self,
        launch: &Launch,
        events: &mut Events<'_>,
        hook_redactions: &Path,
        stop: CancellationToken,
    ) -> Run {
        let (items_tx, mut items_rx) = mpsc::channel::<Item>(64);
        let cancel = stop.child_token();
        // A turn is cancelled by its own record (its session ended, or its request was
        // cancelled); the investigation by the task's.
        let record = match events.turn {
            0 => names::task_record_key(&events.cluster, &events.request),
            turn => names::turn_record_key(&events.cluster, &events.request, turn),
        };
        let queueing = async {
            while let Some(item) = items_rx.recv().await {
                let kind = match item {
                    Item::ToolCall { id, tool, input } => {
                        self.health.metrics.tool_calls.inc();
                        AuditKind::ToolCall {
                            tool_use_id: id,
                            tool,
                            input,
                        }
                    }
                    Item::ToolResult {
                        id,
                        is_error,
                        output,
                    } => {
                        // The CLI streams the output as the PostToolUse hook redacted it;
                        // what the hook removed is counted with what the runner removes.
                        let removed = guard::hook_redactions(hook_redactions, &id);
                        events.push_counted(
                            AuditKind::ToolResult {
                                tool_use_id: id,
                                is_error,
                                output,
                            },
                            removed,
                        );
                        continue;
                    }
                    Item::Init {
                        model,
                        cli_version,
                        session_id,
                    } => {
                        events.facts.model = model;
                        events.facts.cli_version = cli_version;
                        events.session = session_id;
                        continue;
                    }
                    Item::Text(_) | Item::Result(_) => continue,
                };
                events.push(kind);
            }
        };
        let running = async {
            let (run, ()) = tokio::join!(agent::run(launch, items_tx, cancel.clone()), queueing);
            run
        };
        tokio::pin!(running);
        let watch = rerun::cancelled(&self.bus, &record, rerun::CANCEL_CHECK);
        tokio::select! {
            run = &mut running => run,
            () = watch => {
                info!("the request was cancelled; stopping the agent (SIGINT, then its processes killed after the grace period)");
                cancel.cancel();
                let mut run = running.await;
                run.request_cancelled = true;
                run
            }
        }
    }
}

/// The run of an agent that could not be started.
fn not_started(reason: String) -> Run {
    Run {
        ending: Ending::SpawnFailed(reason),
        cancelled: false,
        request_cancelled: false,
        result: None,
        last_text: None,
        stderr: String::new(),
    }
}

/// A progress ack every `every`, so a long investigation is not given to another replica.
fn spawn_progress_acks(progress: Progress, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            progress.in_progress().await;
        }
    })
}

/// The audit events of one task attempt, numbered in order, queued in its outbox.
struct Events<'a> {
    outbox: &'a Outbox,
    subject: Subject,
    request: RequestId,
    cluster: ClusterName,
    results_dir: ResultsDir,
    attempt: u32,
    /// The follow-up turn the run answers; 0 for the investigation.
    turn: u32,
    seq: u64,
    /// While the agent runs: its progress, reported to the dispatcher when due.
    progress: Option<crate::progress::Tally>,
    /// The run's tool calls as published, for the evidence check.
    transcript: Transcript,
    /// The model and CLI version the CLI announced.
    facts: RunFacts,
    /// The session the CLI announced: the conversation the run's transcript keeps.
    session: Option<String>,
}

impl<'a> Events<'a> {
    fn new(outbox: &'a Outbox, task: &Task, cluster: &ClusterName, attempt: u32) -> Events<'a> {
        Events {
            outbox,
            subject: Subject::Event(task.request_id.clone(), cluster.clone()),
            request: task.request_id.clone(),
            cluster: cluster.clone(),
            results_dir: task.results_dir.clone(),
            attempt,
            turn: task.follow_up.as_ref().map_or(0, |f| f.turn),
            seq: 0,
            progress: None,
            transcript: Transcript::default(),
            facts: RunFacts::default(),
            session: None,
        }
    }

    /// Redacts `kind` and queues it, with the counts of what was removed.
    fn push(&mut self, kind: AuditKind) {
        self.push_counted(kind, Redacted::new());
    }

    /// Redacts `kind` and queues it, with the counts of what was removed, to which
    /// `removed_before` (what was removed before the runner saw it) is added.
    fn push_counted(&mut self, mut kind: AuditKind, removed_before: Redacted) {
        let mut redacted = redact_event(&mut kind);
        for (kind, n) in removed_before {
            *redacted.entry(kind).or_default() += n;
        }
        let id = match self.turn {
            0 => format!(
                "{}/{}/{}/{}",
                self.request, self.cluster, self.attempt, self.seq
            ),
            turn => format!(
                "{}/{}/turn-{turn}-{}/{}",
                self.request, self.cluster, self.attempt, self.seq
            ),
        };
        self.seq += 1;
        if let Some(progress) = self.progress.as_mut().and_then(|t| t.observe(&kind)) {
            // After the events before it, on the results subject the dispatcher reads.
            self.outbox.send(
                Subject::Result(self.request.clone(), self.cluster.clone()),
                format!("{id}/progress"),
                Message::Report(RunnerReport::Progress {
                    request_id: self.request.clone(),
                    cluster: self.cluster.clone(),
                    attempt: self.attempt,
                    turn: self.turn,
                    progress,
                }),
            );
        }
        match &kind {
            AuditKind::ToolCall {
                tool_use_id,
                tool,
                input,
            } => self.transcript.call(tool_use_id, tool, input),
            AuditKind::ToolResult {
                tool_use_id,
                is_error,
                output,
            } => self.transcript.result(tool_use_id, *is_error, output, &id),
            _ => {}
        }
        let event = AuditEvent {
            id: id.clone(),
            request_id: self.request.clone(),
            cluster: self.cluster.clone(),
            results_dir: self.results_dir.clone(),
            at: warroom_proto::now(),
            attempt: self.attempt,
            turn: self.turn,
            kind,
            redacted,
        };
        self.outbox
            .send(self.subject.clone(), id, Message::Event(event));
    }
}

/// The report of a run: the CLI's result text when it completed, else the model's last words
/// (its partial findings; the result text of a failed run is the error).
fn final_text(outcome: Outcome, run: &Run) -> String {
    match outcome {
        Outcome::Completed => run
            .result
            .as_ref()
            .and_then(|r| r.result.clone())
            .filter(|t| !t.trim().is_empty())
            .or(run.last_text.clone()),
        _ => run.last_text.clone(),
    }
    .unwrap_or_default()
}

/// The longest report text (the run's final text) sent on, after redaction; the rest is cut
/// with a marker. It keeps a result far below NATS's 1 MiB message limit, and bounds the work
/// of everything downstream (the dispatcher's snapshots, the publisher's redaction and
/// Markdown) whatever the model wrote.
pub const MAX_REPORT_TEXT: usize = 256 * 1024;

/// Redacts every string of an audit event in place and returns what was removed; then cuts a
/// tool's output to [`stream::MAX_TOOL_OUTPUT`] and its input to [`stream::MAX_TOOL_INPUT`].
/// Redaction runs on the whole text first, so a secret the cut would split (a private key
/// across the limit) is found whole and never leaks its first lines. Text with nothing to
/// remove is not copied.
fn redact_event(kind: &mut AuditKind) -> Redacted {
    let mut removed = redact::Counts::new();
    match kind {
        AuditKind::Started {
            runner,
            allowed,
            denied,
        } => {
            for text in std::iter::once(runner).chain(allowed).chain(denied) {
                redact_text(text, &mut removed);
            }
        }
        AuditKind::ToolCall { input, .. } | AuditKind::ToolRefused { input, .. } => {
            removed.merge(&redact::json(input));
            *input = stream::bounded_input(input);
        }
        AuditKind::ToolResult { output, .. } => {
            redact_text(output, &mut removed);
            if output.len() > stream::MAX_TOOL_OUTPUT {
                *output = stream::truncate_redacted(output, stream::MAX_TOOL_OUTPUT);
            }
        }
        AuditKind::GuardAllowed { input, reason, .. } => {
            redact_text(input, &mut removed);
            redact_text(reason, &mut removed);
        }
        AuditKind::Finished { error, .. } => {
            if let Some(error) = error {
                redact_text(error, &mut removed);
            }
        }
        AuditKind::TurnAnswer {
            question,
            answer,
            error,
            ..
        } => {
            redact_text(question, &mut removed);
            redact_text(answer, &mut removed);
            if answer.len() > MAX_REPORT_TEXT {
                *answer = stream::truncate_redacted(answer, MAX_REPORT_TEXT);
            }
            if let Some(error) = error {
                redact_text(error, &mut removed);
            }
        }
        AuditKind::EventsDropped { .. } => {}
    }
    to_wire(&removed)
}

/// The task's result as it may leave the runner: the final text, the error (which may quote
/// the CLI's stderr) and the refused calls' inputs redacted, with what was removed; then the
/// final text cut to [`MAX_REPORT_TEXT`] and each input to [`stream::MAX_TOOL_INPUT`].
fn redact_result(
    final_text: String,
    error: Option<String>,
    mut denials: Vec<Denial>,
) -> (String, Option<String>, Vec<Denial>, Redacted) {
    let mut removed = redact::Counts::new();
    let mut final_text = final_text;
    redact_text(&mut final_text, &mut removed);
    if final_text.len() > MAX_REPORT_TEXT {
        final_text = stream::truncate_redacted(&final_text, MAX_REPORT_TEXT);
    }
    let error = error.map(|mut error| {
        redact_text(&mut error, &mut removed);
        error
    });
    for denial in &mut denials {
        removed.merge(&redact::json(&mut denial.input));
        denial.input = stream::bounded_input(&denial.input);
    }
    (final_text, error, denials, to_wire(&removed))
}

/// Replaces `text` by its redaction when something was removed.
fn redact_text(text: &mut String, removed: &mut redact::Counts) {
    let redaction = redact::text(text);
    if redaction.removed.is_empty() {
        return;
    }
    removed.merge(&redaction.removed);
    let redacted = redaction.into_string();
    *text = redacted;
}

fn to_wire(counts: &redact::Counts) -> Redacted {
    counts
        .iter()
        .map(|(kind, n)| (kind.to_owned(), n))
        .collect()
}

/// A task's fresh, empty workspace (the agent's cwd), its own HOME and temp folder, all
/// removed afterwards. The root beside them is private to the runner: it holds the guard
/// hook's settings, script and decisions, out of the workspace the agent may write, and the
/// lock that marks the run as alive (a dead runner's folders are removed at start-up).
struct TaskDirs {
    root: tempfile::TempDir,
    _lock: WorkspaceLock,
    workspace: PathBuf,
    home: PathBuf,
    tmp: PathBuf,
}

impl TaskDirs {
    fn create(work_root: &Path, request: &str) -> std::io::Result<TaskDirs> {
        let root = tempfile::Builder::new()
            .prefix(&format!("{}{request}-", reaper::WORKSPACE_PREFIX))
            .tempdir_in(work_root)?;
        let lock = WorkspaceLock::acquire(root.path())?;
        let workspace = root.path().join("workspace");
        let home = root.path().join("home");
        let tmp = root.path().join("tmp");
        std::fs::create_dir(&workspace)?;
        std::fs::create_dir(&home)?;
        std::fs::create_dir(&tmp)?;
        Ok(TaskDirs {
            root,
            _lock: lock,
            workspace,
            home,
            tmp,
        })
    }

    /// The workspace as the CLI sees its working directory (symbolic links resolved), which
    /// names the folder of its transcripts.
    fn transcript_cwd(&self) -> PathBuf {
        std::fs::canonicalize(&self.workspace).unwrap_or_else(|_| self.workspace.clone())
    }

    /// The run's id: its folder's name, unique below the work root.
    fn run_id(&self) -> String {
        self.root
            .path()
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// [`TaskDirs::remove`] on the blocking pool.
    async fn remove_in_background(self) {
        if let Err(e) = tokio::task::spawn_blocking(move || self.remove()).await {
            warn!(cause = %Chain(&e), "removing the task's workspace stopped");
        }
    }

    fn remove(self) {
        let path = self.root.path().to_path_buf();
        if let Err(e) = self.root.close() {
            warn!(cause = %Chain(&e), path = %path.display(), "cannot remove the task's workspace");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_is_redacted_with_its_counts() {
        let password = ["hunter", "2-", "secret"].concat();
        let mut output = AuditKind::ToolResult {
            tool_use_id: "t1".to_owned(),
            is_error: false,
            output: format!("env:\n- name: DB_PASSWORD\n  value: {password}\n"),
        };
        let removed = redact_event(&mut output);
        let AuditKind::ToolResult { output, .. } = &output else {
            unreachable!()
        };
        assert!(!output.contains(&password), "{output}");
        assert!(output.contains("DB_PASSWORD"), "{output}");
        assert_eq!(removed.values().sum::<u64>(), 1, "{removed:?}");

        let mut call = AuditKind::ToolCall {
            tool_use_id: "t2".to_owned(),
            tool: "Bash".to_owned(),
            input: serde_json::json!({"command": format!("curl -H 'X-Api-Key: {password}' x")}),
        };
        let removed = redact_event(&mut call);
        assert!(!serde_json::to_string(&call).unwrap().contains(&password));
        assert_eq!(removed.get("api_key"), Some(&1), "{removed:?}");

        let mut clean = AuditKind::ToolResult {
            tool_use_id: "t3".to_owned(),
            is_error: false,
            output: "NAME READY\nx 1/1".to_owned(),
        };
        assert!(redact_event(&mut clean).is_empty());
    }

    /// A PEM private key of `lines` base64 lines, random-looking and different per line.
    fn pem_key(lines: usize) -> (String, Vec<String>) {
        const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let body: Vec<String> = (0..lines)
            .map(|_| {
                (0..64)
                    .map(|_| {
                        state = state
                            .wrapping_mul(6_364_136_223_846_793_005)
                            .wrapping_add(1_442_695_040_888_963_407);
                        char::from(B64[usize::try_from(state >> 58).unwrap_or(0)])
                    })
                    .collect()
            })
            .collect();
        let pem = format!(
            "-----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----\n",
            body.join("\n")
        );
        (pem, body)
    }

    #[test]
    fn a_private_key_across_the_output_limit_is_redacted_whole_before_the_cut() {
        let (pem, lines) = pem_key(25);
        // The key starts 1 KiB before the cut and ends well after it.
        let before = "x".repeat(stream::MAX_TOOL_OUTPUT - 1024);
        let mut event = AuditKind::ToolResult {
            tool_use_id: "t1".to_owned(),
            is_error: false,
            output: format!(
                "{before}\n  tls.key: |\n{pem}status: ok\n{}",
                "s".repeat(stream::MAX_TOOL_OUTPUT)
            ),
        };
        let removed = redact_event(&mut event);
        let AuditKind::ToolResult { output, .. } = &event else {
            unreachable!()
        };
        for (i, line) in lines.iter().enumerate() {
            assert!(
                !output.contains(line.as_str()),
                "line {i} of the key leaked:\n{output}"
            );
            // Not even the start of a line (what a cut inside the key would keep).
            assert!(
                !output.contains(&line[..16]),
                "line {i} of the key leaked:\n{output}"
            );
        }
        assert!(output.contains("[REDACTED:"), "{output}");
        assert!(output.ends_with(" more bytes truncated]"), "{output}");
        assert!(
            output.len() <= stream::MAX_TOOL_OUTPUT + 64,
            "still cut: {} bytes",
            output.len()
        );
        assert!(removed.values().sum::<u64>() >= 1, "{removed:?}");

        // A tool input is redacted before it is bounded too.
        let mut call = AuditKind::ToolCall {
            tool_use_id: "t2".to_owned(),
            tool: "Write".to_owned(),
            input: serde_json::json!({
                "file_path": "/ws/notes.txt",
                "content": format!(
                    "{}\n{pem}{}",
                    "y".repeat(stream::MAX_TOOL_INPUT - 1024),
                    "y".repeat(stream::MAX_TOOL_INPUT)
                ),
            }),
        };
        redact_event(&mut call);
        let text = serde_json::to_string(&call).expect("encodes");
        assert!(
            text.contains("\"truncated\":true"),
            "bounded: {}",
            text.len()
        );
        for line in &lines {
            assert!(!text.contains(&line[..16]), "the key leaked from the input");
        }
    }

    #[test]
    fn the_report_text_is_capped_after_redaction() {
        let (pem, lines) = pem_key(25);
        let long = format!(
            "{}\n{pem}{}",
            "z".repeat(MAX_REPORT_TEXT - 512),
            "w".repeat(MAX_REPORT_TEXT)
        );
        let (text, _, _, removed) = redact_result(long, None, Vec::new());
        assert!(text.len() <= MAX_REPORT_TEXT + 64, "{} bytes", text.len());
        assert!(text.ends_with(" more bytes truncated]"), "marked as cut");
        for line in &lines {
            assert!(
                !text.contains(&line[..16]),
                "the key leaked from the report"
            );
        }
        assert!(!removed.is_empty(), "{removed:?}");
    }

    #[test]
    fn the_result_is_redacted_and_counted_before_it_leaves() {
        let password = ["hunter", "2-", "secret"].concat();
        let denial = Denial {
            tool: "Bash".to_owned(),
            tool_use_id: "t1".to_owned(),
            input: serde_json::json!({"command": format!("mysql --password={password}")}),
        };
        let (text, error, denials, removed) = redact_result(
            format!("The pod's DB password is set in plain env: password={password}"),
            Some(format!("stderr: token={password}")),
            vec![denial],
        );
        assert!(
            text.starts_with("The pod's DB password is set in plain env"),
            "{text}"
        );
        for published in [
            text,
            error.unwrap_or_default(),
            denials[0].input.to_string(),
        ] {
            assert!(!published.contains(&password), "{published}");
        }
        assert_eq!(removed.values().sum::<u64>(), 3, "{removed:?}");
    }
}
