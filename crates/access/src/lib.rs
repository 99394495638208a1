//! The secure zone's policy for claude-warroom, and the verification of who wrote a request.
//!
//! A `WarroomPolicy` file (a ConfigMap in production) names the engineers, the keys they
//! sign their commits with and the clusters each may investigate, plus ceilings per
//! cluster and limits per engineer. The crate has four parts:
//!
//! - [`policy`]: the file format, parsed with every problem reported at once and its field
//!   path ([`parse_policy`]), and its JSON Schema.
//! - [`signature`]: runs the real `git` (and through it `ssh-keygen` or `gpg`) to find who
//!   signed each commit that added or changed a request file, trusting only the policy's
//!   keys ([`Verifier`]).
//! - [`authorize`]: a pure decision from the policy, the request and the signers found
//!   ([`authorize()`]), with a [`Refusal`] that has a readable message and a stable code.
//! - [`watch`]: reloading the file when its content changes, keeping the old policy when
//!   the new one is invalid ([`PolicyWatcher`]).
//!
//! Everything here is blocking (`std::process::Command`, `std::fs`): an async caller wraps
//! calls in `tokio::task::spawn_blocking`.

pub mod authorize;
pub mod policy;
pub mod signature;
pub mod watch;

pub use authorize::{
    Authorized, Ceiling, Refusal, RequestFacts, authorize, authorize_cancel, authorize_follow_up,
    ceiling,
};
pub use policy::{
    ClusterPattern, ClusterRule, Defaults, Engineer, EngineerName, KeyOwner, KeyRef, PolicyKey,
    TrustedKey, WarroomPolicy, parse_policy,
};
pub use signature::{CommitRange, CommitSignature, SignatureStatus, Signer, Verifier};
pub use warroom_proto::FieldError;
pub use watch::{PolicyWatcher, Reload, load};

/// What can go wrong outside of the policy's content: reading the file, running git or gpg.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The policy file could not be read.
    #[error("cannot read the policy file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The policy file was read but is not valid; every problem is listed.
    #[error("{}", invalid_message(.path, .errors))]
    Invalid {
        path: String,
        errors: Vec<FieldError>,
    },
    /// git or gpg could not be run, or failed (`warroom-git` says which and why).
    #[error(transparent)]
    Git(#[from] warroom_git::Error),
    /// The policy lists a GPG fingerprint whose public key is not among `gpgPublicKeys`.
    #[error(
        "the policy lists the GPG key {fingerprint} (at {field}) but `gpgPublicKeys` holds no \
         public key with that fingerprint; add its armored public key (`gpg --armor --export \
         {fingerprint}`)"
    )]
    MissingGpgKey { field: String, fingerprint: String },
    /// git printed something this crate does not understand.
    #[error("unexpected output from `{command}`: {detail}")]
    Unexpected { command: String, detail: String },
}

fn invalid_message(path: &str, errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{path}: {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
