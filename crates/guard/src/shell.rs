//! The shell layer: turns a Bash command line into a pipeline of literal argument vectors
//! with brush-parser's grammar, or refuses it.
//!
//! Only a single pipeline of simple commands survives, and every word must be a literal: the
//! words the program receives are exactly the words checked. Anything the shell would expand,
//! redirect, run in the background or chain is refused here, before a program is looked at.

use std::panic::{AssertUnwindSafe, catch_unwind};

use brush_parser::ast::{
    AssignmentValue, Command, CommandPrefixOrSuffixItem, SeparatorOperator, SimpleCommand,
};
use brush_parser::word::{WordPiece, WordPieceWithSource};
use brush_parser::{Parser, ParserOptions};

use crate::decision::Decision;

/// The longest command line the guard reads. Troubleshooting commands are short; a longer one
/// is refused rather than parsed, so a pathological input cannot slow the hook down.
pub const MAX_COMMAND_LEN: usize = 8 * 1024;

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
                other => return Err(item_refusal(other, false)),
            }
        }
    }
    raw.into_iter().map(literal_word).collect()
}

fn item_refusal(item: &CommandPrefixOrSuffixItem, in_prefix: bool) -> Decision {
    match item {
        CommandPrefixOrSuffixItem::IoRedirect(_) => Decision::deny(
            "shell.redirection",
            "redirections (`>`, `<`, `2>&1`, here-docs, here-strings) are refused: let the output come back as the tool result and filter it with a pipe".to_owned(),
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
    for piece in &pieces {
        match &piece.piece {
            WordPiece::Text(text) => {
                if let Some(c) = text.chars().find(|c| !plain_char_ok(*c)) {
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
        assert_eq!(rule("a 2>&1"), "shell.redirection");
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
    }
}
