//! Throughput of `redact::text` on 10 MB of mixed logs (`kubectl` output, JSON logs, YAML,
//! PEM certificates, events; one line in 200 holds a secret), on 10 MB of clean logs, and on
//! adversarial input (each rule's trigger repeated over 256 KiB, which a rule that rescanned
//! would take minutes on). Run with `cargo bench -p warroom-redact`; prints MB/s.

use std::hint::black_box;
use std::time::{Duration, Instant};

use warroom_redact as redact;

/// Benign lines as `kubectl`/`oc` and operators print them.
const BENIGN: &[&str] = &[
    "NAME                                      READY   STATUS    RESTARTS   AGE",
    "kube-apiserver-operator-7d9f8b6c4-xk2lp   1/1     Running   0          3d4h",
    "etcd-0                                    0/1     CrashLoopBackOff   12 (2m ago)   1h",
    "I0501 10:00:00.123456       1 controller.go:120] Successfully synced 'prod/api'",
    "level=info ts=2024-05-01T10:00:00Z caller=main.go:42 msg=\"Starting Prometheus\" version=2.48.0",
    "  Warning  BackOff  2m (x12 over 1h)  kubelet  Back-off restarting failed container api in pod api-7d9f8b6c4-xk2lp",
    "    image: quay.io/openshift-release-dev/ocp-release@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "  uid: 8f2c1a4e-9b3d-4c5e-a1f2-3b4c5d6e7f80",
    "  resourceVersion: \"123456789\"",
    "{\"level\":\"info\",\"ts\":1714557600.123,\"logger\":\"controller\",\"msg\":\"Reconciling\",\"namespace\":\"prod\",\"name\":\"api\"}",
    "2024-05-01T10:00:00Z pod/etcd-0 readiness probe failed: HTTP probe failed with statuscode: 503",
    "clusterversion.config.openshift.io/version   4.15.12   True   False   3d   Cluster version is 4.15.12",
    "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\n  namespace: prod\nspec:\n  replicas: 3\n  template:\n    spec:\n      containers:\n      - name: api\n        env:\n        - name: LOG_LEVEL\n          value: info\n        - name: DB_PASSWORD\n          valueFrom:\n            secretKeyRef:\n              key: password\n              name: db",
    "apiVersion: v1\ndata:\n  config.yaml: |\n    logLevel: info\n    retries: 3\n  enabled: \"true\"\nkind: ConfigMap\nmetadata:\n  name: api-config",
    "-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIEbXlTZXJ2ZXJDZXJ0aWZpY2F0ZUZvclRoZUJlbmNoTWFyaw\nQXJlYWxseUxvbmdDZXJ0aWZpY2F0ZUJvZHlMaW5lVGhhdElzTm90QVNlY3JldEF0QWxs\n-----END CERTIFICATE-----",
    "{\"kind\":\"KubeletConfiguration\",\"authentication\":{\"webhook\":{\"enabled\":true}},\"authorization\":{\"mode\":\"Webhook\"}}",
    "LAST SEEN   TYPE      REASON             OBJECT                 MESSAGE\n2m          Warning   FailedScheduling   pod/api-7d9f8b6c4-xk2lp   0/6 nodes are available: 3 Insufficient cpu.",
];

/// Lines with a secret (fake values).
const SECRETS: &[&str] = &[
    "        - name: DB_PASSWORD\n          value: Pw7xQk2mZr9!",
    "level=debug msg=request authorization=\"Bearer sha256~Xk2mZr9Pw7xQk2mZr9Pw7xQk2mZr9Pw7xQk2mZr9Pw7\"",
    "DATABASE_URL=postgres://app:Pw7xQk2mZr9@db.prod.svc:5432/app",
    "  password: aHVudGVyMg==",
    "the bootstrap token is Zk9vYmFyQmF6UXV4MTIzNDU2Nzg5 (valid for 24h)",
    "  tls.key: |\n    -----BEGIN EC PRIVATE KEY-----\n    MHcCAQEEIBxZk9vYmFyQmF6UXV4MTIzNDU2Nzg5\n    -----END EC PRIVATE KEY-----",
    "{\"level\":\"debug\",\"msg\":\"{\\\"password\\\":\\\"Pw7xQk2mZr9\\\"}\"}",
    "$ curl -u admin:Pw7xQk2mZr9 https://api.prod:6443/healthz",
];

fn build(size: usize, secret_every: usize) -> String {
    let mut out = String::with_capacity(size + 256);
    let mut i = 0usize;
    while out.len() < size {
        if secret_every > 0 && i % secret_every == secret_every - 1 {
            out.push_str(SECRETS[(i / secret_every) % SECRETS.len()]);
        } else {
            out.push_str(BENIGN[i % BENIGN.len()]);
        }
        out.push('\n');
        i += 1;
    }
    out
}

fn measure(name: &str, input: &str) {
    // One warm-up call builds the lazily compiled regexes.
    let removed = redact::text(input).removed.total();
    let mut runs = 0u32;
    let mut elapsed = Duration::ZERO;
    while runs < 1 || elapsed < Duration::from_secs(1) {
        let start = Instant::now();
        black_box(redact::text(black_box(input)));
        elapsed += start.elapsed();
        runs += 1;
    }
    let mb = input.len() as f64 / 1e6;
    let per_run = elapsed.as_secs_f64() / f64::from(runs);
    println!(
        "{name}: {mb:.1} MB, {:.1} MB/s ({runs} runs, {:.1} ms each, {removed} secrets removed)",
        mb / per_run,
        per_run * 1e3
    );
}

/// Each rule's trigger, repeated: what a rule that rescans from every match chokes on.
const ADVERSARIAL: &[&str] = &[
    "data:",
    "data:\n",
    "data:text/plain;base64,",
    "password=",
    "password: |\n",
    "-----BEGIN ",
    "-----BEGIN PRIVATE KEY-----",
    "eyJ",
    "Bearer ",
    "\"password\":\"",
    "Authorization: ",
    "Cookie:",
    "https://u:",
    "curl -u ",
    "?sig=",
    "kind: Secret\ndata:\n",
];

fn main() {
    const SIZE: usize = 10_000_000;
    measure("clean logs", &build(SIZE, 0));
    measure(
        "mixed logs (1 line in 200 holds a secret)",
        &build(SIZE, 200),
    );
    for trigger in ADVERSARIAL {
        let input = trigger.repeat(256 * 1024 / trigger.len());
        measure(
            &format!("adversarial {trigger:?} x {}", 256 * 1024 / trigger.len()),
            &input,
        );
    }
}
