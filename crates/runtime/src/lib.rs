//! What every claude-warroom daemon shares: the NATS connection and the JetStream layout
//! (streams and buckets, created idempotently by whichever daemon starts first), JSON
//! publishing with deduplication ids, telemetry, the shutdown signal, and the `/healthz`,
//! `/readyz` and `/metrics` endpoints.

pub mod bus;
pub mod config;
pub mod duration;
pub mod git;
pub mod health;
pub mod shutdown;
pub mod telemetry;

pub use bus::{Bus, BusError};
pub use duration::parse_duration;
pub use health::{Health, Metrics};

/// Options every daemon takes, flattened into its clap config.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// NATS server URL.
    #[arg(
        long,
        env = "WARROOM_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: String,
    /// Address for /healthz, /readyz and /metrics (e.g. 0.0.0.0:8080); off when not given.
    #[arg(long, env = "WARROOM_HEALTH_ADDR")]
    pub health_addr: Option<std::net::SocketAddr>,
    /// Log format: `text` or `json`. The level comes from RUST_LOG (default `info`).
    #[arg(long, env = "WARROOM_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}
