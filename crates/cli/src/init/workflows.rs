//! The GitHub Actions workflows `init --github-actions` writes, embedded in the binary so
//! that the version of the CLI decides what it writes.

use anyhow::{Result, bail};

use super::Step;
use super::files::{self, Written};
use crate::git::Repo;

/// A workflow template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Workflow {
    /// `warroom-validate.yml`: runs `claude-warroom validate` on the request files each push
    /// and pull request adds or changes.
    Validate,
    /// `warroom-image.yml`: builds and pushes the container image on tags `v*`.
    Image,
}

impl Workflow {
    /// Where it goes, from the repository root.
    pub fn path(self) -> &'static str {
        match self {
            Workflow::Validate => ".github/workflows/warroom-validate.yml",
            Workflow::Image => ".github/workflows/warroom-image.yml",
        }
    }

    /// The file as this version of the CLI writes it.
    pub fn template(self) -> &'static str {
        match self {
            Workflow::Validate => include_str!("../../templates/warroom-validate.yml"),
            Workflow::Image => include_str!("../../templates/warroom-image.yml"),
        }
    }
}

/// Writes `workflow` when it is missing; one that differs is replaced only with `force`.
pub fn write(repo: &Repo, workflow: Workflow, force: bool) -> Result<Step> {
    let path = workflow.path();
    let full = repo.root().join(path);
    let template = workflow.template().as_bytes();
    Ok(match files::write_if_absent(&full, template)? {
        Written::Created => Step::report(
            "workflow",
            true,
            format_args!("wrote {path}; commit and push it to turn it on"),
        ),
        Written::Unchanged => {
            Step::report("workflow", false, format_args!("{path} already in place"))
        }
        Written::Differs if force => {
            files::write(&full, template)?;
            Step::report(
                "workflow",
                true,
                format_args!("replaced {path} with this version's template (--force)"),
            )
        }
        Written::Differs => bail!(
            "{path} differs from the template of this claude-warroom version and was left \
             as it is: keep yours, or pass --force to replace it (when yours is committed, \
             `git diff {path}` then shows what changed)",
        ),
    })
}
