//! `claude-warroom validate`: checks request files exactly as the gateway will, for editors,
//! pre-commit hooks and CI.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;

use crate::git::Repo;

/// The folder every request file lives under, from the repository root.
const REQUESTS: &str = "requests/";

/// Check request files the way the secure zone's gateway will.
///
/// Each file is parsed and validated with the same code the gateway runs (both
/// `TroubleshootingRequest` and `SessionRequest` files). Prints `FILE: ok` for a valid file
/// and `FILE: FIELD: MESSAGE` for every problem in an invalid one, all on stdout. The file
/// stem is the request id, so it is checked too.
///
/// With `--staged` or `--since REV` it finds the request files itself, in the git clone of the
/// current folder: the `.yaml`/`.yml` files under `requests/` that the index (the commit being
/// made) or `HEAD` adds, copies, renames or modifies, and checks them as git has them (the
/// staged content, not the file on disk). No such file is not an error.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  claude-warroom validate requests/pending/*.yaml
  # what the pre-commit hook of `claude-warroom init` runs:
  claude-warroom validate --staged
  # what the GitHub Actions workflow of `claude-warroom init --github-actions` runs:
  claude-warroom validate --since \"$BASE\"

Exit codes: 0 every file is valid, 1 at least one file is invalid or unreadable (or git
failed), 2 usage error.")]
pub struct Args {
    /// The request files to check.
    #[arg(required_unless_present_any = ["staged", "since"], value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Check the request files staged for the next commit, as staged (for pre-commit hooks).
    #[arg(long, conflicts_with_all = ["files", "since"])]
    pub staged: bool,

    /// Check the request files that differ between the commit REV and `HEAD`, as `HEAD` has
    /// them (for CI: the commit before a push, or a pull request's base).
    #[arg(long, value_name = "REV", conflicts_with = "files")]
    pub since: Option<String>,
}

/// One file to check: the name it is reported (and its id read) by, and its bytes.
struct Candidate {
    name: PathBuf,
    bytes: std::io::Result<Vec<u8>>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let candidates = if args.staged {
        from_git(&["diff", "--cached"], ":")?
    } else if let Some(rev) = &args.since {
        from_git(&["diff", rev, "HEAD"], "HEAD:")?
    } else {
        args.files
            .iter()
            .map(|file| Candidate {
                name: file.clone(),
                bytes: std::fs::read(file),
            })
            .collect()
    };
    if candidates.is_empty() {
        eprintln!("no request files under {REQUESTS} to check");
        return Ok(ExitCode::SUCCESS);
    }
    let mut invalid = 0;
    for Candidate { name, bytes } in &candidates {
        let bytes = match bytes {
            Ok(bytes) => bytes,
            Err(err) => {
                println!("{}: cannot read the file: {err}", name.display());
                invalid += 1;
                continue;
            }
        };
        match warroom_proto::validate::parse_document(name, bytes) {
            Ok(_) => println!("{}: ok", name.display()),
            Err(errors) => {
                // `ValidationErrors` prints one `FILE: FIELD: MESSAGE` line per problem.
                println!("{errors}");
                invalid += 1;
            }
        }
    }
    if invalid == 0 {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("{invalid} of {} files are invalid", candidates.len());
        Ok(ExitCode::FAILURE)
    }
}

/// The request files `diff` (a `git diff` without its options) names, read from git at
/// `source` (`:` the index, `HEAD:`), with paths from the repository root.
fn from_git(diff: &[&str], source: &str) -> Result<Vec<Candidate>> {
    let repo = Repo::open(Path::new("."))?;
    let mut args = diff.to_vec();
    // NUL-separated: names with spaces or quotes come through as they are.
    args.extend(["--name-only", "-z", "--diff-filter=ACMR", "--", REQUESTS]);
    let listing = repo.output(&args)?;
    let mut candidates = Vec::new();
    for path in listing.split(|b| *b == 0).filter(|p| !p.is_empty()) {
        let path = String::from_utf8_lossy(path).into_owned();
        if !is_request_file(&path) {
            continue;
        }
        let bytes = repo
            .output(&["cat-file", "blob", &format!("{source}{path}")])
            .map_err(|e| std::io::Error::other(format!("{e:#}")));
        candidates.push(Candidate {
            name: PathBuf::from(path),
            bytes,
        });
    }
    Ok(candidates)
}

/// Whether a path from the repository root names a request file: YAML under `requests/`.
fn is_request_file(path: &str) -> bool {
    path.starts_with(REQUESTS) && (path.ends_with(".yaml") || path.ends_with(".yml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_files_are_yaml_under_requests() {
        assert!(is_request_file("requests/pending/r-1.yaml"));
        assert!(is_request_file("requests/pending/with space.yml"));
        assert!(!is_request_file("requests/pending/.gitkeep"));
        assert!(!is_request_file("results/r-1/status.yaml"));
        assert!(!is_request_file("examples/requests/r.yaml"));
    }
}
