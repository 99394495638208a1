//! Redaction at the source and at the gate: secrets a tool printed and the model repeated
//! never reach NATS or git, the finding still reads, the counts are audited, and the
//! report's Markdown loads nothing.

use warroom_proto::names::REQUESTS_BUCKET;
use warroom_proto::{RequestPhase, Stream};
use warroom_scripted_model::{Script, Turn};

use crate::harness::{Pipeline, assert_phase, request_yaml};

const CLUSTER: &str = "prod-cluster-1";
const FINDING: &str = "the pod's DB password is set in plain env";

/// The planted secrets, built from parts so that no secret-looking literal is committed.
struct Planted {
    db_password: String,
    openshift_token: String,
    api_key: String,
    azure_key: String,
    docker_auth: String,
    stripe_key: String,
    session: String,
    jwt: String,
}

impl Planted {
    fn new() -> Planted {
        Planted {
            db_password: ["Pg", "-pr0d-", "Hunter", "77x"].concat(),
            openshift_token: [
                "sha256",
                "~",
                "Q7pLm2XvR9",
                "tYk4Wz8Nd3Hs6",
                "Jf1Bc5Ga0Ue7Ri2",
                "Lo9Mx4Pq",
            ]
            .concat(),
            api_key: ["ak", "9F2kL", "x7Qp3Vz8", "Mw4Rt6Ys1"].concat(),
            azure_key: [
                "Zm9vYmFy",
                "QmF6cXV4",
                "N2s5TTNw",
                "cTBsV1h6",
                "UkU4dEdq",
                "YjFrTW5w",
                "WTJmSDZs",
                "Vm9LcjRh",
                "TXc3QnE1",
                "ZEc4WXNO",
                "MHpYY2Q==",
            ]
            .concat(),
            docker_auth: ["cm9ib3Q6", "c2VjcmV0", "LXJlZ2lz", "dHJ5LXB3"].concat(),
            stripe_key: ["sk", "_live_", "51Hx9", "Tq2Lm8Vb4", "Nc7Zr3Wd6Kp"].concat(),
            session: ["s3ss", "ion-", "f0e1d2c3", "b4a59687"].concat(),
            jwt: [
                "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9",
                ".",
                "eyJzdWIiOiJ3YXJyb29tLXRlc3QifQ",
                ".",
                "Xq3Lm9Vb2Nc7Zr4Wd8Kp1Hs5Jf6Gt0Ye3Ui9Oa2Bz",
            ]
            .concat(),
        }
    }

    fn all(&self) -> [(&'static str, &str); 8] {
        [
            ("DB_PASSWORD", &self.db_password),
            ("OpenShift token", &self.openshift_token),
            ("X-Api-Key", &self.api_key),
            ("AccountKey", &self.azure_key),
            ("docker auth", &self.docker_auth),
            ("sk_live_", &self.stripe_key),
            ("Set-Cookie", &self.session),
            ("JWT", &self.jwt),
        ]
    }

    /// `kubectl get pod x -o yaml`: a pod spec full of secrets.
    fn pod_yaml(&self) -> String {
        format!(
            "apiVersion: v1
kind: Pod
metadata:
  name: x
  namespace: shop
  annotations:
    deploy.example/registry: '{{\"auths\":{{\"quay.example\":{{\"auth\":\"{docker}\"}}}}}}'
spec:
  containers:
  - name: api
    image: quay.example/shop/api:1.4.2
    env:
    - name: DB_USER
      value: shop
    - name: DB_PASSWORD
      value: {password}
    - name: STORAGE_CONNECTION
      value: DefaultEndpointsProtocol=https;AccountName=shoplogs;AccountKey={azure};EndpointSuffix=core.windows.net
    - name: OC_TOKEN
      value: {oc}
    - name: PAYMENTS
      value: {stripe}
status:
  phase: Running
",
            docker = self.docker_auth,
            password = self.db_password,
            azure = self.azure_key,
            oc = self.openshift_token,
            stripe = self.stripe_key,
        )
    }

    /// `kubectl logs x`: more secrets, in log lines.
    fn logs(&self) -> String {
        format!(
            "2026-11-24T10:00:01Z INFO request to billing X-Api-Key: {key} status=200
2026-11-24T10:00:02Z DEBUG response Set-Cookie: session={session}; Path=/; HttpOnly
2026-11-24T10:00:03Z DEBUG authorization header Authorization: Bearer {jwt}
2026-11-24T10:00:04Z INFO charge created with key {stripe}
",
            key = self.api_key,
            session = self.session,
            jwt = self.jwt,
            stripe = self.stripe_key,
        )
    }

    /// The model's report: the finding, some secrets repeated, and live Markdown.
    fn final_text(&self) -> String {
        format!(
            "## Findings\n\nFINDING: {FINDING} (DB_PASSWORD={password}).\n\n\
             The billing client logs its X-Api-Key: {key}\n\n\
             The pod also carries the token {oc} and the JWT {jwt}.\n\n\
             ![x](https://tracker.example/p.png)\n\n\
             <img src=\"https://tracker.example/q.png\">\n",
            password = self.db_password,
            key = self.api_key,
            oc = self.openshift_token,
            jwt = self.jwt,
        )
    }
}

/// Secrets in a tool's output and in the model's final text are removed before anything is
/// published to NATS and again before git: no planted value is in any stream, in the
/// dispatcher's state or anywhere in the remote's history; the finding still reads, the
/// audit log counts what was removed, and the report's images and HTML are inert.
#[tokio::test(flavor = "multi_thread")]
async fn secrets_in_tool_output_and_report_never_reach_nats_or_git() {
    let planted = Planted::new();
    let script = Script::single(vec![
        Turn::bash("kubectl get pod x -o yaml"),
        Turn::bash("kubectl logs x"),
        Turn::text(planted.final_text()),
    ]);
    let pipeline = Pipeline::start(&[CLUSTER], script).await;
    pipeline.kubectl_answer("get pod x -o yaml", &planted.pod_yaml());
    pipeline.kubectl_answer("logs x", &planted.logs());
    let id = "2026-11-24-1100-redaction";
    pipeline.push_request(
        id,
        &request_yaml(
            &[("hosted", CLUSTER)],
            "parallel",
            "Why does the shop API fail?",
            300,
        ),
    );
    let status = pipeline.wait_report(id, &[CLUSTER]).await;
    assert_phase(&status, RequestPhase::Completed);
    assert_eq!(
        pipeline.kubectl_calls(),
        ["get pod x -o yaml", "logs x"],
        "both commands really ran"
    );

    // Git: the whole history of every ref.
    let history = pipeline.remote.git(["log", "-p", "--all"]);
    // NATS: every stored message of every stream, and the dispatcher's state.
    let js = pipeline.nats.jetstream().await;
    let mut stored = String::new();
    let streams = Stream::ALL
        .iter()
        .map(|s| s.name().to_owned())
        .chain([format!("KV_{REQUESTS_BUCKET}")]);
    for name in streams {
        let Ok(mut stream) = js.get_stream(&name).await else {
            continue;
        };
        let state = stream.info().await.expect("stream info").state.clone();
        if state.messages == 0 {
            continue;
        }
        for seq in state.first_sequence..=state.last_sequence {
            if let Ok(message) = stream.get_raw_message(seq).await {
                stored.push_str(&String::from_utf8_lossy(&message.payload));
                stored.push('\n');
            }
        }
    }
    assert!(
        stored.contains("[REDACTED:") && stored.contains("kubectl get pod x -o yaml"),
        "the streams were read and hold the redacted events:\n{stored}"
    );
    for (what, value) in planted.all() {
        assert!(
            !history.contains(value),
            "the {what} value is in the git history"
        );
        assert!(
            !stored.contains(value),
            "the {what} value is stored in NATS"
        );
    }

    let report = pipeline
        .result(id, &format!("{CLUSTER}.md"))
        .expect("cluster report");
    assert!(report.contains(FINDING), "the finding reads:\n{report}");
    assert!(report.contains("DB_PASSWORD="), "{report}");
    assert!(!report.contains("!["), "no live image:\n{report}");
    assert!(!report.contains("<img"), "no live HTML:\n{report}");
    assert!(
        report.contains("values were removed by redaction"),
        "the report says how many values were removed:\n{report}"
    );

    let audit = pipeline.audit(id);
    let counted: u64 = audit
        .iter()
        .flat_map(|e| ["redacted", "report_redacted"].map(|f| &e[f]))
        .filter_map(|counts| counts.as_object())
        .flat_map(|counts| counts.values())
        .filter_map(|n| n.as_u64())
        .sum();
    assert!(
        counted >= planted.all().len() as u64,
        "audit.jsonl counts the removals by kind: {audit:#?}"
    );
    let results: Vec<_> = audit
        .iter()
        .filter(|e| e["event"] == "tool_result")
        .collect();
    assert!(
        results
            .iter()
            .all(|e| e["redacted"].as_object().is_some_and(|c| !c.is_empty())),
        "each output's line says what was removed from it: {results:#?}"
    );
    let total_line = format!("| Redacted values | {counted} |");
    assert!(
        report.contains(&total_line),
        "the report's total ({total_line}) is the audit log's:\n{report}"
    );
    pipeline.shutdown().await;
}
