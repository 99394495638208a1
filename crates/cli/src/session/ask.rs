//! `claude-warroom session ask`: a follow-up question to a request's conversation, written as
//! the next turn `requests/ask/<id>/<turn>.yaml` and submitted.
//!
//! The turn is one more than the highest the remote (or this clone) has for the request. Two
//! engineers asking at once may pick the same turn: the second push is refused, and the
//! question is taken back and asked once more as the turn after.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use warroom_proto::followup::{
    ASK_DIR, FollowUp, FollowUpMetadata, FollowUpSpec, KIND_FOLLOW_UP, MAX_TURNS, parse_follow_up,
};
use warroom_proto::validate::{Document, parse_document};
use warroom_proto::{API_VERSION, RequestId};

use crate::git::REMOTE;
use crate::submit::{NewFile, Outbox, invalid};

/// Ask a follow-up question: write, commit and push `requests/ask/<ID>/<N>.yaml`.
///
/// Continues the conversation of a session, or of any request's investigation, where it left
/// off: N is the next turn (one more than the highest on `origin`), and the answer lands in
/// `results/<ID>/turn-<N>.md`. A request with several clusters needs --cluster to say whose
/// conversation to continue. A turn runs once the cluster's investigation and its earlier
/// turns ended. Prints `asked turn N of <ID>` on stdout. When someone else pushed the same
/// turn meanwhile, the question is asked once more as the next turn.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  claude-warroom session ask 2026-12-07-1030-session-prod-cluster-1-3fa2c1 \\
      \"Which pods restarted in the last hour, and why?\"
  claude-warroom session ask <ID> --cluster prod-cluster-1 \"Is its etcd healthy too?\"
  claude-warroom status <ID>              # each turn's phase and answer file

Exit codes: 0 written, committed and pushed; 1 the question would be invalid (nothing is
written), the request has no such cluster, someone else took the turn twice, or git failed;
2 usage error.")]
pub struct Args {
    /// The id of the session or request (what `session start` or `investigate` printed).
    #[arg(value_name = "ID")]
    pub id: String,

    /// The question, in the words the agent gets.
    #[arg(value_name = "QUESTION")]
    pub question: String,

    /// Whose conversation to continue: one of the request's clusters. Required when the
    /// request has several.
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,

    /// Who is asking. Default: `git config user.email` of the repository, else `user.name`,
    /// else $USER.
    #[arg(long, value_name = "WHO", env = "WARROOM_ENGINEER")]
    pub engineer: Option<String>,

    /// A clone of the warroom repository.
    #[arg(long, value_name = "DIR", env = "WARROOM_REPO", default_value = ".")]
    pub repo: PathBuf,

    /// Commit, but do not push (push later with `git push`).
    #[arg(long)]
    pub no_push: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let id = RequestId::new(args.id.as_str())
        .map_err(|e| anyhow::anyhow!("ID: the request id `{}` {}", e.value, e.reason))?;
    let outbox = Outbox::open(&args.repo, args.no_push)?;
    let yaml = follow_up(&args, outbox.engineer(args.engineer.as_deref())?)?;
    // The question is checked before anything is fetched, so a typo costs nothing; the turn
    // in the path is checked again once it is known.
    validate(&id, 1, &yaml)?;

    if args.no_push {
        // Best effort: without the remote the turn is counted from this clone alone.
        if let Err(err) = outbox.fetch() {
            eprintln!("warning: {err:#}; the turn is counted from what this clone has");
        }
    } else {
        outbox.fetch()?;
    }
    let results = check_request(&outbox, &id, args.cluster.as_deref())?;
    if let Some(branch) = &outbox.branch
        && !args.no_push
    {
        outbox.warn_unpushed(branch);
    }

    // One retry: a second collision means a busy request, and the engineer decides.
    let mut retried = false;
    loop {
        let turn = next_turn(&outbox, &id)?;
        let relative = warroom_proto::followup::path(&id, turn);
        validate(&id, turn, &yaml)?;
        let file = NewFile {
            path: &relative,
            text: &yaml,
            subject: &format!("ask: {id} turn {turn}"),
            what: &format!("turn {turn} of {id}"),
            unsigned: "refuse the question",
            id: id.as_str(),
        };
        let signed = outbox.commit(file)?;
        let pushed = match &outbox.branch {
            Some(branch) if !args.no_push => {
                match push(&outbox, &relative, signed)
                    .with_context(|| outbox.not_pushed(file.what))?
                {
                    Pushed::Yes => Some(branch),
                    Pushed::TurnTaken => {
                        outbox.uncommit(&relative)?;
                        let rev = format!("{REMOTE}/{branch}");
                        if retried {
                            bail!(
                                "someone else asked turn {turn} of {id} meanwhile ({rev} has \
                                 {relative}), for the second time; nothing was pushed: run the \
                                 command again"
                            );
                        }
                        eprintln!(
                            "someone else asked turn {turn} of {id} meanwhile ({rev} has \
                             {relative}); asking again as the next turn"
                        );
                        retried = true;
                        continue;
                    }
                }
            }
            _ => None,
        };
        match pushed {
            Some(branch) => outbox.say_pushed(branch, id.as_str()),
            None => outbox.say_not_pushed(),
        }
        eprintln!(
            "the answer lands in {results}/{}",
            warroom_proto::status::turn_file(turn)
        );
        println!("asked turn {turn} of {id}");
        return Ok(ExitCode::SUCCESS);
    }
}

/// The follow-up file's text. `--cluster` goes in as written, so that a name that is not a
/// valid one is reported by the validation, with its flag.
fn follow_up(args: &Args, engineer: String) -> Result<String> {
    let follow_up = FollowUp {
        api_version: API_VERSION.to_owned(),
        kind: KIND_FOLLOW_UP.to_owned(),
        metadata: FollowUpMetadata {
            engineer,
            timestamp: crate::submit::now()?,
        },
        spec: FollowUpSpec {
            prompt: args.question.clone(),
            cluster: None,
        },
    };
    let mut value = serde_yaml_ng::to_value(&follow_up).context("serializing the question")?;
    if let Some(cluster) = &args.cluster
        && let Some(spec) = value.get_mut("spec").and_then(|s| s.as_mapping_mut())
    {
        spec.insert("cluster".into(), cluster.clone().into());
    }
    serde_yaml_ng::to_string(&value).context("serializing the question")
}

/// The exact check the gateway makes of turn `turn`; only a file that passes it is written.
fn validate(id: &RequestId, turn: u32, yaml: &str) -> Result<()> {
    let path = warroom_proto::followup::path(id, turn);
    parse_follow_up(Path::new(&path), yaml.as_bytes())
        .map_err(|errors| invalid("the question", &errors, flag_for))?;
    Ok(())
}

/// The flag or argument that sets a field of the follow-up file.
fn flag_for(field: &str) -> &'static str {
    match field {
        "spec.prompt" => "QUESTION",
        "spec.cluster" => "--cluster",
        "metadata.engineer" => "--engineer",
        "metadata.timestamp" => "the clock",
        _ => "ID",
    }
}

/// Checks `--cluster` against the request's clusters, when the remote has its file, and
/// returns its results folder. A request the remote does not have only gets a warning: the
/// secure zone ignores a question about a request it does not know.
fn check_request(outbox: &Outbox, id: &RequestId, cluster: Option<&str>) -> Result<String> {
    let default = format!("results/{id}");
    let Some(rev) = outbox.remote_rev()? else {
        return Ok(default);
    };
    let pending = format!("requests/pending/{id}.yaml");
    let Some(bytes) = outbox.repo.read_at(&rev, &pending)? else {
        eprintln!(
            "warning: {rev} has no {pending}; the secure zone ignores a question about a \
             request it does not know"
        );
        return Ok(default);
    };
    // An invalid request file was rejected: its status says so, and the gateway answers
    // the question; nothing more to check here.
    let (clusters, results) = match parse_document(Path::new(&pending), &bytes) {
        Ok(Document::Troubleshooting(request)) => (
            request
                .clusters
                .iter()
                .map(|c| c.name.to_string())
                .collect(),
            request.results_dir.to_string(),
        ),
        Ok(Document::Session(session)) => (
            vec![session.request.spec.target_cluster.name.to_string()],
            default,
        ),
        Err(_) => return Ok(default),
    };
    let clusters: Vec<String> = clusters;
    match cluster {
        Some(name) if !clusters.iter().any(|c| c == name) => bail!(
            "--cluster: {id} has no cluster `{name}`; its clusters: {}",
            clusters.join(", ")
        ),
        None if clusters.len() > 1 => bail!(
            "--cluster: {id} has several clusters ({}); name the one whose conversation to \
             continue",
            clusters.join(", ")
        ),
        _ => Ok(results),
    }
}

/// One more than the highest turn of `id` on the remote branch or in this clone's `HEAD`.
fn next_turn(outbox: &Outbox, id: &RequestId) -> Result<u32> {
    let folder = format!("{ASK_DIR}{id}");
    let mut revs = Vec::new();
    if let Some(rev) = outbox.remote_rev()? {
        revs.push(rev);
    }
    if outbox.repo.has_commit("HEAD")? {
        revs.push("HEAD".to_owned());
    }
    let mut highest = 0;
    for rev in &revs {
        for path in outbox.repo.files_under(rev, &folder)? {
            if let Some(turn) = turn_of(&path) {
                highest = highest.max(turn);
            }
        }
    }
    if highest >= MAX_TURNS {
        bail!("{id} already has {MAX_TURNS} turns, the most one request takes");
    }
    Ok(highest + 1)
}

/// The turn a path under the request's folder names, if it names one.
fn turn_of(path: &str) -> Option<u32> {
    let name = path.rsplit('/').next()?;
    let stem = name
        .strip_suffix(".yaml")
        .or_else(|| name.strip_suffix(".yml"))?;
    if stem.starts_with('0') || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// How a push of a turn ended.
enum Pushed {
    Yes,
    /// The remote refused it, and now has a file of the same turn: someone else asked it.
    TurnTaken,
}

/// Pushes the turn's commit. When the remote moved on, fetches it: if it now holds the same
/// turn the turn was taken, else rebases and pushes once more.
fn push(outbox: &Outbox, relative: &str, signed: bool) -> Result<Pushed> {
    if outbox.try_push()? {
        return Ok(Pushed::Yes);
    }
    outbox.fetch()?;
    if let Some(rev) = outbox.remote_rev()?
        && outbox.repo.read_at(&rev, relative)?.is_some()
    {
        return Ok(Pushed::TurnTaken);
    }
    outbox.rebase_and_push(signed)?;
    Ok(Pushed::Yes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_turn_files_count() {
        assert_eq!(turn_of("requests/ask/r1/12.yaml"), Some(12));
        assert_eq!(turn_of("requests/ask/r1/3.yml"), Some(3));
        assert_eq!(turn_of("requests/ask/r1/03.yaml"), None);
        assert_eq!(turn_of("requests/ask/r1/notes.md"), None);
        assert_eq!(turn_of("requests/ask/r1/.gitkeep"), None);
    }
}
