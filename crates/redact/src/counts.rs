//! What a redaction removed: a count per kind, never the values themselves.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How many secrets of each kind were replaced. A `BTreeMap` so that the serialized form
/// (`{"jwt": 1, "password": 2}`) is the same bytes for the same counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Counts(BTreeMap<Cow<'static, str>, u64>);

impl Counts {
    /// No removals.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one removal of `kind`. Kinds are the constants of this crate, so the common
    /// case allocates nothing.
    pub fn add(&mut self, kind: &'static str) {
        self.add_n(Cow::Borrowed(kind), 1);
    }

    fn add_n(&mut self, kind: Cow<'static, str>, n: u64) {
        match self.0.get_mut(kind.as_ref()) {
            Some(count) => *count += n,
            None => {
                self.0.insert(kind, n);
            }
        }
    }

    /// Adds every count of `other` to these.
    pub fn merge(&mut self, other: &Counts) {
        for (kind, n) in &other.0 {
            self.add_n(kind.clone(), *n);
        }
    }

    /// How many secrets of `kind` were removed.
    pub fn get(&self, kind: &str) -> u64 {
        self.0.get(kind).copied().unwrap_or(0)
    }

    /// How many secrets were removed in all.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// Whether nothing was removed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Each kind with its count, in kind order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.0.iter().map(|(kind, n)| (kind.as_ref(), *n))
    }
}

impl Extend<(&'static str, u64)> for Counts {
    fn extend<T: IntoIterator<Item = (&'static str, u64)>>(&mut self, iter: T) {
        for (kind, n) in iter {
            self.add_n(Cow::Borrowed(kind), n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_merge_and_serialize_in_kind_order() {
        let mut a = Counts::new();
        a.add("password");
        a.add("jwt");
        let mut b = Counts::new();
        b.add("password");
        a.merge(&b);
        assert_eq!(a.get("password"), 2);
        assert_eq!(a.total(), 3);
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, r#"{"jwt":1,"password":2}"#);
        let back: Counts = serde_json::from_str(&json).unwrap();
        assert_eq!(back, a);
    }
}
