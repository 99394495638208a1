//! A follow-up turn: a further question to the Claude Code conversation of a cluster's
//! investigation (`Task::follow_up`). The conversation is restored from the object store into
//! a fresh workspace and HOME and continued with `claude --resume`, under the same tool rules,
//! guard hook, model proxy, timeout, redaction and audit events as the investigation; the
//! answer is free text. The turn's record decides whether it runs (a final turn is not run
//! again); its answer goes out as a `turn_answer` event, then `RunnerReport::TurnFinished`.

use tracing::{info, warn};
use warroom_proto::status::MAX_RUNS;
use warroom_proto::wire::TurnResult;
use warroom_proto::{AuditKind, FollowUpTurn, Outcome, RunnerReport, Subject, Task, names};
use warroom_redact as redact;
use warroom_runtime::shutdown::CancellationToken;

use super::{Done, Ran, Runner, final_text};
use crate::agent::Run;
use crate::guard::ToolRules;
use crate::metrics::NotRun;
use crate::outbox::Message;
use crate::proxy::Spend;
use crate::rerun::{self, Verdict};
use crate::stream;

/// The error of a turn stopped because its record said `cancelled` while it ran.
const CANCELLED_REASON: &str = "the turn was cancelled while the agent ran (its session ended \
     or its request was cancelled); the agent was interrupted (SIGINT), then every process of \
     the run was killed";

impl Runner {
    /// Answers the follow-up `turn` of `task` unless its record says it is not to run: a
    /// final turn is acknowledged without a run, a turn back after its last run fails.
    pub(super) async fn follow_up(
        &self,
        task: &Task,
        turn: &FollowUpTurn,
        attempt: u32,
        stop: CancellationToken,
    ) -> Done {
        let record = names::turn_record_key(&self.cluster, &task.request_id, turn.turn);
        match rerun::check(&self.bus, &record, attempt).await {
            Verdict::AlreadyFinal(phase) => {
                info!(turn_phase = %phase, "the turn is already final; acknowledging it without running it");
                self.not_run(NotRun::Final);
                Done::Finished
            }
            Verdict::TooManyRuns => {
                warn!(
                    max_runs = MAX_RUNS,
                    "the turn came back after its last run; failing it instead of running it again"
                );
                self.not_run(NotRun::MaxRuns);
                let error = rerun::too_many_runs_reason(attempt);
                self.refuse_turn(task, turn, attempt, error, stop).await
            }
            Verdict::RunUnchecked(cause) => {
                warn!(%cause, "cannot read the turn's record; running it anyway (a second answer would be ignored)");
                self.answer(task, turn, attempt, stop).await
            }
            Verdict::Run => self.answer(task, turn, attempt, stop).await,
        }
    }

    /// Runs the agent on the turn's question in the cluster's conversation and publishes the
    /// answer after the run's audit events; a run stopped by shutdown is handed back without
    /// one.
    async fn answer(
        &self,
        task: &Task,
        turn: &FollowUpTurn,
        attempt: u32,
        stop: CancellationToken,
    ) -> Done {
        let started_at = warroom_proto::now();
        let request = &task.request_id;
        let cluster = &self.cluster;
        let outbox = self.outbox(task, attempt, &stop);
        outbox.send(
            Subject::Result(request.clone(), cluster.clone()),
            format!("{}/started", self.turn_id(task, turn, attempt)),
            Message::Report(RunnerReport::TurnStarted {
                request_id: request.clone(),
                cluster: cluster.clone(),
                turn: turn.turn,
                runner: self.name.clone(),
                at: started_at,
            }),
        );

        let rules = ToolRules::for_tools(&task.allowed_tools);
        let mut events = super::Events::new(&outbox, task, cluster, attempt);
        events.push(AuditKind::Started {
            runner: self.name.clone(),
            allowed: rules.allowed.clone(),
            denied: rules.denied.clone(),
        });
        info!(timeout = ?self.timeout(task), tools = ?rules.tools, "agent starting on a follow-up turn");

        let Ran {
            run,
            decisions,
            spend,
            resumed,
        } = self
            .run_in_workspace(task, &rules, &mut events, Some(turn), stop.clone())
            .await;
        if run.cancelled && !run.request_cancelled {
            let _ = tokio::time::timeout(crate::FLUSH_TIMEOUT, outbox.drained()).await;
            return Done::HandedBack;
        }

        let (outcome, error) = self.judge_turn(&mut events, &run, &decisions, &spend);
        events.push(AuditKind::TurnAnswer {
            turn: turn.turn,
            question: turn.prompt.clone(),
            asked_by: turn.asked_by.clone(),
            outcome,
            answer: final_text(outcome, &run),
            error: error.clone(),
            cost_usd: spend.cost_usd,
            resumed,
        });
        let result = TurnResult {
            request_id: request.clone(),
            cluster: cluster.clone(),
            turn: turn.turn,
            outcome,
            error: error.clone(),
            cost_usd: spend.cost_usd,
            num_turns: run.result.as_ref().map_or(0, |r| r.num_turns),
            resumed,
            started_at,
            finished_at: warroom_proto::now(),
        };
        // After the answer, in order, once NATS takes it.
        outbox.send(
            Subject::Result(request.clone(), cluster.clone()),
            format!("{}/finished", self.turn_id(task, turn, attempt)),
            Message::Report(RunnerReport::TurnFinished(result)),
        );
        self.count_finished(outcome, error.as_deref(), &spend);
        self.deliver(&outbox, &stop).await
    }

    /// How the turn's run ended: its outcome under the budget and its error, redacted (it
    /// may quote the CLI's stderr). The guard's decisions and the refused calls are audited
    /// on the way, as an investigation's are; a turn's result has no place for the calls.
    fn judge_turn(
        &self,
        events: &mut super::Events<'_>,
        run: &Run,
        decisions: &[warroom_guard::hook::DecisionRecord],
        spend: &Spend,
    ) -> (Outcome, Option<String>) {
        let (outcome, error) = stream::judge(
            &run.ending,
            run.result.as_ref(),
            self.max_turns,
            &run.stderr,
        );
        let (outcome, error) = if run.request_cancelled {
            (Outcome::Cancelled, Some(CANCELLED_REASON.to_owned()))
        } else {
            spend.judge(outcome, error)
        };
        let _ = self.refused_calls(events, run, decisions);
        (
            outcome,
            error.map(|error| redact::text(&error).into_string()),
        )
    }

    /// Fails a turn without running it, for `error`.
    async fn refuse_turn(
        &self,
        task: &Task,
        turn: &FollowUpTurn,
        attempt: u32,
        error: String,
        stop: CancellationToken,
    ) -> Done {
        let outbox = self.outbox(task, attempt, &stop);
        let mut events = super::Events::new(&outbox, task, &self.cluster, attempt);
        events.push(AuditKind::TurnAnswer {
            turn: turn.turn,
            question: turn.prompt.clone(),
            asked_by: turn.asked_by.clone(),
            outcome: Outcome::Failed,
            answer: String::new(),
            error: Some(error.clone()),
            cost_usd: 0.0,
            resumed: false,
        });
        let now = warroom_proto::now();
        outbox.send(
            Subject::Result(task.request_id.clone(), self.cluster.clone()),
            format!("{}/finished", self.turn_id(task, turn, attempt)),
            Message::Report(RunnerReport::TurnFinished(TurnResult {
                request_id: task.request_id.clone(),
                cluster: self.cluster.clone(),
                turn: turn.turn,
                outcome: Outcome::Failed,
                error: Some(error),
                cost_usd: 0.0,
                num_turns: 0,
                resumed: false,
                started_at: now,
                finished_at: now,
            })),
        );
        self.deliver(&outbox, &stop).await
    }

    /// The prefix of the deduplication ids of one attempt of a turn's reports, as its audit
    /// events have it: `<request>/<cluster>/turn-<n>-<attempt>`.
    fn turn_id(&self, task: &Task, turn: &FollowUpTurn, attempt: u32) -> String {
        format!(
            "{}/{}/turn-{}-{attempt}",
            task.request_id, self.cluster, turn.turn
        )
    }
}
