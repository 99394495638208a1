//! Layer 3: a long random-looking string standing just after a sensitive word ("the token
//! is 7Fq...", "using key Zm9v..."), whatever its format, when no earlier rule knew it.
//!
//! What engineers need to read is allowed through: image digests, UIDs, commit hashes,
//! resource versions and generations (digits), certificate serials and fingerprints (hex
//! with colons, which never form one candidate), Kubernetes names and paths.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;

use crate::counts::Counts;
use crate::structure::{Edits, regex};

/// A sensitive word, up to 32 characters of the same line, then a candidate of 20 or more
/// characters that base64, base64url or hex could produce.
pub(crate) static NEAR_WORD: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)(?:passw(?:or)?d|passphrase|secret|token|api[-_ ]?key|(?-u:\b)key|credential|auth)[^\r\n]{0,32}?(?-u:\b)(?P<value>[A-Za-z0-9+/_~.=-]{20,})",
    )
});

/// Shannon entropy of `s` in bits per byte.
fn entropy(s: &str) -> f64 {
    let mut counts = [0u32; 256];
    for b in s.bytes() {
        counts[usize::from(b)] += 1;
    }
    let len = s.len() as f64;
    counts
        .iter()
        .filter(|&&n| n > 0)
        .map(|&n| {
            let p = f64::from(n) / len;
            -p * p.log2()
        })
        .sum()
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `8-4-4-4-12` hex: a Kubernetes UID or any UUID.
fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && is_hex(p))
}

/// Whether `candidate` is something an engineer reads rather than a secret.
pub(crate) fn is_allowed(candidate: &str) -> bool {
    let s = candidate;
    // Commit hashes (SHA-1, SHA-256) and image digests (`sha256:` + 64 hex).
    if is_hex(s) && (s.len() == 40 || s.len() == 64) {
        return true;
    }
    // resourceVersion, generation, timestamps.
    if s.bytes()
        .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return true;
    }
    if is_uuid(s) {
        return true;
    }
    // Base64 of certificates (`certificate-authority-data`, `ca.crt`): public.
    if crate::decode::is_public_pem_base64(s) {
        return true;
    }
    // Kubernetes names, host names, pod names (`api-7d9f8b6c4-xk2lp`): lower case in
    // dash- or dot-separated segments.
    let dns = s.split(['-', '.']).all(|seg| {
        !seg.is_empty()
            && seg
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    });
    if dns && (s.contains('-') || s.contains('.')) {
        return true;
    }
    // Paths and URLs-without-scheme: words between slashes.
    if s.contains('/') && s.split('/').all(|seg| seg.len() < 20) && !s.contains('+') {
        let lower = s.bytes().filter(u8::is_ascii_lowercase).count();
        if lower * 2 > s.len() {
            return true;
        }
    }
    false
}

/// Whether `candidate` looks random enough to be a secret.
pub(crate) fn looks_random(candidate: &str) -> bool {
    if is_allowed(candidate) {
        return false;
    }
    let upper = candidate.bytes().any(|b| b.is_ascii_uppercase());
    let lower = candidate.bytes().any(|b| b.is_ascii_lowercase());
    let digit = candidate.bytes().any(|b| b.is_ascii_digit());
    // Random base64 of 20+ characters almost always has all three classes; words,
    // identifiers and names rarely do.
    if upper && lower && digit && entropy(candidate) >= 3.5 {
        return true;
    }
    // Lower-case hex of other lengths than a commit hash (API keys, auth tokens).
    is_hex(candidate)
        && candidate.len() >= 32
        && digit
        && (lower || upper)
        && entropy(candidate) >= 3.0
}

pub(crate) fn near_word<'h>(input: &'h str, counts: &mut Counts) -> Cow<'h, str> {
    let mut edits = Edits::new(input);
    for caps in NEAR_WORD.captures_iter(input) {
        let Some(value) = caps.name("value") else {
            continue;
        };
        // Sentence punctuation and padding dots are not part of the value.
        let v = value.as_str().trim_end_matches(['.', '-']);
        if v.len() >= 20 && looks_random(v) {
            edits.redact(
                value.start()..value.start() + v.len(),
                "high_entropy",
                counts,
            );
        }
    }
    edits.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engineers_strings_are_allowed() {
        for s in [
            "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "8f2c1a4e-9b3d-4c5e-a1f2-3b4c5d6e7f80",
            "123456789012",
            "kube-apiserver-operator-7d9f8b6c4-xk2lp",
            "var/run/secrets/kubernetes.io/serviceaccount/token",
        ] {
            assert!(is_allowed(s), "{s}");
            assert!(!looks_random(s), "{s}");
        }
        assert!(looks_random("Zk9vYmFyQmF6UXV4MTIzNDU2Nzg5"));
        assert!(looks_random("9f86d081884c7d659a2feaa0c55ad015"));
    }
}
