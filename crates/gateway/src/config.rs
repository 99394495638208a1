//! The gateway's command line and environment, and its validation before any I/O.

use std::path::PathBuf;
use std::time::Duration;

use warroom_runtime::CommonArgs;
pub use warroom_runtime::config::Secret;
use warroom_runtime::config::{Invalid, InvalidConfig, Problems, secret_setting, short_hash};

use crate::Result;

/// Shortest poll interval accepted: a head check is cheap, but not free for the git host.
pub const MIN_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Follows a git branch and publishes the request files added under `requests/pending/`.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "warroom-gateway", version, about, long_about = None)]
pub struct Config {
    #[command(flatten)]
    pub git: warroom_runtime::config::GitArgs,

    /// How often the remote head is checked: a number with a unit (`500ms`, `5s`, `2m`,
    /// `1h`) or a plain number of seconds. At least 100ms.
    #[arg(long, env = "WARROOM_POLL_INTERVAL", default_value = "5s", value_parser = parse_interval)]
    pub poll_interval: Duration,

    /// Where the gateway keeps its bare mirror of the branch. The mirror is a cache (the
    /// cursor lives in NATS), so any empty or previously used folder will do. Default:
    /// `<system temp dir>/warroom-gateway/<hash of repo and branch>`.
    #[arg(long, env = "WARROOM_WORK_DIR")]
    pub work_dir: Option<PathBuf>,

    /// The secure-zone policy file (`WarroomPolicy`, see crates/access/POLICY.md): who may run
    /// requests on which clusters, proven by signed commits. Validated at start (an invalid
    /// file stops the gateway), read again at every poll and used when its content changed
    /// and is valid.
    #[arg(long, env = "WARROOM_POLICY")]
    pub policy: Option<PathBuf>,

    /// Run without a policy: every valid request runs, whoever pushed it, and nothing checks
    /// who wrote it. Only for trying the product; without it, the gateway refuses to start
    /// without --policy. Has no effect when --policy is given.
    #[arg(long, env = "WARROOM_INSECURE_ALLOW_UNSIGNED")]
    pub insecure_allow_unsigned: bool,

    /// Only these clusters may be targeted, comma separated; narrows the policy further. A
    /// request naming another cluster is rejected. Empty: no narrowing.
    #[arg(long, env = "WARROOM_ALLOWED_CLUSTERS", value_delimiter = ',')]
    pub allowed_clusters: Vec<String>,

    /// Listen here for GitHub push webhooks (`POST /webhook`), which wake the poller at once
    /// instead of at the next interval. Polling stays the source of truth. Needs
    /// --webhook-secret.
    #[arg(long, env = "WARROOM_WEBHOOK_ADDR")]
    pub webhook_addr: Option<std::net::SocketAddr>,

    /// The webhook's shared secret, as entered in GitHub: every delivery must carry a valid
    /// `X-Hub-Signature-256` made with it. Read it from the environment. Never logged.
    #[arg(long, env = "WARROOM_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<Secret>,

    /// A file holding the webhook's shared secret (a mounted Secret), read once at start, its
    /// trailing line break dropped. Instead of --webhook-secret.
    #[arg(long, env = "WARROOM_WEBHOOK_SECRET_FILE", value_name = "FILE")]
    pub webhook_secret_file: Option<PathBuf>,

    #[command(flatten)]
    pub common: CommonArgs,
}

/// Parses a poll interval: `500ms`, `5s`, `2m`, `1h`, or a plain number of seconds.
pub fn parse_interval(text: &str) -> Result<Duration, Invalid> {
    let duration = warroom_runtime::parse_duration(text)?;
    if duration < MIN_POLL_INTERVAL {
        return Err(Invalid(format!(
            "`{}` is shorter than the shortest poll interval, {}ms",
            text.trim(),
            MIN_POLL_INTERVAL.as_millis()
        )));
    }
    Ok(duration)
}

/// The configuration after validation (`validate`): what [`crate::run`] works with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub(crate) common: CommonArgs,
    /// `--insecure-allow-unsigned` was given along with a policy, which wins.
    pub(crate) ignores_insecure_flag: bool,
    /// The remote as git is given it (a local path made absolute).
    pub(crate) repo: String,
    pub(crate) branch: String,
    pub(crate) poll_interval: Duration,
    pub(crate) work_dir: PathBuf,
    pub(crate) token: Option<Secret>,
    pub(crate) allowed_clusters: Vec<warroom_proto::ClusterName>,
    /// How requests are authorized: by the policy file, or not at all.
    pub(crate) trust: Trust,
    /// Where to listen for webhooks, and their secret.
    pub(crate) webhook: Option<(std::net::SocketAddr, Secret)>,
}

/// Who is believed to have written a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Trust {
    /// Only commits signed by the engineer's keys of the policy at this path.
    Policy(PathBuf),
    /// Nobody is checked (`--insecure-allow-unsigned`).
    Unsigned,
}

impl warroom_runtime::daemon::Daemon for Config {
    const PROGRAM: &'static str = "warroom-gateway";
    type Settings = Settings;
    type Metrics = crate::metrics::Metrics;

    fn common(&self) -> &CommonArgs {
        &self.common
    }

    /// Checks every value and resolves the defaults, without touching the network or git:
    /// the settings, or every problem at once, one per line, as request validation does.
    fn validate(&self) -> Result<Settings, InvalidConfig> {
        let mut problems = Problems::new();
        let settings = self.settings(&mut problems);
        problems.finish()?;
        // `None` only with a problem noted, which `finish` returned.
        settings.ok_or_else(|| InvalidConfig::one("--repo, --work-dir or --policy is invalid"))
    }
    /// `--check`: everything `validate` checks, and the policy file read, parsed
    /// and prepared for verification as the gateway would at start. Touches no network.
    /// `Ok` is the summary; `Err` every problem, one per line.
    fn check(&self) -> Result<String, InvalidConfig> {
        let mut problems = Problems::new();
        let settings = self.settings(&mut problems);
        let mut policy = String::from("no policy: every valid request runs unverified");
        if let Some(path) = self.policy.as_deref().filter(|p| !p.as_os_str().is_empty()) {
            match warroom_access::PolicyWatcher::load(path) {
                Ok(watcher) => {
                    policy = format!(
                        "policy {} ({} engineers)",
                        path.display(),
                        watcher.policy().engineers.len()
                    );
                }
                Err(warroom_access::Error::Invalid { path, errors }) => {
                    for error in errors {
                        problems.push(format!("--policy {path}: {error}"));
                    }
                }
                Err(e) => problems.push(format!(
                    "--policy {}: {}",
                    path.display(),
                    warroom_runtime::Chain(&e)
                )),
            }
        }
        problems.finish()?;
        let Some(settings) = settings else {
            return Err(InvalidConfig::one(
                "--repo, --work-dir or --policy is invalid",
            ));
        };
        Ok(format!(
            "warroom-gateway: {} branch {}, {policy}, {}{}",
            settings.repo,
            settings.branch,
            self.common.summary(),
            if settings.token.is_some() {
                ", git token"
            } else {
                ""
            },
        ))
    }
}

impl Config {
    /// Checks every value into `problems` and, when all are good, returns the settings.
    fn settings(&self, problems: &mut Problems) -> Option<Settings> {
        problems.extend(self.common.problems());
        let repo = self.git.checked_repo(problems);
        // The interval parser refuses too short values already; a Config built in code may
        // bypass it.
        if self.poll_interval < MIN_POLL_INTERVAL {
            problems.push(format!(
                "--poll-interval {:?} is shorter than {}ms",
                self.poll_interval,
                MIN_POLL_INTERVAL.as_millis()
            ));
        }
        let allowed_clusters = self.allowed_clusters(problems);
        let work_dir = match &self.work_dir {
            Some(dir) if dir.as_os_str().is_empty() => {
                problems.push("--work-dir must not be empty");
                None
            }
            Some(dir) => problems.check(absolute(dir)),
            None => repo.as_ref().map(|repo| {
                std::env::temp_dir()
                    .join("warroom-gateway")
                    .join(short_hash(&format!("{repo}\n{}", self.git.branch), 16))
            }),
        };
        let trust = self.trust(problems);
        let token = self.git.token(problems, repo.as_deref());
        let webhook = self.webhook(problems);
        if !problems.is_empty() {
            return None;
        }
        let (Some(repo), Some(work_dir), Some(trust)) = (repo, work_dir, trust) else {
            return None;
        };
        Some(Settings {
            common: self.common.clone(),
            ignores_insecure_flag: self.insecure_allow_unsigned && self.policy.is_some(),
            repo,
            branch: self.git.branch.clone(),
            poll_interval: self.poll_interval,
            work_dir,
            token,
            allowed_clusters,
            trust,
            webhook,
        })
    }

    /// `--policy` or `--insecure-allow-unsigned`: who is believed to have written a request.
    fn trust(&self, problems: &mut Problems) -> Option<Trust> {
        let trust = match (&self.policy, self.insecure_allow_unsigned) {
            (Some(path), _) if path.as_os_str().is_empty() => {
                problems.push("--policy must not be empty");
                None
            }
            (Some(path), _) => problems.check(absolute(path)).map(Trust::Policy),
            (None, true) => Some(Trust::Unsigned),
            (None, false) => {
                problems.push(
                    "no --policy (WARROOM_POLICY) given: without a policy nothing proves who \
                     wrote a request, so the gateway does not start; give the secure zone's \
                     policy file, or --insecure-allow-unsigned \
                     (WARROOM_INSECURE_ALLOW_UNSIGNED=true) to run every valid request \
                     unverified",
                );
                None
            }
        };
        if trust.is_some()
            && self.policy.is_some()
            && let Some(problem) = warroom_git::identity::problem()
        {
            // Verification runs `ssh-keygen -Y verify`, which needs the user looked up.
            problems.push(format!(
                "--policy: signatures cannot be verified: {problem}"
            ));
        }
        trust
    }

    /// `--allowed-clusters`, each a valid cluster name; blanks are skipped.
    fn allowed_clusters(&self, problems: &mut Problems) -> Vec<warroom_proto::ClusterName> {
        let mut allowed_clusters = Vec::new();
        for cluster in &self.allowed_clusters {
            let cluster = cluster.trim();
            if cluster.is_empty() {
                continue;
            }
            match warroom_proto::ClusterName::new(cluster) {
                Ok(name) => allowed_clusters.push(name),
                Err(invalid) => problems.push(format!(
                    "--allowed-clusters: the cluster name `{cluster}` {}",
                    invalid.reason
                )),
            }
        }
        allowed_clusters
    }

    /// `--webhook-addr` with its secret (inline or as a file), both or neither.
    fn webhook(&self, problems: &mut Problems) -> Option<(std::net::SocketAddr, Secret)> {
        let webhook_secret = secret_setting(
            (
                "--webhook-secret (WARROOM_WEBHOOK_SECRET)",
                self.webhook_secret.as_ref(),
            ),
            (
                "--webhook-secret-file (WARROOM_WEBHOOK_SECRET_FILE)",
                self.webhook_secret_file.as_deref(),
            ),
        );
        // The secret's own problem (unreadable, empty, given twice) is noted once, here.
        let secret_failed = webhook_secret.is_err();
        let webhook_secret = problems
            .check(webhook_secret)
            .flatten()
            .map(|secret| secret.expose().trim().to_owned())
            .filter(|secret| !secret.is_empty());
        let secret_given = self.webhook_secret.is_some() || self.webhook_secret_file.is_some();
        match (self.webhook_addr, webhook_secret) {
            (None, _) if !secret_given => None,
            (Some(addr), Some(secret)) => Some((addr, Secret::new(secret))),
            (Some(_), None) if secret_failed => None,
            (Some(_), None) => {
                problems.push(
                    "--webhook-addr needs --webhook-secret (WARROOM_WEBHOOK_SECRET) or \
                     --webhook-secret-file (WARROOM_WEBHOOK_SECRET_FILE): an unsigned webhook \
                     would let anyone make the gateway poll",
                );
                None
            }
            (None, _) => {
                problems.push(
                    "--webhook-secret is set but --webhook-addr is not: give the address to \
                     listen on, or drop the secret",
                );
                None
            }
        }
    }
}

fn absolute(path: &std::path::Path) -> Result<PathBuf, String> {
    std::path::absolute(path)
        .map_err(|e| format!("cannot make the path {} absolute: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;
    use warroom_runtime::daemon::Daemon as _;

    fn config(args: &[&str]) -> Config {
        let mut all = vec!["warroom-gateway", "--insecure-allow-unsigned"];
        all.extend_from_slice(args);
        Config::try_parse_from(all).unwrap()
    }

    #[test]
    fn every_bad_flag_is_reported_at_once() {
        let c = Config::try_parse_from([
            "warroom-gateway",
            "--repo=-x",
            "--allowed-clusters",
            "a.b",
            "--webhook-secret",
            "s",
        ])
        .unwrap();
        let err = c.validate().unwrap_err().to_string();
        for expected in [
            "problems:",
            "--repo",
            "--allowed-clusters: the cluster name `a.b`",
            "no --policy",
            "--webhook-secret is set but --webhook-addr is not",
        ] {
            assert!(err.contains(expected), "{expected:?} missing from: {err}");
        }
    }

    #[test]
    fn intervals_take_units_or_plain_seconds() {
        assert_eq!(parse_interval("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_interval("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_interval("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_interval("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_interval("1h"), Ok(Duration::from_secs(3600)));
        // The one duration syntax of every daemon (humantime): fractions and compound values.
        assert_eq!(parse_interval("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_interval("1m 30s"), Ok(Duration::from_secs(90)));
        for bad in ["", "s", "5x", "-5s", "10ms", "0"] {
            assert!(parse_interval(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn defaults_are_documented_ones() {
        let c = config(&["--repo", "/srv/git/warroom.git"]);
        assert_eq!(c.git.branch, "main");
        assert_eq!(c.poll_interval, Duration::from_secs(5));
        let s = c.validate().unwrap();
        assert!(s.work_dir.starts_with(std::env::temp_dir()));
        assert_eq!(s.repo, "/srv/git/warroom.git");
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let c = config(&["--repo", "/r", "--git-token", "s3cr3t"]);
        assert!(!format!("{c:?}").contains("s3cr3t"));
        let settings = c.validate().unwrap();
        assert!(!format!("{settings:?}").contains("s3cr3t"));
        assert_eq!(settings.token.as_ref().map(Secret::expose), Some("s3cr3t"));
    }

    #[test]
    fn allowed_clusters_are_checked_as_subject_tokens() {
        let c = config(&["--repo", "/r", "--allowed-clusters", "hub,prod-1"]);
        assert_eq!(c.validate().unwrap().allowed_clusters, ["hub", "prod-1"]);
        let c = config(&["--repo", "/r", "--allowed-clusters", "hub,a.b"]);
        assert!(c.validate().is_err());
    }

    #[test]
    fn without_a_policy_the_gateway_needs_to_be_told_to_run_unverified() {
        let c = Config::try_parse_from(["warroom-gateway", "--repo", "/r"]).unwrap();
        let error = c.validate().unwrap_err().to_string();
        assert!(error.contains("--insecure-allow-unsigned"), "{error}");
        assert!(error.contains("--policy"), "{error}");
        assert_eq!(
            config(&["--repo", "/r"]).validate().unwrap().trust,
            Trust::Unsigned
        );
        let c = config(&["--repo", "/r", "--policy", "/etc/warroom/policy.yaml"]);
        assert_eq!(
            c.validate().unwrap().trust,
            Trust::Policy(PathBuf::from("/etc/warroom/policy.yaml"))
        );
    }

    #[test]
    fn a_webhook_needs_both_an_address_and_a_secret() {
        let c = config(&["--repo", "/r", "--webhook-addr", "127.0.0.1:8080"]);
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("--webhook-secret")
        );
        let c = config(&["--repo", "/r", "--webhook-secret", "s"]);
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("--webhook-addr")
        );
        let c = config(&[
            "--repo",
            "/r",
            "--webhook-addr",
            "127.0.0.1:8080",
            "--webhook-secret",
            "hush",
        ]);
        assert!(!format!("{c:?}").contains("hush"));
        let settings = c.validate().unwrap();
        assert!(!format!("{settings:?}").contains("hush"));
        let (addr, secret) = settings.webhook.expect("a webhook");
        assert_eq!(addr.port(), 8080);
        assert_eq!(secret.expose(), "hush");
    }

    #[test]
    fn a_token_is_never_sent_over_plain_http() {
        let c = config(&["--repo", "http://git.local/w.git", "--git-token", "t"]);
        assert!(c.validate().is_err());
        let c = config(&["--repo", "http://git.local/w.git"]);
        assert!(c.validate().is_ok());
    }
}
