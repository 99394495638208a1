//! The daemons' git reads no configuration but the repository's own: a hostile global
//! configuration (through `GIT_CONFIG_GLOBAL` or `$HOME/.gitconfig`) changes nothing, while
//! the engineer's git does read it.

use std::path::{Path, PathBuf};

use warroom_git::Git;
use warroom_testkit::BareRemote;

/// Set in the child's environment: the folder holding `remote` (a path) and `clone`.
const AS_CHILD: &str = "WARROOM_GIT_TEST_HOSTILE_DIR";
const NAME: &str = "environment::a_hostile_global_configuration_changes_nothing";

/// A configuration that sends every fetch of `remote` nowhere and names an ssh command.
fn hostile_config(remote: &str) -> String {
    format!(
        "[url \"/nonexistent/warroom/\"]\n\tinsteadOf = {remote}\n[core]\n\tsshCommand = false\n\
         [user]\n\tname = Hostile\n"
    )
}

#[test]
fn a_hostile_global_configuration_changes_nothing() {
    if let Some(dir) = std::env::var_os(AS_CHILD) {
        child(&PathBuf::from(dir));
        return;
    }
    let remote = BareRemote::new();
    let clone = remote.work_clone();
    let dir = tempfile::tempdir().expect("a temporary folder");
    std::fs::write(dir.path().join("remote"), remote.url()).expect("the remote's path");
    std::fs::write(dir.path().join("clone"), clone.path().display().to_string())
        .expect("the clone's path");
    let hostile = dir.path().join("hostile.gitconfig");
    std::fs::write(&hostile, hostile_config(&remote.url())).expect("a hostile config");
    let home = dir.path().join("home");
    std::fs::create_dir(&home).expect("a HOME");
    std::fs::write(home.join(".gitconfig"), hostile_config(&remote.url()))
        .expect("a hostile ~/.gitconfig");

    // Through GIT_CONFIG_GLOBAL, and through HOME with no GIT_CONFIG_GLOBAL.
    super::run_again(
        NAME,
        &[(AS_CHILD, dir.path()), ("GIT_CONFIG_GLOBAL", &hostile)],
        &[],
    );
    super::run_again(
        NAME,
        &[
            (AS_CHILD, dir.path()),
            ("HOME", &home),
            ("XDG_CONFIG_HOME", &home),
        ],
        &["GIT_CONFIG_GLOBAL"],
    );
}

fn child(dir: &Path) {
    let read = |name| std::fs::read_to_string(dir.join(name)).expect("written by the parent");
    let (remote, clone) = (read("remote"), read("clone"));

    // The hostile configuration is in effect for the engineer's git, or this proves nothing.
    let engineers = Git::engineers(&clone);
    let ssh = engineers
        .run(&["config", "--get", "core.sshCommand"])
        .unwrap_or_default();
    assert_eq!(
        ssh.trim(),
        "false",
        "the hostile configuration is not in effect"
    );
    let redirected = engineers.output(&["ls-remote", &remote]).expect("git runs");
    assert!(
        !redirected.success,
        "url.insteadOf did not redirect the engineer's git"
    );

    // The sealed git sees none of it.
    let sealed = Git::new(&clone);
    let ssh = sealed
        .output(&["config", "--get", "core.sshCommand"])
        .expect("git runs");
    assert!(
        !ssh.success && ssh.text().is_empty(),
        "core.sshCommand leaked: {}",
        ssh.text()
    );
    let heads = sealed
        .run(&["ls-remote", "--heads", &remote])
        .expect("ls-remote reaches the real remote");
    assert!(heads.contains("refs/heads/main"), "{heads}");
    let fetched = sealed
        .output(&["fetch", "--quiet", &remote, "main"])
        .expect("git runs");
    assert!(fetched.success, "{}", fetched.stderr);
}

#[test]
fn a_failure_carries_gits_stderr_and_the_command() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let err = Git::new(dir.path())
        .run(&["rev-parse", "--verify", "no-such-ref"])
        .expect_err("not a repository");
    let text = err.to_string();
    assert!(
        text.contains("git rev-parse --verify no-such-ref")
            && text.contains("not a git repository"),
        "{text}"
    );
}

#[test]
fn a_git_that_cannot_start_is_an_error_with_its_cause_as_source() {
    let err = Git::new("/nonexistent/warroom/folder")
        .run(&["status"])
        .expect_err("no such folder");
    let text = err.to_string();
    let source = std::error::Error::source(&err).map(ToString::to_string);
    assert!(source.is_some(), "no source in {err:?}");
    assert!(
        !text.contains(&source.unwrap_or_default()),
        "the cause is printed twice: {text}"
    );
}
