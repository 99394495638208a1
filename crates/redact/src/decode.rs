//! Decoding what a secret may hide in: base64 (a Secret's `data`, a `data:` URL) and
//! percent-encoding (a `data:,` URL). Both run in one pass over their input and never fail:
//! whatever cannot be decoded ends the output, which is all a caller needs to look inside.

/// The value of one base64 digit (standard or URL-safe alphabet).
fn digit(b: u8) -> Option<u32> {
    match b {
        b'A'..=b'Z' => Some(u32::from(b - b'A')),
        b'a'..=b'z' => Some(u32::from(b - b'a') + 26),
        b'0'..=b'9' => Some(u32::from(b - b'0') + 52),
        b'+' | b'-' => Some(62),
        b'/' | b'_' => Some(63),
        _ => None,
    }
}

/// The bytes `text` encodes in base64, up to the first character that is no base64 digit
/// (padding, a quote, the end of a cut value). Line breaks and blanks are skipped.
pub(crate) fn base64(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3 + 3);
    let mut acc = 0u32;
    let mut bits = 0u32;
    for b in text.bytes() {
        if matches!(b, b'\n' | b'\r' | b' ' | b'\t') {
            continue;
        }
        let Some(d) = digit(b) else {
            break;
        };
        acc = (acc << 6) | d;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            // Truncation intended: the byte is the top 8 of the bits gathered.
            out.push(((acc >> bits) & 0xff) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// The bytes `text` encodes with `%XX` escapes; any other character stands for itself.
pub(crate) fn percent(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).and_then(|&b| hex(b)),
                bytes.get(i + 2).and_then(|&b| hex(b)),
            )
        {
            // Two hex digits: at most 255.
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// Base64 of `-----BEGIN`, which every base64-encoded PEM file starts with.
const BASE64_PEM: &str = "LS0tLS1CRUdJTi";

/// Whether `value` is base64 of PEM certificates and other public blocks only (a
/// `tls.crt`, `ca.crt`, `ca-bundle.crt`, a kubeconfig's `certificate-authority-data`):
/// public, so kept. A bundle that also holds a private key is not.
pub(crate) fn is_public_pem_base64(value: &str) -> bool {
    let bare = value.trim().trim_matches(['"', '\'']);
    if !bare.starts_with(BASE64_PEM) {
        return false;
    }
    match String::from_utf8(base64(bare)) {
        Ok(decoded) => is_public_pem(&decoded),
        Err(_) => false,
    }
}

/// Whether `text` holds at least one PEM block and every block in it is public.
pub(crate) fn is_public_pem(text: &str) -> bool {
    let mut blocks = 0;
    for (at, _) in text.match_indices(crate::structure::PEM_BEGIN) {
        let label = pem_label(&text[at + crate::structure::PEM_BEGIN.len()..]);
        match label {
            Some(label) if is_public_label(label) => blocks += 1,
            _ => return false,
        }
    }
    blocks > 0
}

/// The label of a PEM line after `-----BEGIN ` or `-----END `: upper-case words of up to
/// 64 characters followed by `-----`.
pub(crate) fn pem_label(after: &str) -> Option<&str> {
    let len = after
        .bytes()
        .take(65)
        .take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b' ')
        .count();
    (len > 0 && len <= 64 && after[len..].starts_with("-----")).then(|| &after[..len])
}

/// PEM labels that hold nothing secret: certificates, certificate requests and revocation
/// lists, public keys, parameters and signatures. Anything else, and anything PRIVATE, is
/// redacted.
pub(crate) fn is_public_label(label: &str) -> bool {
    !label.contains("PRIVATE")
        && (label.contains("CERTIFICATE")
            || label.contains("PUBLIC KEY")
            || label.ends_with("CRL")
            || label.ends_with("PARAMETERS")
            || label.ends_with("SIGNATURE"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_percent_decode() {
        assert_eq!(base64("aHVudGVyMg=="), b"hunter2");
        assert_eq!(base64("aHVudGVy\nMg"), b"hunter2");
        assert_eq!(
            base64("LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t"),
            b"-----BEGIN CERTIFICATE-----"
        );
        assert_eq!(percent("%7B%22a%22:1%7d"), b"{\"a\":1}");
        assert_eq!(percent("100%"), b"100%");
    }

    #[test]
    fn public_pem_is_told_from_private() {
        assert!(is_public_label("CERTIFICATE"));
        assert!(is_public_label("X509 CRL"));
        assert!(!is_public_label("RSA PRIVATE KEY"));
        assert!(!is_public_label("OPENSSH PRIVATE KEY"));
        assert!(!is_public_label("PGP MESSAGE"));
        assert!(is_public_pem(
            "-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n"
        ));
        assert!(!is_public_pem(
            "-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\n"
        ));
        assert!(!is_public_pem("no block"));
    }
}
