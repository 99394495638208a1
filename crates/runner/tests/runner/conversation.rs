//! A conversation continued by another runner: turn 1 runs the real Claude Code CLI in one
//! workspace and HOME, its transcript goes to the NATS object store and both folders are
//! deleted; turn 2 restores it into a fresh workspace and HOME and runs `claude --resume`.
//! The scripted model's request for turn 2 must carry turn 1, or the resume did not happen.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;
use warroom_proto::{ClusterName, RequestId};
use warroom_runner::conversation::{self, ConversationKey, Conversations};
use warroom_runtime::{Bus, Connection};
use warroom_scripted_model::{Conversation, Script, ScriptedModel, Turn};
use warroom_testkit::{NatsServer, tools};

/// Each run takes a few seconds; the bound only stops a hung CLI from hanging the suite.
const CLI_TIMEOUT: Duration = Duration::from_secs(120);

const FIRST_QUESTION: &str = "first question: why is etcd-0 restarting?";
const FIRST_ANSWER: &str = "first answer: its disk is full";
const SECOND_QUESTION: &str = "second question: which pod fills it?";
const SECOND_ANSWER: &str = "second answer: the compactor";

/// A runner replica's place for one run: a fresh HOME and an empty workspace.
struct Place {
    dir: TempDir,
    home: PathBuf,
    work: PathBuf,
}

impl Place {
    fn new() -> Place {
        let dir = tempfile::tempdir().expect("temp dir");
        let home = dir.path().join("home");
        let work = dir.path().join("work");
        std::fs::create_dir(&home).expect("create HOME");
        std::fs::create_dir(&work).expect("create the workspace");
        Place { dir, home, work }
    }
}

/// Runs `claude -p <prompt> --output-format stream-json --verbose <args>` in `place`, with
/// its session kept on disk (no `--no-session-persistence`), and returns its `result` event.
async fn claude(model: &ScriptedModel, place: &Place, prompt: &str, args: &[&str]) -> Value {
    let mut command = tokio::process::Command::new(tools::claude());
    command
        .args(["-p", prompt, "--output-format", "stream-json", "--verbose"])
        .args(["--permission-mode", "dontAsk", "--tools", "Bash,Read"])
        .args(args)
        .current_dir(&place.work)
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        )
        .env("HOME", &place.home)
        .env("ANTHROPIC_BASE_URL", model.base_url())
        .env("ANTHROPIC_API_KEY", "test")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("CLAUDE_CODE_MAX_RETRIES", "0")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(CLI_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("the CLI did not finish within {CLI_TIMEOUT:?}"))
        .expect("start the claude CLI");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let describe = || {
        format!(
            "exit: {}\nstdout:\n{stdout}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    };
    let result: Value = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|event| event["type"] == "result")
        .unwrap_or_else(|| panic!("no result event; {}", describe()));
    assert_eq!(result["subtype"], "success", "{}", describe());
    result
}

/// The text of each message of a request's history, as `(role, text)`.
fn history(request: &warroom_scripted_model::CapturedRequest) -> Vec<(String, String)> {
    request
        .messages()
        .iter()
        .map(|message| {
            let role = message["role"].as_str().unwrap_or_default().to_owned();
            let text = match &message["content"] {
                Value::String(text) => text.clone(),
                Value::Array(blocks) => blocks
                    .iter()
                    .filter_map(|block| block["text"].as_str())
                    .collect::<Vec<_>>()
                    .join("\n"),
                _ => String::new(),
            };
            (role, text)
        })
        .collect()
}

fn key_of(request: &str) -> ConversationKey {
    ConversationKey::new(
        ClusterName::new("prod-cluster-1").expect("cluster name"),
        RequestId::new(request).expect("request id"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_continues_in_a_fresh_home_and_workspace() {
    let nats = NatsServer::start().await;
    let bus = Bus::connect(&Connection::plain(nats.url()), "conversation-test")
        .await
        .expect("bus");
    let conversations = Conversations::open(&bus, &super::CLUSTER.parse().expect("a cluster"))
        .await
        .expect("open the store");
    let model = ScriptedModel::start(Script::new().with(Conversation::new(vec![
        Turn::text(FIRST_ANSWER),
        Turn::text(SECOND_ANSWER),
    ])))
    .await
    .expect("start the model");
    let key = key_of("req-1");

    // Turn 1, on one replica.
    let first = Place::new();
    let result = claude(&model, &first, FIRST_QUESTION, &[]).await;
    assert_eq!(result["result"], FIRST_ANSWER);
    let session = result["session_id"]
        .as_str()
        .expect("a session id")
        .to_owned();
    conversations
        .save(&key, &first.home, &first.work, &session)
        .await
        .expect("save turn 1");
    let turn_one = std::fs::read(conversation::transcript_path(
        &first.home,
        &first.work,
        &session,
    ))
    .expect("turn 1's transcript");
    let first_dir = first.dir.path().to_owned();
    drop(first);
    assert!(!first_dir.exists(), "turn 1's HOME and workspace are gone");

    // Turn 2, on another: nothing of turn 1 but what the store holds.
    let second = Place::new();
    assert_eq!(
        conversations
            .restore(&key_of("req-unknown"), &second.home, &second.work)
            .await
            .expect("restore an unknown conversation"),
        None
    );
    let restored = conversations
        .restore(&key, &second.home, &second.work)
        .await
        .expect("restore turn 1")
        .expect("turn 1 was saved");
    assert_eq!(restored, session);
    let result = claude(&model, &second, SECOND_QUESTION, &["--resume", &restored]).await;
    assert_eq!(result["result"], SECOND_ANSWER);
    assert_eq!(
        result["session_id"], session,
        "a resumed turn keeps the session id"
    );

    let turns = model.turn_requests();
    let last = turns.last().expect("turn 2 reached the model");
    let texts = history(last);
    let position = |role: &str, text: &str| {
        texts
            .iter()
            .position(|(r, t)| r == role && t.contains(text))
            .unwrap_or_else(|| {
                panic!("no {role} message with {text:?} in turn 2's request: {texts:#?}")
            })
    };
    let asked = position("user", FIRST_QUESTION);
    let answered = position("assistant", FIRST_ANSWER);
    let asked_again = position("user", SECOND_QUESTION);
    assert!(
        asked < answered && answered < asked_again,
        "turn 2's request holds turn 1 in order: {texts:#?}"
    );

    // The CLI appended turn 2 to the restored file: saved again, it holds turn 1 whole.
    let turn_two = std::fs::read(conversation::transcript_path(
        &second.home,
        &second.work,
        &session,
    ))
    .expect("turn 2's transcript");
    assert!(
        turn_two.len() > turn_one.len() && turn_two.starts_with(&turn_one),
        "turn 2's transcript continues turn 1's"
    );
    conversations
        .save(&key, &second.home, &second.work, &session)
        .await
        .expect("save turn 2");
    let third = Place::new();
    conversations
        .restore(&key, &third.home, &third.work)
        .await
        .expect("restore turn 2")
        .expect("turn 2 was saved");
    let restored_two = std::fs::read(conversation::transcript_path(
        &third.home,
        &third.work,
        &session,
    ))
    .expect("turn 2's restored transcript");
    assert_eq!(restored_two, turn_two, "a save replaces the conversation");
}

#[tokio::test]
async fn a_missing_transcript_is_an_error_naming_it() {
    let nats = NatsServer::start().await;
    let bus = Bus::connect(&Connection::plain(nats.url()), "conversation-test")
        .await
        .expect("bus");
    let conversations = Conversations::open(&bus, &super::CLUSTER.parse().expect("a cluster"))
        .await
        .expect("open the store");
    let place = Place::new();
    let err = conversations
        .save(
            &key_of("req-2"),
            &place.home,
            &place.work,
            "649ca1c4-03d9-4eb4-a5e6-17ee0ff1cb24",
        )
        .await
        .expect_err("nothing to save");
    let message = err.to_string();
    assert!(
        message.starts_with("cannot read the transcript ")
            && message.ends_with("649ca1c4-03d9-4eb4-a5e6-17ee0ff1cb24.jsonl"),
        "{message}"
    );
    assert!(
        std::error::Error::source(&err).is_some(),
        "the cause is kept"
    );
}
