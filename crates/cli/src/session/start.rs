//! `claude-warroom session start`: writes a `SessionRequest`, validated exactly as the
//! gateway will validate it, and submits it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use warroom_proto::request::{ClusterRef, ClusterType, Metadata};
use warroom_proto::session::{MAX_SESSION_SECS, SessionRequest, SessionSpec};
use warroom_proto::validate::{Document, parse_document};
use warroom_proto::{API_VERSION, ClusterName, KIND_SESSION, RequestId};

use crate::investigate::{ClusterKind, default_type, generate_id};
use crate::submit::{NewFile, Outbox, invalid};

/// The shortest session, in seconds.
const MIN_SESSION_SECS: u64 = 60;

/// Open a session in one cluster: write, commit and push `requests/pending/<ID>.yaml` (a
/// SessionRequest).
///
/// The secure zone keeps the cluster's conversation open for --duration: ask it questions
/// with `claude-warroom session ask <ID> "..."`, each answered in `results/<ID>/turn-<N>.md`.
/// With --prompt the session starts by answering it; without, it runs nothing until the
/// first question. The file is validated exactly as the
/// gateway will validate it (an invalid one is never written), committed alone, signed when
/// your git signs, and pushed. The session id is printed alone on stdout.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  claude-warroom session start --cluster prod-cluster-1 --duration 2h
  id=$(claude-warroom session start --cluster production-hub --duration 90m \\
      --namespace clusters-prod-1 --purpose \"etcd latency after the upgrade\" \\
      --prompt \"Check etcd's disk latency and leader changes.\")
  claude-warroom session ask \"$id\" \"Which member is slowest?\"

Exit codes: 0 written, committed and pushed; 1 the session request would be invalid (nothing
is written) or git failed; 2 usage error (a --duration outside 1m..8h, say).")]
pub struct Args {
    /// The cluster to hold the session in (letters, digits, `-`, `_`).
    #[arg(long, value_name = "NAME")]
    pub cluster: String,

    /// The HyperShift role of --cluster. Default: `hub` when the name is `hub` or ends with
    /// `-hub`, else `hosted`.
    #[arg(long = "type", visible_alias = "cluster-type", value_name = "TYPE")]
    pub kind: Option<ClusterKind>,

    /// How long the session stays open: `2h`, `90m`, `1h30m`; from 1m to 8h (the secure
    /// zone may allow less).
    #[arg(long, value_name = "DURATION", value_parser = parse_session_duration)]
    pub duration: u64,

    /// The first question. Without one the session opens without running anything until the
    /// first `session ask`.
    #[arg(long, value_name = "TEXT")]
    pub prompt: Option<String>,

    /// What you mean to look at, shown to whoever approves the session.
    #[arg(long, value_name = "TEXT")]
    pub purpose: Option<String>,

    /// The Kubernetes namespace to focus on, e.g. `clusters-prod-1`.
    #[arg(long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,

    /// Also hold the session as a pod that an engineer on a secure admin workstation can
    /// `kubectl exec` into: `kubectl exec -it <pod> -c session -- claude`, under the same guard
    /// and model proxy as every run. The pod's name appears in `status` once it is held; it is
    /// removed when the session ends. Needs the cluster's runner deployed with the
    /// `session-exec` component; without it the status says so (`session.pod_error`).
    #[arg(long)]
    pub exec: bool,

    /// The session id, which is also the file name. Default:
    /// `<YYYY-MM-DD-HHMM>-session-<cluster>-<6 hex>`, the time in UTC.
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,

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

/// `--duration`: a duration as the command's other flags take it, in whole seconds, from 1
/// minute to 8 hours.
fn parse_session_duration(text: &str) -> Result<u64, String> {
    let duration = crate::status::parse_duration(text)?;
    let bounds = "a session lasts from 1m to 8h";
    if duration.subsec_nanos() != 0 {
        return Err(format!(
            "`{text}` is not a whole number of seconds; {bounds}"
        ));
    }
    let secs = duration.as_secs();
    if secs < MIN_SESSION_SECS {
        return Err(format!("`{text}` is shorter than 1m; {bounds}"));
    }
    if secs > MAX_SESSION_SECS {
        return Err(format!("`{text}` is longer than 8h; {bounds}"));
    }
    Ok(secs)
}

pub fn run(args: Args) -> Result<ExitCode> {
    if let Some(id) = &args.id
        && let Some(problem) = RequestId::problem(id)
    {
        bail!("--id: the session id `{id}` {problem}");
    }
    let outbox = Outbox::open(&args.repo, args.no_push)?;
    let now = crate::submit::now()?;
    let id = match &args.id {
        Some(id) => id.clone(),
        None => generate_id(now, &format!("session-{}", args.cluster))?,
    };
    let request = SessionRequest {
        api_version: API_VERSION.to_owned(),
        kind: KIND_SESSION.to_owned(),
        metadata: Metadata {
            name: format!("{}-session", args.cluster),
            timestamp: now,
            engineer: outbox.engineer(args.engineer.as_deref())?,
        },
        spec: SessionSpec {
            target_cluster: ClusterRef {
                kind: args
                    .kind
                    .map_or_else(|| default_type(&args.cluster), ClusterType::from),
                // Replaced by the name as written below, which may not be a valid name:
                // the validation then reports it with its field and flag.
                name: ClusterName::new("placeholder")
                    .unwrap_or_else(|_| unreachable!("`placeholder` is a valid name")),
            },
            duration: args.duration,
            purpose: args.purpose.clone(),
            namespace: args.namespace.clone(),
            prompt: args.prompt.clone(),
            exec: args.exec,
        },
    };
    let mut value = serde_yaml_ng::to_value(&request).context("serializing the session")?;
    value["spec"]["targetCluster"]["name"] = serde_yaml_ng::Value::String(args.cluster.clone());
    let body = serde_yaml_ng::to_string(&value).context("serializing the session")?;
    let yaml = format!(
        "# Session {id}, written by `claude-warroom session start`.\n\
         # Answers: results/{id}/; ask with `claude-warroom session ask {id} \"...\"`.\n{body}"
    );
    let relative = format!("requests/pending/{id}.yaml");

    // The exact check the gateway makes; only a request that passes it is written.
    match parse_document(Path::new(&relative), yaml.as_bytes())
        .map_err(|errors| invalid("the session request", &errors, flag_for))?
    {
        Document::Session(_) => {}
        Document::Troubleshooting(_) => {
            bail!("the session request was read back as an investigation: this is a bug")
        }
    }

    outbox.submit(NewFile {
        path: &relative,
        text: &yaml,
        subject: &format!("session: {id}"),
        what: &format!("session {id}"),
        unsigned: "reject it",
        id: &id,
    })?;
    eprintln!("ask it with: claude-warroom session ask {id} \"...\"");
    println!("{id}");
    Ok(ExitCode::SUCCESS)
}

/// The flag that sets a field of the session request.
fn flag_for(field: &str) -> &'static str {
    const FLAGS: &[(&str, &str)] = &[
        ("spec.targetCluster.type", "--type"),
        ("spec.targetCluster", "--cluster"),
        ("spec.duration", "--duration"),
        ("spec.purpose", "--purpose"),
        ("spec.namespace", "--namespace"),
        ("spec.prompt", "--prompt"),
        ("spec.exec", "--exec"),
        ("metadata.name", "--cluster"),
        ("metadata.engineer", "--engineer"),
        ("metadata.timestamp", "the clock"),
    ];
    FLAGS
        .iter()
        .find(|(prefix, _)| field.starts_with(prefix))
        .map_or("--id", |(_, flag)| flag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_whole_seconds_from_a_minute_to_eight_hours() {
        assert_eq!(parse_session_duration("2h"), Ok(7200));
        assert_eq!(parse_session_duration("90m"), Ok(5400));
        assert_eq!(parse_session_duration("1m"), Ok(60));
        assert_eq!(parse_session_duration("8h"), Ok(28_800));
        for (text, expected) in [
            ("59s", "shorter than 1m"),
            ("8h 1s", "longer than 8h"),
            ("1m 500ms", "whole number of seconds"),
            ("soon", "is not a duration"),
        ] {
            let error = parse_session_duration(text).expect_err(text);
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn fields_map_to_their_flags() {
        assert_eq!(flag_for("spec.targetCluster.name"), "--cluster");
        assert_eq!(flag_for("spec.targetCluster.type"), "--type");
        assert_eq!(flag_for("spec.prompt"), "--prompt");
        assert_eq!(flag_for(""), "--id");
    }
}
