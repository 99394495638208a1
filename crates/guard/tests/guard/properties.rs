//! Property tests: the guard never panics, always answers with a rule and a reason, and refuses
//! whatever it cannot parse.

use proptest::prelude::*;
use serde_json::json;
use warroom_guard::{Guard, ToolCall, Workspace};

/// Fragments a hostile command line is made of: programs, verbs, flags and every piece of
/// shell syntax the guard has to see through.
const FRAGMENTS: &[&str] = &[
    "kubectl",
    "oc",
    "get",
    "describe",
    "logs",
    "adm",
    "top",
    "pods",
    "secrets",
    "Secret",
    "secret/x",
    "pods,secrets",
    "-n",
    "ns",
    "-A",
    "-o",
    "json",
    "go-template={{.}}",
    "jsonpath={.x}",
    "-f",
    "-s",
    "--server=x",
    "--raw",
    "-w",
    "--",
    "-",
    "grep",
    "jq",
    "env",
    "$ENV",
    "head",
    "sort",
    "-o",
    "x",
    "|",
    "||",
    "&&",
    ";",
    "&",
    ">",
    ">>",
    "<",
    "<<",
    "<<<",
    "2>&1",
    "2>",
    "/dev/null",
    "1",
    "<(",
    ">(",
    "(",
    ")",
    "{",
    "}",
    "$(",
    "`",
    "$",
    "${",
    "}",
    "~",
    "*",
    "?",
    "[",
    "]",
    "'",
    "\"",
    "\\",
    "\n",
    "#",
    "=",
    "FOO=1",
    "!",
    "@(",
    "$'",
    "if",
    "then",
    "fi",
    "for",
    "do",
    "done",
    "case",
    "esac",
    "function",
    "[[",
    "]]",
    "((",
    "))",
    "time",
    "coproc",
    " ",
    " ",
    " ",
    "\t",
    "é",
    "ｋ",
    "\u{0}",
];

fn fragments() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(FRAGMENTS), 0..24).prop_map(|parts| parts.concat())
}

fn spaced_fragments() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(FRAGMENTS), 0..16).prop_map(|parts| parts.join(" "))
}

fn workspace() -> Workspace {
    Guard::builtin().workspace(std::env::temp_dir().join("warroom-guard-proptest-ws"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_on_arbitrary_strings(command in any::<String>()) {
        let d = Guard::builtin().check_bash(&command, &workspace());
        prop_assert!(!d.rule.is_empty() && !d.reason.is_empty());
    }

    #[test]
    fn never_panics_on_shell_fragments(command in fragments()) {
        let d = Guard::builtin().check_bash(&command, &workspace());
        prop_assert!(!d.rule.is_empty() && !d.reason.is_empty());
    }

    #[test]
    fn never_panics_on_spaced_fragments(command in spaced_fragments()) {
        let d = Guard::builtin().check_bash(&command, &workspace());
        prop_assert!(!d.rule.is_empty() && !d.reason.is_empty());
    }

    /// Whatever brush-parser cannot parse is refused. The parser itself is the oracle; the
    /// appended tails (unterminated quotes and substitutions, dangling operators) make a good
    /// share of the cases unparseable. The oracle is asked only about allowed lines: those
    /// passed the guard's shape scan, while any other line may be one of the inputs that make
    /// brush-parser exponential (nested `case` without `;;`), which would stall the test.
    #[test]
    fn unparseable_is_refused(command in spaced_fragments(), tail in prop::sample::select(&["'", "\"", "$(", "`", "(", "{ x", "|", "&&", ""][..])) {
        let line = format!("{command} {tail}");
        let d = Guard::builtin().check_bash(&line, &workspace());
        if d.allowed {
            let options = brush_parser::ParserOptions::default();
            let parses = std::panic::catch_unwind(|| {
                brush_parser::Parser::new(line.as_bytes(), &options).parse_program().is_ok()
            });
            prop_assert!(matches!(parses, Ok(true)), "{line:?} does not parse but was allowed: {}", d.reason);
        }
    }

    /// Nothing built from shell syntax alone gets through: an allowed command line never
    /// contains operators that chain, redirect, expand or comment out, nor a refused kind.
    /// (Inside quotes they would be literal, but the fragments here are never balanced enough
    /// to make all of them literal, so a hit is worth a look.)
    #[test]
    fn allowed_lines_carry_no_shell_operators(command in spaced_fragments()) {
        let d = Guard::builtin().check_bash(&command, &workspace());
        // The two stderr redirections are allowed, written exactly so.
        let command = command.replace("2>&1", "").replace("2>/dev/null", "");
        if d.allowed {
            for op in [";", "&", ">", "<", "$", "`", "\n", "#", "~", "*", "?", "(", ")", "{", "}"] {
                prop_assert!(!command.contains(op), "{command:?} allowed with {op:?}");
            }
        }
    }

    /// Every spelling kubectl accepts for Secrets is refused: any letter case, singular or
    /// plural, any version/group suffix, `TYPE/NAME`, in a comma list, with flags anywhere.
    #[test]
    fn every_spelling_of_secrets_is_refused(
        cli in prop::sample::select(&["kubectl", "oc"][..]),
        verb in prop::sample::select(&["get", "describe"][..]),
        name in "(secrets|secret)",
        upper in prop::collection::vec(any::<bool>(), 7),
        suffix in prop::sample::select(&["", ".", ".v1", ".v1.", ".v1.core", "./x", "/x", ".v1./db-creds"][..]),
        list in prop::sample::select(&["{}", "pods,{}", "{},pods", "po,svc,{}"][..]),
        flags in prop::sample::select(&["", "-A", "-n x", "-o json", "-nx -oyaml", "--namespace=x"][..]),
        flags_first in any::<bool>(),
        quote in prop::sample::select(&["", "'", "\""][..]),
    ) {
        let cased: String = name
            .chars()
            .zip(upper.iter().cycle())
            .map(|(c, up)| if *up { c.to_ascii_uppercase() } else { c })
            .collect();
        let ty = list.replace("{}", &format!("{cased}{suffix}"));
        let line = if flags_first {
            format!("{cli} {flags} {verb} {quote}{ty}{quote}")
        } else {
            format!("{cli} {verb} {quote}{ty}{quote} {flags}")
        };
        let d = Guard::builtin().check_bash(&line, &workspace());
        prop_assert!(!d.allowed, "{line:?} was allowed: {}", d.reason);
        // Before the verb only -n/--namespace pass, and `describe` has no -o; such flags are
        // refused for themselves, which is just as good.
        let flags_ok = if flags_first { matches!(flags, "" | "-n x" | "--namespace=x") } else { verb == "get" || !flags.contains("-o") };
        if flags_ok {
            prop_assert_eq!(d.rule, "kubectl.refused-kind", "{:?}: {}", line, d.reason);
        }
    }

    #[test]
    fn never_panics_on_arbitrary_tool_input(tool in prop::sample::select(&["Bash", "Read", "Grep", "Glob", "Write", "Edit", "NotebookEdit", "X"][..]), key in "[a-z_]{0,12}", value in any::<String>()) {
        let call = ToolCall { tool_name: tool.to_owned(), tool_input: json!({ key: value }) };
        let d = Guard::builtin().check(&call, &workspace());
        prop_assert!(!d.rule.is_empty());
    }
}
