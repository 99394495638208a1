//! The one way claude-warroom runs git: the real `git` binary, never a prompt, in an
//! environment this crate decides, with git's own stderr in every error.
//!
//! - [`Git`] builds every git command (one [`Git::command`] for the blocking and, with the
//!   `tokio` feature, the async methods). [`Git::new`] is sealed for the daemons: no system
//!   or global configuration, no inherited `GIT_*` variable, an HTTPS token only in
//!   `GIT_CONFIG_*` variables (never in argv or a URL) and never sent over plain `http://`
//!   ([`refuse_token_over_http`]). [`Git::engineers`] is the engineer's own git, for the CLI.
//! - [`CommitId`]: a commit id, checked hex, as every crate keeps one.
//! - [`signature`]: OpenSSH key types and [`signature::Signers`], which checks commit
//!   signatures with nothing trusted but its own allowed-signers file and GnuPG home.
//! - [`identity`]: nss_wrapper for a UID with no passwd entry, given to every child.
//!
//! No NATS, no daemon: the engineer's command links this crate.

mod commit;
mod git;
pub mod identity;
pub mod signature;

pub use commit::{CommitId, CommitIdError};
pub use git::{Git, Output, refuse_token_over_http};
pub use secrecy::SecretString;

/// What went wrong running git (or ssh-keygen, gpg).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The program could not be started (not installed, say); the cause is the source.
    #[error("cannot run `{program}` for `{command}`")]
    Spawn {
        program: &'static str,
        command: String,
        #[source]
        source: std::io::Error,
    },
    /// It ran and failed; `stderr` is its own explanation.
    #[error("`{command}` in {dir} failed: {stderr}")]
    Failed {
        command: String,
        dir: String,
        stderr: String,
    },
    /// It succeeded, but its output was not what this crate reads.
    #[error("unexpected output from `{command}` in {dir}: {detail}")]
    Unexpected {
        command: String,
        dir: String,
        detail: String,
    },
    /// A token was about to be sent to a plain `http://` remote.
    #[error(
        "the remote `{url}` is plain http:// but a git token is set; the token would cross \
         the network unencrypted: use https://"
    )]
    TokenOverHttp { url: String },
    /// A file or folder the signature check needs could not be made.
    #[error("cannot prepare {what} for signature checks")]
    Prepare {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// git named a commit with something that is not a commit id.
    #[error("unexpected output from `{command}`")]
    BadCommitId {
        command: String,
        #[source]
        source: CommitIdError,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
