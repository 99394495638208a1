//! The `CancelRequest` file: an engineer asks that a request stop
//! (`claude-warroom cancel <id> [--reason TEXT]` writes `requests/cancel/<id>.yaml`).
//!
//! The file's stem is the id of the request to cancel, checked like a request file's. The
//! file says who asks, when and why; with a policy the gateway checks that every commit that
//! added it was signed by that engineer, and that the engineer owns the request or is an
//! admin ([`CancelRequest`] is what `warroom-access`'s `authorize_cancel` decides on).

use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_yaml_ng::Mapping;

use crate::Timestamp;
use crate::ids::RequestId;
use crate::validate::{FieldError, MAX_NAME_LEN, ValidationErrors};
use crate::walk::Walk;

/// The `kind` of a cancel file.
pub const KIND_CANCEL: &str = "CancelRequest";

/// The folder engineers add cancel files to.
pub const CANCEL_DIR: &str = "requests/cancel/";

/// Largest cancel file: a few lines are enough, so anything larger is refused unread.
pub const MAX_CANCEL_FILE_BYTES: usize = 4 * 1024;

/// Longest reason, in bytes.
pub const MAX_REASON_LEN: usize = 1024;

/// A request to cancel the request named by the file's stem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "CancelRequest")]
pub struct CancelRequest {
    /// Always `warroom.intility.io/v1`.
    pub api_version: String,
    /// Always `CancelRequest`.
    pub kind: String,
    pub metadata: CancelMetadata,
    #[serde(default)]
    pub spec: CancelSpec,
}

/// Who asks for the cancellation, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CancelMetadata {
    /// The engineer who asks; with a policy, every commit that added the file must be signed
    /// by this engineer, who must own the request or be an admin.
    #[schemars(length(min = 1, max = crate::validate::MAX_NAME_LEN))]
    pub engineer: String,
    /// When the cancellation was asked for, RFC 3339 (e.g. `2024-01-15T14:30:00Z`).
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub timestamp: Timestamp,
}

/// Why.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CancelSpec {
    /// Why the request is cancelled, shown in its `status.json` and report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub reason: Option<String>,
}

/// A cancel file that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedCancel {
    /// The request to cancel (the file stem).
    pub id: RequestId,
    pub cancel: CancelRequest,
}

/// Parses and validates a cancel file. `path` names the file in errors and gives the id of
/// the request to cancel (its stem). Every problem is reported at once, with its field.
pub fn parse_cancel(path: &Path, bytes: &[u8]) -> Result<ValidatedCancel, ValidationErrors> {
    let fail = |errors: Vec<FieldError>| ValidationErrors {
        file: path.display().to_string(),
        errors,
    };
    let mut walk = Walk::default();
    let id = crate::validate::request_id(path, &mut walk);
    let file = crate::walk::OneDocument {
        max_bytes: MAX_CANCEL_FILE_BYTES,
        limited: "cancel files",
        holds: "one cancellation per file",
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
    match id {
        Some(id) if walk.errors.is_empty() => {
            let cancel = serde_yaml_ng::from_value(value).map_err(|e| {
                fail(vec![FieldError {
                    field: String::new(),
                    message: format!("the cancel file does not match the contract: {e}"),
                }])
            })?;
            Ok(ValidatedCancel { id, cancel })
        }
        _ => Err(fail(walk.errors)),
    }
}

/// The checks every engineer's small file shares (a cancel, a follow-up): `apiVersion`,
/// `kind` (the one a file under `dir` must have), and `metadata` with the `engineer` who asks
/// and the RFC 3339 `timestamp` of when.
pub(crate) fn check_header(walk: &mut Walk, root: &Mapping, kind: &str, dir: &str) {
    match walk.string(root, "", "apiVersion", true) {
        Some(crate::API_VERSION) | None => {}
        Some(other) => walk.error(
            "apiVersion",
            format!(
                "unknown apiVersion `{other}`; expected `{}`",
                crate::API_VERSION
            ),
        ),
    }
    match walk.string(root, "", "kind", true) {
        Some(found) if found == kind => {}
        None => {}
        Some(other) => walk.error(
            "kind",
            format!("unknown kind `{other}`; a file under {dir} must be `{kind}`"),
        ),
    }
    if let Some(value) = walk.field(root, "", "metadata", true)
        && let Some(metadata) = walk.mapping(value, "metadata", &["engineer", "timestamp"])
    {
        if let Some(engineer) = walk.string(metadata, "metadata", "engineer", true)
            && engineer.len() > MAX_NAME_LEN
        {
            walk.error(
                "metadata.engineer",
                format!(
                    "is {} bytes long; at most {MAX_NAME_LEN} are allowed",
                    engineer.len()
                ),
            );
        }
        if let Some(timestamp) = walk.string(metadata, "metadata", "timestamp", true)
            && time::OffsetDateTime::parse(
                timestamp,
                &time::format_description::well_known::Rfc3339,
            )
            .is_err()
        {
            walk.error(
                "metadata.timestamp",
                format!(
                    "`{timestamp}` is not an RFC 3339 time; expected e.g. `2024-01-15T14:30:00Z`"
                ),
            );
        }
    }
}

/// The checks of a cancel file's fields.
fn check_root(walk: &mut Walk, root: &Mapping) {
    check_header(walk, root, KIND_CANCEL, CANCEL_DIR);
    if let Some(value) = walk.field(root, "", "spec", false)
        && let Some(spec) = walk.mapping(value, "spec", &["reason"])
        && let Some(reason) = walk.string(spec, "spec", "reason", false)
        && reason.len() > MAX_REASON_LEN
    {
        walk.error(
            "spec.reason",
            format!(
                "is {} bytes long; at most {MAX_REASON_LEN} are allowed",
                reason.len()
            ),
        );
    }
}

/// The JSON Schema of a cancel file, as committed in `schema/cancel-request.schema.json`.
pub fn schema_pretty() -> String {
    let mut text =
        serde_json::to_string_pretty(&schemars::schema_for!(CancelRequest)).expect("valid JSON");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "apiVersion: warroom.intility.io/v1\nkind: CancelRequest\nmetadata:\n  engineer: alice\n  timestamp: 2026-12-07T10:00:00Z\nspec:\n  reason: wrong cluster\n";

    fn parse(path: &str, text: &str) -> Result<ValidatedCancel, ValidationErrors> {
        parse_cancel(Path::new(path), text.as_bytes())
    }

    fn fields(errors: &ValidationErrors) -> Vec<&str> {
        errors.errors.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn a_good_cancel_file_names_its_request_engineer_and_reason() {
        let cancel = parse("requests/cancel/req-1.yaml", GOOD).expect("valid");
        assert_eq!(cancel.id.as_str(), "req-1");
        assert_eq!(cancel.cancel.metadata.engineer, "alice");
        assert_eq!(cancel.cancel.spec.reason.as_deref(), Some("wrong cluster"));
        // The reason is optional.
        let bare = GOOD.replace("spec:\n  reason: wrong cluster\n", "");
        let cancel = parse("requests/cancel/req-1.yml", &bare).expect("valid without spec");
        assert_eq!(cancel.cancel.spec.reason, None);
    }

    #[test]
    fn bad_ids_and_path_tricks_are_refused_naming_the_file() {
        for path in [
            "requests/cancel/..yaml",
            "requests/cancel/a b.yaml",
            "requests/cancel/../pending/x.yaml.txt",
            "requests/cancel/-x.yaml",
            "requests/cancel/x*.yaml",
            "requests/cancel/req.1.yaml",
            "requests/cancel/x.json",
        ] {
            let err = parse(path, GOOD).expect_err(path);
            assert_eq!(err.file, path);
            assert!(fields(&err).contains(&""), "{path}: {err}");
        }
        let long = format!("requests/cancel/{}.yaml", "a".repeat(300));
        assert!(parse(&long, GOOD).is_err());
    }

    #[test]
    fn hostile_content_is_refused_with_the_field_and_what_was_expected() {
        let oversized = format!("{GOOD}# {}\n", "x".repeat(MAX_CANCEL_FILE_BYTES));
        let err = parse("requests/cancel/r.yaml", &oversized).expect_err("too large");
        assert!(err.to_string().contains("at most 4096 bytes"), "{err}");

        let reason = GOOD.replace("wrong cluster", &"y".repeat(MAX_REASON_LEN + 1));
        let err = parse("requests/cancel/r.yaml", &reason).expect_err("long reason");
        assert_eq!(fields(&err), ["spec.reason"]);

        let wrong = GOOD
            .replace("CancelRequest", "TroubleshootingRequest")
            .replace("engineer: alice\n", "")
            .replace("2026-12-07T10:00:00Z", "yesterday")
            .replace("reason:", "reasn:");
        let err = parse("requests/cancel/r.yaml", &wrong).expect_err("wrong");
        let mut got = fields(&err);
        got.sort();
        assert_eq!(
            got,
            [
                "kind",
                "metadata.engineer",
                "metadata.timestamp",
                "spec.reasn"
            ]
        );
        assert!(err.to_string().contains("did you mean `reason`"), "{err}");

        let bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c]\ne: [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n";
        assert!(parse("requests/cancel/r.yaml", bomb).is_err());
        for bad in ["", "- a list\n", "\u{0}\u{ff}", "a: 1\n---\nb: 2\n"] {
            assert!(parse("requests/cancel/r.yaml", bad).is_err(), "{bad:?}");
        }
        assert!(parse_cancel(Path::new("requests/cancel/r.yaml"), &[0xff, 0xfe]).is_err());
    }

    #[test]
    fn the_committed_schema_is_current() {
        let committed = include_str!("../../../schema/cancel-request.schema.json");
        assert!(
            committed == schema_pretty(),
            "schema/cancel-request.schema.json is stale; regenerate it with \
             `cargo run -p claude-warroom -- schema --kind cancel > schema/cancel-request.schema.json`"
        );
    }
}
