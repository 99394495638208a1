//! The documentation checked against the code: every flag and `WARROOM_*` variable the
//! binaries accept is in `docs/operating.md` and everything listed there exists; the README's
//! test command is what CI runs; ARCHITECTURE.md cites only paths that exist, links nothing
//! outside the repository and keeps its sentences short enough to hold.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use clap::CommandFactory;

/// The four daemons, which share the flags of the section "Every daemon".
const DAEMONS: [&str; 4] = [
    "warroom-gateway",
    "warroom-dispatcher",
    "warroom-runner",
    "warroom-publisher",
];

/// Binaries whose parser is private to their `main.rs` (or module): their flags are read from
/// the `#[arg(..)]` attributes of these source folders instead.
const SCANNED: [(&str, &str); 2] = [
    ("warroom-guard", "crates/guard/src/cli.rs"),
    ("warroom-dev", "crates/dev/src/main.rs"),
];

/// A flag as documented or declared: `--name` and its environment variable, if any.
type Flag = (String, Option<String>);

fn workspace_root() -> PathBuf {
    warroom_testkit::tools::workspace_root()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(workspace_root().join(path))
        .unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// Every binary's flags, from the code.
fn code_flags() -> BTreeMap<String, BTreeSet<Flag>> {
    let mut flags = BTreeMap::new();
    let parsed = [
        ("warroom-gateway", warroom_gateway::Config::command()),
        ("warroom-dispatcher", warroom_dispatcher::Config::command()),
        ("warroom-runner", warroom_runner::Config::command()),
        ("warroom-publisher", warroom_publisher::Config::command()),
        ("warroom-admin", warroom_admin::Cli::command()),
    ];
    for (binary, command) in parsed {
        flags.insert(binary.to_owned(), clap_flags(&command));
    }
    for (binary, file) in SCANNED {
        flags.insert(binary.to_owned(), scanned_flags(&read(file)));
    }
    flags
}

/// The long flags of `command` and of all its subcommands, without clap's own.
fn clap_flags(command: &clap::Command) -> BTreeSet<Flag> {
    let mut flags: BTreeSet<Flag> = command
        .get_arguments()
        .filter_map(|arg| {
            let long = arg.get_long()?;
            let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
            Some((format!("--{long}"), env))
        })
        .filter(|(long, _)| long != "--help" && long != "--version")
        .collect();
    for sub in command.get_subcommands() {
        flags.extend(clap_flags(sub));
    }
    flags
}

/// The long flags declared by `#[arg(..)]` attributes in `source`: `long` (the field's name in
/// kebab case) or `long = "name"`, with `env = "VAR"` when given.
fn scanned_flags(source: &str) -> BTreeSet<Flag> {
    let mut flags = BTreeSet::new();
    let mut rest = source;
    while let Some(start) = rest.find("#[arg(") {
        let after = &rest[start + "#[arg(".len()..];
        // The attribute ends at the parenthesis that closes `arg(`, outside quotes.
        let (mut depth, mut quoted) = (1, false);
        let end = after
            .char_indices()
            .find_map(|(i, c)| {
                match c {
                    '"' => quoted = !quoted,
                    '(' if !quoted => depth += 1,
                    ')' if !quoted => depth -= 1,
                    _ => {}
                }
                (depth == 0).then_some(i)
            })
            .expect("every #[arg( is closed");
        let attribute = &after[..end];
        rest = &after[end..];
        let items: Vec<&str> = split_top_level(attribute);
        let quoted = |key: &str| {
            items.iter().find_map(|item| {
                let (k, v) = item.split_once('=')?;
                (k.trim() == key).then(|| v.trim().trim_matches('"').to_owned())
            })
        };
        let long = if items.iter().any(|item| item.trim() == "long") {
            // The field this attribute belongs to: the first `name: Type` line after it.
            let field = rest
                .lines()
                .skip(1)
                .map(str::trim)
                .find(|line| {
                    !line.starts_with("//") && !line.starts_with("#[") && line.contains(':')
                })
                .and_then(|line| line.trim_start_matches("pub ").split_once(':'))
                .map(|(name, _)| name.trim().replace('_', "-"))
                .expect("an #[arg(long)] attribute is followed by its field");
            Some(field)
        } else {
            quoted("long")
        };
        if let Some(long) = long {
            flags.insert((format!("--{long}"), quoted("env")));
        }
    }
    flags
}

/// `text` split at the commas outside parentheses, brackets and quotes.
fn split_top_level(text: &str) -> Vec<&str> {
    let (mut items, mut depth, mut quoted, mut start) = (Vec::new(), 0, false, 0);
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '(' | '[' if !quoted => depth += 1,
            ')' | ']' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                items.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&text[start..]);
    items
}

/// The flag tables of `docs/operating.md`, per binary, and every row or table that does not
/// follow the format the page describes ("How the flag tables read").
fn documented_flags(doc: &str) -> (BTreeMap<String, BTreeSet<Flag>>, Vec<String>) {
    let binaries: BTreeSet<&str> = DAEMONS
        .iter()
        .chain(["warroom-admin"].iter())
        .chain(SCANNED.iter().map(|(b, _)| b))
        .copied()
        .collect();
    let mut flags: BTreeMap<String, BTreeSet<Flag>> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut section: Vec<String> = Vec::new();
    let mut in_table = false;
    for (n, line) in doc.lines().enumerate() {
        let n = n + 1;
        if let Some(heading) = line.strip_prefix("## ") {
            section = if heading.trim() == "Every daemon" {
                DAEMONS.iter().map(|d| d.to_string()).collect()
            } else {
                heading
                    .split('`')
                    .skip(1)
                    .step_by(2)
                    .filter(|name| binaries.contains(name))
                    .map(str::to_owned)
                    .collect()
            };
        }
        if line.starts_with("| flag | env |") {
            in_table = true;
            if section.is_empty() {
                problems.push(format!(
                    "docs/operating.md:{n}: a flag table outside a binary's section"
                ));
            }
            continue;
        }
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        if !in_table || line.starts_with("| ---") {
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let flag = cells
            .get(1)
            .and_then(|c| c.strip_prefix("`--"))
            .and_then(|c| c.strip_suffix('`'))
            .filter(|c| {
                c.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            });
        let env = match cells.get(2).copied() {
            Some("none") => Some(None),
            Some(cell) => cell
                .strip_prefix('`')
                .and_then(|c| c.strip_suffix('`'))
                .filter(|c| {
                    c.chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                })
                .map(|c| Some(c.to_owned())),
            None => None,
        };
        match (flag, env) {
            (Some(flag), Some(env)) => {
                for binary in &section {
                    flags
                        .entry(binary.clone())
                        .or_default()
                        .insert((format!("--{flag}"), env.clone()));
                }
            }
            _ => problems.push(format!(
                "docs/operating.md:{n}: expected | `--flag` | `ENV` or none | ...: {line}"
            )),
        }
    }
    (flags, problems)
}

fn describe((flag, env): &Flag) -> String {
    match env {
        Some(env) => format!("{flag} ({env})"),
        None => format!("{flag} (no env)"),
    }
}

#[test]
fn every_flag_is_documented_and_every_documented_flag_exists() {
    let (documented, mut problems) = documented_flags(&read("docs/operating.md"));
    let code = code_flags();
    for (binary, flags) in &code {
        assert!(!flags.is_empty(), "{binary}: no flags found in the code");
        let listed = documented.get(binary).cloned().unwrap_or_default();
        for flag in flags.difference(&listed) {
            problems.push(format!(
                "{binary}: {} is accepted but not documented",
                describe(flag)
            ));
        }
        for flag in listed.difference(flags) {
            problems.push(format!(
                "{binary}: {} is documented but not accepted",
                describe(flag)
            ));
        }
    }
    for binary in documented.keys().filter(|b| !code.contains_key(*b)) {
        problems.push(format!(
            "{binary}: documented, but the test does not know it"
        ));
    }
    assert!(
        problems.is_empty(),
        "docs/operating.md and the code disagree (a table row is | `--flag` | `ENV` or none | \
         default | meaning |):\n{}",
        problems.join("\n")
    );
}

/// The `WARROOM_*` names in `text`.
fn warroom_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("WARROOM_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        if !name.ends_with('_') {
            names.insert(name.clone());
        }
        rest = &rest[i + name.len().max(1)..];
    }
    names
}

/// Every file below `dir`, recursively.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable folder") {
            let path = entry.expect("readable entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// The `WARROOM_*` names of the product: the crates' sources without their test modules,
/// `scripts/`, `deploy/` (not its Markdown) and the Dockerfile.
fn product_names() -> BTreeSet<String> {
    let root = workspace_root();
    let mut texts = Vec::new();
    for path in files_below(&root.join("crates")) {
        let in_src = path.components().any(|c| c.as_os_str() == "src");
        if in_src && path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("UTF-8 source");
            texts.push(
                text.split("#[cfg(test)]")
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
    }
    for dir in ["scripts", "deploy"] {
        for path in files_below(&root.join(dir)) {
            if path.extension().is_none_or(|e| e != "md")
                && let Ok(text) = std::fs::read_to_string(&path)
            {
                texts.push(text);
            }
        }
    }
    texts.push(read("Dockerfile"));
    texts.iter().flat_map(|t| warroom_names(t)).collect()
}

#[test]
fn every_warroom_variable_is_documented_and_every_documented_one_exists() {
    let code = product_names();
    // Stream names (`WARROOM_EVENTS`, ...) are spelled like variables but are none.
    let streams = warroom_names(&read("crates/proto/src/names.rs"));
    let flag_envs: BTreeSet<String> = code_flags()
        .into_values()
        .flatten()
        .filter_map(|(_, env)| env)
        .collect();
    let documented = warroom_names(&read("docs/operating.md"));
    let mut problems = Vec::new();
    for name in code
        .difference(&streams)
        .filter(|n| !documented.contains(*n))
    {
        problems.push(format!(
            "{name} is read by the product but not in docs/operating.md"
        ));
    }
    for name in documented
        .iter()
        .filter(|n| !code.contains(*n) && !flag_envs.contains(*n))
    {
        problems.push(format!(
            "{name} is in docs/operating.md but nothing reads it"
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn ci_runs_the_commands_the_readme_documents() {
    let readme = read("README.md");
    let ci = read(".ci/run");
    let command_of = |what: &str| {
        let row = readme
            .lines()
            .find(|l| l.starts_with(&format!("| {what}")))
            .unwrap_or_else(|| panic!("README.md: no row `| {what}` in the set-up table"));
        row.rsplit('`')
            .nth(1)
            .unwrap_or_else(|| panic!("README.md: `{row}` ends in no `command`"))
            .to_owned()
    };
    for what in ["the whole test suite", "set-up"] {
        let command = command_of(what);
        assert!(
            ci.lines().any(|l| l.trim_start().starts_with(&command)),
            "README.md documents `{command}` ({what}), but .ci/run does not run it"
        );
    }
}

/// The prose of a Markdown page as sentences: code blocks, headings and tables left out,
/// each paragraph and list item split after `.`, `!` or `?`.
fn sentences(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    let mut code = false;
    for line in text.lines() {
        if line.starts_with("```") {
            code = !code;
            continue;
        }
        if code {
            continue;
        }
        // A blank line, a heading or a table row ends a paragraph; a list item starts one.
        let item = line.trim_start().strip_prefix("- ");
        let outside = line.trim().is_empty() || line.starts_with('#') || line.starts_with('|');
        if (outside || item.is_some()) && !current.is_empty() {
            blocks.push(current.join(" "));
            current.clear();
        }
        match item {
            Some(item) => current.push(item),
            None if outside => {}
            None => current.push(line.trim()),
        }
    }
    blocks.push(current.join(" "));
    let mut sentences = Vec::new();
    for block in blocks {
        let mut sentence: Vec<&str> = Vec::new();
        for word in block.split_whitespace() {
            sentence.push(word);
            let bare = word.trim_end_matches(['"', ')', '*', '`', '\'']);
            let ends = bare.ends_with(['.', '!', '?'])
                && !bare.ends_with("..")
                && !["e.g.", "i.e.", "etc."].contains(&bare);
            if ends {
                sentences.push(sentence.join(" "));
                sentence.clear();
            }
        }
        if !sentence.is_empty() {
            sentences.push(sentence.join(" "));
        }
    }
    sentences
}

#[test]
fn architecture_sentences_stay_short() {
    let long: Vec<String> = sentences(&read("ARCHITECTURE.md"))
        .into_iter()
        .filter(|s| s.split_whitespace().count() > 60)
        .map(|s| format!("{} words: {s}", s.split_whitespace().count()))
        .collect();
    assert!(
        long.is_empty(),
        "ARCHITECTURE.md: split these sentences (at most 60 words):\n{}",
        long.join("\n\n")
    );
}

#[test]
fn architecture_cites_only_what_is_in_the_repository() {
    let text = read("ARCHITECTURE.md");
    let root = workspace_root();
    let mut problems = Vec::new();
    for cited in text.split('`').skip(1).step_by(2) {
        let path = cited.trim_end_matches(['/', '.', ',']);
        let is_path = (path.starts_with("crates/") || path.starts_with("tests/"))
            && !path.contains(['<', '*', ' ']);
        if is_path && !root.join(path).exists() {
            problems.push(format!("`{cited}` does not exist"));
        }
    }
    for (n, line) in text.lines().enumerate() {
        if line.contains("../") || line.contains("](http") {
            problems.push(format!(
                "line {}: links outside the repository: {line}",
                n + 1
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "ARCHITECTURE.md:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_flag_scanner_reads_clap_attributes() {
    let source = r#"
        struct Args {
            /// A doc line.
            #[arg(long, env = "WARROOM_A", default_value = "x(y)")]
            pub first_flag: Option<PathBuf>,
            #[arg(long = "other", value_delimiter = ',')]
            second: Vec<String>,
            /// Positional, no flag.
            #[arg(value_name = "FILE")]
            file: PathBuf,
        }
    "#;
    let flags = scanned_flags(source);
    let wanted: BTreeSet<Flag> = [
        ("--first-flag".to_owned(), Some("WARROOM_A".to_owned())),
        ("--other".to_owned(), None),
    ]
    .into_iter()
    .collect();
    assert_eq!(flags, wanted);
}
