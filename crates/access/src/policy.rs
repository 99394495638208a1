//! The `WarroomPolicy` file: its types, its JSON Schema, and its field-precise validation.
//!
//! Validation works like the request file's (`warroom_proto::validate`): the bytes are read
//! as one YAML document, then the tree is walked and every problem is collected with its
//! field path (`engineers[0].keys[1]`) and what was expected. Only a file without problems
//! becomes a [`WarroomPolicy`], so code past [`parse_policy`] never re-checks a name, a
//! pattern or a key. The newtypes ([`EngineerName`], [`ClusterPattern`], [`PolicyKey`]) can
//! only be built through their checks, so a policy made by serde alone is just as safe.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_yaml_ng::{Mapping, Value};
use warroom_git::signature::SshPublicKey;
use warroom_proto::request::{MAX_TIMEOUT_SECS, MIN_TIMEOUT_SECS};
use warroom_proto::walk::{Walk, describe, join, suggestion};
use warroom_proto::{FieldError, Tool};

/// The `apiVersion` of the policy file.
pub const API_VERSION: &str = warroom_proto::API_VERSION;
/// The `kind` of the policy file.
pub const KIND: &str = "WarroomPolicy";
/// Largest policy file accepted, in bytes. Armored GPG public keys are a few KiB each, so
/// this leaves room for a few hundred engineers while refusing a runaway file.
pub const MAX_POLICY_BYTES: usize = 1024 * 1024;
/// Longest engineer or trusted-key name.
pub const MAX_NAME_LEN: usize = 128;
/// Longest cluster name or pattern (a cluster name is a DNS label).
pub const MAX_PATTERN_LEN: usize = 63;
/// Largest `maxConcurrentRequests`.
pub const MAX_CONCURRENT_LIMIT: u64 = 1000;

/// OpenSSH public key algorithms accepted for commit signing (what `ssh-keygen -Y sign`
/// can produce): `warroom-git`'s list, shared with the engineer's command.
pub use warroom_git::signature::SSH_KEY_TYPES;

/// The secure zone's policy: who may run requests, on which clusters, within which limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "WarroomPolicy")]
pub struct WarroomPolicy {
    /// Always `warroom.intility.io/v1`.
    #[schemars(regex(pattern = r"^warroom\.intility\.io/v1$"))]
    pub api_version: String,
    /// Always `WarroomPolicy`.
    #[schemars(regex(pattern = r"^WarroomPolicy$"))]
    pub kind: String,
    /// The engineers who may run requests. A request's `metadata.engineer` must be one of
    /// these names, and every commit that added or changed the request file must be signed
    /// by one of that engineer's keys.
    #[schemars(length(min = 1))]
    pub engineers: Vec<Engineer>,
    /// Engineers who may cancel requests of other engineers. Everyone may cancel their own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub admins: Vec<EngineerName>,
    /// Ceilings per cluster. Every rule whose pattern matches a cluster applies to it; the
    /// tightest wins. A cluster no rule matches has only the request format's own limits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<ClusterRule>,
    /// Limits for engineers that do not set their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<Defaults>,
    /// Keys that sign on behalf of engineers, such as GitHub's web-flow key for commits made
    /// in the web interface. Not trusted unless listed here. A commit signed by one counts
    /// as the engineer whose `emails` holds the commit's author email.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_keys: Vec<TrustedKey>,
    /// ASCII-armored GPG public keys (`gpg --armor --export FINGERPRINT`) for every GPG
    /// fingerprint listed under `keys`. Only these keys are in the keyring git verifies with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpg_public_keys: Vec<String>,
}

/// One engineer, the keys that prove a commit is theirs, and where they may investigate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Engineer {
    /// The name requests carry in `metadata.engineer`.
    pub name: EngineerName,
    /// OpenSSH public keys (`ssh-ed25519 AAAA... comment`) and GPG key fingerprints
    /// (40 hexadecimal digits) the engineer signs commits with.
    #[schemars(length(min = 1))]
    pub keys: Vec<PolicyKey>,
    /// Cluster names or patterns (`prod-cluster-*`) the engineer may target.
    #[schemars(length(min = 1))]
    pub clusters: Vec<ClusterPattern>,
    /// Author emails that identify the engineer on commits signed by a `trustedKeys` key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<String>,
    /// Most requests of this engineer that may be active (accepted and not finished) at
    /// once; `defaults.maxConcurrentRequests` when absent, unlimited when both are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_concurrent_requests: Option<u32>,
}

/// Ceilings for the clusters a pattern matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterRule {
    /// A cluster name or pattern (`prod-*`, `*`).
    pub name: ClusterPattern,
    /// Longest `spec.investigation.timeout` allowed, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 30, max = 14400))]
    pub max_timeout: Option<u64>,
    /// The only tools a request may ask for on these clusters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
}

/// Limits for engineers that do not set their own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Defaults {
    /// Most active requests per engineer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_concurrent_requests: Option<u32>,
    /// Longest session, in seconds: a session file asking for longer gets this much.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 60, max = 28800))]
    pub max_session_duration: Option<u64>,
    /// What one session's runs may cost together, in US dollars; the session ends once
    /// they cost this much.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.01, max = 10000.0))]
    pub session_budget_usd: Option<f64>,
}

/// A key that signs commits on behalf of engineers (a hosting provider's web-flow key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrustedKey {
    /// A name for messages, e.g. `github-web-flow`.
    pub name: EngineerName,
    /// The key's OpenSSH public key or GPG fingerprint.
    #[schemars(length(min = 1))]
    pub keys: Vec<PolicyKey>,
}

/// An engineer name: 1 to 128 letters, digits, `-`, `_`, `.` or `@`, starting with a letter
/// or digit. It is written into git's allowed-signers file as a principal, where `,`, `*`,
/// `?`, `!`, quotes and white space have meanings, so none of them may appear.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EngineerName(String);

impl EngineerName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Why `value` cannot be a name, or `None` when it can.
    pub fn check(value: &str) -> Option<String> {
        if value.is_empty() {
            return Some("must not be empty".to_owned());
        }
        if value.len() > MAX_NAME_LEN {
            return Some(format!(
                "is {} characters long; at most {MAX_NAME_LEN} are allowed",
                value.len()
            ));
        }
        if let Some(bad) = value
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@')))
        {
            return Some(format!(
                "contains {}; only letters, digits, `-`, `_`, `.` and `@` are allowed",
                show_char(bad)
            ));
        }
        if !value.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Some("must start with a letter or a digit".to_owned());
        }
        None
    }
}

impl TryFrom<String> for EngineerName {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        match EngineerName::check(&value) {
            None => Ok(EngineerName(value)),
            Some(problem) => Err(format!("name `{value}` {problem}")),
        }
    }
}

impl From<EngineerName> for String {
    fn from(name: EngineerName) -> String {
        name.0
    }
}

impl fmt::Display for EngineerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl JsonSchema for EngineerName {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "EngineerName".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "1 to 128 letters, digits, `-`, `_`, `.` or `@`, starting with a letter or digit.",
            "type": "string",
            "pattern": "^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$"
        })
    }
}

/// A cluster name or a pattern where `*` stands for any run of name characters
/// (`prod-cluster-*` matches `prod-cluster-7`; `*` matches every cluster).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClusterPattern(String);

impl ClusterPattern {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Why `value` cannot be a pattern, or `None` when it can.
    pub fn check(value: &str) -> Option<String> {
        if value.is_empty() {
            return Some("must not be empty".to_owned());
        }
        if value.len() > MAX_PATTERN_LEN {
            return Some(format!(
                "is {} characters long; at most {MAX_PATTERN_LEN} are allowed",
                value.len()
            ));
        }
        if let Some(bad) = value
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '*')))
        {
            return Some(format!(
                "contains {}; only letters, digits, `-`, `_` and the wildcard `*` are allowed",
                show_char(bad)
            ));
        }
        if !value.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '*') {
            return Some("must start with a letter, a digit or `*`".to_owned());
        }
        None
    }

    /// Whether the cluster `name` matches. `*` matches any run of characters, including
    /// none; everything else matches itself, case-sensitively like cluster names.
    pub fn matches(&self, name: &str) -> bool {
        glob_match(self.0.as_bytes(), name.as_bytes())
    }
}

/// Wildcard matching with `*` only, in linear time: on a mismatch, the last `*` is made to
/// swallow one more character (the classic two-pointer algorithm), so no input can make
/// matching explode the way naive backtracking can.
fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if p < pattern.len() && pattern[p] == name[n] {
            p += 1;
            n += 1;
        } else if let Some((star_p, star_n)) = star {
            p = star_p + 1;
            n = star_n + 1;
            star = Some((star_p, star_n + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == b'*')
}

impl TryFrom<String> for ClusterPattern {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        match ClusterPattern::check(&value) {
            None => Ok(ClusterPattern(value)),
            Some(problem) => Err(format!("cluster pattern `{value}` {problem}")),
        }
    }
}

impl From<ClusterPattern> for String {
    fn from(pattern: ClusterPattern) -> String {
        pattern.0
    }
}

impl fmt::Display for ClusterPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl JsonSchema for ClusterPattern {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ClusterPattern".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A cluster name, or a pattern where `*` matches any run of characters.",
            "type": "string",
            "pattern": "^[A-Za-z0-9*][A-Za-z0-9_*-]{0,62}$"
        })
    }
}

/// A key as listed in the policy: an OpenSSH public key line or a GPG fingerprint. The
/// original text is kept for serialization; [`PolicyKey::key`] is what it means.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PolicyKey {
    text: String,
    key: KeyRef,
}

/// What a [`PolicyKey`] identifies.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyRef {
    /// An OpenSSH public key (its fingerprint is the one git's `%GK` prints).
    Ssh(SshPublicKey),
    /// A GPG key, by its fingerprint: 40 (v4) or 64 (v5) upper-case hexadecimal digits.
    Gpg { fingerprint: String },
}

impl KeyRef {
    /// The fingerprint git reports for signatures by this key (`%GK`, `%GF` or `%GP`).
    pub fn fingerprint(&self) -> &str {
        match self {
            KeyRef::Ssh(key) => key.fingerprint().as_str(),
            KeyRef::Gpg { fingerprint } => fingerprint,
        }
    }
}

impl PolicyKey {
    pub fn key(&self) -> &KeyRef {
        &self.key
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Reads an OpenSSH public key line or a GPG fingerprint (spaces between groups of hex
    /// digits allowed, as `gpg --fingerprint` prints them).
    pub fn parse(text: &str) -> Result<PolicyKey, InvalidKey> {
        let expected = "expected an OpenSSH public key (`ssh-ed25519 AAAA... comment`, as in \
                        `~/.ssh/id_ed25519.pub`) or a GPG fingerprint (40 hexadecimal digits, \
                        from `gpg --fingerprint`)";
        let trimmed = text.trim();
        let mut parts = trimmed.split_whitespace();
        let first = parts.next().unwrap_or_default();
        if SSH_KEY_TYPES.contains(&first) {
            let key: SshPublicKey = trimmed
                .parse()
                .map_err(|e| InvalidKey(format!("{e}; {expected}")))?;
            return Ok(PolicyKey {
                text: text.to_owned(),
                key: KeyRef::Ssh(key),
            });
        }
        let hex: String = trimmed.chars().filter(|c| *c != ' ').collect();
        if matches!(hex.len(), 40 | 64) && hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Ok(PolicyKey {
                text: text.to_owned(),
                key: KeyRef::Gpg {
                    fingerprint: hex.to_ascii_uppercase(),
                },
            });
        }
        let shown: String = trimmed.chars().take(24).collect();
        let hint = if first.starts_with("ssh-") || first.starts_with("ecdsa-") {
            format!(
                " (`{first}` is not a supported key type; supported: {})",
                SSH_KEY_TYPES.join(", ")
            )
        } else if trimmed.contains("PRIVATE KEY") {
            " (this looks like a private key: never put one here)".to_owned()
        } else if hex.chars().all(|c| c.is_ascii_hexdigit()) && !hex.is_empty() {
            format!(
                " ({} hexadecimal digits: a key id is not enough, give the full fingerprint)",
                hex.len()
            )
        } else {
            String::new()
        };
        Err(InvalidKey(format!(
            "`{shown}` is not an OpenSSH public key or GPG fingerprint{hint}; {expected}"
        )))
    }
}

/// Why a text is not a [`PolicyKey`]: what was wrong with it and what a key looks like.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidKey(pub String);

impl TryFrom<String> for PolicyKey {
    type Error = InvalidKey;
    fn try_from(value: String) -> Result<Self, InvalidKey> {
        PolicyKey::parse(&value)
    }
}

impl From<PolicyKey> for String {
    fn from(key: PolicyKey) -> String {
        key.text
    }
}

impl JsonSchema for PolicyKey {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PolicyKey".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "An OpenSSH public key (`ssh-ed25519 AAAA... comment`) or a GPG fingerprint (40 or 64 hexadecimal digits, spaces allowed).",
            "type": "string",
            "minLength": 1
        })
    }
}

/// Who a key in the policy belongs to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KeyOwner<'p> {
    Engineer(&'p Engineer),
    Trusted(&'p TrustedKey),
}

impl WarroomPolicy {
    /// The engineer with this name.
    pub fn engineer(&self, name: &str) -> Option<&Engineer> {
        self.engineers.iter().find(|e| e.name.as_str() == name)
    }

    /// Whose key has this fingerprint (SSH `SHA256:...` or GPG hex, either case).
    pub fn key_owner(&self, fingerprint: &str) -> Option<KeyOwner<'_>> {
        let matches = |key: &PolicyKey| match key.key() {
            KeyRef::Ssh(key) => key.fingerprint().as_str() == fingerprint,
            KeyRef::Gpg { fingerprint: f } => f.eq_ignore_ascii_case(fingerprint),
        };
        if let Some(engineer) = self.engineers.iter().find(|e| e.keys.iter().any(matches)) {
            return Some(KeyOwner::Engineer(engineer));
        }
        self.trusted_keys
            .iter()
            .find(|t| t.keys.iter().any(matches))
            .map(KeyOwner::Trusted)
    }

    /// The engineer whose `emails` holds this address (compared without case).
    pub fn engineer_by_email(&self, email: &str) -> Option<&Engineer> {
        self.engineers
            .iter()
            .find(|e| e.emails.iter().any(|m| m.eq_ignore_ascii_case(email)))
    }

    /// Whether `name` is an admin.
    pub fn is_admin(&self, name: &str) -> bool {
        self.admins.iter().any(|a| a.as_str() == name)
    }

    /// The limit on an engineer's active requests, if any.
    /// What a session file asking for `asked` seconds is granted: at most
    /// `defaults.maxSessionDuration`; and the budget of its runs together.
    pub fn session_terms(&self, asked: u64) -> (u64, Option<f64>) {
        let defaults = self.defaults.as_ref();
        let duration = defaults
            .and_then(|d| d.max_session_duration)
            .map_or(asked, |max| asked.min(max));
        (duration, defaults.and_then(|d| d.session_budget_usd))
    }

    pub fn max_concurrent_requests(&self, engineer: &Engineer) -> Option<u32> {
        engineer.max_concurrent_requests.or_else(|| {
            self.defaults
                .as_ref()
                .and_then(|d| d.max_concurrent_requests)
        })
    }

    /// Every key of every engineer and trusted key, with the field it was listed at.
    pub fn all_keys(&self) -> Vec<(String, &PolicyKey)> {
        let mut keys = Vec::new();
        for (i, engineer) in self.engineers.iter().enumerate() {
            for (j, key) in engineer.keys.iter().enumerate() {
                keys.push((format!("engineers[{i}].keys[{j}]"), key));
            }
        }
        for (i, trusted) in self.trusted_keys.iter().enumerate() {
            for (j, key) in trusted.keys.iter().enumerate() {
                keys.push((format!("trustedKeys[{i}].keys[{j}]"), key));
            }
        }
        keys
    }
}

impl Engineer {
    /// Whether one of the engineer's patterns allows the cluster `name`.
    pub fn may_target(&self, name: &str) -> bool {
        self.clusters.iter().any(|p| p.matches(name))
    }
}

/// The JSON Schema of the policy file.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(WarroomPolicy))
        .expect("a generated schema is always valid JSON")
}

/// The schema as `schema/warroom-policy.schema.json` holds it: pretty, with a final newline.
pub fn json_schema_pretty() -> String {
    let mut text =
        serde_json::to_string_pretty(&json_schema()).expect("a JSON value always serializes");
    text.push('\n');
    text
}

/// Parses and validates a policy file. `path` only names the file in messages; the errors
/// carry field paths such as `engineers[0].keys[1]`, and every problem is reported at once.
pub fn parse_policy(path: &str, bytes: &[u8]) -> Result<WarroomPolicy, Vec<FieldError>> {
    let file = warroom_proto::walk::OneDocument {
        max_bytes: MAX_POLICY_BYTES,
        limited: "a policy",
        holds: "one policy",
    };
    let value = warroom_proto::walk::read_one_document(bytes, file).map_err(|message| {
        vec![FieldError {
            field: String::new(),
            message: format!("{path}: {message}"),
        }]
    })?;
    let mut check = Check::default();
    check.policy(&value);
    if !check.errors.is_empty() {
        return Err(check.walk.errors);
    }
    // The walk accepted the file, so the types must too; a failure here means the two
    // disagree, which the tests guard against.
    serde_yaml_ng::from_value(value).map_err(|e| {
        vec![FieldError {
            field: String::new(),
            message: format!("the policy does not match its types: {e}"),
        }]
    })
}

fn show_char(c: char) -> String {
    match c {
        ' ' => "a space".to_owned(),
        '\t' => "a tab".to_owned(),
        '\n' | '\r' => "a line break".to_owned(),
        c => format!("`{c}`"),
    }
}

const ROOT_FIELDS: &[&str] = &[
    "apiVersion",
    "kind",
    "engineers",
    "admins",
    "clusters",
    "defaults",
    "trustedKeys",
    "gpgPublicKeys",
];
const ENGINEER_FIELDS: &[&str] = &[
    "name",
    "keys",
    "clusters",
    "emails",
    "maxConcurrentRequests",
];
const RULE_FIELDS: &[&str] = &["name", "maxTimeout", "tools"];
const DEFAULTS_FIELDS: &[&str] = &[
    "maxConcurrentRequests",
    "maxSessionDuration",
    "sessionBudgetUsd",
];
const TRUSTED_FIELDS: &[&str] = &["name", "keys"];

/// Collects problems while walking the YAML tree.
#[derive(Default)]
struct Check {
    walk: Walk,
    /// Every key seen so far, by what it identifies, with the field that listed it first.
    keys: BTreeMap<KeyRef, String>,
    /// GPG keys seen, to require `gpgPublicKeys` when there are any.
    gpg_fields: Vec<String>,
}

impl std::ops::Deref for Check {
    type Target = Walk;
    fn deref(&self) -> &Walk {
        &self.walk
    }
}

impl std::ops::DerefMut for Check {
    fn deref_mut(&mut self) -> &mut Walk {
        &mut self.walk
    }
}

impl Check {
    /// A list field's items with their field paths; `None` when absent.
    fn list<'v>(
        &mut self,
        map: &'v Mapping,
        path: &str,
        key: &str,
        required: bool,
        what: &str,
    ) -> Option<Vec<(String, &'v Value)>> {
        let field = join(path, key);
        match self.field(map, path, key, required)? {
            Value::Sequence(items) => {
                if required && items.is_empty() {
                    self.error(&field, format!("must list at least one {what}"));
                }
                Some(
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, item)| (format!("{field}[{i}]"), item))
                        .collect(),
                )
            }
            other => {
                self.error(
                    &field,
                    format!("expected a list of {what}s, found {}", describe(other)),
                );
                None
            }
        }
    }

    /// An optional whole number within a range.
    fn number(&mut self, map: &Mapping, path: &str, key: &str, min: u64, max: u64, unit: &str) {
        let field = join(path, key);
        let Some(value) = self.field(map, path, key, false) else {
            return;
        };
        let expected = format!("expected a whole number of {unit} from {min} to {max}");
        match value.as_u64() {
            Some(n) if (min..=max).contains(&n) => {}
            Some(n) => self.error(&field, format!("{n} is out of range; {expected}")),
            None => {
                let found = match value {
                    Value::Number(n) => format!("`{n}`"),
                    other => describe(other).to_owned(),
                };
                self.error(&field, format!("{expected}, found {found}"));
            }
        }
    }

    fn name(&mut self, map: &Mapping, path: &str, what: &str) -> Option<String> {
        let value = self.string(map, path, "name", true)?;
        match EngineerName::check(value) {
            None => Some(value.to_owned()),
            Some(problem) => {
                self.error(&join(path, "name"), format!("{what} `{value}` {problem}"));
                None
            }
        }
    }

    fn pattern(&mut self, value: &Value, field: &str) -> Option<String> {
        let value = self.string_value(value, field)?;
        match ClusterPattern::check(value) {
            None => Some(value.to_owned()),
            Some(problem) => {
                self.error(field, format!("cluster pattern `{value}` {problem}"));
                None
            }
        }
    }

    fn keys(&mut self, map: &Mapping, path: &str) {
        let Some(items) = self.list(map, path, "keys", true, "key") else {
            return;
        };
        for (field, item) in items {
            let Some(text) = self.string_value(item, &field) else {
                continue;
            };
            match PolicyKey::parse(text) {
                Ok(key) => {
                    let key = key.key;
                    if let KeyRef::Gpg { .. } = key {
                        self.gpg_fields.push(field.clone());
                    }
                    if let Some(first) = self.keys.get(&key) {
                        let message = format!(
                            "the key {} is already listed at {first}; a key belongs to one \
                             engineer only, so a signature names exactly one person",
                            key.fingerprint()
                        );
                        self.error(&field, message);
                    } else {
                        self.keys.insert(key, field);
                    }
                }
                Err(invalid) => self.error(&field, invalid.to_string()),
            }
        }
    }

    fn policy(&mut self, value: &Value) {
        let Some(root) = self.mapping(value, "", ROOT_FIELDS) else {
            return;
        };
        match self.string(root, "", "apiVersion", true) {
            Some(API_VERSION) | None => {}
            Some(other) => self.error(
                "apiVersion",
                format!("unknown apiVersion `{other}`; expected `{API_VERSION}`"),
            ),
        }
        match self.string(root, "", "kind", true) {
            Some(KIND) | None => {}
            Some(other) => self.error("kind", format!("unknown kind `{other}`; expected `{KIND}`")),
        }

        let mut names: BTreeMap<String, String> = BTreeMap::new();
        let mut emails: BTreeMap<String, String> = BTreeMap::new();
        for (path, item) in self
            .list(root, "", "engineers", true, "engineer")
            .unwrap_or_default()
        {
            let Some(engineer) = self.mapping(item, &path, ENGINEER_FIELDS) else {
                continue;
            };
            if let Some(name) = self.name(engineer, &path, "engineer name") {
                if let Some(first) = names.get(&name) {
                    let message = format!("the engineer `{name}` is already listed at {first}");
                    self.error(&join(&path, "name"), message);
                } else {
                    names.insert(name, join(&path, "name"));
                }
            }
            self.keys(engineer, &path);
            for (field, item) in self
                .list(engineer, &path, "clusters", true, "cluster pattern")
                .unwrap_or_default()
            {
                self.pattern(item, &field);
            }
            for (field, item) in self
                .list(engineer, &path, "emails", false, "email")
                .unwrap_or_default()
            {
                let Some(email) = self.string_value(item, &field) else {
                    continue;
                };
                if !email.contains('@') || email.chars().any(char::is_whitespace) {
                    self.error(
                        &field,
                        format!("`{email}` is not an email address; expected `name@domain`"),
                    );
                } else if let Some(first) = emails.get(&email.to_lowercase()) {
                    let message = format!(
                        "the email `{email}` is already listed at {first}; an email must \
                         identify one engineer"
                    );
                    self.error(&field, message);
                } else {
                    emails.insert(email.to_lowercase(), field);
                }
            }
            self.number(
                engineer,
                &path,
                "maxConcurrentRequests",
                1,
                MAX_CONCURRENT_LIMIT,
                "requests",
            );
        }

        for (field, item) in self
            .list(root, "", "admins", false, "engineer name")
            .unwrap_or_default()
        {
            if let Some(admin) = self.string_value(item, &field)
                && !names.contains_key(admin)
            {
                let known: Vec<&str> = names.keys().map(String::as_str).collect();
                let hint = match suggestion(admin, &known) {
                    Some(s) => format!(" (did you mean `{s}`?)"),
                    None => String::new(),
                };
                self.error(
                    &field,
                    format!("`{admin}` is not an engineer of this policy{hint}; admins must be listed under `engineers`"),
                );
            }
        }

        let mut rules: BTreeMap<String, String> = BTreeMap::new();
        for (path, item) in self
            .list(root, "", "clusters", false, "cluster rule")
            .unwrap_or_default()
        {
            let Some(rule) = self.mapping(item, &path, RULE_FIELDS) else {
                continue;
            };
            let name_field = join(&path, "name");
            if let Some(value) = self.field(rule, &path, "name", true)
                && let Some(pattern) = self.pattern(value, &name_field)
            {
                if let Some(first) = rules.get(&pattern) {
                    let message = format!(
                        "the pattern `{pattern}` already has a rule at {first}; merge the two"
                    );
                    self.error(&name_field, message);
                } else {
                    rules.insert(pattern, name_field);
                }
            }
            self.number(
                rule,
                &path,
                "maxTimeout",
                MIN_TIMEOUT_SECS,
                MAX_TIMEOUT_SECS,
                "seconds",
            );
            for (field, item) in self
                .list(rule, &path, "tools", false, "tool")
                .unwrap_or_default()
            {
                self.tool(item, &field);
            }
        }

        if let Some(value) = self.field(root, "", "defaults", false)
            && let Some(defaults) = self.mapping(value, "defaults", DEFAULTS_FIELDS)
        {
            self.number(
                defaults,
                "defaults",
                "maxConcurrentRequests",
                1,
                MAX_CONCURRENT_LIMIT,
                "requests",
            );
            self.number(
                defaults,
                "defaults",
                "maxSessionDuration",
                60,
                warroom_proto::session::MAX_SESSION_SECS,
                "seconds",
            );
            if let Some(value) = self.field(defaults, "defaults", "sessionBudgetUsd", false) {
                match value.as_f64() {
                    Some(usd) if (0.01..=10_000.0).contains(&usd) => {}
                    _ => self.error(
                        "defaults.sessionBudgetUsd",
                        format!(
                            "expected an amount of US dollars from 0.01 to 10000, found {}",
                            describe(value)
                        ),
                    ),
                }
            }
        }

        let mut trusted: BTreeMap<String, String> = BTreeMap::new();
        for (path, item) in self
            .list(root, "", "trustedKeys", false, "trusted key")
            .unwrap_or_default()
        {
            let Some(entry) = self.mapping(item, &path, TRUSTED_FIELDS) else {
                continue;
            };
            if let Some(name) = self.name(entry, &path, "trusted key name") {
                if let Some(first) = trusted.get(&name) {
                    let message = format!("the trusted key `{name}` is already listed at {first}");
                    self.error(&join(&path, "name"), message);
                } else {
                    trusted.insert(name, join(&path, "name"));
                }
            }
            self.keys(entry, &path);
        }

        let mut armored = 0;
        for (field, item) in self
            .list(root, "", "gpgPublicKeys", false, "armored public key")
            .unwrap_or_default()
        {
            let Some(text) = self.string_value(item, &field) else {
                continue;
            };
            if text.contains("PRIVATE KEY BLOCK") {
                self.error(&field, "this is a private key: never put one here; expected the output of `gpg --armor --export FINGERPRINT`");
            } else if !(text.contains("-----BEGIN PGP PUBLIC KEY BLOCK-----")
                && text.contains("-----END PGP PUBLIC KEY BLOCK-----"))
            {
                self.error(&field, "not an ASCII-armored GPG public key; expected the output of `gpg --armor --export FINGERPRINT`, from `-----BEGIN PGP PUBLIC KEY BLOCK-----` to `-----END PGP PUBLIC KEY BLOCK-----`");
            } else {
                armored += 1;
            }
        }
        if armored == 0
            && !self
                .errors
                .iter()
                .any(|e| e.field.starts_with("gpgPublicKeys"))
        {
            for field in std::mem::take(&mut self.gpg_fields) {
                self.error(
                    &field,
                    "is a GPG fingerprint, but `gpgPublicKeys` holds no public key to verify \
                     its signatures with; add the output of `gpg --armor --export FINGERPRINT`",
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_patterns_match_like_shell_wildcards() {
        let cases = [
            ("prod-cluster-*", "prod-cluster-7", true),
            ("prod-cluster-*", "prod-cluster-", true),
            ("prod-cluster-*", "prod-cluster", false),
            ("prod-cluster-*", "xprod-cluster-7", false),
            ("*", "anything", true),
            ("*-hub", "production-hub", true),
            ("*-hub", "production-hub-2", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("production-hub", "production-hub", true),
            ("production-hub", "Production-hub", false),
            ("**", "", true),
        ];
        for (pattern, name, expected) in cases {
            let p = ClusterPattern(pattern.to_owned());
            assert_eq!(p.matches(name), expected, "{pattern} vs {name}");
        }
    }

    #[test]
    fn ssh_fingerprints_match_ssh_keygen() {
        // `ssh-keygen -lf` printed this fingerprint for this key.
        let key = PolicyKey::parse(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAS0dxjkqtXd2eq1+wjhr1VdCDTv2N80KNHgudMPEJlh a",
        );
        assert_eq!(
            key.map(|k| k.key().fingerprint().to_owned()),
            Ok("SHA256:dSP2RcYeHD7ckihPTogsvhfRk1tCDL004YfYxlte6ng".to_owned())
        );
    }

    #[test]
    fn keys_that_are_not_keys_are_refused_with_a_hint() {
        for (text, hint) in [
            ("ssh-ed25519", "not followed"),
            ("ssh-ed25519 !!!", "base64"),
            // A valid base64 blob of an RSA key labelled as ed25519.
            (
                "ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAABAQ==",
                "does not hold",
            ),
            ("ssh-dss AAAAB3NzaC1kc3M=", "not a supported key type"),
            ("B5690EEEBB952194", "full fingerprint"),
            ("-----BEGIN OPENSSH PRIVATE KEY-----", "private key"),
            ("hello", "not an OpenSSH public key or GPG fingerprint"),
        ] {
            let err = PolicyKey::parse(text).err().unwrap_or_default().0;
            assert!(err.contains(hint), "{text}: {err}");
        }
        let gpg = PolicyKey::parse("9684 79A1 AFF9 27E3 7D1A  566B B569 0EEE BB95 2194");
        assert_eq!(
            gpg.map(|k| k.key().fingerprint().to_owned()),
            Ok("968479A1AFF927E37D1A566BB5690EEEBB952194".to_owned())
        );
    }
}
