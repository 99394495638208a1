//! `Signers` trusts the keys it was given and nothing else: a commit signed by an allowed key
//! is good, one signed by another key or not signed is not, whatever the repository's own
//! configuration says.

use warroom_git::CommitId;
use warroom_git::signature::{CommitRange, KeyError, Signers, SshFingerprint, SshPublicKey};
use warroom_testkit::{BareRemote, SshKey, WorkClone};

/// Commits `file` in `clone`, signed with `key` when there is one; returns the commit.
fn commit(clone: &WorkClone, file: &str, key: Option<&SshKey>) -> CommitId {
    clone.write(file, file);
    clone.git(["add", "--all"]);
    let mut args = key.map(SshKey::signing_args).unwrap_or_default();
    args.extend(["commit", "--quiet", "-m", file].map(str::to_owned));
    clone.git(&args);
    clone.head().parse().expect("git's own commit id")
}

fn key(ssh: &SshKey) -> SshPublicKey {
    ssh.public_key().parse().expect("ssh-keygen's own key")
}

#[test]
fn only_a_commit_signed_by_an_allowed_key_is_good() {
    let (alice, mallory) = (SshKey::generate("alice"), SshKey::generate("mallory"));
    let remote = BareRemote::new();
    let clone = remote.work_clone();
    let by_alice = commit(&clone, "a.txt", Some(&alice));
    let by_mallory = commit(&clone, "m.txt", Some(&mallory));
    let unsigned = commit(&clone, "u.txt", None);
    // The clone's own configuration trusts mallory; it must not count.
    let mallory_signers = mallory.allowed_signers("alice");
    clone.git([
        "config",
        "--local",
        "gpg.ssh.allowedSignersFile",
        &mallory_signers.display().to_string(),
    ]);

    let alice_key = key(&alice);
    let signers = Signers::new([("alice", &alice_key)]).expect("the allowed-signers file");
    let range = CommitRange::UpTo {
        head: unsigned.clone(),
    };
    let found = signers
        .signatures(clone.path(), &range, &[])
        .expect("git log");
    let verdict = |commit: &CommitId| {
        let signature = found
            .iter()
            .find(|s| &s.commit == commit)
            .unwrap_or_else(|| panic!("no record for {commit}"));
        (
            signature.code.clone(),
            signature.signer.clone(),
            signature.key.clone(),
        )
    };
    assert_eq!(
        verdict(&by_alice),
        ("G".to_owned(), "alice".to_owned(), alice.fingerprint())
    );
    let (code, signer, fingerprint) = verdict(&by_mallory);
    assert_ne!(code, "G", "mallory's signature was trusted");
    assert_eq!((signer.as_str(), fingerprint), ("", mallory.fingerprint()));
    assert_eq!(verdict(&unsigned).0, "N");

    // The same commits one by one, in the order asked.
    let each = signers
        .signatures_of(clone.path(), &[unsigned.clone(), by_alice.clone()])
        .expect("git log --no-walk");
    let codes: Vec<(&CommitId, &str)> = each.iter().map(|s| (&s.commit, s.code.as_str())).collect();
    assert_eq!(codes, [(&unsigned, "N"), (&by_alice, "G")]);
}

#[test]
fn paths_limit_the_walk_to_the_commits_that_touched_them() {
    let alice = SshKey::generate("alice");
    let clone = BareRemote::new().work_clone();
    let first = commit(&clone, "results/x/a.txt", Some(&alice));
    let _elsewhere = commit(&clone, "requests/b.txt", None);
    let alice_key = key(&alice);
    let signers = Signers::new([("alice", &alice_key)]).expect("the allowed-signers file");
    let head: CommitId = clone.head().parse().expect("a commit id");
    let found = signers
        .signatures(clone.path(), &CommitRange::UpTo { head }, &["results/x/"])
        .expect("git log");
    let commits: Vec<&CommitId> = found.iter().map(|s| &s.commit).collect();
    assert_eq!(commits, [&first]);
}

#[test]
fn a_principal_that_could_change_the_file_is_refused() {
    let alice = SshKey::generate("alice");
    let alice_key = key(&alice);
    for principal in ["", "a b", "a,b", "*", "a\"b", "a\nb"] {
        assert!(
            Signers::new([(principal, &alice_key)]).is_err(),
            "{principal:?} was accepted"
        );
    }
}

#[test]
fn ssh_keys_parse_to_what_ssh_keygen_says() {
    let alice = SshKey::generate("alice");
    let parsed = key(&alice);
    assert_eq!(parsed.fingerprint().as_str(), alice.fingerprint());
    // The comment is dropped.
    assert_eq!(
        format!("{parsed} alice"),
        alice.public_key(),
        "the key line without its comment"
    );
    let fingerprint: SshFingerprint = alice.fingerprint().parse().expect("a fingerprint");
    assert_eq!(&fingerprint, parsed.fingerprint());
}

#[test]
fn text_that_is_not_a_key_is_refused_with_the_reason() {
    for (text, expected) in [
        ("ssh-ed25519", "MissingKeyData"),
        ("ssh-dss AAAAB3NzaC1kc3M=", "UnknownAlgorithm"),
        ("ssh-ed25519 !!!", "NotBase64"),
        // A valid RSA blob labelled as ed25519.
        (
            "ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAABAQ==",
            "WrongKeyData",
        ),
        ("", "UnknownAlgorithm"),
    ] {
        let err: KeyError = text.parse::<SshPublicKey>().expect_err(text);
        assert!(
            format!("{err:?}").starts_with(expected),
            "{text:?}: {err:?}"
        );
    }
    for text in ["SHA256:short", "MD5:aa:bb", "SHA256:", ""] {
        assert!(
            text.parse::<SshFingerprint>().is_err(),
            "{text:?} was accepted"
        );
    }
}
