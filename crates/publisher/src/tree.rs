//! Turning messages into files of the working tree ([`Tree::apply`]).
//!
//! Every path comes from a message. The bus already decoded and checked each message
//! ([`warroom_proto::Inbound`]): its request id and cluster names are checked tokens and its
//! results folder is a [`ResultsDir`](warroom_proto::ResultsDir) inside `results/` that
//! belongs to the request. While writing, no part of a path may be a symlink or something
//! other than a folder (the tree comes from the remote, where anybody who can push could have
//! committed `results/x -> /etc`).
//!
//! Applying is idempotent, because a batch is applied again after a lost push race and a
//! message may be delivered again after a crash: a status snapshot older than the one in
//! `status.json` is skipped, and an audit event whose id is already in `audit.jsonl` is not
//! written again.

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use warroom_proto::wire::Redacted;
use warroom_proto::{AuditEvent, AuditKind, PublisherInput, RequestId, RequestPhase, StatusUpdate};

use crate::redact;
use crate::render::{self, AUDIT_FILE, README_FILE, STATUS_FILE};

/// A message that passed its checks, ready to be written.
pub(crate) type Item = PublisherInput;

/// What applying one item did.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Applied {
    /// Files were written.
    Written,
    /// Nothing to write: a duplicate or an older snapshot.
    Skipped(String),
    /// The item can never be written into this tree (a symlink in its path).
    Refused(String),
}

/// Why an item could not be applied.
#[derive(Debug)]
pub(crate) enum Problem {
    /// Something about this item and this tree: skip it.
    Refused(String),
    /// The file system failed on this item.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Problem + '_ {
    move |source| Problem::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What one batch changed in one request's folder.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RequestChange {
    pub id: RequestId,
    /// The last phase written to `status.json`, when a status was.
    pub phase: Option<RequestPhase>,
    /// Lines added to `audit.jsonl`.
    pub audit_lines: usize,
}

impl RequestChange {
    /// `<id> completed, 2 audit events`.
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(phase) = self.phase {
            parts.push(phase.to_string());
        }
        if self.audit_lines > 0 {
            parts.push(format!(
                "{} audit event{}",
                self.audit_lines,
                if self.audit_lines == 1 { "" } else { "s" }
            ));
        }
        format!("{} {}", self.id, parts.join(", "))
    }
}

/// What one batch changed, for the commit message.
#[derive(Debug, Default, Clone)]
pub(crate) struct Summary {
    /// Requests in the order they were first touched.
    pub requests: Vec<RequestChange>,
    /// Items that changed files.
    pub written: usize,
    /// Items with nothing to write.
    pub skipped: usize,
    /// The status revision written per request, to record once the batch is pushed.
    pub revisions: HashMap<RequestId, u64>,
}

impl Summary {
    /// The status revision this batch wrote for `request`, if it wrote one.
    fn revision_of(&self, request: &RequestId) -> Option<u64> {
        self.revisions.get(request).copied()
    }

    fn entry(&mut self, request: &RequestId) -> &mut RequestChange {
        let index = match self.requests.iter().position(|r| &r.id == request) {
            Some(index) => index,
            None => {
                self.requests.push(RequestChange {
                    id: request.clone(),
                    phase: None,
                    audit_lines: 0,
                });
                self.requests.len() - 1
            }
        };
        &mut self.requests[index]
    }

    /// `results: <id> completed (+2 more)`, and a line per request below.
    pub fn commit_message(&self) -> String {
        let Some(first) = self.requests.first() else {
            return "results: update".to_owned();
        };
        let mut message = format!("results: {}", first.describe());
        if self.requests.len() > 1 {
            message.push_str(&format!(" (+{} more)", self.requests.len() - 1));
            message.push('\n');
            for request in &self.requests {
                message.push_str(&format!("\n- {}", request.describe()));
            }
        }
        message
    }
}

/// The ids already in one `audit.jsonl`, and the redaction counts of its lines.
struct AuditFile {
    ids: HashSet<String>,
    /// Per cluster, what redaction removed from its events and from its reports (the
    /// runner's counts and the publisher's own second pass), by kind.
    redacted: HashMap<String, Redacted>,
    /// The file exists, is not empty, and does not end with a line break.
    needs_newline: bool,
    /// Each event's 1-based line, for the reports' links to their evidence.
    lines: render::AuditLines,
    /// How many lines the file has.
    line_count: usize,
}

/// The working tree of one attempt.
pub(crate) struct Tree<'a> {
    root: &'a Path,
    audit: HashMap<PathBuf, AuditFile>,
    /// Put at the top of every report (`--report-note`).
    note: Option<&'a str>,
    /// The revisions pushed before, by request id ([`Tree::with_pushed`]).
    pushed: Option<&'a HashMap<RequestId, u64>>,
    /// The newest revision of each request among the items of this batch
    /// ([`Tree::with_batch`]).
    batch_newest: HashMap<RequestId, u64>,
    pub summary: Summary,
}

impl<'a> Tree<'a> {
    pub fn new(root: &'a Path) -> Self {
        Tree {
            root,
            audit: HashMap::new(),
            note: None,
            pushed: None,
            batch_newest: HashMap::new(),
            summary: Summary::default(),
        }
    }

    /// The items of the batch about to be applied: a snapshot that a newer one of the same
    /// request in the batch supersedes is skipped rather than rendered and then overwritten.
    /// Snapshots are cumulative (each carries every finished cluster's report), so the newest
    /// writes everything the older ones would have; for a wide request that saves rendering
    /// and redacting every report once per snapshot.
    pub fn with_batch<'i>(mut self, items: impl IntoIterator<Item = &'i Item>) -> Self {
        for item in items {
            if let Item::Status(update) = item {
                let newest = self
                    .batch_newest
                    .entry(update.status.id.clone())
                    .or_default();
                *newest = (*newest).max(update.status.revision);
            }
        }
        self
    }

    /// The revisions this publisher pushed before, by request id (its own record): a
    /// snapshot older than that is skipped, whatever `status.json` in the tree says.
    pub fn with_pushed(mut self, pushed: &'a HashMap<RequestId, u64>) -> Self {
        self.pushed = Some(pushed);
        self
    }

    /// Puts `note` at the top of every report written.
    pub fn with_note(mut self, note: Option<&'a str>) -> Self {
        self.note = note;
        self
    }

    /// Writes one item.
    pub fn apply(&mut self, item: &Item) -> Result<Applied, Problem> {
        let result = match item {
            Item::Status(update) => self.status(update),
            Item::Event(event) => self.audit(event),
        };
        match result {
            Err(Problem::Refused(reason)) => Ok(Applied::Refused(reason)),
            other => other,
        }
    }

    fn status(&mut self, update: &StatusUpdate) -> Result<Applied, Problem> {
        let id = &update.status.id;
        let dir = update.status.results_dir.as_str();
        let folder = self.folder(dir)?;
        let status_path = folder.join(STATUS_FILE);
        // Whether a snapshot is older is decided from the publisher's own record, never from
        // the `status.json` in the tree, which anyone who can push could have written (a
        // planted high `revision` would otherwise freeze the request).
        let newest = self
            .pushed
            .and_then(|pushed| pushed.get(id.as_str()).copied())
            .into_iter()
            .chain(self.summary.revision_of(id))
            .max();
        if let Some(revision) = newest
            && revision > update.status.revision
        {
            return Ok(Applied::Skipped(format!(
                "revision {} is older than revision {revision} already pushed for {dir}",
                update.status.revision
            )));
        }
        if let Some(&revision) = self.batch_newest.get(id.as_str())
            && revision > update.status.revision
        {
            return Ok(Applied::Skipped(format!(
                "revision {} is superseded by revision {revision} in the same batch",
                update.status.revision
            )));
        }

        let mut status = update.status.clone();
        for (cluster, line) in status.clusters.iter_mut() {
            if update.reports.contains_key(cluster) {
                line.report = Some(render::report_file(cluster));
            }
        }
        let mut value = serde_json::to_value(&status)
            .map_err(|e| Problem::Refused(format!("the status cannot be encoded: {e}")))?;
        redact::json(&mut value);
        let mut json = serde_json::to_string_pretty(&value)
            .map_err(|e| Problem::Refused(format!("the status cannot be encoded: {e}")))?;
        json.push('\n');
        write_file(&status_path, json.as_bytes())?;
        // What redaction removed for a cluster is in its audit lines, which the stream
        // delivers before the status that carries the cluster's report.
        let audit_path = folder.join(AUDIT_FILE);
        for (cluster, report) in &update.reports {
            let path = folder.join(render::report_file(cluster));
            let note = self.note;
            let audit = self.audit_file(&audit_path)?;
            let removed = audit
                .redacted
                .get(cluster.as_str())
                .cloned()
                .unwrap_or_default();
            let rendered =
                render::cluster_report(&status, cluster, report, &removed, &audit.lines, note);
            write_file(&path, rendered.as_bytes())?;
        }
        let readme = render::readme(
            &status,
            update.request.as_ref(),
            &update.reports,
            update.synthesis.as_ref(),
            self.note,
        );
        write_file(&folder.join(README_FILE), readme.as_bytes())?;
        self.summary.entry(id).phase = Some(status.phase);
        self.summary
            .revisions
            .insert(id.clone(), update.status.revision);
        Ok(Applied::Written)
    }

    fn audit(&mut self, event: &AuditEvent) -> Result<Applied, Problem> {
        let dir = event.results_dir.as_str();
        let folder = self.folder(dir)?;
        // A follow-up's answer is a file of its own, not an audit line.
        if let (AuditKind::TurnAnswer { turn, .. }, Some(text)) =
            (&event.kind, render::turn_report(event, self.note))
        {
            let path = folder.join(warroom_proto::status::turn_file(*turn));
            write_file(&path, text.as_bytes())?;
            return Ok(Applied::Written);
        }
        let path = folder.join(AUDIT_FILE);
        let mut value = serde_json::to_value(event)
            .map_err(|e| Problem::Refused(format!("the event cannot be encoded: {e}")))?;
        // The runner redacted the event already; this pass is the last gate, and what it
        // still finds is added to the counts the line carries.
        let removed = redact::json(&mut value);
        let mut redacted = event.redacted.clone();
        for (kind, n) in removed.iter() {
            *redacted.entry(kind.to_owned()).or_default() += n;
        }
        if let Some(fields) = value.as_object_mut() {
            if redacted.is_empty() {
                fields.remove("redacted");
            } else {
                fields.insert("redacted".to_owned(), serde_json::json!(redacted));
            }
        }
        // The id as it is written, so that the comparison with the file is like for like.
        let id = value
            .get("id")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let file = self.audit_file(&path)?;
        if file.ids.contains(&id) {
            return Ok(Applied::Skipped(format!(
                "event `{id}` is already in {dir}/{AUDIT_FILE}"
            )));
        }
        let mut line = serde_json::to_string(&value)
            .map_err(|e| Problem::Refused(format!("the event cannot be encoded: {e}")))?;
        line.push('\n');
        if file.needs_newline {
            line.insert(0, '\n');
        }
        let mut handle = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        handle.write_all(line.as_bytes()).map_err(io(&path))?;
        file.needs_newline = false;
        file.line_count += 1;
        file.lines.insert(id.clone(), file.line_count);
        file.ids.insert(id);
        file.count(&value);
        self.summary.entry(&event.request_id).audit_lines += 1;
        Ok(Applied::Written)
    }

    /// The state of the `audit.jsonl` at `path`, read once per attempt.
    fn audit_file(&mut self, path: &Path) -> Result<&mut AuditFile, Problem> {
        if !self.audit.contains_key(path) {
            let file = load_audit(path)?;
            self.audit.insert(path.to_path_buf(), file);
        }
        self.audit
            .get_mut(path)
            .ok_or_else(|| Problem::Refused("the audit file vanished".to_owned()))
    }

    /// The folder `dir` (relative to the root), created as needed; refused when a part of it
    /// is a symlink or a file.
    fn folder(&self, dir: &str) -> Result<PathBuf, Problem> {
        let mut path = self.root.to_path_buf();
        for part in dir.split('/') {
            if part.is_empty() || part == "." || part == ".." {
                return Err(Problem::Refused(format!(
                    "`{dir}` is not a plain relative folder"
                )));
            }
            path.push(part);
            match std::fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    return Err(Problem::Refused(format!(
                        "`{}` in the repository is a symlink or a file, not a folder",
                        path.strip_prefix(self.root).unwrap_or(&path).display()
                    )));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    std::fs::create_dir(&path).map_err(io(&path))?;
                }
                Err(e) => return Err(io(&path)(e)),
            }
        }
        Ok(path)
    }
}

/// The contents of a regular file, `None` when there is none; refused for anything else.
fn read_file(path: &Path) -> Result<Option<Vec<u8>>, Problem> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_file() => std::fs::read(path).map(Some).map_err(io(path)),
        Ok(_) => Err(Problem::Refused(format!(
            "{} is a symlink or a folder, not a file",
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

/// Writes a regular file; refused when a symlink or a folder is in the way. A file that
/// already holds `contents` is left untouched, so that git finds it unchanged by its stat
/// data instead of hashing it again (a wide request's snapshots rewrite hundreds of reports
/// that did not change).
fn write_file(path: &Path, contents: &[u8]) -> Result<(), Problem> {
    check_writable(path)?;
    if read_file(path)?.is_some_and(|current| current == contents) {
        return Ok(());
    }
    std::fs::write(path, contents).map_err(io(path))
}

/// Whether `path` is a regular file or nothing.
fn check_writable(path: &Path) -> Result<(), Problem> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(_) => Err(Problem::Refused(format!(
            "{} is a symlink or a folder, not a file",
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(path)(e)),
    }
}

impl AuditFile {
    /// Adds the redaction counts of one written line (`redacted`, and `report_redacted` of a
    /// `finished` event) to its cluster's. Lines are read as JSON rather than as
    /// [`AuditEvent`]s, so a line an older version wrote still counts what it has.
    fn count(&mut self, line: &serde_json::Value) {
        let Some(cluster) = line.get("cluster").and_then(serde_json::Value::as_str) else {
            return;
        };
        for field in ["redacted", "report_redacted"] {
            let Some(counts) = line.get(field).and_then(serde_json::Value::as_object) else {
                continue;
            };
            for (kind, n) in counts {
                if let Some(n) = n.as_u64() {
                    *self
                        .redacted
                        .entry(cluster.to_owned())
                        .or_default()
                        .entry(kind.clone())
                        .or_default() += n;
                }
            }
        }
    }
}

fn load_audit(path: &Path) -> Result<AuditFile, Problem> {
    let bytes = read_file(path)?.unwrap_or_default();
    let mut file = AuditFile {
        ids: HashSet::new(),
        redacted: HashMap::new(),
        needs_newline: !bytes.is_empty() && !bytes.ends_with(b"\n"),
        lines: render::AuditLines::new(),
        line_count: 0,
    };
    for (n, line) in String::from_utf8_lossy(&bytes).lines().enumerate() {
        file.line_count = n + 1;
        let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if let Some(id) = value.get("id").and_then(serde_json::Value::as_str) {
            file.ids.insert(id.to_owned());
            file.lines.insert(id.to_owned(), n + 1);
        }
        file.count(&value);
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use warroom_proto::{
        AuditKind, ClusterPhase, ClusterReport, ClusterStatus, ClusterType, Inbound, RequestStatus,
        Subject,
    };

    use super::*;

    fn update(id: &str, dir: &str, revision: u64, phase: RequestPhase) -> StatusUpdate {
        let mut clusters = BTreeMap::new();
        clusters.insert(
            "hub".parse().unwrap(),
            ClusterStatus::new(ClusterType::Hub, ClusterPhase::Completed),
        );
        let mut reports = BTreeMap::new();
        reports.insert(
            "hub".parse().unwrap(),
            ClusterReport {
                structured: None,
                final_text: "all good".to_owned(),
                permission_denials: Vec::new(),
            },
        );
        StatusUpdate {
            status: RequestStatus {
                id: id.parse().unwrap(),
                phase,
                clusters,
                error: None,
                errors: Vec::new(),
                mode: None,
                engineer: None,
                results_dir: dir.parse().unwrap(),
                commit: None,
                revision,
                updated_at: warroom_proto::now(),
                verification: None,
                notices: Vec::new(),
                cancelled: None,
                synthesis: None,
                session: None,
                turns: Vec::new(),
            },
            request: None,
            reports,
            synthesis: None,
        }
    }

    fn event(id: &str, request: &str) -> AuditEvent {
        AuditEvent {
            id: id.to_owned(),
            request_id: request.parse().unwrap(),
            cluster: "hub".parse().unwrap(),
            results_dir: format!("results/custom/{request}").parse().unwrap(),
            at: warroom_proto::now(),
            attempt: 1,
            turn: 0,
            kind: AuditKind::ToolResult {
                tool_use_id: "t".to_owned(),
                is_error: false,
                output: "token=abc123".to_owned(),
            },
            redacted: Redacted::new(),
        }
    }

    fn item(update: StatusUpdate) -> Item {
        Item::Status(Box::new(update))
    }

    fn decode(
        subject: Subject,
        json: &serde_json::Value,
    ) -> Result<Item, warroom_proto::Undecodable> {
        Item::decode(&subject, json.to_string().as_bytes())
    }

    fn status_of(id: &str) -> Subject {
        Subject::Status(id.parse().unwrap())
    }

    fn events_of(id: &str, cluster: &str) -> Subject {
        Subject::Event(id.parse().unwrap(), cluster.parse().unwrap())
    }

    #[test]
    fn names_that_would_leave_results_are_refused_before_they_reach_the_tree() {
        let good =
            serde_json::to_value(update("r1", "results/r1", 1, RequestPhase::Running)).unwrap();
        assert!(decode(status_of("r1"), &good).is_ok());
        let mut bad = good.clone();
        bad["status"]["results_dir"] = serde_json::json!("../x");
        assert!(decode(status_of("r1"), &bad).is_err());
        let mut bad = good.clone();
        bad["status"]["results_dir"] = serde_json::json!("results/r2");
        assert!(decode(status_of("r1"), &bad).is_err());
        let mut bad = good.clone();
        bad["reports"]["../../etc/passwd"] = serde_json::json!({"final_text": ""});
        assert!(decode(status_of("r1"), &bad).is_err());
        assert!(decode(status_of("r2"), &good).is_err());
        let e = serde_json::to_value(event("e1", "r1")).unwrap();
        assert!(decode(events_of("r1", "hub"), &e).is_ok());
        assert!(decode(events_of("r1", "other"), &e).is_err());
    }

    #[test]
    fn a_snapshot_superseded_in_its_batch_is_not_rendered_and_nothing_is_lost() {
        let root = tempfile::tempdir().unwrap();
        let older = update("r1", "results/r1", 2, RequestPhase::Running);
        let mut newer = update("r1", "results/r1", 3, RequestPhase::Completed);
        newer.status.clusters.insert(
            "prod-1".parse().unwrap(),
            ClusterStatus::new(ClusterType::Hosted, ClusterPhase::Completed),
        );
        newer.reports.insert(
            "prod-1".parse().unwrap(),
            ClusterReport {
                structured: None,
                final_text: "prod-1 is fine".to_owned(),
                permission_denials: Vec::new(),
            },
        );
        let batch = [item(older), item(newer)];
        let mut tree = Tree::new(root.path()).with_batch(&batch);
        match tree.apply(&batch[0]).unwrap() {
            Applied::Skipped(reason) => assert!(
                reason.contains("superseded by revision 3 in the same batch"),
                "{reason}"
            ),
            other => panic!("the older snapshot was {other:?}"),
        }
        assert_eq!(tree.apply(&batch[1]).unwrap(), Applied::Written);

        let folder = root.path().join("results/r1");
        let status: serde_json::Value =
            serde_json::from_slice(&std::fs::read(folder.join("status.json")).unwrap()).unwrap();
        assert_eq!(status["revision"], 3);
        for report in ["hub.md", "prod-1.md"] {
            assert!(folder.join(report).is_file(), "{report} is missing");
        }
    }

    #[test]
    fn older_snapshots_and_repeated_events_write_nothing() {
        let root = tempfile::tempdir().unwrap();
        let mut tree = Tree::new(root.path());
        assert_eq!(
            tree.apply(&item(update(
                "r1",
                "results/custom/r1",
                5,
                RequestPhase::Completed
            )))
            .unwrap(),
            Applied::Written
        );
        assert!(matches!(
            tree.apply(&item(update(
                "r1",
                "results/custom/r1",
                4,
                RequestPhase::Running
            )))
            .unwrap(),
            Applied::Skipped(_)
        ));
        let e = Item::Event(Box::new(event("e1", "r1")));
        assert_eq!(tree.apply(&e).unwrap(), Applied::Written);
        assert!(matches!(tree.apply(&e).unwrap(), Applied::Skipped(_)));
        assert_eq!(
            tree.summary.commit_message(),
            "results: r1 completed, 1 audit event"
        );

        let folder = root.path().join("results/custom/r1");
        let status: serde_json::Value =
            serde_json::from_slice(&std::fs::read(folder.join("status.json")).unwrap()).unwrap();
        assert_eq!(status["revision"], 5);
        assert_eq!(status["clusters"]["hub"]["report"], "hub.md");
        let audit = std::fs::read_to_string(folder.join("audit.jsonl")).unwrap();
        assert_eq!(audit.lines().count(), 1);
        assert!(audit.contains("token=[REDACTED:token]"), "{audit}");
        assert!(
            std::fs::read_to_string(folder.join("hub.md"))
                .unwrap()
                .contains("all good")
        );

        // A new attempt (fresh tree state) still knows the ids from the file; the event
        // carries its folder, so no map of folders is needed after a restart.
        let mut tree = Tree::new(root.path());
        assert!(matches!(tree.apply(&e).unwrap(), Applied::Skipped(_)));
    }

    #[test]
    fn redaction_counts_are_kept_per_line_and_summed_into_the_cluster_report() {
        let root = tempfile::tempdir().unwrap();
        let mut tree = Tree::new(root.path());
        // The runner removed a JWT; the publisher's pass still finds the token.
        let mut first = event("e1", "r1");
        first.redacted = Redacted::from([("jwt".to_owned(), 1)]);
        let mut finished = event("e2", "r1");
        finished.kind = AuditKind::Finished {
            outcome: warroom_proto::Outcome::Completed,
            error: None,
            report_redacted: Redacted::from([("password".to_owned(), 2)]),
        };
        for e in [first, finished] {
            assert_eq!(
                tree.apply(&Item::Event(Box::new(e))).unwrap(),
                Applied::Written
            );
        }
        let folder = root.path().join("results/custom/r1");
        let audit = std::fs::read_to_string(folder.join("audit.jsonl")).unwrap();
        let line: serde_json::Value = serde_json::from_str(audit.lines().next().unwrap()).unwrap();
        assert_eq!(line["redacted"], serde_json::json!({"jwt": 1, "token": 1}));

        // A fresh attempt reads the counts back from the file.
        let mut tree = Tree::new(root.path());
        tree.apply(&item(update(
            "r1",
            "results/custom/r1",
            1,
            RequestPhase::Completed,
        )))
        .unwrap();
        let report = std::fs::read_to_string(folder.join("hub.md")).unwrap();
        assert!(report.contains("| Redacted values | 4 |"), "{report}");
    }

    #[test]
    fn a_planted_status_freezes_nothing_but_a_pushed_revision_holds() {
        let root = tempfile::tempdir().unwrap();
        let folder = root.path().join("results/r1");
        std::fs::create_dir_all(&folder).unwrap();
        // Someone who can push committed a status with a huge revision.
        std::fs::write(
            folder.join("status.json"),
            r#"{"id":"r1","phase":"completed","revision":1000000}"#,
        )
        .unwrap();
        let mut tree = Tree::new(root.path());
        assert_eq!(
            tree.apply(&item(update("r1", "results/r1", 2, RequestPhase::Running)))
                .unwrap(),
            Applied::Written
        );
        let status = std::fs::read_to_string(folder.join("status.json")).unwrap();
        assert!(status.contains("\"revision\": 2"), "{status}");

        // What this publisher pushed before (its own record) still wins over an older
        // snapshot redelivered after a restart.
        let pushed = HashMap::from([(RequestId::new("r1").unwrap(), 7_u64)]);
        let mut tree = Tree::new(root.path()).with_pushed(&pushed);
        assert!(matches!(
            tree.apply(&item(update("r1", "results/r1", 6, RequestPhase::Running)))
                .unwrap(),
            Applied::Skipped(_)
        ));
        assert_eq!(
            tree.apply(&item(update(
                "r1",
                "results/r1",
                8,
                RequestPhase::Completed
            )))
            .unwrap(),
            Applied::Written
        );
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_in_the_tree_are_never_followed() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("results")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("results/r1")).unwrap();
        let mut tree = Tree::new(root.path());
        let applied = tree
            .apply(&item(update("r1", "results/r1", 1, RequestPhase::Running)))
            .unwrap();
        assert!(matches!(applied, Applied::Refused(_)), "{applied:?}");
        assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
    }

    #[test]
    fn a_file_in_the_way_refuses_only_its_own_messages() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("results")).unwrap();
        std::fs::write(root.path().join("results/r-blocked"), "not a folder").unwrap();
        let mut blocked_event = event("e1", "r-blocked");
        blocked_event.results_dir = "results/r-blocked".parse().unwrap();
        let items = vec![
            (
                0,
                item(update(
                    "r-blocked",
                    "results/r-blocked",
                    1,
                    RequestPhase::Running,
                )),
            ),
            (
                1,
                item(update("r-ok", "results/r-ok", 1, RequestPhase::Running)),
            ),
            (2, Item::Event(Box::new(blocked_event))),
        ];
        let (summary, settled) = crate::apply_all(root.path(), &items, None, &HashMap::new());
        assert_eq!(summary.written, 1);
        assert!(settled.retry.is_empty(), "{settled:?}");
        let mut refused: Vec<usize> = settled.refused.keys().copied().collect();
        refused.sort_unstable();
        assert_eq!(refused, [0, 2]);
        assert!(
            settled.refused[&0].contains("results/r-blocked"),
            "{settled:?}"
        );
        assert!(root.path().join("results/r-ok/status.json").is_file());
    }

    #[test]
    fn file_system_errors_that_repeat_are_permanent() {
        use nix::errno::Errno;
        // The names the contract lets through (a request id of 128 characters, at most 3
        // folders of 63) stay far below NAME_MAX and PATH_MAX, so no message can make the
        // file system answer ENAMETOOLONG any more; the classification is checked here on
        // the errors themselves.
        for permanent in [
            Errno::ENAMETOOLONG,
            Errno::ENOTDIR,
            Errno::EISDIR,
            Errno::ELOOP,
        ] {
            let error = std::io::Error::from_raw_os_error(permanent as i32);
            assert!(
                crate::is_permanent(&error),
                "{permanent} counted as passing"
            );
        }
        for transient in [Errno::ENOSPC, Errno::EACCES, Errno::EIO, Errno::EMFILE] {
            let error = std::io::Error::from_raw_os_error(transient as i32);
            assert!(
                !crate::is_permanent(&error),
                "{transient} counted as permanent"
            );
        }
    }
}
