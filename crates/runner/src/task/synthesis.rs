//! A request's cross-cluster synthesis run: the Claude Code CLI with no tools, over the
//! cluster reports the task carries, answering in the synthesis's form
//! ([`warroom_proto::synthesis`]). Its claims are checked against those reports before the
//! result leaves; a run that gives no synthesis reports why, and the request ends without one.

use tokio::sync::mpsc;
use tracing::{info, warn};
use warroom_proto::report::RunFacts;
use warroom_proto::synthesis::{self, AgentSynthesis, CheckedSynthesis, SynthesisInput};
use warroom_proto::wire::SynthesisResult;
use warroom_proto::{Outcome, RunnerReport, Subject, Task};
use warroom_redact as redact;
use warroom_runtime::shutdown::CancellationToken;

use super::{Done, Prepared, Runner, not_started};
use crate::agent::{self, Launch, Run, RunSite};
use crate::outbox::Message;
use crate::proxy::Spend;
use crate::stream::{self, Item};

/// Model turns a synthesis may take: its answer is one call of the form's tool.
const MAX_TURNS: u32 = 3;

impl Runner {
    /// Runs the synthesis of `task`'s request and publishes its result; stopped by shutdown,
    /// the task is handed back without one.
    pub(super) async fn synthesize(
        &self,
        task: &Task,
        input: &SynthesisInput,
        attempt: u32,
        stop: CancellationToken,
    ) -> Done {
        let started_at = warroom_proto::now();
        let request = &task.request_id;
        let cluster = &self.cluster;
        let outbox = self.outbox(task, attempt, &stop);
        info!(clusters = input.clusters.len(), "synthesis starting");
        let (run, spend, facts) = self.run_synthesis(task, input, stop.clone()).await;
        if run.cancelled {
            return Done::HandedBack;
        }
        let (synthesis, error) = self.judge_synthesis(&run, &spend, input);
        match (&synthesis, &error) {
            (Some(checked), _) => {
                let counts = checked.counts();
                info!(
                    supported = counts.supported,
                    unsupported = counts.unsupported,
                    cost_usd = spend.cost_usd,
                    "synthesis finished"
                );
            }
            (None, error) => {
                warn!(
                    reason = error.as_deref().unwrap_or(""),
                    "synthesis gave no answer"
                );
            }
        }
        let result = SynthesisResult {
            request_id: request.clone(),
            cluster: cluster.clone(),
            synthesis,
            error,
            cost_usd: spend.cost_usd,
            run: Some(facts),
            started_at,
            finished_at: warroom_proto::now(),
        };
        outbox.send(
            Subject::Result(request.clone(), cluster.clone()),
            format!("{request}/{cluster}/synthesis"),
            Message::Report(RunnerReport::Synthesis(result)),
        );
        self.deliver(&outbox, &stop).await
    }

    /// The checked synthesis of a finished run, redacted, or why there is none.
    fn judge_synthesis(
        &self,
        run: &Run,
        spend: &Spend,
        input: &SynthesisInput,
    ) -> (Option<CheckedSynthesis>, Option<String>) {
        let (outcome, error) =
            stream::judge(&run.ending, run.result.as_ref(), MAX_TURNS, &run.stderr);
        let (outcome, error) = spend.judge(outcome, error);
        if outcome != Outcome::Completed {
            let reason = error.unwrap_or_else(|| format!("it ended {}", outcome.phase()));
            let text = format!("the synthesis run did not complete: {reason}");
            return (None, Some(redact::text(&text).into_string()));
        }
        let Some(mut answer) = run
            .result
            .as_ref()
            .and_then(|r| r.structured_output.clone())
        else {
            return (
                None,
                Some("the synthesis run gave no answer in the synthesis form".to_owned()),
            );
        };
        // The reports it read were redacted; what it wrote is redacted again all the same.
        let _ = redact::json(&mut answer);
        match serde_json::from_value::<AgentSynthesis>(answer) {
            Ok(answer) => (Some(synthesis::check(answer, input)), None),
            Err(e) => (
                None,
                Some(format!(
                    "the synthesis run's answer does not fit the synthesis form: {e}"
                )),
            ),
        }
    }

    /// Runs the CLI without tools over the reports, in a fresh workspace and HOME behind the
    /// run's own model proxy and guard hook, prepared as an investigation's are.
    async fn run_synthesis(
        &self,
        task: &Task,
        input: &SynthesisInput,
        stop: CancellationToken,
    ) -> (Run, Spend, RunFacts) {
        let mut facts = RunFacts {
            model: self.model.clone(),
            ..RunFacts::default()
        };
        let Prepared {
            dirs, hook, proxy, ..
        } = match self.prepare(task, None).await {
            Ok(prepared) => prepared,
            Err(reason) => return (not_started(reason), Spend::default(), facts),
        };
        let mut args = vec![
            "-p".to_owned(),
            "--output-format".to_owned(),
            "stream-json".to_owned(),
            "--verbose".to_owned(),
            "--max-turns".to_owned(),
            MAX_TURNS.to_string(),
            "--no-session-persistence".to_owned(),
            // No tool at all: the synthesis reads the reports in its prompt, nothing else.
            "--tools=".to_owned(),
            "--json-schema".to_owned(),
            self.synthesis_schema.clone(),
            // The guard still decides any call, should the CLI offer one.
            "--settings".to_owned(),
            hook.settings.display().to_string(),
        ];
        if let Some(model) = &self.model {
            args.push("--model".to_owned());
            args.push(model.clone());
        }
        let launch = Launch {
            program: self.claude_bin.clone(),
            args,
            prompt: synthesis::prompt(&task.request_id, &task.prompt, input),
            env: self.env.vars(RunSite {
                home: &dirs.home,
                tmp: &dirs.tmp,
                run_id: &dirs.run_id(),
                model_url: &proxy.base_url(),
            }),
            run_id: dirs.run_id(),
            cwd: dirs.workspace.clone(),
            timeout: self.timeout(task),
            timeout_secs: self.timeout(task).as_secs().max(1),
            kill_grace: self.kill_grace,
        };
        let (items_tx, mut items_rx) = mpsc::channel::<Item>(64);
        let draining = async {
            while let Some(item) = items_rx.recv().await {
                if let Item::Init {
                    model, cli_version, ..
                } = item
                {
                    if model.is_some() {
                        facts.model = model;
                    }
                    facts.cli_version = cli_version;
                }
            }
        };
        let (run, ()) = tokio::join!(agent::run(&launch, items_tx, stop.child_token()), draining);
        facts.tokens = run
            .result
            .as_ref()
            .map(|r| r.usage.to_wire())
            .unwrap_or_default();
        let spend = proxy.spend();
        drop(proxy);
        dirs.remove_in_background().await;
        (run, spend, facts)
    }
}
