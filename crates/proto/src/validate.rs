//! Parsing and validation of request files, with every problem reported at once.
//!
//! A request file is checked in two passes. The first reads the bytes as one YAML document
//! (size limit, UTF-8, a single document, no alias-expansion bombs). The second walks the
//! YAML tree and checks every field against the contract, collecting each problem with its
//! field path (`spec.investigation.timeout`) and what was expected, instead of stopping at
//! the first one the way serde's derive does. Only a file without problems is turned into
//! the typed [`TroubleshootingRequest`].

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_yaml_ng::{Mapping, Value};

use crate::ids::{ClusterName, RequestId, ResultsDir};
use crate::request::{
    ClusterRef, ClusterType, CoordinationMode, MAX_TIMEOUT_SECS, MIN_TIMEOUT_SECS, Tool,
    TroubleshootingRequest,
};
use crate::session::{MAX_SESSION_SECS, SessionRequest};
use crate::walk::{Walk, describe, join, one_of, suggestion};
use crate::{API_VERSION, KIND_SESSION, KIND_TROUBLESHOOTING};

/// Largest request file accepted, in bytes.
pub const MAX_FILE_BYTES: usize = 64 * 1024;
/// Most clusters one request may target: enough for "every hosted cluster of a hub"; the
/// dispatcher's status snapshot and the README layout are checked at this size.
pub const MAX_CLUSTERS: usize = 500;
/// Longest `metadata.name`, `metadata.engineer` and `spec.issue.category`.
pub const MAX_NAME_LEN: usize = 253;
/// Longest `spec.issue.description`.
pub const MAX_DESCRIPTION_LEN: usize = 8 * 1024;
/// Longest `spec.investigation.prompt`.
pub const MAX_PROMPT_LEN: usize = 32 * 1024;
/// Most entries of `spec.issue.affectedResources`.
pub const MAX_AFFECTED_RESOURCES: usize = 64;
/// Longest `spec.output.destination`.
pub const MAX_DESTINATION_LEN: usize = 512;
/// Longest Kubernetes namespace name.
pub const MAX_NAMESPACE_LEN: usize = 63;

/// One problem in a request file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// The field, as a path from the document root (`spec.targetClusters[1].name`); empty
    /// for a problem with the file as a whole.
    pub field: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// Every problem found in one file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors {
    /// The file, as it was named to the parser.
    pub file: String,
    pub errors: Vec<FieldError>,
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{}: {error}", self.file)?;
        }
        Ok(())
    }
}

impl ValidationErrors {
    /// One line that sums the errors up, for `status.json`'s `error`.
    pub fn summary(&self) -> String {
        let first = self
            .errors
            .first()
            .map(ToString::to_string)
            .unwrap_or_default();
        match self.errors.len() {
            0 | 1 => format!("invalid request {}: {first}", self.file),
            n => format!(
                "invalid request {}: {first} (and {} more)",
                self.file,
                n - 1
            ),
        }
    }
}

/// A request file that passed validation, with what follows from it.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedRequest {
    /// The file stem.
    pub id: RequestId,
    pub request: TroubleshootingRequest,
    /// The target clusters, in order (one for `targetCluster`).
    pub clusters: Vec<ClusterRef>,
    /// `Some` for `targetClusters`.
    pub mode: Option<CoordinationMode>,
    /// The repository folder for the results, without a trailing `/`: `results/<id>` or the
    /// resolved `spec.output.destination`.
    pub results_dir: ResultsDir,
    /// Set when the file was a `SessionRequest`: what keeps its conversation open.
    pub session: Option<crate::wire::SessionTerms>,
}

/// A session request file that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedSession {
    pub id: RequestId,
    pub request: SessionRequest,
}

/// How long each run of a session (its first question, then each follow-up) may take, at
/// most: half an hour, or the session's whole duration when that is shorter.
pub const SESSION_TURN_TIMEOUT_SECS: u64 = 30 * 60;

/// The tools a session's runs get: the read-only ones.
pub const SESSION_TOOLS: [Tool; 4] = [Tool::Bash, Tool::Read, Tool::Grep, Tool::Glob];

impl ValidatedSession {
    /// The session as the investigation of its one cluster that the secure zone runs: its
    /// first question (or a placeholder that never runs), read-only tools, each run bounded
    /// by [`SESSION_TURN_TIMEOUT_SECS`]; and the terms that keep its conversation open.
    pub fn as_request(&self) -> (ValidatedRequest, crate::wire::SessionTerms) {
        let spec = &self.request.spec;
        let prompt = spec.prompt.clone().filter(|p| !p.trim().is_empty());
        let request = TroubleshootingRequest {
            api_version: self.request.api_version.clone(),
            kind: crate::KIND_SESSION.to_owned(),
            metadata: self.request.metadata.clone(),
            spec: crate::request::RequestSpec {
                target_cluster: Some(spec.target_cluster.clone()),
                target_clusters: None,
                coordination: None,
                issue: crate::request::Issue {
                    category: "session".to_owned(),
                    description: spec
                        .purpose
                        .clone()
                        .filter(|p| !p.trim().is_empty())
                        .unwrap_or_else(|| "A troubleshooting session.".to_owned()),
                    affected_resources: Vec::new(),
                },
                investigation: crate::request::Investigation {
                    prompt: prompt.clone().unwrap_or_else(|| {
                        "(The session opened without a first question.)".to_owned()
                    }),
                    allowed_tools: SESSION_TOOLS.to_vec(),
                    timeout: SESSION_TURN_TIMEOUT_SECS
                        .min(spec.duration)
                        .max(MIN_TIMEOUT_SECS),
                    strategy: None,
                    namespace: spec.namespace.clone(),
                },
                output: None,
            },
        };
        let terms = crate::wire::SessionTerms {
            duration_secs: spec.duration,
            opening_prompt: prompt.is_some(),
            exec: spec.exec,
            budget_usd: None,
        };
        (
            ValidatedRequest {
                id: self.id.clone(),
                clusters: vec![spec.target_cluster.clone()],
                mode: None,
                results_dir: ResultsDir::default_for(&self.id),
                request,
                session: Some(terms.clone()),
            },
            terms,
        )
    }
}

/// Any request file.
#[derive(Debug, Clone, PartialEq)]
pub enum Document {
    Troubleshooting(Box<ValidatedRequest>),
    Session(Box<ValidatedSession>),
}

/// Parses and validates a request file: a `TroubleshootingRequest`, or a `SessionRequest`
/// as the investigation the secure zone runs of it ([`ValidatedSession::as_request`], with
/// `session` set). `path` names the file in errors and gives the request id (its stem).
pub fn parse_request(path: &Path, bytes: &[u8]) -> Result<ValidatedRequest, ValidationErrors> {
    match parse_document(path, bytes)? {
        Document::Troubleshooting(request) => Ok(*request),
        Document::Session(session) => {
            let (request, _) = session.as_request();
            Ok(request)
        }
    }
}

/// Parses and validates a request file of either kind.
pub fn parse_document(path: &Path, bytes: &[u8]) -> Result<Document, ValidationErrors> {
    let fail = |errors: Vec<FieldError>| ValidationErrors {
        file: path.display().to_string(),
        errors,
    };
    let mut check = Check::default();
    let id = request_id(path, &mut check);
    let file = crate::walk::OneDocument {
        max_bytes: MAX_FILE_BYTES,
        limited: "request files",
        holds: "one request per file",
    };
    let value = crate::walk::read_one_document(bytes, file).map_err(|message| {
        let mut errors = std::mem::take(&mut check.errors);
        errors.push(FieldError {
            field: String::new(),
            message: message.0,
        });
        fail(errors)
    })?;
    let Some(root) = check.mapping(&value, "", &["apiVersion", "kind", "metadata", "spec"]) else {
        return Err(fail(check.errors));
    };
    let kind = check.header(root);
    let document = if kind == Some(KIND_SESSION) {
        check.session_document(root, id)
    } else {
        check.troubleshooting_document(root, id)
    };
    // Only a file with no problems at all becomes a typed request.
    let document = document.ok_or_else(|| fail(std::mem::take(&mut check.errors)))?;
    document.typed(&check, value).map_err(|e| fail(vec![e]))
}

/// What the walk found in a file without problems, before the typed request is built.
enum Walked {
    Session {
        id: RequestId,
    },
    Troubleshooting {
        id: RequestId,
        clusters: Vec<ClusterRef>,
        mode: Option<CoordinationMode>,
        results_dir: Option<ResultsDir>,
    },
}

impl Walked {
    /// The typed document, from the YAML the walk accepted.
    fn typed(self, check: &Check, value: Value) -> Result<Document, FieldError> {
        Ok(match self {
            Walked::Session { id } => Document::Session(Box::new(ValidatedSession {
                id,
                request: check.typed(value)?,
            })),
            Walked::Troubleshooting {
                id,
                clusters,
                mode,
                results_dir,
            } => Document::Troubleshooting(Box::new(ValidatedRequest {
                results_dir: results_dir.unwrap_or_else(|| ResultsDir::default_for(&id)),
                request: check.typed(value)?,
                id,
                clusters,
                mode,
                session: None,
            })),
        })
    }
}

/// The error for a file without a usable id; only reached when the walk found nothing else
/// wrong, which cannot happen because a bad id is itself an error.
fn no_id() -> FieldError {
    FieldError {
        field: String::new(),
        message: "the file name gives no request id".to_owned(),
    }
}

/// The request id from the file name.
pub(crate) fn request_id(path: &Path, check: &mut Check) -> Option<RequestId> {
    let stem = path.file_stem().and_then(|s| s.to_str());
    let extension = path.extension().and_then(|s| s.to_str());
    if !matches!(extension, Some("yaml" | "yml")) {
        check.error(
            "",
            "the file name must end in `.yaml` or `.yml` (its stem is the request id)",
        );
    }
    match stem {
        Some(stem) => match RequestId::new(stem) {
            Ok(id) => Some(id),
            Err(e) => {
                check.error(
                    "",
                    format!("the request id (file name stem) `{}` {}", e.value, e.reason),
                );
                None
            }
        },
        None => {
            check.error("", "the file name has no stem to use as the request id");
            None
        }
    }
}

/// The walk over a request file: the shared [`Walk`] with the request's own checks.
type Check = Walk;

impl Check {
    /// `apiVersion`, `kind` and `metadata`, the same for every kind; returns the kind.
    fn header<'v>(&mut self, root: &'v Mapping) -> Option<&'v str> {
        match self.string(root, "", "apiVersion", true) {
            Some(API_VERSION) | None => {}
            Some(other) => self.error(
                "apiVersion",
                format!("unknown apiVersion `{other}`; expected `{API_VERSION}`"),
            ),
        }
        let kind = self.string(root, "", "kind", true);
        match kind {
            Some(KIND_TROUBLESHOOTING) | Some(KIND_SESSION) | None => {}
            Some(other) => self.error(
                "kind",
                format!(
                    "unknown kind `{other}`; expected `{KIND_TROUBLESHOOTING}` or `{KIND_SESSION}`"
                ),
            ),
        }
        if let Some(metadata) =
            self.child_mapping(root, "", "metadata", &["name", "timestamp", "engineer"])
        {
            self.metadata(metadata);
        }
        kind
    }

    /// The `spec` of a `SessionRequest`; `None` when anything in the file is wrong.
    fn session_document(&mut self, root: &Mapping, id: Option<RequestId>) -> Option<Walked> {
        if let Some(spec) = self.child_mapping(
            root,
            "",
            "spec",
            &[
                "targetCluster",
                "duration",
                "purpose",
                "namespace",
                "prompt",
                "exec",
            ],
        ) {
            self.session_spec(spec);
        }
        self.finished(id).map(|id| Walked::Session { id })
    }

    /// The `spec` of a `TroubleshootingRequest`; `None` when anything in the file is wrong.
    fn troubleshooting_document(
        &mut self,
        root: &Mapping,
        id: Option<RequestId>,
    ) -> Option<Walked> {
        let mut results_dir = None;
        let mut clusters = Vec::new();
        let mut mode = None;
        if let Some(spec) = self.child_mapping(
            root,
            "",
            "spec",
            &[
                "targetCluster",
                "targetClusters",
                "coordination",
                "issue",
                "investigation",
                "output",
            ],
        ) {
            (clusters, mode) = self.targets(spec);
            if let Some(issue) = self.child_mapping(
                spec,
                "spec",
                "issue",
                &["category", "description", "affectedResources"],
            ) {
                self.issue(issue);
            }
            if let Some(investigation) = self.child_mapping(
                spec,
                "spec",
                "investigation",
                &["prompt", "allowedTools", "timeout", "strategy", "namespace"],
            ) {
                self.investigation(investigation);
            }
            results_dir = self.output(spec, id.as_ref());
        }
        self.finished(id).map(|id| Walked::Troubleshooting {
            id,
            clusters,
            mode,
            results_dir,
        })
    }

    /// The id, when the walk found no problem (a bad id is itself a problem).
    fn finished(&mut self, id: Option<RequestId>) -> Option<RequestId> {
        if !self.errors.is_empty() {
            return None;
        }
        if id.is_none() {
            self.errors.push(no_id());
        }
        id
    }

    /// `spec.issue`.
    fn issue(&mut self, issue: &Mapping) {
        self.limited(issue, "spec.issue", "category", true, MAX_NAME_LEN);
        self.limited(
            issue,
            "spec.issue",
            "description",
            true,
            MAX_DESCRIPTION_LEN,
        );
        let affected = self.string_list(issue, "spec.issue", "affectedResources");
        if affected.len() > MAX_AFFECTED_RESOURCES {
            self.error(
                "spec.issue.affectedResources",
                format!(
                    "lists {} resources; at most {MAX_AFFECTED_RESOURCES} are allowed",
                    affected.len()
                ),
            );
        }
        for (i, resource) in affected.iter().enumerate() {
            if resource.len() > MAX_NAME_LEN {
                self.error(
                    &format!("spec.issue.affectedResources[{i}]"),
                    format!(
                        "is {} bytes long; at most {MAX_NAME_LEN} are allowed",
                        resource.len()
                    ),
                );
            }
        }
    }

    fn child_mapping<'v>(
        &mut self,
        map: &'v Mapping,
        path: &str,
        key: &str,
        known: &[&str],
    ) -> Option<&'v Mapping> {
        let value = self.field(map, path, key, true)?;
        self.mapping(value, &join(path, key), known)
    }

    /// A non-empty string field of at most `max` bytes.
    fn limited<'v>(
        &mut self,
        map: &'v Mapping,
        path: &str,
        key: &str,
        required: bool,
        max: usize,
    ) -> Option<&'v str> {
        let value = self.string(map, path, key, required)?;
        if value.len() > max {
            self.error(
                &join(path, key),
                format!("is {} bytes long; at most {max} are allowed", value.len()),
            );
            return None;
        }
        Some(value)
    }

    /// An optional list of non-empty strings.
    fn string_list<'v>(&mut self, map: &'v Mapping, path: &str, key: &str) -> Vec<&'v str> {
        let field = join(path, key);
        match self.field(map, path, key, false) {
            None => Vec::new(),
            Some(Value::Sequence(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| self.string_value(item, &format!("{field}[{i}]")))
                .collect(),
            Some(other) => {
                self.error(
                    &field,
                    format!("expected a list of strings, found {}", describe(other)),
                );
                Vec::new()
            }
        }
    }

    /// A whole number within a range.
    fn number(
        &mut self,
        map: &Mapping,
        path: &str,
        key: &str,
        min: u64,
        max: u64,
        unit: &str,
    ) -> Option<u64> {
        let field = join(path, key);
        let value = self.field(map, path, key, true)?;
        let expected = format!("expected a whole number of {unit} from {min} to {max}");
        match value.as_u64() {
            Some(n) if (min..=max).contains(&n) => Some(n),
            Some(n) => {
                self.error(&field, format!("{n} is out of range; {expected}"));
                None
            }
            None => {
                let found = match value {
                    Value::Number(n) => format!("`{n}`"),
                    other => describe(other).to_owned(),
                };
                self.error(&field, format!("{expected}, found {found}"));
                None
            }
        }
    }

    /// A field that must be a safe token (a cluster name).
    fn token(
        &mut self,
        map: &Mapping,
        path: &str,
        key: &str,
        required: bool,
        what: &str,
    ) -> Option<ClusterName> {
        let value = self.string(map, path, key, required)?;
        match ClusterName::new(value) {
            Ok(name) => Some(name),
            Err(e) => {
                self.error(
                    &join(path, key),
                    format!("{what} `{}` {}", e.value, e.reason),
                );
                None
            }
        }
    }

    fn metadata(&mut self, metadata: &Mapping) {
        self.limited(metadata, "metadata", "name", true, MAX_NAME_LEN);
        self.limited(metadata, "metadata", "engineer", true, MAX_NAME_LEN);
        if let Some(timestamp) = self.string(metadata, "metadata", "timestamp", true)
            && time::OffsetDateTime::parse(
                timestamp,
                &time::format_description::well_known::Rfc3339,
            )
            .is_err()
        {
            self.error(
                "metadata.timestamp",
                format!(
                    "`{timestamp}` is not an RFC 3339 time; expected e.g. `2024-01-15T14:30:00Z`"
                ),
            );
        }
    }

    fn cluster(&mut self, value: &Value, path: &str) -> Option<ClusterRef> {
        let map = self.mapping(value, path, &["type", "name"])?;
        let kind = match self.string(map, path, "type", true) {
            Some("hub") => Some(ClusterType::Hub),
            Some("hosted") => Some(ClusterType::Hosted),
            Some(other) => {
                self.error(
                    &join(path, "type"),
                    format!("unknown cluster type `{other}`; expected `hub` or `hosted`"),
                );
                None
            }
            None => None,
        };
        let name = self.token(map, path, "name", true, "cluster name");
        Some(ClusterRef {
            kind: kind?,
            name: name?,
        })
    }

    fn targets(&mut self, spec: &Mapping) -> (Vec<ClusterRef>, Option<CoordinationMode>) {
        let single = self.field(spec, "spec", "targetCluster", false);
        let several = self.field(spec, "spec", "targetClusters", false);
        let coordination = self.field(spec, "spec", "coordination", false);
        let mode = coordination.and_then(|value| {
            let map = self.mapping(value, "spec.coordination", &["mode"])?;
            match self.string(map, "spec.coordination", "mode", true)? {
                "sequential" => Some(CoordinationMode::Sequential),
                "parallel" => Some(CoordinationMode::Parallel),
                other => {
                    self.error(
                        "spec.coordination.mode",
                        format!("unknown mode `{other}`; expected `sequential` or `parallel`"),
                    );
                    None
                }
            }
        });
        match (single, several) {
            (Some(_), Some(_)) => {
                self.error("spec.targetClusters", "give either `targetCluster` (one cluster) or `targetClusters` (several), not both");
                (Vec::new(), None)
            }
            (None, None) => {
                self.error(
                    "spec.targetCluster",
                    "is required (or `spec.targetClusters` to investigate several clusters)",
                );
                (Vec::new(), None)
            }
            (Some(single), None) => {
                if coordination.is_some() {
                    self.error("spec.coordination", "only applies to `targetClusters`; remove it or list the clusters under `targetClusters`");
                }
                (
                    self.cluster(single, "spec.targetCluster")
                        .into_iter()
                        .collect(),
                    None,
                )
            }
            (None, Some(several)) => {
                let Value::Sequence(items) = several else {
                    self.error(
                        "spec.targetClusters",
                        format!("expected a list of clusters, found {}", describe(several)),
                    );
                    return (Vec::new(), mode);
                };
                if items.is_empty() {
                    self.error("spec.targetClusters", "must list at least one cluster");
                }
                if items.len() > MAX_CLUSTERS {
                    self.error(
                        "spec.targetClusters",
                        format!(
                            "lists {} clusters; at most {MAX_CLUSTERS} are allowed",
                            items.len()
                        ),
                    );
                }
                if coordination.is_none() {
                    self.error(
                        "spec.coordination.mode",
                        "is required with `targetClusters`; expected `sequential` or `parallel`",
                    );
                }
                let mut clusters: Vec<ClusterRef> = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let path = format!("spec.targetClusters[{i}]");
                    if let Some(cluster) = self.cluster(item, &path) {
                        if clusters.iter().any(|c| c.name == cluster.name) {
                            self.error(
                                &join(&path, "name"),
                                format!("cluster `{}` is listed twice", cluster.name),
                            );
                        } else {
                            clusters.push(cluster);
                        }
                    }
                }
                (clusters, mode)
            }
        }
    }

    fn investigation(&mut self, map: &Mapping) {
        let path = "spec.investigation";
        self.limited(map, path, "prompt", true, MAX_PROMPT_LEN);
        self.number(
            map,
            path,
            "timeout",
            MIN_TIMEOUT_SECS,
            MAX_TIMEOUT_SECS,
            "seconds",
        );
        self.strategy(map, path);
        if let Some(namespace) = self.string(map, path, "namespace", false) {
            let valid = namespace.len() <= MAX_NAMESPACE_LEN
                && namespace
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !namespace.starts_with('-')
                && !namespace.ends_with('-');
            if !valid {
                self.error(
                    "spec.investigation.namespace",
                    format!("`{namespace}` is not a Kubernetes namespace name; expected at most 63 lowercase letters, digits and `-`"),
                );
            }
        }
        let field = "spec.investigation.allowedTools";
        let known: Vec<&str> = Tool::ALL.iter().map(|t| t.as_str()).collect();
        match self.field(map, path, "allowedTools", true) {
            None => {}
            Some(Value::Sequence(items)) if items.is_empty() => {
                self.error(
                    field,
                    format!(
                        "must list at least one tool; expected some of: {}",
                        one_of(&known)
                    ),
                );
            }
            Some(Value::Sequence(items)) => {
                for (i, item) in items.iter().enumerate() {
                    self.tool(item, &format!("{field}[{i}]"));
                }
            }
            Some(other) => self.error(
                field,
                format!("expected a list of tools, found {}", describe(other)),
            ),
        }
    }

    /// `spec.investigation.strategy`, when given, names a runbook; an unknown name is
    /// reported with the closest known one and the whole list.
    fn strategy(&mut self, map: &Mapping, path: &str) {
        let Some(name) = self.string(map, path, "strategy", false) else {
            return;
        };
        if crate::strategy::find(name).is_some() {
            return;
        }
        let known = crate::strategy::names();
        let hint = match suggestion(name, &known) {
            Some(s) => format!(" (did you mean `{s}`?)"),
            None => String::new(),
        };
        self.error(
            &join(path, "strategy"),
            format!(
                "unknown strategy `{name}`{hint}; expected one of: {}",
                one_of(&known)
            ),
        );
    }

    /// Checks `spec.output` and returns the resolved destination, if one is given.
    fn output(&mut self, spec: &Mapping, id: Option<&RequestId>) -> Option<ResultsDir> {
        let value = self.field(spec, "spec", "output", false)?;
        let map = self.mapping(value, "spec.output", &["format", "destination"])?;
        match self.string(map, "spec.output", "format", false) {
            None | Some("markdown") => {}
            Some(other) => self.error(
                "spec.output.format",
                format!("unknown format `{other}`; expected `markdown`"),
            ),
        }
        let destination = self.limited(
            map,
            "spec.output",
            "destination",
            false,
            MAX_DESTINATION_LEN,
        )?;
        match ResultsDir::resolve(destination, id?) {
            Ok(dir) => Some(dir),
            Err(message) => {
                self.error("spec.output.destination", message.0);
                None
            }
        }
    }

    fn session_spec(&mut self, spec: &Mapping) {
        if let Some(cluster) = self.field(spec, "spec", "targetCluster", true) {
            self.cluster(cluster, "spec.targetCluster");
        }
        self.number(spec, "spec", "duration", 60, MAX_SESSION_SECS, "seconds");
        self.string(spec, "spec", "purpose", false);
        self.string(spec, "spec", "namespace", false);
        if spec.contains_key("prompt") {
            self.limited(spec, "spec", "prompt", true, MAX_PROMPT_LEN);
        }
        if let Some(exec) = spec.get("exec")
            && !exec.is_bool()
        {
            self.error("spec.exec", "expected `true` or `false`");
        }
    }

    /// The typed request, once the walk found nothing wrong. A failure here means the walk
    /// and the types disagree, which the tests guard against.
    fn typed<T: serde::de::DeserializeOwned>(&self, value: Value) -> Result<T, FieldError> {
        serde_yaml_ng::from_value(value).map_err(|e| FieldError {
            field: String::new(),
            message: format!("the request does not match the contract: {e}"),
        })
    }
}
