//! `--check`, the same for every daemon: read the configuration and every file it names, report
//! every problem at once (one line each, naming the flag, the file and what was expected),
//! touch no network, and exit 0 with a short `ok: <summary>` or 1, as `nginx -t` and
//! `promtool check config` do.
//!
//! The readers of the files named by the common flags (the NKey seed, the credentials, the
//! TLS CA, certificate and key) live here, so that start-up and `--check` judge a file the
//! same way.

use std::path::Path;
use std::process::ExitCode;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Prints what `--check` found and returns the exit code: `ok: <summary>` on stdout and 0, or
/// the problems on stderr (one per line, each after `<program>: `) and 1.
pub fn report(program: &str, outcome: Result<String, crate::config::InvalidConfig>) -> ExitCode {
    match outcome {
        Ok(summary) => {
            println!("ok: {summary}");
            ExitCode::SUCCESS
        }
        Err(invalid) => {
            for line in invalid.to_string().lines() {
                eprintln!("{program}: {}", line.trim_start());
            }
            ExitCode::FAILURE
        }
    }
}

/// Parses the daemon's command line. With `--check`, a command line clap refuses (a missing
/// required flag, a value that does not parse) is a failed check: its message and exit 1,
/// not clap's usage exit 2, so that `--check` always answers 0 or 1. `--help` and
/// `--version` behave as usual.
pub fn parse_args<C: clap::Parser>() -> Result<C, ExitCode> {
    match C::try_parse() {
        Ok(config) => Ok(config),
        Err(e) if e.use_stderr() && std::env::args_os().any(|arg| arg == "--check") => {
            let _ = e.print();
            Err(ExitCode::FAILURE)
        }
        Err(e) => e.exit(),
    }
}

/// Problems with the file of `flag` as an NKey user seed (`SU...`, as `warroom-admin
/// nats-auth` writes it).
pub fn nkey_seed(flag: &str, path: &Path) -> Option<String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => return Some(format!("{flag} {}: cannot read it: {e}", path.display())),
    };
    let seed = text.trim();
    if !seed.starts_with("SU") {
        return Some(format!(
            "{flag} {}: expected an NKey user seed (one line starting with `SU`, as \
             `warroom-admin nats-auth` writes it)",
            path.display()
        ));
    }
    nkeys::KeyPair::from_seed(seed)
        .err()
        .map(|e| format!("{flag} {}: not a valid NKey user seed: {e}", path.display()))
}

/// Problems with the file of `flag` as a NATS credentials file (a user JWT and its NKey
/// seed, each between `-----BEGIN ...-----` and `------END ...------` lines).
pub fn creds(flag: &str, path: &Path) -> Option<String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => return Some(format!("{flag} {}: cannot read it: {e}", path.display())),
    };
    let section = |marker: &str| {
        let mut lines = text.lines().skip_while(|l| !l.contains(marker));
        lines.next()?;
        lines
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("---"))
            .map(str::to_owned)
    };
    let jwt = section("BEGIN NATS USER JWT");
    let seed = section("BEGIN USER NKEY SEED");
    let problem = match (jwt, seed) {
        (None, _) => "has no `-----BEGIN NATS USER JWT-----` section".to_owned(),
        (_, None) => "has no `-----BEGIN USER NKEY SEED-----` section".to_owned(),
        (Some(_), Some(seed)) => match nkeys::KeyPair::from_seed(&seed) {
            Ok(_) => return None,
            Err(e) => format!("its NKey seed is not valid: {e}"),
        },
    };
    Some(format!(
        "{flag} {}: {problem}; expected a NATS credentials file (`.creds`)",
        path.display()
    ))
}

/// Problems with the TLS files: the CA (`--nats-tls-ca`) holds PEM certificates, the client
/// certificate (`--nats-tls-cert`) holds one and the key (`--nats-tls-key`) is a private key
/// that matches it.
pub fn tls(ca: Option<&Path>, cert: Option<&Path>, key: Option<&Path>) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(ca) = ca {
        match certificates("--nats-tls-ca", ca) {
            Ok(certs) => {
                let mut roots = rustls::RootCertStore::empty();
                let (_, refused) = roots.add_parsable_certificates(certs);
                if refused > 0 || roots.is_empty() {
                    problems.push(format!(
                        "--nats-tls-ca {}: {refused} certificate(s) cannot be used as a CA",
                        ca.display()
                    ));
                }
            }
            Err(problem) => problems.push(problem),
        }
    }
    let certs = cert.map(|cert| certificates("--nats-tls-cert", cert));
    let key_der = key.map(|path| {
        PrivateKeyDer::from_pem_file(path).map_err(|e| {
            format!(
                "--nats-tls-key {}: not a PEM private key ({e}); expected an unencrypted \
                 PKCS#8, PKCS#1 or SEC1 key",
                path.display()
            )
        })
    });
    if let Some(Err(problem)) = &certs {
        problems.push(problem.clone());
    }
    if let Some(Err(problem)) = &key_der {
        problems.push(problem.clone());
    }
    if let (Some(Ok(certs)), Some(Ok(key_der)), Some(cert_path), Some(key_path)) =
        (certs, key_der, cert, key)
    {
        let provider = rustls::crypto::ring::default_provider();
        if let Err(e) = rustls::sign::CertifiedKey::from_der(certs, key_der, &provider) {
            problems.push(format!(
                "--nats-tls-key {} does not match --nats-tls-cert {}: {e}",
                key_path.display(),
                cert_path.display()
            ));
        }
    }
    problems
}

/// The PEM certificates of the file of `flag`; at least one.
fn certificates(flag: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            format!(
                "{flag} {}: cannot read PEM certificates: {e}",
                path.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "{flag} {}: holds no certificate; expected PEM (`-----BEGIN CERTIFICATE-----`)",
            path.display()
        ));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA, and a certificate it signed with that certificate's key and another key.
    fn tls_files(dir: &Path) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::default();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["gateway".to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        for (name, text) in [
            ("ca.pem", ca_cert.pem()),
            ("cert.pem", cert.pem()),
            ("key.pem", key.serialize_pem()),
            ("other-key.pem", other.serialize_pem()),
            ("junk.pem", "hello\n".to_owned()),
        ] {
            std::fs::write(dir.join(name), text).unwrap();
        }
    }

    #[test]
    fn tls_files_are_read_as_pem_and_the_key_must_match_the_certificate() {
        let dir = tempfile::tempdir().unwrap();
        tls_files(dir.path());
        let at = |name: &str| dir.path().join(name);
        let (ca, cert, key) = (at("ca.pem"), at("cert.pem"), at("key.pem"));
        assert_eq!(
            tls(Some(&ca), Some(&cert), Some(&key)),
            Vec::<String>::new()
        );

        let mismatch = tls(Some(&ca), Some(&cert), Some(&at("other-key.pem")));
        assert_eq!(mismatch.len(), 1, "{mismatch:?}");
        assert!(
            mismatch[0].starts_with("--nats-tls-key ") && mismatch[0].contains("does not match"),
            "{mismatch:?}"
        );

        let junk = at("junk.pem");
        let all = tls(Some(&junk), Some(&junk), Some(&junk));
        assert_eq!(all.len(), 3, "{all:?}");
        for (line, flag) in all
            .iter()
            .zip(["--nats-tls-ca", "--nats-tls-cert", "--nats-tls-key"])
        {
            assert!(
                line.starts_with(flag) && line.contains("junk.pem"),
                "{all:?}"
            );
        }
    }

    #[test]
    fn seeds_and_credentials_are_parsed() {
        let dir = tempfile::tempdir().unwrap();
        let seed = nkeys::KeyPair::new_user().seed().unwrap();
        let good = dir.path().join("good.nk");
        std::fs::write(&good, format!("{seed}\n")).unwrap();
        assert_eq!(nkey_seed("--nats-nkey", &good), None);
        let bad = dir.path().join("bad.nk");
        std::fs::write(&bad, "SUAAAA\n").unwrap();
        let problem = nkey_seed("--nats-nkey", &bad).unwrap();
        assert!(
            problem.starts_with("--nats-nkey ") && problem.contains("bad.nk"),
            "{problem}"
        );

        let creds = dir.path().join("user.creds");
        std::fs::write(
            &creds,
            format!(
                "-----BEGIN NATS USER JWT-----\neyJ0eXAi\n------END NATS USER JWT------\n\n\
                 -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n"
            ),
        )
        .unwrap();
        assert_eq!(creds_problem(&creds), None);
        std::fs::write(&creds, "nothing\n").unwrap();
        assert!(creds_problem(&creds).unwrap().contains("NATS USER JWT"));
    }

    fn creds_problem(path: &Path) -> Option<String> {
        creds("--nats-creds", path)
    }
}
