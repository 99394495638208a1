//! The walk over a YAML tree that reports every problem at once, each with its field path
//! and what was expected: the shared part of request validation ([`crate::validate`]) and of
//! the secure-zone policy file (`warroom-access`). Callers add their own checks on top.

use serde_yaml_ng::{Mapping, Value};

use crate::validate::FieldError;

/// Collects problems while walking a YAML tree.
#[derive(Debug, Default)]
pub struct Walk {
    pub errors: Vec<FieldError>,
}

impl Walk {
    pub fn error(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.to_owned(),
            message: message.into(),
        });
    }

    /// `value` as a mapping whose keys are all in `known`.
    pub fn mapping<'v>(
        &mut self,
        value: &'v Value,
        path: &str,
        known: &[&str],
    ) -> Option<&'v Mapping> {
        let Value::Mapping(mapping) = value else {
            let message = if path.is_empty() {
                format!(
                    "the document: expected a mapping, found {}",
                    describe(value)
                )
            } else {
                format!("expected a mapping, found {}", describe(value))
            };
            self.error(path, message);
            return None;
        };
        for key in mapping.keys() {
            match key.as_str() {
                Some(key) if known.contains(&key) => {}
                Some(key) => {
                    let hint = match suggestion(key, known) {
                        Some(s) => format!(" (did you mean `{s}`?)"),
                        None => String::new(),
                    };
                    self.error(
                        &join(path, key),
                        format!("unknown field{hint}; expected one of: {}", one_of(known)),
                    );
                }
                None => self.error(
                    path,
                    format!("a key is {}; expected field names", describe(key)),
                ),
            }
        }
        Some(mapping)
    }

    /// A field's value; `None` when absent or null (an error when required).
    pub fn field<'v>(
        &mut self,
        map: &'v Mapping,
        path: &str,
        key: &str,
        required: bool,
    ) -> Option<&'v Value> {
        match map.get(key) {
            None | Some(Value::Null) => {
                if required {
                    self.error(&join(path, key), "is required");
                }
                None
            }
            Some(value) => Some(value),
        }
    }

    pub fn string<'v>(
        &mut self,
        map: &'v Mapping,
        path: &str,
        key: &str,
        required: bool,
    ) -> Option<&'v str> {
        let value = self.field(map, path, key, required)?;
        self.string_value(value, &join(path, key))
    }

    pub fn string_value<'v>(&mut self, value: &'v Value, field: &str) -> Option<&'v str> {
        match value {
            Value::String(s) if s.trim().is_empty() => {
                self.error(field, "must not be empty");
                None
            }
            Value::String(s) => Some(s),
            other => {
                self.error(
                    field,
                    format!("expected a string, found {}", describe(other)),
                );
                None
            }
        }
    }
}

pub fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

pub fn one_of(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The closest known name, to suggest for a typo.
pub fn suggestion(unknown: &str, known: &[&str]) -> Option<String> {
    known
        .iter()
        .map(|k| {
            (
                strsim::damerau_levenshtein(&unknown.to_lowercase(), &k.to_lowercase()),
                k,
            )
        })
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, k)| (*k).to_owned())
}

pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}
