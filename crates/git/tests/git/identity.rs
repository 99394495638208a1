//! Commits signed and verified through `warroom_git::Git` (the publisher's signing, and what
//! `claude-warroom status --verify` checks) under a UID with no passwd entry, as OpenShift runs
//! containers: `ssh-keygen` stops with "No user exists for uid ..." there unless
//! `identity` wraps it with nss_wrapper. The test prepares a key as root, then runs itself
//! again as that UID (`setpriv`; the tests run as root).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use warroom_git::Git;

/// A UID (and GID) that no passwd entry names.
const UID_WITHOUT_PASSWD: u32 = 54321;
/// Set in the environment of this test binary when it runs again as that UID.
const AS_CHILD: &str = "WARROOM_GIT_TEST_DIR_AS_UID_WITHOUT_PASSWD";

#[test]
fn git_signs_and_verifies_under_a_uid_without_a_passwd_entry() {
    if let Some(dir) = std::env::var_os(AS_CHILD) {
        sign_and_verify(&PathBuf::from(dir));
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary folder");
    let key = dir.path().join("id_ed25519");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "publisher", "-f"])
        .arg(&key)
        .stdin(Stdio::null())
        .status()
        .expect("running ssh-keygen");
    assert!(made.success());
    chown_all(dir.path());
    let as_uid = |program: &Path| {
        let mut command = Command::new("setpriv");
        command
            .arg(format!("--reuid={UID_WITHOUT_PASSWD}"))
            .arg(format!("--regid={UID_WITHOUT_PASSWD}"))
            .args(["--clear-groups", "--"])
            .arg(program)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("TMPDIR", std::env::temp_dir());
        command
    };

    // Without the wrapper, signing fails the way OpenShift shows it.
    let bare = as_uid(Path::new("ssh-keygen"))
        .args(["-Y", "sign", "-n", "git", "-f"])
        .arg(&key)
        .arg(dir.path().join("id_ed25519.pub"))
        .stdin(Stdio::null())
        .output()
        .expect("running ssh-keygen through setpriv");
    let stderr = String::from_utf8_lossy(&bare.stderr);
    assert!(
        stderr.contains(&format!("No user exists for uid {UID_WITHOUT_PASSWD}")),
        "{stderr}"
    );

    let me = std::env::current_exe().expect("this test binary");
    let child = as_uid(&me)
        .args([
            "--exact",
            "identity::git_signs_and_verifies_under_a_uid_without_a_passwd_entry",
            "--nocapture",
        ])
        .env(AS_CHILD, dir.path())
        .output()
        .expect("running this test again through setpriv");
    let stdout = String::from_utf8_lossy(&child.stdout);
    assert!(
        child.status.success() && stdout.contains("1 passed"),
        "signing as UID {UID_WITHOUT_PASSWD} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&child.stderr)
    );
}

/// The child: a commit signed as the publisher signs them, then verified by git.
fn sign_and_verify(dir: &Path) {
    assert!(
        nix::unistd::User::from_uid(nix::unistd::getuid())
            .expect("the user database")
            .is_none(),
        "the child must run as a UID without a passwd entry"
    );
    let key = dir.join("id_ed25519");
    let public = std::fs::read_to_string(dir.join("id_ed25519.pub")).expect("the public key");
    let signers = dir.join("allowed_signers");
    std::fs::write(&signers, format!("warroom@localhost {public}")).expect("allowed signers");
    let repo = dir.join("repo");
    std::fs::create_dir(&repo).expect("the repository folder");
    let git = Git::new(&repo)
        .with_identity("claude-warroom", "warroom@localhost")
        .with_config("gpg.format", "ssh")
        .with_config("user.signingkey", &key.display().to_string())
        .with_config("commit.gpgsign", "true")
        .with_config("gpg.ssh.allowedSignersFile", &signers.display().to_string());
    git.run(&["init", "--quiet"]).expect("git init");
    git.run(&["commit", "--quiet", "--allow-empty", "-m", "results"])
        .expect("a signed commit");
    let verified = git
        .output(&["verify-commit", "HEAD"])
        .expect("git verify-commit");
    assert!(verified.success, "{}", verified.stderr);
    assert!(
        verified
            .stderr
            .contains("Good \"git\" signature for warroom@localhost"),
        "{}",
        verified.stderr
    );
}

/// Gives `path` and everything under it to [`UID_WITHOUT_PASSWD`].
fn chown_all(path: &Path) {
    std::os::unix::fs::chown(path, Some(UID_WITHOUT_PASSWD), Some(UID_WITHOUT_PASSWD))
        .unwrap_or_else(|e| panic!("chown {} (the tests run as root): {e}", path.display()));
    if path.is_dir() {
        for entry in std::fs::read_dir(path).expect("listing a folder") {
            chown_all(&entry.expect("an entry").path());
        }
    }
}
