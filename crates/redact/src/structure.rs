//! Layer 1: secrets found by where they stand (a Secret's `data`, an env entry whose name is
//! sensitive, a kubeconfig, a connection string, an HTTP header, `key=value`), whatever
//! they look like.
//!
//! Each rule keeps what names the secret (`password=`, `Authorization: Bearer `) and
//! replaces only the value, so a reader still sees what was there.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::LazyLock;

use regex::Regex;

use crate::counts::Counts;
use crate::decode::{is_public_label, is_public_pem_base64, pem_label};
use crate::keys::{is_base64, is_number, is_placeholder, is_trivial, secret_kind};

/// Compiles a pattern that is a constant of this crate; the unit tests compile every one.
pub(crate) fn regex(pattern: &str) -> Regex {
    match Regex::new(pattern) {
        Ok(regex) => regex,
        // Unreachable for the constant patterns of this crate, which the tests exercise.
        Err(e) => panic!("invalid redaction pattern {pattern:?}: {e}"),
    }
}

/// Replacements into one input, made left to right; nothing is allocated until the first.
pub(crate) struct Edits<'h> {
    input: &'h str,
    out: Option<String>,
    last: usize,
}

impl<'h> Edits<'h> {
    pub(crate) fn new(input: &'h str) -> Self {
        Self {
            input,
            out: None,
            last: 0,
        }
    }

    /// Replaces `range` by the placeholder of `kind`, unless it overlaps an earlier
    /// replacement (two rules over one value count once).
    pub(crate) fn redact(&mut self, range: Range<usize>, kind: &'static str, counts: &mut Counts) {
        if range.start < self.last || range.is_empty() {
            return;
        }
        let input = self.input;
        let out = self
            .out
            .get_or_insert_with(|| String::with_capacity(input.len() + 64));
        out.push_str(&input[self.last..range.start]);
        out.push_str(crate::keys::PLACEHOLDER_PREFIX);
        out.push_str(kind);
        out.push(']');
        self.last = range.end;
        counts.add(kind);
    }

    /// Where the last replacement ended: a match starting before it is already covered.
    pub(crate) fn covered_to(&self) -> usize {
        self.last
    }

    pub(crate) fn finish(self) -> Cow<'h, str> {
        match self.out {
            None => Cow::Borrowed(self.input),
            Some(mut out) => {
                out.push_str(&self.input[self.last..]);
                Cow::Owned(out)
            }
        }
    }
}

/// The range of a value inside its quotes, if it is quoted with matching quotes.
fn unquoted(value: &str, start: usize) -> Range<usize> {
    let bytes = value.as_bytes();
    if bytes.len() >= 2
        && (bytes[0] == b'"' || bytes[0] == b'\'')
        && bytes[bytes.len() - 1] == bytes[0]
    {
        start + 1..start + value.len() - 1
    } else {
        start..start + value.len()
    }
}

// --- PEM blocks -------------------------------------------------------------------------

/// The start of every PEM block.
pub(crate) const PEM_BEGIN: &str = "-----BEGIN ";
const PEM_END: &str = "-----END ";

/// The next occurrence of a fixed string at or after a position, remembered: asked with
/// positions that only grow, it scans each byte of the input once (a thousand
/// `-----BEGIN` lines without an `-----END` cost one search for the end, not a thousand).
pub(crate) struct NextFind<'h> {
    haystack: &'h str,
    needle: &'static str,
    /// The last search: from where, and what it found.
    last: Option<(usize, Option<usize>)>,
}

impl<'h> NextFind<'h> {
    pub(crate) fn new(haystack: &'h str, needle: &'static str) -> Self {
        Self {
            haystack,
            needle,
            last: None,
        }
    }

    pub(crate) fn at_or_after(&mut self, from: usize) -> Option<usize> {
        if let Some((searched_from, found)) = self.last
            && searched_from <= from
            && found.is_none_or(|at| at >= from)
        {
            return found;
        }
        let found = self
            .haystack
            .get(from..)
            .and_then(|rest| rest.find(self.needle))
            .map(|at| from + at);
        self.last = Some((from, found));
        found
    }
}

/// PEM blocks (and OpenSSH keys, which are framed the same way), indented or not, with
/// real or escaped (`\n` in JSON) line breaks. A private key (any label but the public
/// ones of [`is_public_label`]) is replaced from `-----BEGIN` to the end of its `-----END`
/// line, or to the end of the input when it was cut off before one. Certificates, public
/// keys and other public blocks are kept.
pub(crate) fn pem<'h>(input: &'h str, counts: &mut Counts) -> Cow<'h, str> {
    let mut edits = Edits::new(input);
    let mut begins = NextFind::new(input, PEM_BEGIN);
    let mut ends = NextFind::new(input, PEM_END);
    let mut at = 0;
    while let Some(begin) = begins.at_or_after(at) {
        let label_start = begin + PEM_BEGIN.len();
        let Some(label) = pem_label(&input[label_start..]) else {
            at = label_start;
            continue;
        };
        let body = label_start + label.len() + "-----".len();
        // The end of the `-----END ...-----` line that closes the block, if any.
        let end = ends.at_or_after(body).map(|e| {
            let after = e + PEM_END.len();
            (
                e,
                pem_label(&input[after..]).map_or(after, |l| after + l.len() + "-----".len()),
            )
        });
        if is_public_label(label) {
            // Kept. A certificate cut off before its end does not hide the next block.
            let next_begin = begins.at_or_after(body);
            at = match (end, next_begin) {
                (Some((e, stop)), next) if next.is_none_or(|n| e < n) => stop,
                (_, Some(next)) => next,
                (_, None) => break,
            };
            continue;
        }
        let kind = if label.contains("PRIVATE") {
            "private_key"
        } else {
            "pem"
        };
        let stop = end.map_or(input.len(), |(_, stop)| stop);
        edits.redact(begin..stop, kind, counts);
        at = stop;
    }
    edits.finish()
}

// --- Kubernetes Secret data ---------------------------------------------------------------

pub(crate) static SECRET_DATA_JSON: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r#"(?:"(?P<k1>data|stringData)"|(?-u:\b)(?P<k2>data|stringData))[ \t]*:[ \t]*\{(?P<body>[^{}]*)\}"#,
    )
});

pub(crate) static SECRET_DATA_JSON_ENTRY: LazyLock<Regex> = LazyLock::new(|| {
    regex(r#"(?:"[^"\n]*"|[A-Za-z0-9._-]+)[ \t]*:[ \t]*(?P<value>"[^"\n]*"|[^,}\s]+)"#)
});

/// The `"kind"` that follows a JSON object's `data` in `kubectl`'s sorted output.
pub(crate) static JSON_KIND_AFTER: LazyLock<Regex> =
    LazyLock::new(|| regex(r#"^[ \t\r\n]*,[ \t\r\n]*"kind"[ \t]*:[ \t]*"(?P<kind>[A-Za-z]+)""#));

/// A YAML `kind:` line, perhaps the first key of a list item.
pub(crate) static YAML_KIND: LazyLock<Regex> =
    LazyLock::new(|| regex(r#"^[ \t]*(?:-[ \t]+)?kind:[ \t]*["']?(?P<kind>[A-Za-z]+)"#));

/// The `kind` of the YAML mapping that holds the key on each line (`None` for blank lines
/// and mappings without a `kind:`), found in one pass with a stack of the mappings open at
/// each indentation: `kind` may come before or after `data` (`kubectl` sorts keys, so after),
/// and a list item (`- `) opens a new mapping. One pass whatever the input: a file of
/// thousands of `data:` lines costs what any other file of its size costs.
fn yaml_mapping_kinds<'h>(lines: &[&'h str]) -> Vec<Option<&'h str>> {
    // Open mappings: (column of their keys, id); the kind of each id.
    let mut open: Vec<(usize, usize)> = Vec::new();
    let mut kinds: Vec<Option<&'h str>> = Vec::new();
    let mut line_ids: Vec<Option<usize>> = Vec::with_capacity(lines.len());
    for line in lines {
        let content = line.trim_end_matches(['\n', '\r']);
        if content.trim().is_empty() {
            line_ids.push(None);
            continue;
        }
        let indent = indent_of(content);
        let rest = &content[indent..];
        let item = rest == "-" || rest.starts_with("- ") || rest.starts_with("-\t");
        while open.last().is_some_and(|&(column, _)| column > indent) {
            open.pop();
        }
        let id = match open.last() {
            Some(&(column, id)) if column == indent && !item => id,
            _ => {
                let column = if item {
                    indent + 1 + indent_of(&rest[1..])
                } else {
                    indent
                };
                kinds.push(None);
                open.push((column, kinds.len() - 1));
                kinds.len() - 1
            }
        };
        if content.contains("kind:")
            && let Some(kind) = YAML_KIND.captures(content).and_then(|c| c.name("kind"))
            && kinds[id].is_none()
        {
            kinds[id] = Some(kind.as_str());
        }
        line_ids.push(Some(id));
    }
    line_ids
        .into_iter()
        .map(|id| id.and_then(|id| kinds[id]))
        .collect()
}

/// Values of a Secret's `data`/`stringData` that are kept: booleans, empty values and
/// placeholders, numbers under `data` (a base64 value is never a bare number in practice;
/// `"3"` is a count the object's author wrote), and base64 of certificates (public).
pub(crate) fn kept_in_data(value: &str, string_data: bool) -> bool {
    is_trivial(value) || (!string_data && is_number(value)) || is_public_pem_base64(value)
}

pub(crate) static YAML_BLOCK_START: LazyLock<Regex> = LazyLock::new(|| {
    regex(r#"^(?P<lead>[ \t]*(?:-[ \t]+)?)(?P<key>data|stringData|"data"|"stringData"):[ \t]*$"#)
});

pub(crate) static YAML_ENTRY: LazyLock<Regex> = LazyLock::new(|| {
    regex(r#"^[ \t]*(?:"[^"]*"|'[^']*'|[A-Za-z0-9._-]+)[ \t]*:[ \t]+(?P<value>\S.*?)[ \t]*$"#)
});

pub(crate) fn secret_data_json<'h>(input: &'h str, counts: &mut Counts) -> Cow<'h, str> {
    let mut edits = Edits::new(input);
    for caps in SECRET_DATA_JSON.captures_iter(input) {
        // `kubectl -o json` sorts keys, so the object's kind follows its `data`: a
        // ConfigMap's data is configuration, not a secret. Unknown kinds are redacted.
        if let Some(whole) = caps.get(0)
            && let Some(kind) = JSON_KIND_AFTER.captures(&input[whole.end()..])
            && &kind["kind"] != "Secret"
        {
            continue;
        }
        let string_data = caps
            .name("k1")
            .or_else(|| caps.name("k2"))
            .is_some_and(|k| k.as_str() == "stringData");
        let Some(body) = caps.name("body") else {
            continue;
        };
        for entry in SECRET_DATA_JSON_ENTRY.captures_iter(body.as_str()) {
            let Some(value) = entry.name("value") else {
                continue;
            };
            let v = value.as_str();
            if kept_in_data(v, string_data) || !(string_data || is_base64(v)) {
                continue;
            }
            edits.redact(
                unquoted(v, body.start() + value.start()),
                "secret_data",
                counts,
            );
        }
    }
    edits.finish()
}

/// A `data:` or `stringData:` mapping being walked in YAML text.
struct DataBlock {
    /// The column of the `data:` key: lines indented no deeper end the block.
    indent: usize,
    string_data: bool,
    /// The column of the block's entries, from its first entry.
    entry_indent: Option<usize>,
    /// Whether the lines below the current entry belong to a redacted block scalar (`|`).
    in_scalar: bool,
    /// Whether the object is known not to be a Secret (a ConfigMap's `data`).
    not_secret: bool,
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches([' ', '\t']).len()
}

pub(crate) fn secret_data_yaml<'h>(input: &'h str, counts: &mut Counts) -> Cow<'h, str> {
    let mut edits = Edits::new(input);
    let mut block: Option<DataBlock> = None;
    let mut offset = 0;
    let lines: Vec<&str> = input.split_inclusive('\n').collect();
    // Computed at the first `data:` line, if there is one.
    let mut kinds: Option<Vec<Option<&str>>> = None;
    for (at, line) in lines.iter().enumerate() {
        let start = offset;
        offset += line.len();
        let content = line.trim_end_matches(['\n', '\r']);
        let indent = indent_of(content);
        if let Some(current) = &mut block {
            if content.trim().is_empty() {
                continue;
            }
            if indent > current.indent {
                if current.not_secret {
                    continue;
                }
                let entry_indent = *current.entry_indent.get_or_insert(indent);
                if indent > entry_indent && current.in_scalar {
                    if !is_placeholder(&content[indent..]) {
                        edits.redact(start + indent..start + content.len(), "secret_data", counts);
                    }
                    continue;
                }
                if indent == entry_indent {
                    current.in_scalar = false;
                    if let Some(entry) = YAML_ENTRY.captures(content)
                        && let Some(value) = entry.name("value")
                    {
                        let v = value.as_str();
                        if v.starts_with(['|', '>']) {
                            // Only `stringData` holds plain text worth a block scalar; a
                            // ConfigMap's `data: {config.yaml: |}` is configuration.
                            current.in_scalar = current.string_data;
                        } else if !kept_in_data(v, current.string_data)
                            && (current.string_data || is_base64(v))
                        {
                            edits.redact(
                                start + value.start()..start + value.end(),
                                "secret_data",
                                counts,
                            );
                        }
                    }
                }
                continue;
            }
            block = None;
        }
        if let Some(open) = YAML_BLOCK_START.captures(content) {
            let column = open["lead"].len();
            block = Some(DataBlock {
                indent: column,
                string_data: open["key"].trim_matches('"') == "stringData",
                entry_indent: None,
                in_scalar: false,
                not_secret: kinds
                    .get_or_insert_with(|| yaml_mapping_kinds(&lines))
                    .get(at)
                    .copied()
                    .flatten()
                    .is_some_and(|k| k != "Secret"),
            });
        }
    }
    edits.finish()
}

// --- kubeconfig -------------------------------------------------------------------------

pub(crate) static KUBECONFIG: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r#"(?m)(?:^[ \t]*(?:-[ \t]+)?|")(?:client-key-data|client-certificate-data|certificate-authority-data)"?[ \t]*:[ \t]*"?(?P<value>[A-Za-z0-9+/=]+)"#,
    )
});

pub(crate) fn kubeconfig<'h>(input: &'h str, counts: &mut Counts) -> Cow<'h, str> {
    let mut edits = Edits::new(input);
    for caps in KUBECONFIG.captures_iter(input) {
        // `client-certificate-data` and `certificate-authority-data` hold certificates,
        // which are public; `client-key-data` holds the private key.
        if let Some(value) = caps.name("value")
            && !is_public_pem_base64(value.as_str())
        {
            edits.redact(value.range(), "kubeconfig", counts);
        }
    }
    edits.finish()
}

// --- HTTP headers -------------------------------------------------------------------------

/// Header names whose value is a credential, in any form a line can hold them: `Name: v`
/// (plain text, YAML, curl `-H`), `"Name": "v"` (JSON), `name=v` (logfmt, query strings),
/// `Name:[v]` (Go's `http.Header` printed).
pub(crate) static HEADER: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r#"(?i)(?-u:\b)(?P<name>proxy-authorization|authorization|set-cookie|cookie|x-api-key|x-auth-token|x-vault-token|x-amz-security-token|x-goog-api-key|x-csrf-token|x-xsrf-token|private-token|x-gitlab-token|x-access-token|x-refresh-token|x-session-token|ocp-apim-subscription-key|x-functions-key|x-consul-token|x-nomad-token|x-registry-auth|api-key)(?-u:\b)(?P<sep>["']?[ \t]*[:=][ \t]*(?P<bracket>\[[ \t]*)?)(?P<quote>["']?)"#,
    )
});

/// The names [`HEADER`] knows, for a JSON object's keys.
const HEADER_NAMES: [&str; 22] = [
    "proxy-authorization",
    "authorization",
    "set-cookie",
    "cookie",
    "x-api-key",
    "x-auth-token",
    "x-vault-token",
    "x-amz-security-token",
    "x-goog-api-key",
    "x-csrf-token",
    "x-xsrf-token",
    "private-token",
    "x-gitlab-token",
    "x-access-token",
    "x-refresh-token",
    "x-session-token",
    "ocp-apim-subscription-key",
    "x-functions-key",
    "x-consul-token",
    "x-nomad-token",
    "x-registry-auth",
    "api-key",
];

/// Whether `name` is an HTTP header whose value is a credential.
pub(crate) fn is_header_name(name: &str) -> bool {
    HEADER_NAMES.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// How a header value ends: inside quotes, after `name=`, inside Go's `[...]`, or plain.
#[derive(Clone, Copy)]
enum ValueForm {
    Quoted(u8),
    Equals,
    Bracket,
    Plain,
}

impl ValueForm {
    fn index(self) -> usize {
        match self {
            ValueForm::Quoted(b'"') => 0,
            ValueForm::Quoted(_) => 1,
            ValueForm::Equals => 2,
            ValueForm::Bracket => 3,
            ValueForm::Plain => 4,
        }
    }

    fn stops_at(self, bytes: &[u8], i: usize) -> bool {
        let b = bytes[i];
        match self {
            ValueForm::Quoted(q) => {
                b == q || b == b'\n' || b == b'\r' || (b == b'\\' && bytes.get(i + 1) == Some(&q))
            }
            ValueForm::Equals => b.is_ascii_whitespace() || b == b'&' || b == b'"' || b == b'\'',
            ValueForm::Plain | ValueForm::Bracket => {
                b == b'\n'
                    || b == b'\r'
                    || b == b'"'
                    || b == b'\''
                    || b == b'\\'
                    || (matches!(self, ValueForm::Bracket) && b == b']')
            }
        }
    }
}

/// The ends of header values, remembered per form: many header names on one long line
/// share the end of their values, so each byte is scanned once per form, not once per
/// name (a line of `Cookie: Cookie: ...` stays linear).
#[derive(Default)]
struct ValueEnds {
    /// Per form: the scan started at `.0` found no stop before `.1`, where it stopped; `.2`
    /// is `.1` with the trailing blanks and commas before it removed.
    known: [Option<(usize, usize, usize)>; 5],
}

impl ValueEnds {
    /// The end of a value of `form` that starts at `from`.
    fn end(&mut self, input: &str, from: usize, form: ValueForm) -> usize {
        let bytes = input.as_bytes();
        let slot = &mut self.known[form.index()];
        let trimmed = match *slot {
            Some((start, stop, trimmed)) if start <= from && from <= stop => trimmed,
            _ => {
                let mut i = from;
                while i < bytes.len() && !form.stops_at(bytes, i) {
                    i += 1;
                }
                // Trailing blanks and commas separate the value from what follows.
                let mut t = i;
                while t > from && matches!(bytes[t - 1], b' ' | b'\t' | b',') {
                    t -= 1;
                }
                *slot = Some((from, i, t));
                t
            }
        };
        trimmed.max(from)
    }
}

pub(crate) fn headers<'h>(input: &'h str, counts: &mut Counts) -> Cow<'h, str> {
    let mut edits = Edits::new(input);
    let mut ends = ValueEnds::default();
    for caps in HEADER.captures_iter(input) {
        let (Some(name), Some(sep), Some(quote)) =
            (caps.name("name"), caps.name("sep"), caps.name("quote"))
        else {
            continue;
        };
        if name.start() < edits.covered_to() {
            // Inside a value already replaced.
            continue;
        }
        // A value already replaced, even where `[` would read as Go's `Name:[value]`.
        let value_start = caps.name("bracket").map_or(quote.start(), |b| b.start());
        if is_placeholder(&input[value_start..]) || is_placeholder(&input[quote.end()..]) {
            continue;
        }
        let start = quote.end();
        let form = match quote.as_str().bytes().next() {
            Some(q) => ValueForm::Quoted(q),
            None if sep.as_str().contains('=') => ValueForm::Equals,
            None if caps.name("bracket").is_some() => ValueForm::Bracket,
            None => ValueForm::Plain,
        };
        // `"authorization": {"mode": "Webhook"}` (a kubelet config) is a section of
        // settings, not a credential: only a string is one.
        if matches!(form, ValueForm::Plain | ValueForm::Equals)
            && input[start..].starts_with(['{', '['])
        {
            continue;
        }
        let end = ends.end(input, start, form);
        let value = &input[start..end];
        if is_trivial(value) {
            continue;
        }
        let lower = name.as_str().to_ascii_lowercase();
        let (range, kind) = if lower.ends_with("authorization") {
            // Keep the scheme (`Bearer`, `Basic`, `token`, `AWS4-HMAC-SHA256`) readable.
            match value.split_once([' ', '\t']) {
                Some((scheme, rest)) if !rest.trim().is_empty() => {
                    let rest_start =
                        start + scheme.len() + (value.len() - scheme.len() - rest.len());
                    let lead = rest.len() - rest.trim_start().len();
                    if is_placeholder(rest) {
                        continue;
                    }
                    let kind = match scheme.to_ascii_lowercase().as_str() {
                        "bearer" => "bearer_token",
                        "basic" => "basic_auth",
                        _ => "authorization",
                    };
                    (rest_start + lead..end, kind)
                }
                _ if value.eq_ignore_ascii_case("bearer")
                    || value.eq_ignore_ascii_case("basic") =>
                {
                    continue;
                }
                _ => (start..end, "authorization"),
            }
        } else if lower.contains("cookie") {
            (start..end, "cookie")
        } else if lower.ends_with("key") {
            (start..end, "api_key")
        } else {
            (start..end, "token")
        };
        edits.redact(range, kind, counts);
    }
    edits.finish()
}

// --- Environment variables ------------------------------------------------------------------

/// `- name: DB_PASSWORD` with `value: ...` on the next line (`kubectl get -o yaml` sorts the
/// keys, so `name` comes first).
pub(crate) static ENV_YAML: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r#"(?m)^[ \t]*-[ \t]+name:[ \t]*["']?(?P<name>[A-Za-z0-9_.-]+)["']?[ \t]*\r?\n[ \t]+value:[ \t]*(?P<value>[^\s|>][^\r\n]*?)[ \t]*\r?$"#,
    )
});

/// `{"name": "DB_PASSWORD", "value": "..."}` in either order, on one line or pretty-printed.
pub(crate) static ENV_JSON: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r#""name"[ \t\r\n]*:[ \t\r\n]*"(?P<name>[A-Za-z0-9_.-]+)"[ \t\r\n]*,[ \t\r\n]*"value"[ \t\r\n]*:[ \t\r\n]*"(?P<value>(?:[^"\\\n]|\\.)*)"|"value"[ \t\r\n]*:[ \t\r\n]*"(?P<value2>(?:[^"\\\n]|\\.)*)"[ \t\r\n]*,[ \t\r\n]*"name"[ \t\r\n]*:[ \t\r\n]*"(?P<name2>[A-Za-z0-9_.-]+)""#,
    )
});

pub(crate) fn env<'h>(input: &'h str, counts: &mut Counts) -> Cow<'h, str> {
    let mut text = Cow::Borrowed(input);
    let mut edits = Edits::new(&text);
    for caps in ENV_YAML.captures_iter(&text) {
        if let (Some(name), Some(value)) = (caps.name("name"), caps.name("value"))
            && let Some(kind) = secret_kind(name.as_str(), value.as_str())
        {
            edits.redact(unquoted(value.as_str(), value.start()), kind, counts);
        }
    }
    if let Cow::Owned(changed) = edits.finish() {
        text = Cow::Owned(changed);
    }
    let mut edits = Edits::new(&text);
    for caps in ENV_JSON.captures_iter(&text) {
        let name = caps.name("name").or_else(|| caps.name("name2"));
        let value = caps.name("value").or_else(|| caps.name("value2"));
        if let (Some(name), Some(value)) = (name, value)
            && let Some(kind) = secret_kind(name.as_str(), value.as_str())
        {
            edits.redact(value.range(), kind, counts);
        }
    }
    match edits.finish() {
        Cow::Owned(changed) => Cow::Owned(changed),
        Cow::Borrowed(_) => text,
    }
}

// --- Connection strings and URLs -------------------------------------------------------------

/// ADO.NET, ODBC and Azure connection strings: `Password=...;`, `Pwd=`, `AccountKey=`,
/// `SharedAccessKey=`, `SharedAccessSignature=` (whose value holds `=` and `&`).
pub(crate) static CONNECTION_STRING: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r#"(?i)(?-u:\b)(?P<key>password|pwd|accountkey|sharedaccesskey|sharedaccesssignature)[ \t]*=[ \t]*(?P<value>[^;\s"'<>]+)"#,
    )
});

pub(crate) fn connection_strings<'h>(input: &'h str, counts: &mut Counts) -> Cow<'h, str> {
    let mut edits = Edits::new(input);
    for caps in CONNECTION_STRING.captures_iter(input) {
        if let (Some(key), Some(value)) = (caps.name("key"), caps.name("value"))
            && !is_trivial(value.as_str())
            && !is_path(value.as_str())
        {
            let lower = key.as_str().to_ascii_lowercase();
            // `Pwd` is a password inside a connection string (`Uid=app;Pwd=x;`), next to a
            // `;`; alone, `PWD=/workspace` is the shell's working directory.
            if lower == "pwd"
                && !input[..key.start()].trim_end().ends_with(';')
                && !input[value.end()..].starts_with(';')
            {
                continue;
            }
            let kind = match lower.as_str() {
                "password" | "pwd" => "password",
                "accountkey" => "azure_storage_key",
                _ => "azure_sas",
            };
            edits.redact(value.range(), kind, counts);
        }
    }
    edits.finish()
}

/// `scheme://user:` of a URL with credentials; the password runs from there to the last `@`
/// of the URL (see [`url_password`]).
pub(crate) static URL_PASSWORD: LazyLock<Regex> =
    LazyLock::new(|| regex(r"(?i)(?-u:\b)[a-z][a-z0-9+.-]{1,15}://[^\s:/@\[\]]{0,256}:"));

/// Whether `b` ends a URL in text: blanks, quotes and the brackets around a URL.
fn ends_url(b: u8) -> bool {
    b.is_ascii_whitespace() || matches!(b, b'"' | b'\'' | b'<' | b'>' | b'`' | b'\\')
}

/// The password of `scheme://user:password@host`. A password may hold `@` and `/`
/// (`https://user:p@ss/w0rd@host/`), so it runs to the last `@` of the URL; a port
/// (`https://host:8443/x@y`, `docker://registry:5000/img@sha256:...`) is no password.
pub(crate) fn url_password<'h>(input: &'h str, counts: &mut Counts) -> Cow<'h, str> {
    let bytes = input.as_bytes();
    let mut edits = Edits::new(input);
    // The URL scanned last: where its password would start, where it ends and its last `@`.
    // A URL inside another (`?next=https://u:p@h`) lies within the outer one's span.
    let mut scanned: Option<(usize, usize, Option<usize>)> = None;
    for m in URL_PASSWORD.find_iter(input) {
        let start = m.end();
        if start < edits.covered_to() {
            continue;
        }
        let last_at = match scanned {
            Some((from, end, last_at)) if from <= start && start <= end => {
                last_at.filter(|&at| at >= start)
            }
            _ => {
                let mut end = start;
                let mut last_at = None;
                while end < bytes.len() && !ends_url(bytes[end]) {
                    if bytes[end] == b'@' {
                        last_at = Some(end);
                    }
                    end += 1;
                }
                scanned = Some((start, end, last_at));
                last_at
            }
        };
        let Some(at) = last_at else {
            continue;
        };
        let value = &input[start..at];
        let port = value
            .find('/')
            .is_some_and(|slash| slash > 0 && value[..slash].bytes().all(|b| b.is_ascii_digit()));
        if value.is_empty() || port || is_placeholder(value) {
            continue;
        }
        edits.redact(start..at, "url_password", counts);
    }
    edits.finish()
}

// --- Authorization schemes anywhere ------------------------------------------------------------

pub(crate) static AUTH_SCHEME: LazyLock<Regex> = LazyLock::new(|| {
    regex(r"(?i)(?-u:\b)(?P<scheme>bearer|basic)[ \t]+(?P<value>[A-Za-z0-9\-._~+/]{8,}=*)")
});

pub(crate) fn auth_scheme<'h>(input: &'h str, counts: &mut Counts) -> Cow<'h, str> {
    let mut edits = Edits::new(input);
    for caps in AUTH_SCHEME.captures_iter(input) {
        let Some(value) = caps.name("value") else {
            continue;
        };
        let v = value.as_str();
        // "Bearer authentication" or "basic information" in prose is not a credential: real
        // tokens carry digits or padding, or are long.
        if !(v.bytes().any(|b| b.is_ascii_digit() || b == b'=') || v.len() >= 24) {
            continue;
        }
        let kind = if caps["scheme"].eq_ignore_ascii_case("basic") {
            "basic_auth"
        } else {
            "bearer_token"
        };
        edits.redact(value.range(), kind, counts);
    }
    edits.finish()
}

// --- Sensitive keys -----------------------------------------------------------------------------

/// A key that may be sensitive: it holds one of the words
/// [`key_kind`](crate::keys::key_kind) knows. The regex only finds candidates; `key_kind`
/// decides.
macro_rules! key_fragment {
    () => {
        r"[A-Za-z0-9_.-]*(?:pass|pwd|pw|pin|salt|hmac|sas|secret|token|key|auth|credential|cookie|docker)[A-Za-z0-9_.-]*"
    };
}

/// `key=value` anywhere: shell, logfmt, query strings, `--env`/`-e` arguments, `.env` files.
pub(crate) static KEY_EQUALS: LazyLock<Regex> = LazyLock::new(|| {
    regex(concat!(
        r#"(?i)(?-u:\b)(?P<key>"#,
        key_fragment!(),
        r#")["']?[ \t]*=[ \t]*(?P<value>"[^"\n]*"|'[^'\n]*'|[^\s"'&,;)=][^\s"'&,;)]*)"#
    ))
});

/// `"key": "value"` anywhere (JSON, on one line or pretty-printed).
pub(crate) static QUOTED_KEY: LazyLock<Regex> = LazyLock::new(|| {
    regex(concat!(
        r#"(?i)"(?P<key>"#,
        key_fragment!(),
        r#")"[ \t]*:[ \t]*"(?P<value>(?:[^"\\\n]|\\.)+)""#
    ))
});

/// `\"key\": \"value\"`: a JSON document escaped inside a JSON string (a log line whose
/// message is JSON). The value runs to the escaped quote that closes it, the one followed
/// by `,`, `}`, `]` or another escape.
pub(crate) static ESCAPED_QUOTED_KEY: LazyLock<Regex> = LazyLock::new(|| {
    regex(concat!(
        r#"(?i)\\+"(?P<key>"#,
        key_fragment!(),
        r#")\\+"[ \t]*:[ \t]*\\+"(?P<value>[^"\n]+?)\\+"[ \t]*[,}\]\\]"#
    ))
});

/// A `key: value` line: YAML, and `kubectl describe`'s `DB_PASSWORD:  hunter2`.
pub(crate) static YAML_KEY: LazyLock<Regex> = LazyLock::new(|| {
    regex(concat!(
        r#"(?im)^[ \t]*(?:-[ \t]+)?["']?(?P<key>"#,
        key_fragment!(),
        r#")["']?[ \t]*:[ \t]+(?P<value>[^\s#|>&*{\[!%@`][^\r\n]*?)[ \t]*\r?$"#
    ))
});

/// `--token value`, `--password 'x'` as separate command-line arguments.
pub(crate) static FLAG: LazyLock<Regex> = LazyLock::new(|| {
    regex(concat!(
        r#"(?i)(?:^|[ \t])--(?P<key>"#,
        key_fragment!(),
        r#")[ \t]+(?P<value>"[^"\n]*"|'[^'\n]*'|[^\s"'-][^\s"']*)"#
    ))
});

/// Whether `value` is a file path (a `--from-file=ssh-privatekey=./id_rsa`), not a secret.
fn is_path(value: &str) -> bool {
    let bare = value.trim_matches(['"', '\'']);
    bare.starts_with("./")
        || bare.starts_with("../")
        || bare.starts_with("~/")
        || (bare.starts_with('/')
            && bare[1..].starts_with(|c: char| c.is_ascii_lowercase())
            && bare[1..].contains('/'))
}

pub(crate) fn key_values<'h>(input: &'h str, counts: &mut Counts) -> Cow<'h, str> {
    let mut text = Cow::Borrowed(input);
    for (pattern, quoted) in [
        (&*KEY_EQUALS, false),
        (&*QUOTED_KEY, true),
        (&*ESCAPED_QUOTED_KEY, true),
        (&*YAML_KEY, false),
        (&*FLAG, false),
    ] {
        let mut edits = Edits::new(&text);
        for caps in pattern.captures_iter(&text) {
            let (Some(key), Some(value)) = (caps.name("key"), caps.name("value")) else {
                continue;
            };
            let v = value.as_str();
            if is_path(v) {
                continue;
            }
            let Some(kind) = secret_kind(key.as_str(), v) else {
                continue;
            };
            let range = if quoted {
                value.range()
            } else {
                unquoted(v, value.start())
            };
            edits.redact(range, kind, counts);
        }
        if let Cow::Owned(changed) = edits.finish() {
            text = Cow::Owned(changed);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pattern_compiles() {
        for pattern in [
            &SECRET_DATA_JSON,
            &SECRET_DATA_JSON_ENTRY,
            &YAML_BLOCK_START,
            &YAML_ENTRY,
            &JSON_KIND_AFTER,
            &YAML_KIND,
            &KUBECONFIG,
            &HEADER,
            &ENV_YAML,
            &ENV_JSON,
            &CONNECTION_STRING,
            &URL_PASSWORD,
            &AUTH_SCHEME,
            &KEY_EQUALS,
            &QUOTED_KEY,
            &ESCAPED_QUOTED_KEY,
            &YAML_KEY,
            &FLAG,
        ] {
            LazyLock::force(pattern);
        }
    }
}
