//! Layer 2: tokens recognisable by their shape alone, wherever they stand.
//!
//! Each rule is written from the provider's documented token format; the source is named
//! beside it. Public rule sets (gitleaks, GitHub secret scanning's partner list) were read
//! to learn which formats exist, not copied. Every pattern is compiled twice: once into the
//! [`RULES`] set that scans the text in one pass, and once alone, run only when the set says
//! it matched.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::{Regex, SetMatches};

use crate::counts::Counts;
use crate::structure::{Edits, regex};

/// One token format. When the pattern has a `secret` group only that group is replaced
/// (the host of a webhook URL stays readable); otherwise the whole match is.
pub(crate) struct Rule {
    pub(crate) kind: &'static str,
    pub(crate) pattern: &'static str,
}

/// A word boundary that works on bytes, so the lazy DFA keeps running on non-ASCII input
/// (a Unicode `\b` makes the regex crate fall back to a slower engine there).
macro_rules! b {
    () => {
        r"(?-u:\b)"
    };
}

/// Every token rule, in the order they are applied. More specific formats come first
/// (`sk-ant-` before OpenAI's `sk-`).
pub(crate) const TOKEN_RULES: &[Rule] = &[
    // OpenShift OAuth access and authorize tokens: `sha256~` then 43 base64url characters
    // (openshift/oauth-server, "sha256~" prefixed tokens since OpenShift 4.6).
    Rule {
        kind: "openshift_token",
        pattern: concat!(b!(), r"sha256~[A-Za-z0-9_-]{10,}"),
    },
    // JSON Web Tokens (RFC 7519): base64url header `{"` = `eyJ`, payload, signature;
    // Kubernetes service account tokens and OIDC id tokens are JWTs.
    Rule {
        kind: "jwt",
        pattern: concat!(
            b!(),
            r"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"
        ),
    },
    // AWS access key ids: 4-letter prefix (AKIA long-term, ASIA temporary, ABIA, ACCA) and
    // 16 upper-case base32 characters (AWS IAM User Guide, "Unique identifiers").
    Rule {
        kind: "aws_access_key",
        pattern: concat!(b!(), r"(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}", b!()),
    },
    // Google API keys: `AIza` and 35 characters (Google Cloud "Manage API keys").
    Rule {
        kind: "gcp_api_key",
        pattern: concat!(b!(), r"AIza[0-9A-Za-z_-]{35}"),
    },
    // Google OAuth client secrets: `GOCSPX-` prefix (Google Identity, client secret format
    // since 2021).
    Rule {
        kind: "gcp_client_secret",
        pattern: concat!(b!(), r"GOCSPX-[A-Za-z0-9_-]{24,}"),
    },
    // Microsoft Entra (Azure AD) client secrets: three characters, a digit, `Q~`, then 31-34
    // characters (Microsoft identity platform, application credential format).
    Rule {
        kind: "azure_client_secret",
        pattern: concat!(b!(), r"[A-Za-z0-9_~.]{3}[0-9]Q~[A-Za-z0-9_~.-]{31,34}"),
    },
    // Azure SAS tokens in URLs: the `sig=` query parameter is the HMAC signature (Azure
    // Storage "Create a service SAS", `sv=...&sig=...`).
    Rule {
        kind: "azure_sas",
        pattern: r"[?&]sig=(?P<secret>[A-Za-z0-9%+/=]{16,})",
    },
    // GitHub tokens: `ghp_` personal, `gho_` OAuth, `ghu_` user-to-server, `ghs_`
    // server-to-server, `ghr_` refresh, then 36 base62 characters; fine-grained PATs are
    // `github_pat_` (GitHub Docs, "About authentication to GitHub", token formats).
    Rule {
        kind: "github_token",
        pattern: concat!(b!(), r"gh[pousr]_[A-Za-z0-9]{20,}", b!()),
    },
    Rule {
        kind: "github_token",
        pattern: concat!(b!(), r"github_pat_[A-Za-z0-9_]{20,}"),
    },
    // GitLab tokens: `glpat-` personal/project/group, `gldt-` deploy, `glrt-` runner,
    // `glcbt-` CI job, `glimt-` incoming mail, `glagent-` agent, `gloas-` OAuth secret,
    // `glsoat-` SCIM, `glffct-` feature flags, `glft-` feed; `GR1348941` runner registration
    // (GitLab Docs, "Token prefixes").
    Rule {
        kind: "gitlab_token",
        pattern: concat!(
            b!(),
            r"gl(?:pat|dt|rt|cbt|imt|agent|oas|soat|ffct|ft)-[A-Za-z0-9_-]{20,}"
        ),
    },
    Rule {
        kind: "gitlab_token",
        pattern: concat!(b!(), r"glptt-[0-9a-f]{40}"),
    },
    Rule {
        kind: "gitlab_token",
        pattern: concat!(b!(), r"GR1348941[A-Za-z0-9_-]{20,}"),
    },
    // Slack tokens: `xoxb-` bot, `xoxp-` user, `xoxa-`, `xoxo-`, `xoxs-`, `xoxr-` refresh,
    // `xoxe-`; app-level `xapp-` (Slack API, "Token types").
    Rule {
        kind: "slack_token",
        pattern: concat!(b!(), r"xox[abposre](?:\.xox[abposre])?-[A-Za-z0-9-]{10,}"),
    },
    Rule {
        kind: "slack_token",
        pattern: concat!(b!(), r"xapp-[0-9]-[A-Z0-9]+-[0-9]+-[A-Za-z0-9]+"),
    },
    // Slack incoming webhooks: `hooks.slack.com/services/T.../B.../...` (Slack API,
    // "Sending messages using incoming webhooks"); the path is the secret.
    Rule {
        kind: "slack_webhook",
        pattern: r"hooks\.slack\.com/(?:services|workflows|triggers)/(?P<secret>[A-Za-z0-9_/+-]{20,})",
    },
    // Discord webhooks: `discord.com/api/webhooks/<id>/<token>` (Discord developer docs,
    // "Webhook resource").
    Rule {
        kind: "discord_webhook",
        pattern: r"discord(?:app)?\.com/api/webhooks/(?P<secret>[0-9]+/[A-Za-z0-9_-]{30,})",
    },
    // Stripe keys: `sk_live_`/`sk_test_` secret, `rk_live_`/`rk_test_` restricted; webhook
    // signing secrets `whsec_` (Stripe Docs, "API keys").
    Rule {
        kind: "stripe_key",
        pattern: concat!(b!(), r"(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{10,}"),
    },
    Rule {
        kind: "stripe_key",
        pattern: concat!(b!(), r"whsec_[A-Za-z0-9]{24,}"),
    },
    // Anthropic API keys: `sk-ant-api03-...`, admin keys `sk-ant-admin01-...` (Anthropic
    // Console key format).
    Rule {
        kind: "anthropic_key",
        pattern: concat!(b!(), r"sk-ant-[A-Za-z0-9_-]{8,}"),
    },
    // OpenAI API keys: project `sk-proj-`, service account `sk-svcacct-`, admin `sk-admin-`;
    // legacy user keys `sk-` + 20 + `T3BlbkFJ` (base64 of "OpenAI") + 20 (OpenAI API
    // reference, "Authentication").
    Rule {
        kind: "openai_key",
        pattern: concat!(b!(), r"sk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{20,}"),
    },
    Rule {
        kind: "openai_key",
        pattern: concat!(b!(), r"sk-[A-Za-z0-9_-]{16,}T3BlbkFJ[A-Za-z0-9_-]{16,}"),
    },
    // npm access tokens: `npm_` and 36 base62 characters (npm Docs, "About access tokens").
    Rule {
        kind: "npm_token",
        pattern: concat!(b!(), r"npm_[A-Za-z0-9]{36}", b!()),
    },
    // PyPI API tokens: macaroons prefixed `pypi-` whose body starts with the base64 of the
    // issuer, `AgEIcHlwaS5vcmc` for pypi.org (PyPI help, "API tokens").
    Rule {
        kind: "pypi_token",
        pattern: concat!(b!(), r"pypi-AgE[A-Za-z0-9_-]{16,}"),
    },
    // Twilio API key SIDs: `SK` and 32 hex digits (Twilio Docs, "API keys"); the auth token
    // next to its name is caught by the structure rules.
    Rule {
        kind: "twilio_key",
        pattern: concat!(b!(), r"SK[0-9a-fA-F]{32}", b!()),
    },
    // SendGrid API keys: `SG.` 22 characters `.` 43 characters (Twilio SendGrid Docs, "API
    // keys").
    Rule {
        kind: "sendgrid_key",
        pattern: concat!(b!(), r"SG\.[A-Za-z0-9_-]{16,32}\.[A-Za-z0-9_-]{16,64}"),
    },
    // HashiCorp Vault tokens: `hvs.` service, `hvb.` batch, `hvr.` recovery (Vault 1.10+
    // "Token prefixes").
    Rule {
        kind: "vault_token",
        pattern: concat!(b!(), r"hv[sbr]\.[A-Za-z0-9_-]{20,}"),
    },
    // DigitalOcean tokens: `dop_v1_` personal, `doo_v1_` OAuth, `dor_v1_` refresh, then 64
    // hex (DigitalOcean Docs, "Personal access tokens").
    Rule {
        kind: "digitalocean_token",
        pattern: concat!(b!(), r"do[opr]_v1_[a-f0-9]{64}"),
    },
    // Hugging Face user access tokens: `hf_` and 34 letters (Hugging Face Hub docs,
    // "User access tokens").
    Rule {
        kind: "huggingface_token",
        pattern: concat!(b!(), r"hf_[A-Za-z]{34}", b!()),
    },
    // Docker Hub personal access tokens: `dckr_pat_` (Docker Docs, "Access tokens").
    Rule {
        kind: "docker_hub_token",
        pattern: concat!(b!(), r"dckr_pat_[A-Za-z0-9_-]{20,}"),
    },
    // Shopify access tokens: `shpat_`, `shpca_`, `shppa_`, `shpss_` and 32 hex (Shopify dev
    // docs, "Access tokens").
    Rule {
        kind: "shopify_token",
        pattern: concat!(b!(), r"shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}"),
    },
    // Databricks personal access tokens: `dapi` and 32 hex (Databricks docs, "Personal
    // access tokens").
    Rule {
        kind: "databricks_token",
        pattern: concat!(b!(), r"dapi[a-f0-9]{32}(?:-[0-9]+)?", b!()),
    },
    // Grafana service account tokens `glsa_` and Grafana Cloud tokens `glc_` (Grafana docs,
    // "Service accounts", "Access policies").
    Rule {
        kind: "grafana_token",
        pattern: concat!(b!(), r"glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}"),
    },
    Rule {
        kind: "grafana_token",
        pattern: concat!(b!(), r"glc_[A-Za-z0-9+/]{32,}={0,2}"),
    },
    // age secret keys: Bech32 with the `AGE-SECRET-KEY-1` human-readable part (age
    // specification, C2SP age.md).
    Rule {
        kind: "age_secret_key",
        pattern: concat!(
            b!(),
            r"AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}"
        ),
    },
    // Postman API keys: `PMAK-` 24 hex `-` 34 hex (Postman Learning Center, "API keys").
    Rule {
        kind: "postman_key",
        pattern: concat!(b!(), r"PMAK-[a-f0-9]{24}-[a-f0-9]{34}"),
    },
    // New Relic user API keys: `NRAK-` and 27 characters (New Relic docs, "API keys").
    Rule {
        kind: "newrelic_key",
        pattern: concat!(b!(), r"NRAK-[A-Z0-9]{27}"),
    },
    // Atlassian API tokens: `ATATT3` prefix (Atlassian support, "Manage API tokens").
    Rule {
        kind: "atlassian_token",
        pattern: concat!(b!(), r"ATATT3[A-Za-z0-9_=-]{50,}"),
    },
    // Sentry auth tokens: `sntrys_` organisation and `sntryu_` user tokens (Sentry docs,
    // "Auth tokens").
    Rule {
        kind: "sentry_token",
        pattern: concat!(b!(), r"sntry[su]_[A-Za-z0-9+/=_-]{40,}"),
    },
    // Linear API keys: `lin_api_` and 40 characters (Linear developers, "API keys").
    Rule {
        kind: "linear_key",
        pattern: concat!(b!(), r"lin_api_[A-Za-z0-9]{40}"),
    },
    // Pulumi access tokens: `pul-` and 40 hex (Pulumi docs, "Access tokens").
    Rule {
        kind: "pulumi_token",
        pattern: concat!(b!(), r"pul-[a-f0-9]{40}", b!()),
    },
    // Terraform Cloud / HCP Terraform API tokens: 14 characters, `.atlasv1.`, then the rest
    // (HashiCorp docs, "API tokens").
    Rule {
        kind: "terraform_token",
        pattern: concat!(b!(), r"[A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_=-]{60,}"),
    },
    // Doppler service tokens: `dp.st.`, personal `dp.pt.`, CLI `dp.ct.` (Doppler docs,
    // "Service tokens").
    Rule {
        kind: "doppler_token",
        pattern: concat!(b!(), r"dp\.(?:st|pt|ct|sa|scim|audit)\.[A-Za-z0-9_.-]{40,}"),
    },
];

/// The token rules compiled alone, in [`TOKEN_RULES`] order.
pub(crate) static RULES: LazyLock<Vec<Regex>> =
    LazyLock::new(|| TOKEN_RULES.iter().map(|rule| regex(rule.pattern)).collect());

/// Applies the token rules that `matched` says matched, `offset` being the index of the first
/// token rule in the set that produced `matched`.
pub(crate) fn tokens<'h>(
    input: &'h str,
    matched: &SetMatches,
    offset: usize,
    counts: &mut Counts,
) -> Cow<'h, str> {
    let mut text = Cow::Borrowed(input);
    for (i, (rule, pattern)) in TOKEN_RULES.iter().zip(RULES.iter()).enumerate() {
        if !matched.matched(offset + i) {
            continue;
        }
        let mut edits = Edits::new(&text);
        for caps in pattern.captures_iter(&text) {
            if let Some(m) = caps.name("secret").or_else(|| caps.get(0)) {
                edits.redact(m.range(), rule.kind, counts);
            }
        }
        if let Cow::Owned(changed) = edits.finish() {
            text = Cow::Owned(changed);
        }
    }
    text
}
