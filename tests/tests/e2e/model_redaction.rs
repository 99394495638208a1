//! Redaction before the model: a tool's output carrying planted secrets reaches the model API
//! redacted (the CLI's `PostToolUse` hook, `warroom-guard post-tool-use`, and behind it the
//! runner's model proxy), so the model provider outside the secure zone never receives a
//! planted value; nor does git.

use warroom_proto::RequestPhase;
use warroom_scripted_model::{Script, Turn};

use crate::harness::{Pipeline, assert_phase, request_yaml};

const CLUSTER: &str = "prod-cluster-1";

/// What `kubectl logs app` prints around the secrets: a line that must reach the model as is.
const CLEAN_LINE: &str = "2026-11-24T10:00:00Z INFO app started, listening on :8080";

/// The planted secrets, one per form the redactor catches: the form, the text the tool
/// prints, and the secret values in it that must never reach the model or git. Each value is
/// built with `concat!` from parts, so that no secret-looking literal is committed. Extend
/// this list as the redactor learns new forms.
const PLANTED: &[(&str, &str, &[&str])] = &[
    (
        "bearer token",
        concat!(
            "GET /api/orders Authorization: Bearer ",
            "Zx9Qw",
            "Lm3Vb7Nc",
            "2Rt8Ys4Kp6"
        ),
        &[concat!("Zx9Qw", "Lm3Vb7Nc", "2Rt8Ys4Kp6")],
    ),
    (
        "JWT",
        concat!(
            "session established with ",
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9",
            ".",
            "eyJzdWIiOiJ3YXJyb29tLWUyZSJ9",
            ".",
            "Q3rT9xLm2Vb8Nc4Zr7Wd1Kp5Hs6Jf0Gt"
        ),
        &[concat!(
            "eyJzdWIiOiJ3YXJyb29tLWUyZSJ9",
            ".",
            "Q3rT9xLm2Vb8Nc4Zr7Wd1Kp5Hs6Jf0Gt"
        )],
    ),
    (
        "PEM private key",
        concat!(
            "-----BEGIN RSA PRIVATE KEY-----\n",
            "MIIEow",
            "IBAAKCAQEAx3Lm9Vb2Nc7Zr4Wd8Kp1Hs5Jf6Gt0Ye3Ui9Oa2BzQ7pLm2XvR\n",
            "9tYk4W",
            "z8Nd3Hs6Jf1Bc5Ga0Ue7Ri2Lo9Mx4PqZm9vYmFyQmF6cXV4N2s5TTNwcTB\n",
            "sV1h6U",
            "kU4dEdqYjFrTW5wWTJmSDZsVm9LcjRhTXc3QnE1ZEc4WXNOMHpYY2Qaa1\n",
            "-----END RSA PRIVATE KEY-----"
        ),
        &[
            concat!(
                "MIIEow",
                "IBAAKCAQEAx3Lm9Vb2Nc7Zr4Wd8Kp1Hs5Jf6Gt0Ye3Ui9Oa2BzQ7pLm2XvR"
            ),
            concat!(
                "9tYk4W",
                "z8Nd3Hs6Jf1Bc5Ga0Ue7Ri2Lo9Mx4PqZm9vYmFyQmF6cXV4N2s5TTNwcTB"
            ),
            concat!(
                "sV1h6U",
                "kU4dEdqYjFrTW5wWTJmSDZsVm9LcjRhTXc3QnE1ZEc4WXNOMHpYY2Qaa1"
            ),
        ],
    ),
    (
        "password=",
        concat!(
            "db connect host=db user=shop password=",
            "Pg-pr0d-",
            "Hunter77x"
        ),
        &[concat!("Pg-pr0d-", "Hunter77x")],
    ),
    (
        "AWS access key and secret",
        concat!(
            "aws_access_key_id=",
            "AKIA",
            "Q7PLM2XVR9TYK4WZ",
            "\n",
            "aws_secret_access_key=",
            "wJalr",
            "XUtnFEMI/K7MDENG/bPxRfiCY",
            "EXAMPLEKEY"
        ),
        &[
            concat!("AKIA", "Q7PLM2XVR9TYK4WZ"),
            concat!("wJalr", "XUtnFEMI/K7MDENG/bPxRfiCY", "EXAMPLEKEY"),
        ],
    ),
    (
        "kubeconfig token",
        concat!(
            "users:\n- name: admin\n  user:\n    token: ",
            "sha256",
            "~",
            "Q7pLm2XvR9tYk4Wz8Nd3Hs6Jf1Bc5Ga0Ue7Ri2Lo9Mx"
        ),
        &[concat!(
            "sha256",
            "~",
            "Q7pLm2XvR9tYk4Wz8Nd3Hs6Jf1Bc5Ga0Ue7Ri2Lo9Mx"
        )],
    ),
    (
        "kubeconfig client key",
        concat!(
            "    client-key-data: ",
            "LS0tLS1CRUdJTi",
            "BSU0EgUFJJVkFURSBLRVktLS0tLQpNSUlFb3dJQkFBS0NBUUVB"
        ),
        &[concat!(
            "LS0tLS1CRUdJTi",
            "BSU0EgUFJJVkFURSBLRVktLS0tLQpNSUlFb3dJQkFBS0NBUUVB"
        )],
    ),
    (
        "GitHub token",
        concat!(
            "GITHUB_TOKEN=",
            "ghp_",
            "Xq3Lm9Vb2Nc7Zr4Wd8Kp1Hs5Jf6Gt0Ye3Ui9"
        ),
        &[concat!("ghp_", "Xq3Lm9Vb2Nc7Zr4Wd8Kp1Hs5Jf6Gt0Ye3Ui9")],
    ),
    (
        "password in a URL",
        concat!(
            "DATABASE_URL=postgres://shop:",
            "Url-Pa55",
            "-w0rd-9x",
            "@db.shop.svc:5432/shop"
        ),
        &[concat!("Url-Pa55", "-w0rd-9x")],
    ),
    (
        "X-Api-Key header",
        concat!(
            "request to billing X-Api-Key: ",
            "ak9F2kL",
            "x7Qp3Vz8Mw4Rt6Ys1"
        ),
        &[concat!("ak9F2kL", "x7Qp3Vz8Mw4Rt6Ys1")],
    ),
    (
        "Stripe key",
        concat!(
            "charge created with key ",
            "sk",
            "_live_",
            "51Hx9Tq2Lm8Vb4Nc7Zr3Wd6Kp"
        ),
        &[concat!("sk", "_live_", "51Hx9Tq2Lm8Vb4Nc7Zr3Wd6Kp")],
    ),
];

/// `kubectl logs app`: the clean line, then every planted form.
fn logs() -> String {
    let mut out = format!("{CLEAN_LINE}\n");
    for (_, printed, _) in PLANTED {
        out.push_str(printed);
        out.push('\n');
    }
    out
}

/// A tool output full of secrets: no request the model API receives carries a planted value
/// (the first layer, the PostToolUse hook, replaced the output the CLI keeps; the second, the
/// runner's proxy, would have redacted it on the way), the clean part of the output still
/// reaches the model, and nothing planted is in any file under `results/` or in git's history.
#[tokio::test(flavor = "multi_thread")]
async fn planted_secrets_in_a_tool_output_reach_the_model_redacted() {
    let script = Script::single(vec![
        Turn::bash("kubectl logs app"),
        Turn::text("## Findings\n\nThe app starts and then fails to reach its database."),
    ]);
    let pipeline = Pipeline::start(&[CLUSTER], script).await;
    pipeline.kubectl_answer("logs app", &logs());
    let id = "2026-11-24-1200-model-redaction";
    pipeline.push_request(
        id,
        &request_yaml(
            &[("hosted", CLUSTER)],
            "parallel",
            "Why does the app fail?",
            300,
        ),
    );
    let status = pipeline.wait_report(id, &[CLUSTER]).await;
    assert_phase(&status, RequestPhase::Completed);
    assert_eq!(pipeline.kubectl_calls(), ["logs app"], "the command ran");

    // The model: every request it received, side requests included.
    let requests = pipeline.model.requests();
    let results: Vec<_> = requests
        .iter()
        .flat_map(|request| request.tool_results())
        .collect();
    assert!(
        results
            .iter()
            .any(|r| r.content_text.contains(CLEAN_LINE) && r.content_text.contains("[REDACTED:")),
        "the output reached the model, redacted: {results:#?}"
    );
    for request in &requests {
        let body = request.body.to_string();
        for (form, _, secrets) in PLANTED {
            for secret in *secrets {
                assert!(
                    !body.contains(secret),
                    "the {form} reached the model API in a request to {}: {body}",
                    request.path
                );
            }
        }
    }

    // Git: every file under results/ on main, and the whole history of every ref.
    let files = pipeline
        .remote
        .git(["ls-tree", "-r", "--name-only", "main", "results/"]);
    assert!(
        files.contains(&format!("results/{id}/audit.jsonl")),
        "{files}"
    );
    let history = pipeline.remote.git(["log", "-p", "--all"]);
    for path in files.lines() {
        let text = pipeline.remote.read(path).unwrap_or_default();
        for (form, _, secrets) in PLANTED {
            for secret in *secrets {
                assert!(!text.contains(secret), "the {form} is in {path}");
                assert!(!history.contains(secret), "the {form} is in git's history");
            }
        }
    }
    pipeline.shutdown().await;
}
