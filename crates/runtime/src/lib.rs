//! What every claude-warroom daemon shares: the NATS connection and the JetStream layout
//! (streams and buckets, created idempotently by whichever daemon starts first), JSON
//! publishing with deduplication ids, telemetry, the shutdown signal, and the `/healthz`,
//! `/readyz` and `/metrics` endpoints.

pub mod bus;
pub mod check;
pub mod config;
pub mod daemon;
pub mod duration;
pub mod health;
pub mod lease;
pub mod metrics;
pub mod retry;
pub mod shutdown;
pub mod telemetry;

pub use bus::{
    AckError, Bus, BusError, Connection, Consumer, ConsumerSpec, DeadLetter, Delivery, Stored,
};
pub use duration::parse_duration;

/// Shows an error with its causes, one after the other (`a: b: c`), the way `{e:#}` shows an
/// `anyhow::Error`. Our errors keep their cause in `source()` only, so this prints each once.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'a));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

pub use health::Health;
pub use metrics::{DaemonMetrics, RuntimeMetrics};

/// Options every daemon takes, flattened into its clap config.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// NATS server URL; the servers of a cluster separated by commas
    /// (`nats://a:4222,nats://b:4222`).
    #[arg(
        long,
        env = "WARROOM_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: String,
    /// NATS credentials file (`.creds`: JWT and NKey seed) of this component.
    #[arg(long, env = "WARROOM_NATS_CREDS")]
    pub nats_creds: Option<std::path::PathBuf>,
    /// File holding this component's NKey seed (`SU...`), for NKey users in the server's
    /// authorization config (`warroom-admin nats-auth` writes both).
    #[arg(long, env = "WARROOM_NATS_NKEY")]
    pub nats_nkey: Option<std::path::PathBuf>,
    /// CA certificate of the NATS server; turns TLS on.
    #[arg(long, env = "WARROOM_NATS_TLS_CA")]
    pub nats_tls_ca: Option<std::path::PathBuf>,
    /// Client certificate for mutual TLS (with --nats-tls-key).
    #[arg(long, env = "WARROOM_NATS_TLS_CERT", requires = "nats_tls_key")]
    pub nats_tls_cert: Option<std::path::PathBuf>,
    /// Client key for mutual TLS (with --nats-tls-cert).
    #[arg(long, env = "WARROOM_NATS_TLS_KEY", requires = "nats_tls_cert")]
    pub nats_tls_key: Option<std::path::PathBuf>,
    /// Replicas of the streams and buckets this daemon creates: 1, or 3 on a 3-node NATS
    /// cluster. Existing streams keep theirs.
    #[arg(long, env = "WARROOM_NATS_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub nats_replicas: u8,
    /// How long the events stream (redacted tool output, status snapshots) keeps messages,
    /// when this daemon creates it.
    #[arg(long, env = "WARROOM_EVENTS_RETENTION", default_value = "7d", value_parser = parse_duration)]
    pub events_retention: std::time::Duration,
    /// Address for /healthz, /readyz and /metrics (e.g. 0.0.0.0:8080); off when not given.
    #[arg(long, env = "WARROOM_HEALTH_ADDR")]
    pub health_addr: Option<std::net::SocketAddr>,
    /// Check the configuration and every file it names (credentials, keys, certificates,
    /// policy), print every problem found (or `ok: <summary>`) and exit 1 (or 0), without
    /// connecting to anything.
    #[arg(long)]
    pub check: bool,
    /// Log format: `text` or `json`. The level comes from RUST_LOG (default `info`).
    #[arg(long, env = "WARROOM_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// This replica's name in the leases of the daemons that run one active replica at a
    /// time (the dispatcher, the publisher). Default: $HOSTNAME (the pod name in
    /// Kubernetes), else a random id.
    #[arg(long, env = "WARROOM_REPLICA_ID")]
    pub replica_id: Option<String>,
    /// How long a lease lasts without renewal: a standby dispatcher or publisher takes over
    /// at most this long after the active one died (at once after a clean stop). Use the
    /// same value for every replica.
    #[arg(long, env = "WARROOM_LEASE_TTL", default_value = "15s", value_parser = parse_duration)]
    pub lease_ttl: std::time::Duration,
}

impl CommonArgs {
    /// How to reach NATS, as these flags say.
    pub fn connection(&self) -> bus::Connection {
        bus::Connection {
            url: self.nats_url.clone(),
            creds: self.nats_creds.clone(),
            nkey_seed: self.nats_nkey.clone(),
            tls_ca: self.nats_tls_ca.clone(),
            tls_cert: self.nats_tls_cert.clone(),
            tls_key: self.nats_tls_key.clone(),
            replicas: usize::from(self.nats_replicas),
            events_retention: self.events_retention,
        }
    }

    /// The lease `key` as this replica asks for it.
    pub fn lease(&self, key: &'static str) -> lease::LeaseSpec {
        let holder = self
            .replica_id
            .clone()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .filter(|h| !h.trim().is_empty())
            .unwrap_or_else(|| format!("{key}-{}", uuid::Uuid::new_v4().simple()));
        lease::LeaseSpec {
            key,
            holder,
            ttl: self.lease_ttl,
        }
    }

    /// Problems with these flags (an empty URL, files that are not there), each as one line
    /// naming the flag.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.nats_url.trim().is_empty() {
            problems.push("--nats-url must not be empty".to_owned());
        }
        if self.lease_ttl < std::time::Duration::from_secs(1) {
            problems.push(format!(
                "--lease-ttl must be at least 1s, not {:?}",
                self.lease_ttl
            ));
        }
        problems.extend(self.file_problems());
        problems
    }

    /// Problems with the files the flags name, read as the connection will read them: the
    /// seed as an NKey user seed, the credentials file, the TLS files as PEM with the key
    /// matching the certificate.
    fn file_problems(&self) -> Vec<String> {
        let files = [
            ("--nats-creds", &self.nats_creds),
            ("--nats-nkey", &self.nats_nkey),
            ("--nats-tls-ca", &self.nats_tls_ca),
            ("--nats-tls-cert", &self.nats_tls_cert),
            ("--nats-tls-key", &self.nats_tls_key),
        ];
        let mut problems: Vec<String> = files
            .iter()
            .filter_map(|(flag, path)| {
                let path = path.as_ref()?;
                match std::fs::metadata(path) {
                    Ok(meta) if meta.is_file() => None,
                    Ok(_) => Some(format!("{flag} {}: not a file", path.display())),
                    Err(e) => Some(format!("{flag} {}: {e}", path.display())),
                }
            })
            .collect();
        // Only files that are there are read: a missing one was noted once above.
        let present = |path: &Option<std::path::PathBuf>| {
            path.as_deref()
                .filter(|p| p.is_file())
                .map(std::path::Path::to_path_buf)
        };
        if let Some(seed) = present(&self.nats_nkey) {
            problems.extend(check::nkey_seed("--nats-nkey", &seed));
        }
        if let Some(creds) = present(&self.nats_creds) {
            problems.extend(check::creds("--nats-creds", &creds));
        }
        problems.extend(check::tls(
            present(&self.nats_tls_ca).as_deref(),
            present(&self.nats_tls_cert).as_deref(),
            present(&self.nats_tls_key).as_deref(),
        ));
        problems
    }

    /// How this daemon reaches NATS, for `--check`'s summary: the URL and which credentials.
    pub fn summary(&self) -> String {
        let mut with = Vec::new();
        if self.nats_creds.is_some() {
            with.push("credentials file");
        }
        if self.nats_nkey.is_some() {
            with.push("NKey");
        }
        if self.nats_tls_ca.is_some() {
            with.push("TLS");
        }
        if self.nats_tls_cert.is_some() {
            with.push("client certificate");
        }
        if with.is_empty() {
            with.push("no credentials");
        }
        format!(
            "NATS {} ({}), R{}",
            self.nats_url,
            with.join(", "),
            self.nats_replicas
        )
    }
}
