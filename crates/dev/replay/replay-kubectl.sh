#!/bin/sh
# Recorded `oc`/`kubectl` answers for claude-warroom's replay mode. Installed as both `oc`
# and `kubectl` on the replay runners' PATH; it never contacts a cluster.
case "$*" in
  "get hostedclusters -A")
    cat <<'OUT'
NAMESPACE   NAME             VERSION   KUBECONFIG                        PROGRESS    AVAILABLE   PROGRESSING   MESSAGE
clusters    prod-cluster-1   4.16.12   prod-cluster-1-admin-kubeconfig   Completed   False       False         Degraded: kube-apiserver not ready
clusters    prod-cluster-2   4.16.12   prod-cluster-2-admin-kubeconfig   Completed   True        False         The hosted control plane is available
OUT
    ;;
  "get pods -n clusters-prod-1")
    cat <<'OUT'
NAME                                      READY   STATUS    RESTARTS      AGE
etcd-0                                    3/3     Running   7 (4m ago)    12d
kube-apiserver-6d9f7c8b5-x2k4q            4/5     Running   4 (2m ago)    12d
kube-controller-manager-5c7b9d4f6-q8w2e   1/1     Running   0             12d
OUT
    ;;
  "logs -n clusters-prod-1 etcd-0 --tail=5")
    cat <<'OUT'
{"level":"warn","msg":"apply request took too long","took":"2.812s","expected-duration":"100ms"}
{"level":"warn","msg":"slow fdatasync","took":"1.934s","expected-duration":"1s"}
{"level":"warn","msg":"apply request took too long","took":"1.203s","expected-duration":"100ms"}
{"level":"info","msg":"compacted revision","revision":918273}
{"level":"warn","msg":"slow fdatasync","took":"2.113s","expected-duration":"1s"}
OUT
    ;;
  "get nodes")
    cat <<'OUT'
NAME                STATUS   ROLES    AGE   VERSION
prod-1-worker-a1    Ready    worker   40d   v1.29.8
prod-1-worker-b2    Ready    worker   40d   v1.29.8
prod-1-worker-c3    Ready    worker   40d   v1.29.8
OUT
    ;;
  "get events -A --field-selector type=Warning")
    cat <<'OUT'
NAMESPACE     LAST SEEN   TYPE      REASON                    OBJECT              MESSAGE
openshift-dns 3m          Warning   FailedToUpdateEndpoint    endpoints/dns       Failed to update endpoint: context deadline exceeded
default       5m          Warning   FailedToUpdateEndpoint    endpoints/web       Failed to update endpoint: context deadline exceeded
OUT
    ;;
  "get pods -A")
    cat <<'OUT'
NAMESPACE   NAME                   READY   STATUS    RESTARTS   AGE
default     web-7c9f8d6b5-abcde    1/1     Running   0          3d
OUT
    ;;
  *)
    echo "replay: no recorded answer for: $0 $*" >&2
    exit 1
    ;;
esac
