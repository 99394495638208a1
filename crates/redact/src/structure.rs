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
use crate::keys::{is_base64, is_placeholder, is_trivial, key_kind};

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

pub(crate) static PEM: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?s)-----BEGIN (?P<label>[A-Z0-9 ]{1,64})-----(?:.*?-----END [A-Z0-9 ]{1,64}-----|(?:(?:\r?\n|\\n)[A-Za-z0-9+/=]+)*)",
    )
});

pub(crate) fn pem<'h>(input: &'h str, counts: &mut Counts) -> Cow<'h, str> {
    let mut edits = Edits::new(input);
    for caps in PEM.captures_iter(input) {
        let label = &caps["label"];
        let kind = if label.contains("PRIVATE KEY") {
            "private_key"
        } else if label.contains("CERTIFICATE") {
            "certificate"
        } else {
            "pem"
        };
        if let Some(m) = caps.get(0) {
            edits.redact(m.range(), kind, counts);
        }
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

/// The `kind` of the YAML object whose key at column `column` is on line `at`, looking at
/// that key's siblings above and below.
fn yaml_object_kind<'h>(lines: &[&'h str], at: usize, column: usize) -> Option<&'h str> {
    let kind_of = |line: &'h str| {
        YAML_KIND
            .captures(line)
            .and_then(|c| c.name("kind"))
            .map(|m| m.as_str())
    };
    for line in lines[..at].iter().rev() {
        let content = line.trim_end_matches(['\n', '\r']);
        if content.trim().is_empty() {
            continue;
        }
        let indent = indent_of(content);
        let item = content[indent..].starts_with("- ");
        if indent == column || (item && indent + 2 == column) {
            if let Some(kind) = kind_of(content) {
                return Some(kind);
            }
            if item {
                break;
            }
        } else if indent < column {
            break;
        }
    }
    for line in &lines[at + 1..] {
        let content = line.trim_end_matches(['\n', '\r']);
        if content.trim().is_empty() {
            continue;
        }
        let indent = indent_of(content);
        if indent < column || (indent == column && content[indent..].starts_with("- ")) {
            break;
        }
        if indent == column
            && let Some(kind) = kind_of(content)
        {
            return Some(kind);
        }
    }
    None
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
            if is_placeholder(v) || !(string_data || is_base64(v)) {
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
                        } else if !is_placeholder(v) && (current.string_data || is_base64(v)) {
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
                not_secret: yaml_object_kind(&lines, at, column).is_some_and(|k| k != "Secret"),
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
        if let Some(value) = caps.name("value") {
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

/// The end of a header value that starts at `from`.
fn header_value_end(
    input: &str,
    from: usize,
    quote: Option<u8>,
    equals: bool,
    bracket: bool,
) -> usize {
    let bytes = input.as_bytes();
    let mut i = from;
    while i < bytes.len() {
        let b = bytes[i];
        let stop = match quote {
            Some(q) => {
                b == q || b == b'\n' || b == b'\r' || (b == b'\\' && bytes.get(i + 1) == Some(&q))
            }
            None if equals => b.is_ascii_whitespace() || b == b'&' || b == b'"' || b == b'\'',
            None => {
                b == b'\n'
                    || b == b'\r'
                    || b == b'"'
                    || b == b'\''
                    || b == b'\\'
                    || (bracket && b == b']')
            }
        };
        if stop {
            break;
        }
        i += 1;
    }
    // Trailing blanks and commas separate the value from what follows.
    while i > from && matches!(bytes[i - 1], b' ' | b'\t' | b',') {
        i -= 1;
    }
    i
}

pub(crate) fn headers<'h>(input: &'h str, counts: &mut Counts) -> Cow<'h, str> {
    let mut edits = Edits::new(input);
    for caps in HEADER.captures_iter(input) {
        let (Some(name), Some(sep), Some(quote)) =
            (caps.name("name"), caps.name("sep"), caps.name("quote"))
        else {
            continue;
        };
        // A value already replaced, even where `[` would read as Go's `Name:[value]`.
        let value_start = caps.name("bracket").map_or(quote.start(), |b| b.start());
        if is_placeholder(&input[value_start..]) || is_placeholder(&input[quote.end()..]) {
            continue;
        }
        let quote_byte = quote.as_str().bytes().next();
        let start = quote.end();
        let end = header_value_end(
            input,
            start,
            quote_byte,
            sep.as_str().contains('='),
            caps.name("bracket").is_some(),
        );
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
            && let Some(kind) = key_kind(name.as_str())
            && !is_trivial(value.as_str())
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
            && let Some(kind) = key_kind(name.as_str())
            && !is_trivial(value.as_str())
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
            // `Pwd` alone is a password here, not the working directory.
            let kind = match key.as_str().to_ascii_lowercase().as_str() {
                "password" | "pwd" => "password",
                "accountkey" => "azure_storage_key",
                _ => "azure_sas",
            };
            edits.redact(value.range(), kind, counts);
        }
    }
    edits.finish()
}

pub(crate) static URL_PASSWORD: LazyLock<Regex> = LazyLock::new(|| {
    regex(r"(?i)(?-u:\b)[a-z][a-z0-9+.-]{1,15}://[^\s:/@]{0,256}:(?P<value>[^\s@/]{1,256})@")
});

pub(crate) fn url_password<'h>(input: &'h str, counts: &mut Counts) -> Cow<'h, str> {
    let mut edits = Edits::new(input);
    for caps in URL_PASSWORD.captures_iter(input) {
        if let Some(value) = caps.name("value")
            && !is_placeholder(value.as_str())
        {
            edits.redact(value.range(), "url_password", counts);
        }
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

/// A key that may be sensitive: it holds one of the words [`key_kind`] knows. The regex only
/// finds candidates; `key_kind` decides.
macro_rules! key_fragment {
    () => {
        r"[A-Za-z0-9_.-]*(?:pass|pwd|secret|token|key|auth|credential|cookie|docker)[A-Za-z0-9_.-]*"
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
        (&*YAML_KEY, false),
        (&*FLAG, false),
    ] {
        let mut edits = Edits::new(&text);
        for caps in pattern.captures_iter(&text) {
            let (Some(key), Some(value)) = (caps.name("key"), caps.name("value")) else {
                continue;
            };
            let v = value.as_str();
            if is_trivial(v) || is_path(v) {
                continue;
            }
            let Some(kind) = key_kind(key.as_str()) else {
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
            &PEM,
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
            &YAML_KEY,
            &FLAG,
        ] {
            LazyLock::force(pattern);
        }
    }
}
