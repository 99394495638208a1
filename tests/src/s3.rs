//! A real S3-compatible server for tests: moto's server mode (`moto_server`, from PyPI,
//! installed by `scripts/setup` into `.tools/bin`), on a free port, killed on drop.
//!
//! moto keeps its buckets in memory: a [`S3Server::stop`] and [`S3Server::restart`] is an
//! outage that also loses every object, as a store replaced by an empty one would.
//! `WARROOM_MOTO_SERVER_BIN` overrides where `moto_server` is found.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::tools;

/// How long a start may take: moto imports every AWS service's models on a loaded machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// A running `moto_server`, owned by one test.
pub struct S3Server {
    dir: TempDir,
    port: u16,
    child: Option<Child>,
}

impl std::fmt::Debug for S3Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Server")
            .field("endpoint", &self.endpoint())
            .finish()
    }
}

/// The `moto_server` the tests start.
pub fn moto_server() -> PathBuf {
    tools::find_tool("moto_server", "WARROOM_MOTO_SERVER_BIN")
}

impl S3Server {
    /// Starts a server on a port it chose itself (`-p 0`), read from its start-up line.
    pub async fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("warroom-s3-")
            .tempdir()
            .expect("creating a temporary directory for moto_server");
        let mut server = S3Server {
            dir,
            port: 0,
            child: None,
        };
        server.spawn(0).await;
        server
    }

    /// `http://127.0.0.1:<port>`: the same across restarts.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates `bucket` (moto checks no signature, so a plain request does).
    pub fn create_bucket(&self, bucket: &str) {
        let status = self.request("PUT", &format!("/{bucket}"));
        assert!(
            status == 200,
            "creating the bucket {bucket} answered {status}: {}",
            self.log()
        );
    }

    /// Stops the server: the port refuses connections until [`S3Server::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty.
    pub async fn restart(&mut self) {
        self.stop();
        let port = self.port;
        self.spawn(port).await;
    }

    async fn spawn(&mut self, port: u16) {
        let log_path = self.dir.path().join("moto_server.log");
        let log = File::create(&log_path).expect("the moto_server log");
        let child = Command::new(moto_server())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log, twice"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start moto_server (run scripts/setup, or set WARROOM_MOTO_SERVER_BIN): {e}")
            });
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(port) = self.listening_port()
                && TcpStream::connect(("127.0.0.1", port)).is_ok()
            {
                self.port = port;
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("moto_server exited with {status}: {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not start: {}",
                self.log()
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// The port of the newest ` * Running on http://127.0.0.1:<port>` line of the log.
    fn listening_port(&self) -> Option<u16> {
        let log = self.log();
        let line = log
            .lines()
            .rev()
            .find(|l| l.contains("Running on http://127.0.0.1:"))?;
        let port = line.rsplit(':').next()?;
        port.trim().trim_end_matches('/').parse().ok()
    }

    /// What the server logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("moto_server.log")).unwrap_or_default()
    }

    /// One plain HTTP/1.1 request; its status code.
    fn request(&self, method: &str, path: &str) -> u16 {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("moto_server listens");
        stream
            .set_read_timeout(Some(START_TIMEOUT))
            .expect("a read timeout");
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .expect("the request is sent");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
