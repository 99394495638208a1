//! Which names mark their value as a secret, and which values are no secret at all.
//!
//! One decision shared by every form (`KEY=value`, `"key": "value"`, `key: value`, an env
//! entry's `name`, a JSON object key), so YAML, JSON, logfmt and `kubectl describe` agree.

/// The start of every replacement; a value already starting with it is left alone.
pub(crate) const PLACEHOLDER_PREFIX: &str = "[REDACTED:";

/// Whether `value` (perhaps quoted) is already a replacement.
pub(crate) fn is_placeholder(value: &str) -> bool {
    value
        .trim_start_matches(['"', '\'', ' ', '\t'])
        .starts_with(PLACEHOLDER_PREFIX)
}

/// Name endings that say the value is about a secret, not the secret itself
/// (`SECRET_NAME`, `token_file`, `passwordRef`, `AUTH_URL`).
const NOT_SECRET_SUFFIXES: [&str; 24] = [
    "name",
    "names",
    "file",
    "path",
    "dir",
    "url",
    "uri",
    "endpoint",
    "host",
    "port",
    "enabled",
    "ttl",
    "timeout",
    "expiry",
    "expires",
    "expiration",
    "type",
    "mode",
    "ref",
    "length",
    "size",
    "count",
    "version",
    "policy",
];

/// Name endings (separators removed, lower case) that make a value secret, with the kind.
/// Longer endings come first so that `secretaccesskey` is not read as `accesskey`'s parent.
const SECRET_SUFFIXES: [(&str, &str); 25] = [
    ("clientkeydata", "kubeconfig"),
    ("clientcertificatedata", "kubeconfig"),
    ("certificateauthoritydata", "kubeconfig"),
    ("dockerconfigjson", "docker_auth"),
    ("dockercfg", "docker_auth"),
    ("secretaccesskey", "access_key"),
    ("sharedaccesssignature", "azure_sas"),
    ("sharedaccesskey", "azure_sas"),
    ("accountkey", "azure_storage_key"),
    ("privatekeyid", "private_key"),
    ("privatekey", "private_key"),
    ("secretkey", "access_key"),
    ("accesskey", "access_key"),
    ("apikey", "api_key"),
    ("password", "password"),
    ("passwd", "password"),
    ("passphrase", "password"),
    ("pwd", "password"),
    ("secret", "secret"),
    ("token", "token"),
    ("credentials", "credential"),
    ("credential", "credential"),
    ("cookie", "cookie"),
    ("auth", "credential"),
    ("passcode", "password"),
];

/// Short words that make a value secret only as a whole name or as its last segment
/// (`PIN`, `DB_PASS`, `dbPass`, `ADMIN_PW`, `hash_salt`, `HMAC`, `STORAGE_SAS`), never
/// inside a longer word (`bypass`, `spin`, `compass`).
const SECRET_LAST_SEGMENTS: [(&str, &str); 7] = [
    ("pass", "password"),
    ("passcode", "password"),
    ("pw", "password"),
    ("pin", "password"),
    ("salt", "secret"),
    ("hmac", "secret"),
    ("sas", "azure_sas"),
];

/// Segments of an upper-case environment variable name that make its value secret wherever
/// they stand (`DB_PASSWORD_PROD`, `STRIPE_KEY`), with the kind.
const ENV_SEGMENTS: [(&str, &str); 18] = [
    ("PASSWORD", "password"),
    ("PASSWD", "password"),
    ("PASSPHRASE", "password"),
    ("PWD", "password"),
    ("SECRET", "secret"),
    ("TOKEN", "token"),
    ("APIKEY", "api_key"),
    ("CREDENTIAL", "credential"),
    ("CREDENTIALS", "credential"),
    ("AUTH", "credential"),
    ("KEY", "key"),
    ("PASS", "password"),
    ("PASSCODE", "password"),
    ("PW", "password"),
    ("PIN", "password"),
    ("SALT", "secret"),
    ("HMAC", "secret"),
    ("SAS", "azure_sas"),
];

/// The last segment of `name`, split at `_`, `-`, `.`, blanks and a lower-to-upper case
/// change (`dbPass` ends in `Pass`).
fn last_segment(name: &str) -> &str {
    let bytes = name.as_bytes();
    let mut start = 0;
    for i in 0..bytes.len() {
        let b = bytes[i];
        if matches!(b, b'_' | b'-' | b'.' | b' ' | b'/' | b':') {
            start = i + 1;
        } else if i > 0 && b.is_ascii_uppercase() && bytes[i - 1].is_ascii_lowercase() {
            start = i;
        }
    }
    &name[start..]
}

/// The kind of secret the value of `name` is, if `name` marks one.
pub(crate) fn key_kind(name: &str) -> Option<&'static str> {
    let name = name.trim_matches(['"', '\'', '-', ' ']);
    if name.is_empty() || name.len() > 128 {
        return None;
    }
    let normal: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if normal == "auth" {
        // A docker config's `auths.<registry>.auth` is base64 of `user:password`.
        return Some("docker_auth");
    }
    if NOT_SECRET_SUFFIXES.iter().any(|s| normal.ends_with(s)) {
        return None;
    }
    let last = last_segment(name);
    if let Some((_, kind)) = SECRET_LAST_SEGMENTS
        .iter()
        .find(|(s, _)| last.eq_ignore_ascii_case(s))
    {
        return Some(kind);
    }
    if let Some((_, kind)) = SECRET_SUFFIXES.iter().find(|(s, _)| normal.ends_with(s)) {
        // `PWD` alone is the working directory, and `*author` / `*oauth` plain words are
        // caught by the suffix only when the word is the whole segment.
        if normal == "pwd" || normal == "oldpwd" {
            return None;
        }
        return Some(kind);
    }
    // Environment variable names: the sensitive word may stand anywhere, and `*_KEY` is how
    // such variables are named. Lower-case `key` is left alone: tolerations, labels and
    // sort keys are everywhere in Kubernetes output.
    let is_env = name
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        && name.contains('_');
    if is_env {
        let segments: Vec<&str> = name.split('_').filter(|s| !s.is_empty()).collect();
        for (i, segment) in segments.iter().enumerate() {
            if let Some((_, kind)) = ENV_SEGMENTS.iter().find(|(s, _)| s == segment) {
                // `KEY` first (`KEY_ID`) or `PWD` alone names no secret.
                if (*segment == "KEY" && i == 0) || segments.len() == 1 {
                    continue;
                }
                return Some(kind);
            }
        }
    }
    None
}

/// Values that hold no secret: YAML nulls and booleans, `kubectl describe` placeholders
/// (`<none>`, `<set to the key 'password' in secret 'db'>`, `9 bytes`), and references to
/// another variable (`$(DB_PASSWORD)`, `${TOKEN}`).
pub(crate) fn is_trivial(value: &str) -> bool {
    let bare = value.trim().trim_matches(['"', '\'']).trim();
    if bare.is_empty() || is_placeholder(bare) {
        return true;
    }
    if bare.starts_with('<') || bare.starts_with("$(") || bare.starts_with("${") {
        return true;
    }
    if let Some(n) = bare.strip_suffix(" bytes")
        && n.bytes().all(|b| b.is_ascii_digit())
    {
        return true;
    }
    // Compared without allocating: a long value costs nothing here.
    [
        "null", "~", "true", "false", "none", "yes", "no", "on", "off", "{}", "[]", "\"\"", "''",
    ]
    .iter()
    .any(|word| bare.eq_ignore_ascii_case(word))
}

/// Whether `value` is a number (`3600`, `1.5`, `-1`): a count, a port, a duration in
/// seconds, configuration rather than a secret, except under a password or PIN's name.
pub(crate) fn is_number(value: &str) -> bool {
    let bare = value.trim().trim_matches(['"', '\'']).trim();
    let digits = bare.strip_prefix('-').unwrap_or(bare);
    !digits.is_empty()
        && digits.len() <= 20
        && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && digits.bytes().any(|b| b.is_ascii_digit())
}

/// The kind of secret `value` is when it stands under `name`, or `None` when the name
/// marks no secret or the value holds none: the one decision every `name`/value form
/// shares. A number is a secret only under a password's name (a PIN, a numeric password);
/// a bare `auth` (a docker config's) holds base64, so `auth=failed` is a word.
pub(crate) fn secret_kind(name: &str, value: &str) -> Option<&'static str> {
    let kind = key_kind(name)?;
    holds_secret(kind, value).then_some(kind)
}

/// Whether `value`, standing where a secret of `kind` would, holds one: not a boolean, an
/// empty value or a placeholder, not a number unless `kind` is a password's, not base64 of
/// certificates (public), and for a docker config's `auth`, base64.
pub(crate) fn holds_secret(kind: &str, value: &str) -> bool {
    if is_trivial(value)
        || (kind != "password" && is_number(value))
        || crate::decode::is_public_pem_base64(value)
    {
        return false;
    }
    if kind == "docker_auth" {
        // base64 of `user:password`, never a plain lower-case word (`required`, `disabled`).
        let bare = value.trim().trim_matches(['"', '\'']);
        return bare.len() >= 8 && is_base64(bare) && !bare.bytes().all(|b| b.is_ascii_lowercase());
    }
    true
}

/// Whether `name` says its value is about a secret or a setting, not a secret
/// (`mode`, `type`, `enabled`, `secretName`, `tokenTTL`): under a secret's name
/// (`{"authorization": {"mode": "Webhook"}}`) such a value is kept.
pub(crate) fn names_no_secret(name: &str) -> bool {
    let normal: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .take(129)
        .collect();
    NOT_SECRET_SUFFIXES.iter().any(|s| normal.ends_with(s))
}

/// Whether `value` looks like base64 (what a Secret's `data` holds).
pub(crate) fn is_base64(value: &str) -> bool {
    let bare = value.trim_matches(['"', '\'']);
    !bare.is_empty()
        && bare.len().is_multiple_of(4)
        && bare
            .trim_end_matches('=')
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
        && bare.len() - bare.trim_end_matches('=').len() <= 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_mark_secrets() {
        for (name, kind) in [
            ("DB_PASSWORD", "password"),
            ("password", "password"),
            ("dbPassword", "password"),
            ("DB_PASSWORD_PROD", "password"),
            ("client_secret", "secret"),
            ("GITHUB_TOKEN", "token"),
            ("access-token", "token"),
            ("STRIPE_KEY", "key"),
            ("aws_secret_access_key", "access_key"),
            ("AccountKey", "azure_storage_key"),
            ("private_key_id", "private_key"),
            ("auth", "docker_auth"),
            (".dockerconfigjson", "docker_auth"),
            ("BASIC_AUTH", "credential"),
            ("DB_PWD", "password"),
            ("client-key-data", "kubeconfig"),
        ] {
            assert_eq!(key_kind(name), Some(kind), "{name}");
        }
        for name in [
            "PWD",
            "SECRET_NAME",
            "secretName",
            "token_file",
            "AUTH_URL",
            "key",
            "sortKey",
            "KEY_ID",
            "input_tokens",
            "author",
            "name",
            "tokenTTL",
        ] {
            assert_eq!(key_kind(name), None, "{name}");
        }
    }

    #[test]
    fn trivial_values() {
        for v in [
            "",
            "null",
            "<none>",
            "<set to the key 'password' in secret 'db'>  Optional: false",
            "9 bytes",
            "$(DB_PASSWORD)",
            "\"\"",
            "[REDACTED:password]",
        ] {
            assert!(is_trivial(v), "{v}");
        }
        assert!(!is_trivial("hunter2"));
    }
}
