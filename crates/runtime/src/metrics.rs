//! How a daemon declares its metrics: a struct of typed `prometheus-client` metrics, each
//! registered once with its help text ([`DaemonMetrics`]), and the metrics runtime code
//! records for a daemon ([`RuntimeMetrics`]).
//!
//! Call sites use fields (`metrics.polls.inc()`), never names: every exported name is written
//! once, in the daemon's `register`, where a grep for it finds it. An increment is an atomic
//! add, with no lock and no allocation.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// A daemon's metrics: a struct whose fields are its counters and gauges.
///
/// Every name is exported as `warroom_<DAEMON>_<name>`, with `_total` appended to a counter's
/// by the OpenMetrics encoding (`deploy/METRICS.md` lists them).
pub trait DaemonMetrics: Default + Send + Sync + 'static {
    /// The daemon (`gateway`, `dispatcher`, `runner`, `publisher`) in every metric's prefix.
    const DAEMON: &'static str;

    /// Registers every metric, with its help text, under its name without the prefix. All
    /// are registered before anything is recorded, so each shows in `/metrics` from the start
    /// (at zero), and a dashboard sees the series before the first event.
    fn register(&self, registry: &mut Registry);

    /// The registry of these metrics, with the daemon's prefix.
    fn registry(&self) -> Registry {
        let mut registry = Registry::with_prefix(format!("warroom_{}", Self::DAEMON));
        self.register(&mut registry);
        registry
    }
}

/// What runtime code records for the daemons that hold a lease and consume with dead letters
/// (the dispatcher and the publisher), which register it among their own.
#[derive(Debug, Clone, Default)]
pub struct RuntimeMetrics {
    /// `active`: 1 while this replica holds its lease and works, 0 on standby
    /// ([`crate::lease::while_held`]).
    pub active: Gauge,
    /// `dead_letters_total`: messages set aside as dead letters by a consumer with
    /// [`crate::Consumer::with_metrics`], whether they did not decode or their handler gave
    /// up.
    pub dead_letters: Counter,
}

impl RuntimeMetrics {
    /// Registers these metrics in the daemon's `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "active",
            "1 while this replica holds its lease and works, 0 on standby",
            self.active.clone(),
        );
        registry.register(
            "dead_letters",
            "Messages set aside as dead letters (undecodable, or given up on after every retry)",
            self.dead_letters.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::EncodeLabelSet;
    use prometheus_client::metrics::family::Family;

    use super::*;
    use crate::Health;

    #[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
    struct ClusterLabels {
        cluster: String,
    }

    #[derive(Debug, Default)]
    struct Example {
        batches_pushed: Counter,
        requests_active: Gauge,
        last_heartbeat: Family<ClusterLabels, Gauge>,
        runtime: RuntimeMetrics,
    }

    impl DaemonMetrics for Example {
        const DAEMON: &'static str = "example";

        fn register(&self, registry: &mut Registry) {
            registry.register("batches_pushed", "Batches", self.batches_pushed.clone());
            registry.register("requests_active", "Active", self.requests_active.clone());
            registry.register(
                "last_heartbeat_timestamp_seconds",
                "Last heartbeat",
                self.last_heartbeat.clone(),
            );
            self.runtime.register(registry);
        }
    }

    #[test]
    fn every_metric_is_named_by_the_scheme_and_shown_from_the_start() {
        let health = Health::<Example>::new();
        let text = health.render();
        for line in [
            "# TYPE warroom_example_batches_pushed counter",
            "warroom_example_batches_pushed_total 0",
            "# TYPE warroom_example_requests_active gauge",
            "warroom_example_requests_active 0",
            "# TYPE warroom_example_active gauge",
            "warroom_example_active 0",
            "# TYPE warroom_example_dead_letters counter",
            "warroom_example_dead_letters_total 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        // A family shows once it has a series: prometheus-client skips empty ones.
        assert!(!text.contains("last_heartbeat"), "{text}");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("warroom_example_"), "{line}");
        }
    }

    #[test]
    fn the_fields_are_what_is_rendered() {
        let health = Health::<Example>::new();
        let metrics = &health.metrics;
        metrics.batches_pushed.inc_by(3);
        metrics.requests_active.set(2);
        metrics.runtime.dead_letters.inc();
        for cluster in ["hub", "prod-1"] {
            metrics
                .last_heartbeat
                .get_or_create(&ClusterLabels {
                    cluster: cluster.to_owned(),
                })
                .set(1_800_000_000);
        }
        let text = health.render();
        for line in [
            "warroom_example_batches_pushed_total 3",
            "warroom_example_requests_active 2",
            "warroom_example_dead_letters_total 1",
            r#"warroom_example_last_heartbeat_timestamp_seconds{cluster="prod-1"} 1800000000"#,
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }
}
