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

/// Product code under `src/` parsed as Rust, with its path (tests excluded: `#[cfg(test)]`
/// modules are skipped by the visitors below).
fn parsed_product_files() -> Vec<(String, syn::File)> {
    rust_files()
        .into_iter()
        .filter(|(path, _)| path.contains("/src/") && !path.starts_with("tests/"))
        .map(|(path, text)| {
            let file = syn::parse_file(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
            (path, file)
        })
        .collect()
}

fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.parse_args::<syn::Ident>()
                .is_ok_and(|ident| ident == "test")
    })
}

/// The format string of a `#[error("...")]` attribute; `None` for `#[error(transparent)]`.
fn error_format(attrs: &[syn::Attribute]) -> Option<String> {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("error"))
        .find_map(|a| {
            let list = a.meta.require_list().ok()?;
            let first = list.tokens.clone().into_iter().next()?;
            syn::parse2::<syn::LitStr>(first.into())
                .ok()
                .map(|lit| lit.value())
        })
}

/// The names (`source`, `0`, ...) of the fields `thiserror` makes the error's `source()`.
fn source_fields(fields: &syn::Fields) -> Vec<String> {
    fields
        .iter()
        .enumerate()
        .filter(|(_, field)| {
            field.ident.as_ref().is_some_and(|i| i == "source")
                || field
                    .attrs
                    .iter()
                    .any(|a| a.path().is_ident("source") || a.path().is_ident("from"))
        })
        .map(|(index, field)| match &field.ident {
            Some(ident) => ident.to_string(),
            None => index.to_string(),
        })
        .collect()
}

struct ErrorSources<'p> {
    path: &'p str,
    found: Vec<String>,
}

impl ErrorSources<'_> {
    fn check(&mut self, name: String, attrs: &[syn::Attribute], fields: &syn::Fields) {
        let Some(format) = error_format(attrs) else {
            return;
        };
        for field in source_fields(fields) {
            let spelled = [format!("{{{field}}}"), format!("{{{field}:")];
            if spelled.iter().any(|s| format.contains(s.as_str())) {
                self.found
                    .push(format!("{}: {name}: \"{format}\"", self.path));
            }
        }
    }
}

impl<'ast> syn::visit::Visit<'ast> for ErrorSources<'_> {
    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        if !is_cfg_test(&item.attrs) {
            syn::visit::visit_item_mod(self, item);
        }
    }
    fn visit_item_struct(&mut self, item: &'ast syn::ItemStruct) {
        self.check(item.ident.to_string(), &item.attrs, &item.fields);
    }
    fn visit_item_enum(&mut self, item: &'ast syn::ItemEnum) {
        for variant in &item.variants {
            let name = format!("{}::{}", item.ident, variant.ident);
            self.check(name, &variant.attrs, &variant.fields);
        }
    }
}

#[test]
fn an_error_keeps_its_cause_in_source_only() {
    // One convention for error sources: an error's message says what failed, its cause is
    // reached through `source()` only, so printing the chain (`{e:#}` with anyhow, or
    // `warroom_runtime::Chain`) shows each cause once. Writing `{source}` (or `{0}` for a
    // `#[from]` field) into an `#[error]` message makes this fail.
    let mut found = Vec::new();
    for (path, file) in parsed_product_files() {
        let mut visitor = ErrorSources {
            path: &path,
            found: Vec::new(),
        };
        syn::visit::Visit::visit_file(&mut visitor, &file);
        found.extend(visitor.found);
    }
    assert!(
        found.is_empty(),
        "these error messages print their source, which `source()` also returns:\n{}",
        found.join("\n")
    );
}

/// Public functions that fail with a bare `String`, and long daemon functions.
struct PublicFns<'p> {
    path: &'p str,
    found: Vec<String>,
    long: Vec<String>,
    daemon: bool,
}

/// Whether `ty` mentions `Result<_, String>` anywhere (`Result<Result<(), String>>` too).
fn has_string_error(ty: &syn::Type) -> bool {
    let syn::Type::Path(path) = ty else {
        return false;
    };
    path.path.segments.iter().any(|segment| {
        let syn::PathArguments::AngleBracketed(args) = &segment.arguments else {
            return false;
        };
        let types: Vec<&syn::Type> = args
            .args
            .iter()
            .filter_map(|arg| match arg {
                syn::GenericArgument::Type(ty) => Some(ty),
                _ => None,
            })
            .collect();
        let string_error = segment.ident == "Result"
            && types.len() == 2
            && matches!(types[1], syn::Type::Path(p) if p.path.is_ident("String"));
        string_error || types.into_iter().any(has_string_error)
    })
}

impl PublicFns<'_> {
    fn check(&mut self, vis: &syn::Visibility, sig: &syn::Signature) {
        if matches!(vis, syn::Visibility::Public(_))
            && let syn::ReturnType::Type(_, ty) = &sig.output
            && has_string_error(ty)
        {
            self.found.push(format!("{}: fn {}", self.path, sig.ident));
        }
    }

    fn length(&mut self, sig: &syn::Signature, block: &syn::Block, attrs: &[syn::Attribute]) {
        if !self.daemon {
            return;
        }
        let start = sig.fn_token.span.start().line;
        let end = block.brace_token.span.close().end().line;
        let lines = end + 1 - start;
        let doc: String = attrs
            .iter()
            .filter(|a| a.path().is_ident("doc"))
            .filter_map(|a| match &a.meta {
                syn::Meta::NameValue(nv) => match &nv.value {
                    syn::Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Str(s),
                        ..
                    }) => Some(s.value()),
                    _ => None,
                },
                _ => None,
            })
            .collect();
        if lines > MAX_FUNCTION_LINES && !doc.contains(LONG_BECAUSE) {
            self.long
                .push(format!("{}: fn {} is {lines} lines", self.path, sig.ident));
        }
    }
}

/// The longest function in daemon code whose doc comment does not say why it is longer.
const MAX_FUNCTION_LINES: usize = 80;
/// How a doc comment gives that reason.
const LONG_BECAUSE: &str = "Long because";

impl<'ast> syn::visit::Visit<'ast> for PublicFns<'_> {
    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        if !is_cfg_test(&item.attrs) {
            syn::visit::visit_item_mod(self, item);
        }
    }
    fn visit_item_fn(&mut self, item: &'ast syn::ItemFn) {
        self.check(&item.vis, &item.sig);
        self.length(&item.sig, &item.block, &item.attrs);
        syn::visit::visit_item_fn(self, item);
    }
    fn visit_impl_item_fn(&mut self, item: &'ast syn::ImplItemFn) {
        self.check(&item.vis, &item.sig);
        self.length(&item.sig, &item.block, &item.attrs);
        syn::visit::visit_impl_item_fn(self, item);
    }
    fn visit_trait_item_fn(&mut self, item: &'ast syn::TraitItemFn) {
        if let syn::ReturnType::Type(_, ty) = &item.sig.output
            && has_string_error(ty)
        {
            self.found
                .push(format!("{}: trait fn {}", self.path, item.sig.ident));
        }
    }
}

/// Runs [`PublicFns`] over the product code.
fn public_fns() -> (Vec<String>, Vec<String>) {
    let daemons = [
        "crates/gateway/",
        "crates/dispatcher/",
        "crates/runner/",
        "crates/publisher/",
    ];
    let (mut found, mut long) = (Vec::new(), Vec::new());
    for (path, file) in parsed_product_files() {
        let mut visitor = PublicFns {
            path: &path,
            found: Vec::new(),
            long: Vec::new(),
            daemon: daemons.iter().any(|d| path.starts_with(d)),
        };
        syn::visit::Visit::visit_file(&mut visitor, &file);
        found.extend(visitor.found);
        long.extend(visitor.long);
    }
    (found, long)
}

#[test]
fn no_public_function_fails_with_a_bare_string() {
    // A public API's error is a type a caller can match and whose `source()` chain holds:
    // a `pub fn` returning `Result<_, String>` makes this fail.
    let (found, _) = public_fns();
    assert!(
        found.is_empty(),
        "public functions that return `Result<_, String>`:\n{}",
        found.join("\n")
    );
}

#[test]
fn daemon_functions_fit_on_a_screen() {
    // A daemon function over 80 lines says why in its doc comment ("Long because ...").
    let (_, long) = public_fns();
    assert!(
        long.is_empty(),
        "daemon functions over {MAX_FUNCTION_LINES} lines without \"{LONG_BECAUSE}\" in their \
         doc comment:\n{}",
        long.join("\n")
    );
}
