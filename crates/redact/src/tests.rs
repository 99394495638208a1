//! Unit tests of the whole pipeline: the publisher's original cases, then one per token
//! format and one per structural form.

use super::*;

/// The redacted text as a `String`.
fn t(input: &str) -> String {
    text(input).into_string()
}

/// Deterministic filler from `alphabet`, so that no token-shaped literal sits in the source
/// (secret scanners on the remote would flag it) and every run sees the same values.
fn fill(alphabet: &str, n: usize, seed: u64) -> String {
    let chars: Vec<char> = alphabet.chars().collect();
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            chars[((state >> 33) as usize) % chars.len()]
        })
        .collect()
}

const ALNUM: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const HEX: &str = "0123456789abcdef";
const UPPER_NUM: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const B64URL: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn assert_redacted(input: &str, secret: &str, kind: &str) {
    let redaction = text(input);
    let out = redaction.text.to_string();
    assert!(
        !out.contains(secret),
        "the secret {secret:?} survived in:\n{out}"
    );
    assert!(
        out.contains(&placeholder(kind)),
        "no [REDACTED:{kind}] in:\n{out}"
    );
    assert!(
        redaction.removed.get(kind) >= 1,
        "{kind} not counted: {:?}",
        redaction.removed
    );
    assert_eq!(t(&out), out, "redacting twice changed the text");
}

#[test]
fn every_trigger_and_token_rule_compiles() {
    LazyLock::force(&TRIGGERS);
    assert_eq!(tokens::RULES.len(), tokens::TOKEN_RULES.len());
    assert_eq!(TRIGGERS.len(), STEPS.len() + tokens::TOKEN_RULES.len());
}

#[test]
fn ordinary_text_is_left_alone_and_borrowed() {
    let texts = [
        "kubectl get pods -n clusters-prod-1",
        "oc describe hostedcluster prod-1 -n clusters",
        "kubectl get secrets -n openshift-config",
        "NAME                        READY   STATUS             RESTARTS        AGE\n\
         api-server-7d9f8b6c4-xk2lp  1/1     Running            0               3d4h\n\
         etcd-0                      0/1     CrashLoopBackOff   12 (2m ago)     1h\n",
        "The kube-apiserver uses a bearer token to authenticate; Bearer authentication failed.",
        "## Findings\n\n- etcd is slow (p99 fsync 120ms)\n- 3 Secrets exist in the namespace\n",
        "metadata:\n  name: api\n  namespace: clusters-prod-1\nspec:\n  secretName: api-tls\n",
        "kind: ConfigMap\ndata:\n  config.yaml: |\n    logLevel: debug\n",
        "input_tokens=1200 output_tokens=80, tokens == 3",
        "https://console.example.com:8443/k8s/ns/default",
        "Events:\n  Warning  BackOff  2m (x12 over 1h)  kubelet  Back-off restarting failed container",
        "",
    ];
    for input in texts {
        let redaction = text(input);
        assert_eq!(&*redaction, input, "ordinary text was changed");
        assert!(
            matches!(redaction.text, Cow::Borrowed(_)),
            "allocated for {input:?}"
        );
        assert!(redaction.removed.is_empty());
    }
}

#[test]
fn pem_blocks_are_redacted_whole() {
    let key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEAzr3xyz\nabcDEF==\n-----END RSA PRIVATE KEY-----";
    assert_redacted(
        &format!("key:\n{key}\nafter"),
        "MIIEpAIBAAKCAQEAzr3xyz",
        "private_key",
    );
    assert!(t(&format!("{key}\nafter")).ends_with("]\nafter"));
    let cert = "-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIE\n-----END CERTIFICATE-----";
    // Certificates are public: kept, and a private key after one still goes.
    assert_eq!(t(cert), cert);
    let out = t(&format!("{cert}\n{key}\n"));
    assert_eq!(out, format!("{cert}\n[REDACTED:private_key]\n"));
    // Cut off by truncated tool output: still redacted to the end of the base64.
    assert_redacted(
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
        "private_key",
    );
    // Escaped newlines, as in JSON printed by a tool.
    assert_redacted(
        r#"{"tls.key": "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBx\n-----END EC PRIVATE KEY-----\n"}"#,
        "MHcCAQEEIBx",
        "private_key",
    );
    // OpenSSH private keys (`ssh-keygen` since OpenSSH 7.8).
    let body = fill(ALNUM, 70, 1);
    assert_redacted(
        &format!(
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEA{body}\n-----END OPENSSH PRIVATE KEY-----\n"
        ),
        &body,
        "private_key",
    );
}

#[test]
fn bearer_and_basic_credentials_are_redacted() {
    assert_redacted(
        "curl -H 'Authorization: Bearer sha256~AbCdEf0123456789'",
        "sha256~AbCdEf0123456789",
        "bearer_token",
    );
    assert_redacted(
        "Authorization: Basic dXNlcjpodW50ZXIy",
        "dXNlcjpodW50ZXIy",
        "basic_auth",
    );
    assert_eq!(
        t("curl -H 'Authorization: Bearer abc.def-ghi' https://x"),
        "curl -H 'Authorization: Bearer [REDACTED:bearer_token]' https://x"
    );
}

#[test]
fn http_headers_are_redacted_in_every_form() {
    let v = fill(ALNUM, 24, 2);
    for (line, kind) in [
        (format!("> Cookie: session={v}; theme=dark"), "cookie"),
        (format!("< Set-Cookie: sid={v}; Path=/; HttpOnly"), "cookie"),
        (format!("X-Api-Key: {v}"), "api_key"),
        (
            format!(r#"{{"headers": {{"X-Vault-Token": "{v}"}}}}"#),
            "token",
        ),
        (
            format!("level=info msg=req x-auth-token={v} status=200"),
            "token",
        ),
        (format!("x-auth-token: {v}\n"), "token"),
        (
            format!("map[Authorization:[token {v}] Accept:[*/*]]"),
            "authorization",
        ),
        (
            format!("Proxy-Authorization: Negotiate {v}"),
            "authorization",
        ),
        (
            format!("request headers: Authorization: AWS4-HMAC-SHA256 Credential={v}"),
            "authorization",
        ),
        (
            format!(r#"authorization="Bearer {v}" path=/api"#),
            "bearer_token",
        ),
    ] {
        assert_redacted(&line, &v, kind);
    }
    let out = t(&format!("map[Authorization:[token {v}] Accept:[*/*]]"));
    assert!(out.ends_with("] Accept:[*/*]]"), "{out}");
    let out = t(&format!("level=info msg=req x-auth-token={v} status=200"));
    assert!(out.ends_with(" status=200"), "{out}");
}

#[test]
fn kubeconfig_data_and_tokens_are_redacted() {
    let kubeconfig = "users:\n- name: admin\n  user:\n    client-certificate-data: LS0tLS1CRUdJTiBDRVJU\n    client-key-data: LS0tLS1CRUdJTiBSU0Eg\n    token: sha256~kubeadmin0123\nclusters:\n- cluster:\n    certificate-authority-data: Q0FEQVRB\n";
    let out = t(kubeconfig);
    for secret in [
        "LS0tLS1CRUdJTiBDRVJU",
        "LS0tLS1CRUdJTiBSU0Eg",
        "sha256~kubeadmin0123",
        "Q0FEQVRB",
    ] {
        assert!(!out.contains(secret), "{secret} survived:\n{out}");
    }
    assert!(
        out.contains("client-key-data: [REDACTED:kubeconfig]"),
        "{out}"
    );
    assert!(out.contains("token: [REDACTED:openshift_token]"), "{out}");
    assert!(out.contains("- name: admin"), "{out}");
    assert_redacted(
        r#"{"client-key-data": "LS0tLS1CRUdJTiBSU0Eg"}"#,
        "LS0tLS1CRUdJTiBSU0Eg",
        "kubeconfig",
    );
    assert_redacted("    password: admin123\n", "admin123", "password");
}

#[test]
fn secret_data_in_yaml_is_redacted() {
    let yaml = "apiVersion: v1\ndata:\n  password: aHVudGVyMg==\n  username: YWRtaW4=\nkind: Secret\nmetadata:\n  name: db\ntype: Opaque\n";
    let out = t(yaml);
    assert!(!out.contains("aHVudGVyMg=="), "{out}");
    assert!(!out.contains("YWRtaW4="), "{out}");
    assert!(
        out.contains("  username: [REDACTED:secret_data]\nkind: Secret\nmetadata:\n  name: db\n"),
        "{out}"
    );
    let list = "items:\n- apiVersion: v1\n  data:\n    ca.crt: Y2VydA==\n  kind: Secret\n- stringData:\n    config: |\n      user=admin\n      dbpass=hunter2\n    plain: hunter3\n  kind: Secret\n";
    let out = t(list);
    for secret in ["Y2VydA==", "hunter2", "hunter3", "user=admin"] {
        assert!(!out.contains(secret), "{secret} survived:\n{out}");
    }
    assert!(out.contains("  kind: Secret\n"), "{out}");
    assert_eq!(t(&out), out);
    // A docker config Secret.
    let docker = "apiVersion: v1\ndata:\n  .dockerconfigjson: eyJhdXRocyI6eyJxdWF5LmlvIjp7ImF1dGgiOiJkWE5sY2pwd1lYTnoifX19\nkind: Secret\ntype: kubernetes.io/dockerconfigjson\n";
    assert_redacted(docker, "eyJhdXRocyI6", "secret_data");
}

#[test]
fn config_map_data_is_not_secret_data() {
    let yaml = "apiVersion: v1\ndata:\n  ca-bundle: Y2VydGlmaWNhdGU=\n  mode: cHJvZA==\nkind: ConfigMap\nmetadata:\n  name: x\n";
    assert_eq!(t(yaml), yaml);
    let list = "items:\n- apiVersion: v1\n  data:\n    mode: cHJvZA==\n  kind: ConfigMap\n- apiVersion: v1\n  data:\n    password: aHVudGVyMg==\n  kind: Secret\n";
    let out = t(list);
    assert!(out.contains("mode: cHJvZA=="), "{out}");
    assert!(!out.contains("aHVudGVyMg=="), "{out}");
    let json_text = "{\n    \"apiVersion\": \"v1\",\n    \"data\": {\n        \"mode\": \"cHJvZA==\"\n    },\n    \"kind\": \"ConfigMap\"\n}";
    assert_eq!(t(json_text), json_text);
}

#[test]
fn secret_data_in_json_is_redacted() {
    let json_text = "{\n    \"apiVersion\": \"v1\",\n    \"data\": {\n        \"password\": \"aHVudGVyMg==\",\n        \"user\": \"YWRtaW4=\"\n    },\n    \"kind\": \"Secret\"\n}";
    let out = t(json_text);
    assert!(
        !out.contains("aHVudGVyMg==") && !out.contains("YWRtaW4="),
        "{out}"
    );
    assert!(
        out.contains("\"user\": \"[REDACTED:secret_data]\""),
        "{out}"
    );
    assert_redacted(
        r#"{"stringData":{"note":"plain text secret"}}"#,
        "plain text secret",
        "secret_data",
    );
}

#[test]
fn key_value_secrets_are_redacted() {
    assert_redacted("connect password=hunter2 now", "hunter2", "password");
    assert_redacted("DB_PASSWORD='s3 cr3t'", "s3 cr3t", "password");
    assert_redacted("client_secret=abc123&grant=x", "abc123", "secret");
    assert_redacted("?access_token=abcdef123", "abcdef123", "token");
    assert_redacted("export API_KEY=k-123", "k-123", "api_key");
    assert_redacted(
        "aws_secret_access_key = wJalrXUtnFEMI",
        "wJalrXUtnFEMI",
        "access_key",
    );
    assert_redacted("--from-literal=password=abc", "abc", "password");
    assert_redacted(r#"{"apiKey": "k-9876"}"#, "k-9876", "api_key");
    assert_redacted("  token: abcdef0123\n", "abcdef0123", "token");
    assert_redacted("secret: \"hunter2\"\n", "hunter2", "secret");
    assert_eq!(
        t("password=hunter2 secret=s3"),
        "password=[REDACTED:password] secret=[REDACTED:secret]"
    );
    assert_eq!(t("password: null"), "password: null");
    assert_redacted(
        "oc login --token sha1x-notaformat --server https://api",
        "sha1x-notaformat",
        "token",
    );
    assert_redacted(
        "podman run -e DB_PASSWORD=hunter2 quay.io/x/y",
        "hunter2",
        "password",
    );
    assert_redacted(
        "oc set env deploy/api --env STRIPE_KEY=abc123def",
        "abc123def",
        "key",
    );
    assert_eq!(
        t("oc create secret generic x --from-file=ssh-privatekey=./id_rsa"),
        "oc create secret generic x --from-file=ssh-privatekey=./id_rsa"
    );
}

#[test]
fn env_entries_are_redacted_in_yaml_json_and_describe() {
    let yaml = "    env:\n    - name: DB_PASSWORD\n      value: hunter2\n    - name: LOG_LEVEL\n      value: debug\n";
    let out = t(yaml);
    assert!(out.contains("      value: [REDACTED:password]\n"), "{out}");
    assert!(out.contains("      value: debug\n"), "{out}");
    assert_redacted(
        r#"{"name":"API_TOKEN","value":"t0k3n-value"}"#,
        "t0k3n-value",
        "token",
    );
    assert_redacted(
        "{\n  \"name\": \"DB_PASSWORD\",\n  \"value\": \"hunter2\"\n}",
        "hunter2",
        "password",
    );
    assert_redacted(
        r#"{"value":"hunter2","name":"ADMIN_PASSWD"}"#,
        "hunter2",
        "password",
    );
    let describe = "    Environment:\n      DB_PASSWORD:  hunter2\n      DB_USER:      <set to the key 'user' in secret 'db'>  Optional: false\n      TOKEN_FILE:   /var/run/secrets/token\n";
    let out = t(describe);
    assert!(!out.contains("hunter2"), "{out}");
    assert!(
        out.contains("<set to the key 'user' in secret 'db'>"),
        "{out}"
    );
    assert!(out.contains("/var/run/secrets/token"), "{out}");
    let describe_secret = "Data\n====\npassword:  9 bytes\nusername:  5 bytes\n";
    assert_eq!(t(describe_secret), describe_secret);
}

#[test]
fn connection_strings_are_redacted() {
    let key = fill(ALNUM, 86, 3);
    assert_redacted(
        &format!(
            "DefaultEndpointsProtocol=https;AccountName=prod;AccountKey={key}==;EndpointSuffix=core.windows.net"
        ),
        &key,
        "azure_storage_key",
    );
    assert_redacted(
        "Server=db;Database=app;User Id=sa;Password=Pa55w0rd!;Encrypt=true",
        "Pa55w0rd!",
        "password",
    );
    assert_redacted("Driver={ODBC};Uid=app;Pwd=s3cr3t;", "s3cr3t", "password");
    let sak = fill(ALNUM, 43, 4);
    assert_redacted(
        &format!(
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=Root;SharedAccessKey={sak}="
        ),
        &sak,
        "azure_sas",
    );
    let sig = fill(ALNUM, 40, 5);
    assert_redacted(
        &format!("SharedAccessSignature=sv=2021-08-06&ss=b&sig={sig}%3D;BlobEndpoint=x"),
        &sig,
        "azure_sas",
    );
    assert_redacted(
        "postgres://app:hunter2@db:5432/app",
        "hunter2",
        "url_password",
    );
    assert_redacted("redis://:hunter2@redis:6379", "hunter2", "url_password");
}

/// One sample per token rule, built at test time, with the kind it must report.
fn token_samples() -> Vec<(String, &'static str)> {
    vec![
        (
            format!("sha256~{}", fill(B64URL, 43, 10)),
            "openshift_token",
        ),
        (
            format!(
                "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2EifQ.{}",
                fill(B64URL, 40, 11)
            ),
            "jwt",
        ),
        (format!("AKIA{}", fill(UPPER_NUM, 16, 12)), "aws_access_key"),
        (format!("AIza{}", fill(B64URL, 35, 13)), "gcp_api_key"),
        (
            format!("GOCSPX-{}", fill(B64URL, 28, 14)),
            "gcp_client_secret",
        ),
        (
            format!("abc8Q~{}", fill(ALNUM, 34, 15)),
            "azure_client_secret",
        ),
        (format!("ghp_{}", fill(ALNUM, 36, 16)), "github_token"),
        (
            format!(
                "github_pat_11{}_{}",
                fill(ALNUM, 20, 17),
                fill(ALNUM, 59, 18)
            ),
            "github_token",
        ),
        (format!("glpat-{}", fill(B64URL, 20, 19)), "gitlab_token"),
        (format!("glptt-{}", fill(HEX, 40, 20)), "gitlab_token"),
        (format!("GR1348941{}", fill(B64URL, 20, 21)), "gitlab_token"),
        (
            format!(
                "xoxb-{}-{}",
                fill("0123456789", 12, 22),
                fill(ALNUM, 24, 23)
            ),
            "slack_token",
        ),
        (
            format!(
                "xapp-1-A{}-{}-{}",
                fill(UPPER_NUM, 10, 24),
                fill("0123456789", 13, 25),
                fill(HEX, 64, 26)
            ),
            "slack_token",
        ),
        (format!("sk_live_{}", fill(ALNUM, 24, 29)), "stripe_key"),
        (format!("whsec_{}", fill(ALNUM, 32, 30)), "stripe_key"),
        (
            format!("sk-ant-api03-{}", fill(B64URL, 90, 31)),
            "anthropic_key",
        ),
        (format!("sk-proj-{}", fill(B64URL, 48, 32)), "openai_key"),
        (
            format!("sk-{}T3BlbkFJ{}", fill(ALNUM, 20, 33), fill(ALNUM, 20, 34)),
            "openai_key",
        ),
        (format!("npm_{}", fill(ALNUM, 36, 35)), "npm_token"),
        (
            format!("pypi-AgEIcHlwaS5vcmc{}", fill(B64URL, 60, 36)),
            "pypi_token",
        ),
        (format!("SK{}", fill(HEX, 32, 37)), "twilio_key"),
        (
            format!("SG.{}.{}", fill(B64URL, 22, 38), fill(B64URL, 43, 39)),
            "sendgrid_key",
        ),
        (format!("hvs.{}", fill(B64URL, 24, 40)), "vault_token"),
        (
            format!("dop_v1_{}", fill(HEX, 64, 41)),
            "digitalocean_token",
        ),
        (
            format!(
                "hf_{}",
                fill(
                    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
                    34,
                    42
                )
            ),
            "huggingface_token",
        ),
        (
            format!("dckr_pat_{}", fill(B64URL, 27, 43)),
            "docker_hub_token",
        ),
        (format!("shpat_{}", fill(HEX, 32, 44)), "shopify_token"),
        (format!("dapi{}", fill(HEX, 32, 45)), "databricks_token"),
        (
            format!("glsa_{}_{}", fill(ALNUM, 32, 46), fill(HEX, 8, 47)),
            "grafana_token",
        ),
        (format!("glc_{}", fill(ALNUM, 40, 48)), "grafana_token"),
        (
            format!(
                "AGE-SECRET-KEY-1{}",
                fill("QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L", 58, 49)
            ),
            "age_secret_key",
        ),
        (
            format!("PMAK-{}-{}", fill(HEX, 24, 50), fill(HEX, 34, 51)),
            "postman_key",
        ),
        (format!("NRAK-{}", fill(UPPER_NUM, 27, 52)), "newrelic_key"),
        (format!("ATATT3{}", fill(B64URL, 60, 53)), "atlassian_token"),
        (format!("sntrys_{}", fill(ALNUM, 60, 54)), "sentry_token"),
        (format!("lin_api_{}", fill(ALNUM, 40, 55)), "linear_key"),
        (format!("pul-{}", fill(HEX, 40, 56)), "pulumi_token"),
        (
            format!("{}.atlasv1.{}", fill(ALNUM, 14, 57), fill(B64URL, 67, 58)),
            "terraform_token",
        ),
        (
            format!("dp.st.prd.{}", fill(ALNUM, 43, 59)),
            "doppler_token",
        ),
    ]
}

#[test]
fn every_token_format_is_redacted_in_prose_and_covered_by_a_sample() {
    let samples = token_samples();
    for (token, kind) in &samples {
        assert_redacted(&format!("found {token} in the log"), token, kind);
        assert_eq!(
            t(token),
            placeholder(kind),
            "the whole token, no more: {token}"
        );
    }
    for kind in token_kinds() {
        let has_sample = samples.iter().any(|(_, k)| *k == kind)
            || ["azure_sas", "slack_webhook", "discord_webhook"].contains(&kind);
        assert!(has_sample, "no sample for {kind}");
    }
}

#[test]
fn webhook_urls_keep_their_host() {
    let path = format!(
        "T{}/B{}/{}",
        fill(UPPER_NUM, 8, 60),
        fill(UPPER_NUM, 8, 61),
        fill(ALNUM, 24, 62)
    );
    let out = t(&format!("url: https://hooks.slack.com/services/{path}"));
    assert_eq!(
        out,
        "url: https://hooks.slack.com/services/[REDACTED:slack_webhook]"
    );
    let token = fill(B64URL, 68, 63);
    assert_redacted(
        &format!("https://discord.com/api/webhooks/123456789012345678/{token}"),
        &token,
        "discord_webhook",
    );
}

#[test]
fn high_entropy_strings_next_to_a_sensitive_word_are_redacted() {
    let v = fill(ALNUM, 32, 70);
    assert_redacted(
        &format!("the bootstrap token is {v} (expires in 24h)"),
        &v,
        "high_entropy",
    );
    assert_redacted(&format!("using signing key {v}"), &v, "high_entropy");
    for benign in [
        "the pull secret references sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "token controller synced uid 8f2c1a4e-9b3d-4c5e-a1f2-3b4c5d6e7f80",
        "secret api-tls-certificate-7d9f8b6c4 rotated at resourceVersion 123456789012",
        "auth operator at commit 4b825dc642cb6eb9a060e54bf8d69288fbee4904",
        "the key fingerprint is 3A:4B:5C:6D:7E:8F:90:A1:B2:C3:D4:E5:F6:07:18:29",
        "the token is mounted from /var/run/secrets/kubernetes.io/serviceaccount/token",
    ] {
        assert_eq!(t(benign), benign);
    }
}

#[test]
fn json_values_are_redacted_counted_and_stay_json() {
    let mut value = serde_json::json!({
        "id": "r1/hub/1/3",
        "event": "tool_result",
        "output": "password=hunter2\n\"quoted\" eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig",
        "input": {"command": "kubectl get pods", "token": "plain-token-value"},
        "env": [{"name": "GITHUB_TOKEN", "value": "ghp_0123456789abcdefghijABCDEF"},
                {"name": "DB_PASSWORD", "value": "hunter3"}],
        "auths": {"quay.io": {"auth": "dXNlcjpwYXNz"}},
        "count": 3,
    });
    let removed = json(&mut value);
    let line = serde_json::to_string(&value).unwrap();
    for secret in [
        "hunter2",
        "hunter3",
        "eyJzdWIiOiIxIn0",
        "plain-token-value",
        "ghp_0123",
        "dXNlcjpwYXNz",
    ] {
        assert!(!line.contains(secret), "{secret} survived: {line}");
    }
    let back: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(back["id"], "r1/hub/1/3");
    assert_eq!(back["input"]["command"], "kubectl get pods");
    assert_eq!(back["input"]["token"], "[REDACTED:token]");
    assert_eq!(back["auths"]["quay.io"]["auth"], "[REDACTED:docker_auth]");
    assert_eq!(back["count"], 3);
    assert_eq!(removed.get("password"), 2, "{removed:?}");
    assert_eq!(removed.get("jwt"), 1);
    assert_eq!(removed.get("github_token"), 1);
    assert_eq!(removed.get("token"), 1);
    assert_eq!(removed.get("docker_auth"), 1);
    // Again: nothing more to remove.
    let mut again = back.clone();
    assert!(json(&mut again).is_empty());
    assert_eq!(again, back);

    let mut secret =
        serde_json::json!({"kind": "Secret", "data": {"a": "YQ=="}, "stringData": {"b": "x"}});
    let removed = json(&mut secret);
    assert_eq!(secret["data"]["a"], "[REDACTED:secret_data]");
    assert_eq!(secret["stringData"]["b"], "[REDACTED:secret_data]");
    assert_eq!(removed.get("secret_data"), 2);
}

#[test]
fn counts_say_what_was_removed() {
    let r = text("password=hunter2 secret=s3 password=x");
    assert_eq!(r.removed.get("password"), 2);
    assert_eq!(r.removed.get("secret"), 1);
    assert_eq!(r.removed.total(), 3);
    assert_eq!(
        serde_json::to_string(&r.removed).unwrap(),
        r#"{"password":2,"secret":1}"#
    );
}

/// Inputs the property tests found, kept as plain cases.
#[test]
fn found_by_the_property_tests() {
    for input in ["Cookie=-", "Cookie=A"] {
        let once = t(input);
        assert_eq!(t(&once), once, "{input}");
        assert_eq!(text(input).removed.total(), 1, "{input}");
    }
}

#[test]
fn redaction_is_deterministic() {
    let input = "token=abc password=def Bearer abcdefgh12345678";
    assert_eq!(text(input), text(input));
}

/// Found by `json_redaction_is_idempotent`: an env entry whose name becomes a secret's name
/// once redacted (`password: data:` reads `password: [REDACTED:password]`) has its value
/// redacted the first time, not only when the result is redacted again.
#[test]
fn an_env_entry_named_by_a_redacted_name_is_redacted_at_once() {
    let mut value = serde_json::json!({
        "password": {"name": "password: data:", "value": "Secret"}
    });
    crate::json(&mut value);
    let once = value.clone();
    assert_eq!(once["password"]["value"], "[REDACTED:password]", "{once}");
    let again = crate::json(&mut value);
    assert_eq!(value, once);
    assert!(again.is_empty(), "{again:?}");
}

/// Redact, then cut: a token cut first would lose the shape its rule needs and leak its
/// start (`ghp_` and 15 of its 36 characters match no rule).
#[test]
fn text_is_redacted_before_it_is_cut() {
    let token = format!("ghp_{}", fill(ALNUM, 36, 90));
    let input = format!("é log line {token} and more after it");
    let head = &token[..19];
    for max in 0..input.len() + 40 {
        let cut = text_truncated(&input, max);
        assert!(
            cut.len() <= max || max >= input.len(),
            "{max}: {} bytes",
            cut.len()
        );
        assert!(
            !cut.contains(head),
            "{max}: the token's start leaked: {}",
            &*cut
        );
        // A placeholder is whole or absent.
        let body = cut.strip_suffix(TRUNCATION_MARKER).unwrap_or(&cut);
        if let Some(at) = body.find('[') {
            assert!(
                body[at..].starts_with("[REDACTED:github_token]"),
                "{max}: split placeholder in {:?}",
                &*cut
            );
        }
        assert_eq!(cut.removed.get("github_token"), 1);
    }
    // Cutting first is what leaks.
    let naive_cut = &input[..input.find(head).unwrap_or(0) + head.len()];
    assert!(t(naive_cut).contains(head));
}

#[test]
fn reports_are_cut_to_the_cap_with_a_marker() {
    let short = "## Findings\n- etcd is slow\n";
    assert!(matches!(truncate_report(short), Cow::Borrowed(_)));
    let long = "é".repeat(MAX_REPORT_BYTES);
    let cut = truncate_report(&long);
    assert!(cut.len() <= MAX_REPORT_BYTES, "{}", cut.len());
    assert!(cut.len() > MAX_REPORT_BYTES - TRUNCATION_MARKER.len() - 4);
    assert!(cut.ends_with(TRUNCATION_MARKER));
    assert!(cut.starts_with("éé"));
    assert_eq!(truncate("abcdef", 3), "abc");
    assert_eq!(truncate("abcdef", 0), "");
}

#[test]
fn pwd_is_a_password_only_in_a_connection_string() {
    assert_eq!(t("PWD=/workspace"), "PWD=/workspace");
    assert_eq!(t("export PWD=/tmp OLDPWD=/"), "export PWD=/tmp OLDPWD=/");
    assert_redacted("Server=db;Uid=app;Pwd=s3cr3t", "s3cr3t", "password");
    assert_redacted("Pwd=s3cr3t;Server=db", "s3cr3t", "password");
}

#[test]
fn an_authorization_section_is_not_a_header() {
    for input in [
        r#"{"authorization":{"mode":"Webhook"}}"#,
        "authorization: {mode: Webhook}",
    ] {
        assert_eq!(t(input), input);
    }
    assert_redacted(
        r#"{"headers":{"Authorization":"Bearer abc.def.ghi"}}"#,
        "abc.def.ghi",
        "bearer_token",
    );
    let mut value = serde_json::json!({"headers": {"Authorization": "token abcdef"}});
    json(&mut value);
    assert_eq!(
        value["headers"]["Authorization"],
        "token [REDACTED:authorization]"
    );
}

#[test]
fn pem_blocks_are_found_in_one_pass_each() {
    // A cut-off certificate does not hide the private key after it.
    let input = "-----BEGIN CERTIFICATE-----\nMIIB\n-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\nafter";
    assert_eq!(
        t(input),
        "-----BEGIN CERTIFICATE-----\nMIIB\n[REDACTED:private_key]\nafter"
    );
    // A private key cut off goes to the end of the input, whatever follows it.
    assert_eq!(
        t("k: -----BEGIN RSA PRIVATE KEY-----\n  MIIE\n  # cut\nmore text"),
        "k: [REDACTED:private_key]"
    );
    // Other blocks that are not public go too.
    assert_redacted(
        "-----BEGIN PGP MESSAGE-----\nhQEMA\n-----END PGP MESSAGE-----",
        "hQEMA",
        "pem",
    );
}
