//! The `FollowUp` file: an engineer asks a further question of a request's conversation
//! (`claude-warroom session ask <id> "..."` writes `requests/ask/<id>/<turn>.yaml`).
//!
//! The folder names the request, the stem the turn (1, 2, ...): each turn continues the
//! Claude Code conversation of one of the request's clusters, the one `spec.cluster` names
//! (it may be left out when the request has one cluster). The gateway checks it like a
//! cancel file: with a policy, every commit that added it must be signed by its engineer,
//! who must own the request or be an admin.

use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_yaml_ng::Mapping;

use crate::Timestamp;
use crate::ids::{ClusterName, RequestId};
use crate::validate::{FieldError, MAX_PROMPT_LEN, ValidationErrors};
use crate::walk::Walk;

/// The `kind` of a follow-up file.
pub const KIND_FOLLOW_UP: &str = "FollowUp";

/// The folder engineers add follow-up files to, one folder per request.
pub const ASK_DIR: &str = "requests/ask/";

/// Largest follow-up file.
pub const MAX_FOLLOW_UP_FILE_BYTES: usize = 40 * 1024;

/// The most follow-ups one request takes (the stems run from 1 to this).
pub const MAX_TURNS: u32 = 999;

/// A further question for a request's conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "FollowUp")]
pub struct FollowUp {
    /// Always `warroom.intility.io/v1`.
    pub api_version: String,
    /// Always `FollowUp`.
    pub kind: String,
    pub metadata: FollowUpMetadata,
    pub spec: FollowUpSpec,
}

/// Who asks, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FollowUpMetadata {
    /// The engineer who asks; with a policy, every commit that added the file must be signed
    /// by this engineer, who must own the request or be an admin.
    #[schemars(length(min = 1, max = crate::validate::MAX_NAME_LEN))]
    pub engineer: String,
    /// When the question was asked, RFC 3339.
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub timestamp: Timestamp,
}

/// The question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FollowUpSpec {
    /// What to ask, in the words the agent gets.
    #[schemars(length(min = 1, max = 32768))]
    pub prompt: String,
    /// Whose conversation to continue: one of the request's clusters. Required when the
    /// request has several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterName>,
}

/// A follow-up file that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedFollowUp {
    /// The request it follows up (the folder's name).
    pub id: RequestId,
    /// Its turn (the file's stem).
    pub turn: u32,
    pub follow_up: FollowUp,
}

/// The path of turn `turn` of request `id`: `requests/ask/<id>/<turn>.yaml`.
pub fn path(id: &RequestId, turn: u32) -> String {
    format!("{ASK_DIR}{id}/{turn}.yaml")
}

/// Parses and validates a follow-up file at `path` (`requests/ask/<id>/<turn>.yaml`). Every
/// problem is reported at once, with its field.
pub fn parse_follow_up(path: &Path, bytes: &[u8]) -> Result<ValidatedFollowUp, ValidationErrors> {
    let fail = |errors: Vec<FieldError>| ValidationErrors {
        file: path.display().to_string(),
        errors,
    };
    let mut walk = Walk::default();
    let id = path
        .parent()
        .and_then(Path::file_name)
        .and_then(|name| name.to_str())
        .and_then(|name| match name.parse::<RequestId>() {
            Ok(id) => Some(id),
            Err(e) => {
                walk.error(
                    "",
                    format!("the folder name `{name}` is not a request id: {e}"),
                );
                None
            }
        });
    if id.is_none() && walk.errors.is_empty() {
        walk.error(
            "",
            format!("a follow-up file lives at {ASK_DIR}<request id>/<turn>.yaml"),
        );
    }
    let turn = turn_of(path, &mut walk);
    let file = crate::walk::OneDocument {
        max_bytes: MAX_FOLLOW_UP_FILE_BYTES,
        limited: "follow-up files",
        holds: "one question per file",
    };
    let value = match crate::walk::read_one_document(bytes, file) {
        Ok(value) => value,
        Err(message) => {
            walk.error("", message.0);
            return Err(fail(walk.errors));
        }
    };
    if let Some(root) = walk.mapping(&value, "", &["apiVersion", "kind", "metadata", "spec"]) {
        check_root(&mut walk, root);
    }
    match (id, turn) {
        (Some(id), Some(turn)) if walk.errors.is_empty() => {
            let follow_up = serde_yaml_ng::from_value(value).map_err(|e| {
                fail(vec![FieldError {
                    field: String::new(),
                    message: format!("the follow-up file does not match the contract: {e}"),
                }])
            })?;
            Ok(ValidatedFollowUp {
                id,
                turn,
                follow_up,
            })
        }
        _ => Err(fail(walk.errors)),
    }
}

/// The turn a file's stem gives: a number from 1 to [`MAX_TURNS`], written without leading
/// zeros, with the extension `.yaml` or `.yml`.
fn turn_of(path: &Path, walk: &mut Walk) -> Option<u32> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let stem = name
        .strip_suffix(".yaml")
        .or_else(|| name.strip_suffix(".yml"));
    let turn = stem
        .filter(|s| !s.starts_with('0') && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u32>().ok())
        .filter(|n| (1..=MAX_TURNS).contains(n));
    if turn.is_none() {
        walk.error(
            "",
            format!(
                "the file name `{name}` is not a turn: expected `<n>.yaml` with n from 1 to \
                 {MAX_TURNS}, without leading zeros"
            ),
        );
    }
    turn
}

/// The checks of a follow-up file's fields.
fn check_root(walk: &mut Walk, root: &Mapping) {
    crate::cancel::check_header(walk, root, KIND_FOLLOW_UP, ASK_DIR);
    if let Some(value) = walk.field(root, "", "spec", true)
        && let Some(spec) = walk.mapping(value, "spec", &["prompt", "cluster"])
    {
        if let Some(prompt) = walk.string(spec, "spec", "prompt", true)
            && prompt.len() > MAX_PROMPT_LEN
        {
            walk.error(
                "spec.prompt",
                format!(
                    "is {} bytes long; at most {MAX_PROMPT_LEN} are allowed",
                    prompt.len()
                ),
            );
        }
        if let Some(cluster) = walk.string(spec, "spec", "cluster", false)
            && let Err(e) = cluster.parse::<ClusterName>()
        {
            walk.error("spec.cluster", e.to_string());
        }
    }
}

/// The JSON Schema of a follow-up file, as committed in `schema/follow-up.schema.json`.
pub fn schema_pretty() -> String {
    let mut text =
        serde_json::to_string_pretty(&schemars::schema_for!(FollowUp)).expect("valid JSON");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "apiVersion: warroom.intility.io/v1\nkind: FollowUp\nmetadata:\n  engineer: alice\n  timestamp: 2026-12-07T10:00:00Z\nspec:\n  prompt: And the etcd leader?\n  cluster: prod-1\n";

    fn parse(path: &str, text: &str) -> Result<ValidatedFollowUp, ValidationErrors> {
        parse_follow_up(Path::new(path), text.as_bytes())
    }

    #[test]
    fn a_follow_up_names_its_request_by_folder_and_its_turn_by_stem() {
        let ok = parse("requests/ask/r-1/2.yaml", GOOD).expect("valid");
        assert_eq!(ok.id.as_str(), "r-1");
        assert_eq!(ok.turn, 2);
        assert_eq!(ok.follow_up.spec.prompt, "And the etcd leader?");
        assert_eq!(
            ok.follow_up.spec.cluster.as_ref().map(ClusterName::as_str),
            Some("prod-1")
        );
        assert_eq!(path(&ok.id, 2), "requests/ask/r-1/2.yaml");
    }

    #[test]
    fn every_problem_is_named_with_its_field() {
        let bad = "apiVersion: warroom.intility.io/v1\nkind: Question\nmetadata:\n  engineer: alice\n  timestamp: yesterday\nspec:\n  prompt: '  '\n  cluster: 'a b'\n  extra: 1\n";
        let errors = parse("requests/ask/r-1/01.yaml", bad).expect_err("invalid");
        let text = errors.to_string();
        for expected in [
            "`01.yaml` is not a turn",
            "kind: unknown kind `Question`",
            "metadata.timestamp: `yesterday` is not an RFC 3339 time",
            "spec.prompt: must not be empty",
            "spec.cluster: `a b` is not a valid cluster name",
            "spec.extra",
        ] {
            assert!(text.contains(expected), "{expected} in {text}");
        }
        assert!(parse("requests/ask/r-1/1000.yaml", GOOD).is_err());
        assert!(parse("requests/ask/../1.yaml", GOOD).is_err());
    }
}
