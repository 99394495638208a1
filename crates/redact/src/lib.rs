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
//!    - `kubeconfig`: `client-key-data`, `client-certificate-data`,
//!      `certificate-authority-data`; a kubeconfig's `token:`/`password:` are caught as keys.
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
//!    - `private_key`, `certificate`, `pem`: PEM and OpenSSH blocks, also with escaped
//!      newlines (`\n` inside JSON) and when cut off before their `-----END`.
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
//! scan) only when its trigger matched somewhere in the input.
//!
//! # Known limits
//!
//! - A bare base64 value printed on its own (`jsonpath='{.data.password}'`) or decoded
//!   output with no name beside it cannot be told from ordinary text.
//! - A password with no name beside it, short or made of words, is not found.
//! - A value with spaces after `key=` is cut at the first space unless quoted.
//! - Values that look like file paths (`./key.pem`, `/etc/secret/x`) are kept.
//! - The real boundary is RBAC (no Secrets): this is the second line.
//!
//! [`markdown::neutralize`] makes a report safe to render: no remote image, no raw HTML.

mod counts;
mod entropy;
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
use keys::{is_placeholder, is_trivial, key_kind};

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
/// somewhere in the input for it to run. A trigger is never narrower than its rule.
const STEPS: [(&str, Step); 11] = [
    (r"-----BEGIN ", structure::pem),
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
        r#"(?i)name"?[ \t]*:[ \t]*["']?[A-Za-z0-9_.-]*(?:pass|pwd|secret|token|key|auth|credential|cookie|docker)"#,
        structure::env,
    ),
    (
        r"(?i)(?:password|pwd|accountkey|sharedaccesskey|sharedaccesssignature)[ \t]*=",
        structure::connection_strings,
    ),
    (
        r"://[^\s:/@]{0,256}:[^\s@/]{1,256}@",
        structure::url_password,
    ),
    // The token rules run here, between the structure above and the keys below, so that
    // `GITHUB_TOKEN=ghp_...` says `github_token` rather than `token`.
    (r"(?i)(?:bearer|basic)[ \t]", structure::auth_scheme),
    (
        r"(?i)(?:pass|pwd|secret|token|key|auth|credential|cookie|docker)",
        structure::key_values,
    ),
    (
        r"(?i)(?:passw(?:or)?d|passphrase|secret|token|api[-_ ]?key|key|credential|auth)",
        entropy::near_word,
    ),
];

/// Where the token rules run among [`STEPS`]: before this index.
const TOKENS_BEFORE_STEP: usize = 8;

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
        let next = match round(&current, &mut removed) {
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

/// One pass of every rule whose trigger matched.
fn round<'h>(input: &'h str, counts: &mut Counts) -> Cow<'h, str> {
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
            && let Cow::Owned(changed) = step(&text, counts)
        {
            text = Cow::Owned(changed);
        }
    }
    text
}

/// Redacts every string in `value` and the whole string value of every sensitive key; a
/// JSON document stays valid JSON with the same shape.
pub fn json(value: &mut Value) -> Counts {
    let mut removed = Counts::new();
    json_into(value, &mut removed);
    removed
}

fn json_into(value: &mut Value, removed: &mut Counts) {
    match value {
        Value::String(s) => {
            let redaction = text(s);
            if let Cow::Owned(changed) = redaction.text {
                removed.merge(&redaction.removed);
                *s = changed;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| json_into(v, removed)),
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
                    every_string(child, "secret_data", removed);
                    continue;
                }
                let kind = if key == "value" { env_kind } else { None }.or_else(|| key_kind(key));
                if let Some(kind) = kind
                    && let Value::String(s) = child
                    && !is_trivial(s)
                {
                    // A value that is one known token keeps its more precise kind
                    // (`GITHUB_TOKEN` holding `ghp_...` says `github_token`).
                    let redaction = text(s);
                    if is_single_placeholder(&redaction) {
                        removed.merge(&redaction.removed);
                        *s = redaction.into_string();
                    } else {
                        *s = placeholder(kind);
                        removed.add(kind);
                    }
                    continue;
                }
                json_into(child, removed);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Whether `text` is one placeholder and nothing else.
fn is_single_placeholder(text: &str) -> bool {
    text.starts_with(keys::PLACEHOLDER_PREFIX)
        && text.ends_with(']')
        && text.matches(']').count() == 1
}

/// Replaces every string inside `value` by a placeholder of `kind`.
fn every_string(value: &mut Value, kind: &'static str, removed: &mut Counts) {
    match value {
        Value::String(s) if !is_placeholder(s) => {
            *s = placeholder(kind);
            removed.add(kind);
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| every_string(v, kind, removed)),
        Value::Object(map) => map
            .values_mut()
            .for_each(|v| every_string(v, kind, removed)),
        _ => {}
    }
}

#[cfg(test)]
mod tests;
