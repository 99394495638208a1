//! Runs a daemon's real binary with `--check` and what it printed, for the tests of `--check`
//! (every daemon reports the same way: `ok: <summary>` and 0, or one problem per line and 1).

use std::path::Path;
use std::process::Command;

/// What `<binary> --check ...` did.
#[derive(Debug)]
pub struct Checked {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Checked {
    /// Panics unless the check passed.
    pub fn assert_ok(&self) {
        assert_eq!(self.code, Some(0), "--check failed: {self:#?}");
        assert!(self.stdout.starts_with("ok: "), "{self:#?}");
    }

    /// Panics unless the check failed with every one of `expected` on its own line of stderr
    /// (and each line of stderr names the program); returns stderr's lines.
    pub fn assert_problems(&self, program: &str, expected: &[&str]) -> Vec<String> {
        assert_eq!(self.code, Some(1), "--check passed: {self:#?}");
        let lines: Vec<String> = self.stderr.lines().map(str::to_owned).collect();
        for line in &lines {
            assert!(line.starts_with(&format!("{program}: ")), "{self:#?}");
        }
        for want in expected {
            assert_eq!(
                lines.iter().filter(|l| l.contains(want)).count(),
                1,
                "{want:?} is not on exactly one line of: {}",
                self.stderr
            );
        }
        lines
    }
}

/// Runs `binary --check args...` with a clean environment (`PATH` only, plus `env`), so no
/// `WARROOM_*` variable of the test's own environment changes what is checked.
pub fn run_check(binary: &Path, args: &[&str], env: &[(&str, &str)]) -> Checked {
    let output = Command::new(binary)
        .arg("--check")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("running {} failed: {e}", binary.display()));
    Checked {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A NATS URL on loopback where nothing listens: a check that tried to connect would fail.
pub fn unused_nats_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    format!("nats://127.0.0.1:{port}")
}

/// A UID (and GID) that no passwd entry names, as OpenShift runs containers.
pub const UID_WITHOUT_PASSWD: u32 = 54321;

/// `program args...` run as [`UID_WITHOUT_PASSWD`] through `setpriv` (the tests run as root),
/// with no supplementary groups and a clean environment (`PATH` and `TMPDIR` only). Panics
/// unless that UID really has no passwd entry.
pub fn command_without_passwd(program: &Path) -> Command {
    assert!(
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(UID_WITHOUT_PASSWD))
            .ok()
            .flatten()
            .is_none(),
        "UID {UID_WITHOUT_PASSWD} has a passwd entry here; these tests need one without"
    );
    let mut command = Command::new("setpriv");
    command
        .arg(format!("--reuid={UID_WITHOUT_PASSWD}"))
        .arg(format!("--regid={UID_WITHOUT_PASSWD}"))
        .arg("--clear-groups")
        .arg("--")
        .arg(program)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("TMPDIR", std::env::temp_dir());
    command
}

/// Gives `path` and everything under it to [`UID_WITHOUT_PASSWD`], so a command of
/// [`command_without_passwd`] can read and write it.
pub fn give_to_uid_without_passwd(path: &Path) {
    std::os::unix::fs::chown(path, Some(UID_WITHOUT_PASSWD), Some(UID_WITHOUT_PASSWD))
        .unwrap_or_else(|e| {
            panic!(
                "chown {} to {UID_WITHOUT_PASSWD} failed (the tests run as root): {e}",
                path.display()
            )
        });
    if path.is_dir() {
        for entry in std::fs::read_dir(path).expect("listing a folder to chown") {
            give_to_uid_without_passwd(&entry.expect("a folder entry").path());
        }
    }
}
