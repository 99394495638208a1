//! Logging set up once per process: level from `RUST_LOG` (default `info`), text or JSON.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Calling it twice (tests, the local stack running several
/// daemons in one process) keeps the first one.
pub fn init(format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
