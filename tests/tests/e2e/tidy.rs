//! Tidy checks in the style of rust-analyzer's `tidy.rs`: the invariants ARCHITECTURE.md
//! states about where things may be spelled are checked over the source tree.

use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the test kit lives one level below the workspace root")
        .to_path_buf()
}

/// Every `.rs` file under `crates/` and `tests/`, with its path relative to the root.
fn rust_files() -> Vec<(String, String)> {
    let root = workspace_root();
    let mut files = Vec::new();
    let mut stack = vec![root.join("crates"), root.join("tests")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable source folder") {
            let path = entry.expect("readable entry").path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "target") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("UTF-8 source");
                let rel = path
                    .strip_prefix(&root)
                    .expect("under the root")
                    .display()
                    .to_string();
                files.push((rel, text));
            }
        }
    }
    assert!(
        files.len() > 50,
        "the walk found too few files: {}",
        files.len()
    );
    files
}

/// The lines of `text` that are code, not comments.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim_start().starts_with("//"))
        .map(|(i, line)| (i + 1, line))
}

/// Checks `files` for lines matching `bad` outside the paths `allowed`, and lists them.
fn offenders(
    files: &[(String, String)],
    allowed: &[&str],
    bad: impl Fn(&str) -> bool,
) -> Vec<String> {
    files
        .iter()
        .filter(|(path, _)| !allowed.iter().any(|a| path.starts_with(a)))
        .flat_map(|(path, text)| {
            code_lines(text)
                .filter(|(_, line)| bad(line))
                .map(move |(n, line)| format!("{path}:{n}: {}", line.trim()))
        })
        .collect()
}

/// The product code of `files`: sources under `src/`, without their `#[cfg(test)]` modules.
fn product_code(files: Vec<(String, String)>) -> Vec<(String, String)> {
    files
        .into_iter()
        .filter(|(path, _)| path.contains("/src/") && !path.starts_with("tests/"))
        .map(|(path, text)| {
            let code = text
                .split("#[cfg(test)]")
                .next()
                .unwrap_or_default()
                .to_owned();
            (path, code)
        })
        .collect()
}

#[test]
fn only_proto_spells_a_subject() {
    // Our subjects, by kind, in product code; NATS's own API subjects (`$JS.API...`) are not
    // ours, and tests may name the subjects they expect.
    let kinds = ["requests", "tasks", "results", "events", "status", "dead"];
    let found = offenders(&product_code(rust_files()), &["crates/proto/"], |line| {
        kinds
            .iter()
            .any(|kind| line.contains(&format!("\"warroom.{kind}")))
    });
    assert!(
        found.is_empty(),
        "subjects are built with warroom_proto::Subject and Stream only:\n{}",
        found.join("\n")
    );
}

#[test]
fn only_proto_checks_tokens() {
    let found = offenders(
        &rust_files(),
        &["crates/proto/", "tests/tests/e2e/tidy.rs"],
        |line| line.contains("check_token"),
    );
    assert!(
        found.is_empty(),
        "ids are checked by building RequestId/ClusterName, never by check_token:\n{}",
        found.join("\n")
    );
}

#[test]
fn only_warroom_git_starts_git_gpg_or_ssh_keygen() {
    // One sealed environment for every git, gpg and ssh-keygen child of the product. The
    // local stack (`crates/dev`) sets up its own demo repository and keys, as a user would;
    // the publisher's `--signing-key` check runs ssh-keygen and gpg on the key itself, with
    // `warroom_git::identity`.
    let found = offenders(
        &product_code(rust_files()),
        &[
            "crates/git/",
            "crates/dev/",
            "crates/publisher/src/config.rs",
        ],
        |line| {
            ["git", "gpg", "ssh-keygen"]
                .iter()
                .any(|program| line.contains(&format!("Command::new(\"{program}\")")))
        },
    );
    assert!(
        found.is_empty(),
        "git, gpg and ssh-keygen run through warroom_git:\n{}",
        found.join("\n")
    );
}

#[test]
fn only_the_publisher_writes_to_git() {
    // Pushing is what writes to the shared repository; the engineer's CLI pushes its own
    // request files, and the local stack and tests push to their own bare remotes.
    let found = offenders(
        &rust_files(),
        &[
            "crates/publisher/",
            "crates/cli/",
            "crates/dev/",
            "tests/",
            "crates/access/tests/",
            "crates/gateway/tests/",
            "crates/git/tests/",
            // Reads the name of GitHub's `push` webhook event; it writes nothing.
            "crates/gateway/src/webhook.rs",
        ],
        |line| line.contains("\"push\""),
    );
    assert!(
        found.is_empty(),
        "only the publisher pushes results:\n{}",
        found.join("\n")
    );
}

#[test]
fn every_module_says_what_it_is_for() {
    let missing: Vec<String> = rust_files()
        .into_iter()
        .filter(|(path, _)| path.contains("/src/"))
        .filter(|(_, text)| !text.trim_start().starts_with("//!"))
        .map(|(path, _)| path)
        .collect();
    assert!(
        missing.is_empty(),
        "every module starts with a `//!` line:\n{}",
        missing.join("\n")
    );
}

#[test]
fn no_todo_or_dbg_in_the_code() {
    let found = offenders(&rust_files(), &["tests/tests/e2e/tidy.rs"], |line| {
        line.contains("todo!(") || line.contains("dbg!(") || line.contains("unimplemented!(")
    });
    assert!(found.is_empty(), "{}", found.join("\n"));
}
