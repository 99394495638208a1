//! Tests of warroom-access against the real tools: policy files parsed as an operator writes
//! them, and commits signed with real `ssh-keygen` and `gpg` keys in real git repositories,
//! verified through `Verifier` and decided by `authorize`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use proptest::prelude::*;
use warroom_access::policy::{json_schema_pretty, parse_policy};
use warroom_access::signature::SignatureStatus;
use warroom_access::{
    CommitRange, CommitSignature, FieldError, PolicyWatcher, Refusal, Reload, RequestFacts, Signer,
    Verifier, WarroomPolicy, authorize, authorize_cancel,
};
use warroom_proto::Tool;

const EXAMPLE: &str = include_str!("../../../examples/policy/warroom-policy.yaml");
const REQUEST: &str = include_str!("../../../examples/requests/2024-01-15-1430-api-timeout.yaml");
const REQUEST_PATH: &str = "requests/pending/2024-01-15-1430-api-timeout.yaml";

// ---------------------------------------------------------------------------------------
// The policy file.

fn errors_of(yaml: &str) -> Vec<FieldError> {
    match parse_policy("policy.yaml", yaml.as_bytes()) {
        Ok(policy) => panic!("accepted: {policy:?}"),
        Err(errors) => errors,
    }
}

fn has(errors: &[FieldError], field: &str, words: &str) -> bool {
    errors
        .iter()
        .any(|e| e.field == field && e.message.contains(words))
}

#[track_caller]
fn assert_error(errors: &[FieldError], field: &str, words: &str) {
    assert!(
        has(errors, field, words),
        "no error at `{field}` containing {words:?}; got:\n{}",
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The committed schema is what the types generate; regenerate it with
/// `WARROOM_BLESS=1 cargo nextest run -p warroom-access the_committed_json_schema_is_current`.
#[test]
fn the_committed_json_schema_is_current() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schema/warroom-policy.schema.json");
    let generated = json_schema_pretty();
    if std::env::var_os("WARROOM_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write the schema");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "schema/warroom-policy.schema.json is stale; regenerate it with `WARROOM_BLESS=1 \
         cargo nextest run -p warroom-access the_committed_json_schema_is_current`"
    );
}

#[test]
fn the_example_policy_parses_and_means_what_its_comments_say() {
    let policy = parse_policy("examples/policy/warroom-policy.yaml", EXAMPLE.as_bytes())
        .unwrap_or_else(|e| panic!("{e:?}"));
    let pe1 = policy.engineer("platform-engineer-1").expect("pe1");
    assert!(pe1.may_target("production-hub"));
    assert!(pe1.may_target("prod-cluster-7"));
    assert!(!pe1.may_target("staging-hub"));
    assert!(policy.is_admin("platform-engineer-1"));
    assert!(!policy.is_admin("platform-engineer-2"));
    let pe2 = policy.engineer("platform-engineer-2").expect("pe2");
    assert_eq!(policy.max_concurrent_requests(pe2), Some(1));
    assert_eq!(policy.max_concurrent_requests(pe1), Some(3));
    let hub = warroom_access::ceiling(&policy, "production-hub");
    assert_eq!(hub.max_timeout_secs, Some(3600), "the tightest rule wins");
    assert_eq!(
        hub.tools.map(|t| t.into_iter().collect::<Vec<_>>()),
        Some(vec![Tool::Bash, Tool::Read, Tool::Grep, Tool::Glob])
    );
    let other = warroom_access::ceiling(&policy, "prod-cluster-7");
    assert_eq!(other.max_timeout_secs, Some(7200));
    assert_eq!(other.tools, None);
    // What serde writes back parses to the same policy.
    let written = serde_yaml_ng::to_string(&policy).expect("serialize");
    assert_eq!(parse_policy("again", written.as_bytes()), Ok(policy));
}

#[test]
fn every_problem_is_reported_at_once_with_its_field() {
    let errors = errors_of(
        r#"
apiVersion: warroom.intility.io/v2
kind: WarroomPolicy
engineers:
  - name: platform-engineer-1
    keys:
      - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAS0dxjkqtXd2eq1+wjhr1VdCDTv2N80KNHgudMPEJlh a
      - not a key at all
    clusters: [production-hub, "prod cluster"]
    maxConcurentRequests: 2
  - name: platform-engineer-1
    keys:
      - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAS0dxjkqtXd2eq1+wjhr1VdCDTv2N80KNHgudMPEJlh copy
    clusters: []
    emails: [nobody]
  - name: "bad name*"
    keys: []
    clusters: ["-x"]
admins: [platform-enginer-1]
clusters:
  - name: production-hub
    maxTimeout: 20
    tools: [bash, shell]
  - name: production-hub
    maxTimeout: 99999
defaults:
  maxConcurrentRequests: 0
trustedKeys:
  - name: github-web-flow
    keys: [B5690EEEBB952194]
gpgPublicKeys: ["hello"]
enginers: []
"#,
    );
    let expected = [
        ("apiVersion", "unknown apiVersion"),
        (
            "engineers[0].keys[1]",
            "not an OpenSSH public key or GPG fingerprint",
        ),
        ("engineers[0].clusters[1]", "contains a space"),
        (
            "engineers[0].maxConcurentRequests",
            "unknown field (did you mean `maxConcurrentRequests`?)",
        ),
        ("engineers[1].name", "already listed at engineers[0].name"),
        (
            "engineers[1].keys[0]",
            "already listed at engineers[0].keys[0]",
        ),
        ("engineers[1].clusters", "must list at least one"),
        ("engineers[1].emails[0]", "not an email address"),
        ("engineers[2].name", "contains a space"),
        ("engineers[2].keys", "must list at least one key"),
        ("engineers[2].clusters[0]", "must start with"),
        (
            "admins[0]",
            "not an engineer of this policy (did you mean `platform-engineer-1`?)",
        ),
        ("clusters[0].maxTimeout", "20 is out of range"),
        ("clusters[0].tools[1]", "unknown tool `shell`"),
        ("clusters[1].name", "already has a rule at clusters[0].name"),
        ("clusters[1].maxTimeout", "99999 is out of range"),
        ("defaults.maxConcurrentRequests", "0 is out of range"),
        ("trustedKeys[0].keys[0]", "give the full fingerprint"),
        ("gpgPublicKeys[0]", "not an ASCII-armored GPG public key"),
        ("enginers", "unknown field (did you mean `engineers`?)"),
    ];
    for (field, words) in expected {
        assert_error(&errors, field, words);
    }
    assert_eq!(errors.len(), expected.len(), "{errors:#?}");
}

#[test]
fn files_that_are_not_one_policy_document_are_refused() {
    for (text, words) in [
        ("", "empty"),
        ("a: [", "not valid YAML"),
        (
            "kind: WarroomPolicy\n---\nkind: WarroomPolicy\n",
            "more than one",
        ),
        ("- a\n- b\n", "expected a mapping"),
    ] {
        let errors = errors_of(text);
        assert!(
            errors.iter().any(|e| e.message.contains(words)),
            "{text:?}: {errors:?}"
        );
    }
    let errors = match parse_policy("p", &[0xff, 0xfe]) {
        Err(errors) => errors,
        Ok(_) => panic!("accepted"),
    };
    assert!(errors[0].message.contains("not UTF-8"), "{errors:?}");
    let big = vec![b'#'; warroom_access::policy::MAX_POLICY_BYTES + 1];
    let errors = parse_policy("p", &big).err().unwrap_or_default();
    assert!(errors[0].message.contains("at most"), "{errors:?}");
    // Missing required fields are named.
    let errors = errors_of("apiVersion: warroom.intility.io/v1\n");
    assert_error(&errors, "kind", "is required");
    assert_error(&errors, "engineers", "is required");
    let errors = errors_of(
        "apiVersion: warroom.intility.io/v1\nkind: WarroomPolicy\nengineers:\n  - keys: [x]\n",
    );
    assert_error(&errors, "engineers[0].name", "is required");
    assert_error(&errors, "engineers[0].clusters", "is required");
}

#[test]
fn a_gpg_fingerprint_needs_an_armored_key_and_a_private_key_is_never_accepted() {
    let errors = errors_of(
        r#"
apiVersion: warroom.intility.io/v1
kind: WarroomPolicy
engineers:
  - name: e
    keys: ["9684 79A1 AFF9 27E3 7D1A  566B B569 0EEE BB95 2194"]
    clusters: ["*"]
gpgPublicKeys:
  - |
    -----BEGIN PGP PRIVATE KEY BLOCK-----
    -----END PGP PRIVATE KEY BLOCK-----
"#,
    );
    assert_error(&errors, "gpgPublicKeys[0]", "private key");
    let errors = errors_of(
        r#"
apiVersion: warroom.intility.io/v1
kind: WarroomPolicy
engineers:
  - name: e
    keys: ["968479A1AFF927E37D1A566BB5690EEEBB952194"]
    clusters: ["*"]
"#,
    );
    assert_error(
        &errors,
        "engineers[0].keys[0]",
        "`gpgPublicKeys` holds no public key",
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn parsing_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_policy("p", &bytes);
    }

    /// Policies built from fragments of real ones reach deep into the walker, and
    /// whatever parses can be evaluated against arbitrary facts without panicking.
    #[test]
    fn parsing_and_evaluation_never_panic_on_policy_like_input(
        lines in proptest::collection::vec(prop_oneof![
            Just("apiVersion: warroom.intility.io/v1".to_owned()),
            Just("kind: WarroomPolicy".to_owned()),
            Just("engineers:".to_owned()),
            Just("  - name: e1".to_owned()),
            Just("    keys: [ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAS0dxjkqtXd2eq1+wjhr1VdCDTv2N80KNHgudMPEJlh]".to_owned()),
            Just("    clusters: [\"prod-*\", hub]".to_owned()),
            Just("    maxConcurrentRequests: 1".to_owned()),
            Just("clusters:".to_owned()),
            Just("  - name: \"*\"".to_owned()),
            Just("    maxTimeout: 60".to_owned()),
            Just("    tools: [read]".to_owned()),
            Just("admins: [e1]".to_owned()),
            "[ -~]{0,40}",
        ], 0..16),
        engineer in "[a-z0-9*-]{0,8}",
        clusters in proptest::collection::vec("[a-z0-9*-]{0,12}", 0..4),
        timeout in any::<u64>(),
        active in any::<usize>(),
        fingerprint in "[ -~]{0,50}",
        code in 0..8u8,
    ) {
        let text = lines.join("\n");
        if let Ok(policy) = parse_policy("p", text.as_bytes()) {
            let status = match code {
                0 => SignatureStatus::Unsigned,
                1 => SignatureStatus::Bad { fingerprint: None },
                2 => SignatureStatus::Expired { fingerprint: fingerprint.clone() },
                3 => SignatureStatus::Revoked { fingerprint: fingerprint.clone() },
                4 => SignatureStatus::UnknownKey { fingerprint: fingerprint.clone() },
                5 => SignatureStatus::CannotCheck { detail: fingerprint.clone() },
                6 => SignatureStatus::Good { fingerprint: "SHA256:dSP2RcYeHD7ckihPTogsvhfRk1tCDL004YfYxlte6ng".to_owned() },
                _ => SignatureStatus::Good { fingerprint: fingerprint.clone() },
            };
            let commits = [CommitSignature { commit: "c".repeat(40).parse().unwrap(), status, author_email: fingerprint.clone() }];
            let facts = RequestFacts {
                engineer: engineer.clone(),
                clusters,
                timeout_secs: timeout,
                tools: vec![Tool::Read, Tool::Bash],
                active_requests: active,
            };
            if let Err(refusal) = authorize(&policy, &facts, &commits) {
                prop_assert!(Refusal::CODES.contains(&refusal.code()));
                prop_assert!(!refusal.to_string().is_empty());
            }
            let _ = authorize_cancel(&policy, &engineer, "e1", &commits);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Real git, real keys.

/// Runs a program in `dir` with a clean environment (no user config) and returns stdout.
fn run(dir: &Path, program: &str, args: &[&str], env: &[(&str, &Path)]) -> String {
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("LC_ALL", "C")
        .stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// An SSH key pair made by the real `ssh-keygen`.
struct SshKey {
    private: PathBuf,
    public: String,
}

fn ssh_key(dir: &Path, name: &str) -> SshKey {
    let private = dir.join(name);
    let path = private.to_string_lossy().into_owned();
    run(
        dir,
        "ssh-keygen",
        &["-q", "-t", "ed25519", "-N", "", "-C", name, "-f", &path],
        &[],
    );
    let public = std::fs::read_to_string(dir.join(format!("{name}.pub"))).expect("public key");
    SshKey {
        private,
        public: public.trim().to_owned(),
    }
}

/// A GnuPG home with one signing key, whose agent is stopped when dropped.
struct GpgKey {
    home: PathBuf,
    fingerprint: String,
    armored: String,
}

impl GpgKey {
    fn new(dir: &Path, name: &str) -> GpgKey {
        let home = dir.join(format!("gnupg-{name}"));
        std::fs::create_dir(&home).expect("gnupg home");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        }
        let env: [(&str, &Path); 1] = [("GNUPGHOME", &home)];
        let uid = format!("{name} <{name}@example.com>");
        run(
            dir,
            "gpg",
            &[
                "--batch",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
                "--quick-gen-key",
                &uid,
                "ed25519",
                "sign",
                "never",
            ],
            &env,
        );
        let listing = run(
            dir,
            "gpg",
            &["--batch", "--with-colons", "--fingerprint", "--list-keys"],
            &env,
        );
        let fingerprint = listing
            .lines()
            .find(|l| l.starts_with("fpr:"))
            .and_then(|l| l.split(':').nth(9))
            .expect("a fingerprint")
            .to_owned();
        let armored = run(
            dir,
            "gpg",
            &["--batch", "--armor", "--export", &fingerprint],
            &env,
        );
        GpgKey {
            home,
            fingerprint,
            armored,
        }
    }
}

impl Drop for GpgKey {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .args(["--kill", "gpg-agent"])
            .env("GNUPGHOME", &self.home)
            .status();
    }
}

enum Sign<'a> {
    No,
    Ssh(&'a SshKey),
    Gpg(&'a GpgKey),
}

/// A work repository with the request file's commits.
struct Repo {
    dir: tempfile::TempDir,
}

impl Repo {
    fn new() -> Repo {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = Repo { dir };
        repo.git(&["init", "--quiet", "--initial-branch=main", "repo"], None);
        repo.git(
            &["commit", "--quiet", "--allow-empty", "-m", "root"],
            Some("repo"),
        );
        repo
    }

    fn tmp(&self) -> &Path {
        self.dir.path()
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    fn git(&self, args: &[&str], sub: Option<&str>) -> String {
        let dir = match sub {
            Some(sub) => self.dir.path().join(sub),
            None => self.dir.path().to_owned(),
        };
        self.git_as(&dir, args, "Platform Engineer", "pe1@example.com", &[])
    }

    fn git_as(
        &self,
        dir: &Path,
        args: &[&str],
        name: &str,
        email: &str,
        env: &[(&str, &Path)],
    ) -> String {
        let mut all = vec![
            "-c".to_owned(),
            format!("user.name={name}"),
            "-c".to_owned(),
            format!("user.email={email}"),
        ];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        run(dir, "git", &all, env)
    }

    /// Writes `content` to `path`, commits it signed as asked, and returns the commit id.
    fn commit(&self, path: &str, content: &str, sign: Sign<'_>) -> String {
        self.commit_by(path, content, sign, "pe1@example.com")
    }

    fn commit_by(&self, path: &str, content: &str, sign: Sign<'_>, email: &str) -> String {
        let file = self.path().join(path);
        std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        std::fs::write(&file, content).expect("write");
        self.git(&["add", path], Some("repo"));
        let repo = self.path();
        let message = format!("update {path}");
        match sign {
            Sign::No => {
                self.git_as(
                    &repo,
                    &["commit", "--quiet", "-m", &message],
                    "E",
                    email,
                    &[],
                );
            }
            Sign::Ssh(key) => {
                let signingkey = format!("user.signingkey={}", key.private.display());
                self.git_as(
                    &repo,
                    &[
                        "-c",
                        "gpg.format=ssh",
                        "-c",
                        &signingkey,
                        "commit",
                        "--quiet",
                        "-S",
                        "-m",
                        &message,
                    ],
                    "E",
                    email,
                    &[],
                );
            }
            Sign::Gpg(key) => {
                let signingkey = format!("user.signingkey={}", key.fingerprint);
                self.git_as(
                    &repo,
                    &[
                        "-c",
                        "gpg.format=openpgp",
                        "-c",
                        &signingkey,
                        "commit",
                        "--quiet",
                        "-S",
                        "-m",
                        &message,
                    ],
                    "E",
                    email,
                    &[("GNUPGHOME", &key.home)],
                );
            }
        }
        self.head()
    }

    fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"], Some("repo"))
            .trim()
            .to_owned()
    }

    /// A bare mirror, as the gateway keeps one.
    fn mirror(&self) -> PathBuf {
        let repo = self.path().display().to_string();
        self.git(&["clone", "--quiet", "--mirror", &repo, "mirror.git"], None);
        self.tmp().join("mirror.git")
    }
}

/// A policy with pe1 (`pe1_keys`, production-hub and prod-cluster-*) and pe2 (`pe2_keys`).
fn policy(pe1_keys: &[&str], pe2_keys: &[&str], extra: &str) -> WarroomPolicy {
    let list = |keys: &[&str]| {
        keys.iter()
            .map(|k| format!("\n      - \"{k}\""))
            .collect::<String>()
    };
    let yaml = format!(
        r#"apiVersion: warroom.intility.io/v1
kind: WarroomPolicy
engineers:
  - name: platform-engineer-1
    keys:{}
    clusters: [production-hub, "prod-cluster-*"]
    emails: [pe1@example.com]
  - name: platform-engineer-2
    keys:{}
    clusters: [other-hub]
    emails: [pe2@example.com]
{extra}"#,
        list(pe1_keys),
        list(pe2_keys)
    );
    parse_policy("test-policy.yaml", yaml.as_bytes()).unwrap_or_else(|e| panic!("{e:#?}\n{yaml}"))
}

/// The facts of the design's example request (production-hub, 1800 s), as pe1.
fn facts(clusters: &[&str]) -> RequestFacts {
    let parsed = warroom_proto::parse_request(Path::new(REQUEST_PATH), REQUEST.as_bytes())
        .expect("the example request is valid");
    let mut facts = RequestFacts::of(&parsed, 0);
    facts.clusters = clusters.iter().map(|c| (*c).to_owned()).collect();
    facts
}

/// The commits of the request file, as [`Verifier::commits`] finds them; the batch
/// [`Verifier::commits_of_files`] (the gateway's) must find the same ones.
fn verify(policy: &WarroomPolicy, repo: &Path, head: &str) -> Vec<CommitSignature> {
    let verifier = Verifier::new(policy).expect("verifier");
    let range = CommitRange::UpTo {
        head: head.parse().expect("a commit id"),
    };
    let one = verifier
        .commits(repo, &range, REQUEST_PATH)
        .expect("git log");
    let absent = "requests/pending/absent.yaml".to_owned();
    let mut batch = verifier
        .commits_of_files(repo, &range, &[REQUEST_PATH.to_owned(), absent.clone()])
        .expect("the batch git log");
    assert_eq!(
        batch.remove(&absent),
        Some(Vec::new()),
        "an untouched path has no commits"
    );
    assert_eq!(
        batch.remove(REQUEST_PATH),
        Some(one.clone()),
        "the batch finds the same commits"
    );
    one
}

fn decide(
    policy: &WarroomPolicy,
    repo: &Path,
    head: &str,
) -> Result<Vec<(String, Signer)>, Refusal> {
    authorize(
        policy,
        &facts(&["production-hub"]),
        &verify(policy, repo, head),
    )
    .map(|a| a.signers)
}

struct Keys {
    pe1: SshKey,
    pe2: SshKey,
    stranger: SshKey,
}

fn keys(repo: &Repo) -> Keys {
    Keys {
        pe1: ssh_key(repo.tmp(), "pe1"),
        pe2: ssh_key(repo.tmp(), "pe2"),
        stranger: ssh_key(repo.tmp(), "stranger"),
    }
}

fn standard_policy(keys: &Keys) -> WarroomPolicy {
    policy(&[keys.pe1.public.as_str()], &[keys.pe2.public.as_str()], "")
}

#[test]
fn a_request_signed_by_its_engineer_runs_in_a_bare_mirror_too() {
    let repo = Repo::new();
    let keys = keys(&repo);
    let commit = repo.commit(REQUEST_PATH, REQUEST, Sign::Ssh(&keys.pe1));
    let policy = standard_policy(&keys);
    let expected = vec![(
        commit.clone(),
        Signer::Engineer("platform-engineer-1".to_owned()),
    )];
    assert_eq!(decide(&policy, &repo.path(), &commit), Ok(expected.clone()));
    // An unrelated later commit is not one that touched the file.
    let head = repo.commit("README.md", "hello", Sign::No);
    let mirror = repo.mirror();
    assert_eq!(decide(&policy, &mirror, &head), Ok(expected));
}

#[test]
fn an_unsigned_commit_is_refused_as_unsigned() {
    let repo = Repo::new();
    let keys = keys(&repo);
    let commit = repo.commit(REQUEST_PATH, REQUEST, Sign::No);
    let refusal = decide(&standard_policy(&keys), &repo.path(), &commit).unwrap_err();
    assert_eq!(refusal, Refusal::Unsigned { commit });
    assert_eq!(refusal.code(), "unsigned");
}

#[test]
fn a_key_the_policy_does_not_list_is_an_unknown_key() {
    let repo = Repo::new();
    let keys = keys(&repo);
    let commit = repo.commit(REQUEST_PATH, REQUEST, Sign::Ssh(&keys.stranger));
    let fingerprint = run(
        repo.tmp(),
        "ssh-keygen",
        &["-lf", &format!("{}.pub", keys.stranger.private.display())],
        &[],
    );
    let fingerprint = fingerprint.split_whitespace().nth(1).expect("fingerprint");
    let refusal = decide(&standard_policy(&keys), &repo.path(), &commit).unwrap_err();
    assert_eq!(
        refusal,
        Refusal::UnknownKey {
            commit,
            fingerprint: fingerprint.to_owned()
        }
    );
    assert_eq!(refusal.code(), "unknown_key");
}

#[test]
fn the_repository_config_cannot_widen_trust() {
    let repo = Repo::new();
    let keys = keys(&repo);
    let commit = repo.commit(REQUEST_PATH, REQUEST, Sign::Ssh(&keys.stranger));
    // The repository's own config names an allowed-signers file that trusts the stranger's
    // key as pe1, and asks for --show-signature output; neither may have any effect.
    let file = repo.tmp().join("evil_allowed_signers");
    std::fs::write(
        &file,
        format!("platform-engineer-1 {}\n", keys.stranger.public),
    )
    .expect("write");
    let path = file.display().to_string();
    repo.git(
        &["config", "gpg.ssh.allowedSignersFile", &path],
        Some("repo"),
    );
    repo.git(&["config", "log.showSignature", "true"], Some("repo"));
    let refusal = decide(&standard_policy(&keys), &repo.path(), &commit).unwrap_err();
    assert_eq!(refusal.code(), "unknown_key", "{refusal}");
}

#[test]
fn a_key_of_another_engineer_is_refused_naming_both() {
    let repo = Repo::new();
    let keys = keys(&repo);
    let commit = repo.commit(REQUEST_PATH, REQUEST, Sign::Ssh(&keys.pe2));
    let refusal = decide(&standard_policy(&keys), &repo.path(), &commit).unwrap_err();
    assert_eq!(
        refusal,
        Refusal::KeyOfAnotherEngineer {
            commit,
            key_owner: "platform-engineer-2".to_owned(),
            engineer: "platform-engineer-1".to_owned(),
        }
    );
    assert_eq!(refusal.code(), "other_engineer");
    assert!(refusal.to_string().contains("platform-engineer-2"));
}

#[test]
fn an_unsigned_edit_after_a_signed_add_is_refused_naming_the_edit() {
    let repo = Repo::new();
    let keys = keys(&repo);
    let added = repo.commit(REQUEST_PATH, REQUEST, Sign::Ssh(&keys.pe1));
    let edited = repo.commit(
        REQUEST_PATH,
        &REQUEST.replace("timeout: 1800", "timeout: 3600"),
        Sign::No,
    );
    let policy = standard_policy(&keys);
    let commits = verify(&policy, &repo.path(), &edited);
    assert_eq!(
        commits.iter().map(|c| c.commit.clone()).collect::<Vec<_>>(),
        vec![edited.clone(), added.clone()],
        "both commits that touched the file, newest first"
    );
    let refusal = decide(&policy, &repo.path(), &edited).unwrap_err();
    assert_eq!(
        refusal,
        Refusal::Unsigned {
            commit: edited.clone()
        }
    );
    // Only the range after the add: the edit alone, still refused.
    let verifier = Verifier::new(&policy).expect("verifier");
    let since = verifier
        .commits(
            &repo.path(),
            &CommitRange::Since {
                since: added.parse().expect("a commit id"),
                head: edited.parse().expect("a commit id"),
            },
            REQUEST_PATH,
        )
        .expect("git log");
    assert_eq!(since.len(), 1);
    assert_eq!(since[0].commit, edited);
    assert_eq!(since[0].status, SignatureStatus::Unsigned);
}

#[test]
fn a_merge_is_judged_by_the_commits_whose_changes_survive() {
    let repo = Repo::new();
    let keys = keys(&repo);
    let policy = standard_policy(&keys);
    let added = repo.commit(REQUEST_PATH, REQUEST, Sign::Ssh(&keys.pe1));
    // A side branch edits the file unsigned; main merges it but keeps its own version
    // (`-s ours`): the unsigned edit is not in the file, so it does not count.
    repo.git(&["checkout", "--quiet", "-b", "side"], Some("repo"));
    repo.commit(REQUEST_PATH, &REQUEST.replace("1800", "60"), Sign::No);
    repo.git(&["checkout", "--quiet", "main"], Some("repo"));
    repo.git(
        &["merge", "--quiet", "--no-edit", "-s", "ours", "side"],
        Some("repo"),
    );
    let head = repo.head();
    assert_eq!(
        decide(&policy, &repo.path(), &head).map(|s| s.len()),
        Ok(1),
        "only the signed add shaped the file"
    );
    // A second side branch whose unsigned edit is merged in does count.
    repo.git(
        &["checkout", "--quiet", "-b", "side2", &added],
        Some("repo"),
    );
    let unsigned = repo.commit(REQUEST_PATH, &REQUEST.replace("1800", "90"), Sign::No);
    repo.git(&["checkout", "--quiet", "main"], Some("repo"));
    repo.git(
        &["merge", "--quiet", "--no-edit", "-X", "theirs", "side2"],
        Some("repo"),
    );
    let head = repo.head();
    assert_eq!(
        decide(&policy, &repo.path(), &head),
        Err(Refusal::Unsigned { commit: unsigned })
    );
}

#[test]
fn clusters_are_checked_against_the_engineers_patterns_and_ceilings() {
    let repo = Repo::new();
    let keys = keys(&repo);
    let commit = repo.commit(REQUEST_PATH, REQUEST, Sign::Ssh(&keys.pe1));
    let policy = policy(
        &[keys.pe1.public.as_str()],
        &[keys.pe2.public.as_str()],
        "clusters:\n  - name: \"prod-cluster-*\"\n    maxTimeout: 900\n  - name: \"*\"\n    tools: [bash, read, grep, write]\ndefaults:\n  maxConcurrentRequests: 2\n",
    );
    let commits = verify(&policy, &repo.path(), &commit);

    let refusal = authorize(
        &policy,
        &facts(&["production-hub", "staging-hub"]),
        &commits,
    )
    .unwrap_err();
    assert_eq!(
        refusal,
        Refusal::ClusterNotAllowed {
            engineer: "platform-engineer-1".to_owned(),
            cluster: "staging-hub".to_owned()
        }
    );
    assert_eq!(refusal.code(), "cluster_not_allowed");

    // The glob allows prod-cluster-7, whose ceiling is 900 s: the request's 1800 s is too long.
    let refusal = authorize(&policy, &facts(&["prod-cluster-7"]), &commits).unwrap_err();
    assert_eq!(refusal.code(), "timeout_above_ceiling", "{refusal}");
    let mut short = facts(&["prod-cluster-7"]);
    short.timeout_secs = 600;
    let authorized = authorize(&policy, &short, &commits).expect("allowed");
    assert_eq!(
        authorized.ceilings["prod-cluster-7"].max_timeout_secs,
        Some(900)
    );

    let mut glob = short.clone();
    glob.tools.push(Tool::Edit);
    let refusal = authorize(&policy, &glob, &commits).unwrap_err();
    assert_eq!(
        refusal,
        Refusal::ToolNotAllowed {
            cluster: "prod-cluster-7".to_owned(),
            tool: Tool::Edit,
            allowed: vec![Tool::Bash, Tool::Read, Tool::Grep, Tool::Write],
        }
    );

    let mut busy = short;
    busy.active_requests = 2;
    assert_eq!(
        authorize(&policy, &busy, &commits).map_err(|r| r.code()),
        Err("too_many_requests")
    );

    let mut stranger = facts(&["production-hub"]);
    stranger.engineer = "nobody".to_owned();
    assert_eq!(
        authorize(&policy, &stranger, &commits).map_err(|r| r.code()),
        Err("unknown_engineer")
    );
}

#[test]
fn a_gpg_signed_commit_is_verified_against_the_policys_keyring() {
    let repo = Repo::new();
    let keys = keys(&repo);
    let gpg = GpgKey::new(repo.tmp(), "gpg-pe1");
    let other = GpgKey::new(repo.tmp(), "gpg-pe2");
    let commit = repo.commit(REQUEST_PATH, REQUEST, Sign::Gpg(&gpg));
    let armored = |k: &GpgKey| {
        k.armored
            .lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    let policy_with = |pe2: &GpgKey| {
        policy(
            &[keys.pe1.public.as_str(), gpg.fingerprint.as_str()],
            &[pe2.fingerprint.as_str()],
            &format!(
                "gpgPublicKeys:\n  - |\n{}  - |\n{}",
                armored(&gpg),
                armored(pe2)
            ),
        )
    };
    let policy = policy_with(&other);
    assert_eq!(
        decide(&policy, &repo.path(), &commit),
        Ok(vec![(
            commit.clone(),
            Signer::Engineer("platform-engineer-1".to_owned())
        )])
    );

    // pe2's GPG key signing pe1's request.
    let edit = repo.commit(
        REQUEST_PATH,
        &REQUEST.replace("1800", "1200"),
        Sign::Gpg(&other),
    );
    assert_eq!(
        decide(&policy, &repo.path(), &edit).map_err(|r| r.code()),
        Err("other_engineer")
    );

    // A GPG key that is not in the keyring is unknown (git cannot check it at all).
    let stranger = GpgKey::new(repo.tmp(), "gpg-stranger");
    let head = repo.commit(
        REQUEST_PATH,
        &REQUEST.replace("1800", "900"),
        Sign::Gpg(&stranger),
    );
    let refusal = decide(&policy, &repo.path(), &head).unwrap_err();
    assert_eq!(refusal.code(), "unknown_key", "{refusal}");
    assert!(stranger.fingerprint.ends_with(match &refusal {
        Refusal::UnknownKey { fingerprint, .. } => fingerprint.as_str(),
        _ => "unreachable",
    }));

    // A listed fingerprint whose armored key is missing is refused when the verifier is made.
    let missing = policy_with(&stranger);
    let mut missing = missing;
    missing.gpg_public_keys.truncate(1);
    let error = Verifier::new(&missing).unwrap_err();
    assert!(error.to_string().contains(&stranger.fingerprint), "{error}");
}

#[test]
fn a_trusted_web_flow_key_counts_for_the_author_only_when_listed() {
    let repo = Repo::new();
    let keys = keys(&repo);
    // The stranger's key plays GitHub's web-flow key: it signs commits whose author is the
    // logged-in engineer.
    let by_pe1 = repo.commit_by(
        REQUEST_PATH,
        REQUEST,
        Sign::Ssh(&keys.stranger),
        "PE1@example.com",
    );
    let without = standard_policy(&keys);
    assert_eq!(
        decide(&without, &repo.path(), &by_pe1).map_err(|r| r.code()),
        Err("unknown_key"),
        "a web-flow key is not trusted unless listed"
    );
    let with = policy(
        &[keys.pe1.public.as_str()],
        &[keys.pe2.public.as_str()],
        &format!(
            "trustedKeys:\n  - name: github-web-flow\n    keys: [\"{}\"]\n",
            keys.stranger.public
        ),
    );
    assert_eq!(
        decide(&with, &repo.path(), &by_pe1),
        Ok(vec![(
            by_pe1.clone(),
            Signer::Trusted {
                key: "github-web-flow".to_owned(),
                author_email: "PE1@example.com".to_owned()
            }
        )])
    );
    let by_pe2 = repo.commit_by(
        REQUEST_PATH,
        &REQUEST.replace("1800", "60"),
        Sign::Ssh(&keys.stranger),
        "pe2@example.com",
    );
    assert_eq!(
        decide(&with, &repo.path(), &by_pe2).map_err(|r| r.code()),
        Err("other_engineer")
    );
    let by_nobody = repo.commit_by(
        REQUEST_PATH,
        &REQUEST.replace("1800", "90"),
        Sign::Ssh(&keys.stranger),
        "nobody@example.com",
    );
    assert_eq!(
        decide(&with, &repo.path(), &by_nobody).map_err(|r| r.code()),
        Err("unattributed")
    );
}

#[test]
fn only_the_owner_and_admins_may_cancel() {
    let repo = Repo::new();
    let keys = keys(&repo);
    let by_pe2 = repo.commit("requests/cancel/x.yaml", "x", Sign::Ssh(&keys.pe2));
    let policy = policy(
        &[keys.pe1.public.as_str()],
        &[keys.pe2.public.as_str()],
        "admins: [platform-engineer-2]\n",
    );
    let verifier = Verifier::new(&policy).expect("verifier");
    let commits = verifier
        .commits(
            &repo.path(),
            &CommitRange::UpTo {
                head: by_pe2.parse().expect("a commit id"),
            },
            "requests/cancel/x.yaml",
        )
        .expect("git log");
    assert_eq!(
        authorize_cancel(
            &policy,
            "platform-engineer-2",
            "platform-engineer-1",
            &commits
        ),
        Ok(())
    );
    assert_eq!(
        authorize_cancel(
            &policy,
            "platform-engineer-1",
            "platform-engineer-1",
            &commits
        )
        .map_err(|r| r.code()),
        Err("other_engineer"),
        "the cancellation must be signed by its actor"
    );
    let not_admin = standard_policy(&keys);
    assert_eq!(
        authorize_cancel(
            &not_admin,
            "platform-engineer-2",
            "platform-engineer-1",
            &commits
        )
        .map_err(|r| r.code()),
        Err("not_allowed_to_cancel")
    );
}

#[test]
fn the_watcher_reloads_changed_content_and_keeps_the_old_policy_when_the_new_is_invalid() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A ConfigMap mount: the file is a symlink into a `..data` folder that is swapped.
    let write_version = |name: &str, text: &str| {
        let version = dir.path().join(name);
        std::fs::create_dir(&version).expect("mkdir");
        std::fs::write(version.join("policy.yaml"), text).expect("write");
        let link = dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(name, &link).expect("symlink");
        std::fs::rename(&link, dir.path().join("..data")).expect("swap");
    };
    write_version("v1", EXAMPLE);
    std::os::unix::fs::symlink("..data/policy.yaml", dir.path().join("policy.yaml"))
        .expect("symlink");
    let path = dir.path().join("policy.yaml");

    let mut watcher = PolicyWatcher::load(&path).expect("load");
    let first_hash = watcher.hash_hex();
    assert!(matches!(watcher.poll(), Reload::Unchanged));

    write_version(
        "v2",
        &EXAMPLE.replace("maxConcurrentRequests: 3", "maxConcurrentRequests: 5"),
    );
    assert!(matches!(watcher.poll(), Reload::Reloaded));
    assert_ne!(watcher.hash_hex(), first_hash);
    assert_eq!(
        watcher
            .policy()
            .defaults
            .as_ref()
            .and_then(|d| d.max_concurrent_requests),
        Some(5)
    );

    write_version(
        "v3",
        &EXAMPLE.replace("clusters: [production-hub", "clusterz: [production-hub"),
    );
    match watcher.poll() {
        Reload::Refused(error) => {
            let text = error.to_string();
            assert!(text.contains("engineers[0].clusterz"), "{text}");
            assert!(text.contains("did you mean `clusters`"), "{text}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(
        watcher
            .policy()
            .defaults
            .as_ref()
            .and_then(|d| d.max_concurrent_requests),
        Some(5),
        "the old policy stays"
    );
    assert!(
        matches!(watcher.poll(), Reload::Unchanged),
        "the same bad file is reported once"
    );

    write_version("v4", EXAMPLE);
    assert!(matches!(watcher.poll(), Reload::Reloaded));
    assert_eq!(watcher.hash_hex(), first_hash);

    assert!(PolicyWatcher::load(dir.path().join("missing.yaml")).is_err());
    assert!(warroom_access::load(&path).is_ok());
}

// ---------------------------------------------------------------------------------------
// OpenShift's arbitrary UID.

/// A UID (and GID) that no passwd entry names, as OpenShift runs containers.
const UID_WITHOUT_PASSWD: u32 = 54321;
/// Set in the environment of this test binary when it runs again as that UID.
const AS_CHILD: &str = "WARROOM_POLICY_TEST_REPO_AS_UID_WITHOUT_PASSWD";

/// Under a UID with no passwd entry, `ssh-keygen -Y verify` stops with "No user exists for
/// uid ..."; the verifier runs it with nss_wrapper there, so the gateway still finds the
/// signer. The test builds a signed repository as root, then runs itself again as that UID
/// (`setpriv`; the tests run as root) to verify it.
#[test]
fn signatures_are_verified_under_a_uid_without_a_passwd_entry() {
    if let Some(dir) = std::env::var_os(AS_CHILD) {
        // The child: the verification, as the UID without a passwd entry.
        let dir = PathBuf::from(dir);
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).expect(name);
        let policy = policy(&[read("pe1.pub").trim()], &[read("pe2.pub").trim()], "");
        let head = read("head");
        assert_eq!(
            decide(&policy, &dir.join("repo"), head.trim()),
            Ok(vec![(
                head.trim().to_owned(),
                Signer::Engineer("platform-engineer-1".to_owned())
            )])
        );
        return;
    }
    let repo = Repo::new();
    let pe1 = ssh_key(repo.tmp(), "pe1");
    ssh_key(repo.tmp(), "pe2");
    let commit = repo.commit(REQUEST_PATH, REQUEST, Sign::Ssh(&pe1));
    std::fs::write(repo.tmp().join("head"), &commit).expect("writing the head");
    chown_all(repo.tmp());
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

    // Without the wrapper, ssh-keygen fails the way OpenShift shows it.
    let bare = as_uid(Path::new("ssh-keygen"))
        .args(["-Y", "check-novalidate", "-n", "git", "-s", "/dev/null"])
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
            "signatures_are_verified_under_a_uid_without_a_passwd_entry",
            "--nocapture",
        ])
        .env(AS_CHILD, repo.tmp())
        .output()
        .expect("running this test again through setpriv");
    let stdout = String::from_utf8_lossy(&child.stdout);
    assert!(
        child.status.success() && stdout.contains("1 passed"),
        "the verification as UID {UID_WITHOUT_PASSWD} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&child.stderr)
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

#[test]
fn sessions_get_the_policys_longest_duration_and_budget() {
    let base = "apiVersion: warroom.intility.io/v1\nkind: WarroomPolicy\nengineers:\n  - name: alice\n    keys: [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAS0dxjkqtXd2eq1+wjhr1VdCDTv2N80KNHgudMPEJlh a\"]\n    clusters: [\"*\"]\n";
    let with = |defaults: &str| format!("{base}defaults:\n{defaults}");
    let policy = parse_policy(
        "policy.yaml",
        with("  maxSessionDuration: 3600\n  sessionBudgetUsd: 2.5\n").as_bytes(),
    )
    .expect("valid");
    assert_eq!(policy.session_terms(7200), (3600, Some(2.5)));
    assert_eq!(policy.session_terms(600), (600, Some(2.5)));
    let open = parse_policy("policy.yaml", base.as_bytes()).expect("valid");
    assert_eq!(open.session_terms(7200), (7200, None));

    let errors = errors_of(&with(
        "  maxSessionDuration: 30\n  sessionBudgetUsd: lots\n",
    ));
    assert_error(&errors, "defaults.maxSessionDuration", "60 to 28800");
    assert_error(&errors, "defaults.sessionBudgetUsd", "0.01 to 10000");
}
