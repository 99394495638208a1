//! The HTTPS token travels only in the environment of git's process, never in its arguments,
//! and never to a plain http:// remote.

use warroom_git::{Error, Git, SecretString, refuse_token_over_http};
use warroom_testkit::BareRemote;

const TOKEN: &str = "ghs_s3cr3tT0k3nValue";

fn token() -> Option<SecretString> {
    Some(SecretString::from(TOKEN))
}

#[test]
fn the_token_is_in_the_environment_and_never_in_the_arguments() {
    let git = Git::new("/tmp").with_token(token());
    let command = git
        .command(&["fetch", "https://git.example.invalid/w.git", "main"])
        .expect("an https remote takes a token");
    // `x-access-token:<token>` in base64, as it is sent.
    let encoded = "eC1hY2Nlc3MtdG9rZW46Z2hzX3MzY3IzdFQwazNuVmFsdWU=";
    for arg in command.get_args() {
        let arg = arg.to_string_lossy();
        assert!(
            !arg.contains(TOKEN) && !arg.contains(encoded),
            "the token is in argv: {arg}"
        );
    }
    let header = command
        .get_envs()
        .find(|(key, _)| *key == "GIT_CONFIG_VALUE_0")
        .and_then(|(_, value)| value)
        .map(|value| value.to_string_lossy().into_owned());
    assert_eq!(
        header.as_deref(),
        Some(format!("Authorization: Basic {encoded}").as_str())
    );
}

#[test]
fn a_push_with_a_token_to_a_plain_http_remote_is_refused_before_git_runs() {
    let remote = BareRemote::new();
    let clone = remote.work_clone();
    let git = Git::new(clone.path()).with_token(token());
    let push = git.output(&["push", "http://127.0.0.1:9/w.git", "HEAD:refs/heads/main"]);
    match push {
        Err(Error::TokenOverHttp { url }) => assert_eq!(url, "http://127.0.0.1:9/w.git"),
        other => panic!("expected the token to be refused, got {other:?}"),
    }
    // The same push without a token is git's business (here: nothing listens).
    let without = Git::new(clone.path())
        .output(&["push", "http://127.0.0.1:9/w.git", "HEAD:refs/heads/main"])
        .expect("git runs");
    assert!(!without.success);
    // And the token does not stop a push to a remote that is not plain http.
    clone.write("a.txt", "a");
    clone.commit_all("a");
    let pushed = git
        .output(&["push", &remote.url(), "HEAD:refs/heads/main"])
        .expect("git runs");
    assert!(pushed.success, "{}", pushed.stderr);
}

#[test]
fn the_configuration_check_refuses_only_a_token_over_plain_http() {
    let refused = refuse_token_over_http("HTTP://git.local/w.git", token().as_ref());
    assert!(
        refused.is_err_and(|e| e.to_string().contains("use https://")),
        "a token over http:// was allowed"
    );
    assert!(refuse_token_over_http("https://git.local/w.git", token().as_ref()).is_ok());
    assert!(refuse_token_over_http("http://git.local/w.git", None).is_ok());
    let blank = Some(SecretString::from("  "));
    assert!(refuse_token_over_http("http://git.local/w.git", blank.as_ref()).is_ok());
}
