//! `warroom-admin nats-auth`: NKey seeds per component and the server's `authorization` block.
//!
//! Layout of the output folder:
//! - `<component>.nk`: the component's NKey user seed (`SU...`), mode 0600, for its
//!   `--nats-nkey` (`gateway.nk`, `dispatcher.nk`, `publisher.nk`, `runner-<cluster>.nk`);
//! - `nats-auth.conf`: `authorization { users = [...] }` with each public key and its
//!   permissions, to `include` from the server's config;
//! - with TLS hosts, what [`crate::tls`] writes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use warroom_proto::ClusterName;

use crate::permissions::{Component, Permissions};
use crate::{Error, Result, tls};

/// The authorization config's file name.
pub const AUTH_CONF: &str = "nats-auth.conf";

/// What to generate.
#[derive(Debug, Clone)]
pub struct Options {
    pub clusters: Vec<ClusterName>,
    pub out: PathBuf,
    /// Names and addresses for the server certificate; no TLS files when empty.
    pub tls_hosts: Vec<String>,
    /// Where the server finds its TLS files (the paths written into `nats-tls.conf`).
    pub tls_server_dir: PathBuf,
    /// Reuse the seeds and CA that exist; make what is missing.
    pub keep_existing: bool,
    /// Replace everything.
    pub force: bool,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Generated {
    /// Every component with its public key, and whether its seed is new.
    pub users: Vec<(Component, String, bool)>,
    pub auth_conf: PathBuf,
    pub tls: Option<tls::Written>,
}

impl Generated {
    /// One line per thing written, for the operator.
    pub fn summary(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .users
            .iter()
            .map(|(component, key, new)| {
                let what = if *new { "new seed" } else { "kept seed" };
                format!(
                    "{:<24} {key}  ({what} {component}.nk)",
                    component.to_string()
                )
            })
            .collect();
        lines.push(format!("wrote {}", self.auth_conf.display()));
        if let Some(tls) = &self.tls {
            lines.extend(tls.summary());
        }
        lines
    }
}

/// Writes the seeds, the authorization config and, when asked, the TLS files.
pub fn generate(options: &Options) -> Result<Generated> {
    let mut clusters = options.clusters.clone();
    clusters.sort();
    clusters.dedup();
    if clusters.is_empty() {
        return Err(Error::Cluster("name at least one cluster".to_owned()));
    }
    let components = Component::all(&clusters);
    std::fs::create_dir_all(&options.out).map_err(|source| Error::Io {
        action: "create the folder",
        path: options.out.clone(),
        source,
    })?;
    if !options.keep_existing && !options.force {
        let existing: Vec<String> = components
            .iter()
            .map(|c| format!("{c}.nk"))
            .chain(tls::FILES_OF_THE_CA.iter().map(|f| (*f).to_owned()))
            .filter(|f| options.out.join(f).exists())
            .collect();
        if !existing.is_empty() {
            return Err(Error::Exists {
                dir: options.out.display().to_string(),
                files: existing,
            });
        }
    }

    let mut users = Vec::new();
    for component in &components {
        let path = options.out.join(format!("{component}.nk"));
        let (key, new) = if options.keep_existing && path.exists() {
            (read_seed(&path)?, false)
        } else {
            let pair = nkeys::KeyPair::new_user();
            let seed = pair.seed().map_err(|e| Error::Nkey {
                component: component.to_string(),
                message: e.to_string(),
            })?;
            write_private(&path, &format!("{seed}\n"))?;
            (pair.public_key(), true)
        };
        users.push((component.clone(), key, new));
    }

    let auth_conf = options.out.join(AUTH_CONF);
    let config = authorization_config(
        users
            .iter()
            .map(|(component, key, _)| (component, key.as_str())),
    );
    write_file(&auth_conf, &config, 0o644)?;

    let tls = if options.tls_hosts.is_empty() {
        None
    } else {
        Some(tls::generate(
            &options.out,
            &options.tls_hosts,
            &options.tls_server_dir,
            &components,
            options.keep_existing,
        )?)
    };
    Ok(Generated {
        users,
        auth_conf,
        tls,
    })
}

/// The public key of the user seed in `path`.
fn read_seed(path: &Path) -> Result<String> {
    let seed = std::fs::read_to_string(path).map_err(|source| Error::Io {
        action: "read the seed",
        path: path.to_owned(),
        source,
    })?;
    let pair = nkeys::KeyPair::from_seed(seed.trim()).map_err(|e| Error::BadSeed {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    if !pair.public_key().starts_with('U') {
        return Err(Error::BadSeed {
            path: path.to_owned(),
            message: "it is not a user key".to_owned(),
        });
    }
    Ok(pair.public_key())
}

/// The `authorization` block for these users.
pub fn authorization_config<'a>(
    users: impl IntoIterator<Item = (&'a Component, &'a str)>,
) -> String {
    let mut out = String::from(
        "# Written by `warroom-admin nats-auth`; regenerate rather than edit.\n\
         # Include it from nats-server.conf: `include nats-auth.conf`.\n\
         authorization {\n  users = [\n",
    );
    for (component, key) in users {
        let Permissions { publish, subscribe } = component.permissions();
        let _ = writeln!(out, "    # {component}");
        let _ = writeln!(out, "    {{");
        let _ = writeln!(out, "      nkey: {key}");
        let _ = writeln!(out, "      permissions: {{");
        let _ = writeln!(out, "        publish: {{ allow: {} }}", list(&publish));
        let _ = writeln!(out, "        subscribe: {{ allow: {} }}", list(&subscribe));
        let _ = writeln!(out, "      }}");
        let _ = writeln!(out, "    }}");
    }
    out.push_str("  ]\n}\n");
    out
}

/// A config list of quoted subjects (`$` would otherwise start a variable).
fn list(subjects: &[String]) -> String {
    let quoted: Vec<String> = subjects.iter().map(|s| format!("\"{s}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

/// Writes a secret readable by its owner only.
pub(crate) fn write_private(path: &Path, text: &str) -> Result<()> {
    write_file(path, text, 0o600)
}

pub(crate) fn write_file(path: &Path, text: &str, mode: u32) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let failed = |source| Error::Io {
        action: "write",
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(failed)?;
    // An existing file keeps its mode on open: set it explicitly.
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(failed)?;
    file.write_all(text.as_bytes()).map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(dir: &Path, clusters: &[&str]) -> Options {
        Options {
            clusters: clusters
                .iter()
                .map(|c| ClusterName::new(*c).unwrap())
                .collect(),
            out: dir.to_owned(),
            tls_hosts: Vec::new(),
            tls_server_dir: PathBuf::from("/etc/nats/tls"),
            keep_existing: false,
            force: false,
        }
    }

    #[test]
    fn writes_private_seeds_and_refuses_to_overwrite_them() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let first = generate(&options(dir.path(), &["hub"])).unwrap();
        assert_eq!(first.users.len(), 4);
        let mode = std::fs::metadata(dir.path().join("runner-hub.nk"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let conf = std::fs::read_to_string(dir.path().join(AUTH_CONF)).unwrap();
        for (_, key, _) in &first.users {
            assert!(conf.contains(key.as_str()), "{key} missing from\n{conf}");
        }

        let again = generate(&options(dir.path(), &["hub"])).unwrap_err();
        assert!(again.to_string().contains("runner-hub.nk"), "{again}");

        // Adding a cluster keeps every existing key.
        let added = generate(&Options {
            keep_existing: true,
            ..options(dir.path(), &["hub", "prod-1"])
        })
        .unwrap();
        for (component, key, new) in &added.users {
            match first.users.iter().find(|(c, _, _)| c == component) {
                Some((_, old, _)) => assert!(!new && old == key, "{component} changed"),
                None => assert!(*new, "{component} is new"),
            }
        }

        let forced = generate(&Options {
            force: true,
            ..options(dir.path(), &["hub"])
        })
        .unwrap();
        assert_ne!(forced.users[0].1, first.users[0].1);
    }
}
