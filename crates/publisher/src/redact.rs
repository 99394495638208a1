//! Deterministic redaction of secrets: the last gate before anything leaves the secure zone.
//!
//! Everything the publisher writes to git passes through here: reports and the aggregated
//! README field by field, `status.json` and every `audit.jsonl` line string value by string
//! value (so a JSON line stays valid JSON). Each secret is replaced by `[REDACTED:<kind>]`,
//! keeping whatever names it (`password=`, `token:`, `Bearer `), so a reader still sees that
//! something was there and what it was. The rules are plain patterns, applied in a fixed order,
//! with no randomness and no state: the same input always gives the same output, and
//! redacting twice changes nothing more.
//!
//! What is caught, by kind:
//! - `private_key`, `certificate`, `pem`: PEM blocks (`-----BEGIN ...-----` to `-----END
//!   ...-----`, or to the end of the base64 when the output was truncated).
//! - `secret_data`: the values of a Kubernetes Secret's `data:` (base64-shaped values) and
//!   `stringData:` (every value) in YAML and JSON output.
//! - `kubeconfig`: `client-key-data`, `client-certificate-data` and
//!   `certificate-authority-data` values.
//! - `jwt`: `eyJ...\.eyJ...\....` (service account tokens, OIDC tokens).
//! - `bearer_token`, `basic_auth`: `Bearer <token>` and `Basic <credentials>`.
//! - `url_password`: the password in `scheme://user:password@host`.
//! - `anthropic_key` (`sk-ant-...`), `github_token` (`ghp_`, `gho_`, `ghs_`, `ghu_`, `ghr_`,
//!   `github_pat_`), `aws_access_key` (`AKIA...`, `ASIA...`), `slack_token` (`xox?-...`).
//! - `password`, `secret`, `token`, `api_key`, `access_key`, `private_key`, `credential`:
//!   the value of a key ending in one of those words, as `key=value` anywhere, as
//!   `"key": "value"` anywhere, and as a YAML `key: value` line (`token: ...` of a
//!   kubeconfig included). In structured JSON (audit events, status), string values under such
//!   keys, and every string under `data`/`stringData` of an object of `kind: Secret`.
//!
//! Known limits: a bare base64 value printed on its own (`jsonpath='{.data.x}'`) or decoded
//! output cannot be told from ordinary text. The real boundary is RBAC (no Secrets); this is
//! the second line.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::{Captures, Regex};
use serde_json::Value;

/// The start of every replacement; a value already starting with it is left alone.
const PLACEHOLDER_PREFIX: &str = "[REDACTED:";

/// The replacement for a secret of `kind`.
pub fn placeholder(kind: &str) -> String {
    format!("{PLACEHOLDER_PREFIX}{kind}]")
}

fn is_placeholder(value: &str) -> bool {
    value
        .trim_start_matches(['"', '\''])
        .starts_with(PLACEHOLDER_PREFIX)
}

/// Compiles a pattern that is a constant of this module; the unit tests compile every one.
fn regex(pattern: &str) -> Regex {
    match Regex::new(pattern) {
        Ok(regex) => regex,
        // Unreachable for the constant patterns below, which the tests exercise.
        Err(e) => panic!("invalid redaction pattern {pattern:?}: {e}"),
    }
}

/// The words that make a key sensitive, as a regex alternation. The group that matched
/// decides the kind.
const SENSITIVE_WORDS: &str = r"(?P<word>password|passwd|secret[_-]?key|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credentials?)";

static PEM: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?s)-----BEGIN (?P<label>[A-Z0-9 ]{1,64})-----(?:.*?-----END [A-Z0-9 ]{1,64}-----|(?:(?:\r?\n|\\n)[A-Za-z0-9+/=]+)*)",
    )
});

static SECRET_DATA_JSON: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r#"(?P<head>(?:"(?P<k1>data|stringData)"|\b(?P<k2>data|stringData))[ \t]*:[ \t]*\{)(?P<body>[^{}]*)\}"#,
    )
});

static SECRET_DATA_JSON_ENTRY: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r#"(?P<key>"[^"\n]*"|[A-Za-z0-9._-]+)(?P<sep>[ \t]*:[ \t]*)(?P<value>"[^"\n]*"|[^,}\s]+)"#,
    )
});

static YAML_BLOCK_START: LazyLock<Regex> = LazyLock::new(|| {
    regex(r#"^(?P<lead>[ \t]*(?:-[ \t]+)?)(?P<key>data|stringData|"data"|"stringData"):[ \t]*$"#)
});

static YAML_ENTRY: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r#"^(?P<head>[ \t]*(?:"[^"]*"|'[^']*'|[A-Za-z0-9._-]+)[ \t]*:[ \t]+)(?P<value>\S.*?)[ \t]*$"#,
    )
});

static KUBECONFIG: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r#"(?m)(?P<head>(?:^[ \t]*(?:-[ \t]+)?|")(?:client-key-data|client-certificate-data|certificate-authority-data)"?[ \t]*:[ \t]*"?)(?P<value>[A-Za-z0-9+/=]+)"#,
    )
});

static JWT: LazyLock<Regex> =
    LazyLock::new(|| regex(r"\beyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"));

static AUTH_SCHEME: LazyLock<Regex> = LazyLock::new(|| {
    regex(r"(?i)\b(?P<scheme>bearer|basic)(?P<space>[ \t]+)(?P<value>[A-Za-z0-9\-._~+/]{8,}=*)")
});

static URL_PASSWORD: LazyLock<Regex> = LazyLock::new(|| {
    regex(r"(?i)\b(?P<head>[a-z][a-z0-9+.-]{1,15}://[^\s:/@]{1,256}:)(?P<value>[^\s@/]{1,256})@")
});

/// Tokens recognisable by their shape alone, with their kind.
static VENDOR_TOKENS: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    vec![
        (regex(r"\bsk-ant-[A-Za-z0-9_-]{8,}"), "anthropic_key"),
        (regex(r"\bgh[pousr]_[A-Za-z0-9]{20,}\b"), "github_token"),
        (regex(r"\bgithub_pat_[A-Za-z0-9_]{20,}"), "github_token"),
        (regex(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), "aws_access_key"),
        (regex(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), "slack_token"),
    ]
});

static KEY_EQUALS: LazyLock<Regex> = LazyLock::new(|| {
    regex(&format!(
        r#"(?i)\b(?P<key>[A-Za-z0-9_.-]*?{SENSITIVE_WORDS})(?P<sep>["']?[ \t]*=[ \t]*)(?P<value>"[^"\n]*"|'[^'\n]*'|[^\s"'&,;)=][^\s"'&,;)]*)"#
    ))
});

static QUOTED_KEY: LazyLock<Regex> = LazyLock::new(|| {
    regex(&format!(
        r#"(?i)"(?P<key>[A-Za-z0-9_.-]*?{SENSITIVE_WORDS})"(?P<sep>[ \t]*:[ \t]*)"(?P<value>[^"\n]+)""#
    ))
});

static YAML_KEY: LazyLock<Regex> = LazyLock::new(|| {
    regex(&format!(
        r#"(?im)^(?P<lead>[ \t]*(?:-[ \t]+)?)(?P<key>[A-Za-z0-9_.-]*?{SENSITIVE_WORDS})(?P<sep>[ \t]*:[ \t]+)(?P<value>[^\s#|>&*{{\[!%@`].*?)[ \t]*$"#
    ))
});

/// The kind for a sensitive word matched by [`SENSITIVE_WORDS`].
fn word_kind(word: &str) -> &'static str {
    let word = word.to_ascii_lowercase().replace(['_', '-'], "");
    match word.as_str() {
        "password" | "passwd" => "password",
        "secret" => "secret",
        "token" => "token",
        "apikey" => "api_key",
        "accesskey" | "secretkey" => "access_key",
        "privatekey" => "private_key",
        _ => "credential",
    }
}

/// Values that name no secret (YAML nulls and booleans), left as they are.
fn is_trivial(value: &str) -> bool {
    let bare = value.trim_matches(['"', '\'']);
    bare.is_empty()
        || matches!(
            bare.to_ascii_lowercase().as_str(),
            "null" | "~" | "true" | "false" | "none" | "<none>"
        )
}

/// Whether `value` looks like base64 (what a Secret's `data` holds).
fn is_base64(value: &str) -> bool {
    let bare = value.trim_matches(['"', '\'']);
    !bare.is_empty()
        && bare.len().is_multiple_of(4)
        && bare
            .trim_end_matches('=')
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
        && bare.len() - bare.trim_end_matches('=').len() <= 2
}

/// Redacts every secret in `input`.
pub fn text(input: &str) -> String {
    let mut out: Cow<'_, str> = Cow::Borrowed(input);
    let steps: [fn(&str) -> Cow<'_, str>; 9] = [
        pem,
        secret_data_json,
        secret_data_yaml,
        kubeconfig,
        jwt,
        auth_scheme,
        url_password,
        vendor_tokens,
        key_values,
    ];
    for step in steps {
        if let Cow::Owned(changed) = step(&out) {
            out = Cow::Owned(changed);
        }
    }
    out.into_owned()
}

/// Redacts every string in `value`, and the whole string value of every sensitive key.
pub fn json(value: &mut Value) {
    match value {
        Value::String(s) => {
            let redacted = text(s);
            if redacted != *s {
                *s = redacted;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(json),
        Value::Object(map) => {
            let is_secret = map.get("kind").and_then(Value::as_str) == Some("Secret");
            for (key, child) in map.iter_mut() {
                if is_secret && (key == "data" || key == "stringData") {
                    every_string(child, "secret_data");
                    continue;
                }
                if let Some(kind) = sensitive_key(key)
                    && let Value::String(s) = child
                    && !is_trivial(s)
                    && !is_placeholder(s)
                {
                    *s = placeholder(kind);
                    continue;
                }
                json(child);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Replaces every string inside `value` by a placeholder of `kind`.
fn every_string(value: &mut Value, kind: &str) {
    match value {
        Value::String(s) if !is_placeholder(s) => *s = placeholder(kind),
        Value::Array(items) => items.iter_mut().for_each(|v| every_string(v, kind)),
        Value::Object(map) => map.values_mut().for_each(|v| every_string(v, kind)),
        _ => {}
    }
}

/// The kind of secret a JSON key names, if it names one.
fn sensitive_key(key: &str) -> Option<&'static str> {
    let normal: String = key
        .chars()
        .filter(|c| !matches!(c, '-' | '_' | '.'))
        .collect::<String>()
        .to_ascii_lowercase();
    const KUBECONFIG_KEYS: [&str; 3] = [
        "clientkeydata",
        "clientcertificatedata",
        "certificateauthoritydata",
    ];
    if KUBECONFIG_KEYS.contains(&normal.as_str()) {
        return Some("kubeconfig");
    }
    const SUFFIXES: [(&str, &str); 10] = [
        ("password", "password"),
        ("passwd", "password"),
        ("secretkey", "access_key"),
        ("secret", "secret"),
        ("token", "token"),
        ("apikey", "api_key"),
        ("accesskey", "access_key"),
        ("privatekey", "private_key"),
        ("credential", "credential"),
        ("credentials", "credential"),
    ];
    SUFFIXES
        .iter()
        .find(|(suffix, _)| normal.ends_with(suffix))
        .map(|(_, kind)| *kind)
}

fn pem(input: &str) -> Cow<'_, str> {
    PEM.replace_all(input, |caps: &Captures<'_>| {
        let label = &caps["label"];
        let kind = if label.contains("PRIVATE KEY") {
            "private_key"
        } else if label.contains("CERTIFICATE") {
            "certificate"
        } else {
            "pem"
        };
        placeholder(kind)
    })
}

fn secret_data_json(input: &str) -> Cow<'_, str> {
    SECRET_DATA_JSON.replace_all(input, |caps: &Captures<'_>| {
        let string_data = caps
            .name("k1")
            .or_else(|| caps.name("k2"))
            .is_some_and(|k| k.as_str() == "stringData");
        let body = SECRET_DATA_JSON_ENTRY.replace_all(&caps["body"], |entry: &Captures<'_>| {
            let value = &entry["value"];
            if is_placeholder(value) || !(string_data || is_base64(value)) {
                return entry[0].to_owned();
            }
            let quote = if value.starts_with('"') { "\"" } else { "" };
            format!(
                "{}{}{quote}{}{quote}",
                &entry["key"],
                &entry["sep"],
                placeholder("secret_data")
            )
        });
        format!("{}{body}}}", &caps["head"])
    })
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
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches([' ', '\t']).len()
}

fn secret_data_yaml(input: &str) -> Cow<'_, str> {
    if !input.contains("data:") && !input.contains("Data:") && !input.contains("data\":") {
        return Cow::Borrowed(input);
    }
    let mut out = String::with_capacity(input.len());
    let mut changed = false;
    let mut block: Option<DataBlock> = None;
    for line in input.split_inclusive('\n') {
        let content = line.trim_end_matches(['\n', '\r']);
        let eol = &line[content.len()..];
        let indent = indent_of(content);
        if let Some(current) = &mut block {
            if content.trim().is_empty() {
                out.push_str(line);
                continue;
            }
            if indent > current.indent {
                let entry_indent = *current.entry_indent.get_or_insert(indent);
                if indent > entry_indent && current.in_scalar {
                    out.push_str(&content[..indent]);
                    out.push_str(&placeholder("secret_data"));
                    out.push_str(eol);
                    changed = true;
                    continue;
                }
                if indent == entry_indent {
                    current.in_scalar = false;
                    if let Some(entry) = YAML_ENTRY.captures(content) {
                        let value = &entry["value"];
                        if value.starts_with(['|', '>']) {
                            // Only `stringData` holds plain text worth a block scalar; a
                            // ConfigMap's `data: {config.yaml: |}` is configuration.
                            current.in_scalar = current.string_data;
                        } else if !is_placeholder(value)
                            && (current.string_data || is_base64(value))
                        {
                            out.push_str(&entry["head"]);
                            out.push_str(&placeholder("secret_data"));
                            out.push_str(eol);
                            changed = true;
                            continue;
                        }
                    }
                }
                out.push_str(line);
                continue;
            }
            block = None;
        }
        if let Some(start) = YAML_BLOCK_START.captures(content) {
            block = Some(DataBlock {
                indent: start["lead"].len(),
                string_data: start["key"].trim_matches('"') == "stringData",
                entry_indent: None,
                in_scalar: false,
            });
        }
        out.push_str(line);
    }
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(input)
    }
}

fn kubeconfig(input: &str) -> Cow<'_, str> {
    KUBECONFIG.replace_all(input, |caps: &Captures<'_>| {
        format!("{}{}", &caps["head"], placeholder("kubeconfig"))
    })
}

fn jwt(input: &str) -> Cow<'_, str> {
    JWT.replace_all(input, placeholder("jwt").as_str())
}

fn auth_scheme(input: &str) -> Cow<'_, str> {
    AUTH_SCHEME.replace_all(input, |caps: &Captures<'_>| {
        let value = &caps["value"];
        // "Bearer authentication" or "basic information" in prose is not a credential: real
        // tokens carry digits or padding, or are long.
        let looks_secret =
            value.bytes().any(|b| b.is_ascii_digit() || b == b'=') || value.len() >= 24;
        if !looks_secret {
            return caps[0].to_owned();
        }
        let kind = if caps["scheme"].eq_ignore_ascii_case("basic") {
            "basic_auth"
        } else {
            "bearer_token"
        };
        format!("{}{}{}", &caps["scheme"], &caps["space"], placeholder(kind))
    })
}

fn url_password(input: &str) -> Cow<'_, str> {
    URL_PASSWORD.replace_all(input, |caps: &Captures<'_>| {
        if is_placeholder(&caps["value"]) {
            return caps[0].to_owned();
        }
        format!("{}{}@", &caps["head"], placeholder("url_password"))
    })
}

fn vendor_tokens(input: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(input);
    for (pattern, kind) in VENDOR_TOKENS.iter() {
        if let Cow::Owned(changed) = pattern.replace_all(&out, placeholder(kind).as_str()) {
            out = Cow::Owned(changed);
        }
    }
    out
}

fn key_values(input: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(input);
    let forms: [(&Regex, &str); 3] = [(&KEY_EQUALS, ""), (&QUOTED_KEY, "\""), (&YAML_KEY, "")];
    for (pattern, quote) in forms {
        let replaced = pattern.replace_all(&out, |caps: &Captures<'_>| {
            let value = &caps["value"];
            if is_placeholder(value) || is_trivial(value) {
                return caps[0].to_owned();
            }
            let lead = caps.name("lead").map_or("", |m| m.as_str());
            format!(
                "{lead}{quote}{}{quote}{}{quote}{}{quote}",
                &caps["key"],
                &caps["sep"],
                placeholder(word_kind(&caps["word"]))
            )
        });
        if let Cow::Owned(changed) = replaced {
            out = Cow::Owned(changed);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_redacted(input: &str, secret: &str, kind: &str) {
        let out = text(input);
        assert!(
            !out.contains(secret),
            "the secret {secret:?} survived in:\n{out}"
        );
        assert!(
            out.contains(&placeholder(kind)),
            "no [REDACTED:{kind}] in:\n{out}"
        );
        assert_eq!(text(&out), out, "redacting twice changed the text");
    }

    #[test]
    fn every_pattern_compiles() {
        for pattern in [
            &PEM,
            &SECRET_DATA_JSON,
            &SECRET_DATA_JSON_ENTRY,
            &YAML_BLOCK_START,
            &YAML_ENTRY,
            &KUBECONFIG,
            &JWT,
            &AUTH_SCHEME,
            &URL_PASSWORD,
            &KEY_EQUALS,
            &QUOTED_KEY,
            &YAML_KEY,
        ] {
            LazyLock::force(pattern);
        }
        assert_eq!(VENDOR_TOKENS.len(), 5);
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        let texts = [
            "kubectl get pods -n clusters-prod-1",
            "oc describe hostedcluster prod-1 -n clusters",
            "kubectl get secrets -n openshift-config",
            "NAME                        READY   STATUS             RESTARTS        AGE\n\
             api-server-7d9f8b6c4-xk2lp  1/1     Running            0               3d4h\n\
             etcd-0                      0/1     CrashLoopBackOff   12 (2m ago)     1h\n",
            "The kube-apiserver uses a bearer token to authenticate; Bearer authentication failed.",
            "## Findings\n\n- etcd is slow (p99 fsync 120ms)\n- 3 Secrets exist in the namespace\n",
            "metadata:\n  name: api\n  namespace: clusters-prod-1\nspec:\n  secretName: api-tls\n",
            "kind: ConfigMap\ndata:\n  config.yaml: |\n    logLevel: debug\n",
            "input_tokens=1200 output_tokens=80, tokens == 3",
            "https://console.example.com:8443/k8s/ns/default",
            "Events:\n  Warning  BackOff  2m (x12 over 1h)  kubelet  Back-off restarting failed container",
            "",
        ];
        for t in texts {
            assert_eq!(text(t), t, "ordinary text was changed");
        }
    }

    #[test]
    fn pem_blocks_are_redacted_whole() {
        let key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEAzr3xyz\nabcDEF==\n-----END RSA PRIVATE KEY-----";
        assert_redacted(
            &format!("key:\n{key}\nafter"),
            "MIIEpAIBAAKCAQEAzr3xyz",
            "private_key",
        );
        assert!(text(&format!("{key}\nafter")).ends_with("]\nafter"));
        let cert = "-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIE\n-----END CERTIFICATE-----";
        assert_redacted(cert, "MIIDdzCCAl+gAwIBAgIE", "certificate");
        // Cut off by truncated tool output: still redacted to the end of the base64.
        assert_redacted(
            "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
            "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
            "private_key",
        );
        // Escaped newlines, as in JSON printed by a tool.
        assert_redacted(
            r#"{"tls.key": "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBx\n-----END EC PRIVATE KEY-----\n"}"#,
            "MHcCAQEEIBx",
            "private_key",
        );
    }

    #[test]
    fn jwts_are_redacted() {
        let jwt = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJpc3MiOiJrdWJlcm5ldGVzIn0.c2lnbmF0dXJl-_x";
        assert_redacted(&format!("the token is {jwt}."), "c2lnbmF0dXJl", "jwt");
        assert_eq!(text(jwt), "[REDACTED:jwt]");
    }

    #[test]
    fn bearer_and_basic_credentials_are_redacted() {
        assert_redacted(
            "curl -H 'Authorization: Bearer sha256~AbCdEf0123456789'",
            "sha256~AbCdEf0123456789",
            "bearer_token",
        );
        assert_redacted(
            "Authorization: Basic dXNlcjpodW50ZXIy",
            "dXNlcjpodW50ZXIy",
            "basic_auth",
        );
    }

    #[test]
    fn kubeconfig_data_and_tokens_are_redacted() {
        let kubeconfig = "users:\n- name: admin\n  user:\n    client-certificate-data: LS0tLS1CRUdJTiBDRVJU\n    client-key-data: LS0tLS1CRUdJTiBSU0Eg\n    token: sha256~kubeadmin0123\nclusters:\n- cluster:\n    certificate-authority-data: Q0FEQVRB\n";
        let out = text(kubeconfig);
        for secret in [
            "LS0tLS1CRUdJTiBDRVJU",
            "LS0tLS1CRUdJTiBSU0Eg",
            "sha256~kubeadmin0123",
            "Q0FEQVRB",
        ] {
            assert!(!out.contains(secret), "{secret} survived:\n{out}");
        }
        assert!(
            out.contains("client-key-data: [REDACTED:kubeconfig]"),
            "{out}"
        );
        assert!(out.contains("token: [REDACTED:token]"), "{out}");
        assert!(out.contains("- name: admin"), "{out}");
        assert_redacted(
            r#"{"client-key-data": "LS0tLS1CRUdJTiBSU0Eg"}"#,
            "LS0tLS1CRUdJTiBSU0Eg",
            "kubeconfig",
        );
    }

    #[test]
    fn secret_data_in_yaml_is_redacted() {
        let yaml = "apiVersion: v1\ndata:\n  password: aHVudGVyMg==\n  username: YWRtaW4=\nkind: Secret\nmetadata:\n  name: db\ntype: Opaque\n";
        let out = text(yaml);
        assert!(!out.contains("aHVudGVyMg=="), "{out}");
        assert!(!out.contains("YWRtaW4="), "{out}");
        assert!(
            out.contains(
                "  username: [REDACTED:secret_data]\nkind: Secret\nmetadata:\n  name: db\n"
            ),
            "{out}"
        );
        // In a list, and stringData with a block scalar.
        let list = "items:\n- apiVersion: v1\n  data:\n    ca.crt: Y2VydA==\n  kind: Secret\n- stringData:\n    config: |\n      user=admin\n      dbpass=hunter2\n    plain: hunter3\n  kind: Secret\n";
        let out = text(list);
        for secret in ["Y2VydA==", "hunter2", "hunter3", "user=admin"] {
            assert!(!out.contains(secret), "{secret} survived:\n{out}");
        }
        assert!(out.contains("  kind: Secret\n"), "{out}");
        assert_eq!(text(&out), out);
    }

    #[test]
    fn secret_data_in_json_is_redacted() {
        let json_text = "{\n    \"apiVersion\": \"v1\",\n    \"data\": {\n        \"password\": \"aHVudGVyMg==\",\n        \"user\": \"YWRtaW4=\"\n    },\n    \"kind\": \"Secret\"\n}";
        let out = text(json_text);
        assert!(
            !out.contains("aHVudGVyMg==") && !out.contains("YWRtaW4="),
            "{out}"
        );
        assert!(
            out.contains("\"user\": \"[REDACTED:secret_data]\""),
            "{out}"
        );
        assert_redacted(
            r#"{"stringData":{"note":"plain text secret"}}"#,
            "plain text secret",
            "secret_data",
        );
    }

    #[test]
    fn key_value_secrets_are_redacted() {
        assert_redacted("connect password=hunter2 now", "hunter2", "password");
        assert_redacted("DB_PASSWORD='s3 cr3t'", "s3 cr3t", "password");
        assert_redacted("client_secret=abc123&grant=x", "abc123", "secret");
        assert_redacted("?access_token=abcdef123", "abcdef123", "token");
        assert_redacted("export API_KEY=k-123", "k-123", "api_key");
        assert_redacted(
            "aws_secret_access_key = wJalrXUtnFEMI",
            "wJalrXUtnFEMI",
            "access_key",
        );
        assert_redacted("--from-literal=password=abc", "abc", "password");
        assert_redacted(r#"{"apiKey": "k-9876"}"#, "k-9876", "api_key");
        assert_redacted("  token: abcdef0123\n", "abcdef0123", "token");
        assert_redacted("secret: \"hunter2\"\n", "hunter2", "secret");
        let out = text("password=hunter2 secret=s3");
        assert_eq!(out, "password=[REDACTED:password] secret=[REDACTED:secret]");
        // Nulls and booleans name no secret.
        assert_eq!(text("password: null"), "password: null");
    }

    #[test]
    fn vendor_tokens_are_redacted() {
        assert_redacted(
            "key sk-ant-api03-AbC_dEf-123456789",
            "sk-ant-api03",
            "anthropic_key",
        );
        assert_redacted(
            "ghp_0123456789abcdefghijABCDEFGHIJ0123",
            "ghp_0123",
            "github_token",
        );
        assert_redacted("gho_0123456789abcdefghijABCDEF", "gho_0123", "github_token");
        assert_redacted("ghs_0123456789abcdefghijABCDEF", "ghs_0123", "github_token");
        assert_redacted(
            "github_pat_11ABCDEFG0123456789_abcdefXYZ",
            "github_pat_11",
            "github_token",
        );
        assert_redacted(
            "aws AKIAIOSFODNN7EXAMPLE here",
            "AKIAIOSFODNN7EXAMPLE",
            "aws_access_key",
        );
        assert_redacted(
            "git clone https://user:s3cr3t@git.example.com/r.git",
            "s3cr3t",
            "url_password",
        );
    }

    #[test]
    fn json_values_are_redacted_and_stay_json() {
        let mut value = serde_json::json!({
            "id": "r1/hub/1/3",
            "event": "tool_result",
            "output": "password=hunter2\n\"quoted\" eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig",
            "input": {"command": "kubectl get pods", "token": "plain-token-value"},
            "env": [{"name": "GITHUB_TOKEN", "value": "ghp_0123456789abcdefghijABCDEF"}],
            "count": 3,
        });
        json(&mut value);
        let line = serde_json::to_string(&value).unwrap();
        for secret in [
            "hunter2",
            "eyJzdWIiOiIxIn0",
            "plain-token-value",
            "ghp_0123",
        ] {
            assert!(!line.contains(secret), "{secret} survived: {line}");
        }
        let back: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back["id"], "r1/hub/1/3");
        assert_eq!(back["input"]["command"], "kubectl get pods");
        assert_eq!(back["input"]["token"], "[REDACTED:token]");
        assert_eq!(back["count"], 3);

        let mut secret =
            serde_json::json!({"kind": "Secret", "data": {"a": "YQ=="}, "stringData": {"b": "x"}});
        json(&mut secret);
        assert_eq!(secret["data"]["a"], "[REDACTED:secret_data]");
        assert_eq!(secret["stringData"]["b"], "[REDACTED:secret_data]");
    }

    #[test]
    fn redaction_is_deterministic() {
        let input = "token=abc password=def Bearer abcdefgh12345678";
        assert_eq!(text(input), text(input));
    }
}
