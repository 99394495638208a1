//! The troubleshooting strategies a request may name in `spec.investigation.strategy`: the
//! runbooks of `context/runbooks/`, read from their index `context/runbooks/README.md`.
//!
//! The index is compiled in, so the CLI (which refuses an unknown strategy before it writes a
//! request) and the gateway (which refuses it before it accepts one) check against the same
//! list, and a runbook added to the index is a valid strategy without a code change.

use std::sync::LazyLock;

/// The runbook index, one `- [name](name.md): description` entry per runbook; an entry's
/// description may continue on indented lines.
const INDEX: &str = include_str!("../../../context/runbooks/README.md");

/// One runbook a request may name as its strategy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Strategy {
    /// The runbook's name: `context/runbooks/<name>.md`.
    pub name: String,
    /// When to use it, from the index, on one line.
    pub description: String,
}

static STRATEGIES: LazyLock<Vec<Strategy>> = LazyLock::new(|| parse_index(INDEX));

/// Every strategy, in the order of the index.
pub fn strategies() -> &'static [Strategy] {
    &STRATEGIES
}

/// The strategy called `name`, if there is one.
pub fn find(name: &str) -> Option<&'static Strategy> {
    strategies().iter().find(|s| s.name == name)
}

/// Every strategy's name, in the order of the index.
pub fn names() -> Vec<&'static str> {
    strategies().iter().map(|s| s.name.as_str()).collect()
}

/// The values the JSON Schema allows for an optional strategy: every name, and null.
pub(crate) fn schema_enum() -> Vec<Option<&'static str>> {
    strategies()
        .iter()
        .map(|s| Some(s.name.as_str()))
        .chain([None])
        .collect()
}

/// The entries of a runbook index. A line `- [name](name.md): text` starts an entry; indented
/// lines after it continue its description; anything else ends it.
fn parse_index(text: &str) -> Vec<Strategy> {
    let mut strategies: Vec<Strategy> = Vec::new();
    let mut open = false;
    for line in text.lines() {
        if let Some(entry) = line.strip_prefix("- [") {
            open = false;
            let Some((name, rest)) = entry.split_once("](") else {
                continue;
            };
            let Some(rest) = rest.strip_prefix(&format!("{name}.md)")) else {
                continue;
            };
            let description = rest.trim_start_matches(':').trim();
            strategies.push(Strategy {
                name: name.to_owned(),
                description: description.to_owned(),
            });
            open = true;
        } else if open && line.starts_with(char::is_whitespace) && !line.trim().is_empty() {
            if let Some(last) = strategies.last_mut() {
                if !last.description.is_empty() {
                    last.description.push(' ');
                }
                last.description.push_str(line.trim());
            }
        } else {
            open = false;
        }
    }
    strategies
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::*;

    #[test]
    fn every_strategy_is_a_runbook_with_a_description() {
        let strategies = strategies();
        assert!(!strategies.is_empty(), "the runbook index lists no runbook");
        let runbooks = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../context/runbooks");
        let mut seen = BTreeSet::new();
        for strategy in strategies {
            assert!(
                seen.insert(strategy.name.as_str()),
                "`{}` is listed twice",
                strategy.name
            );
            assert!(
                !strategy.description.trim().is_empty(),
                "`{}` has no description",
                strategy.name
            );
            let file = runbooks.join(format!("{}.md", strategy.name));
            assert!(file.is_file(), "{} does not exist", file.display());
        }
    }

    #[test]
    fn descriptions_continue_on_indented_lines() {
        let index = "# Runbooks\n\nIntro that mentions - [x](x.md) inline.\n\n\
                     - [etcd](etcd.md): etcd latency,\n  leader changes.\n\
                     - [oauth](oauth.md): login fails.\n\nTrailing text.\n  indented\n";
        assert_eq!(
            parse_index(index),
            vec![
                Strategy {
                    name: "etcd".to_owned(),
                    description: "etcd latency, leader changes.".to_owned(),
                },
                Strategy {
                    name: "oauth".to_owned(),
                    description: "login fails.".to_owned(),
                },
            ]
        );
        assert_eq!(find("etcd").map(|s| s.name.as_str()), Some("etcd"));
        assert!(find("nope").is_none());
    }
}
