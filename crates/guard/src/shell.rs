//! The shell layer: turns a Bash command line into a pipeline of literal argument vectors
//! with brush-parser's grammar, or refuses it.
//!
//! Only a single pipeline of simple commands survives, and every word must be a literal: the
//! words the program receives are exactly the words checked. Anything the shell would expand,
//! redirect, run in the background or chain is refused here, before a program is looked at.

use std::panic::{AssertUnwindSafe, catch_unwind};

use brush_parser::ast::{
    AssignmentValue, Command, CommandPrefixOrSuffixItem, IoFileRedirectKind, IoFileRedirectTarget,
    IoRedirect, SeparatorOperator, SimpleCommand,
};
use brush_parser::word::{WordPiece, WordPieceWithSource};
use brush_parser::{Parser, ParserOptions};

use crate::decision::Decision;

/// The longest command line the guard reads. Troubleshooting commands are short; a longer one
/// is refused rather than parsed, so a pathological input cannot slow the hook down.
pub const MAX_COMMAND_LEN: usize = 8 * 1024;

/// The most words (runs of characters between blanks and shell operators) a command line may
/// have. The longest everyday pipelines have about 40.
pub const MAX_WORDS: usize = 256;

/// The deepest nesting of `case`/`if`/loops/`( )`/`{ }`/`$( )`/backticks the guard hands to
/// the parser. brush-parser's time doubles with each level of nested `case` (24 levels take
/// 48 s), and no allowed command nests at all (they are refused after parsing anyway), so a
/// low bound costs nothing: the scan refuses before the parser ever sees such a line.
pub const MAX_NESTING: usize = 3;

/// One word of a command after quote removal, with how it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arg {
    /// The literal value the program receives.
    pub value: String,
    /// Whether the word was written without quotes or escapes, as a bare program name must be.
    pub plain: bool,
}

/// Characters a word may contain outside quotes. Everything else (glob `*?[`, brace `{}`,
/// tilde `~`, extglob `@(..)`, `&`, `;`, `<>`, `|`, `$`, backticks, non-ASCII look-alikes)
/// either means something to the shell or has no business in a troubleshooting command, so it
/// must be quoted to be accepted; quoted, it is a literal character. `!` stays allowed for
/// selectors (`status.phase!=Running`): without a `(` after it (refused) it is no extglob, and
/// a non-interactive shell does no history expansion.
fn plain_char_ok(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            '-' | '_' | '.' | '/' | ':' | '=' | ',' | '+' | '%' | '@' | '^' | '!'
        )
}

/// The first character of the unquoted text `text` that is refused, if any. Two glob forms
/// are allowed because everyday commands write them unquoted and no file can turn them into
/// anything the guard would refuse:
/// - `[` digits `]` (`.containers[0].image`): it matches only the same text without the
///   brackets, and no refused name holds a digit;
/// - `?` in the first component of an absolute path (`/readyz?verbose`) at the start of the
///   word: only entries of `/` can match, which the agent cannot create.
fn unquoted_bad_char(text: &str, word_start: bool) -> Option<char> {
    let chars: Vec<char> = text.chars().collect();
    let first_component_end = if word_start && chars.first() == Some(&'/') {
        chars[1..]
            .iter()
            .position(|c| *c == '/')
            .map_or(chars.len(), |p| p + 1)
    } else {
        0
    };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '[' {
            let digits = chars[i + 1..]
                .iter()
                .take_while(|d| d.is_ascii_digit())
                .count();
            if digits > 0 && chars.get(i + 1 + digits) == Some(&']') {
                i += digits + 2;
                continue;
            }
        }
        if c == '?' && i < first_component_end {
            i += 1;
            continue;
        }
        if !plain_char_ok(c) {
            return Some(c);
        }
        i += 1;
    }
    None
}

/// Splits `command` into the argument vectors of one pipeline, or returns the refusal.
pub fn parse_pipeline(command: &str) -> Result<Vec<Vec<Arg>>, Decision> {
    if command.len() > MAX_COMMAND_LEN {
        return Err(Decision::deny(
            "shell.too-long",
            format!(
                "the command is longer than {MAX_COMMAND_LEN} bytes; run a shorter, single command"
            ),
        ));
    }
    if let Some(c) = command
        .chars()
        .find(|c| c.is_control() && *c != ' ' && *c != '\t')
    {
        // A newline separates commands like `;` does and `\r`/NUL are read differently by
        // different shells; one command per call, on one line, leaves no room for either.
        return Err(Decision::deny(
            "shell.control-character",
            format!(
                "the command contains the control character {c:?}; write one command on a single line"
            ),
        ));
    }

    if let Some(decision) = shape_refusal(command) {
        return Err(decision);
    }

    if has_comment(command) {
        // Comments are harmless to bash, but they are text the shell drops: refusing them
        // keeps what is checked identical to what runs, whatever a parser thinks a `#` means.
        return Err(Decision::deny(
            "shell.comment",
            "comments (`# ..`) are refused: send only the command",
        ));
    }

    let options = ParserOptions::default();
    // brush-parser is not written to be panic-free on hostile input; a panic there must turn
    // into a refusal, never into a crashed hook.
    let parsed = catch_unwind(AssertUnwindSafe(|| {
        Parser::new(command.as_bytes(), &options).parse_program()
    }));
    let program = match parsed {
        Ok(Ok(program)) => program,
        Ok(Err(err)) => {
            return Err(Decision::deny(
                "shell.unparseable",
                format!("the command is not valid shell syntax ({err}); write one plain command"),
            ));
        }
        Err(_) => {
            return Err(Decision::deny(
                "shell.unparseable",
                "the command could not be parsed; write one plain command".to_owned(),
            ));
        }
    };

    let [list] = program.complete_commands.as_slice() else {
        return Err(list_refusal());
    };
    let [item] = list.0.as_slice() else {
        return Err(list_refusal());
    };
    if matches!(item.1, SeparatorOperator::Async) {
        return Err(Decision::deny(
            "shell.background",
            "background jobs (`&`) are refused: run the command in the foreground".to_owned(),
        ));
    }
    let and_or = &item.0;
    if !and_or.additional.is_empty() {
        return Err(list_refusal());
    }
    let pipeline = &and_or.first;
    if pipeline.timed.is_some() || pipeline.bang {
        return Err(Decision::deny(
            "shell.pipeline-modifier",
            "`time` and `!` before a pipeline are refused: run the plain command".to_owned(),
        ));
    }

    let mut argvs = Vec::with_capacity(pipeline.seq.len());
    for command in &pipeline.seq {
        match command {
            Command::Simple(simple) => argvs.push(simple_argv(simple)?),
            Command::Compound(..) => {
                return Err(Decision::deny(
                    "shell.compound",
                    "subshells, `{ ..; }` groups, loops and conditionals are refused: run one plain command, or a pipeline of them".to_owned(),
                ));
            }
            Command::Function(_) => {
                return Err(Decision::deny(
                    "shell.function",
                    "defining shell functions is refused: run one plain command".to_owned(),
                ));
            }
            Command::ExtendedTest(..) => {
                return Err(Decision::deny(
                    "shell.test",
                    "`[[ .. ]]` tests are refused: run one plain command".to_owned(),
                ));
            }
        }
    }
    Ok(argvs)
}

/// Refuses a command line whose shape could make the parser slow: too many words, or nesting
/// deeper than [`MAX_NESTING`]. The scan is linear and errs towards counting more, never
/// less: every unquoted keyword that opens a compound command counts as a level wherever it
/// stands (`grep -w if` counts one) and its closer undoes one; `(`, `$(` and backticks are
/// never undone (no allowed command has any of them unquoted); keywords count inside double
/// quotes too, so a `)` read differently by bash (a `case` pattern) cannot hide a level.
fn shape_refusal(command: &str) -> Option<Decision> {
    const OPENERS: [&str; 8] = ["case", "if", "for", "while", "until", "select", "{", "[["];
    const CLOSERS: [&str; 4] = ["esac", "fi", "done", "}"];
    // One entry per open context: `true` for a double-quoted string, `false` for code (the
    // command line itself, or a `$(` inside double quotes).
    let mut frames = vec![false];
    let (mut keywords, mut parens, mut words) = (0usize, 0usize, 0usize);
    let mut word = String::new();
    let mut chars = command.chars().peekable();
    let mut finish = |word: &mut String, keywords: &mut usize| {
        if word.is_empty() {
            return;
        }
        words += 1;
        if OPENERS.contains(&word.as_str()) {
            *keywords += 1;
        } else if CLOSERS.contains(&word.as_str()) {
            *keywords = keywords.saturating_sub(1);
        }
        word.clear();
    };
    while let Some(c) = chars.next() {
        let in_double = frames.last() == Some(&true);
        match c {
            '\\' => {
                chars.next();
                word.push('_');
            }
            '`' => {
                parens += 1;
                word.push('_');
            }
            '$' if chars.peek() == Some(&'(') => {
                chars.next();
                finish(&mut word, &mut keywords);
                parens += 1;
                if in_double {
                    frames.push(false);
                }
            }
            '"' if in_double => {
                frames.pop();
                word.push('_');
            }
            '"' => {
                frames.push(true);
                word.push('_');
            }
            '\'' if !in_double => {
                // Single quotes hold no expansion: skip to the closing quote.
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                }
                word.push('_');
            }
            '(' if !in_double => {
                finish(&mut word, &mut keywords);
                parens += 1;
            }
            ')' if !in_double && frames.len() > 1 => {
                // Closes the `$(` opened inside double quotes (or a `case` pattern, which
                // bash reads differently; keywords are counted in both contexts).
                finish(&mut word, &mut keywords);
                frames.pop();
            }
            c if c.is_whitespace() || matches!(c, ';' | '&' | '|' | '<' | '>' | ')') => {
                finish(&mut word, &mut keywords);
            }
            c => word.push(c),
        }
        if keywords + parens > MAX_NESTING {
            return Some(Decision::deny(
                "shell.too-deep",
                format!(
                    "the command nests `case`/`if`/loops/subshells/substitutions more than {MAX_NESTING} deep; run one plain command, or a pipeline of them"
                ),
            ));
        }
    }
    finish(&mut word, &mut keywords);
    if words > MAX_WORDS {
        return Some(Decision::deny(
            "shell.too-many-words",
            format!(
                "the command has {words} words, more than the {MAX_WORDS} the guard reads; run a shorter command"
            ),
        ));
    }
    None
}

/// Whether `command` has a `#` outside quotes at the start of a word, where the shell starts a
/// comment. Backslash escapes and both quote kinds are tracked; `$'..'` is tracked as a
/// single-quoted string, which errs towards finding a comment.
fn has_comment(command: &str) -> bool {
    let mut chars = command.chars().peekable();
    let mut prev: Option<char> = None;
    let (mut single, mut double) = (false, false);
    while let Some(c) = chars.next() {
        match c {
            '\\' if !single => {
                chars.next();
                prev = Some('x');
                continue;
            }
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single
                && !double
                && prev.is_none_or(|p| p.is_whitespace() || "|&;()<>".contains(p)) =>
            {
                return true;
            }
            _ => {}
        }
        prev = Some(c);
    }
    false
}

fn list_refusal() -> Decision {
    Decision::deny(
        "shell.list",
        "command lists (`;`, `&&`, `||`, several lines) are refused: run one command per call; a pipeline (`a | b`) is fine".to_owned(),
    )
}

fn simple_argv(simple: &SimpleCommand) -> Result<Vec<Arg>, Decision> {
    let mut raw: Vec<&str> = Vec::new();
    if let Some(item) = simple.prefix.as_ref().and_then(|prefix| prefix.0.first()) {
        return Err(item_refusal(item, true));
    }
    let Some(name) = &simple.word_or_name else {
        return Err(Decision::deny(
            "shell.no-command",
            "the command names no program; run one plain command".to_owned(),
        ));
    };
    raw.push(&name.value);
    if let Some(suffix) = &simple.suffix {
        for item in &suffix.0 {
            match item {
                CommandPrefixOrSuffixItem::Word(word) => raw.push(&word.value),
                // After the program name `key=value` is an ordinary argument (`-l app=x`);
                // the grammar still tags it as an assignment. Array syntax is no argument.
                CommandPrefixOrSuffixItem::AssignmentWord(assignment, word)
                    if matches!(assignment.value, AssignmentValue::Scalar(_)) =>
                {
                    raw.push(&word.value)
                }
                // Troubleshooting wants the error text in the pipe, or silence: `2>&1` and
                // `2>/dev/null` write nothing and read nothing, so they alone are allowed.
                CommandPrefixOrSuffixItem::IoRedirect(redirect) if is_stderr_redirect(redirect) => {
                }
                other => return Err(item_refusal(other, false)),
            }
        }
    }
    raw.into_iter().map(literal_word).collect()
}

/// `2>&1` or `2>/dev/null`, written exactly so.
fn is_stderr_redirect(redirect: &IoRedirect) -> bool {
    match redirect {
        IoRedirect::File(Some(2), IoFileRedirectKind::DuplicateOutput, target) => match target {
            IoFileRedirectTarget::Fd(fd) => *fd == 1,
            IoFileRedirectTarget::Duplicate(word) => word.value == "1",
            _ => false,
        },
        IoRedirect::File(
            Some(2),
            IoFileRedirectKind::Write,
            IoFileRedirectTarget::Filename(word),
        ) => word.value == "/dev/null",
        _ => false,
    }
}

fn item_refusal(item: &CommandPrefixOrSuffixItem, in_prefix: bool) -> Decision {
    match item {
        CommandPrefixOrSuffixItem::IoRedirect(_) => Decision::deny(
            "shell.redirection",
            "redirections (`>`, `<`, `&>`, here-docs, here-strings) are refused: let the output come back as the tool result and filter it with a pipe; only `2>&1` and `2>/dev/null` after the program's words are allowed".to_owned(),
        ),
        CommandPrefixOrSuffixItem::ProcessSubstitution(..) => Decision::deny(
            "shell.substitution",
            "process substitution (`<(..)`, `>(..)`) is refused: run one plain command or a pipeline".to_owned(),
        ),
        CommandPrefixOrSuffixItem::AssignmentWord(..) if in_prefix => Decision::deny(
            "shell.assignment",
            "variable assignments and environment prefixes (`FOO=1 cmd`) are refused: run the plain command".to_owned(),
        ),
        CommandPrefixOrSuffixItem::AssignmentWord(..) => Decision::deny(
            "shell.assignment",
            "array assignments are refused: run one plain command".to_owned(),
        ),
        CommandPrefixOrSuffixItem::Word(_) => Decision::deny(
            "shell.unparseable",
            "the command could not be understood; write one plain command".to_owned(),
        ),
    }
}

/// Removes quotes from one word, refusing every expansion the shell would perform on it.
fn literal_word(word: &str) -> Result<Arg, Decision> {
    let options = ParserOptions::default();
    let pieces = catch_unwind(AssertUnwindSafe(|| {
        brush_parser::word::parse(word, &options)
    }));
    let pieces = match pieces {
        Ok(Ok(pieces)) => pieces,
        _ => {
            return Err(Decision::deny(
                "shell.unparseable",
                format!("the word `{word}` could not be parsed; quote it with single quotes"),
            ));
        }
    };
    let mut value = String::new();
    let mut plain = true;
    for (n, piece) in pieces.iter().enumerate() {
        match &piece.piece {
            WordPiece::Text(text) => {
                if let Some(c) = unquoted_bad_char(text, n == 0) {
                    return Err(unquoted_refusal(word, c));
                }
                value.push_str(text);
            }
            WordPiece::SingleQuotedText(text) => {
                plain = false;
                value.push_str(text);
            }
            WordPiece::DoubleQuotedSequence(inner) => {
                plain = false;
                double_quoted(word, inner, &mut value)?;
            }
            WordPiece::EscapeSequence(escape) => {
                plain = false;
                value.push_str(escaped(word, escape)?);
            }
            other => return Err(expansion_refusal(word, other)),
        }
    }
    Ok(Arg { value, plain })
}

/// Appends the literal content of a double-quoted sequence.
fn double_quoted(
    word: &str,
    inner: &[WordPieceWithSource],
    value: &mut String,
) -> Result<(), Decision> {
    for piece in inner {
        match &piece.piece {
            // Inside double quotes only `$`, backticks and `\` are special; a `$` or backtick
            // that the parser kept as text (`"$"`) is refused too, so no reading of the word
            // by bash can differ from this one.
            WordPiece::Text(text) => {
                if text.contains(['$', '`']) {
                    return Err(Decision::deny(
                        "shell.parameter-expansion",
                        format!(
                            "`{word}`: `$` and backticks are refused even inside double quotes; use single quotes for literal text"
                        ),
                    ));
                }
                value.push_str(text);
            }
            WordPiece::EscapeSequence(escape) => value.push_str(escaped(word, escape)?),
            other => return Err(expansion_refusal(word, other)),
        }
    }
    Ok(())
}

/// The literal text of a backslash escape (`\x` is `x`). A backslash-newline joins lines and
/// never reaches here: control characters are refused before parsing.
fn escaped<'a>(word: &str, escape: &'a str) -> Result<&'a str, Decision> {
    match escape.strip_prefix('\\') {
        Some(rest) if !rest.is_empty() => Ok(rest),
        _ => Err(Decision::deny(
            "shell.unparseable",
            format!("the word `{word}` ends in a lone backslash; remove it"),
        )),
    }
}

fn unquoted_refusal(word: &str, c: char) -> Decision {
    let (rule, what) = match c {
        '*' | '?' | '[' | ']' => (
            "shell.glob",
            "glob characters (`*`, `?`, `[`) expand to file names",
        ),
        '{' | '}' => ("shell.brace-expansion", "braces expand to several words"),
        '~' => ("shell.tilde-expansion", "`~` expands to a home directory"),
        '$' => ("shell.parameter-expansion", "`$` expands variables"),
        '`' => ("shell.substitution", "backticks run a command"),
        '(' | ')' => (
            "shell.substitution",
            "parentheses start subshells, substitutions and extended globs",
        ),
        c if !c.is_ascii() => (
            "shell.non-ascii",
            "non-ASCII characters outside quotes can be look-alikes of other characters",
        ),
        _ => ("shell.special-character", "it means something to the shell"),
    };
    Decision::deny(
        rule,
        format!(
            "the word `{word}` contains an unquoted `{c}`, which is refused because {what}; put literal text in single quotes ('{c}')"
        ),
    )
}

fn expansion_refusal(word: &str, piece: &WordPiece) -> Decision {
    let (rule, what) = match piece {
        WordPiece::ParameterExpansion(_) => (
            "shell.parameter-expansion",
            "parameter expansion (`$VAR`, `${..}`) is refused: the environment is not for reading; write the value itself",
        ),
        WordPiece::CommandSubstitution(_) | WordPiece::BackquotedCommandSubstitution(_) => (
            "shell.substitution",
            "command substitution (`$(..)`, backticks) is refused: run each command on its own",
        ),
        WordPiece::ArithmeticExpression(_) => (
            "shell.substitution",
            "arithmetic expansion (`$((..))`) is refused: write the number itself",
        ),
        WordPiece::TildeExpansion(_) => (
            "shell.tilde-expansion",
            "tilde expansion (`~`) is refused: use paths inside the workspace",
        ),
        WordPiece::AnsiCQuotedText(_) | WordPiece::GettextDoubleQuotedSequence(_) => (
            "shell.ansi-c-quoting",
            "`$'..'` and `$\"..\"` quoting is refused: use plain single quotes",
        ),
        _ => (
            "shell.unparseable",
            "the word could not be understood: use plain single quotes",
        ),
    };
    Decision::deny(rule, format!("`{word}`: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(command: &str) -> Vec<Vec<String>> {
        parse_pipeline(command)
            .unwrap_or_else(|d| panic!("{command}: {}", d.reason))
            .into_iter()
            .map(|argv| argv.into_iter().map(|a| a.value).collect())
            .collect()
    }

    fn rule(command: &str) -> &'static str {
        match parse_pipeline(command) {
            Ok(argvs) => panic!("{command} was accepted as {argvs:?}"),
            Err(d) => d.rule,
        }
    }

    #[test]
    fn quotes_are_removed_and_pipelines_split() {
        assert_eq!(
            argv(
                r#"kubectl get pods -l app=x -o 'jsonpath={.items[*].metadata.name}' | grep "a b" | head -n 3"#
            ),
            vec![
                vec![
                    "kubectl",
                    "get",
                    "pods",
                    "-l",
                    "app=x",
                    "-o",
                    "jsonpath={.items[*].metadata.name}"
                ],
                vec!["grep", "a b"],
                vec!["head", "-n", "3"],
            ]
        );
        assert_eq!(argv(r"grep a\ b"), vec![vec!["grep", "a b"]]);
        assert_eq!(
            argv("kubectl get pods 2>&1 | grep x 2>/dev/null"),
            vec![vec!["kubectl", "get", "pods"], vec!["grep", "x"]]
        );
        assert_eq!(
            argv("kubectl get po -o custom-columns=I:.spec.containers[0].image --sort-by=.a[10]"),
            vec![vec![
                "kubectl",
                "get",
                "po",
                "-o",
                "custom-columns=I:.spec.containers[0].image",
                "--sort-by=.a[10]"
            ]]
        );
        assert_eq!(
            argv("kubectl get --raw /readyz?verbose"),
            vec![vec!["kubectl", "get", "--raw", "/readyz?verbose"]]
        );
    }

    #[test]
    fn plain_marks_unquoted_words() {
        let argvs = parse_pipeline(r#"\kubectl "get""#).unwrap_or_default();
        assert_eq!(argvs.len(), 1);
        assert!(!argvs[0][0].plain);
        assert!(!argvs[0][1].plain);
    }

    #[test]
    fn every_shell_construct_has_its_rule() {
        assert_eq!(rule("a; b"), "shell.list");
        assert_eq!(rule("a && b"), "shell.list");
        assert_eq!(rule("a\nb"), "shell.control-character");
        assert_eq!(rule("a &"), "shell.background");
        assert_eq!(rule("a > f"), "shell.redirection");
        assert_eq!(rule("a 2>&2"), "shell.redirection");
        assert_eq!(rule("a 1>&2"), "shell.redirection");
        assert_eq!(rule("a &>/dev/null"), "shell.redirection");
        assert_eq!(rule("a 2>/tmp/x"), "shell.redirection");
        assert_eq!(rule("a 2>>/dev/null"), "shell.redirection");
        assert_eq!(rule("a 2>'/dev/null'"), "shell.redirection");
        assert_eq!(rule("2>&1 a"), "shell.redirection");
        assert_eq!(rule("a >/dev/null"), "shell.redirection");
        assert_eq!(rule("a <<< x"), "shell.redirection");
        assert_eq!(rule("FOO=1 a"), "shell.assignment");
        assert_eq!(rule("(a)"), "shell.compound");
        assert_eq!(rule("{ a; }"), "shell.compound");
        assert_eq!(rule("a $(b)"), "shell.substitution");
        assert_eq!(rule("a `b`"), "shell.substitution");
        assert_eq!(rule("a <(b)"), "shell.substitution");
        assert_eq!(rule("a $HOME"), "shell.parameter-expansion");
        assert_eq!(rule("a \"${HOME}\""), "shell.parameter-expansion");
        assert_eq!(rule("a ~"), "shell.tilde-expansion");
        assert_eq!(rule("a *"), "shell.glob");
        assert_eq!(rule("a {b,c}"), "shell.brace-expansion");
        assert_eq!(rule("a $'x'"), "shell.ansi-c-quoting");
        assert_eq!(rule("a 'unterminated"), "shell.unparseable");
        assert_eq!(rule("a # b"), "shell.comment");
        assert_eq!(rule("#a"), "shell.comment");
        assert_eq!(rule("a|#b"), "shell.comment");
        assert_eq!(argv("a 'x # y' \\#z"), vec![vec!["a", "x # y", "#z"]]);
        assert_eq!(rule("a b#c"), "shell.special-character");
        // Only `[digits]` and `?` in the first component of an absolute path stay unquoted.
        assert_eq!(rule("a x[a]"), "shell.glob");
        assert_eq!(rule("a x[]"), "shell.glob");
        assert_eq!(rule("a x[0"), "shell.glob");
        assert_eq!(rule("a secret?"), "shell.glob");
        assert_eq!(rule("a /tmp/x?"), "shell.glob");
        assert_eq!(rule("a --raw=/readyz?"), "shell.glob");
        assert_eq!(rule("a x/readyz?"), "shell.glob");
    }

    #[test]
    fn the_shape_is_bounded_before_parsing() {
        for (command, expected) in [
            (
                "case a in a) case a in a) case a in a) case a in a) x ;; esac ;; esac ;; esac ;; esac",
                "shell.too-deep",
            ),
            (
                "if a; then if b; then if c; then if d; then x; fi; fi; fi; fi",
                "shell.too-deep",
            ),
            (
                "case a in a) case a in a) case a in a) case a in a) x esac esac esac esac",
                "shell.too-deep",
            ),
            ("((((x))))", "shell.too-deep"),
            ("a $($($($(b))))", "shell.too-deep"),
            ("a \"$(b \"$(c \"$(d $(e))\")\")\"", "shell.too-deep"),
            ("a `b` `c` `d` `e`", "shell.too-deep"),
            ("{ { { { a; }; }; }; }", "shell.too-deep"),
            (
                "while a; do until b; do for c in d; do select e in f; do x; done; done; done; done",
                "shell.too-deep",
            ),
            (
                "a \"$(case a in a) case a in a) case a in a) case a in a) x;; esac;; esac;; esac;; esac)\"",
                "shell.too-deep",
            ),
        ] {
            assert_eq!(rule(command), expected, "{command}");
        }
        assert_eq!(rule(&"a".repeat(MAX_COMMAND_LEN + 1)), "shell.too-long");
        let many = format!("grep{}", " x".repeat(MAX_WORDS));
        assert_eq!(rule(&many), "shell.too-many-words");
        let enough = format!("grep{}", " x".repeat(MAX_WORDS - 1));
        assert!(parse_pipeline(&enough).is_ok());
        // Keywords and parentheses inside single quotes are text, not nesting.
        assert!(parse_pipeline("jq 'if (.a) then (if .b then (1) else 2 end) else 3 end'").is_ok());
        // Closed keywords give their level back.
        assert_eq!(
            rule("if a; then b; fi; if a; then b; fi; if a; then b; fi; if a; then b; fi"),
            "shell.list"
        );
    }
}
