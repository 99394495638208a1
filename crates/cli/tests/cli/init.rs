//! `claude-warroom init` as an engineer runs it: clones from a bare repository standing in
//! for GitHub, the pre-commit hook under a real `git commit`, the signing check with a
//! global git configuration of the test's own, and the GitHub Actions templates checked by
//! the real `actionlint`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use warroom_testkit::git::{TEST_USER_EMAIL, TEST_USER_NAME};
use warroom_testkit::{BareRemote, SshKey};

use super::{Run, cli, install_claude_warroom, workspace_root};

/// A request the gateway accepts, named by its id.
const GOOD: &str = "requests/pending/2024-01-15-1430-api-timeout.yaml";
/// A request with a timeout below the minimum.
const BAD_REQUEST: &str = "apiVersion: warroom.intility.io/v1\n\
    kind: TroubleshootingRequest\n\
    metadata: {name: n, timestamp: \"2024-01-15T14:30:00Z\", engineer: e}\n\
    spec:\n  targetCluster: {type: hub, name: production-hub}\n\
    \x20 issue: {category: c, description: d}\n\
    \x20 investigation: {prompt: p, allowedTools: [bash], timeout: 5}\n";

fn good_request() -> String {
    std::fs::read_to_string(
        workspace_root()
            .join("examples/requests")
            .join(Path::new(GOOD).file_name().expect("a file name")),
    )
    .expect("reading the example request")
}

/// `claude-warroom ARGS` in `dir`, with `home` as HOME (so no key of the machine's user is
/// found) and `global` as the global git configuration.
fn init_in(dir: &Path, home: &Path, global: &Path, args: &[&str]) -> Run {
    Run::of(
        cli(dir)
            .args(args)
            .env("HOME", home)
            .env("GIT_CONFIG_GLOBAL", global)
            .output()
            .expect("running claude-warroom"),
    )
}

/// Every file below `dir` (the clone, with its `.git`), with its bytes and mode.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, u32)> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).expect("a readable folder") {
            let path = entry.expect("an entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("metadata");
            if meta.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap_or_default();
                files.insert(path, (bytes, meta.permissions().mode()));
            }
        }
    }
    files
}

/// A hermetic git in `dir` with `path` as PATH, for commits that run the hook.
fn git_commit(dir: &Path, path: &str, message: &str) -> Run {
    let mut command = warroom_testkit::git::command(dir);
    command
        .env("PATH", path)
        .args(["commit", "--quiet", "-m", message]);
    Run::of(command.output().expect("running git commit"))
}

/// A PATH with `git` and the shell tools the hook uses, and no `claude-warroom`.
fn path_without_claude_warroom() -> String {
    let system = std::env::var("PATH").unwrap_or_default();
    let dirs: Vec<String> = std::env::split_paths(&system)
        .filter(|dir| dir.join("git").is_file() || dir.join("sh").is_file())
        .filter(|dir| !dir.join("claude-warroom").exists())
        .map(|dir| dir.display().to_string())
        .collect();
    assert!(!dirs.is_empty(), "no git on PATH");
    dirs.join(":")
}

fn config(dir: &Path, key: &str) -> String {
    warroom_testkit::git::git(dir, ["config", "--get", key])
        .trim()
        .to_owned()
}

#[test]
fn init_clones_an_empty_repository_lays_it_out_and_a_second_run_changes_nothing() {
    let scratch = tempfile::tempdir().expect("a temporary directory");
    let home = scratch.path().join("home");
    std::fs::create_dir_all(&home).expect("a home");
    // An empty repository, as a new one on GitHub is: no commit, no layout.
    let remote = scratch.path().join("warroom.git");
    warroom_testkit::git::git(scratch.path(), ["init", "--quiet", "--bare", "warroom.git"]);
    let target = scratch.path().join("empty dir");
    std::fs::create_dir_all(&target).expect("an empty folder to clone into");
    let publisher = SshKey::generate("warroom-publisher");
    let key_file = publisher.public_key_file().display().to_string();
    let url = remote.display().to_string();
    let target_arg = target.display().to_string();
    let args = [
        "init",
        "--github-repo",
        &url,
        "--dir",
        &target_arg,
        "--github-actions",
        "--publisher-key",
        &key_file,
    ];

    let first = init_in(scratch.path(), &home, Path::new("/dev/null"), &args);
    assert_eq!(first.code, Some(0), "{first}");
    assert!(
        first.stderr.contains(&format!("cloned {url} into")),
        "{first}"
    );
    for file in [
        "requests/pending/.gitkeep",
        "results/.gitkeep",
        ".github/workflows/warroom-validate.yml",
    ] {
        assert!(target.join(file).is_file(), "no {file}: {first}");
    }
    assert!(!target.join(".github/workflows/warroom-image.yml").exists());
    assert_eq!(config(&target, "remote.origin.url"), url);
    assert_eq!(
        config(&target, "warroom.publisherKey"),
        publisher
            .public_key()
            .rsplit_once(' ')
            .map(|(key, _)| key)
            .unwrap_or_default()
    );
    let hook = std::fs::read_to_string(target.join(".git/hooks/pre-commit")).expect("a hook");
    assert!(hook.contains("claude-warroom validate --staged"), "{hook}");
    assert!(
        first
            .stderr
            .contains(&format!("{} is set up", target.display())),
        "{first}"
    );

    let before = snapshot(&target);
    // Again, from inside the clone and with every flag: nothing to do.
    let second = init_in(&target, &home, Path::new("/dev/null"), &args);
    assert_eq!(second.code, Some(0), "{second}");
    for line in [
        "is a clone of",
        "layout: requests/pending/ and results/ already in place",
        "hook: .git/hooks/pre-commit already installed",
        "workflow: .github/workflows/warroom-validate.yml already in place",
        "already recorded (git config warroom.publisherKey)",
        "init: everything was already in place; nothing changed",
    ] {
        assert!(second.stderr.contains(line), "no `{line}` in {second}");
    }
    assert_eq!(snapshot(&target), before, "the second run changed a file");
    // And from inside the clone without flags: the same.
    let third = init_in(&target, &home, Path::new("/dev/null"), &["init"]);
    assert!(third.stderr.contains("nothing changed"), "{third}");
    assert_eq!(snapshot(&target), before, "the third run changed a file");
}

#[test]
fn init_sets_up_an_existing_clone_and_refuses_a_clone_of_another_repository() {
    let remote = BareRemote::new();
    let engineer = remote.work_clone();
    let home = tempfile::tempdir().expect("a home");
    let null = Path::new("/dev/null");
    // The seeded remote has requests/pending/ but no results/.
    let result = init_in(engineer.path(), home.path(), null, &["init"]);
    assert_eq!(result.code, Some(0), "{result}");
    assert!(
        result.stderr.contains("created results/.gitkeep"),
        "{result}"
    );
    assert!(
        !engineer
            .path()
            .join("requests/pending/.gitkeep.new")
            .exists()
    );
    assert_eq!(
        engineer.read("requests/pending/.gitkeep").as_deref(),
        Some("")
    );
    assert!(engineer.path().join(".git/hooks/pre-commit").is_file());

    // --github-repo naming this clone's remote, run inside it: the clone is used.
    let again = init_in(
        engineer.path(),
        home.path(),
        null,
        &["init", "--github-repo", &remote.file_url()],
    );
    assert_eq!(again.code, Some(0), "{again}");
    assert!(again.stderr.contains("nothing changed"), "{again}");

    // --dir naming a clone of another repository: refused, nothing written.
    let other = BareRemote::new();
    let dir = engineer.path().display().to_string();
    let refused = init_in(
        home.path(),
        home.path(),
        null,
        &["init", "--github-repo", &other.url(), "--dir", &dir],
    );
    assert_eq!(refused.code, Some(1), "{refused}");
    assert!(
        refused.stderr.contains("is already a git clone, of `")
            && refused.stderr.contains(&other.url()),
        "{refused}"
    );

    // Not a clone, and nothing to clone: says how.
    let nowhere = init_in(home.path(), home.path(), null, &["init"]);
    assert_eq!(nowhere.code, Some(1), "{nowhere}");
    assert!(
        nowhere.stderr.contains("--github-repo OWNER/NAME"),
        "{nowhere}"
    );
    let bad = init_in(
        home.path(),
        home.path(),
        null,
        &["init", "--github-repo", "warroom"],
    );
    assert_eq!(bad.code, Some(1), "{bad}");
    assert!(
        bad.stderr
            .contains("--github-repo `warroom`: expected OWNER/NAME"),
        "{bad}"
    );
}

#[test]
fn the_hook_refuses_a_bad_staged_request_and_passes_a_good_one() {
    let remote = BareRemote::new();
    let engineer = remote.work_clone();
    let home = tempfile::tempdir().expect("a home");
    let result = init_in(
        engineer.path(),
        home.path(),
        Path::new("/dev/null"),
        &["init"],
    );
    assert_eq!(result.code, Some(0), "{result}");
    let bin = home.path().join("bin");
    install_claude_warroom(&bin);
    let without = path_without_claude_warroom();
    let with = format!("{}:{without}", bin.display());

    // No request staged: the hook needs no claude-warroom at all.
    engineer.write("notes/a note with spaces.md", "hello\n");
    engineer.git(["add", "--all"]);
    let plain = git_commit(engineer.path(), &without, "a note");
    assert_eq!(plain.code, Some(0), "{plain}");

    // A bad request, staged under a name with spaces: refused, named, nothing committed.
    let head = engineer.head();
    let bad = "requests/pending/my bad request.yaml";
    engineer.write(bad, BAD_REQUEST);
    engineer.write("notes/another note.md", "x\n");
    engineer.git(["add", "--all"]);
    let refused = git_commit(engineer.path(), &with, "request: bad");
    assert_eq!(refused.code, Some(1), "{refused}");
    assert!(refused.stderr.contains(&format!("{bad}: ")), "{refused}");
    assert!(
        refused.stderr.contains("spec.investigation.timeout"),
        "{refused}"
    );
    assert!(!refused.stderr.contains("another note"), "{refused}");
    assert_eq!(engineer.head(), head, "the bad request was committed");

    // Fixed on disk but not staged: the staged content is what is checked.
    engineer.remove(bad);
    engineer.write(GOOD, BAD_REQUEST);
    engineer.git(["add", "--all"]);
    engineer.write(GOOD, good_request());
    let staged_bad = git_commit(engineer.path(), &with, "request: staged bad");
    assert_eq!(staged_bad.code, Some(1), "{staged_bad}");

    // Staged good: committed, and said so.
    engineer.git(["add", "--all"]);
    let good = git_commit(engineer.path(), &with, "request: good");
    assert_eq!(good.code, Some(0), "{good}");
    // git shows a hook's output on stderr.
    assert!(good.stderr.contains(&format!("{GOOD}: ok")), "{good}");
    assert_ne!(engineer.head(), head);

    // A request staged and no claude-warroom: a clear refusal.
    engineer.write(GOOD, format!("{}\n", good_request()));
    engineer.git(["add", "--all"]);
    let missing = git_commit(engineer.path(), &without, "request: again");
    assert_eq!(missing.code, Some(1), "{missing}");
    assert!(
        missing.stderr.contains("claude-warroom is not on PATH")
            && missing.stderr.contains("git commit --no-verify"),
        "{missing}"
    );
}

#[test]
fn init_never_replaces_a_hook_of_the_engineers_own_and_chains_it_when_asked() {
    use std::os::unix::fs::PermissionsExt as _;

    let remote = BareRemote::new();
    let engineer = remote.work_clone();
    let home = tempfile::tempdir().expect("a home");
    let null = Path::new("/dev/null");
    let hook = engineer.path().join(".git/hooks/pre-commit");
    let marker = home.path().join("own hook ran");
    let own = format!("#!/bin/sh\ntouch '{}'\n", marker.display());
    std::fs::write(&hook, &own).expect("writing a hook");
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let refused = init_in(engineer.path(), home.path(), null, &["init"]);
    assert_eq!(refused.code, Some(1), "{refused}");
    assert!(
        refused
            .stderr
            .contains(".git/hooks/pre-commit already exists and is not claude-warroom's")
            && refused.stderr.contains("--chain-hook"),
        "{refused}"
    );
    assert_eq!(std::fs::read_to_string(&hook).expect("the hook"), own);

    let chained = init_in(
        engineer.path(),
        home.path(),
        null,
        &["init", "--chain-hook"],
    );
    assert_eq!(chained.code, Some(0), "{chained}");
    let local = engineer.path().join(".git/hooks/pre-commit.local");
    assert_eq!(
        std::fs::read_to_string(&local).expect("the moved hook"),
        own
    );
    let again = init_in(
        engineer.path(),
        home.path(),
        null,
        &["init", "--chain-hook"],
    );
    assert!(again.stderr.contains("nothing changed"), "{again}");

    // A commit runs the engineer's hook, then ours.
    let bin = home.path().join("bin");
    install_claude_warroom(&bin);
    let path = format!("{}:{}", bin.display(), path_without_claude_warroom());
    engineer.write(GOOD, BAD_REQUEST);
    engineer.git(["add", "--all"]);
    let refused = git_commit(engineer.path(), &path, "request: bad");
    assert_eq!(refused.code, Some(1), "{refused}");
    assert!(marker.exists(), "the engineer's own hook did not run");
    assert!(
        refused.stderr.contains("spec.investigation.timeout"),
        "{refused}"
    );
}

#[test]
fn init_says_exactly_how_to_set_up_signing_and_when_it_is_set_up() {
    let remote = BareRemote::new();
    let engineer = remote.work_clone();
    let home = tempfile::tempdir().expect("a home");

    let off = init_in(
        engineer.path(),
        home.path(),
        Path::new("/dev/null"),
        &["init"],
    );
    assert_eq!(off.code, Some(0), "{off}");
    for line in [
        "signing: off: your commits are not signed",
        "  ssh-keygen -t ed25519 -f ~/.ssh/id_ed25519",
        "  git config --global gpg.format ssh",
        "  git config --global user.signingkey ~/.ssh/id_ed25519.pub",
        "  git config --global commit.gpgsign true",
        "  git config --global gpg.ssh.allowedSignersFile ~/.config/git/allowed_signers",
    ] {
        assert!(off.stderr.contains(line), "no `{line}` in {off}");
    }

    // An SSH key as the signing key, but gpg.format left at openpgp: that one command.
    let key = SshKey::generate("engineer");
    let global = home.path().join("gitconfig");
    let public = key.public_key_file().display().to_string();
    std::fs::write(&global, format!("[user]\n\tsigningkey = {public}\n")).expect("config");
    let half = init_in(engineer.path(), home.path(), &global, &["init"]);
    assert!(
        half.stderr
            .contains("is an SSH key, but gpg.format is `openpgp`"),
        "{half}"
    );
    assert!(
        half.stderr.contains("  git config --global gpg.format ssh"),
        "{half}"
    );

    // Everything set up: no command to run.
    let allowed = key.allowed_signers(TEST_USER_EMAIL).display().to_string();
    std::fs::write(
        &global,
        format!(
            "[user]\n\tname = {TEST_USER_NAME}\n\tsigningkey = {public}\n[gpg]\n\tformat = ssh\n\
             [gpg \"ssh\"]\n\tallowedSignersFile = {allowed}\n[commit]\n\tgpgsign = true\n"
        ),
    )
    .expect("writing the global config");
    // The test kit's clone says commit.gpgsign=false locally, which wins: said, with the fix.
    let local_off = init_in(engineer.path(), home.path(), &global, &["init"]);
    assert_eq!(local_off.code, Some(0), "{local_off}");
    let hint = format!("signing: on: ssh key `{public}`; commit.gpgsign is off");
    assert!(local_off.stderr.contains(&hint), "{local_off}");
    assert!(
        local_off
            .stderr
            .contains("  git config --global commit.gpgsign true"),
        "{local_off}"
    );
    engineer.git(["config", "--local", "--unset", "commit.gpgsign"]);
    let on = init_in(engineer.path(), home.path(), &global, &["init"]);
    assert_eq!(on.code, Some(0), "{on}");
    let ok = format!("signing: on: ssh key `{public}`\n");
    assert!(on.stderr.contains(&ok), "{on}");
    assert!(!on.stderr.contains("signing: run:"), "{on}");
}

#[test]
fn init_writes_the_github_actions_templates_and_actionlint_accepts_them() {
    let remote = BareRemote::new();
    let engineer = remote.work_clone();
    let home = tempfile::tempdir().expect("a home");
    let null = Path::new("/dev/null");
    let written = init_in(
        engineer.path(),
        home.path(),
        null,
        &["init", "--github-actions=validate,image"],
    );
    assert_eq!(written.code, Some(0), "{written}");
    let workflows = engineer.path().join(".github/workflows");
    let validate = workflows.join("warroom-validate.yml");
    let image = workflows.join("warroom-image.yml");
    let text = std::fs::read_to_string(&validate).expect("the validate workflow");
    assert!(text.contains("claude-warroom validate --since"), "{text}");
    assert!(
        text.contains("cargo +stable install --locked --git"),
        "{text}"
    );
    assert!(
        std::fs::read_to_string(&image)
            .expect("the image workflow")
            .contains("Dockerfile")
    );

    let lint = |files: &[&Path]| {
        let shellcheck = warroom_testkit::tools::shellcheck();
        Run::of(
            Command::new(warroom_testkit::tools::actionlint())
                .arg("-no-color")
                .arg(format!("-shellcheck={}", shellcheck.display()))
                .args(files)
                .current_dir(engineer.path())
                .output()
                .expect("running actionlint"),
        )
    };
    let linted = lint(&[&validate, &image]);
    assert_eq!(linted.code, Some(0), "actionlint: {linted}");
    // The linter is live: a workflow with an unknown context and an unquoted variable in a
    // script fails it.
    let broken = workflows.join("broken.yml");
    std::fs::write(
        &broken,
        text.replace("github.event.before", "github.event.no_such")
            .replace("--since \"$BASE\"", "--since $BASE")
            .replace("runs-on: ubuntu-latest", "runs-on: ${{ nope.os }}"),
    )
    .expect("writing a broken workflow");
    let failed = lint(&[&broken]);
    assert_eq!(
        failed.code,
        Some(1),
        "actionlint accepted a broken workflow: {failed}"
    );
    std::fs::remove_file(&broken).expect("removing it");

    // The hook passes shellcheck too.
    let hook = Run::of(
        Command::new(warroom_testkit::tools::shellcheck())
            .arg(engineer.path().join(".git/hooks/pre-commit"))
            .output()
            .expect("running shellcheck"),
    );
    assert_eq!(hook.code, Some(0), "shellcheck: {hook}");

    // A workflow the engineer changed is left alone, unless --force.
    std::fs::write(&validate, format!("{text}# ours\n")).expect("changing the workflow");
    let kept = init_in(
        engineer.path(),
        home.path(),
        null,
        &["init", "--github-actions"],
    );
    assert_eq!(kept.code, Some(1), "{kept}");
    assert!(
        kept.stderr.contains("differs from the template") && kept.stderr.contains("--force"),
        "{kept}"
    );
    assert!(
        std::fs::read_to_string(&validate)
            .expect("read")
            .ends_with("# ours\n")
    );
    let forced = init_in(
        engineer.path(),
        home.path(),
        null,
        &["init", "--github-actions", "--force"],
    );
    assert_eq!(forced.code, Some(0), "{forced}");
    assert_eq!(std::fs::read_to_string(&validate).expect("read"), text);
}

#[test]
fn validate_since_checks_the_request_files_changed_after_a_commit() {
    let remote = BareRemote::new();
    let engineer = remote.work_clone();
    let base = engineer.head();
    engineer.write(GOOD, good_request());
    engineer.write("requests/pending/bad one.yaml", BAD_REQUEST);
    engineer.write("docs/not a request.yaml", "x: [\n");
    engineer.commit_all("two requests and a note");
    let run = |args: &[&str]| Run::of(cli(engineer.path()).args(args).output().expect("run"));

    let changed = run(&["validate", "--since", &base]);
    assert_eq!(changed.code, Some(1), "{changed}");
    assert!(changed.stdout.contains(&format!("{GOOD}: ok")), "{changed}");
    assert!(
        changed.stdout.contains("requests/pending/bad one.yaml: "),
        "{changed}"
    );
    assert!(!changed.stdout.contains("not a request"), "{changed}");
    assert!(
        changed.stderr.contains("1 of 2 files are invalid"),
        "{changed}"
    );

    let nothing = run(&["validate", "--since", "HEAD"]);
    assert_eq!(nothing.code, Some(0), "{nothing}");
    assert!(
        nothing.stderr.contains("no request files under requests/"),
        "{nothing}"
    );

    // Nothing staged: the hook's check passes.
    let staged = run(&["validate", "--staged"]);
    assert_eq!(staged.code, Some(0), "{staged}");
    let usage = run(&["validate", "--staged", "x.yaml"]);
    assert_eq!(usage.code, Some(2), "{usage}");
}
