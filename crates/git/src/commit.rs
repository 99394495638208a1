//! `CommitId`: a full commit id, checked once where it enters (git's output, the gateway's
//! cursor, a request), so code past that point never holds a revision that could be an
//! option, a range or a ref name.

use std::fmt;
use std::str::FromStr;

/// A full commit id: 40 (SHA-1) or 64 (SHA-256) lower-case hexadecimal digits. Upper-case
/// input is accepted and lowered, as git itself accepts it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommitId(String);

/// Why a text is not a [`CommitId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{shown}` is not a commit id: {problem}")]
pub struct CommitIdError {
    shown: String,
    problem: &'static str,
}

impl CommitId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for CommitId {
    type Err = CommitIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = |problem| CommitIdError {
            // Enough to recognise the value, never a whole file pasted by mistake.
            shown: text.chars().take(80).collect(),
            problem,
        };
        if !text.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(error(
                "expected only hexadecimal digits (a full commit id, not a branch or `HEAD`)",
            ));
        }
        if !matches!(text.len(), 40 | 64) {
            return Err(error(
                "expected 40 (SHA-1) or 64 (SHA-256) hexadecimal digits; an abbreviated id is \
                 not enough",
            ));
        }
        Ok(CommitId(text.to_ascii_lowercase()))
    }
}

impl TryFrom<String> for CommitId {
    type Error = CommitIdError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<CommitId> for String {
    fn from(id: CommitId) -> String {
        id.0
    }
}

impl fmt::Display for CommitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Reads as the text git prints, so a `CommitId` goes wherever git takes a revision.
impl std::ops::Deref for CommitId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for CommitId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for CommitId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for CommitId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for CommitId {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}
