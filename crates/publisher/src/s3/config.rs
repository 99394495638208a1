//! The S3 mirror's command line and environment, and their validation before any I/O.

use warroom_runtime::config::{Problems, Secret};

/// The region used when neither `--s3-region` nor `AWS_REGION` gives one.
const DEFAULT_REGION: &str = "us-east-1";

/// An S3-compatible bucket that mirrors `results/` (off unless `--s3-endpoint` and
/// `--s3-bucket` are both set).
#[derive(Debug, Clone, clap::Args)]
pub struct S3Args {
    /// The S3-compatible endpoint results are mirrored to, for example
    /// `https://s3.eu-west-1.amazonaws.com` or a MinIO server's `https://minio.example:9000`.
    /// After every push, each file under `results/` that changed is uploaded (the same
    /// redacted bytes as in git) and each deleted file is deleted. Off unless --s3-bucket is
    /// set too. Plain `http://` is accepted for a server on a trusted network: requests are
    /// signed, but the results cross it unencrypted.
    #[arg(long, env = "WARROOM_S3_ENDPOINT", value_name = "URL")]
    pub s3_endpoint: Option<String>,

    /// The bucket of the S3 mirror (it must exist; the publisher does not create it).
    #[arg(long, env = "WARROOM_S3_BUCKET")]
    pub s3_bucket: Option<String>,

    /// A folder in the bucket to put `results/` under: `team-a/warroom` stores
    /// `team-a/warroom/results/<id>/status.json`. Empty (the default): at the bucket's root.
    #[arg(long, env = "WARROOM_S3_PREFIX", default_value = "")]
    pub s3_prefix: String,

    /// The bucket's region, used to sign requests. Default: `AWS_REGION`, else `us-east-1`
    /// (what most S3-compatible servers expect).
    #[arg(long, env = "WARROOM_S3_REGION")]
    pub s3_region: Option<String>,

    /// Address the bucket in the path (`<endpoint>/<bucket>/<key>`), as MinIO and most
    /// S3-compatible servers expect, instead of in the host name
    /// (`<bucket>.<endpoint host>/<key>`, AWS's virtual-hosted style).
    #[arg(long, env = "WARROOM_S3_PATH_STYLE")]
    pub s3_path_style: bool,

    /// The access key id of the S3 mirror: the standard AWS variable.
    #[arg(long, env = "AWS_ACCESS_KEY_ID", hide_env_values = true)]
    pub s3_access_key_id: Option<Secret>,

    /// The secret access key of the S3 mirror: the standard AWS variable. Read it from the
    /// environment, not the command line, where other users could see it. Never logged.
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<Secret>,

    /// A session token for temporary credentials: the standard AWS variable.
    #[arg(long, env = "AWS_SESSION_TOKEN", hide_env_values = true)]
    pub s3_session_token: Option<Secret>,
}

/// A checked S3 mirror configuration.
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// The endpoint as given (scheme and host, maybe a port and a path).
    pub(crate) endpoint: String,
    /// What the client is given: the endpoint, with the bucket in its host name unless
    /// path-style.
    pub(crate) bucket_endpoint: String,
    pub(crate) bucket: String,
    /// The folder keys start with, without slashes at either end; empty for none.
    pub(crate) prefix: String,
    pub(crate) region: String,
    pub(crate) path_style: bool,
    pub(crate) access_key_id: Secret,
    pub(crate) secret_access_key: Secret,
    pub(crate) session_token: Option<Secret>,
}

impl S3Settings {
    /// For `--check` and the start log.
    pub(crate) fn summary(&self) -> String {
        let prefix = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        format!(
            "S3 mirror to s3://{}/{prefix}results/ at {} ({}-style)",
            self.bucket,
            self.endpoint,
            if self.path_style {
                "path"
            } else {
                "virtual-hosted"
            }
        )
    }
}

impl S3Args {
    /// Checks every S3 setting into `problems`: `None` when the mirror is off (or a setting
    /// is wrong, which is noted).
    pub(crate) fn settings(&self, problems: &mut Problems) -> Option<S3Settings> {
        let endpoint = self
            .s3_endpoint
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty());
        let bucket = self
            .s3_bucket
            .as_deref()
            .map(str::trim)
            .filter(|b| !b.is_empty());
        let (endpoint, bucket) = match (endpoint, bucket) {
            (None, None) => return None,
            (Some(_), None) => {
                problems.push("--s3-endpoint is set but --s3-bucket (WARROOM_S3_BUCKET) is not; give both or neither".to_owned());
                return None;
            }
            (None, Some(_)) => {
                problems.push("--s3-bucket is set but --s3-endpoint (WARROOM_S3_ENDPOINT) is not; give both or neither".to_owned());
                return None;
            }
            (Some(endpoint), Some(bucket)) => (endpoint, bucket),
        };
        let endpoint = endpoint.trim_end_matches('/');
        let prefix = self.s3_prefix.trim().trim_matches('/');
        let mut found = location_problems(endpoint, bucket, prefix, &self.s3_prefix);
        let region = self
            .s3_region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .map(|r| r.trim().to_owned())
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| DEFAULT_REGION.to_owned());
        let key = |secret: &Option<Secret>| {
            secret
                .as_ref()
                .map(|s| s.expose().trim().to_owned())
                .filter(|s| !s.is_empty())
        };
        let (access_key_id, secret_access_key) =
            match (key(&self.s3_access_key_id), key(&self.s3_secret_access_key)) {
                (Some(id), Some(secret)) => (id, secret),
                _ => {
                    found.push(
                        "--s3-endpoint and --s3-bucket are set but the S3 credentials are not: \
                         set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or \
                         --s3-access-key-id and --s3-secret-access-key)"
                            .to_owned(),
                    );
                    (String::new(), String::new())
                }
            };
        if !found.is_empty() {
            problems.extend(found);
            return None;
        }
        let bucket_endpoint = if self.s3_path_style {
            endpoint.to_owned()
        } else {
            // `https://host` becomes `https://<bucket>.host`.
            let (scheme, rest) = endpoint.split_once("://").unwrap_or(("https", endpoint));
            format!("{scheme}://{bucket}.{rest}")
        };
        Some(S3Settings {
            endpoint: endpoint.to_owned(),
            bucket_endpoint,
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            region,
            path_style: self.s3_path_style,
            access_key_id: Secret::new(access_key_id),
            secret_access_key: Secret::new(secret_access_key),
            session_token: key(&self.s3_session_token).map(Secret::new),
        })
    }
}

/// What is wrong with the endpoint, the bucket name and the prefix, one line each.
fn location_problems(
    endpoint: &str,
    bucket: &str,
    prefix: &str,
    given_prefix: &str,
) -> Vec<String> {
    let mut found = Vec::new();
    let host_start = endpoint
        .strip_prefix("https://")
        .or_else(|| endpoint.strip_prefix("http://"));
    match host_start {
        Some(rest) if !rest.is_empty() && !rest.contains(['@', '?', '#', ' ']) => {}
        _ => found.push(format!(
            "--s3-endpoint {endpoint:?} is not a URL; expected http:// or https:// and a \
             host, without credentials, query or fragment"
        )),
    }
    if let Some(problem) = bucket_problem(bucket) {
        found.push(format!("--s3-bucket {bucket:?} {problem}"));
    }
    if prefix.split('/').any(|part| matches!(part, "." | ".."))
        || prefix.contains("//")
        || prefix.chars().any(char::is_control)
    {
        found.push(format!(
            "--s3-prefix {given_prefix:?} is not a folder name; expected parts separated by \
             `/`, none empty, `.` or `..`"
        ));
    }
    found
}

/// What is wrong with an S3 bucket name, by S3's rules: 3 to 63 lower-case letters, digits,
/// `.` and `-`, starting and ending with a letter or digit.
fn bucket_problem(bucket: &str) -> Option<&'static str> {
    let ok_chars = bucket
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
    let ends_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !(3..=63).contains(&bucket.len()) {
        Some("is not a bucket name; expected 3 to 63 characters")
    } else if !ok_chars {
        Some("is not a bucket name; expected lower-case letters, digits, `.` and `-`")
    } else if !ends_ok(bucket.chars().next()) || !ends_ok(bucket.chars().last()) {
        Some("is not a bucket name; expected a letter or digit at each end")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        s3: S3Args,
    }

    fn settings(args: &[&str]) -> (Option<S3Settings>, Vec<String>) {
        let cli = Cli::try_parse_from(std::iter::once("test").chain(args.iter().copied()))
            .expect("the arguments parse");
        let mut problems = Problems::new();
        let settings = cli.s3.settings(&mut problems);
        let lines = problems
            .finish()
            .err()
            .map(|e| e.problems)
            .unwrap_or_default();
        (settings, lines)
    }

    const KEYS: [&str; 4] = [
        "--s3-access-key-id",
        "id",
        "--s3-secret-access-key",
        "secret",
    ];

    #[test]
    fn off_without_endpoint_and_bucket() {
        assert!(matches!(settings(&[]), (None, problems) if problems.is_empty()));
    }

    #[test]
    fn one_without_the_other_names_the_missing_flag() {
        let (_, problems) = settings(&["--s3-bucket", "results"]);
        assert!(
            problems[0].contains("--s3-endpoint (WARROOM_S3_ENDPOINT) is not"),
            "{problems:?}"
        );
        let (_, problems) = settings(&["--s3-endpoint", "https://s3.example"]);
        assert!(
            problems[0].contains("--s3-bucket (WARROOM_S3_BUCKET) is not"),
            "{problems:?}"
        );
    }

    #[test]
    fn bad_values_are_each_named() {
        let mut args = vec![
            "--s3-endpoint",
            "ftp://x",
            "--s3-bucket",
            "Results_",
            "--s3-prefix",
            "a/../b",
        ];
        args.extend(KEYS);
        let (settings, problems) = settings(&args);
        assert!(settings.is_none());
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems[0].starts_with("--s3-endpoint \"ftp://x\" is not a URL"),
            "{problems:?}"
        );
        assert!(
            problems[1].starts_with("--s3-bucket \"Results_\""),
            "{problems:?}"
        );
        assert!(
            problems[2].starts_with("--s3-prefix \"a/../b\""),
            "{problems:?}"
        );
    }

    #[test]
    fn credentials_are_required() {
        let (settings, problems) = settings(&[
            "--s3-endpoint",
            "https://s3.example",
            "--s3-bucket",
            "results",
        ]);
        assert!(settings.is_none());
        assert!(
            problems[0].contains("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
            "{problems:?}"
        );
    }

    #[test]
    fn virtual_hosted_style_puts_the_bucket_in_the_host() {
        let mut args = vec![
            "--s3-endpoint",
            "https://s3.example:9000/",
            "--s3-bucket",
            "results",
            "--s3-prefix",
            "/team/warroom/",
            "--s3-region",
            "eu-west-1",
        ];
        args.extend(KEYS);
        let (settings, problems) = settings(&args);
        assert!(problems.is_empty(), "{problems:?}");
        let settings = settings.expect("on");
        assert_eq!(settings.bucket_endpoint, "https://results.s3.example:9000");
        assert_eq!(settings.prefix, "team/warroom");
        assert_eq!(settings.region, "eu-west-1");
        assert_eq!(
            settings.summary(),
            "S3 mirror to s3://results/team/warroom/results/ at https://s3.example:9000 (virtual-hosted-style)"
        );
        args.push("--s3-path-style");
        let (settings, _) = self::settings(&args);
        assert_eq!(
            settings.expect("on").bucket_endpoint,
            "https://s3.example:9000"
        );
    }
}
