//! The surfaces' command line and environment, and their validation before any I/O.

use std::sync::Arc;
use std::time::Duration;

use warroom_runtime::config::Problems;

use super::Limits;

/// Where request states are shown besides git (each surface is off unless configured).
#[derive(Debug, Clone, clap::Args)]
pub struct SurfaceArgs {
    /// How long a surface outside git (GitHub, Slack, ConfigMap) keeps retrying one status
    /// snapshot that fails for a temporary reason (the endpoint down, rate limits) before it
    /// gives up on it, counts it in `warroom_publisher_surface_gave_up_total` and logs it. Git
    /// publishing never waits for a surface.
    #[arg(long, env = "WARROOM_SURFACE_GIVE_UP_AFTER", default_value = "1h", value_parser = warroom_runtime::parse_duration)]
    pub surface_give_up_after: Duration,

    #[command(flatten)]
    pub slack: super::slack::SlackArgs,

    #[command(flatten)]
    pub configmap: super::configmap::ConfigMapArgs,

    #[command(flatten)]
    pub github: super::github::Args,
}

/// The surfaces enabled by the configuration.
#[derive(Debug, Clone)]
pub struct Surfaces {
    pub(crate) limits: Limits,
    pub(crate) slack: Option<Arc<super::slack::SlackSettings>>,
    pub(crate) configmap: Option<Arc<super::configmap::ConfigMapSettings>>,
    pub(crate) github: super::github::Setting,
}

impl SurfaceArgs {
    /// Checks every surface setting into `problems`; `git` is the publisher's remote.
    pub(crate) fn settings(
        &self,
        problems: &mut Problems,
        git: &warroom_runtime::config::GitArgs,
    ) -> Surfaces {
        if self.surface_give_up_after < Duration::from_secs(1) {
            problems.push(format!(
                "--surface-give-up-after {:?} is shorter than 1s",
                self.surface_give_up_after
            ));
        }
        Surfaces {
            limits: Limits {
                give_up_after: self.surface_give_up_after,
            },
            slack: self.slack.settings(problems),
            configmap: self.configmap.settings(problems),
            github: self.github.settings(problems, &git.repo, &git.branch),
        }
    }
}

impl Surfaces {
    /// For `--check` and the start log: which surfaces are on, and where to.
    pub(crate) fn summary(&self) -> String {
        let parts = [
            Some(self.github.summary()),
            self.slack.as_ref().map(|s| s.summary()),
            self.configmap.as_ref().map(|c| c.summary()),
        ];
        let parts: Vec<String> = parts.into_iter().flatten().collect();
        format!(
            "surfaces outside git: {} (Slack and ConfigMaps are off unless named)",
            parts.join("; ")
        )
    }
}
