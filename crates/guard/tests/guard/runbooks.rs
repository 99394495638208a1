//! The runbooks shipped in the image (`context/runbooks/`) against the guard: every command
//! they tell the agent to run must be allowed by the built-in rules, and every runbook must
//! keep the common structure that the index (`README.md`) promises.
//!
//! These tests were checked to fail: with `oc get secrets -A` added to a `sh` block of
//! `etcd.md` it reported `[kubectl.refused-kind]` for that line, and with the `## Hosted side`
//! heading of `oauth.md` renamed to `## Hosted` the structure test listed its headings.

use std::path::{Path, PathBuf};

use warroom_guard::Guard;

/// The headings every runbook has, exactly so and in this order.
const HEADINGS: [&str; 6] = [
    "## Symptoms",
    "## Hub side",
    "## Hosted side",
    "## Reading the output",
    "## Known causes",
    "## Next steps for a human with write access",
];

/// The sections whose ```sh blocks hold commands for the agent. A fenced block anywhere else
/// (above all under "Next steps", which may describe write actions) is an error.
const COMMAND_SECTIONS: [&str; 2] = ["## Hub side", "## Hosted side"];

/// What each placeholder becomes before the guard judges the command: plausible values, so
/// that the guard sees what the agent will run. An unknown placeholder fails the test, since
/// the guard would otherwise judge `<x>` as a redirection.
const PLACEHOLDERS: &[(&str, &str)] = &[
    ("<namespace>", "clusters"),
    ("<name>", "prod-1"),
    ("<hcp-namespace>", "clusters-prod-1"),
    ("<nodepool>", "prod-1-workers"),
    ("<pod>", "web-5d8f7c9b4-x2k7q"),
    ("<container>", "app"),
    ("<node>", "ip-10-0-1-23.ec2.internal"),
    ("<operator>", "authentication"),
    ("<deployment>", "web"),
    ("<service>", "web"),
    ("<route>", "web"),
    ("<app-namespace>", "shop"),
    ("<machine>", "prod-1-workers-7xk2p-abcde"),
    ("<kube-apiserver-pod>", "kube-apiserver-6b9c8d7f5-q4w2e"),
    ("<etcd-pod>", "etcd-0"),
    ("<ovnkube-node-pod>", "ovnkube-node-8x7kq"),
    ("<konnectivity-agent-pod>", "konnectivity-agent-9fz2m"),
    ("<router-pod>", "router-default-7c9f8d6b5-l2m4n"),
    ("<ingresscontroller>", "default"),
    ("<pvc>", "data-etcd-0"),
];

/// One runbook as the test reads it.
struct Runbook {
    name: String,
    text: String,
}

fn runbooks_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../context/runbooks")
}

/// Every `*.md` file under `context/runbooks/` except the index.
fn runbooks() -> Vec<Runbook> {
    let dir = runbooks_dir();
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    let mut books: Vec<Runbook> = entries
        .map(|entry| {
            entry
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .path()
        })
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .filter(|path| path.file_name().is_some_and(|n| n != "README.md"))
        .map(|path| Runbook {
            name: path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            text: std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display())),
        })
        .collect();
    books.sort_by(|a, b| a.name.cmp(&b.name));
    books
}

/// The `## ` headings of a runbook, in order.
fn headings(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.starts_with("## "))
        .map(str::trim_end)
        .collect()
}

/// The commands of a runbook, each with its line number, or the structural errors found:
/// a fence that is not ```sh, a block outside the command sections, a block left open, a
/// command section without a block.
fn commands(book: &Runbook) -> Result<Vec<(usize, String)>, Vec<String>> {
    let mut errors = Vec::new();
    let mut out = Vec::new();
    let mut section = "";
    let mut in_block = false;
    let mut blocks_in = std::collections::BTreeMap::<&str, usize>::new();
    for (i, line) in book.text.lines().enumerate() {
        let n = i + 1;
        if in_block {
            if line.trim_start().starts_with("```") {
                in_block = false;
            } else if !line.trim().is_empty() {
                out.push((n, line.trim().to_owned()));
            }
            continue;
        }
        if line.starts_with("## ") {
            section = line.trim_end();
        } else if let Some(info) = line.trim_start().strip_prefix("```") {
            if info.trim() != "sh" {
                errors.push(format!("{}.md:{n}: a fence other than ```sh", book.name));
            }
            if !COMMAND_SECTIONS.contains(&section) {
                errors.push(format!(
                    "{}.md:{n}: a fenced block under {section:?}; commands belong under \
                     the hub or hosted side only",
                    book.name
                ));
            }
            *blocks_in.entry(section).or_default() += 1;
            in_block = true;
        }
    }
    if in_block {
        errors.push(format!("{}.md: a ```sh block is never closed", book.name));
    }
    for section in COMMAND_SECTIONS {
        if !blocks_in.contains_key(section) {
            errors.push(format!("{}.md: no ```sh block under {section}", book.name));
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// The command with every placeholder replaced, or the first unknown placeholder.
fn substitute(command: &str) -> Result<String, String> {
    let mut out = command.to_owned();
    for (placeholder, value) in PLACEHOLDERS {
        out = out.replace(placeholder, value);
    }
    // Whatever `<word>` remains is a placeholder the table does not know.
    if let Some(start) = out.find('<') {
        let rest = &out[start..];
        let end = rest.find('>').map_or(rest.len(), |e| e + 1);
        let word = &rest[..end];
        if word.len() > 2
            && word[1..word.len() - 1]
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '-')
        {
            return Err(word.to_owned());
        }
    }
    Ok(out)
}

#[test]
fn runbooks_keep_the_common_structure_and_the_index_lists_them() {
    let books = runbooks();
    let names: Vec<&str> = books.iter().map(|b| b.name.as_str()).collect();
    assert!(
        books.len() >= 12,
        "at least 12 runbooks are needed, found {}: {names:?}",
        books.len()
    );
    let mut wrong = Vec::new();
    for book in &books {
        let found = headings(&book.text);
        if found != HEADINGS {
            wrong.push(format!(
                "{}.md: the `## ` headings are {found:?}, expected exactly {HEADINGS:?}",
                book.name
            ));
        }
        if let Err(errors) = commands(book) {
            wrong.extend(errors);
        }
    }
    let index_path = runbooks_dir().join("README.md");
    let index = std::fs::read_to_string(&index_path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", index_path.display()));
    for name in &names {
        let link = format!("({name}.md)");
        if !index
            .lines()
            .any(|l| l.starts_with("- ") && l.contains(&link))
        {
            wrong.push(format!(
                "README.md has no index line (`- [..]{link} ..`) for {name}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn every_runbook_command_is_allowed_by_the_guard() {
    let guard = Guard::builtin();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let ws = guard.workspace(dir.path());
    let mut refused = Vec::new();
    let mut checked = 0;
    for book in runbooks() {
        // Structural errors are the other test's to report; here only the commands count.
        let Ok(commands) = commands(&book) else {
            continue;
        };
        for (line, command) in commands {
            let concrete = match substitute(&command) {
                Ok(concrete) => concrete,
                Err(unknown) => {
                    refused.push(format!(
                        "{}.md:{line}: unknown placeholder {unknown} in {command:?}",
                        book.name
                    ));
                    continue;
                }
            };
            let d = guard.check_bash(&concrete, &ws);
            checked += 1;
            if !d.allowed {
                refused.push(format!(
                    "{}.md:{line}: {concrete:?} [{}] {}",
                    book.name, d.rule, d.reason
                ));
            }
        }
    }
    println!("runbooks: {checked} commands checked");
    assert!(checked >= 100, "only {checked} runbook commands were found");
    assert!(
        refused.is_empty(),
        "{} runbook commands are refused:\n{}",
        refused.len(),
        refused.join("\n")
    );
}

#[test]
fn placeholders_are_substituted_and_unknown_ones_named() {
    assert_eq!(
        substitute("oc get pods -n <hcp-namespace> <pod>"),
        Ok("oc get pods -n clusters-prod-1 web-5d8f7c9b4-x2k7q".to_owned())
    );
    assert_eq!(
        substitute("oc get pods -n <nobody>"),
        Err("<nobody>".to_owned())
    );
}
