//! The operator's guard configuration (a YAML file in the secure zone), which extends the
//! built-in rules for a cluster: extra verbs, flags and programs, extra refused resource
//! kinds, extra read-only folders and extra tools. It can only add; the built-in refusals of
//! shell constructs and output templates stay.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// The whole configuration file. Every field is optional; an empty file is the built-in rules.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardConfig {
    /// Folders the file tools (and text tools in Bash) may read besides the workspace.
    pub read_only_folders: Vec<PathBuf>,
    /// Resource kinds `kubectl`/`oc` may not read, on top of the built-in ones.
    pub refused_kinds: Vec<KindConfig>,
    /// Extra `kubectl`/`oc` verbs, or flags for existing verbs.
    pub kube_verbs: Vec<VerbConfig>,
    /// Extra programs for Bash pipelines, or flags for existing programs.
    pub programs: Vec<ProgramConfig>,
    /// Claude Code tools allowed without looking at their input (`TodoWrite`).
    pub tools: Vec<String>,
}

/// A refused resource kind.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindConfig {
    /// The plural resource name (`routes`).
    pub resource: String,
    /// Other names it answers to: singular, kind, short names (`route`, `rt`).
    #[serde(default)]
    pub names: Vec<String>,
    /// Why it is refused and what to read instead, for the model.
    #[serde(default)]
    pub reason: Option<String>,
}

/// Which client a verb belongs to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cli {
    /// `kubectl` only.
    Kubectl,
    /// `oc` only.
    Oc,
    /// Both.
    #[default]
    Both,
}

/// What the operands of a configured verb are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerbOperands {
    /// No operands.
    None,
    /// Resource types and names, checked against the refused kinds.
    #[default]
    Resources,
    /// Anything (`explain` field paths).
    Any,
}

/// A `kubectl`/`oc` verb to add, or flags to add to an existing one.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerbConfig {
    /// The client.
    #[serde(default)]
    pub cli: Cli,
    /// The verb words (`rollout history`, `get`).
    pub verb: String,
    /// Its operands; for an existing verb leave it out.
    #[serde(default)]
    pub operands: Option<VerbOperands>,
    /// Allowed flags besides the global ones.
    #[serde(default)]
    pub flags: Vec<FlagConfig>,
}

/// An allowed flag.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagConfig {
    /// Long name without dashes (`revision`).
    #[serde(default)]
    pub long: Option<String>,
    /// One-letter short name (`r`).
    #[serde(default)]
    pub short: Option<char>,
    /// Whether it takes a value.
    #[serde(default)]
    pub value: bool,
}

/// What the operands of a configured program are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProgramOperands {
    /// No operands.
    None,
    /// Files, which must lie in the workspace or a read-only folder.
    Files,
    /// Literal text, never opened (`tr` sets).
    Text,
}

/// A program to allow in Bash pipelines, or flags to add to an existing one.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgramConfig {
    /// The bare program name (`nl`).
    pub name: String,
    /// Its operands; required for a new program, left out for an existing one.
    #[serde(default)]
    pub operands: Option<ProgramOperands>,
    /// Allowed flags.
    #[serde(default)]
    pub flags: Vec<FlagConfig>,
}

impl GuardConfig {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<GuardConfig> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        GuardConfig::parse(&text, path)
    }

    /// Parses and validates `text`; `path` only names the source in errors.
    pub fn parse(text: &str, path: &Path) -> Result<GuardConfig> {
        // An empty file (or only comments) is the built-in rules, not an error.
        let config: GuardConfig = if text.trim().is_empty() {
            GuardConfig::default()
        } else {
            serde_yaml_ng::from_str::<Option<GuardConfig>>(text)
                .map_err(|err| Error::Parse {
                    path: path.to_owned(),
                    message: err.to_string(),
                })?
                .unwrap_or_default()
        };
        config.validate(path)?;
        Ok(config)
    }

    /// Checks every value the parser cannot check by type.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let invalid = |field: String, message: String| Error::Invalid {
            path: path.to_owned(),
            field,
            message,
        };
        for (i, folder) in self.read_only_folders.iter().enumerate() {
            if !folder.is_absolute()
                || folder
                    .components()
                    .any(|c| c == std::path::Component::ParentDir)
            {
                return Err(invalid(
                    format!("read_only_folders[{i}]"),
                    format!(
                        "`{}` must be an absolute path without `..`",
                        folder.display()
                    ),
                ));
            }
        }
        for (i, kind) in self.refused_kinds.iter().enumerate() {
            if !is_resource_name(&kind.resource) {
                return Err(invalid(
                    format!("refused_kinds[{i}].resource"),
                    format!(
                        "`{}` is not a resource name (lowercase letters, digits, `-`)",
                        kind.resource
                    ),
                ));
            }
            for (j, name) in kind.names.iter().enumerate() {
                if !is_resource_name(&name.to_ascii_lowercase()) {
                    return Err(invalid(
                        format!("refused_kinds[{i}].names[{j}]"),
                        format!("`{name}` is not a resource name (letters, digits, `-`)"),
                    ));
                }
            }
        }
        for (i, verb) in self.kube_verbs.iter().enumerate() {
            let words: Vec<&str> = verb.verb.split(' ').collect();
            if words.iter().any(|w| !is_resource_name(w)) {
                return Err(invalid(
                    format!("kube_verbs[{i}].verb"),
                    format!(
                        "`{}` must be one or more words of lowercase letters, digits and `-`, separated by single spaces",
                        verb.verb
                    ),
                ));
            }
            validate_flags(&verb.flags, &format!("kube_verbs[{i}]"), path)?;
        }
        for (i, program) in self.programs.iter().enumerate() {
            if program.name.is_empty()
                || !program
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                || program.name.starts_with('.')
            {
                return Err(invalid(
                    format!("programs[{i}].name"),
                    format!(
                        "`{}` must be a bare program name (letters, digits, `-`, `_`, `.`), not a path",
                        program.name
                    ),
                ));
            }
            validate_flags(&program.flags, &format!("programs[{i}]"), path)?;
        }
        for (i, tool) in self.tools.iter().enumerate() {
            if tool.is_empty() || !tool.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(invalid(
                    format!("tools[{i}]"),
                    format!("`{tool}` is not a Claude Code tool name"),
                ));
            }
        }
        Ok(())
    }
}

fn validate_flags(flags: &[FlagConfig], at: &str, path: &Path) -> Result<()> {
    for (j, flag) in flags.iter().enumerate() {
        let field = format!("{at}.flags[{j}]");
        if flag.long.is_none() && flag.short.is_none() {
            return Err(Error::Invalid {
                path: path.to_owned(),
                field,
                message: "a flag needs `long`, `short` or both".to_owned(),
            });
        }
        if let Some(long) = &flag.long
            && (long.starts_with('-') || !is_resource_name(long))
        {
            return Err(Error::Invalid {
                path: path.to_owned(),
                field: format!("{field}.long"),
                message: format!(
                    "`{long}` must be the name without dashes (lowercase letters, digits, `-`)"
                ),
            });
        }
        if let Some(short) = flag.short
            && !short.is_ascii_alphanumeric()
        {
            return Err(Error::Invalid {
                path: path.to_owned(),
                field: format!("{field}.short"),
                message: format!("`{short}` must be one ASCII letter or digit"),
            });
        }
    }
    Ok(())
}

fn is_resource_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('-')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}
