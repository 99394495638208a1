//! The redaction corpus: planted secrets in realistic `kubectl`/`oc` output and logs that
//! must all disappear, and benign look-alikes that must all survive byte for byte.
//!
//! Secret values are generated at test time from a fixed seed: the same values every run,
//! and no token-shaped literal in the repository for a secret scanner to flag.

use std::collections::BTreeSet;

use warroom_redact as redact;

/// Deterministic filler from `alphabet`.
fn fill(alphabet: &str, n: usize, seed: u64) -> String {
    let chars: Vec<char> = alphabet.chars().collect();
    let mut state = seed
        .wrapping_mul(2862933555777941757)
        .wrapping_add(3037000493);
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
const B64: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64URL: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const HEX: &str = "0123456789abcdef";
const UPPER_NUM: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// A format: how to make a secret of it, and the surroundings it is planted in (`{S}`
/// stands for the secret).
struct Format {
    name: &'static str,
    make: fn(u64) -> String,
    contexts: &'static [&'static str],
}

fn password(seed: u64) -> String {
    format!("Pw{}!{}", fill(ALNUM, 10, seed), seed % 97)
}

fn base64_value(seed: u64) -> String {
    format!("{}==", fill(B64, 26, seed))
}

const FORMATS: &[Format] = &[
    Format {
        name: "secret data (YAML)",
        make: base64_value,
        contexts: &[
            "$ kubectl get secret db -n prod -o yaml\napiVersion: v1\ndata:\n  password: {S}\n  username: YWRtaW4=\nkind: Secret\nmetadata:\n  name: db\n  namespace: prod\ntype: Opaque\n",
            "apiVersion: v1\nitems:\n- apiVersion: v1\n  data:\n    tls.key: {S}\n  kind: Secret\n  metadata:\n    name: api-tls\nkind: List\n",
            "apiVersion: v1\ndata:\n  .dockerconfigjson: {S}\nkind: Secret\ntype: kubernetes.io/dockerconfigjson\n",
        ],
    },
    Format {
        name: "secret stringData (YAML)",
        make: password,
        contexts: &[
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: app\nstringData:\n  DATABASE_URL_PASSWORD: {S}\n",
            "stringData:\n  config.ini: |\n    [db]\n    pass = {S}\n",
            "stringData:\n  note: \"{S}\"\ntype: Opaque\n",
        ],
    },
    Format {
        name: "secret data (JSON)",
        make: base64_value,
        contexts: &[
            "{\n    \"apiVersion\": \"v1\",\n    \"data\": {\n        \"token\": \"{S}\"\n    },\n    \"kind\": \"Secret\"\n}\n",
            "{\"apiVersion\":\"v1\",\"data\":{\"ca.crt\":\"{S}\"},\"kind\":\"Secret\"}",
            "{\"stringData\": {\"x\": \"{S}\"}}",
        ],
    },
    Format {
        name: "env entry (YAML)",
        make: password,
        contexts: &[
            "    spec:\n      containers:\n      - env:\n        - name: DB_PASSWORD\n          value: {S}\n        - name: LOG_LEVEL\n          value: info\n",
            "        env:\n        - name: ADMIN_TOKEN\n          value: \"{S}\"\n",
            "  - name: REDIS_AUTH\n    value: '{S}'\n",
            "        - name: SMTP_SECRET_PROD\n          value: {S}\n",
        ],
    },
    Format {
        name: "env entry (JSON)",
        make: password,
        contexts: &[
            "\"env\": [{\"name\":\"DB_PASSWORD\",\"value\":\"{S}\"}]",
            "{\n  \"name\": \"API_TOKEN\",\n  \"value\": \"{S}\"\n}",
            "{\"value\": \"{S}\", \"name\": \"MYSQL_ROOT_PASSWORD\"}",
        ],
    },
    Format {
        name: "env (kubectl describe)",
        make: password,
        contexts: &[
            "    Environment:\n      DB_USER:      app\n      DB_PASSWORD:  {S}\n      DB_HOST:      db.prod.svc\n",
            "    Environment:\n      GRAFANA_ADMIN_PASSWD:  {S}\n    Mounts:\n",
            "      OAUTH_CLIENT_SECRET:  {S}\n",
        ],
    },
    Format {
        name: "env flags and .env",
        make: password,
        contexts: &[
            "$ podman run -e DB_PASSWORD={S} quay.io/acme/api:1.2",
            "$ oc set env deployment/api --env API_KEY={S}",
            "$ docker run --env \"SECRET_KEY={S}\" nginx",
            "export PGPASSWORD={S}\npsql -h db",
            "$ oc login --token {S} --server https://api.prod:6443",
        ],
    },
    Format {
        name: "kubeconfig",
        make: base64_value,
        contexts: &[
            "users:\n- name: admin\n  user:\n    client-certificate-data: {S}\n",
            "users:\n- name: admin\n  user:\n    client-key-data: {S}\n",
            "{\"users\":[{\"name\":\"admin\",\"user\":{\"client-key-data\":\"{S}\"}}]}",
        ],
    },
    Format {
        name: "kubeconfig token/password",
        make: password,
        contexts: &[
            "users:\n- name: dev\n  user:\n    token: {S}\n",
            "users:\n- name: basic\n  user:\n    password: {S}\n    username: admin\n",
            "    auth-provider:\n      config:\n        refresh-token: {S}\n",
        ],
    },
    Format {
        name: "docker config auth",
        make: base64_value,
        contexts: &[
            "{\"auths\":{\"quay.io\":{\"auth\":\"{S}\",\"email\":\"\"}}}",
            "{\n  \"auths\": {\n    \"registry.redhat.io\": {\n      \"auth\": \"{S}\"\n    }\n  }\n}",
            "  .dockercfg: {S}\n",
        ],
    },
    Format {
        name: "connection string",
        make: password,
        contexts: &[
            "ConnectionStrings__Db=Server=sql.prod;Database=app;User Id=sa;Password={S};Encrypt=true",
            "DSN=Driver={ODBC Driver 18};Server=db;Uid=app;Pwd={S};",
            "level=error msg=\"cannot connect\" conn=\"Host=pg;Username=app;Password={S};Database=x\"",
        ],
    },
    Format {
        name: "Azure storage / Service Bus key",
        make: |seed| format!("{}==", fill(B64, 86, seed)),
        contexts: &[
            "AZURE_STORAGE_CONNECTION_STRING=DefaultEndpointsProtocol=https;AccountName=prodlogs;AccountKey={S};EndpointSuffix=core.windows.net",
            "Endpoint=sb://bus.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey={S}",
            "  connectionString: \"DefaultEndpointsProtocol=https;AccountName=x;AccountKey={S}\"\n",
        ],
    },
    Format {
        name: "URL credentials",
        make: password,
        contexts: &[
            "DATABASE_URL=postgres://app:{S}@db.prod.svc:5432/app",
            "time=\"2024-05-01T10:00:00Z\" level=info msg=\"connecting to amqp://guest:{S}@rabbitmq:5672/\"",
            "fatal: unable to access 'https://bot:{S}@git.example.com/acme/repo.git/': 403",
        ],
    },
    Format {
        name: "Authorization header",
        make: |seed| fill(B64URL, 40, seed),
        contexts: &[
            "$ curl -sk -H 'Authorization: Bearer {S}' https://api.prod:6443/api",
            "I0501 10:00:00.000 round_trippers.go:469] Request Headers: Authorization: Bearer {S}",
            "{\"level\":\"debug\",\"headers\":{\"Authorization\":\"token {S}\"}}",
            "level=debug msg=request authorization=\"Bearer {S}\" status=401",
            "map[Accept:[application/json] Authorization:[Bearer {S}]]",
        ],
    },
    Format {
        name: "Cookie header",
        make: |seed| fill(ALNUM, 32, seed),
        contexts: &[
            "> Cookie: _oauth_proxy={S}; csrf=1",
            "< Set-Cookie: openshift-session-token={S}; Path=/; Secure; HttpOnly",
            "{\"request\":{\"headers\":{\"cookie\":\"session={S}\"}}}",
        ],
    },
    Format {
        name: "API key and token headers",
        make: |seed| fill(ALNUM, 32, seed),
        contexts: &[
            "X-Api-Key: {S}",
            "X-Vault-Token: {S}",
            "level=info msg=\"proxying\" x-auth-token={S} upstream=10.0.0.1",
            "  headers:\n    X-Auth-Token: {S}\n",
        ],
    },
    Format {
        name: "OpenShift token",
        make: |seed| format!("sha256~{}", fill(B64URL, 43, seed)),
        contexts: &[
            "$ oc whoami -t\n{S}\n",
            "Logged into \"https://api.prod:6443\" as \"admin\" using the token provided: {S}",
            "E0501 oauth: failed to validate {S}: expired",
        ],
    },
    Format {
        name: "service account JWT",
        make: |seed| {
            format!(
                "eyJhbGciOiJSUzI1NiIsImtpZCI6Ik{}.eyJpc3MiOiJrdWJlcm5ldGVzL3Nl{}.{}",
                fill(B64URL, 20, seed),
                fill(B64URL, 60, seed + 1),
                fill(B64URL, 86, seed + 2)
            )
        },
        contexts: &[
            "$ kubectl create token default\n{S}\n",
            "{\"status\":{\"token\":\"{S}\",\"expirationTimestamp\":\"2024-05-01T11:00:00Z\"}}",
            "W0501 token for system:serviceaccount:prod:api rejected: {S}",
        ],
    },
    Format {
        name: "AWS access key id",
        make: |seed| format!("AKIA{}", fill(UPPER_NUM, 16, seed)),
        contexts: &[
            "aws_access_key_id = {S}",
            "level=error msg=\"AccessDenied\" key={S} region=eu-west-1",
            "  AWS_ACCESS_KEY_ID:  {S}\n",
        ],
    },
    Format {
        name: "AWS secret access key",
        make: |seed| fill(B64, 40, seed),
        contexts: &[
            "[default]\naws_secret_access_key = {S}\n",
            "{\"AccessKeyId\":\"x\",\"SecretAccessKey\":\"{S}\"}",
            "  AWS_SECRET_ACCESS_KEY:  {S}\n",
        ],
    },
    Format {
        name: "GCP service account key",
        make: |seed| fill(HEX, 40, seed),
        contexts: &[
            "{\"type\": \"service_account\", \"project_id\": \"prod\", \"private_key_id\": \"{S}\"}",
            "  \"private_key_id\": \"{S}\",\n",
            "{\"private_key\": \"-----BEGIN PRIVATE KEY-----\\nMIIEv{S}\\n-----END PRIVATE KEY-----\\n\"}",
        ],
    },
    Format {
        name: "GCP API key",
        make: |seed| format!("AIza{}", fill(B64URL, 35, seed)),
        contexts: &[
            "GET https://maps.googleapis.com/maps/api/geocode/json?key={S} 403",
            "  apiKey: {S}\n",
            "level=warn msg=quota key={S}",
        ],
    },
    Format {
        name: "Azure client secret",
        make: |seed| format!("{}8Q~{}", fill(ALNUM, 3, seed), fill(ALNUM, 34, seed + 1)),
        contexts: &[
            "AZURE_CLIENT_SECRET={S}",
            "  clientSecret: {S}\n",
            "credentials file: tenant=abc client={S}",
        ],
    },
    Format {
        name: "GitHub token",
        make: |seed| format!("ghp_{}", fill(ALNUM, 36, seed)),
        contexts: &[
            "remote: https://x-access-token:{S}@github.com/acme/repo",
            "GITHUB_TOKEN={S}",
            "{\"name\":\"GH_PAT\",\"value\":\"{S}\"}",
        ],
    },
    Format {
        name: "GitHub fine-grained PAT",
        make: |seed| {
            format!(
                "github_pat_11{}_{}",
                fill(ALNUM, 20, seed),
                fill(ALNUM, 59, seed + 1)
            )
        },
        contexts: &[
            "using {S} for the clone",
            "  pat: {S}\n",
            "git credential fill: password={S}",
        ],
    },
    Format {
        name: "GitLab token",
        make: |seed| format!("glpat-{}", fill(B64URL, 20, seed)),
        contexts: &[
            "PRIVATE-TOKEN: {S}",
            "gitlab-runner register --token {S}",
            "I0501 cloning with {S}",
        ],
    },
    Format {
        name: "Slack token",
        make: |seed| {
            format!(
                "xoxb-{}-{}-{}",
                fill("0123456789", 12, seed),
                fill("0123456789", 13, seed + 1),
                fill(ALNUM, 24, seed + 2)
            )
        },
        contexts: &[
            "SLACK_BOT_TOKEN={S}",
            "level=info msg=\"posting\" via={S}",
            "  slack: {S}\n",
        ],
    },
    Format {
        name: "Slack webhook",
        make: |seed| {
            format!(
                "T{}/B{}/{}",
                fill(UPPER_NUM, 8, seed),
                fill(UPPER_NUM, 10, seed + 1),
                fill(ALNUM, 24, seed + 2)
            )
        },
        contexts: &[
            "  url: https://hooks.slack.com/services/{S}\n",
            "alertmanager: slack_api_url: https://hooks.slack.com/services/{S}",
            "level=error msg=\"notify failed\" url=https://hooks.slack.com/services/{S}",
        ],
    },
    Format {
        name: "Stripe key",
        make: |seed| format!("sk_live_{}", fill(ALNUM, 24, seed)),
        contexts: &[
            "STRIPE_API={S}",
            "charge failed with key {S}",
            "  stripe: {S}\n",
        ],
    },
    Format {
        name: "Anthropic key",
        make: |seed| format!("sk-ant-api03-{}", fill(B64URL, 93, seed)),
        contexts: &[
            "ANTHROPIC_API_KEY={S}",
            "x-api-key: {S}",
            "client configured with {S}",
        ],
    },
    Format {
        name: "OpenAI key",
        make: |seed| format!("sk-proj-{}", fill(B64URL, 48, seed)),
        contexts: &["OPENAI_API_KEY={S}", "{\"openai\":\"{S}\"}", "using {S}"],
    },
    Format {
        name: "npm token",
        make: |seed| format!("npm_{}", fill(ALNUM, 36, seed)),
        contexts: &[
            "//registry.npmjs.org/:_authToken={S}",
            "NPM_TOKEN: {S}",
            "npm ERR! token {S} revoked",
        ],
    },
    Format {
        name: "PyPI token",
        make: |seed| format!("pypi-AgEIcHlwaS5vcmc{}", fill(B64URL, 70, seed)),
        contexts: &[
            "[pypi]\nusername = __token__\npassword = {S}\n",
            "TWINE_PASSWORD={S}",
            "upload with {S}",
        ],
    },
    Format {
        name: "Twilio API key",
        make: |seed| format!("SK{}", fill(HEX, 32, seed)),
        contexts: &["TWILIO_API_KEY={S}", "twilio: using {S}", "  sid: {S}\n"],
    },
    Format {
        name: "SendGrid key",
        make: |seed| {
            format!(
                "SG.{}.{}",
                fill(B64URL, 22, seed),
                fill(B64URL, 43, seed + 1)
            )
        },
        contexts: &[
            "SENDGRID_API_KEY={S}",
            "mailer: {S}",
            "{\"sendgrid\":\"{S}\"}",
        ],
    },
    Format {
        name: "Vault token",
        make: |seed| format!("hvs.{}", fill(B64URL, 90, seed)),
        contexts: &[
            "VAULT_TOKEN={S}",
            "$ vault login {S}",
            "token_accessor  x\ntoken {S}\n",
        ],
    },
    Format {
        name: "PEM private key",
        make: |seed| fill(B64, 64, seed),
        contexts: &[
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEow{S}\nAbCd==\n-----END RSA PRIVATE KEY-----\n",
            "  tls.key: |\n    -----BEGIN EC PRIVATE KEY-----\n    MHcC{S}\n    -----END EC PRIVATE KEY-----\n",
            "{\"key\": \"-----BEGIN PRIVATE KEY-----\\nMIIE{S}\\n-----END PRIVATE KEY-----\\n\"}",
        ],
    },
    Format {
        name: "OpenSSH private key",
        make: |seed| fill(B64, 70, seed),
        contexts: &[
            "$ cat ~/.ssh/id_ed25519\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEA{S}\n-----END OPENSSH PRIVATE KEY-----\n",
            "ssh-privatekey: -----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl{S}\n",
        ],
    },
    Format {
        name: "high entropy near a sensitive word",
        make: |seed| format!("{}7Qz", fill(ALNUM, 30, seed)),
        contexts: &[
            "the bootstrap token is {S} (valid for 24h)",
            "rotated the signing key to {S} at 10:00",
            "I0501 webhook secret now {S}",
        ],
    },
];

/// Text that must come back unchanged.
fn benign() -> Vec<String> {
    let mut out: Vec<String> = [
        "quay.io/openshift-release-dev/ocp-release@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "    image: registry.redhat.io/rhel9/postgresql-15@sha256:0f5b3c8e2a1d4e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f\n",
        "  imageID: quay.io/acme/api@sha256:9b2c7e4d1a0f3e6b8c5d2a7f4e1b9c6d3a0f7e4b1c8d5a2f9e6b3c0d7a4e1f8b",
        "  uid: 8f2c1a4e-9b3d-4c5e-a1f2-3b4c5d6e7f80\n",
        "    uid: 0b7c9d2e-4f1a-4b3c-8d5e-6f7a8b9c0d1e\n  resourceVersion: \"123456789\"\n",
        "metadata:\n  generation: 42\n  resourceVersion: \"987654321\"\n",
        "apiVersion: v1\ndata:\n  config.yaml: |\n    logLevel: info\n  ca-bundle.crt: Q0VSVElGSUNBVEU=\nkind: ConfigMap\nmetadata:\n  name: trusted-ca\n",
        "apiVersion: v1\nbinaryData:\n  logo.png: iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==\nkind: ConfigMap\n",
        "{\n    \"apiVersion\": \"v1\",\n    \"data\": {\n        \"settings\": \"eyJsb2ciOiJpbmZvIn0=\"\n    },\n    \"kind\": \"ConfigMap\"\n}",
        "commit 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nAuthor: Jane <jane@example.com>\n",
        "    io.openshift.build.commit.id: 1f2e3d4c5b6a79880f1e2d3c4b5a69788f9e0d1c\n",
        "auth operator at commit 5a1b2c3d4e5f60718293a4b5c6d7e8f901a2b3c4",
        "NAME                                                   READY   STATUS    RESTARTS   AGE\nkube-apiserver-operator-7d9f8b6c4-xk2lp                1/1     Running   0          3d4h\n",
        "NAME                                 TYPE                                  DATA   AGE\nbuilder-dockercfg-x7k2p              kubernetes.io/dockercfg               1      12d\nbuilder-token-9fzq4                  kubernetes.io/service-account-token   4      12d\n",
        "NAME          HOST/PORT                              PATH   SERVICES   PORT    TERMINATION\nconsole       console-openshift-console.apps.prod           console    https   reencrypt\n",
        "openshift-authentication-operator-5c8d7b9f6-abcde   1/1   Running   2   10d",
        "oauth-openshift-6b7c8d9e5f-x2v4n 1/1 Running 0 2d",
        "Events:\n  Type     Reason     Age   From     Message\n  Warning  Failed     2m    kubelet  Failed to pull image: unauthorized: authentication required\n",
        "  Normal   Pulled     5m    kubelet  Successfully pulled image \"quay.io/acme/api:v1.2.3\" in 2.1s\n",
        "  Warning  FailedMount  1m  kubelet  MountVolume.SetUp failed for volume \"token\" : secret \"api-token\" not found\n",
        "Please rotate the database password; the password policy requires 16 characters.",
        "The token expired; run oc login again to get a new token.",
        "Check that the secret key reference is correct and the API key has not been revoked.",
        "Authentication failed because the credential was missing.",
        "    Serial Number: 3a:4b:5c:6d:7e:8f:90:a1:b2:c3:d4:e5:f6:07:18:29\n",
        "SHA256 Fingerprint=3A:4B:5C:6D:7E:8F:90:A1:B2:C3:D4:E5:F6:07:18:29:3A:4B:5C:6D:7E:8F:90:A1:B2:C3:D4:E5:F6:07:18:29",
        "the key fingerprint is 3A:4B:5C:6D:7E:8F:90:A1:B2:C3:D4:E5:F6:07:18:29",
        "  secretName: api-tls\n",
        "      - secretRef:\n          name: db-credentials\n",
        "        valueFrom:\n          secretKeyRef:\n            key: password\n            name: db\n",
        "        - name: DB_PASSWORD\n          valueFrom:\n            secretKeyRef:\n              key: password\n              name: db\n",
        "      DB_PASSWORD:  <set to the key 'password' in secret 'db'>  Optional: false\n",
        "Name:         db\nType:         Opaque\n\nData\n====\npassword:  16 bytes\nusername:  5 bytes\n",
        "  tolerations:\n  - effect: NoSchedule\n    key: node-role.kubernetes.io/master\n    operator: Exists\n",
        "  - key: node.kubernetes.io/not-ready\n",
        "input_tokens=1200 output_tokens=80 cache_read_input_tokens=0",
        "level=info msg=\"token refreshed\" expires_in=3600 ttl=1h",
        "level=info ts=2024-05-01T10:00:00Z caller=main.go:42 msg=\"Starting Prometheus\" version=2.48.0",
        "I0501 10:00:00.123456       1 controller.go:120] Successfully synced 'prod/api'",
        "E0501 10:00:00.000000 1 reflector.go:138] failed to list *v1.Secret: secrets is forbidden: User \"system:serviceaccount:prod:api\" cannot list resource \"secrets\"",
        "https://console-openshift-console.apps.prod.example.com/k8s/ns/openshift-config/secrets",
        "$ kubectl get secrets -n openshift-config",
        "$ oc get secret pull-secret -n openshift-config -o jsonpath='{.metadata.name}'",
        "  serviceAccountName: builder\n  automountServiceAccountToken: false\n",
        "    volumeMounts:\n    - mountPath: /var/run/secrets/kubernetes.io/serviceaccount\n      name: kube-api-access-x7k2p\n",
        "  TOKEN_FILE:  /var/run/secrets/token\n",
        "SECRET_NAME=db-credentials",
        "AUTH_URL=https://oauth-openshift.apps.prod.example.com",
        "PWD=/home/core",
        "  sortKey: metadata.name\n",
        "The kube-apiserver uses a bearer token to authenticate; Bearer authentication failed.",
        "Basic information about the cluster follows.",
        "## Findings\n\n- etcd is slow (p99 fsync 120ms)\n- 3 Secrets exist in the namespace\n",
        "| Cluster | Phase |\n|---|---|\n| prod-1 | Completed |\n",
        "clusterversion.config.openshift.io/version   4.15.12   True   False   3d   Cluster version is 4.15.12",
        "machineconfigpool/worker rendered-worker-5f3b2a1c9d8e7f6a5b4c3d2e1f0a9b8c updated",
        "  nodeName: ip-10-0-142-17.eu-west-1.compute.internal\n",
        "clusters-prod-1-control-plane-operator-7f9d8c6b5a-q2w3e",
        "token-refresher-5d6e7f8a9b-c1d2e 1/1 Running 0 4d",
        "    certificate: {subject: CN=api.prod, notAfter: 2025-01-01}\n",
        "Signature Algorithm: sha256WithRSAEncryption",
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: builder\nsecrets:\n- name: builder-token-9fzq4\n",
        "level=warn msg=\"slow request\" path=/apis/apps/v1/namespaces/prod/deployments duration=1.2s",
        "2024-05-01T10:00:00Z pod/etcd-0 readiness probe failed: HTTP probe failed with statuscode: 503",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    // Generated look-alikes: more digests, UIDs and commits.
    for seed in 0..6 {
        out.push(format!("image@sha256:{}", fill(HEX, 64, 1000 + seed)));
        let u = fill(HEX, 32, 2000 + seed);
        out.push(format!(
            "  uid: {}-{}-{}-{}-{}\n",
            &u[..8],
            &u[8..12],
            &u[12..16],
            &u[16..20],
            &u[20..]
        ));
        out.push(format!(
            "secret rotated by commit {}",
            fill(HEX, 40, 3000 + seed)
        ));
    }
    out
}

#[test]
fn the_corpus_loses_every_secret_and_keeps_every_look_alike() {
    let mut planted = 0;
    let mut formats = BTreeSet::new();
    let mut survived = Vec::new();
    let mut seed = 1;
    for format in FORMATS {
        for context in format.contexts {
            seed += 1;
            let secret = (format.make)(seed);
            let input = context.replace("{S}", &secret);
            let redaction = redact::text(&input);
            planted += 1;
            formats.insert(format.name);
            if redaction.contains(&secret) {
                survived.push(format!("[{}] {}\n=> {}", format.name, input, &*redaction));
            }
            assert!(
                redaction.removed.total() >= 1,
                "[{}] nothing counted for:\n{input}",
                format.name
            );
            assert_eq!(
                &*redact::text(&redaction),
                &*redaction,
                "[{}] not idempotent",
                format.name
            );
        }
    }
    let benign = benign();
    let mut false_positives = Vec::new();
    for input in &benign {
        let redaction = redact::text(input);
        if &*redaction != input.as_str() {
            false_positives.push(format!("{input}\n=> {}", &*redaction));
        }
    }
    println!(
        "redaction corpus: {} secrets in {} formats removed; {} benign kept; {} false positives",
        planted - survived.len(),
        formats.len(),
        benign.len() - false_positives.len(),
        false_positives.len()
    );
    assert!(planted >= 120, "only {planted} planted secrets");
    assert!(formats.len() >= 25, "only {} formats", formats.len());
    assert!(benign.len() >= 60, "only {} benign texts", benign.len());
    assert!(
        survived.is_empty(),
        "secrets survived:\n{}",
        survived.join("\n\n")
    );
    assert!(
        false_positives.is_empty(),
        "benign text changed:\n{}",
        false_positives.join("\n\n")
    );
}

/// What the red-team corpus of issue 24 found redaction missed, by form. `{S}` is the secret,
/// which must be gone from `redact::text`'s output (and from `redact::json`'s, for JSON);
/// forms marked JSON-only are found by `redact::json` alone.
const MISSED_FORMS: &[(&str, &[&str])] = &[
    (
        "names: *_PASS, *_PW, PIN, PASSCODE, *_SALT, HMAC, *_SAS, pass=",
        &[
            "DB_PASS={S}",
            "export SMTP_PW={S}",
            "PIN: {S}\n",
            "PASSCODE={S}",
            "  HASH_SALT: {S}\n",
            "HMAC={S}",
            "STORAGE_SAS={S}",
            "connect host=db pass={S} user=app",
            "{\"ADMIN_PASS\": \"{S}\"}",
            "{\"hmac\": \"{S}\"}",
            "{\"sim_pin\": \"{S}\"}",
        ],
    ),
    (
        "escaped JSON inside a JSON log line",
        &[
            "{\"level\":\"info\",\"msg\":\"{\\\"password\\\":\\\"{S}\\\"}\"}",
            "{\"msg\":\"{\\\"user\\\":\\\"app\\\",\\\"api_key\\\":\\\"{S}\\\",\\\"n\\\":1}\"}",
        ],
    ),
    (
        "YAML block scalars",
        &[
            "config:\n  password: |\n    {S}\n    second line\n  user: app\n",
            "client_secret: >\n  {S}\n",
            "  token: |-\n    {S}\nnext: 1\n",
        ],
    ),
    (
        "nested keys (JSON-only)",
        &[
            "{\"credentials\":{\"pass\":\"{S}\"}}",
            "{\"credentials\":{\"user\":\"{S}\"}}",
            "{\"secret\":{\"value\":\"{S}\",\"type\":\"Opaque\"}}",
        ],
    ),
    (
        "command-line credential flags",
        &[
            "$ curl -u admin:{S} https://api.prod:6443/healthz",
            "$ curl -sk --user 'admin:{S}' https://x",
            "$ mysql -h db -u root -p{S} app",
            "$ mysql --password={S} -h db",
            "$ ldapsearch -x -H ldap://ldap -w {S} -b dc=x",
            "$ tool -D cn=admin,dc=example,dc=com -w {S}",
            "$ sshpass -p {S} ssh core@node",
        ],
    ),
    (
        "signed URL query parameters",
        &[
            "GET https://b.s3.amazonaws.com/o?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={S}&X-Amz-Signature=0a1b2c3d4e5f60718293a4b5c6d7e8f9",
            "https://b.s3.amazonaws.com/o?X-Amz-Signature={S}&X-Amz-Date=20240501T000000Z",
            "https://b.s3.amazonaws.com/o?X-Amz-Security-Token={S}",
            "https://acct.blob.core.windows.net/c/b?sv=2022-11-02&se=2024-05-01T00%3A00Z&sr=b&sp=r&sig={S}",
            "https://storage.googleapis.com/b/o?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Signature={S}",
            "callback https://hooks.example.com/x?signature={S}&ts=1",
        ],
    ),
    (
        "passwords holding @ or / in URLs",
        &[
            "https://user:p@ss/{S}@host.example.com/",
            "DATABASE_URL=postgres://app:x@y/{S}@db.prod.svc:5432/app",
        ],
    ),
    (
        "PEM private keys indented or cut off",
        &[
            "data:\nstringData:\n  x: y\n---\n  tls.key: |\n    -----BEGIN RSA PRIVATE KEY-----\n    MIIEow{S}\n    -----END RSA PRIVATE KEY-----\n",
            "files:\n- contents: |\n      -----BEGIN PRIVATE KEY-----\n      MIIEv{S}\n",
            "-----BEGIN EC PRIVATE KEY-----\nMHcC{S} and the log was cut here",
        ],
    ),
];

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    let alphabet = B64.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(alphabet[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A base64 `data:` URL of a docker config (`{"auths":{...:{"auth":"<secret>"}}}`), as a
/// MachineConfig or an ignition config inlines a pull secret.
fn pull_secret_data_url(secret: &str) -> String {
    let json = format!("{{\"auths\":{{\"quay.io\":{{\"auth\":\"{secret}\",\"email\":\"\"}}}}}}");
    format!(
        "data:text/plain;charset=utf-8;base64,{}",
        base64(json.as_bytes())
    )
}

#[test]
fn the_red_team_forms_are_redacted() {
    let mut survived = Vec::new();
    let mut seed = 9000;
    for (form, contexts) in MISSED_FORMS {
        for context in *contexts {
            seed += 1;
            let secret = format!("{}{}", fill(ALNUM, 18, seed), seed % 10);
            let input = context.replace("{S}", &secret);
            let once = redact::text(&input);
            let json_only = form.ends_with("(JSON-only)");
            if !json_only && (once.contains(&secret) || once.removed.is_empty()) {
                survived.push(format!("[{form}] text: {input}\n=> {}", &*once));
            }
            assert_eq!(&*redact::text(&once), &*once, "[{form}] not idempotent");
            if let Ok(mut value) = serde_json::from_str::<serde_json::Value>(&input) {
                let shape = value.clone();
                redact::json(&mut value);
                let line = value.to_string();
                if line.contains(&secret) {
                    survived.push(format!("[{form}] json: {input}\n=> {line}"));
                }
                assert_same_shape(&shape, &value);
                let again = value.clone();
                assert!(
                    redact::json(&mut value).is_empty(),
                    "[{form}] json not idempotent"
                );
                assert_eq!(value, again);
            }
        }
    }
    // Pull secrets inlined as base64 `data:` URLs, in text and in a JSON document.
    let secret = format!("{}==", fill(B64, 30, 77));
    let url = pull_secret_data_url(&secret);
    let encoded_secret_part = &url[url.len() - 40..url.len() - 20];
    for input in [
        format!(
            "  storage:\n    files:\n    - contents:\n        source: {url}\n      path: /var/lib/kubelet/config.json\n"
        ),
        format!(
            "{{\"storage\":{{\"files\":[{{\"contents\":{{\"source\":\"{url}\"}},\"path\":\"/var/lib/kubelet/config.json\"}}]}}}}"
        ),
        format!(
            "data:,%7B%22auths%22%3A%7B%22quay.io%22%3A%7B%22auth%22%3A%22{secret}%22%7D%7D%7D"
        ),
    ] {
        let out = redact::text(&input);
        if out.contains(encoded_secret_part)
            || out.contains(&secret)
            || out.removed.get("data_url") != 1
        {
            survived.push(format!("[data: URL] {input}\n=> {}", &*out));
        }
        if let Ok(mut value) = serde_json::from_str::<serde_json::Value>(&input) {
            redact::json(&mut value);
            if value.to_string().contains(encoded_secret_part) {
                survived.push(format!("[data: URL] json: {input}\n=> {value}"));
            }
        }
    }
    assert!(
        survived.is_empty(),
        "secrets survived:\n{}",
        survived.join("\n\n")
    );
}

/// Whether `b` has the shape of `a`: the same keys, array lengths and value types.
fn assert_same_shape(a: &serde_json::Value, b: &serde_json::Value) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>());
            for (k, v) in x {
                assert_same_shape(v, &y[k]);
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len());
            x.iter().zip(y).for_each(|(v, w)| assert_same_shape(v, w));
        }
        (Value::String(_), Value::String(_))
        | (Value::Number(_), Value::Number(_))
        | (Value::Bool(_), Value::Bool(_))
        | (Value::Null, Value::Null) => {}
        _ => panic!("shape changed: {a} became {b}"),
    }
}

/// A certificate, as `openssl` prints one (its body is filler, not a real certificate).
fn certificate(seed: u64) -> String {
    format!(
        "-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIE{}\n{}\n-----END CERTIFICATE-----\n",
        fill(B64, 44, seed),
        fill(B64, 64, seed + 1)
    )
}

/// What the red-team corpus found redaction destroyed: findings an engineer needs, which
/// must come back byte for byte from `redact::text` (and unchanged from `redact::json`).
fn destroyed_findings() -> Vec<(&'static str, String)> {
    let cert = certificate(500);
    let cert_b64 = base64(certificate(501).as_bytes());
    vec![
        (
            "kubelet config: authorization is a section",
            "{\"authentication\":{\"webhook\":{\"enabled\":true}},\"authorization\":{\"mode\":\"Webhook\"}}".to_owned(),
        ),
        (
            "kubelet config, pretty",
            "{\n  \"authorization\": {\n    \"mode\": \"Webhook\",\n    \"webhook\": {\"cacheAuthorizedTTL\": \"5m0s\"}\n  }\n}".to_owned(),
        ),
        ("auth=failed", "level=warn msg=\"login\" auth=failed user=admin".to_owned()),
        ("auth: required", "  auth: required\n".to_owned()),
        ("PWD is the working directory", "PWD=/workspace\nHOME=/root\n".to_owned()),
        ("PWD in env output", "SHLVL=1\nPWD=/home/core\nOLDPWD=/\n".to_owned()),
        (
            "ConfigMap values: booleans, numbers, empty strings",
            "apiVersion: v1\ndata:\n  enabled: \"true\"\n  retries: \"3\"\n  debug: \"false\"\n  suffix: \"\"\nkind: ConfigMap\n".to_owned(),
        ),
        (
            "data whose kind is cut off: booleans and numbers",
            "data:\n  enabled: \"true\"\n  tokenTTL: \"3600\"\n  maxToken: \"4096\"\n".to_owned(),
        ),
        ("a token count", "{\"max_token\": \"4096\", \"token_limit\": 100}".to_owned()),
        ("a certificate", cert.clone()),
        ("a certificate in YAML", format!("  ca.crt: |\n    {}", cert.replace('\n', "\n    "))),
        ("a certificate in JSON", format!("{{\"ca.crt\": {:?}}}", cert)),
        (
            "base64 certificates in a Secret's data",
            format!("apiVersion: v1\ndata:\n  tls.crt: {cert_b64}\n  ca.crt: {cert_b64}\nkind: Secret\n"),
        ),
        (
            "a base64 CA bundle in a ConfigMap with no kind in view",
            format!("data:\n  ca-bundle.crt: {cert_b64}\n"),
        ),
        (
            "a kubeconfig's CA and client certificate",
            format!("clusters:\n- cluster:\n    certificate-authority-data: {cert_b64}\nusers:\n- user:\n    client-certificate-data: {cert_b64}\n"),
        ),
        (
            "a data: URL holding no secret",
            "source: data:,%5BService%5D%0AExecStart%3D%2Fusr%2Fbin%2Ftrue\n".to_owned(),
        ),
        (
            "a registry port before an image digest",
            "image: docker://registry.local:5000/ns/img@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".to_owned(),
        ),
        ("a uid and gid", "$ podman run --user 1000:1000 quay.io/acme/api".to_owned()),
        ("mkdir -p", "$ mkdir -p /var/lib/x && ssh -p 2222 core@node".to_owned()),
    ]
}

#[test]
fn the_red_team_findings_are_kept() {
    let mut changed = Vec::new();
    for (name, input) in destroyed_findings() {
        let out = redact::text(&input);
        if *out != *input {
            changed.push(format!("[{name}] {input}\n=> {}", &*out));
        }
        if let Ok(mut value) = serde_json::from_str::<serde_json::Value>(&input) {
            let before = value.clone();
            let removed = redact::json(&mut value);
            if value != before {
                changed.push(format!("[{name}] json: {input}\n=> {value} ({removed:?})"));
            }
        }
    }
    assert!(
        changed.is_empty(),
        "findings changed:\n{}",
        changed.join("\n\n")
    );
}

/// Inputs built to make a rule rescan: each trigger repeated thousands of times. Redaction
/// is one pass per rule, so each takes milliseconds; a rule that rescanned from every
/// match would take minutes on the larger size and the test would hang past nextest's
/// slow timeout (no timing is asserted: the machine is shared).
#[test]
fn adversarial_repetition_is_redacted_in_one_pass() {
    const TRIGGERS: &[&str] = &[
        "data:",
        "data:\n",
        "data:text/plain;base64,",
        "password=",
        "password: |\n",
        "-----BEGIN ",
        "-----BEGIN CERTIFICATE-----\n",
        "-----BEGIN PRIVATE KEY-----",
        "eyJ",
        "Bearer ",
        "\"password\":\"",
        "\\\"password\\\":\\\"",
        "Authorization: ",
        "Cookie:",
        "https://u:",
        "https://u:x@",
        "curl -u ",
        "mysql -p",
        "?sig=",
        "- name: DB_PASSWORD\n",
        "token ",
        "kind: Secret\ndata:\n",
    ];
    for size in [64 * 1024, 256 * 1024] {
        for trigger in TRIGGERS {
            let input = trigger.repeat(size / trigger.len());
            let once = redact::text(&input);
            if size == 64 * 1024 {
                assert_eq!(
                    &*redact::text(&once),
                    &*once,
                    "{trigger:?} x {size}: not idempotent"
                );
            }
        }
    }
}
