//! The dispatcher's command-line and environment configuration, checked before any I/O.

use std::time::Duration;

use clap::Parser;
use warroom_runtime::config::{InvalidConfig, Problems};

use crate::Result;

/// Owns each troubleshooting request's lifecycle: fans it out into per-cluster tasks, collects
/// the runners' results, follows the runners' heartbeats, enforces the pickup and run
/// timeouts, and publishes the request's status at every transition.
///
/// Durations are written as a number with a unit: `500ms`, `30s`, `10m`, `2h` (a bare number
/// means seconds).
#[derive(Debug, Clone, Parser)]
#[command(name = "warroom-dispatcher", version)]
pub struct Config {
    #[command(flatten)]
    pub common: warroom_runtime::CommonArgs,

    /// How long a dispatched task waits while its cluster has no live runner (none sent a
    /// heartbeat in the last 30s). While one is live, however busy, the task waits `queued`
    /// without a limit. Counted from the latest of the dispatch, the cluster's last heartbeat
    /// and the dispatcher's start; then the cluster ends `failed` ("no runner of cluster X has
    /// sent a heartbeat since ...") and the task is taken back off the queue.
    #[arg(long, env = "WARROOM_PICKUP_TIMEOUT", default_value = "10m", value_parser = parse_duration)]
    pub pickup_timeout: Duration,

    /// Added to a request's own timeout: a cluster whose runner started but sent no result
    /// within the request timeout plus this grace ends as `timed_out`. The runner enforces the
    /// request timeout itself; the grace covers stopping the agent and publishing its result.
    #[arg(long, env = "WARROOM_RUN_GRACE", default_value = "2m", value_parser = parse_duration)]
    pub run_grace: Duration,

    /// How often requests that are not final are checked for pickup and run timeouts, and
    /// for work a crash left half done.
    #[arg(long, env = "WARROOM_SWEEP_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub sweep_interval: Duration,

    /// At most how often a running request's `status.json` is rewritten for its agents'
    /// progress (turns, tool calls, cost so far, the last tool calls; every cluster's in the
    /// same snapshot). Transitions are always written at once. A four-hour run makes at most
    /// 4h / this many progress commits.
    #[arg(long, env = "WARROOM_PROGRESS_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub progress_interval: Duration,

    /// How long the cross-cluster synthesis of a request may take: once every cluster of a
    /// request with several clusters ended and at least two gave supported findings, one of
    /// its runners makes a tool-less model pass over their reports, and the request ends
    /// with it. No synthesis within this bound plus --run-grace, or a failed one, only adds
    /// a note; the cluster reports stand. `0s` turns synthesis off.
    #[arg(long, env = "WARROOM_SYNTHESIS_TIMEOUT", default_value = "10m", value_parser = parse_duration)]
    pub synthesis_timeout: Duration,

    /// How long NATS waits for the dispatcher to acknowledge a message before it hands the
    /// message out again. Messages a dispatcher had fetched when it died are handled again
    /// this long later, by whichever replica is active. Applies when the dispatcher's durable
    /// consumers are created (the first dispatcher to start creates them).
    #[arg(long, env = "WARROOM_ACK_WAIT", default_value = "60s", value_parser = parse_duration)]
    pub ack_wait: Duration,
}

/// The dispatcher's configuration, checked by `validate`: only a valid
/// configuration becomes `Settings`, and [`crate::run`] takes nothing else.
#[derive(Debug, Clone)]
pub struct Settings(Config);

impl std::ops::Deref for Settings {
    type Target = Config;
    fn deref(&self) -> &Config {
        &self.0
    }
}

impl warroom_runtime::daemon::Daemon for Config {
    const PROGRAM: &'static str = "warroom-dispatcher";
    type Settings = Settings;
    type Metrics = crate::metrics::Metrics;

    fn common(&self) -> &warroom_runtime::CommonArgs {
        &self.common
    }

    /// Checks what clap cannot (values that parse but make no sense), and reports every
    /// problem at once, one per line.
    fn validate(&self) -> Result<Settings, InvalidConfig> {
        let mut problems = Problems::new();
        problems.extend(self.common.problems());
        if self.pickup_timeout.is_zero() {
            problems.push("--pickup-timeout must be longer than zero");
        }
        if self.sweep_interval.is_zero() {
            problems.push("--sweep-interval must be longer than zero");
        }
        if self.ack_wait < Duration::from_secs(1) {
            problems.push(format!(
                "--ack-wait ({}) must be at least 1s",
                human(self.ack_wait)
            ));
        }
        if self.sweep_interval > self.pickup_timeout && !self.pickup_timeout.is_zero() {
            problems.push(format!(
                "--sweep-interval ({}) must not be longer than --pickup-timeout ({}): the sweep \
                 is what enforces the timeout",
                human(self.sweep_interval),
                human(self.pickup_timeout)
            ));
        }
        problems.finish()?;
        Ok(Settings(self.clone()))
    }
    /// `--check`: everything `validate` checks, the NATS credential and TLS files
    /// read as the connection would. Touches no network. `Ok` is the summary; `Err` every
    /// problem, one per line.
    fn check(&self) -> Result<String, InvalidConfig> {
        self.validate()?;
        Ok(format!(
            "warroom-dispatcher: pickup timeout {}, run grace {}, {}",
            human(self.pickup_timeout),
            human(self.run_grace),
            self.common.summary()
        ))
    }
}

impl Config {}

use warroom_runtime::parse_duration;

/// A duration the way an engineer writes it: `10m`, `1h 30m`, `45s`, `500ms`.
pub fn human(duration: Duration) -> String {
    let secs = duration.as_secs();
    let millis = duration.subsec_millis();
    if secs == 0 {
        return format!("{millis}ms");
    }
    let mut parts = Vec::new();
    let (hours, minutes, seconds) = (secs / 3600, secs / 60 % 60, secs % 60);
    if hours > 0 {
        parts.push(format!("{hours}h"));
    }
    if minutes > 0 {
        parts.push(format!("{minutes}m"));
    }
    if seconds > 0 || millis > 0 {
        if millis > 0 {
            parts.push(format!("{seconds}.{millis:03}s"));
        } else {
            parts.push(format!("{seconds}s"));
        }
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use warroom_runtime::daemon::Daemon as _;

    #[test]
    fn duration_flags_take_the_runtimes_syntax() {
        // The syntax itself is tested in `warroom_runtime::duration`; this checks that the
        // dispatcher's flags use it.
        let config = Config::parse_from([
            "warroom-dispatcher",
            "--pickup-timeout",
            "1h 30m",
            "--run-grace",
            "90",
            "--sweep-interval",
            "500ms",
        ]);
        assert_eq!(config.pickup_timeout, Duration::from_secs(5400));
        assert_eq!(config.run_grace, Duration::from_secs(90));
        assert_eq!(config.sweep_interval, Duration::from_millis(500));
        for bad in ["", "m", "-1s", "99999999999999999999h"] {
            assert!(
                Config::try_parse_from(["warroom-dispatcher", "--pickup-timeout", bad]).is_err(),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn durations_print_the_way_they_are_written() {
        assert_eq!(human(Duration::from_secs(600)), "10m");
        assert_eq!(human(Duration::from_secs(5400)), "1h 30m");
        assert_eq!(human(Duration::from_secs(1)), "1s");
        assert_eq!(human(Duration::from_millis(1500)), "1.500s");
        assert_eq!(human(Duration::from_millis(250)), "250ms");
    }

    #[test]
    fn defaults_are_valid_and_nonsense_is_refused() {
        let config = Config::parse_from(["warroom-dispatcher"]);
        assert_eq!(config.pickup_timeout, Duration::from_secs(600));
        assert_eq!(config.run_grace, Duration::from_secs(120));
        assert_eq!(config.sweep_interval, Duration::from_secs(5));
        assert_eq!(config.ack_wait, Duration::from_secs(60));
        assert!(config.validate().is_ok());

        let config = Config::parse_from(["warroom-dispatcher", "--ack-wait", "500ms"]);
        let err = config
            .validate()
            .expect_err("a sub-second ack wait")
            .to_string();
        assert!(
            err.contains("--ack-wait (500ms) must be at least 1s"),
            "{err}"
        );

        let config = Config::parse_from(["warroom-dispatcher", "--pickup-timeout", "0s"]);
        assert!(config.validate().is_err());
        let config = Config::parse_from([
            "warroom-dispatcher",
            "--pickup-timeout",
            "1s",
            "--sweep-interval",
            "5s",
        ]);
        let error = config
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("--sweep-interval"), "{error}");
    }

    #[test]
    fn every_bad_flag_is_reported_at_once() {
        let config = Config::parse_from([
            "warroom-dispatcher",
            "--nats-url",
            " ",
            "--nats-creds",
            "/nonexistent/warroom.creds",
            "--pickup-timeout",
            "0s",
            "--sweep-interval",
            "0s",
        ]);
        let error = config
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        let lines: Vec<&str> = error.lines().collect();
        assert_eq!(lines.len(), 5, "{error}");
        assert!(lines[0].contains("4 problems"), "{error}");
        for flag in [
            "--nats-url",
            "--nats-creds",
            "--pickup-timeout",
            "--sweep-interval",
        ] {
            assert_eq!(
                lines.iter().filter(|l| l.contains(flag)).count(),
                1,
                "{flag} is not reported on its own line: {error}"
            );
        }
    }
}
