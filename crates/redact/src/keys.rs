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
const SECRET_SUFFIXES: [(&str, &str); 24] = [
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
];

/// Segments of an upper-case environment variable name that make its value secret wherever
/// they stand (`DB_PASSWORD_PROD`, `STRIPE_KEY`), with the kind.
const ENV_SEGMENTS: [(&str, &str); 11] = [
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
];

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
    if let Some((_, kind)) = SECRET_SUFFIXES.iter().find(|(s, _)| normal.ends_with(s)) {
        // `PWD` alone is the working directory, and `*author` / `*oauth` plain words are
        // caught by the suffix only when the word is the whole segment.
        if normal == "pwd" {
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
    matches!(
        bare.to_ascii_lowercase().as_str(),
        "null" | "~" | "true" | "false" | "none" | "yes" | "no" | "{}" | "[]" | "\"\"" | "''"
    )
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
