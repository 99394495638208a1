//! Makes `ssh-keygen` (and `ssh`, and git's own user lookups) work under a UID with no passwd
//! entry, as OpenShift runs containers: an arbitrary UID from the namespace's range, in group
//! 0, that `/etc/passwd` does not list.
//!
//! `ssh-keygen` looks its user up first thing and stops with "No user exists for uid ..." when
//! there is none, so without this the publisher could not sign results and the gateway could
//! not verify requests. The standard fix (OpenShift's own guidelines) is nss_wrapper: when
//! `getpwuid(getuid())` finds nothing, a passwd and a group file naming this UID are written
//! into a private temporary folder once, and every child that needs them is started with
//! `LD_PRELOAD=libnss_wrapper.so NSS_WRAPPER_PASSWD=... NSS_WRAPPER_GROUP=...`.
//!
//! [`apply`] is the one place that does it: [`crate::Git`] and [`crate::signature::Signers`]
//! call it for every git and gpg child, the publisher's signing-key check for `ssh-keygen`.
//! [`problem`] tells `--check` and start-up when the UID has no entry and the library is
//! missing (the Debian package `libnss-wrapper`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Where Debian, Ubuntu, Fedora and RHEL put `libnss_wrapper.so`.
const LIBRARY_PATHS: [&str; 5] = [
    "/usr/lib/x86_64-linux-gnu/libnss_wrapper.so",
    "/usr/lib/aarch64-linux-gnu/libnss_wrapper.so",
    "/usr/lib64/libnss_wrapper.so",
    "/usr/lib/libnss_wrapper.so",
    "/usr/local/lib/libnss_wrapper.so",
];

/// What this process's children need to find their user, decided once.
#[derive(Debug)]
enum Identity {
    /// The UID has a passwd entry: nothing to add.
    Known,
    /// The UID has none: the environment that wraps it.
    Wrapped(Vec<(&'static str, OsString)>),
    /// The UID has none and the wrapper cannot be set up: why.
    Missing(String),
}

static IDENTITY: OnceLock<Identity> = OnceLock::new();

fn identity() -> &'static Identity {
    IDENTITY.get_or_init(|| {
        let uid = nix::unistd::getuid();
        match nix::unistd::User::from_uid(uid) {
            Ok(Some(_)) => Identity::Known,
            // An error reading the user database is treated like no entry: the wrapper's
            // files name this UID either way.
            Ok(None) | Err(_) => match wrap(uid.as_raw(), nix::unistd::getgid().as_raw()) {
                Ok(env) => Identity::Wrapped(env),
                Err(problem) => Identity::Missing(problem),
            },
        }
    })
}

/// Why children of this process cannot look their user up, when they cannot: the UID has no
/// passwd entry and nss_wrapper is not installed, or its files cannot be written.
pub fn problem() -> Option<&'static str> {
    match identity() {
        Identity::Missing(problem) => Some(problem),
        Identity::Known | Identity::Wrapped(_) => None,
    }
}

/// The variables [`apply`] sets: empty when the UID has a passwd entry.
pub fn child_env() -> &'static [(&'static str, OsString)] {
    match identity() {
        Identity::Wrapped(env) => env,
        Identity::Known | Identity::Missing(_) => &[],
    }
}

/// Gives `command` what it needs to find its user (see the module documentation). Call it
/// after any `env_clear`.
pub fn apply(command: &mut std::process::Command) -> &mut std::process::Command {
    command.envs(child_env().iter().map(|(k, v)| (k, v)))
}

/// The library, where one of the usual paths has it.
fn library() -> Option<PathBuf> {
    LIBRARY_PATHS
        .iter()
        .map(Path::new)
        .find(|path| path.is_file())
        .map(Path::to_path_buf)
}

/// Writes the passwd and group files for `uid` and returns the variables that use them.
fn wrap(uid: u32, gid: u32) -> Result<Vec<(&'static str, OsString)>, String> {
    let library = library().ok_or_else(|| {
        format!(
            "this process runs as UID {uid}, which has no passwd entry (as OpenShift runs \
             containers), and libnss_wrapper.so is not installed (looked in {}): ssh-keygen \
             and ssh would stop with \"No user exists for uid {uid}\"; install the package \
             `libnss-wrapper` (Debian, Ubuntu) or `nss_wrapper` (Fedora, RHEL) in the image, \
             or run under a UID that /etc/passwd lists",
            LIBRARY_PATHS.join(", ")
        )
    })?;
    let dir = tempfile::Builder::new()
        .prefix("warroom-nss-")
        .tempdir()
        .map_err(|e| {
            format!(
                "cannot make a folder for nss_wrapper's passwd file in {}: {e}",
                std::env::temp_dir().display()
            )
        })?;
    // The folder lives as long as the process: children started at any time read it.
    let dir = dir.keep();
    let home = std::env::var_os("HOME")
        .filter(|home| !home.is_empty() && home != "/")
        .map_or_else(|| dir.clone(), PathBuf::from);
    // The system's entries stay (root, nobody, ...), with this UID's added.
    let mut passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let mut group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    for text in [&mut passwd, &mut group] {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
    }
    passwd.push_str(&format!(
        "warroom:x:{uid}:{gid}:claude-warroom:{}:/bin/sh\n",
        home.display()
    ));
    if !group
        .lines()
        .any(|line| line.split(':').nth(2) == Some(&gid.to_string()))
    {
        group.push_str(&format!("warroom:x:{gid}:\n"));
    }
    let (passwd_path, group_path) = (dir.join("passwd"), dir.join("group"));
    for (path, text) in [(&passwd_path, &passwd), (&group_path, &group)] {
        std::fs::write(path, text)
            .map_err(|e| format!("cannot write nss_wrapper's {}: {e}", path.display()))?;
    }
    Ok(vec![
        ("LD_PRELOAD", library.into_os_string()),
        ("NSS_WRAPPER_PASSWD", passwd_path.into_os_string()),
        ("NSS_WRAPPER_GROUP", group_path.into_os_string()),
    ])
}
