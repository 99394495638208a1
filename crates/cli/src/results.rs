//! Finding a request's results in git, shared by `status` and `get-results`.
//!
//! The publisher writes a request's results to `results/<id>/`, or to the folder its
//! `spec.output.destination` names. A rejected request always lands in `results/<id>/`, so
//! that folder is looked at first; only when it holds no `status.json` is the request file
//! read (from the same commit) to learn where its results go.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::builder::TypedValueParser as _;
use warroom_git::CommitId;
use warroom_proto::RequestId;
use warroom_proto::RequestStatus;

use crate::NotYet;

use crate::git::{REMOTE, Repo};
use crate::verify::{self, PublisherKey};

/// How `status` and `get-results` find the repository and the request.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// The request id (the file stem of `requests/pending/<id>.yaml`, printed by `investigate`).
    #[arg(
        value_name = "ID",
        required_unless_present = "request_id",
        conflicts_with = "request_id",
        value_parser = clap::builder::NonEmptyStringValueParser::new().try_map(request_id)
    )]
    pub id: Option<String>,

    /// The request id, as a flag (the original design's spelling).
    #[arg(
        long,
        value_name = "ID",
        value_parser = clap::builder::NonEmptyStringValueParser::new().try_map(request_id)
    )]
    pub request_id: Option<String>,

    /// A clone of the warroom repository.
    #[arg(long, value_name = "DIR", env = "WARROOM_REPO", default_value = ".")]
    pub repo: PathBuf,

    /// The branch the publisher writes results to; read as `origin/<BRANCH>` after a fetch.
    #[arg(
        long,
        value_name = "BRANCH",
        env = "WARROOM_BRANCH",
        default_value = "main"
    )]
    pub branch: String,

    /// Refuse the results unless every commit that wrote the results folder is signed by
    /// the secure zone's publisher (checked by git with `ssh-keygen`). The publisher's key
    /// comes from --publisher-key or from `claude-warroom init --publisher-key`.
    #[arg(long)]
    pub verify: bool,

    /// The publisher's SSH public key for --verify (implies it): a `.pub` file, the key line
    /// or its `SHA256:...` fingerprint. Wins over the clone's `warroom.publisherKey`.
    #[arg(long, value_name = "KEY")]
    pub publisher_key: Option<String>,
}

/// Refuses ids that are not request ids, so an id can never point a path outside `results/`.
fn request_id(id: String) -> Result<String, String> {
    // Accept the request file's path too (`requests/pending/<id>.yaml`), as tab completion
    // offers it.
    let path = Path::new(&id);
    let stem = match path.extension().and_then(|e| e.to_str()) {
        Some("yaml" | "yml") => path.file_stem().and_then(|s| s.to_str()).unwrap_or(&id),
        _ => &id,
    }
    .to_owned();
    match RequestId::problem(&stem) {
        None => Ok(stem),
        Some(problem) => Err(format!("the request id `{stem}` {problem}")),
    }
}

/// A request's results at one commit.
#[derive(Debug)]
pub struct Results {
    pub repo: Repo,
    pub id: String,
    /// `origin/<branch>`, the ref everything was read from.
    pub rev: String,
    /// The commit `rev` pointed at when the results were located: every read, and the
    /// verification, use it, so a fetch meanwhile cannot swap what is shown.
    pub commit: CommitId,
    /// The results folder, without a trailing `/`.
    pub dir: String,
    /// `status.json` as committed, byte for byte.
    pub status_bytes: Vec<u8>,
    pub status: RequestStatus,
    /// Set when --verify checked every commit of the folder.
    pub verified: Option<verify::Verified>,
}

impl Target {
    pub(crate) fn id(&self) -> &str {
        // clap guarantees exactly one of the two is present.
        self.id
            .as_deref()
            .or(self.request_id.as_deref())
            .unwrap_or_default()
    }

    /// Fetches and finds the request's results: a [`NotYet`] error when the request exists
    /// but has none yet, a plain error when no such request exists.
    pub fn locate(&self) -> Result<Results> {
        let id = self.id().to_owned();
        let repo = Repo::open(&self.repo)?;
        // The key is resolved first, so a missing one fails before any fetch.
        let key = if self.verify || self.publisher_key.is_some() {
            Some(PublisherKey::resolve(self.publisher_key.as_deref(), &repo)?)
        } else {
            None
        };
        let rev = format!("{REMOTE}/{}", self.branch);
        fetch(&repo, &self.branch);
        let Some(commit_id) = repo.resolve(&rev)? else {
            bail!(
                "there is no `{rev}` in {}: is `{REMOTE}` the warroom repository and `{}` its \
                 branch (--branch)?",
                repo.root().display(),
                self.branch
            );
        };
        let commit = commit_id.as_str();

        let default_dir = format!("results/{id}");
        let mut dir = default_dir.clone();
        let mut status_bytes = repo.read_at(commit, &format!("{dir}/status.json"))?;
        if status_bytes.is_none() {
            let Some((path, request)) = request_file(&repo, commit, &id)? else {
                bail!(
                    "unknown request `{id}`: `{rev}` has neither `requests/pending/{id}.yaml` \
                     nor `{default_dir}/` (is the id right, and was the request pushed to \
                     `{}`?)",
                    self.branch
                );
            };
            // An invalid request file gets its rejection in `results/<id>/`; a valid one may
            // name another folder.
            if let Ok(validated) = warroom_proto::parse_request(Path::new(&path), &request)
                && validated.results_dir.as_str() != default_dir
            {
                dir = validated.results_dir.to_string();
                status_bytes = repo.read_at(commit, &format!("{dir}/status.json"))?;
            }
        }
        let Some(status_bytes) = status_bytes else {
            return Err(NotYet(format!(
                "no results for {id} yet: the request is pending (no `{dir}/status.json` on \
                 `{rev}`; the secure zone has not picked it up yet)"
            ))
            .into());
        };
        // Verified before anything of the folder is parsed or shown.
        let verified = match &key {
            Some(key) => Some(verify::verify(&repo, &commit_id, &rev, &dir, key)?),
            None => None,
        };
        let status: RequestStatus = serde_json::from_slice(&status_bytes)
            .with_context(|| format!("`{dir}/status.json` on `{rev}` is not a valid status"))?;
        Ok(Results {
            repo,
            id,
            rev,
            commit: commit_id,
            dir,
            status_bytes,
            status,
            verified,
        })
    }
}

impl Results {
    /// Says on stderr what --verify checked, when it ran.
    pub fn report_verification(&self) {
        if let Some(verified) = &self.verified {
            eprintln!(
                "verified: all {} commit(s) that wrote {}/ on {} are signed by the publisher's \
                 key {}",
                verified.commits, self.dir, self.rev, verified.fingerprint
            );
        }
    }

    /// A file in the results folder, by its name relative to the folder.
    pub fn read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.repo
            .read_at(self.commit.as_str(), &format!("{}/{name}", self.dir))
    }

    /// Every file in the results folder, relative to it, sorted.
    pub fn files(&self) -> Result<Vec<String>> {
        let prefix = format!("{}/", self.dir);
        let mut files: Vec<String> = self
            .repo
            .files_under(self.commit.as_str(), &self.dir)?
            .into_iter()
            .filter_map(|path| path.strip_prefix(&prefix).map(str::to_owned))
            .collect();
        files.sort();
        Ok(files)
    }
}

/// Fetches the branch. When that fails (offline, say) the last fetched state is still worth
/// showing, so this only warns.
fn fetch(repo: &Repo, branch: &str) {
    let refspec = format!("+refs/heads/{branch}:refs/remotes/{REMOTE}/{branch}");
    match repo.try_output(&["fetch", "--quiet", REMOTE, &refspec]) {
        Ok(output) if output.success => {}
        Ok(output) => eprintln!(
            "warning: `git fetch {REMOTE} {branch}` failed, showing what was fetched before: {}",
            output.stderr.trim()
        ),
        Err(err) => eprintln!("warning: {err:#}; showing what was fetched before"),
    }
}

/// The request file for `id` at `rev`, with its path.
fn request_file(repo: &Repo, rev: &str, id: &str) -> Result<Option<(String, Vec<u8>)>> {
    for extension in ["yaml", "yml"] {
        let path = format!("requests/pending/{id}.{extension}");
        if let Some(bytes) = repo.read_at(rev, &path)? {
            return Ok(Some((path, bytes)));
        }
    }
    Ok(None)
}
