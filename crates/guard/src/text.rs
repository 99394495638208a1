//! The plain text tools a pipeline may use to filter `kubectl` output: only flags that neither
//! read other files nor the environment nor write files, and only operands that are files in
//! the workspace or a read-only folder (or, for `tr`, literal text).

use crate::config::ProgramOperands;
use crate::decision::Decision;
use crate::flags::{Arity, FlagError, FlagSpec, Item, Style, parse_all};
use crate::workspace::{PathRefusal, Workspace};

/// What a program's operands are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operands {
    /// None.
    None,
    /// Files to read.
    Files,
    /// Literal text (`tr` sets).
    Text,
    /// A pattern (unless given by `-e`), then files (`grep`).
    PatternThenFiles,
    /// A jq program, then files.
    JqProgramThenFiles,
    /// At most one input file: a second operand is an output file (`uniq IN OUT`).
    OneFile,
}

impl From<ProgramOperands> for Operands {
    fn from(o: ProgramOperands) -> Operands {
        match o {
            ProgramOperands::None => Operands::None,
            ProgramOperands::Files => Operands::Files,
            ProgramOperands::Text => Operands::Text,
        }
    }
}

/// One allowed program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramSpec {
    /// Its bare name.
    pub name: String,
    /// Its allowed flags.
    pub flags: Vec<FlagSpec>,
    /// Its operands.
    pub operands: Operands,
}

fn sw(short: char, long: &str) -> FlagSpec {
    FlagSpec::new(long, Some(short), Arity::Switch)
}

fn val(short: char, long: &str) -> FlagSpec {
    FlagSpec::new(long, Some(short), Arity::One)
}

fn program(name: &str, operands: Operands, flags: Vec<FlagSpec>) -> ProgramSpec {
    ProgramSpec {
        name: name.to_owned(),
        flags,
        operands,
    }
}

/// The built-in programs. Left out on purpose: `awk` and `sed` (run commands, write files),
/// `xargs`, `env`, `printenv`, shells and interpreters, `base64` (decodes), `tee` (writes),
/// `find` (`-exec`), `curl`.
pub fn builtin_programs() -> Vec<ProgramSpec> {
    let head_tail = || {
        vec![
            val('n', "lines"),
            val('c', "bytes"),
            sw('q', "quiet"),
            sw('v', "verbose"),
            sw('z', "zero-terminated"),
        ]
    };
    vec![
        program(
            "grep",
            Operands::PatternThenFiles,
            vec![
                sw('i', "ignore-case"),
                sw('v', "invert-match"),
                sw('c', "count"),
                sw('n', "line-number"),
                sw('E', "extended-regexp"),
                sw('F', "fixed-strings"),
                sw('G', "basic-regexp"),
                sw('P', "perl-regexp"),
                sw('w', "word-regexp"),
                sw('x', "line-regexp"),
                sw('o', "only-matching"),
                sw('h', "no-filename"),
                sw('H', "with-filename"),
                sw('l', "files-with-matches"),
                sw('L', "files-without-match"),
                sw('q', "quiet"),
                sw('s', "no-messages"),
                sw('a', "text"),
                sw('b', "byte-offset"),
                val('A', "after-context"),
                val('B', "before-context"),
                val('C', "context"),
                val('m', "max-count"),
                val('e', "regexp"),
            ],
        ),
        program(
            "jq",
            Operands::JqProgramThenFiles,
            vec![
                sw('r', "raw-output"),
                sw('j', "join-output"),
                sw('a', "ascii-output"),
                sw('c', "compact-output"),
                sw('C', "color-output"),
                sw('M', "monochrome-output"),
                sw('S', "sort-keys"),
                sw('s', "slurp"),
                sw('n', "null-input"),
                sw('R', "raw-input"),
                sw('e', "exit-status"),
                FlagSpec::new("tab", None, Arity::Switch),
                FlagSpec::new("indent", None, Arity::One),
                FlagSpec::new("arg", None, Arity::Two),
                FlagSpec::new("argjson", None, Arity::Two),
            ],
        ),
        program("head", Operands::Files, head_tail()),
        program("tail", Operands::Files, head_tail()),
        program(
            "wc",
            Operands::Files,
            vec![
                sw('l', "lines"),
                sw('w', "words"),
                sw('c', "bytes"),
                sw('m', "chars"),
                sw('L', "max-line-length"),
            ],
        ),
        program(
            "sort",
            Operands::Files,
            vec![
                sw('n', "numeric-sort"),
                sw('r', "reverse"),
                val('k', "key"),
                val('t', "field-separator"),
                sw('u', "unique"),
                sw('h', "human-numeric-sort"),
                sw('V', "version-sort"),
                sw('f', "ignore-case"),
                sw('b', "ignore-leading-blanks"),
                sw('g', "general-numeric-sort"),
                sw('M', "month-sort"),
                sw('s', "stable"),
            ],
        ),
        program(
            "uniq",
            Operands::OneFile,
            vec![
                sw('c', "count"),
                sw('d', "repeated"),
                sw('u', "unique"),
                sw('i', "ignore-case"),
                val('f', "skip-fields"),
                val('s', "skip-chars"),
                val('w', "check-chars"),
            ],
        ),
        program(
            "cut",
            Operands::Files,
            vec![
                val('d', "delimiter"),
                val('f', "fields"),
                val('c', "characters"),
                val('b', "bytes"),
                FlagSpec::new("complement", None, Arity::Switch),
                sw('s', "only-delimited"),
                FlagSpec::new("output-delimiter", None, Arity::One),
            ],
        ),
        program(
            "tr",
            Operands::Text,
            vec![
                sw('d', "delete"),
                sw('s', "squeeze-repeats"),
                sw('c', "complement"),
                FlagSpec::short_only('C', Arity::Switch),
                sw('t', "truncate-set1"),
            ],
        ),
        program(
            "column",
            Operands::Files,
            vec![
                sw('t', "table"),
                val('s', "separator"),
                val('o', "output-separator"),
                val('c', "output-width"),
                val('N', "table-columns"),
            ],
        ),
        program(
            "cat",
            Operands::Files,
            vec![
                sw('n', "number"),
                sw('b', "number-nonblank"),
                sw('s', "squeeze-blank"),
                sw('A', "show-all"),
                sw('E', "show-ends"),
                sw('T', "show-tabs"),
                sw('v', "show-nonprinting"),
            ],
        ),
    ]
}

/// Decides one text-tool command; `argv[0]` is the program, found in `spec`.
pub fn check(spec: &ProgramSpec, argv: &[String], ws: &Workspace) -> Decision {
    let name = spec.name.as_str();
    let mut args: Vec<String> = argv[1..].to_vec();
    if matches!(name, "head" | "tail") {
        // The old count syntax `head -5` is still everyday use; it means `-n 5`.
        for arg in &mut args {
            if arg.len() > 1 && arg.starts_with('-') && arg[1..].bytes().all(|b| b.is_ascii_digit())
            {
                *arg = format!("-n{}", &arg[1..]);
            }
        }
    }
    let items = match parse_all(&args, &spec.flags, Style::Getopt) {
        Ok(items) => items,
        Err(err) => return flag_refusal(name, &err),
    };

    let mut operands: Vec<&str> = Vec::new();
    let mut has_e = false;
    for item in &items {
        match item {
            Item::Flag { spec, .. } => has_e |= spec.long.as_deref() == Some("regexp"),
            Item::Positional(p) => operands.push(p),
        }
    }

    let files: &[&str] = match spec.operands {
        Operands::None if !operands.is_empty() => {
            return Decision::deny("text.operand", format!("`{name}` takes no operands here"));
        }
        Operands::None | Operands::Text => &[],
        Operands::Files => &operands,
        Operands::PatternThenFiles if has_e => &operands,
        Operands::PatternThenFiles => operands.get(1..).unwrap_or_default(),
        Operands::JqProgramThenFiles => {
            match operands.first() {
                Some(program) => {
                    if let Some(d) = check_jq_program(program) {
                        return d;
                    }
                }
                None => {
                    return Decision::deny(
                        "text.operand",
                        "`jq` needs a filter program as its first operand, such as '.'",
                    );
                }
            }
            operands.get(1..).unwrap_or_default()
        }
        Operands::OneFile if operands.len() > 1 => {
            return Decision::deny(
                "text.writes-file",
                format!(
                    "`{name}` with a second operand writes to that file; read stdin or one workspace file"
                ),
            );
        }
        Operands::OneFile => &operands,
    };
    for file in files {
        if *file == "-" {
            continue;
        }
        if let Err(refusal) = ws.readable(file) {
            let why = match refusal {
                PathRefusal::ParentComponent => "it contains `..`".to_owned(),
                PathRefusal::Outside(p) => {
                    format!("it resolves to {}, outside the workspace", p.display())
                }
                PathRefusal::Invalid => "it is not a valid path".to_owned(),
            };
            return Decision::deny(
                "text.file-outside-workspace",
                format!(
                    "`{name} {file}` is refused: {why}. Text tools read their pipe input or files in the workspace ({})",
                    ws.root().display()
                ),
            );
        }
    }
    Decision::allow(
        "text.filter",
        format!("`{name}` with allowed flags reads only its input or workspace files"),
    )
}

fn flag_refusal(name: &str, err: &FlagError) -> Decision {
    let flag = err.flag();
    let why = match err {
        FlagError::MissingValue(_) => "it needs a value".to_owned(),
        FlagError::UnexpectedValue(_) => "it takes no value".to_owned(),
        FlagError::Unknown(_) => match (name, flag.trim_start_matches('-')) {
            (
                "grep",
                "f"
                | "file"
                | "r"
                | "R"
                | "recursive"
                | "dereference-recursive"
                | "d"
                | "directories"
                | "include"
                | "exclude-from",
            ) => "it reads files or folders beyond the input".to_owned(),
            (
                "jq",
                "f" | "from-file" | "L" | "rawfile" | "slurpfile" | "argfile" | "args" | "jsonargs",
            ) => "it reads files or module folders".to_owned(),
            (
                "sort",
                "o" | "output" | "T" | "temporary-directory" | "compress-program" | "files0-from",
            ) => "it writes files, runs a program or reads a file list".to_owned(),
            ("tail", "f" | "F" | "follow" | "pid" | "retry") => "it never ends".to_owned(),
            ("wc", "files0-from") => "it reads a list of files".to_owned(),
            _ => "it is not on this program's allowlist".to_owned(),
        },
    };
    Decision::deny("text.flag", format!("`{name} {flag}` is refused: {why}"))
}

/// Identifiers a jq program may not use: they read the environment (`env`, `$ENV`), name files
/// (`input_filename`, `$__loc__`), load modules (`import`, `include`, and the search-list
/// builtins) or decode (`@base64d`).
const JQ_REFUSED: [&str; 10] = [
    "env",
    "ENV",
    "input_filename",
    "__loc__",
    "import",
    "include",
    "modulemeta",
    "get_search_list",
    "base64d",
    "get_prog_origin",
];

/// Refuses a jq program that uses a refused identifier outside string literals. String
/// interpolation (`"\(env)"`) is code and is scanned; `.env` is a field access and is fine.
pub fn check_jq_program(program: &str) -> Option<Decision> {
    let chars: Vec<char> = program.chars().collect();
    // Each entry is the paren depth of an interpolation we are in; inside a string when the
    // innermost state says so.
    let mut in_string = false;
    let mut interpolations: Vec<usize> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if in_string {
            match c {
                '\\' if chars.get(i + 1) == Some(&'(') => {
                    interpolations.push(depth);
                    depth += 1;
                    in_string = false;
                    i += 2;
                }
                '\\' => i += 2,
                '"' => {
                    in_string = false;
                    i += 1;
                }
                _ => i += 1,
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                i += 1;
            }
            '(' => {
                depth += 1;
                i += 1;
            }
            ')' => {
                depth = depth.saturating_sub(1);
                if interpolations.last() == Some(&depth) {
                    interpolations.pop();
                    in_string = true;
                }
                i += 1;
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                let ident: String = chars[start..i].iter().collect();
                let field_access = start > 0 && chars[start - 1] == '.';
                if !field_access && JQ_REFUSED.contains(&ident.as_str()) {
                    return Some(Decision::deny(
                        "text.jq-program",
                        format!(
                            "the jq program uses `{ident}`, which is refused: jq may not read the environment, files or modules, nor decode base64. Filter the input only (`.env` as a field is fine)"
                        ),
                    ));
                }
            }
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jq_programs() {
        for bad in [
            "env",
            "$ENV",
            "$ENV.HOME",
            "env.HOME",
            "\"\\(env)\"",
            "input_filename",
            "$__loc__",
            "@base64d",
            "import \"a\" as a; .",
            "{a: env}",
        ] {
            assert!(check_jq_program(bad).is_some(), "{bad}");
        }
        for good in [
            ".",
            ".items[].metadata.name",
            ".spec.containers[].env",
            "select(.name == \"env\")",
            "\"\\(.env) env\"",
            ".items | length",
        ] {
            assert!(check_jq_program(good).is_none(), "{good}");
        }
    }
}
