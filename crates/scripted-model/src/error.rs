//! Errors of the scripted model: loading and validating scripts, waiting on requests.

use std::path::PathBuf;
use std::time::Duration;

/// What went wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A script file could not be read.
    #[error("cannot read the script file {path}")]
    ReadScript {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A script file's name does not say which format it is in.
    #[error("the script file {path} has no known extension: expected .json, .yaml or .yml")]
    UnknownScriptFormat { path: PathBuf },
    /// A script is not valid JSON, or does not have the shape of a [`crate::Script`].
    #[error("{origin} is not a valid JSON script")]
    Json {
        origin: String,
        source: serde_json::Error,
    },
    /// A script is not valid YAML, or does not have the shape of a [`crate::Script`].
    #[error("{origin} is not a valid YAML script")]
    Yaml {
        origin: String,
        source: serde_yaml_ng::Error,
    },
    /// A script parsed but cannot be served as written (the message names the place).
    #[error("invalid script: {0}")]
    InvalidScript(String),
    /// [`crate::ScriptedModel::wait_for`] reached its deadline.
    #[error(
        "waited {timeout:?} for the scripted model's requests to meet a condition; \
         it had received {seen} request(s) by then"
    )]
    WaitTimeout { timeout: Duration, seen: usize },
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
