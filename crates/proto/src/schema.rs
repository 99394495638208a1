//! The JSON Schema of request files, generated from the types.
//!
//! `schema/troubleshooting-request.schema.json` in the repository is this output, committed
//! for editors and CI linters; a test fails when the committed file is stale. The schema
//! describes the shape; rules that span fields (exactly one of `targetCluster` and
//! `targetClusters`, a destination inside `results/`) are enforced by [`crate::validate`].

use crate::request::TroubleshootingRequest;

/// The schema of a `TroubleshootingRequest` file.
pub fn troubleshooting_request() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(TroubleshootingRequest))
        .expect("a generated schema is always valid JSON")
}

/// The schema as the committed file holds it: pretty-printed, with a final newline.
pub fn troubleshooting_request_pretty() -> String {
    let mut text = serde_json::to_string_pretty(&troubleshooting_request())
        .expect("a JSON value always serializes");
    text.push('\n');
    text
}
