//! Command-line option parsing the way the allowed programs parse themselves: kubectl and oc
//! use Go's pflag (through cobra), the text tools GNU getopt_long or their own near copy.
//!
//! The guard only knows allowlisted flags. A flag it does not know is refused rather than
//! guessed at, so a spelling it misreads can only ever refuse a legal command, never pass a
//! forbidden one.

/// How many values a flag takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    /// A switch (`--all-namespaces`). pflag still accepts `--switch=false`.
    Switch,
    /// One value, attached (`--tail=5`, `-n5`, `-n=5` in pflag) or as the next word.
    One,
    /// Two values as the next two words (`jq --arg name value`).
    Two,
}

/// The option syntax a program follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Go's pflag: `-n=foo` means `foo`, `_` in long names is read as `-` by kubectl's
    /// normaliser, and switches accept `=true`/`=false`.
    Pflag,
    /// GNU getopt_long: `-n=foo` means `=foo`; a switch with `=value` is an error.
    Getopt,
}

/// One allowed flag of a program or verb.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagSpec {
    /// The long name without dashes (`namespace`).
    pub long: Option<String>,
    /// The one-letter short name (`n`).
    pub short: Option<char>,
    /// How many values it takes.
    pub arity: Arity,
}

impl FlagSpec {
    /// A flag with a long name and an optional short one.
    pub fn new(long: &str, short: Option<char>, arity: Arity) -> FlagSpec {
        FlagSpec {
            long: Some(long.to_owned()),
            short,
            arity,
        }
    }

    /// A flag that only has a short name.
    pub fn short_only(short: char, arity: Arity) -> FlagSpec {
        FlagSpec {
            long: None,
            short: Some(short),
            arity,
        }
    }

    /// The name to show in messages: the long one if there is one.
    pub fn display(&self) -> String {
        match (&self.long, self.short) {
            (Some(long), _) => format!("--{long}"),
            (None, Some(short)) => format!("-{short}"),
            (None, None) => String::new(),
        }
    }
}

/// One parsed command-line item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A known flag, its canonical spelling and its values.
    Flag {
        /// The spec it matched.
        spec: FlagSpec,
        /// The spelling as written, for messages (`-n`, `--namespace`).
        written: String,
        /// Its values (empty for a switch given without `=value`).
        values: Vec<String>,
    },
    /// An operand.
    Positional(String),
}

/// Why a command line does not parse against the allowlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlagError {
    /// A flag the allowlist does not have (as written).
    Unknown(String),
    /// A flag that needs a value got none.
    MissingValue(String),
    /// A switch was given a value it cannot take.
    UnexpectedValue(String),
}

impl FlagError {
    /// The flag the error is about, as written.
    pub fn flag(&self) -> &str {
        match self {
            FlagError::Unknown(f) | FlagError::MissingValue(f) | FlagError::UnexpectedValue(f) => f,
        }
    }
}

fn normalise_long(name: &str, style: Style) -> String {
    match style {
        // kubectl and oc install pflag's word-separator normaliser: `--all_namespaces` is
        // `--all-namespaces`.
        Style::Pflag => name.replace('_', "-"),
        Style::Getopt => name.to_owned(),
    }
}

/// Parses the flag word at `args[i]` (which starts with `-` and is not `-` or `--`), pushing
/// the items it yields; returns the index of the next unread word.
pub fn parse_flag(
    args: &[String],
    i: usize,
    specs: &[FlagSpec],
    style: Style,
    out: &mut Vec<Item>,
) -> Result<usize, FlagError> {
    let word = &args[i];
    if let Some(long) = word.strip_prefix("--") {
        let (name, attached) = match long.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (long, None),
        };
        let name = normalise_long(name, style);
        let written = format!("--{name}");
        // Exact names only: getopt_long would accept abbreviations (`--rec` for
        // `--recursive`), and refusing them is the safe reading.
        let Some(spec) = specs
            .iter()
            .find(|s| s.long.as_deref() == Some(name.as_str()))
        else {
            return Err(FlagError::Unknown(written));
        };
        return take_values(args, i + 1, spec, written, attached, style, out);
    }

    let Some(bundle) = word.strip_prefix('-') else {
        return Err(FlagError::Unknown(word.clone()));
    };
    let chars: Vec<char> = bundle.chars().collect();
    let mut k = 0;
    while k < chars.len() {
        let c = chars[k];
        let written = format!("-{c}");
        let Some(spec) = specs.iter().find(|s| s.short == Some(c)) else {
            return Err(FlagError::Unknown(written));
        };
        if spec.arity == Arity::Switch {
            out.push(Item::Flag {
                spec: spec.clone(),
                written,
                values: Vec::new(),
            });
            k += 1;
            continue;
        }
        // A short flag that takes a value swallows the rest of the bundle (`-nfoo`); pflag
        // also drops a leading `=` (`-n=foo`).
        let rest: String = chars[k + 1..].iter().collect();
        let attached = if rest.is_empty() {
            None
        } else if style == Style::Pflag {
            Some(rest.strip_prefix('=').unwrap_or(&rest).to_owned())
        } else {
            Some(rest)
        };
        return take_values(args, i + 1, spec, written, attached, style, out);
    }
    Ok(i + 1)
}

fn take_values(
    args: &[String],
    mut next: usize,
    spec: &FlagSpec,
    written: String,
    attached: Option<String>,
    style: Style,
    out: &mut Vec<Item>,
) -> Result<usize, FlagError> {
    let mut values = Vec::new();
    match (spec.arity, attached) {
        (Arity::Switch, None) => {}
        (Arity::Switch, Some(value)) => {
            if style == Style::Getopt || !matches!(value.as_str(), "true" | "false") {
                return Err(FlagError::UnexpectedValue(written));
            }
            values.push(value);
        }
        (Arity::One, Some(value)) => values.push(value),
        (Arity::One, None) => {
            let value = args
                .get(next)
                .ok_or_else(|| FlagError::MissingValue(written.clone()))?;
            values.push(value.clone());
            next += 1;
        }
        (Arity::Two, Some(_)) => return Err(FlagError::UnexpectedValue(written)),
        (Arity::Two, None) => {
            for _ in 0..2 {
                let value = args
                    .get(next)
                    .ok_or_else(|| FlagError::MissingValue(written.clone()))?;
                values.push(value.clone());
                next += 1;
            }
        }
    }
    out.push(Item::Flag {
        spec: spec.clone(),
        written,
        values,
    });
    Ok(next)
}

/// Whether `word` is read as a flag: it starts with `-` and is not `-` (stdin) itself.
pub fn is_flag(word: &str) -> bool {
    word.len() > 1 && word.starts_with('-')
}

/// Parses a whole command line with flags and operands in any order (both pflag and GNU
/// getopt permute); `--` ends the flags.
pub fn parse_all(
    args: &[String],
    specs: &[FlagSpec],
    style: Style,
) -> Result<Vec<Item>, FlagError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let word = &args[i];
        if word == "--" {
            out.extend(args[i + 1..].iter().cloned().map(Item::Positional));
            break;
        }
        if is_flag(word) {
            i = parse_flag(args, i, specs, style, &mut out)?;
        } else {
            out.push(Item::Positional(word.clone()));
            i += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs() -> Vec<FlagSpec> {
        vec![
            FlagSpec::new("all-namespaces", Some('A'), Arity::Switch),
            FlagSpec::new("namespace", Some('n'), Arity::One),
            FlagSpec::new("arg", None, Arity::Two),
        ]
    }

    fn words(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_owned).collect()
    }

    fn values(items: &[Item]) -> Vec<(String, Vec<String>)> {
        items
            .iter()
            .map(|i| match i {
                Item::Flag { spec, values, .. } => (spec.display(), values.clone()),
                Item::Positional(p) => (p.clone(), vec![]),
            })
            .collect()
    }

    #[test]
    fn every_pflag_spelling_of_a_value() {
        for line in [
            "-n foo",
            "-nfoo",
            "-n=foo",
            "--namespace foo",
            "--namespace=foo",
            "-Anfoo",
            "--name_space=foo",
        ] {
            let items = parse_all(&words(line), &specs(), Style::Pflag);
            let items = match items {
                Ok(items) => items,
                Err(e) if line.contains('_') => {
                    // `name_space` normalises to `name-space`, which is not `namespace`.
                    assert_eq!(e, FlagError::Unknown("--name-space".to_owned()));
                    continue;
                }
                Err(e) => panic!("{line}: {e:?}"),
            };
            let last = values(&items).pop();
            assert_eq!(
                last,
                Some(("--namespace".to_owned(), vec!["foo".to_owned()])),
                "{line}"
            );
        }
        let getopt = parse_all(&words("-n=foo"), &specs(), Style::Getopt).unwrap_or_default();
        assert_eq!(
            values(&getopt),
            vec![("--namespace".to_owned(), vec!["=foo".to_owned()])]
        );
    }

    #[test]
    fn unknown_flags_in_bundles_and_missing_values_are_errors() {
        assert_eq!(
            parse_all(&words("-Ak"), &specs(), Style::Pflag),
            Err(FlagError::Unknown("-k".to_owned()))
        );
        assert_eq!(
            parse_all(&words("--all"), &specs(), Style::Pflag),
            Err(FlagError::Unknown("--all".to_owned()))
        );
        assert_eq!(
            parse_all(&words("pods -n"), &specs(), Style::Pflag),
            Err(FlagError::MissingValue("-n".to_owned()))
        );
        // pflag would read `-A=true`; the guard refuses the spelling, which is the safe side.
        assert_eq!(
            parse_all(&words("-A=yes"), &specs(), Style::Pflag),
            Err(FlagError::Unknown("-=".to_owned()))
        );
        assert_eq!(
            parse_all(&words("--all-namespaces=yes"), &specs(), Style::Pflag),
            Err(FlagError::UnexpectedValue("--all-namespaces".to_owned()))
        );
        assert_eq!(
            parse_all(&words("--arg a"), &specs(), Style::Getopt),
            Err(FlagError::MissingValue("--arg".to_owned()))
        );
    }

    #[test]
    fn double_dash_ends_flags() {
        let items = parse_all(&words("a -- -n b"), &specs(), Style::Pflag).unwrap_or_default();
        assert_eq!(
            items,
            vec![
                Item::Positional("a".into()),
                Item::Positional("-n".into()),
                Item::Positional("b".into())
            ]
        );
    }
}
