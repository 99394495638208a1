//! The tool rules as a whole, through the real Claude Code CLI: what troubleshooting needs
//! runs (the runner's permission rules and the guard agree on it), and what could carry a
//! credential or reshape a value past redaction is refused, by whichever layer comes first.
//! The logging `kubectl` is the proof of what ran.

use warroom_proto::RequestPhase;
use warroom_scripted_model::{Script, Turn};

use crate::harness::{Pipeline, assert_phase, request_yaml};

const CLUSTER: &str = "prod-cluster-1";

/// Everyday calls the guard allows since issue 24; before it (or with the runner's permission
/// rules refusing them) they never reached kubectl. What kubectl logs for each: its arguments.
const EVERYDAY: &[(&str, &str)] = &[
    (
        "kubectl get --raw '/readyz?verbose'",
        "get --raw /readyz?verbose",
    ),
    ("kubectl get --raw /livez", "get --raw /livez"),
    (
        "kubectl rollout status deployment/kube-apiserver -n clusters-prod-1",
        "rollout status deployment/kube-apiserver -n clusters-prod-1",
    ),
    (
        "kubectl rollout history deployment/kube-apiserver -n clusters-prod-1",
        "rollout history deployment/kube-apiserver -n clusters-prod-1",
    ),
    ("kubectl auth can-i list pods -A", "auth can-i list pods -A"),
    ("kubectl top -A pod", "top -A pod"),
    (
        "kubectl get pods -n clusters-prod-1 2>&1",
        "get pods -n clusters-prod-1",
    ),
    (
        "kubectl get events -n clusters-prod-1 2>/dev/null",
        "get events -n clusters-prod-1",
    ),
    (
        "kubectl get pods -A --sort-by=.status.containerStatuses[0].restartCount",
        "get pods -A --sort-by=.status.containerStatuses[0].restartCount",
    ),
    ("kubectl get nodes | awk '{print $1}'", "get nodes"),
    (
        "kubectl get pods -n clusters-prod-1 | sed -n '2,5p'",
        "get pods -n clusters-prod-1",
    ),
];

/// Calls that must never run: a Route's TLS key, the pull secret inlined in MachineConfigs,
/// a value re-encoded past redaction.
const HOSTILE: &[&str] = &[
    "kubectl get route console -n openshift-console -o yaml",
    "kubectl get machineconfigs -o yaml",
    "oc get mc 99-worker-ssh -o json",
    "kubectl get configmap x -o json | jq '.data | @base64'",
    "kubectl get pods | tr 'a-z' 'n-za-m'",
];

#[tokio::test(flavor = "multi_thread")]
async fn everyday_calls_run_and_credential_or_reshaping_calls_never_do() {
    let mut turns: Vec<Turn> = EVERYDAY.iter().map(|(cmd, _)| Turn::bash(*cmd)).collect();
    turns.extend(HOSTILE.iter().map(|cmd| Turn::bash(*cmd)));
    turns.push(Turn::text("FINDING: the control plane is ready."));
    let pipeline = Pipeline::start(&[CLUSTER], Script::single(turns)).await;
    let id = "2026-12-07-0600-everyday";
    pipeline.push_request(
        id,
        &request_yaml(
            &[("hosted", CLUSTER)],
            "parallel",
            "Is the control plane ready?",
            300,
        ),
    );
    let status = pipeline.wait_report(id, &[CLUSTER]).await;
    assert_phase(&status, RequestPhase::Completed);

    let calls = pipeline.kubectl_calls();
    let audit = pipeline.audit(id);
    let refusals: Vec<String> = audit
        .iter()
        .filter(|e| e["event"] == "tool_refused")
        .map(|e| format!("{} => {}", e["input"]["command"], e["reason"]))
        .collect();
    for (command, logged) in EVERYDAY {
        assert!(
            calls.iter().any(|c| c == logged),
            "`{command}` did not run (kubectl saw {calls:#?}); refusals: {refusals:#?}"
        );
    }
    // A refused call never starts, pipeline and all: kubectl saw the everyday calls only.
    let mut expected: Vec<&str> = EVERYDAY.iter().map(|(_, logged)| *logged).collect();
    let mut seen: Vec<&str> = calls.iter().map(String::as_str).collect();
    expected.sort_unstable();
    seen.sort_unstable();
    assert_eq!(
        seen, expected,
        "a hostile call reached kubectl; refusals: {refusals:#?}"
    );
    assert_eq!(
        status.clusters[CLUSTER].permission_denials,
        HOSTILE.len() as u32,
        "exactly the hostile calls are refused: {refusals:#?}"
    );
    pipeline.shutdown().await;
}
