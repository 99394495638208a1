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
