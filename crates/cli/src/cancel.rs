//! `claude-warroom cancel`: asks the secure zone to stop a request, by pushing a cancel file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use warroom_proto::RequestId;
use warroom_proto::cancel::{CANCEL_DIR, CancelMetadata, CancelRequest, CancelSpec, KIND_CANCEL};

use crate::submit::{NewFile, Outbox, invalid};

/// Cancel a request: write, commit and push `requests/cancel/<ID>.yaml`.
///
/// The secure zone stops the request's agents (SIGINT, a grace period, then every process
/// killed) and its tasks that have not started never run. `status.json` then shows the phase
/// `cancelled` with who cancelled it, when and why; the reports and audit lines so far are
/// kept. Only the engineer who asked for the request, or an admin of the secure zone's
/// policy, may cancel it, and with a policy the commit must be signed like a request. A
/// cancel that is refused, or that comes after the request finished, changes nothing and is
/// answered in the request's `status.json` (`notices`).
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  claude-warroom cancel 2026-12-07-1030-api-timeout-3fa2c1 --reason \"wrong cluster\"
  claude-warroom status 2026-12-07-1030-api-timeout-3fa2c1

Exit codes: 0 written, committed and pushed; 1 the id or reason is invalid, a cancel of this
request was already written, or git failed (nothing is pushed); 2 usage error.")]
pub struct Args {
    /// The id of the request to cancel (what `investigate` printed).
    #[arg(value_name = "ID")]
    pub id: String,

    /// Why, shown in the request's status.json and report (at most 1024 bytes).
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,

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
    if let Some(problem) = RequestId::problem(&args.id) {
        bail!("ID: the request id `{}` {problem}", args.id);
    }
    let outbox = Outbox::open(&args.repo, args.no_push)?;
    let cancel = CancelRequest {
        api_version: warroom_proto::API_VERSION.to_owned(),
        kind: KIND_CANCEL.to_owned(),
        metadata: CancelMetadata {
            engineer: outbox.engineer(args.engineer.as_deref())?,
            timestamp: crate::submit::now()?,
        },
        spec: CancelSpec {
            reason: args.reason.clone(),
        },
    };
    let relative = format!("{CANCEL_DIR}{}.yaml", args.id);
    let yaml = serde_yaml_ng::to_string(&cancel).context("serializing the cancel file")?;
    // The exact check the gateway makes; only a file that passes it is written.
    warroom_proto::cancel::parse_cancel(Path::new(&relative), yaml.as_bytes())
        .map_err(|errors| invalid("the cancel file", &errors, flag_for))?;
    if let Some(rev) = outbox.remote_rev()? {
        let pending = format!("requests/pending/{}.yaml", args.id);
        if outbox.repo.read_at(&rev, &pending)?.is_none() {
            eprintln!(
                "warning: {rev} has no {pending}; the secure zone answers a cancel of a request \
                 it does not know by ignoring it"
            );
        }
    }
    outbox.submit(NewFile {
        path: &relative,
        text: &yaml,
        subject: &format!("cancel: {}", args.id),
        what: &format!("the cancel of {}", args.id),
        unsigned: "refuse the cancel",
        id: &args.id,
    })?;
    println!("{}", args.id);
    Ok(ExitCode::SUCCESS)
}

/// The flag that sets a field of the cancel file.
fn flag_for(field: &str) -> &'static str {
    match field {
        "spec.reason" => "--reason",
        "metadata.engineer" => "--engineer",
        "metadata.timestamp" => "the clock",
        _ => "ID",
    }
}
