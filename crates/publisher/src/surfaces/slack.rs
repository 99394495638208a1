//! The Slack surface: one message through an incoming webhook when a request ends (and, with
//! `--slack-on-start`, one when it starts running).
//!
//! **Never twice.** A message is keyed on the request and the phase it announces, never on
//! its text: before sending, the announcement is claimed in the request's record
//! ([`Context::save`], compare-and-set) as `claimed <nonce> <time>`, and marked `sent` after
//! Slack accepted it. A record that says `sent` sends nothing again (a redelivered update, a
//! restart, another replica). A webhook cannot be exactly-once, so a claim found without its
//! `sent` mark is resolved **at most once**: it is not resent, but logged and counted in
//! `warroom_publisher_surface_unconfirmed_total{surface="slack"}`. It means that a publisher
//! stopped between sending and recording (the message may or may not have reached Slack), or,
//! rarely, that another replica was sending it at that moment. A send that failed where we
//! saw it fail (an error answer, a refused connection) releases its claim and is retried.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::{debug, warn};
use warroom_proto::{RequestPhase, RequestStatus};
use warroom_runtime::config::{Problems, Secret, secret_setting};

use super::{Context, Failure, Shown, Surface};
use crate::metrics::{Metrics, SurfaceLabels};
use crate::redact;
use crate::render;

/// How long one webhook call may take.
const TIMEOUT: Duration = Duration::from_secs(30);
/// The most clusters listed one per line; the rest are counted.
const MAX_LISTED: usize = 20;
/// The longest error text quoted, in bytes.
const MAX_ERROR: usize = 300;
/// What the record's handle for an announced phase says once Slack accepted the message.
const SENT: &str = "sent";
/// The start of a claim: `claimed <nonce> <unix seconds>`.
const CLAIMED: &str = "claimed ";

/// The Slack surface's command line and environment.
#[derive(Debug, Clone, clap::Args)]
pub struct SlackArgs {
    /// A Slack incoming-webhook URL (`https://hooks.slack.com/services/...`): announce every
    /// request that ends, once, with each cluster's phase, duration and cost. A secret: give
    /// it through the environment or --slack-webhook-url-file. Off when unset.
    #[arg(long, env = "WARROOM_SLACK_WEBHOOK_URL", hide_env_values = true)]
    pub slack_webhook_url: Option<Secret>,

    /// A file holding the Slack webhook URL (a mounted Secret), read once at start. Instead
    /// of --slack-webhook-url.
    #[arg(long, env = "WARROOM_SLACK_WEBHOOK_URL_FILE", value_name = "FILE")]
    pub slack_webhook_url_file: Option<PathBuf>,

    /// Also announce on Slack when a request starts running (once per request).
    #[arg(long, env = "WARROOM_SLACK_ON_START")]
    pub slack_on_start: bool,

    /// The link to a request's report in Slack messages: an http(s) URL in which
    /// `{results_dir}` becomes the request's results folder (`results/<id>`) and `{id}` its
    /// id, e.g. `https://github.com/acme/warroom/blob/main/{results_dir}/README.md`. Without
    /// it the message names the folder in the repository.
    #[arg(long, env = "WARROOM_SLACK_REPORT_URL", value_name = "TEMPLATE")]
    pub slack_report_url: Option<String>,
}

/// The checked Slack settings.
#[derive(Debug, Clone)]
pub struct SlackSettings {
    webhook: Secret,
    on_start: bool,
    report_url: Option<String>,
}

impl SlackArgs {
    /// The Slack settings, `None` when Slack is off or a value is refused (noted in
    /// `problems`).
    pub(crate) fn settings(&self, problems: &mut Problems) -> Option<Arc<SlackSettings>> {
        let webhook = problems
            .check(secret_setting(
                (
                    "--slack-webhook-url (WARROOM_SLACK_WEBHOOK_URL)",
                    self.slack_webhook_url.as_ref(),
                ),
                (
                    "--slack-webhook-url-file (WARROOM_SLACK_WEBHOOK_URL_FILE)",
                    self.slack_webhook_url_file.as_deref(),
                ),
            ))
            .flatten()
            .map(|url| url.expose().trim().to_owned())
            .filter(|url| !url.is_empty());
        let Some(webhook) = webhook else {
            if self.slack_on_start || self.slack_report_url.is_some() {
                problems.push(
                    "--slack-on-start and --slack-report-url need --slack-webhook-url or \
                     --slack-webhook-url-file",
                );
            }
            return None;
        };
        let scheme_ok = |url: &str| url.starts_with("https://") || url.starts_with("http://");
        if !scheme_ok(&webhook) || webhook.contains(char::is_whitespace) {
            // The URL is a secret: never repeat it.
            problems.push(
                "the Slack webhook URL (--slack-webhook-url or its file) is not an http(s) URL; \
                 expected https://hooks.slack.com/services/...",
            );
        }
        if let Some(template) = &self.slack_report_url
            && (!scheme_ok(template)
                || template.contains(|c: char| c.is_whitespace() || "|<>".contains(c)))
        {
            problems.push(format!(
                "--slack-report-url `{template}` is not an http(s) URL without spaces, `|`, `<` \
                 or `>`; expected e.g. https://github.com/o/r/blob/main/{{results_dir}}/README.md"
            ));
        }
        Some(Arc::new(SlackSettings {
            webhook: Secret::new(webhook),
            on_start: self.slack_on_start,
            report_url: self.slack_report_url.clone(),
        }))
    }
}

impl SlackSettings {
    /// For the start log: never the webhook URL, which is a secret.
    pub(crate) fn summary(&self) -> String {
        format!(
            "Slack (requests ending{})",
            if self.on_start { " and starting" } else { "" }
        )
    }
}

/// The Slack surface at work.
pub struct Slack {
    settings: Arc<SlackSettings>,
    http: reqwest::Client,
    metrics: Arc<Metrics>,
    /// Claims of this process whose send was seen to fail and whose release could not be
    /// recorded: they may be claimed again.
    released: Mutex<HashSet<String>>,
}

impl Slack {
    pub(crate) fn new(settings: Arc<SlackSettings>, metrics: Arc<Metrics>) -> Slack {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .unwrap_or_default();
        Slack {
            settings,
            http,
            metrics,
            released: Mutex::new(HashSet::new()),
        }
    }

    fn released(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.released
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Posts `text` to the webhook.
    async fn post(&self, text: &str) -> Result<(), Failure> {
        let body = serde_json::json!({ "text": text, "unfurl_links": false });
        let answer = self
            .http
            .post(self.settings.webhook.expose())
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            // The URL is a secret: it must not reach the log.
            .map_err(|e| Failure::retry(format!("Slack: {}", e.without_url())))?;
        let status = answer.status();
        if status.is_success() {
            return Ok(());
        }
        let after = answer
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let said = answer.text().await.unwrap_or_default();
        let reason = format!(
            "Slack answered {status}: {}",
            redact::truncate(said.trim(), 200)
        );
        if status.as_u16() == 429 || status.is_server_error() {
            Err(Failure::Retry { after, reason })
        } else {
            Err(Failure::Permanent(reason))
        }
    }
}

impl Surface for Slack {
    const NAME: &'static str = "slack";
    const CONCURRENCY: usize = 2;

    fn wants(&self, status: &RequestStatus) -> bool {
        status.phase.is_final() || (self.settings.on_start && status.phase == RequestPhase::Running)
    }

    async fn show(&self, status: &RequestStatus, context: &mut Context) -> Result<Shown, Failure> {
        let phase = status.phase.as_str().to_owned();
        let labels = SurfaceLabels {
            surface: Self::NAME,
        };
        match context.record.handles.get(&phase).map(String::as_str) {
            None => {}
            Some(SENT) => return Ok(Shown::Done),
            Some(claim) => {
                let nonce = claim_nonce(claim);
                if !nonce.is_some_and(|n| self.released().remove(n)) {
                    // At most once: it may have reached Slack before the publisher stopped.
                    warn!(surface = Self::NAME, request = %status.id, %phase, claim = %claim, "a Slack message was claimed but never confirmed sent; not sending it again");
                    self.metrics
                        .surface_unconfirmed
                        .get_or_create(&labels)
                        .inc();
                    return Ok(Shown::Done);
                }
            }
        }
        let nonce = new_nonce();
        let claim = format!("{CLAIMED}{nonce} {}", warroom_proto::now().unix_timestamp());
        context.record.handles.insert(phase.clone(), claim);
        if let Err(conflict) = context.save().await {
            // Either another replica claimed it (the next try reads its claim) or NATS did not
            // answer (then the claim may be stored after all: it is ours to take again).
            self.released().insert(nonce);
            return Err(Failure::retry(format!(
                "cannot claim the Slack message: {conflict}, or NATS did not answer"
            )));
        }
        let text = message(status, self.settings.report_url.as_deref());
        match self.post(&text).await {
            Ok(()) => {
                context.record.handles.insert(phase, SENT.to_owned());
                if let Err(e) = context.save().await {
                    warn!(surface = Self::NAME, request = %status.id, cause = %e, "the Slack message was sent but its sent mark not recorded");
                }
                debug!(surface = Self::NAME, request = %status.id, "announced on Slack");
                Ok(Shown::Done)
            }
            Err(failure) => {
                // Seen to fail: not delivered, so the claim is released for the next try.
                context.record.handles.remove(&phase);
                if context.save().await.is_err() {
                    self.released().insert(nonce);
                }
                Err(failure)
            }
        }
    }
}

/// The nonce of a claim `claimed <nonce> <time>`.
fn claim_nonce(claim: &str) -> Option<&str> {
    claim.strip_prefix(CLAIMED)?.split(' ').next()
}

fn new_nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// `text` safe in Slack's mrkdwn: `&`, `<` and `>` escaped, so that it can neither open a
/// link nor mention anyone (`<!channel>`, `<@U123>`).
pub(crate) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Text that came from a request or an agent, for a Slack message: redacted, on one line,
/// shortened and escaped.
fn from_request(text: &str) -> String {
    let redacted = redact::text(text).into_string().replace(['\r', '\n'], " ");
    escape(&redact::truncate(&redacted, MAX_ERROR))
}

/// The message announcing `status`: the request, its phase, each cluster's phase, duration
/// and cost, the error, and the link to the report.
pub(crate) fn message(status: &RequestStatus, report_url: Option<&str>) -> String {
    let mut out = String::new();
    let icon = match status.phase {
        RequestPhase::Completed => ":white_check_mark:",
        RequestPhase::Running => ":hourglass_flowing_sand:",
        RequestPhase::Cancelled => ":no_entry_sign:",
        _ => ":x:",
    };
    let _ = write!(
        out,
        "{icon} claude-warroom request `{}` *{}*",
        status.id, status.phase
    );
    if let Some(engineer) = &status.engineer {
        let _ = write!(out, " (by {})", from_request(engineer));
    }
    let total = warroom_proto::total_cost(
        status
            .clusters
            .values()
            .filter_map(|c| c.cost_usd)
            .filter(|c| c.is_finite()),
    );
    let _ = write!(
        out,
        ": {} cluster{}",
        status.clusters.len(),
        if status.clusters.len() == 1 { "" } else { "s" }
    );
    if status.phase.is_final() && total > 0.0 {
        let _ = write!(out, ", {}", render::cost(Some(total)));
    }
    out.push('\n');
    for (name, line) in status.clusters.iter().take(MAX_LISTED) {
        let _ = write!(out, "• `{name}`: {}", line.phase);
        if line.phase.is_final() {
            let _ = write!(
                out,
                ", {}, {}",
                render::duration(line.duration_secs),
                render::cost(line.cost_usd)
            );
        }
        if let Some(error) = &line.error {
            let _ = write!(out, ": {}", from_request(error));
        }
        out.push('\n');
    }
    if status.clusters.len() > MAX_LISTED {
        let _ = writeln!(out, "• … and {} more", status.clusters.len() - MAX_LISTED);
    }
    if let Some(error) = &status.error {
        let _ = writeln!(out, "Error: {}", from_request(error));
    }
    let dir = status.results_dir.as_str();
    match report_url {
        Some(template) => {
            let url = template
                .replace("{results_dir}", dir)
                .replace("{id}", status.id.as_str());
            let _ = write!(out, "<{}|Report>", escape(&url));
        }
        None => {
            let _ = write!(out, "Report: `{dir}/README.md` in the repository");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use warroom_proto::{ClusterPhase, ClusterStatus, ClusterType};

    fn status(phase: RequestPhase) -> RequestStatus {
        let mut line = ClusterStatus::new(ClusterType::Hosted, ClusterPhase::Failed);
        line.duration_secs = Some(83.0);
        line.cost_usd = Some(0.0421);
        line.error = Some("<!channel> see <https://evil.example|here> & token ghp_0123456789abcdefghijklmnopqrstuvwxyzAB".to_owned());
        RequestStatus {
            id: "r-1".parse().expect("an id"),
            phase,
            clusters: BTreeMap::from([("hub".parse().expect("a cluster"), line)]),
            error: Some("hub failed: <@U123>".to_owned()),
            errors: Vec::new(),
            mode: None,
            engineer: Some("alice <!here>".to_owned()),
            results_dir: "results/r-1".parse().expect("a folder"),
            commit: None,
            revision: 4,
            updated_at: warroom_proto::now(),
            verification: None,
            notices: Vec::new(),
            cancelled: None,
            synthesis: None,
            session: None,
            turns: Vec::new(),
        }
    }

    #[test]
    fn request_text_cannot_link_or_mention_and_secrets_are_redacted() {
        let text = message(&status(RequestPhase::Failed), None);
        assert!(!text.contains('<') && !text.contains('>'), "{text}");
        assert!(text.contains("&lt;!channel&gt;"), "{text}");
        assert!(text.contains("&lt;@U123&gt;"), "{text}");
        assert!(text.contains("&amp; token"), "{text}");
        assert!(!text.contains("ghp_0123456789"), "{text}");
        assert!(text.contains("[REDACTED:"), "{text}");
        assert!(text.contains("`hub`: failed, 1m 23s, $0.0421"), "{text}");
        assert!(text.contains("Report: `results/r-1/README.md`"), "{text}");
    }

    #[test]
    fn the_report_link_is_the_only_link() {
        let text = message(
            &status(RequestPhase::Completed),
            Some("https://git.example/o/r/blob/main/{results_dir}/README.md?a=1&id={id}"),
        );
        assert!(
            text.ends_with(
                "<https://git.example/o/r/blob/main/results/r-1/README.md?a=1&amp;id=r-1|Report>"
            ),
            "{text}"
        );
        assert_eq!(text.matches('<').count(), 1, "{text}");
    }

    #[test]
    fn bad_settings_are_refused_with_the_flag_named() {
        let args = |url: Option<&str>, report: Option<&str>| SlackArgs {
            slack_webhook_url: url.map(Secret::new),
            slack_webhook_url_file: None,
            slack_on_start: false,
            slack_report_url: report.map(str::to_owned),
        };
        let cases = [
            (args(Some("hooks.slack.com/x"), None), "not an http(s) URL"),
            (
                args(Some("https://h/x"), Some("https://r/a|b")),
                "--slack-report-url",
            ),
            (
                args(None, Some("https://r/{id}")),
                "need --slack-webhook-url",
            ),
        ];
        for (args, expected) in cases {
            let mut problems = Problems::new();
            let _ = args.settings(&mut problems);
            let err = problems.finish().expect_err("refused").to_string();
            assert!(err.contains(expected), "{err}");
            assert!(
                !err.contains("hooks.slack.com/x"),
                "the secret leaked: {err}"
            );
        }
        let mut problems = Problems::new();
        assert!(args(None, None).settings(&mut problems).is_none());
        assert!(problems.is_empty());
    }
}
