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
    /// An awk program, then files or `var=value` assignments.
    AwkProgramThenFiles,
    /// A sed script (unless given by `-e`), then files.
    SedScriptThenFiles,
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

/// The built-in programs. `awk` and `sed` are here with their programs checked (no commands,
/// no files written); `tr` only squeezes or deletes blanks. Left out on purpose: `xargs`,
/// `env`, `printenv`, shells and interpreters, `base64`, `rev`, `xxd`, `od`, `hexdump`
/// (decode or reshape values), `tee` (writes), `find` (`-exec`), `curl`.
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
            "awk",
            Operands::AwkProgramThenFiles,
            vec![val('F', "field-separator"), val('v', "assign")],
        ),
        program(
            "sed",
            Operands::SedScriptThenFiles,
            vec![
                sw('n', "quiet"),
                FlagSpec::new("silent", None, Arity::Switch),
                sw('E', "regexp-extended"),
                FlagSpec::short_only('r', Arity::Switch),
                val('e', "expression"),
                sw('s', "separate"),
                sw('u', "unbuffered"),
                sw('z', "null-data"),
            ],
        ),
        program(
            "date",
            Operands::Text,
            vec![
                sw('u', "utc"),
                val('d', "date"),
                sw('R', "rfc-email"),
                FlagSpec::short_only('I', Arity::Switch),
                FlagSpec::new("iso-8601", None, Arity::Switch),
                FlagSpec::new("rfc-3339", None, Arity::One),
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
            Item::Flag { spec, values, .. } => {
                let long = spec.long.as_deref();
                has_e |= long == Some("regexp") || (name == "sed" && long == Some("expression"));
                if name == "sed"
                    && long == Some("expression")
                    && let Some(d) = values.first().and_then(|v| check_sed_script(v))
                {
                    return d;
                }
            }
            Item::Positional(p) => operands.push(p),
        }
    }
    match name {
        "tr" => {
            if let Some(d) = check_tr(&items, &operands) {
                return d;
            }
        }
        "date" => {
            if let Some(d) = check_date(&operands) {
                return d;
            }
        }
        _ => {}
    }

    let awk_files: Vec<&str>;
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
        Operands::AwkProgramThenFiles => {
            match operands.first() {
                Some(program) => {
                    if let Some(d) = check_awk_program(program) {
                        return d;
                    }
                }
                None => {
                    return Decision::deny(
                        "text.operand",
                        "`awk` needs a program as its first operand, such as '{print $1}'",
                    );
                }
            }
            // `name=value` with an identifier for a name is an assignment, not a file.
            awk_files = operands[1..]
                .iter()
                .copied()
                .filter(|o| {
                    !o.split_once('=').is_some_and(|(var, _)| {
                        var.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                            && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    })
                })
                .collect();
            &awk_files
        }
        Operands::SedScriptThenFiles if has_e => &operands,
        Operands::SedScriptThenFiles => match operands.first() {
            Some(script) => {
                if let Some(d) = check_sed_script(script) {
                    return d;
                }
                &operands[1..]
            }
            None => {
                return Decision::deny(
                    "text.operand",
                    "`sed` needs a script as its first operand, such as -n '2,5p'",
                );
            }
        },
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
                PathRefusal::DanglingSymlink(p) => {
                    format!("it goes through the dangling symlink {}", p.display())
                }
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

/// jq format strings (after `@`) that encode or decode a value into another alphabet.
const JQ_REFUSED_FORMATS: [&str; 7] = [
    "base64", "base64d", "base32", "base32d", "uri", "sh", "html",
];

/// jq builtins that take a string apart into code points.
const JQ_RESHAPING: [&str; 2] = ["explode", "implode"];

/// Whether `rest` (just after an identifier) is a call whose first argument is `""`.
fn empty_string_argument(rest: &[char]) -> bool {
    let text: String = rest.iter().filter(|c| !c.is_whitespace()).take(4).collect();
    text.starts_with("(\"\")") || text.starts_with("(\"\";")
}

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
                let format = start > 0 && chars[start - 1] == '@';
                if (format && JQ_REFUSED_FORMATS.contains(&ident.as_str()))
                    || (!field_access && JQ_RESHAPING.contains(&ident.as_str()))
                    || (!field_access
                        && matches!(ident.as_str(), "split" | "splits")
                        && empty_string_argument(&chars[i..]))
                {
                    return Some(Decision::deny(
                        "text.reshape",
                        format!(
                            "the jq program uses `{}{ident}`, which is refused: encoders (`@base64`, `@base32`, `@uri`, `@sh`, `@html`), `explode`/`implode` and splitting into single characters turn values into forms the redaction cannot recognise. Select and print fields as they are; `@csv`, `@tsv`, `@json` and `@text` are fine",
                            if format { "@" } else { "" }
                        ),
                    ));
                }
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

/// `tr` may only squeeze or delete blanks (`tr -s ' '`, `tr -d '\n'`): translating sets, or
/// deleting anything else, turns a value into a form no redaction rule recognises (`tr
/// 'A-Za-z' 'N-ZA-Mn-za-m'`).
fn check_tr(items: &[Item], operands: &[&str]) -> Option<Decision> {
    let refuse = |why: &str| {
        Some(Decision::deny(
            "text.reshape",
            format!(
                "`tr` is refused here: {why}. tr may only squeeze or delete blanks (`tr -s ' '`, `tr -d '\\n'`); translating characters would turn values into forms the redaction cannot recognise. Use grep, cut or jq to pick fields instead"
            ),
        ))
    };
    let modes: Vec<&str> = items
        .iter()
        .filter_map(|i| match i {
            Item::Flag { written, .. } => Some(written.as_str()),
            Item::Positional(_) => None,
        })
        .collect();
    if modes.is_empty()
        || modes
            .iter()
            .any(|m| !matches!(*m, "-d" | "-s" | "--delete" | "--squeeze-repeats"))
    {
        return refuse("only -d or -s are allowed");
    }
    let [set] = operands else {
        return refuse("it takes exactly one set of blanks");
    };
    let mut rest = *set;
    while !rest.is_empty() {
        rest = if let Some(r) = ["\\n", "\\t", "\\r", " ", "\t", "[:space:]", "[:blank:]"]
            .iter()
            .find_map(|b| rest.strip_prefix(b))
        {
            r
        } else {
            return refuse(&format!("the set `{set}` holds more than blanks"));
        };
    }
    None
}

/// `date` prints the time; a `+FORMAT` is its only operand (anything else would set the clock).
fn check_date(operands: &[&str]) -> Option<Decision> {
    let odd = operands.iter().find(|o| !o.starts_with('+'))?;
    Some(Decision::deny(
        "text.operand",
        format!("`date {odd}` is refused: date takes only a `+FORMAT` operand here"),
    ))
}

fn awk_refusal(what: &str) -> Decision {
    Decision::deny(
        "text.awk-program",
        format!(
            "the awk program is refused: {what}. awk may only filter and print to its output: no `system`, `getline`, `ENVIRON`, pipes (`|`), output redirection (`print > f`) or `@` directives; compare with parentheses (`if ($3 > 5)`) or in the pattern (`$3 > 5 {{print $1}}`)"
        ),
    )
}

/// Refuses an awk program that runs commands, reads files or the environment, or writes
/// files. Strings and regex literals are skipped; a `/` is read as a regex only where an
/// operand must follow (start, `(`, `,`, `{`, `}`, `;`, `!`, `~`, `&&`, `||`), anywhere else
/// as division, so its text is checked as code: a misreading can only refuse more.
pub fn check_awk_program(program: &str) -> Option<Decision> {
    let chars: Vec<char> = program.chars().collect();
    let mut i = 0;
    let mut depth = 0usize;
    // The paren depth of the `print`/`printf` statement being read, if any.
    let mut print_at: Option<usize> = None;
    let mut prev: Option<char> = None;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        match c {
            '"' => {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                if i >= chars.len() {
                    return Some(awk_refusal("a string is not closed"));
                }
                i += 1;
            }
            '/' if prev.is_none_or(|p| "(,{};!~&|".contains(p)) => {
                i += 1;
                let mut bracket = false;
                while i < chars.len() && (bracket || chars[i] != '/') {
                    match chars[i] {
                        '\\' => i += 1,
                        '[' => bracket = true,
                        ']' => bracket = false,
                        _ => {}
                    }
                    i += 1;
                }
                if i >= chars.len() {
                    return Some(awk_refusal("a regular expression is not closed"));
                }
                i += 1;
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                let ident: String = chars[start..i].iter().collect();
                match ident.as_str() {
                    "system" | "getline" | "ENVIRON" | "PROCINFO" => {
                        return Some(awk_refusal(&format!("it uses `{ident}`")));
                    }
                    "print" | "printf" => print_at = Some(depth),
                    _ => {}
                }
            }
            '@' => return Some(awk_refusal("`@` starts a gawk directive or indirect call")),
            '|' if chars.get(i + 1) == Some(&'|') => i += 2,
            '|' => return Some(awk_refusal("`|` pipes into or out of a command")),
            '>' if print_at == Some(depth) => {
                return Some(awk_refusal("`>` after print writes to a file"));
            }
            '(' => {
                depth += 1;
                i += 1;
            }
            ')' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            ';' | '{' | '}' => {
                print_at = None;
                i += 1;
            }
            _ => i += 1,
        }
        prev = Some(c);
    }
    None
}

fn sed_refusal(what: &str) -> Decision {
    Decision::deny(
        "text.sed-script",
        format!(
            "the sed script is refused: {what}. sed may only select and edit lines on its output (`sed -n '2,5p'`, `s/a/b/g`): no `e`, `w`, `W`, `r`, `R` or `y` commands, no `e`/`w` flags on `s`, no -i"
        ),
    )
}

/// Reads a regex delimited by `delim` from `chars[*i]` (just after the opening delimiter),
/// with GNU sed's rules: `\` escapes, and inside a bracket expression the delimiter is literal.
fn sed_regex(chars: &[char], i: &mut usize, delim: char) -> Option<()> {
    while *i < chars.len() {
        match chars[*i] {
            '\\' => *i += 2,
            '[' => {
                *i += 1;
                if chars.get(*i) == Some(&'^') {
                    *i += 1;
                }
                if chars.get(*i) == Some(&']') {
                    *i += 1;
                }
                while *i < chars.len() && chars[*i] != ']' {
                    if chars[*i] == '[' && matches!(chars.get(*i + 1), Some(':' | '.' | '=')) {
                        let close = chars[*i + 1];
                        *i += 2;
                        while *i + 1 < chars.len() && !(chars[*i] == close && chars[*i + 1] == ']')
                        {
                            *i += 1;
                        }
                        *i += 2;
                    } else {
                        *i += 1;
                    }
                }
                *i += 1;
            }
            c if c == delim => {
                *i += 1;
                return Some(());
            }
            _ => *i += 1,
        }
    }
    None
}

fn sed_address(chars: &[char], i: &mut usize) -> Result<(), Decision> {
    let unclosed = || sed_refusal("an address is not closed");
    match chars.get(*i) {
        Some(c) if c.is_ascii_digit() => {
            while chars.get(*i).is_some_and(char::is_ascii_digit) {
                *i += 1;
            }
        }
        Some('$') => *i += 1,
        Some('/') => {
            *i += 1;
            sed_regex(chars, i, '/').ok_or_else(unclosed)?;
        }
        Some('\\') => {
            let delim = *chars.get(*i + 1).ok_or_else(unclosed)?;
            *i += 2;
            sed_regex(chars, i, delim).ok_or_else(unclosed)?;
        }
        _ => return Ok(()),
    }
    while matches!(chars.get(*i), Some('I' | 'M')) {
        *i += 1;
    }
    Ok(())
}

/// Refuses a sed script with a command that runs a program, reads or writes a file, or
/// transliterates (`y`). The script is parsed command by command; anything it cannot read is
/// refused.
pub fn check_sed_script(script: &str) -> Option<Decision> {
    let chars: Vec<char> = script.chars().collect();
    let mut i = 0;
    let skip_blank = |i: &mut usize| {
        while chars.get(*i).is_some_and(|c| c.is_whitespace()) {
            *i += 1;
        }
    };
    loop {
        while chars.get(i).is_some_and(|c| c.is_whitespace() || *c == ';') {
            i += 1;
        }
        let &first = chars.get(i)?;
        if first == '#' {
            return Some(sed_refusal("comments are not read"));
        }
        if let Err(d) = sed_address(&chars, &mut i) {
            return Some(d);
        }
        if chars.get(i) == Some(&',') {
            i += 1;
            if matches!(chars.get(i), Some('+' | '~')) {
                i += 1;
            }
            if let Err(d) = sed_address(&chars, &mut i) {
                return Some(d);
            }
        } else if chars.get(i) == Some(&'~') {
            i += 1;
            if let Err(d) = sed_address(&chars, &mut i) {
                return Some(d);
            }
        }
        skip_blank(&mut i);
        if chars.get(i) == Some(&'!') {
            i += 1;
            skip_blank(&mut i);
        }
        let Some(&command) = chars.get(i) else {
            return Some(sed_refusal("an address has no command"));
        };
        i += 1;
        match command {
            // A block's commands follow its `{` without a separator.
            '{' => continue,
            'p' | 'P' | 'd' | 'D' | 'n' | 'N' | 'g' | 'G' | 'h' | 'H' | 'x' | 'z' | '=' | 'F'
            | '}' => {}
            'q' | 'Q' | 'l' => {
                skip_blank(&mut i);
                while chars.get(i).is_some_and(char::is_ascii_digit) {
                    i += 1;
                }
            }
            's' => {
                let Some(&delim) = chars.get(i) else {
                    return Some(sed_refusal("`s` has no delimiter"));
                };
                if delim == '\\' || delim.is_whitespace() {
                    return Some(sed_refusal("`s` needs a plain delimiter such as `/`"));
                }
                i += 1;
                if sed_regex(&chars, &mut i, delim).is_none() {
                    return Some(sed_refusal("`s` is not closed"));
                }
                // The replacement: `\` escapes, no bracket expressions.
                loop {
                    match chars.get(i) {
                        None => return Some(sed_refusal("`s` is not closed")),
                        Some('\\') => i += 2,
                        Some(c) if *c == delim => {
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
                while let Some(&flag) = chars.get(i) {
                    match flag {
                        'g' | 'p' | 'i' | 'I' | 'm' | 'M' => i += 1,
                        d if d.is_ascii_digit() => i += 1,
                        'e' | 'w' | 'W' => {
                            return Some(sed_refusal(&format!(
                                "the `{flag}` flag of `s` runs a command or writes a file"
                            )));
                        }
                        _ => break,
                    }
                }
            }
            'b' | 't' | 'T' | ':' => {
                while chars.get(i).is_some_and(|c| *c != ';' && *c != '}') {
                    i += 1;
                }
            }
            'e' | 'w' | 'W' | 'r' | 'R' => {
                return Some(sed_refusal(&format!(
                    "`{command}` runs a command, or reads or writes a file"
                )));
            }
            'y' => {
                return Some(sed_refusal(
                    "`y` transliterates characters, which hides values from the redaction",
                ));
            }
            other => {
                return Some(sed_refusal(&format!(
                    "`{other}` is not a command the guard reads"
                )));
            }
        }
        skip_blank(&mut i);
        match chars.get(i) {
            None => return None,
            Some(';' | '}') => {}
            Some(c) => {
                return Some(sed_refusal(&format!(
                    "`{c}` follows a command; separate commands with `;`"
                )));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn awk_programs() {
        for good in [
            "{print $1}",
            "$3 > 5 {print $1}",
            "{ if ($3 > 5) print $1 }",
            "/a|b/ {print}",
            "$1 ~ /x>y/ {print}",
            "$1 == \"kube-system\" || /a|b/",
            "{print $1/1024}",
            "{s += $2} END {print s}",
            "{print \"a|b > c\"}",
        ] {
            assert!(check_awk_program(good).is_none(), "{good}");
        }
        for bad in [
            "{print > \"f\"}",
            "{print $1, $2 >> \"f\"}",
            "{printf(\"%s\", $1) > \"f\"}",
            "{print | \"sh\"}",
            "{print |& \"sh\"}",
            "{\"id\" | getline}",
            "{getline < \"/etc/passwd\"}",
            "BEGIN {system(\"id\")}",
            "{print ENVIRON[\"HOME\"]}",
            "@load \"x\"",
            "{f = \"system\"; @f(\"id\")}",
            // A division is read as code: what it would hide is found.
            "{x = 1 / 2; system(\"id\") / 1}",
            "{print \"open",
            "/open",
        ] {
            assert!(check_awk_program(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn sed_scripts() {
        for good in [
            "2,5p",
            "/ERROR/p",
            "/a/,/b/p",
            "$p",
            "1~2p",
            "/x/,+3d",
            "s/a/b/g",
            "s|a/b|c|2",
            "s/[/]/x/",
            "/x/!d",
            "/x/ {p; q}",
            "s/a/b/;s/c/d/gI",
            "10q",
            "=",
            "\\,x,p",
        ] {
            assert!(check_sed_script(good).is_none(), "{good}");
        }
        for bad in [
            "e id",
            "1e id",
            "s/a/b/e",
            "s/a/b/w /tmp/x",
            "s/a/b/gw x",
            "w /tmp/x",
            "W x",
            "r /etc/passwd",
            "1R /etc/passwd",
            "/x/ {p; w y}",
            "y/abc/xyz/",
            "s/[/]/x/;e id",
            "s/a/b",
            "/unclosed",
            "p x",
            "# comment",
            "a text",
        ] {
            assert!(check_sed_script(bad).is_some(), "{bad}");
        }
    }

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
