//! Checked identities: request ids, cluster names and results folders.
//!
//! Each is a newtype that can only be built through its check (`TryFrom<String>`,
//! `FromStr`, and serde's `try_from`), so a value of the type is always a safe NATS subject
//! token and a safe path part. Code past the boundary never checks them again; the one
//! check lives in [`check_token`], which nothing outside this crate calls.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Longest cluster name (a DNS label is 63 characters at most).
pub const MAX_CLUSTER_NAME_LEN: usize = 63;
/// Longest request id: it carries a date and a slug.
pub const MAX_REQUEST_ID_LEN: usize = 128;
/// Longest folder name below `results/` other than the request id.
pub const MAX_FOLDER_LEN: usize = 63;
/// The most folders between `results/` and the request id in `spec.output.destination`.
pub const MAX_FOLDER_DEPTH: usize = 3;

/// A `spec.output.destination` that cannot be a results folder, with the reason and what
/// was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidDestination(pub String);

/// A value that is not a valid token, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a valid {what}: it {reason}")]
pub struct InvalidToken {
    /// What the value was meant to be (`request id`, `cluster name`, ...).
    pub what: &'static str,
    /// The value, shortened when very long.
    pub value: String,
    /// Why it is refused, as a phrase following "it" ("contains a space; ...").
    pub reason: String,
}

/// Why a string cannot be a subject token, or `None` when it can.
///
/// A token is 1 to `max_len` characters of ASCII letters, digits, `-` and `_`, starting with a
/// letter or digit. That is stricter than NATS (which only forbids `.`, `*`, `>` and white
/// space) on purpose: the same string is also a file name, a Kubernetes label value and a
/// JetStream consumer name.
pub(crate) fn check_token(value: &str, max_len: usize) -> Option<String> {
    if value.is_empty() {
        return Some("must not be empty".to_owned());
    }
    if value.len() > max_len {
        return Some(format!(
            "is {} characters long; at most {max_len} are allowed",
            value.len()
        ));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        let shown = match bad {
            ' ' => "a space".to_owned(),
            '\t' => "a tab".to_owned(),
            '\n' | '\r' => "a line break".to_owned(),
            c => format!("`{c}`"),
        };
        return Some(format!(
            "contains {shown}; only letters, digits, `-` and `_` are allowed \
             (the name becomes a NATS subject token and a file name)"
        ));
    }
    if !value.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Some("must start with a letter or a digit".to_owned());
    }
    None
}

/// Shortens a refused value for an error message: it may be megabytes long.
fn shown(value: &str) -> String {
    const MAX: usize = 80;
    if value.len() <= MAX {
        return value.to_owned();
    }
    let mut end = MAX;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &value[..end])
}

macro_rules! token_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Checks `value`.
            pub fn new(value: impl Into<String>) -> Result<Self, InvalidToken> {
                Self::try_from(value.into())
            }

            /// Why `value` would be refused, as a phrase following "it"; `None` when valid.
            pub fn problem(value: &str) -> Option<String> {
                check_token(value, $max)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidToken;
            fn try_from(value: String) -> Result<Self, InvalidToken> {
                match check_token(&value, $max) {
                    None => Ok($name(value)),
                    Some(reason) => Err(InvalidToken {
                        what: $what,
                        value: shown(&value),
                        reason,
                    }),
                }
            }
        }

        impl TryFrom<&str> for $name {
            type Error = InvalidToken;
            fn try_from(value: &str) -> Result<Self, InvalidToken> {
                Self::try_from(value.to_owned())
            }
        }

        impl FromStr for $name {
            type Err = InvalidToken;
            fn from_str(value: &str) -> Result<Self, InvalidToken> {
                Self::try_from(value.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<std::path::Path> for $name {
            fn as_ref(&self) -> &std::path::Path {
                std::path::Path::new(&self.0)
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                self.0 == *other
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "type": "string",
                    "minLength": 1,
                    "maxLength": $max,
                    "pattern": format!("^[A-Za-z0-9][A-Za-z0-9_-]{{0,{}}}$", $max - 1),
                })
            }
        }
    };
}

token_type!(
    /// A request id: the stem of `requests/pending/<id>.yaml`, 1 to 128 letters, digits,
    /// `-` or `_`, starting with a letter or digit.
    RequestId,
    "request id",
    MAX_REQUEST_ID_LEN
);

token_type!(
    /// A cluster name: 1 to 63 letters, digits, `-` or `_`, starting with a letter or digit.
    ClusterName,
    "cluster name",
    MAX_CLUSTER_NAME_LEN
);

token_type!(
    /// A runner replica's name in its heartbeat key (`<cluster>.<replica>`): 1 to 96
    /// letters, digits, `-` or `_`, starting with a letter or digit. Built from the host name
    /// with [`ReplicaId::for_host`].
    ReplicaId,
    "runner replica id",
    MAX_REPLICA_ID_LEN
);

/// Longest runner replica id: a host name (a DNS label, 63 characters) and a suffix.
pub const MAX_REPLICA_ID_LEN: usize = 96;

impl ReplicaId {
    /// The replica id of a runner on `host`, told apart from other runners on the same host
    /// (two replicas in one pod's network namespace, or tests) by `instance`: the host name
    /// with every character a token cannot hold replaced by `-`, then `-<instance>`.
    pub fn for_host(host: &str, instance: &str) -> ReplicaId {
        let clean = |text: &str, max: usize| -> String {
            text.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '-'
                    }
                })
                .take(max)
                .collect()
        };
        let instance = clean(instance, 16);
        let host = clean(host, MAX_REPLICA_ID_LEN - instance.len() - 2);
        let host = host.trim_start_matches(['-', '_']);
        let id = match (host.is_empty(), instance.is_empty()) {
            (true, true) => "runner".to_owned(),
            (true, false) => format!("runner-{instance}"),
            (false, true) => host.to_owned(),
            (false, false) => format!("{host}-{instance}"),
        };
        ReplicaId::new(id).unwrap_or_else(|_| ReplicaId("runner".to_owned()))
    }
}

/// The repository folder a request's results go to: `results/<id>` or
/// `results/<folder>/.../<id>`, each part a safe token, the last one the request id. Since
/// request ids are unique (the file stem in one folder), two requests never share a folder.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ResultsDir(String);

impl ResultsDir {
    /// `results/<id>`.
    pub fn default_for(id: &RequestId) -> ResultsDir {
        ResultsDir(format!("results/{id}"))
    }

    /// Resolves a request's `spec.output.destination` (a leading `/` means the repository
    /// root, a trailing `/` is optional) for request `id`.
    pub fn resolve(destination: &str, id: &RequestId) -> Result<ResultsDir, InvalidDestination> {
        let expected = format!(
            "expected a folder inside `results/` ending in the request id: `results/{id}/`, \
             or `results/<folder>/{id}/` with at most {MAX_FOLDER_DEPTH} folders of letters, \
             digits, `-` and `_` (at most {MAX_FOLDER_LEN} characters each)"
        );
        let shown = shown(destination);
        let trimmed = destination.strip_prefix('/').unwrap_or(destination);
        let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
        let parts: Vec<&str> = trimmed.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(InvalidDestination(format!(
                "`{shown}` contains an empty folder (`//`); {expected}"
            )));
        }
        if parts.first() != Some(&"results") || parts.len() < 2 {
            return Err(InvalidDestination(format!(
                "`{shown}` is outside `results/`; {expected}"
            )));
        }
        let last = parts.len() - 1;
        if parts[last] != id.as_str() {
            return Err(InvalidDestination(format!(
                "`{shown}` does not end in the request id `{id}`, so another request could \
                 write to the same folder; {expected}"
            )));
        }
        let folders = &parts[1..last];
        if folders.len() > MAX_FOLDER_DEPTH {
            return Err(InvalidDestination(format!(
                "`{shown}` has {} folders below `results/`; {expected}",
                folders.len()
            )));
        }
        for folder in folders {
            if let Some(reason) = check_token(folder, MAX_FOLDER_LEN) {
                return Err(InvalidDestination(format!(
                    "`{shown}`: the folder `{}` {reason}; {expected}",
                    self::shown(folder)
                )));
            }
        }
        Ok(ResultsDir(parts.join("/")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The request id this folder belongs to (its last part).
    pub fn request_id(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or_default()
    }
}

impl TryFrom<String> for ResultsDir {
    type Error = InvalidToken;
    fn try_from(value: String) -> Result<Self, InvalidToken> {
        let invalid = |reason: String| InvalidToken {
            what: "results folder",
            value: shown(&value),
            reason,
        };
        let last = value.rsplit('/').next().unwrap_or_default();
        let id = RequestId::new(last).map_err(|e| invalid(e.reason))?;
        match ResultsDir::resolve(&value, &id) {
            Ok(dir) if dir.0 == value => Ok(dir),
            Ok(_) => Err(invalid(
                "is not in its plain form `results/.../<id>` (no leading, trailing or double `/`)"
                    .to_owned(),
            )),
            Err(reason) => Err(invalid(reason.0)),
        }
    }
}

impl FromStr for ResultsDir {
    type Err = InvalidToken;
    fn from_str(value: &str) -> Result<Self, InvalidToken> {
        Self::try_from(value.to_owned())
    }
}

impl From<ResultsDir> for String {
    fn from(value: ResultsDir) -> String {
        value.0
    }
}

impl PartialEq<str> for ResultsDir {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for ResultsDir {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for ResultsDir {
    fn eq(&self, other: &String) -> bool {
        self.0 == *other
    }
}

impl Deref for ResultsDir {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<std::path::Path> for ResultsDir {
    fn as_ref(&self) -> &std::path::Path {
        std::path::Path::new(&self.0)
    }
}

impl fmt::Display for ResultsDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_id_is_a_token_whatever_the_host_name() {
        assert_eq!(
            ReplicaId::for_host("runner-7d9f-x2k4q", "a1b2").as_str(),
            "runner-7d9f-x2k4q-a1b2"
        );
        assert_eq!(
            ReplicaId::for_host("node.example.com", "a1").as_str(),
            "node-example-com-a1"
        );
        assert_eq!(ReplicaId::for_host("", "a1").as_str(), "runner-a1");
        assert_eq!(ReplicaId::for_host("..", "").as_str(), "runner");
        let long = ReplicaId::for_host(&"h".repeat(300), "ffff");
        assert!(long.len() <= MAX_REPLICA_ID_LEN, "{long}");
        assert!(long.ends_with("-ffff"), "{long}");
        assert!(ReplicaId::new("a.b").is_err());
    }

    #[test]
    fn tokens_that_could_change_a_subject_or_a_path_are_refused() {
        for bad in [
            "a.b", "a*", ">", "a b", "a\tb", "", "-lead", "ä", "a/b", "..",
        ] {
            assert!(ClusterName::new(bad).is_err(), "{bad:?} was accepted");
            assert!(RequestId::new(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(ClusterName::new("a".repeat(64)).is_err());
        assert!(RequestId::new("a".repeat(129)).is_err());
        for good in ["production-hub", "prod_cluster_1", "a", &"a".repeat(63)] {
            assert!(ClusterName::new(good).is_ok(), "{good:?} was refused");
        }
        assert!(RequestId::new("a".repeat(128)).is_ok());
    }

    #[test]
    fn serde_refuses_what_the_constructor_refuses() {
        let err = serde_json::from_str::<ClusterName>("\"a.b\"").unwrap_err();
        assert!(err.to_string().contains("cluster name"), "{err}");
        let ok: RequestId = serde_json::from_str("\"r-1\"").unwrap();
        assert_eq!(serde_json::to_string(&ok).unwrap(), "\"r-1\"");
    }

    #[test]
    fn results_dirs_end_in_their_request_id() {
        let id = RequestId::new("r1").unwrap();
        for (destination, expected) in [
            ("results/r1/", "results/r1"),
            ("/results/r1", "results/r1"),
            ("results/team-a/r1/", "results/team-a/r1"),
        ] {
            let dir = ResultsDir::resolve(destination, &id).unwrap();
            assert_eq!(dir.as_str(), expected);
            assert_eq!(dir.request_id(), "r1");
        }
        for bad in [
            "results/",
            "results/other/",
            "results/r1/extra",
            "results/../r1",
            "elsewhere/r1",
            "results/a b/r1",
            "results/a/b/c/d/r1",
            "results/a\\b/r1",
            "results//r1",
            "./results/r1",
        ] {
            assert!(
                ResultsDir::resolve(bad, &id).is_err(),
                "{bad:?} was accepted"
            );
        }
        let long = format!("results/{}/r1", "a".repeat(300));
        let err = ResultsDir::resolve(&long, &id).unwrap_err().0;
        assert!(err.contains("characters long"), "{err}");
        assert!(err.len() < 600, "the error repeats the whole value: {err}");
    }

    #[test]
    fn results_dirs_from_the_wire_are_checked() {
        assert!(ResultsDir::try_from("results/r1".to_owned()).is_ok());
        assert!(ResultsDir::try_from("results/g/r1".to_owned()).is_ok());
        for bad in [
            "results/",
            "/results/r1",
            "results/r1/",
            "x/r1",
            "results/../r1",
        ] {
            assert!(
                ResultsDir::try_from(bad.to_owned()).is_err(),
                "{bad:?} was accepted"
            );
        }
    }
}
