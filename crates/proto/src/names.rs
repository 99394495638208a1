//! NATS stream, subject, consumer and key-value bucket names, and the rules for the tokens
//! (request ids, cluster names) that become part of a subject.
//!
//! Only this module spells a subject. A request id or a cluster name is placed into a
//! subject only after [`check_token`] accepted it, so no request can widen a subscription
//! with `*` or `>` or split a token with `.`.

/// Accepted requests, kept for audit: `warroom.requests.<request>`.
pub const REQUESTS_STREAM: &str = "WARROOM_REQUESTS";
/// Per-cluster tasks, work-queue retention: `warroom.tasks.<cluster>`.
pub const TASKS_STREAM: &str = "WARROOM_TASKS";
/// Runner reports (started, finished) for the dispatcher: `warroom.results.<request>.<cluster>`.
pub const RESULTS_STREAM: &str = "WARROOM_RESULTS";
/// Everything the publisher writes to git, in one stream so that one consumer sees it in the
/// order it happened: audit events (`warroom.events.<request>.<cluster>`) and request status
/// snapshots (`warroom.status.<request>`). A terminal status is published only after the
/// runner's last event was stored, so the publisher never writes a final status before the
/// audit lines that led to it.
pub const EVENTS_STREAM: &str = "WARROOM_EVENTS";

/// Dispatcher state, one key per request id, updated with compare-and-set.
pub const REQUESTS_BUCKET: &str = "warroom-requests";
/// Gateway cursor: the last commit whose added request files were all published.
pub const GATEWAY_BUCKET: &str = "warroom-gateway";

/// The durable consumer of the dispatcher on [`REQUESTS_STREAM`].
pub const DISPATCHER_REQUESTS_CONSUMER: &str = "dispatcher-requests";
/// The durable consumer of the dispatcher on [`RESULTS_STREAM`].
pub const DISPATCHER_RESULTS_CONSUMER: &str = "dispatcher-results";
/// The durable consumer of the publisher on [`EVENTS_STREAM`].
pub const PUBLISHER_CONSUMER: &str = "publisher";

/// Longest request id or cluster name (a DNS label is 63 characters at most; ids may be
/// longer because they carry a date and a slug).
pub const MAX_CLUSTER_NAME_LEN: usize = 63;
/// Longest request id.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// The subject of an accepted request.
pub fn request_subject(request: &str) -> String {
    format!("warroom.requests.{request}")
}

/// The subject a cluster's runner pulls its tasks from.
pub fn task_subject(cluster: &str) -> String {
    format!("warroom.tasks.{cluster}")
}

/// The subject a runner reports on for one request.
pub fn result_subject(request: &str, cluster: &str) -> String {
    format!("warroom.results.{request}.{cluster}")
}

/// The subject of a runner's audit and progress events for one request.
pub fn event_subject(request: &str, cluster: &str) -> String {
    format!("warroom.events.{request}.{cluster}")
}

/// The subject of a request's status snapshots.
pub fn status_subject(request: &str) -> String {
    format!("warroom.status.{request}")
}

/// The durable consumer shared by a cluster's runner replicas.
pub fn runner_consumer(cluster: &str) -> String {
    format!("runner-{cluster}")
}

/// Why a string cannot be a subject token, or `None` when it can.
///
/// A token is 1 to `max_len` characters of ASCII letters, digits, `-` and `_`, starting with a
/// letter or digit. That is stricter than NATS (which only forbids `.`, `*`, `>` and white
/// space) on purpose: the same string is also a file name, a Kubernetes label value and a
/// JetStream consumer name.
pub fn check_token(value: &str, max_len: usize) -> Option<String> {
    if value.is_empty() {
        return Some("must not be empty".to_owned());
    }
    if value.len() > max_len {
        return Some(format!(
            "is {} characters long; at most {max_len} are allowed",
            value.len()
        ));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        let shown = match bad {
            ' ' => "a space".to_owned(),
            '\t' => "a tab".to_owned(),
            '\n' | '\r' => "a line break".to_owned(),
            c => format!("`{c}`"),
        };
        return Some(format!(
            "contains {shown}; only letters, digits, `-` and `_` are allowed \
             (the name becomes a NATS subject token)"
        ));
    }
    if !value.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Some("must start with a letter or a digit".to_owned());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_that_could_change_a_subject_are_refused() {
        for bad in ["a.b", "a*", ">", "a b", "a\tb", "", "-lead", "ä"] {
            assert!(check_token(bad, 63).is_some(), "{bad:?} was accepted");
        }
        assert!(check_token(&"a".repeat(64), 63).is_some());
        for good in ["production-hub", "prod_cluster_1", "a", &"a".repeat(63)] {
            assert_eq!(check_token(good, 63), None, "{good:?} was refused");
        }
    }

    #[test]
    fn subjects_place_tokens_where_consumers_filter() {
        assert_eq!(task_subject("hub"), "warroom.tasks.hub");
        assert_eq!(result_subject("r1", "hub"), "warroom.results.r1.hub");
        assert_eq!(event_subject("r1", "hub"), "warroom.events.r1.hub");
        assert_eq!(status_subject("r1"), "warroom.status.r1");
        assert_eq!(request_subject("r1"), "warroom.requests.r1");
        assert_eq!(runner_consumer("hub"), "runner-hub");
    }
}
