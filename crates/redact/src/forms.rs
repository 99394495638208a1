//! Layer 1, continued: secrets found by where they stand in command lines, signed URLs,
//! YAML block scalars and `data:` URLs.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;

use crate::counts::Counts;
use crate::decode;
use crate::keys::{is_placeholder, is_trivial, key_kind};
use crate::structure::{Edits, regex};

// --- YAML block scalars ---------------------------------------------------------------------

/// `password: |` (or `>`, `|-`, `>+2`): the value is the indented lines below.
pub(crate) static YAML_BLOCK_KEY: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r#"^[ \t]*(?:-[ \t]+)?["']?(?P<key>[A-Za-z0-9_.-]{1,128})["']?[ \t]*:[ \t]*[|>][-+0-9]{0,3}[ \t]*(?:#.*)?$"#,
    )
});

/// The lines of a block scalar under a sensitive name, replaced as one value: the
/// placeholder takes the first line's place and the lines below are gone.
pub(crate) fn yaml_block_scalars<'h>(input: &'h str, counts: &mut Counts) -> Cow<'h, str> {
    struct Block {
        indent: usize,
        kind: &'static str,
        span: Option<(usize, usize)>,
    }
    fn flush(input: &str, block: Block, edits: &mut Edits<'_>, counts: &mut Counts) {
        if let Some((first, last)) = block.span
            && !is_placeholder(&input[first..last])
        {
            edits.redact(first..last, block.kind, counts);
        }
    }
    let mut edits = Edits::new(input);
    let mut block: Option<Block> = None;
    let mut offset = 0;
    for line in input.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let content = line.trim_end_matches(['\n', '\r']);
        let indent = content.len() - content.trim_start_matches([' ', '\t']).len();
        if let Some(current) = &mut block {
            if content.trim().is_empty() {
                continue;
            }
            if indent > current.indent {
                let first = current.span.map_or(start + indent, |(first, _)| first);
                current.span = Some((first, start + content.len()));
                continue;
            }
            if let Some(done) = block.take() {
                flush(input, done, &mut edits, counts);
            }
        }
        if content.contains(['|', '>'])
            && let Some(caps) = YAML_BLOCK_KEY.captures(content)
            && let Some(kind) = caps.name("key").and_then(|k| key_kind(k.as_str()))
        {
            block = Some(Block {
                indent,
                kind,
                span: None,
            });
        }
    }
    if let Some(done) = block {
        flush(input, done, &mut edits, counts);
    }
    edits.finish()
}

// --- Command-line credentials ------------------------------------------------------------------

/// A command-line value: quoted, or up to the next blank.
macro_rules! arg {
    () => {
        r#"(?P<value>'[^'\n]*'|"[^"\n]*"|[^\s'"]+)"#
    };
}

/// Credentials passed as flags: `curl -u user:pass` (and `--user`, `-U`/`--proxy-user`),
/// `mysql -ppass` (the MySQL and MariaDB clients), `ldapsearch -w pass` (and any `-D <dn>
/// ... -w pass`), `sshpass -p pass`. `--password=x` and `--password x` are keys.
pub(crate) static CLI_FLAGS: LazyLock<[(Regex, bool); 4]> = LazyLock::new(|| {
    [
        (
            regex(concat!(
                r"(?-u:\b)curl(?-u:\b)[^\n|;&]*?[ \t](?:-u|--user|-U|--proxy-user)(?:[ \t]+|=)",
                arg!()
            )),
            true,
        ),
        (
            regex(concat!(
                r"(?-u:\b)(?:mysql|mysqldump|mysqladmin|mysqlimport|mysqlshow|mysqlcheck|mariadb|mariadb-dump|mariadb-admin)(?-u:\b)[^\n|;&]*?[ \t]-p",
                arg!()
            )),
            false,
        ),
        (
            regex(concat!(
                r"(?:(?-u:\b)ldap[a-z]*(?-u:\b)|[ \t]-D[ \t])[^\n|;&]*?[ \t]-w[ \t]*",
                arg!()
            )),
            false,
        ),
        (
            regex(concat!(
                r"(?-u:\b)sshpass(?-u:\b)[^\n|;&]*?[ \t]-p[ \t]*",
                arg!()
            )),
            false,
        ),
    ]
});

pub(crate) fn cli_flags<'h>(input: &'h str, counts: &mut Counts) -> Cow<'h, str> {
    let mut text = Cow::Borrowed(input);
    for (pattern, user_colon_password) in CLI_FLAGS.iter() {
        let mut edits = Edits::new(&text);
        for caps in pattern.captures_iter(&text) {
            let Some(value) = caps.name("value") else {
                continue;
            };
            let raw = value.as_str();
            let quoted = raw.len() >= 2 && (raw.starts_with('\'') || raw.starts_with('"'));
            let (mut start, mut v) = if quoted {
                (value.start() + 1, &raw[1..raw.len() - 1])
            } else {
                (value.start(), raw)
            };
            if *user_colon_password {
                // `user:password`; `1000:1000` (a uid and gid) or `user` alone hold none.
                let Some((user, password)) = v.split_once(':') else {
                    continue;
                };
                if password.bytes().all(|b| b.is_ascii_digit())
                    && user.bytes().all(|b| b.is_ascii_digit())
                {
                    continue;
                }
                start += user.len() + 1;
                v = password;
            }
            if v.is_empty() || is_trivial(v) || v.starts_with('-') {
                continue;
            }
            edits.redact(start..start + v.len(), "password", counts);
        }
        if let Cow::Owned(changed) = edits.finish() {
            text = Cow::Owned(changed);
        }
    }
    text
}

// --- Signed URLs --------------------------------------------------------------------------------

/// Query parameters that sign a URL or carry a credential: AWS SigV4 presigned URLs
/// (`X-Amz-Signature`, `X-Amz-Credential`, `X-Amz-Security-Token`), Google Cloud Storage
/// signed URLs (`X-Goog-Signature`, `X-Goog-Credential`), Azure SAS (`sig`) and any
/// `signature=`.
pub(crate) static QUERY_SIGNATURE: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r#"(?i)(?:^|[?&;\s"'])(?P<key>x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature|x-goog-credential|signature|sig)=(?P<value>[^&\s"'#<>;]+)"#,
    )
});

pub(crate) fn query_signatures<'h>(input: &'h str, counts: &mut Counts) -> Cow<'h, str> {
    let mut edits = Edits::new(input);
    for caps in QUERY_SIGNATURE.captures_iter(input) {
        let (Some(key), Some(value)) = (caps.name("key"), caps.name("value")) else {
            continue;
        };
        let v = value.as_str();
        // A signature or credential is long; `sig=1` or `signature=none` is not one.
        if v.len() < 12 || is_trivial(v) {
            continue;
        }
        let key = key.as_str().to_ascii_lowercase();
        let kind = if key == "sig" {
            "azure_sas"
        } else if key.ends_with("credential") {
            "credential"
        } else if key.ends_with("token") {
            "token"
        } else {
            "signature"
        };
        edits.redact(value.range(), kind, counts);
    }
    edits.finish()
}

// --- data: URLs --------------------------------------------------------------------------------

/// A `data:` URL (RFC 2397): media type and parameters, then the payload, base64 when the
/// parameters end in `;base64`, percent-encoded otherwise. Ignition configs and
/// MachineConfigs inline whole files so, pull secrets included.
pub(crate) static DATA_URL: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r#"(?i)(?-u:\b)data:(?P<params>[a-z0-9!#$&^_.+/=;-]{0,256}),(?P<payload>[^\s"'<>\\`)\]]*)"#,
    )
});

/// The payload of a `data:` URL is decoded and redacted like any text (once: a `data:`
/// URL inside it is not opened again); when that finds a secret, the whole payload is
/// replaced (`data_url`). A payload that holds none (a kubelet config, a CA bundle, a
/// script) is kept.
pub(crate) fn data_urls<'h>(input: &'h str, counts: &mut Counts) -> Cow<'h, str> {
    let mut edits = Edits::new(input);
    for caps in DATA_URL.captures_iter(input) {
        let (Some(params), Some(payload)) = (caps.name("params"), caps.name("payload")) else {
            continue;
        };
        let p = payload.as_str();
        if p.is_empty() || is_placeholder(p) {
            continue;
        }
        let base64 = params
            .as_str()
            .get(params.len().saturating_sub(7)..)
            .is_some_and(|end| end.eq_ignore_ascii_case(";base64"));
        let decoded = if base64 {
            decode::base64(p)
        } else {
            decode::percent(p)
        };
        if crate::holds_secret(&String::from_utf8_lossy(&decoded)) {
            edits.redact(payload.range(), "data_url", counts);
        }
    }
    edits.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pattern_compiles() {
        LazyLock::force(&YAML_BLOCK_KEY);
        LazyLock::force(&CLI_FLAGS);
        LazyLock::force(&QUERY_SIGNATURE);
        LazyLock::force(&DATA_URL);
    }
}
