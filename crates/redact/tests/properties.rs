//! Properties over generated input: redaction never panics and redacting its output again
//! changes nothing, for text and for JSON; neutralised Markdown stays neutral.
//!
//! Arbitrary strings alone would almost never form `key: value` lines or tokens, so most
//! inputs are built from fragments that the rules react to, mixed with arbitrary text.

use proptest::prelude::*;
use serde_json::Value;
use warroom_redact::{self as redact, markdown};

/// Pieces the rules look for, and the punctuation around them.
const FRAGMENTS: &[&str] = &[
    "password",
    "PASSWORD",
    "DB_PASSWORD",
    "token",
    "secret",
    "api_key",
    "auth",
    "Authorization",
    "Cookie",
    "X-Api-Key",
    "Bearer ",
    "Basic ",
    "key",
    "Pwd",
    "AccountKey",
    "data:",
    "stringData:",
    "kind: Secret",
    "kind: ConfigMap",
    "- name: ",
    "value: ",
    "\"name\":",
    "\"value\":",
    "=",
    ": ",
    ":",
    "\n",
    "\r\n",
    "  ",
    "- ",
    "\"",
    "'",
    "{",
    "}",
    "[",
    "]",
    ";",
    "&",
    "?sig=",
    "://u:",
    "@",
    "-----BEGIN PRIVATE KEY-----",
    "-----END PRIVATE KEY-----",
    "\\n",
    "sha256~",
    "eyJhbGciOi",
    ".eyJzdWIi",
    "ghp_",
    "AKIA",
    "xoxb-",
    "sk-ant-",
    "hvs.",
    "SG.",
    "glpat-",
    "npm_",
    "[REDACTED:",
    "[REDACTED:token]",
    "|",
    "<set to the key>",
    "aHVudGVyMg==",
    "Zk9vYmFyQmF6UXV4MTIzNDU2Nzg5",
    "0123456789abcdef0123456789abcdef",
    "hunter2",
    "é",
    "日本",
    "client-key-data: ",
    "--token ",
    "-e ",
    "hooks.slack.com/services/",
    "<img src=x>",
    "![a](http://x/y.png)",
    // The forms of issue 24.
    "PIN",
    "DB_PASS",
    "HMAC",
    "pass=",
    "\\\"password\\\":\\\"",
    "\\\"",
    "password: |\n    ",
    ": >\n  ",
    "-----BEGIN CERTIFICATE-----",
    "-----END CERTIFICATE-----",
    "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t",
    "data:text/plain;base64,",
    "data:,",
    "eyJhdXRocyI6",
    "%22auth%22%3A%22",
    "curl -u ",
    "mysql -p",
    "ldapsearch -w ",
    " -D ",
    "sshpass -p ",
    "X-Amz-Signature=",
    "&sig=",
    "https://u:p@ss/w@",
    "authorization",
    "{\"mode\":\"Webhook\"}",
    "PWD=",
    "true",
    "3600",
    "credentials",
];

fn fragment_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => proptest::sample::select(FRAGMENTS).prop_map(str::to_owned),
        2 => "[A-Za-z0-9+/=_.~-]{1,40}",
        1 => any::<String>(),
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        proptest::sample::select(
            &[
                "password",
                "token",
                "name",
                "value",
                "kind",
                "data",
                "stringData",
                "auth",
                "env",
                "Authorization",
                "client-key-data",
                "note",
                "credentials",
                "pass",
                "PIN",
                "hmac",
                "mode",
                "authorization",
                "msg",
            ][..]
        )
        .prop_map(str::to_owned),
        "[a-zA-Z_]{1,12}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        Just(Value::String("Secret".to_owned())),
        Just(Value::String("DB_PASSWORD".to_owned())),
        fragment_text().prop_map(Value::String),
        // A string that is itself a JSON document, as a log line's message.
        fragment_text()
            .prop_map(|t| Value::String(serde_json::json!({"password": t, "m": t}).to_string())),
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn text_redaction_is_idempotent_on_fragments(input in fragment_text()) {
        let once = redact::text(&input).into_string();
        let twice = redact::text(&once);
        prop_assert_eq!(&*twice, once.as_str());
        prop_assert!(twice.removed.is_empty(), "removed more the second time: {:?}", twice.removed);
    }

    #[test]
    fn text_redaction_is_idempotent_on_arbitrary_strings(input in any::<String>()) {
        let once = redact::text(&input).into_string();
        prop_assert_eq!(&*redact::text(&once), once.as_str());
    }

    #[test]
    fn json_redaction_is_idempotent(mut value in json_value()) {
        redact::json(&mut value);
        let once = value.clone();
        let removed = redact::json(&mut value);
        prop_assert_eq!(&value, &once);
        prop_assert!(removed.is_empty(), "removed more the second time: {:?}", removed);
    }

    #[test]
    fn neutralised_markdown_is_inert_and_stable(input in fragment_text()) {
        let once = markdown::neutralize(&input);
        prop_assert!(markdown::is_inert(&once), "still loads: {:?}", once);
        prop_assert_eq!(markdown::neutralize(&once), once);
    }
}

proptest! {
    // Fewer cases: each redacts JSON or text twice, and the suite shares two loaded cores.
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn json_redaction_keeps_the_shape(value in json_value()) {
        let mut redacted = value.clone();
        redact::json(&mut redacted);
        prop_assert!(same_shape(&value, &redacted), "{} became {}", value, redacted);
    }

    #[test]
    fn redacted_then_cut_text_fits_and_splits_no_placeholder(input in fragment_text(), max in 0usize..600) {
        let whole = redact::text(&input).into_string();
        let cut = redact::text_truncated(&input, max);
        prop_assert!(cut.len() <= max, "{} bytes for {}", cut.len(), max);
        let body = cut.strip_suffix(redact::TRUNCATION_MARKER).unwrap_or(&cut);
        prop_assert!(whole.starts_with(body), "{:?} is no prefix of {:?}", body, whole);
        // No placeholder of the whole text (`[REDACTED:` + kind + `]`) straddles the cut.
        let ok = match whole[..body.len()].rfind("[REDACTED:") {
            Some(at) => {
                let kind = whole[at + 10..]
                    .bytes()
                    .take_while(|b| b.is_ascii_lowercase() || *b == b'_')
                    .count();
                let close = at + 10 + kind;
                !(whole.as_bytes().get(close) == Some(&b']') && close >= body.len())
            }
            None => true,
        };
        prop_assert!(ok, "split placeholder: {:?}", body);
    }
}

/// Whether `b` has the shape of `a`: the same keys, array lengths and value types.
fn same_shape(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_shape(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same_shape(v, w))
        }
        (Value::String(_), Value::String(_))
        | (Value::Number(_), Value::Number(_))
        | (Value::Bool(_), Value::Bool(_))
        | (Value::Null, Value::Null) => true,
        _ => false,
    }
}
