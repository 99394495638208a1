//! The walk over a YAML tree that reports every problem at once, each with its field path
//! and what was expected: the shared part of request validation ([`crate::validate`]) and of
//! the secure-zone policy file (`warroom-access`). Callers add their own checks on top.

use serde::Deserialize as _;
use serde_yaml_ng::{Mapping, Value};

use crate::validate::FieldError;

/// What one YAML file must be, for the messages that refuse it: at most `max_bytes`, and
/// exactly one document.
#[derive(Debug, Clone, Copy)]
pub struct OneDocument<'a> {
    pub max_bytes: usize,
    /// Who the size limit is for, as the subject of "may be at most": `request files`.
    pub limited: &'a str,
    /// What the one document is, after "expected exactly": `one request per file`.
    pub holds: &'a str,
}

/// Why a file cannot be read as one YAML document (too large, not UTF-8, not YAML, several
/// documents or none), with what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnreadableYaml(pub String);

/// Reads `bytes` as exactly one YAML document, refusing alias-expansion bombs in words an
/// engineer recognises.
pub fn read_one_document(bytes: &[u8], file: OneDocument<'_>) -> Result<Value, UnreadableYaml> {
    let refuse = |message: String| UnreadableYaml(message);
    if bytes.len() > file.max_bytes {
        return Err(refuse(format!(
            "the file is {} bytes; {} may be at most {} bytes",
            bytes.len(),
            file.limited,
            file.max_bytes
        )));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        refuse(format!(
            "the file is not UTF-8 text (invalid byte at offset {})",
            e.valid_up_to()
        ))
    })?;
    let mut documents = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        let value = Value::deserialize(document).map_err(|e| refuse(yaml_error(&e)))?;
        documents.push(value);
        if documents.len() > 1 {
            return Err(refuse(format!(
                "the file holds more than one YAML document (a `---` separator); expected \
                 exactly {}",
                file.holds
            )));
        }
    }
    match documents.pop() {
        None | Some(Value::Null) => Err(refuse(
            "the file is empty; expected one YAML document".to_owned(),
        )),
        Some(value) => Ok(value),
    }
}

fn yaml_error(error: &serde_yaml_ng::Error) -> String {
    let text = error.to_string();
    // serde_yaml_ng refuses documents whose aliases expand too far ("billion laughs") or
    // nest too deep; say so in words an engineer recognises.
    if text.contains("repetition limit") || text.contains("recursion limit") {
        format!("the YAML aliases or nesting expand too far (an alias-expansion bomb?): {text}")
    } else {
        format!("not valid YAML: {text}")
    }
}

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

    /// `value` as the name of a Claude Code tool; an unknown name is reported with the
    /// closest known one and the whole list.
    pub fn tool(&mut self, value: &Value, field: &str) -> Option<crate::request::Tool> {
        let name = self.string_value(value, field)?;
        let tool = crate::request::Tool::parse(name);
        if tool.is_none() {
            let known: Vec<&str> = crate::request::Tool::ALL
                .iter()
                .map(|t| t.as_str())
                .collect();
            let hint = match suggestion(name, &known) {
                Some(s) => format!(" (did you mean `{s}`?)"),
                None => String::new(),
            };
            self.error(
                field,
                format!(
                    "unknown tool `{name}`{hint}; expected one of: {}",
                    one_of(&known)
                ),
            );
        }
        tool
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
