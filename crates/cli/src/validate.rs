//! `claude-warroom validate`: checks request files exactly as the gateway will, for editors,
//! pre-commit hooks and CI.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

/// Check request files the way the secure zone's gateway will.
///
/// Each file is parsed and validated with the same code the gateway runs (both
/// `TroubleshootingRequest` and `SessionRequest` files). Prints `FILE: ok` for a valid file
/// and `FILE: FIELD: MESSAGE` for every problem in an invalid one, all on stdout. The file
/// stem is the request id, so it is checked too.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  claude-warroom validate requests/pending/*.yaml
  # in .git/hooks/pre-commit:
  git diff --cached --name-only --diff-filter=A -- 'requests/pending/*.yaml' \\
    | xargs -r claude-warroom validate

Exit codes: 0 every file is valid, 1 at least one file is invalid or unreadable, 2 usage error.")]
pub struct Args {
    /// The request files to check.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let mut invalid = 0;
    for file in &args.files {
        let bytes = match std::fs::read(file) {
            Ok(bytes) => bytes,
            Err(err) => {
                println!("{}: cannot read the file: {err}", file.display());
                invalid += 1;
                continue;
            }
        };
        match warroom_proto::validate::parse_document(file, &bytes) {
            Ok(_) => println!("{}: ok", file.display()),
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
        eprintln!("{invalid} of {} files are invalid", args.files.len());
        Ok(ExitCode::FAILURE)
    }
}
