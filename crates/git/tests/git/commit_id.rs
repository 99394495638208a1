//! `CommitId` takes full hex ids only, and says why it refused anything else.

use warroom_git::CommitId;

#[test]
fn full_hex_ids_are_accepted_and_lowered() {
    let sha1 = "0123456789abcdef0123456789abcdef01234567";
    assert_eq!(
        sha1.parse::<CommitId>().map(String::from).as_deref(),
        Ok(sha1)
    );
    let sha256 = "A".repeat(64);
    assert_eq!(
        sha256.parse::<CommitId>().map(String::from),
        Ok("a".repeat(64))
    );
}

#[test]
fn anything_else_is_refused_with_what_was_expected() {
    for (text, expected) in [
        ("", "40 (SHA-1) or 64 (SHA-256)"),
        ("HEAD", "only hexadecimal digits"),
        ("main", "only hexadecimal digits"),
        ("0123abc", "an abbreviated id is not enough"),
        (&"a".repeat(39), "40 (SHA-1) or 64 (SHA-256)"),
        (&"a".repeat(41), "40 (SHA-1) or 64 (SHA-256)"),
        (&"g".repeat(40), "only hexadecimal digits"),
        (&format!("-{}", "a".repeat(39)), "only hexadecimal digits"),
        (
            &format!("{}..{}", "a".repeat(19), "b".repeat(19)),
            "only hexadecimal digits",
        ),
        (&format!("{} ", "a".repeat(40)), "only hexadecimal digits"),
    ] {
        let err = text
            .parse::<CommitId>()
            .expect_err(&format!("{text:?} was accepted"))
            .to_string();
        assert!(
            err.contains(expected) && err.contains("is not a commit id"),
            "{text:?}: {err}"
        );
    }
}
