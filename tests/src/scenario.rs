//! The recorded incident scenarios (`tests/scenarios/`) for the scripted model: the format and
//! its loader are `warroom-scenario`'s (re-exported here); this module adds what only the
//! replay needs, the scripted model's conversations ([`Scripted`]), and where the committed
//! scenarios are.

use std::path::PathBuf;

pub use warroom_scenario::*;
use warroom_scripted_model::{Conversation, ToolCall, Turn};

/// The folder of the committed scenarios.
pub fn scenarios_dir() -> PathBuf {
    crate::tools::workspace_root().join("tests/scenarios")
}

/// The scripted model's part of a scenario.
pub trait Scripted {
    /// The scripted model's conversations: the synthesis's, answering only its request's
    /// synthesis run, then one per cluster, each answering only the runs of its cluster (the
    /// runner's prompt names the cluster: `- Cluster: <name> (`).
    fn conversations(&self) -> Vec<Conversation>;
}

impl Scripted for Scenario {
    fn conversations(&self) -> Vec<Conversation> {
        // The synthesis's prompt names every cluster but never as `- Cluster: <name> (`; its
        // own conversation comes first all the same.
        let synthesis = self.synthesis.iter().map(|synthesis| {
            Conversation::new(vec![Turn::structured(synthesis.model_answer())]).matching(format!(
                "{} {}\n",
                warroom_scenario::PROMPT_HEADING,
                self.request_id()
            ))
        });
        synthesis
            .chain(self.recordings.iter().map(|recording| {
                Conversation::new(turns(recording))
                    .matching(format!("- Cluster: {} (", recording.cluster))
            }))
            .collect()
    }
}

/// The model's turns of one cluster: the tool calls, then the answer (without the `planted`
/// marks).
pub fn turns(recording: &ClusterRecording) -> Vec<Turn> {
    let mut turns: Vec<Turn> = recording
        .turns
        .iter()
        .enumerate()
        .map(|(t, turn)| {
            let calls = turn
                .calls
                .iter()
                .enumerate()
                .map(|(c, call)| ToolCall::bash(&call.command).with_id(call_id(call, t, c)))
                .collect();
            let tools = Turn::tools(calls);
            match &turn.text {
                Some(text) => tools.with_text(text),
                None => tools,
            }
        })
        .collect();
    turns.push(Turn::structured(recording.model_answer()));
    turns
}
