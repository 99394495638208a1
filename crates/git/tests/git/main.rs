//! warroom-git against the real git, ssh-keygen and temporary bare repositories.

mod commit_id;
mod environment;
mod identity;
mod signature;
mod token;

use std::path::Path;
use std::process::Command;

/// Runs this test binary again for the test `name` alone, with `env` added, and fails with
/// its output unless that test passed. For tests that need an environment this process
/// must not have (setting variables in a running multi-threaded process is unsound).
fn run_again(name: &str, env: &[(&str, &Path)], removed: &[&str]) {
    let me = std::env::current_exe().expect("this test binary");
    let mut command = Command::new(me);
    command.args(["--exact", name, "--nocapture"]);
    for (key, value) in env {
        command.env(key, value);
    }
    for key in removed {
        command.env_remove(key);
    }
    let child = command.output().expect("running this test binary again");
    let stdout = String::from_utf8_lossy(&child.stdout);
    assert!(
        child.status.success() && stdout.contains("1 passed"),
        "{name} failed in its own process:\n{stdout}\n{}",
        String::from_utf8_lossy(&child.stderr)
    );
}
