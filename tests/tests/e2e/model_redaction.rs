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
    // The forms issue 24's red team found kept.
    (
        "*_PASS, *_PW, PIN, PASSCODE, *_SALT, HMAC, *_SAS, pass=",
        concat!(
            "DB_PASS=",
            "Qz7-pass-",
            "Vb2Nc\n",
            "ADMIN_PW=",
            "Wd8-pw-",
            "Kp1Hs\n",
            "PIN=",
            "48",
            "213957\n",
            "PASSCODE=",
            "77",
            "41029\n",
            "COOKIE_SALT=",
            "Jf6Gt0",
            "Ye3Ui9Oa\n",
            "HMAC=",
            "a3f9c0",
            "7be21d44\n",
            "STORAGE_SAS=",
            "sv2022Xq",
            "9Lm3Vb\n",
            "login user=ops pass=",
            "Rt8Ys4",
            "Kp6Zx"
        ),
        &[
            concat!("Qz7-pass-", "Vb2Nc"),
            concat!("Wd8-pw-", "Kp1Hs"),
            concat!("48", "213957"),
            concat!("77", "41029"),
            concat!("Jf6Gt0", "Ye3Ui9Oa"),
            concat!("a3f9c0", "7be21d44"),
            concat!("sv2022Xq", "9Lm3Vb"),
            concat!("Rt8Ys4", "Kp6Zx"),
        ],
    ),
    (
        "escaped JSON inside a JSON log line",
        concat!(
            r#"{"level":"info","msg":"{\"user\":\"ops\",\"password\":\""#,
            "Esc4ped-",
            "Js0n-Pw",
            r#"\"}"}"#
        ),
        &[concat!("Esc4ped-", "Js0n-Pw")],
    ),
    (
        "YAML block scalar",
        concat!(
            "config:\n  password: |\n    ",
            "Bl0ck-Sc4lar-",
            "Secret-7x\n  user: ops"
        ),
        &[concat!("Bl0ck-Sc4lar-", "Secret-7x")],
    ),
    (
        "CLI credential flags",
        concat!(
            "curl -u admin:",
            "Cu7l-",
            "Pw9x https://api/\n",
            "mysql -uroot -p",
            "My5ql-",
            "Pw2z\n",
            "ldapsearch -D cn=admin -w ",
            "Ld4p-",
            "Pw3q"
        ),
        &[
            concat!("Cu7l-", "Pw9x"),
            concat!("My5ql-", "Pw2z"),
            concat!("Ld4p-", "Pw3q"),
        ],
    ),
    (
        "signed-URL parameters",
        concat!(
            "GET https://bucket.s3.amazonaws.com/dump.tar?X-Amz-Credential=AKIA&X-Amz-Signature=",
            "9f2c7a1e4b",
            "8d3f6a0c5e7b9d1f2a4c6e8b0d3f5a7c9e1b3d5f7a9c",
            " https://acct.blob.core.windows.net/c/x?se=2027-01-01&sig=",
            "Az9Sas",
            "Sig7Lm3Vb8Nc4Zr"
        ),
        &[
            concat!("9f2c7a1e4b", "8d3f6a0c5e7b9d1f2a4c6e8b0d3f5a7c9e1b3d5f7a9c"),
            concat!("Az9Sas", "Sig7Lm3Vb8Nc4Zr"),
        ],
    ),
    (
        "pull secret as a base64 data: URL",
        // {"auths":{"quay.io":{"auth":"b3BzOlB1bGwtU2VjcmV0LTk5eA=="}}} (ops:Pull-Secret-99x)
        concat!(
            "source: data:text/plain;charset=utf-8;base64,",
            "eyJhdXRocyI6eyJxdWF5LmlvIjp7ImF1dGgiOiJiM0J6T2xCMWJHd3RVMlZq",
            "Y21WMExUazVlQT09In19fQ=="
        ),
        &[concat!(
            "eyJhdXRocyI6eyJxdWF5LmlvIjp7ImF1dGgiOiJiM0J6T2xCMWJHd3RVMlZq",
            "Y21WMExUazVlQT09In19fQ=="
        )],
    ),
    (
        "password with @ and / in a URL",
        concat!(
            "REDIS_URL=redis://cache:",
            "p@ss/",
            "W0rd-91@",
            "redis.shop.svc:6379/0"
        ),
        &[concat!("p@ss/", "W0rd-91")],
    ),
    (
        "indented PEM",
        concat!(
            "  tls.key: |\n",
            "    -----BEGIN EC PRIVATE KEY-----\n",
            "    MHcCAQEEI",
            "Ot3Lm9Vb2Nc7Zr4Wd8Kp1Hs5Jf6Gt0Ye3Ui9Oa2BzQ7oAoGCCqGSM49\n",
            "    -----END EC PRIVATE KEY-----"
        ),
        &[concat!(
            "MHcCAQEEI",
            "Ot3Lm9Vb2Nc7Zr4Wd8Kp1Hs5Jf6Gt0Ye3Ui9Oa2BzQ7oAoGCCqGSM49"
        )],
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
