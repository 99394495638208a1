//! TLS files for NATS: a CA, a server certificate for the given hosts, and a client
//! certificate per component (for mutual TLS), plus the server's `tls` block.
//!
//! The server certificate carries both the serverAuth and the clientAuth usage, because the
//! same certificate serves the cluster's routes (`cluster { tls { verify: true } }`), where
//! a node dialling another is that node's client. Its names (`--tls-hosts`) must therefore
//! cover the route URLs' hosts as well as the client URLs' hosts.
//!
//! Files: `ca.pem`, `ca-key.pem` (keep it offline after use: it signs new certificates),
//! `server.pem`, `server-key.pem`, `<component>.pem`, `<component>-key.pem` and
//! `nats-tls.conf`. With `keep_existing`, an existing CA signs only the certificates that are
//! missing.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::nats_auth::{write_file, write_private};
use crate::permissions::Component;
use crate::{Error, Result};

/// The files whose presence means a CA was already made here.
pub const FILES_OF_THE_CA: [&str; 2] = ["ca.pem", "ca-key.pem"];
/// The server's `tls` block.
pub const TLS_CONF: &str = "nats-tls.conf";

/// What was written.
#[derive(Debug, Clone)]
pub struct Written {
    pub files: Vec<PathBuf>,
}

impl Written {
    pub fn summary(&self) -> Vec<String> {
        self.files
            .iter()
            .map(|f| format!("wrote {}", f.display()))
            .collect()
    }
}

/// Makes (or reuses) the CA and writes the certificates that are missing, or all of them
/// unless `keep_existing`.
pub fn generate(
    out: &Path,
    hosts: &[String],
    server_dir: &Path,
    components: &[Component],
    keep_existing: bool,
) -> Result<Written> {
    let mut files = Vec::new();
    let (ca_pem, ca_key_pem) = (out.join("ca.pem"), out.join("ca-key.pem"));
    let ca_key = if keep_existing && ca_pem.exists() && ca_key_pem.exists() {
        let text = std::fs::read_to_string(&ca_key_pem).map_err(|source| Error::Io {
            action: "read the CA key",
            path: ca_key_pem.clone(),
            source,
        })?;
        KeyPair::from_pem(&text).map_err(|source| Error::Tls {
            what: format!("CA from {}", ca_key_pem.display()),
            source,
        })?
    } else {
        let key = new_key("CA")?;
        let cert = ca_params().self_signed(&key).map_err(|source| Error::Tls {
            what: "CA".to_owned(),
            source,
        })?;
        write_file(&ca_pem, &cert.pem(), 0o644)?;
        write_private(&ca_key_pem, &key.serialize_pem())?;
        files.extend([ca_pem, ca_key_pem]);
        key
    };
    // The same distinguished name and key make certificates that chain to the existing CA.
    let issuer = Issuer::new(ca_params(), ca_key);

    let mut leaf = |stem: &str, sans: Vec<String>, usages: Vec<ExtendedKeyUsagePurpose>| {
        let (cert_path, key_path) = (
            out.join(format!("{stem}.pem")),
            out.join(format!("{stem}-key.pem")),
        );
        if keep_existing && cert_path.exists() && key_path.exists() {
            return Ok(());
        }
        let failed = |source| Error::Tls {
            what: stem.to_owned(),
            source,
        };
        let mut params = CertificateParams::new(sans).map_err(failed)?;
        params.distinguished_name.push(DnType::CommonName, stem);
        params.extended_key_usages = usages;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = new_key(stem)?;
        let cert = params.signed_by(&key, &issuer).map_err(failed)?;
        write_file(&cert_path, &cert.pem(), 0o644)?;
        write_private(&key_path, &key.serialize_pem())?;
        files.extend([cert_path, key_path]);
        Ok::<_, Error>(())
    };
    // The server certificate also serves the cluster's routes, where each node is the
    // client of the node it dials: with `verify: true` in the `cluster { tls }` block the
    // dialled node checks the dialler's certificate for the clientAuth usage, so a
    // serverAuth-only certificate fails every route handshake ("incompatible key usage")
    // and JetStream never gets a quorum.
    leaf(
        "server",
        hosts.to_vec(),
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    )?;
    for component in components {
        leaf(
            &component.to_string(),
            Vec::new(),
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        )?;
    }

    let conf = out.join(TLS_CONF);
    let at = |name: &str| server_dir.join(name).display().to_string();
    let text = format!(
        "# Written by `warroom-admin nats-auth`. Include it from nats-server.conf.\n\
         # Clients must present a certificate signed by the CA (mutual TLS); they still\n\
         # authenticate with their NKey.\n\
         tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  ca_file: \"{}\"\n  verify: true\n  timeout: 5\n}}\n",
        at("server.pem"),
        at("server-key.pem"),
        at("ca.pem"),
    );
    write_file(&conf, &text, 0o644)?;
    files.push(conf);
    Ok(Written { files })
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "claude-warroom NATS CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn new_key(what: &str) -> Result<KeyPair> {
    KeyPair::generate().map_err(|source| Error::Tls {
        what: what.to_owned(),
        source,
    })
}
