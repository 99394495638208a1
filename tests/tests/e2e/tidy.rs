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
            "crates/runtime/src/git.rs",
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

/// The `[dependencies]` of one crate's manifest: the names before ` = `, as their library is
/// spelled in code (`-` becomes `_`).
fn normal_dependencies(manifest: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut inside = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            inside = line == "[dependencies]";
            continue;
        }
        if inside && let Some((name, _)) = line.split_once('=') {
            let name = name.trim();
            if !name.is_empty() && !name.starts_with('#') {
                names.push(name.replace('-', "_"));
            }
        }
    }
    names
}

#[test]
fn no_crate_lists_a_dependency_it_does_not_use() {
    // cargo-machete (installed by scripts/setup) reads every manifest and the code beside it.
    // Adding an unused dependency to any crate makes this fail.
    let root = workspace_root();
    let machete = root.join(".tools/bin/cargo-machete");
    let out = std::process::Command::new(&machete)
        .current_dir(&root)
        .output()
        .unwrap_or_else(|e| panic!("run {} (scripts/setup installs it): {e}", machete.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !stdout.contains("found the following unused"),
        "cargo-machete found unused dependencies:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_dependency_only_tests_use_is_a_dev_dependency() {
    // What only tests use must not be linked into the product: each `[dependencies]` entry
    // is named in the crate's own `src/` (outside `#[cfg(test)]` modules). Moving a
    // dev-dependency up into `[dependencies]` makes this fail.
    let root = workspace_root();
    let code = product_code(rust_files());
    let mut unused = Vec::new();
    for entry in std::fs::read_dir(root.join("crates")).expect("crates/") {
        let dir = entry.expect("entry").path();
        let Ok(manifest) = std::fs::read_to_string(dir.join("Cargo.toml")) else {
            continue;
        };
        let crate_dir = format!(
            "crates/{}/src/",
            dir.file_name().expect("a name").to_string_lossy()
        );
        let sources: Vec<&str> = code
            .iter()
            .filter(|(path, _)| path.starts_with(&crate_dir))
            .map(|(_, text)| text.as_str())
            .collect();
        for name in normal_dependencies(&manifest) {
            let used = sources.iter().any(|text| {
                text.match_indices(name.as_str()).any(|(at, _)| {
                    let before = text[..at].chars().next_back();
                    let after = text[at + name.len()..].chars().next();
                    !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                        && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
                })
            });
            if !used {
                unused.push(format!("{crate_dir}: {name}"));
            }
        }
    }
    assert!(
        unused.is_empty(),
        "dependencies no product code names (make them dev-dependencies or remove them):\n{}",
        unused.join("\n")
    );
}
