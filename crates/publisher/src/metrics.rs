//! The publisher's metrics, declared once: exported as `warroom_publisher_<name>` (`_total`
//! appended to a counter's), listed in `deploy/METRICS.md`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use warroom_runtime::{DaemonMetrics, RuntimeMetrics};

/// The publisher's readiness and metrics.
pub type Health = warroom_runtime::Health<Metrics>;

/// What the publisher counts; each field is registered in [`DaemonMetrics::register`].
#[derive(Debug, Default)]
pub struct Metrics {
    pub batches_pushed: Counter,
    pub batches_failed: Counter,
    pub push_retries: Counter,
    /// Failed `git push` attempts (alerted on).
    pub push_failures: Counter,
    pub pushes_on_moved_branch: Counter,
    pub fetches: Counter,
    pub messages_written: Counter,
    pub messages_skipped: Counter,
    pub messages_refused: Counter,
    pub messages_retried: Counter,
    /// Unix seconds of the last successful push (alerted on).
    pub last_push_timestamp_seconds: Gauge,
    /// Request states shown on a surface outside git.
    pub surface_updates: Family<SurfaceLabels, Counter>,
    /// Snapshots not shown: already shown, superseded by a newer one, or not wanted.
    pub surface_skipped: Family<SurfaceLabels, Counter>,
    /// Tries again after a temporary failure of a surface.
    pub surface_retries: Family<SurfaceLabels, Counter>,
    /// Snapshots given up after `--surface-give-up-after` or a permanent failure (alerted on).
    pub surface_gave_up: Family<SurfaceLabels, Counter>,
    /// Announcements found claimed but never confirmed sent (a publisher stopped between
    /// sending and recording): not sent again, at most once.
    pub surface_unconfirmed: Family<SurfaceLabels, Counter>,
    /// ConfigMaps of requests deleted after `--configmap-retention`.
    pub configmaps_collected: Counter,
    /// ConfigMap garbage-collection rounds that failed (the API unreachable or refusing).
    pub configmap_gc_failures: Counter,
    /// Objects the S3 mirror uploaded (a file of `results/` added or changed).
    pub s3_uploads: Counter,
    /// Objects the S3 mirror deleted (a file gone from `results/`, or a stray object).
    pub s3_deletes: Counter,
    /// Rounds of the S3 mirror that failed and are retried (alerted on).
    pub s3_failures: Counter,
    /// Catch-ups that compared the whole bucket with `results/`, because the last mirrored
    /// commit was not in the shallow clone (or nothing was mirrored yet).
    pub s3_full_syncs: Counter,
    /// Unix seconds when the S3 mirror last caught up with a pushed commit.
    pub s3_last_mirror_timestamp_seconds: Gauge,
    /// `active` (the lease) and `dead_letters_total` (counted by the consumer itself).
    pub runtime: RuntimeMetrics,
}

/// Which surface outside git (`github`, `slack`, `configmap`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct SurfaceLabels {
    pub surface: &'static str,
}

impl DaemonMetrics for Metrics {
    const DAEMON: &'static str = "publisher";

    /// Long because it registers every metric, one call each with its help text.
    fn register(&self, registry: &mut Registry) {
        let r = registry;
        r.register(
            "batches_pushed",
            "Batches committed and pushed",
            self.batches_pushed.clone(),
        );
        r.register(
            "batches_failed",
            "Batches that could not be published, handed back",
            self.batches_failed.clone(),
        );
        r.register(
            "push_retries",
            "Batches redone after a failed attempt",
            self.push_retries.clone(),
        );
        r.register(
            "push_failures",
            "Failed git push attempts",
            self.push_failures.clone(),
        );
        r.register(
            "pushes_on_moved_branch",
            "Pushes on top of this replica's last push refused because the branch had moved",
            self.pushes_on_moved_branch.clone(),
        );
        r.register(
            "fetches",
            "Fetches of the remote before a batch",
            self.fetches.clone(),
        );
        r.register(
            "messages_written",
            "Messages written into the working tree",
            self.messages_written.clone(),
        );
        r.register(
            "messages_skipped",
            "Messages with nothing to write (stale or repeated)",
            self.messages_skipped.clone(),
        );
        r.register(
            "messages_refused",
            "Messages that can never be written, terminated",
            self.messages_refused.clone(),
        );
        r.register(
            "messages_retried",
            "Messages not written for now, handed back",
            self.messages_retried.clone(),
        );
        r.register(
            "last_push_timestamp_seconds",
            "Unix seconds of the last successful push",
            self.last_push_timestamp_seconds.clone(),
        );
        self.register_surfaces(r);
        self.register_s3(r);
        self.runtime.register(r);
    }
}

impl Metrics {
    /// The surfaces' counters.
    fn register_surfaces(&self, r: &mut Registry) {
        // Every surface's series exist from the start, at 0: an alert's `increase` sees the
        // first give-up, and the families show on /metrics before any surface ran.
        for surface in warroom_proto::names::SURFACES {
            let labels = SurfaceLabels { surface };
            for family in [
                &self.surface_updates,
                &self.surface_skipped,
                &self.surface_retries,
                &self.surface_gave_up,
                &self.surface_unconfirmed,
            ] {
                drop(family.get_or_create(&labels));
            }
        }
        r.register(
            "surface_updates",
            "Request states shown on a surface outside git",
            self.surface_updates.clone(),
        );
        r.register(
            "surface_skipped",
            "Status snapshots not shown on a surface: already shown, superseded or not wanted",
            self.surface_skipped.clone(),
        );
        r.register(
            "surface_retries",
            "Tries again after a temporary failure of a surface",
            self.surface_retries.clone(),
        );
        r.register(
            "surface_gave_up",
            "Status snapshots a surface gave up on (a permanent failure or --surface-give-up-after)",
            self.surface_gave_up.clone(),
        );
        r.register(
            "surface_unconfirmed",
            "Announcements claimed but never confirmed sent (a stop between sending and recording); not sent again",
            self.surface_unconfirmed.clone(),
        );
        r.register(
            "configmaps_collected",
            "ConfigMaps of finished requests deleted after --configmap-retention",
            self.configmaps_collected.clone(),
        );
        r.register(
            "configmap_gc_failures",
            "ConfigMap garbage-collection rounds that failed",
            self.configmap_gc_failures.clone(),
        );
    }

    /// The S3 mirror's metrics.
    fn register_s3(&self, r: &mut Registry) {
        r.register(
            "s3_uploads",
            "Objects uploaded to the S3 mirror",
            self.s3_uploads.clone(),
        );
        r.register(
            "s3_deletes",
            "Objects deleted from the S3 mirror",
            self.s3_deletes.clone(),
        );
        r.register(
            "s3_failures",
            "Rounds of the S3 mirror that failed and are retried",
            self.s3_failures.clone(),
        );
        r.register(
            "s3_full_syncs",
            "S3 catch-ups that compared the whole bucket with results/",
            self.s3_full_syncs.clone(),
        );
        r.register(
            "s3_last_mirror_timestamp_seconds",
            "Unix seconds when the S3 mirror last caught up with a pushed commit",
            self.s3_last_mirror_timestamp_seconds.clone(),
        );
    }
}
