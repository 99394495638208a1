//! A real S3-compatible server for tests: moto's server mode (`moto_server`, from PyPI,
//! installed by `scripts/setup` into `.tools/bin`), on a free port, killed on drop.
//!
//! moto keeps its buckets in memory: a [`S3Server::stop`] and [`S3Server::restart`] is an
//! outage that also loses every object, as a store replaced by an empty one would.
//! [`S3Server::objects`] reads a bucket back with plain requests.
//! `WARROOM_MOTO_SERVER_BIN` overrides where `moto_server` is found.

use std::collections::BTreeMap;
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
/// The `Authorization` of the kit's own requests: the shape of AWS's signature version 4,
/// for the key `testing`, with a signature moto does not check.
const UNSIGNED: &str = "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/s3/aws4_request, \
    SignedHeaders=host, Signature=0";

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
        let (status, _) = self.exchange("PUT", &format!("/{bucket}"));
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

    /// Every object whose key starts with `prefix` in `bucket`, by key, with its content as
    /// text. A bucket that cannot be listed, or an object that cannot be read (deleted
    /// meanwhile), reads as `None`.
    pub fn objects(&self, bucket: &str, prefix: &str) -> Option<BTreeMap<String, String>> {
        let listing = format!(
            "/{bucket}?list-type=2&max-keys=1000&prefix={}",
            encode(prefix, false)
        );
        let (status, body) = self.exchange("GET", &listing);
        if status != 200 {
            return None;
        }
        assert!(
            !body.contains("<IsTruncated>true</IsTruncated>"),
            "more than 1000 objects under {prefix}: the test kit reads one page only"
        );
        let mut objects = BTreeMap::new();
        for key in body
            .split("<Key>")
            .skip(1)
            .filter_map(|p| p.split_once("</Key>"))
        {
            let key = unescape_xml(key.0);
            let (status, content) =
                self.exchange("GET", &format!("/{bucket}/{}", encode(&key, true)));
            if status != 200 {
                return None;
            }
            objects.insert(key, content);
        }
        Some(objects)
    }

    /// One plain request without a body; its status code and the body of the answer.
    /// HTTP/1.0, so that the answer is never chunked: it ends where the connection closes.
    /// moto checks no signature, but it treats a request without `Authorization` as
    /// anonymous and refuses it a private object: the header names the tests' key and
    /// signs nothing.
    fn exchange(&self, method: &str, path: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("moto_server listens");
        stream
            .set_read_timeout(Some(START_TIMEOUT))
            .expect("a read timeout");
        write!(
            stream,
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nAuthorization: {UNSIGNED}\r\n\
             Content-Length: 0\r\n\r\n",
            self.port
        )
        .expect("the request is sent");
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer);
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        (status, body.to_owned())
    }
}

/// `text` percent-encoded for a URL, every byte but S3's unreserved ones (and `/` when
/// `keep_slash`, for a key in a path).
fn encode(text: &str, keep_slash: bool) -> String {
    let mut encoded = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                encoded.push(char::from(byte));
            }
            b'/' if keep_slash => encoded.push('/'),
            _ => encoded.push_str(&format!("%{byte:02X}")),
        }
    }
    encoded
}

/// The text of an XML element with its five predefined entities replaced.
fn unescape_xml(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
