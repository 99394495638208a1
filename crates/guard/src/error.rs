//! The guard library's errors: all of them are about its configuration file.

use std::path::PathBuf;

/// A guard configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read guard config {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid YAML of the expected shape (the message names the field and line).
    #[error("invalid guard config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// serde's message, which names the field and position.
        message: String,
    },
    /// A field has a value the guard cannot use.
    #[error("invalid guard config {path}: field `{field}`: {message}")]
    Invalid {
        /// The file, or `<inline>` for a config built in code.
        path: PathBuf,
        /// The field, as a path (`programs[0].name`).
        field: String,
        /// What is wrong and what is expected.
        message: String,
    },
}

impl Error {
    /// The message with its cause (the message alone leaves the cause to `source()`).
    pub fn with_cause(&self) -> String {
        match self {
            Error::Read { source, .. } => format!("{self}: {source}"),
            other => other.to_string(),
        }
    }
}

/// The guard library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
