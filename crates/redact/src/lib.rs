//! Deterministic, idempotent redaction of secrets in text and JSON, before anything leaves
//! the secure zone: the runner redacts every tool output, final text and event before it
//! publishes to NATS, and the publisher again before git.
//!
//! Each secret is replaced by `[REDACTED:<kind>]`, keeping whatever names it (`password=`,
//! `token:`, `Authorization: Bearer `), so a reader still sees that something was there and
//! what it was. Every call also says what it removed, by kind and count, never the value
//! ([`Redaction::removed`], [`Counts`]). The rules are plain patterns applied in a fixed
//! order, with no randomness and no state: the same input always gives the same output, and
//! redacting the output again changes nothing.
//!
//! # Layers and kinds
//!
//! 1. Structure: secrets found by where they stand.
//!    - `secret_data`: the values of a Kubernetes Secret's `data` (base64-shaped) and
//!      `stringData` (every value, block scalars included), YAML and JSON.
//!    - `kubeconfig`: `client-key-data`, and `client-certificate-data`,
//!      `certificate-authority-data` unless they hold certificates; a kubeconfig's
//!      `token:`/`password:` are caught as keys.
//!    - `password`, `secret`, `token`, `api_key`, `access_key`, `private_key`, `credential`,
//!      `key`, `cookie`, `docker_auth`, `azure_storage_key`, `azure_sas`: the value of a
//!      sensitive name in every form: `KEY=value` (shell, logfmt, `--env`, `-e`), `"key":
//!      "value"` (JSON), `key: value` (YAML, `kubectl describe`'s `DB_PASSWORD:  hunter2`),
//!      `--token value`, env entries `- name: DB_PASSWORD` / `value: ...` (YAML) and
//!      `{"name": "DB_PASSWORD", "value": "..."}` (JSON). A name is sensitive when it ends
//!      in password, passwd, passphrase, pwd, secret, token, api key, access key, secret
//!      key, private key, credential(s), cookie or auth, or, for an upper-case environment
//!      variable, holds one of PASSWORD, SECRET, TOKEN, KEY, CREDENTIAL, AUTH, PWD as a
//!      segment. Names of things about a secret (`SECRET_NAME`, `token_file`, `AUTH_URL`,
//!      `*_TTL`) are not. Docker config `auth` and `.dockerconfigjson` give `docker_auth`.
//!    - Connection strings: `Password=`, `Pwd=`, `AccountKey=`, `SharedAccessKey=`,
//!      `SharedAccessSignature=` (up to the `;`).
//!    - `url_password`: the password in `scheme://user:password@host`.
//!    - HTTP headers anywhere in a line, in plain text, YAML, JSON, logfmt and Go's printed
//!      `http.Header`: `Authorization`/`Proxy-Authorization` (`bearer_token`, `basic_auth`,
//!      or `authorization` for other schemes, the scheme kept), `Cookie`/`Set-Cookie`
//!      (`cookie`), `X-Api-Key` and other key headers (`api_key`), `X-Auth-Token`,
//!      `X-Vault-Token` and other token headers (`token`). `Bearer`/`Basic` credentials
//!      anywhere else too.
//!    - `private_key`, `pem`: PEM and OpenSSH blocks that are not public, indented or not,
//!      also with escaped newlines (`\n` inside JSON), and to the end of the input when cut
//!      off before their `-----END`. Certificates, public keys and CRLs, in PEM or base64
//!      (`tls.crt`, `ca.crt`, `certificate-authority-data`), are public and kept.
//!    - YAML block scalars under a sensitive name (`password: |` and its indented lines),
//!      JSON escaped inside a JSON string (`\"password\":\"x\"`), command-line
//!      credentials (`curl -u user:x`, `mysql -px`, `ldapsearch -w x`, `sshpass -p x`),
//!      signed-URL parameters (`X-Amz-Signature`, `X-Goog-Signature`, `sig=`, ...:
//!      `signature`, `credential`, `token`, `azure_sas`), and `data:` URLs whose decoded
//!      payload holds a secret (`data_url`: pull secrets inlined in MachineConfigs).
//!    - Kept: booleans, empty values, numbers (but under a password's name), `PWD`,
//!      `auth=failed`, settings under a sensitive name (`{"authorization": {"mode":
//!      "Webhook"}}`); REDACTION.md says why.
//! 2. Token formats, by shape alone: see [`token_kinds`] (OpenShift `sha256~`, JWTs, AWS,
//!    GCP, Azure, GitHub, GitLab, Slack, Stripe, Anthropic, OpenAI, npm, PyPI, Twilio,
//!    SendGrid, Vault and more), each rule's source noted beside it in `tokens.rs`.
//! 3. `high_entropy`: a random-looking string of 20+ characters within 32 characters after
//!    a sensitive word, unless it is an image digest, a UUID, a commit hash, digits
//!    (resourceVersion, generation), hex with colons (serials, fingerprints), a Kubernetes
//!    or host name, or a path.
//!
//! # Speed
//!
//! Every rule has a trigger, and all triggers and token patterns form one
//! [`regex::RegexSet`]: clean text costs one scan and no allocation; a rule runs (one more
//! scan) only when its trigger matched somewhere in the input. Every rule is linear in its
//! input, adversarial input included: no rule rescans from each match (what one found
//! beyond its match is remembered), so redaction time grows with the input's size alone.
//!
//! # Size
//!
//! [`text_truncated`] redacts, then cuts to a size (so a cut cannot leave part of a secret
//! that no rule then recognises); [`truncate_report`] cuts redacted report text to
//! [`MAX_REPORT_BYTES`]; neither splits a placeholder.
//!
//! # Known limits
//!
//! - A bare base64 value printed on its own (`jsonpath='{.data.password}'`) or decoded
//!   output with no name beside it cannot be told from ordinary text.
//! - A password with no name beside it, short or made of words, is not found.
//! - A value with spaces after `key=` is cut at the first space unless quoted.
//! - Values that look like file paths (`./key.pem`, `/etc/secret/x`) are kept.
//! - Anything the agent can read it can reshape (base64, `tr`, splitting) into a form no
//!   rule recognises: the guard's refusals and RBAC (no Secrets) are the defence, this is
//!   the safety net.
//!
//! [`markdown::neutralize`] makes a report safe to render: no remote image, no raw HTML.

mod counts;
mod decode;
mod entropy;
mod forms;
mod keys;
pub mod markdown;
mod structure;
mod tokens;

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;
use std::sync::LazyLock;

use regex::RegexSet;
use serde_json::Value;

pub use counts::Counts;
use keys::key_kind;

/// The replacement for a secret of `kind`.
pub fn placeholder(kind: &str) -> String {
    format!("{}{kind}]", keys::PLACEHOLDER_PREFIX)
}

/// The kinds the token rules (layer 2) can report, in rule order, without repeats.
pub fn token_kinds() -> Vec<&'static str> {
    let mut kinds: Vec<&'static str> = Vec::new();
    for rule in tokens::TOKEN_RULES {
        if !kinds.contains(&rule.kind) {
            kinds.push(rule.kind);
        }
    }
    kinds
}

/// Redacted text and what was removed from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redaction<'a> {
    /// The input with every secret replaced; borrowed when nothing was found.
    pub text: Cow<'a, str>,
    /// What was removed, by kind.
    pub removed: Counts,
}

impl Redaction<'_> {
    /// The redacted text, owned.
    pub fn into_string(self) -> String {
        self.text.into_owned()
    }
}

impl Deref for Redaction<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Redaction<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl From<Redaction<'_>> for String {
    fn from(redaction: Redaction<'_>) -> String {
        redaction.into_string()
    }
}

/// A structural rule: runs when its trigger (same index in [`STEPS`] and the set) matched.
type Step = for<'h> fn(&'h str, &mut Counts) -> Cow<'h, str>;

/// The structural rules in the order they apply, each with the trigger that must match
/// somewhere in the input for it to run. A trigger is never narrower than its rule, and is
/// kept simple (no bounded repetition, no end-of-line anchors): all of them run together in
/// one DFA over every input.
const STEPS: [(&str, Step); 15] = [
    (r"-----BEGIN ", structure::pem),
    (r"(?i-u:\bdata:)", forms::data_urls),
    (r":[ \t]*[|>]", forms::yaml_block_scalars),
    (
        r#"(?-u:\b)(?:data|stringData)"?[ \t]*:"#,
        structure::secret_data_json,
    ),
    (
        r#"(?-u:\b)(?:data|stringData)"?[ \t]*:"#,
        structure::secret_data_yaml,
    ),
    (
        r"(?:client-key|client-certificate|certificate-authority)-data",
        structure::kubeconfig,
    ),
    (
        r"(?i)(?:authorization|cookie|api-key|-token|subscription-key|functions-key|registry-auth)",
        structure::headers,
    ),
    (
        r#"(?i)name"?[ \t]*:[ \t]*["']?[A-Za-z0-9_.-]*(?:pass|pwd|pw|pin|salt|hmac|sas|secret|token|key|auth|credential|cookie|docker)"#,
        structure::env,
    ),
    (
        r"(?i)(?:password|pwd|accountkey|sharedaccesskey|sharedaccesssignature)[ \t]*=",
        structure::connection_strings,
    ),
    (r#"://[^\s"'<>`\\]*@"#, structure::url_password),
    (
        r"(?i)(?:sig|signature|credential|security-token)=",
        forms::query_signatures,
    ),
    (
        r"(?:curl|mysql|mariadb|ldap|sshpass|[ \t]-D[ \t])",
        forms::cli_flags,
    ),
    // The token rules run here, between the structure above and the keys below, so that
    // `GITHUB_TOKEN=ghp_...` says `github_token` rather than `token`.
    (r"(?i)(?:bearer|basic)[ \t]", structure::auth_scheme),
    (
        r"(?i)(?:pass|pwd|pw|pin|salt|hmac|sas|secret|token|key|auth|credential|cookie|docker)",
        structure::key_values,
    ),
    (
        r"(?i)(?:passw(?:or)?d|passphrase|secret|token|api[-_ ]?key|key|credential|auth)",
        entropy::near_word,
    ),
];

/// Where the token rules run among [`STEPS`]: before this index.
const TOKENS_BEFORE_STEP: usize = 12;

/// The index of [`forms::data_urls`] in [`STEPS`], skipped inside a decoded `data:` URL.
const DATA_URL_STEP: usize = 1;

/// Every trigger, then every token pattern: one scan tells which rules can match.
static TRIGGERS: LazyLock<RegexSet> = LazyLock::new(|| {
    let patterns = STEPS
        .iter()
        .map(|(trigger, _)| *trigger)
        .chain(tokens::TOKEN_RULES.iter().map(|rule| rule.pattern));
    match RegexSet::new(patterns) {
        Ok(set) => set,
        // Unreachable: the same constant patterns compile alone in the unit tests.
        Err(e) => panic!("invalid redaction trigger: {e}"),
    }
});

/// How many rounds [`text`] runs at most. One round finds everything in practice; a second
/// one only confirms, and guarantees that redacting the output again changes nothing even
/// when one replacement lets another rule see a value it could not see before.
const MAX_ROUNDS: usize = 4;

/// Redacts every secret in `input`.
pub fn text(input: &str) -> Redaction<'_> {
    let mut removed = Counts::new();
    let mut current: Cow<'_, str> = Cow::Borrowed(input);
    for _ in 0..MAX_ROUNDS {
        let next = match round(&current, &mut removed, false) {
            Cow::Borrowed(_) => break,
            Cow::Owned(next) => next,
        };
        current = Cow::Owned(next);
    }
    Redaction {
        text: current,
        removed,
    }
}

/// Whether `decoded` (the payload of a `data:` URL) holds anything the rules would
/// redact. `data:` URLs inside it are not opened: one level, so the work stays linear.
pub(crate) fn holds_secret(decoded: &str) -> bool {
    let mut counts = Counts::new();
    matches!(round(decoded, &mut counts, true), Cow::Owned(_))
}

/// The most a report's text may hold, in bytes (256 KiB): the runner cuts a final report to
/// it before publishing, the publisher before writing to git, with [`truncate_report`].
pub const MAX_REPORT_BYTES: usize = 256 * 1024;

/// What ends a text cut by [`truncate`]: says that more was there.
pub const TRUNCATION_MARKER: &str = "\n[truncated by warroom-redact]\n";

/// `text` cut to at most `max_bytes` bytes, marker included: at a character boundary,
/// never inside a `[REDACTED:kind]` placeholder, ending with [`TRUNCATION_MARKER`] (or, when
/// `max_bytes` cannot hold the marker, with nothing). Borrowed when it fits. Cut text that
/// was redacted first; cutting before redacting could split a name from its value
/// (`passw` | `ord=x`) and leak the value: use [`text_truncated`] for that.
pub fn truncate(text: &str, max_bytes: usize) -> Cow<'_, str> {
    if text.len() <= max_bytes {
        return Cow::Borrowed(text);
    }
    let marker = if max_bytes >= TRUNCATION_MARKER.len() {
        TRUNCATION_MARKER
    } else {
        ""
    };
    let mut cut = max_bytes - marker.len();
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    // A placeholder (at most 64 bytes) that the cut would split goes whole.
    let window = cut.saturating_sub(64);
    let window = (window..=cut)
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(cut);
    if let Some(open) = text[window..cut].rfind('[').map(|i| window + i)
        && !text[open..cut].contains(']')
    {
        let tail = &text[open..];
        let prefix = keys::PLACEHOLDER_PREFIX;
        let n = tail.len().min(prefix.len());
        if tail.as_bytes()[..n] == prefix.as_bytes()[..n] {
            cut = open;
        }
    }
    let mut out = String::with_capacity(cut + marker.len());
    out.push_str(&text[..cut]);
    out.push_str(marker);
    Cow::Owned(out)
}

/// A report's text cut to [`MAX_REPORT_BYTES`] (see [`truncate`]). Call it on text that
/// was already redacted.
pub fn truncate_report(text: &str) -> Cow<'_, str> {
    truncate(text, MAX_REPORT_BYTES)
}

/// Redacts the whole of `input`, then cuts the result to at most `max_bytes` bytes (see
/// [`truncate`]): a secret whose name would have been cut from its value is redacted
/// before the cut can separate them, and no placeholder is split.
pub fn text_truncated(input: &str, max_bytes: usize) -> Redaction<'_> {
    let Redaction { text, removed } = text(input);
    let text = match text {
        Cow::Borrowed(borrowed) => truncate(borrowed, max_bytes),
        Cow::Owned(owned) => Cow::Owned(truncate(&owned, max_bytes).into_owned()),
    };
    Redaction { text, removed }
}

/// One pass of every rule whose trigger matched (but [`forms::data_urls`] when `nested`).
fn round<'h>(input: &'h str, counts: &mut Counts, nested: bool) -> Cow<'h, str> {
    let matched = TRIGGERS.matches(input);
    if !matched.matched_any() {
        return Cow::Borrowed(input);
    }
    let mut text = Cow::Borrowed(input);
    for (i, (_, step)) in STEPS.iter().enumerate() {
        if i == TOKENS_BEFORE_STEP
            && let Cow::Owned(changed) = tokens::tokens(&text, &matched, STEPS.len(), counts)
        {
            text = Cow::Owned(changed);
        }
        if matched.matched(i)
            && !(nested && i == DATA_URL_STEP)
            && let Cow::Owned(changed) = step(&text, counts)
        {
            text = Cow::Owned(changed);
        }
    }
    text
}

/// Redacts every string in `value` and the whole string value of every sensitive key; a
/// JSON document stays valid JSON with the same shape.
///
/// Beyond what [`text`] finds in each string: the strings inside an object or array under a
/// sensitive name are secrets too (`{"credentials": {"user": "a", "pass": "b"}}`), except
/// under names of settings (`mode`, `type`, `enabled`, `*Name`, ...: see REDACTION.md), so
/// `{"authorization": {"mode": "Webhook"}}` is kept; a string that is itself a JSON
/// document (a log line's message) is redacted as JSON and written back compact.
pub fn json(value: &mut Value) -> Counts {
    let mut removed = Counts::new();
    json_into(value, &mut removed, None);
    removed
}

/// Redacts `value`; `inherited` is the kind of the sensitive name it stands under.
fn json_into(value: &mut Value, removed: &mut Counts, inherited: Option<&'static str>) {
    match value {
        Value::String(s) => match inherited {
            Some(kind) if keys::holds_secret(kind, s) => replace_secret(s, kind, removed),
            _ => json_string(s, removed),
        },
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| json_into(v, removed, inherited)),
        Value::Object(map) => {
            let is_secret = map.get("kind").and_then(Value::as_str) == Some("Secret");
            // An env entry: `{"name": "DB_PASSWORD", "value": "..."}`. The name is judged as
            // it reads now and as it will read once redacted (`password: [REDACTED:password]`
            // names a password), so that redacting the result again changes nothing.
            let env_kind = map
                .get("name")
                .and_then(Value::as_str)
                .and_then(|name| key_kind(name).or_else(|| key_kind(&text(name).into_string())))
                .filter(|_| map.get("value").is_some_and(Value::is_string));
            for (key, child) in map.iter_mut() {
                if is_secret && (key == "data" || key == "stringData") {
                    every_string(child, "secret_data", key == "stringData", removed);
                    continue;
                }
                if keys::names_no_secret(key) {
                    json_into(child, removed, None);
                    continue;
                }
                if let Value::String(s) = child
                    && structure::is_header_name(key)
                {
                    // `"Authorization": "Bearer ..."`: read as the header it is.
                    header_value(key, s, removed);
                    continue;
                }
                let own = if key == "value" { env_kind } else { None }.or_else(|| key_kind(key));
                match child {
                    Value::String(s) => match own.or(inherited) {
                        Some(kind) if keys::holds_secret(kind, s) => {
                            replace_secret(s, kind, removed);
                        }
                        _ => json_string(s, removed),
                    },
                    // A bare `auth` names a docker config's base64 only, not a section.
                    _ => json_into(
                        child,
                        removed,
                        own.filter(|k| *k != "docker_auth").or(inherited),
                    ),
                }
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Replaces `s`, a secret of `kind`. A value that is one known token keeps its more precise
/// kind (`GITHUB_TOKEN` holding `ghp_...` says `github_token`).
fn replace_secret(s: &mut String, kind: &'static str, removed: &mut Counts) {
    let redaction = text(s);
    if is_single_placeholder(&redaction) {
        removed.merge(&redaction.removed);
        *s = redaction.into_string();
    } else {
        *s = placeholder(kind);
        removed.add(kind);
    }
}

/// Redacts a string with no sensitive name: as JSON when it is a JSON document (`{"msg":
/// "{\"password\":\"x\"}"}`), so that nested names count; as text otherwise.
fn json_string(s: &mut String, removed: &mut Counts) {
    let trimmed = s.trim_start();
    if (trimmed.starts_with('{') || trimmed.starts_with('['))
        && let Ok(mut inner) = serde_json::from_str::<Value>(s)
    {
        // Judged as JSON only: reading it as text too would see what its escapes join
        // (`"password\nx"` reads `password\nx`, one line), and its second redaction, of
        // the JSON written back, would differ from the first.
        let mut found = Counts::new();
        json_into(&mut inner, &mut found, None);
        if !found.is_empty()
            && let Ok(written) = serde_json::to_string(&inner)
        {
            removed.merge(&found);
            *s = written;
        }
        return;
    }
    let redaction = text(s);
    if let Cow::Owned(changed) = redaction.text {
        removed.merge(&redaction.removed);
        *s = changed;
    }
}

/// Redacts the value of the header `name` as the header line `name: value` would be.
fn header_value(name: &str, s: &mut String, removed: &mut Counts) {
    let line = format!("{name}: {s}");
    let redaction = text(&line);
    if let Cow::Owned(changed) = &redaction.text
        && let Some(value) = changed.strip_prefix(&format!("{name}: "))
    {
        removed.merge(&redaction.removed);
        *s = value.to_owned();
    }
}

/// Whether `text` is one placeholder and nothing else.
fn is_single_placeholder(text: &str) -> bool {
    text.starts_with(keys::PLACEHOLDER_PREFIX)
        && text.ends_with(']')
        && text.matches(']').count() == 1
}

/// Replaces every string inside `value` by a placeholder of `kind`, but those a Secret's
/// data keeps (booleans, empty values, numbers under `data`, certificates).
fn every_string(value: &mut Value, kind: &'static str, string_data: bool, removed: &mut Counts) {
    match value {
        Value::String(s) if !structure::kept_in_data(s, string_data) => {
            *s = placeholder(kind);
            removed.add(kind);
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| every_string(v, kind, string_data, removed)),
        Value::Object(map) => map
            .values_mut()
            .for_each(|v| every_string(v, kind, string_data, removed)),
        _ => {}
    }
}

#[cfg(test)]
mod tests;
