//! A real `nats-server` with JetStream for tests: own store, own free port, killed on drop.
//!
//! Each [`NatsServer`] runs `nats-server -a 127.0.0.1 -p -1 -js -sd <tmp>/store
//! --ports_file_dir <tmp>`. The server picks a free port itself and writes it to
//! `nats-server_<pid>.ports`, so there is no race between choosing a port and binding it.
//! Readiness is that file plus a successful TCP connect, polled against a deadline.
//!
//! The server's stdout and stderr go to `<tmp>/nats-server.log`; every startup failure quotes
//! its tail, and a test that panics while a server is alive prints the tail from `Drop`.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::tools;

/// How long a start (or restart) may take before the test fails. Generous: CI has two cores
/// and runs many servers at once, and a restart recovers the JetStream store first.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a graceful stop may take before the server is killed outright.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// How often readiness and exit are checked while starting or stopping.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// How many lines from the start and from the end of the log errors and panics quote: the
/// start holds the configuration (or a bad flag's complaint before the usage text), the end
/// holds what happened last.
const LOG_HEAD_LINES: usize = 12;
const LOG_TAIL_LINES: usize = 40;

/// A running `nats-server` with JetStream, owned by one test.
///
/// ```no_run
/// # async fn example() {
/// let server = warroom_testkit::NatsServer::start().await;
/// let js = server.jetstream().await;
/// # }
/// ```
///
/// Dropping it kills the process and waits for it, also when the test panics.
pub struct NatsServer {
    /// Holds the store, the ports files and the log; removed after the process is gone
    /// (fields drop after [`Drop::drop`] ran).
    dir: TempDir,
    /// Extra arguments given at start, repeated on every restart.
    extra_args: Vec<String>,
    port: u16,
    url: String,
    child: Option<Child>,
}

impl std::fmt::Debug for NatsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsServer")
            .field("url", &self.url)
            .field("pid", &self.pid())
            .field("dir", &self.dir.path())
            .finish()
    }
}

impl NatsServer {
    /// Starts a server on a free port with an empty JetStream store. Panics (with the
    /// server's log) if it does not come up within the start deadline.
    pub async fn start() -> Self {
        Self::start_with_args(std::iter::empty::<&str>()).await
    }

    /// Like [`NatsServer::start`], with extra `nats-server` command-line arguments (for
    /// example `["--no_advertise", "true"]`). They are passed again on every restart.
    pub async fn start_with_args<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::start_inner(args.into_iter().map(Into::into).collect(), None).await
    }

    /// Like [`NatsServer::start`], with a configuration file holding `config` (for settings
    /// that have no command-line flag, such as `max_payload: 2MB`). The command-line flags
    /// for address, port and JetStream store take precedence over it.
    pub async fn start_with_config(config: &str) -> Self {
        Self::start_inner(Vec::new(), Some(config)).await
    }

    async fn start_inner(mut extra_args: Vec<String>, config: Option<&str>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("warroom-nats-")
            .tempdir()
            .expect("creating a temporary directory for nats-server");
        if let Some(config) = config {
            let path = dir.path().join("nats-server.conf");
            std::fs::write(&path, config)
                .unwrap_or_else(|err| panic!("writing {} failed: {err}", path.display()));
            extra_args.splice(0..0, ["-c".to_owned(), path.to_string_lossy().into_owned()]);
        }
        let mut server = NatsServer {
            dir,
            extra_args,
            port: 0,
            url: String::new(),
            child: None,
        };
        let url = server.spawn_until_ready(None).await;
        server.port = port_of(&url);
        server.url = url;
        server
    }

    /// The client URL, `nats://127.0.0.1:<port>`; it stays the same across restarts.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The client port; it stays the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id while the server runs, `None` after [`stop`](Self::stop) or
    /// [`kill`](Self::kill).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The JetStream store directory (`-sd`), kept across restarts.
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// The file that receives the server's stdout and stderr, across restarts.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats-server.log")
    }

    /// The last `lines` lines of the server's log, each ending in a newline.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = read_log(&self.log_path(), 0);
        let all: Vec<&str> = log.lines().collect();
        let mut out = String::new();
        for line in &all[all.len().saturating_sub(lines)..] {
            let _ = writeln!(out, "{line}");
        }
        out
    }

    /// Connects a new client. Panics if the server does not accept it.
    pub async fn connect(&self) -> async_nats::Client {
        async_nats::ConnectOptions::new()
            .name("warroom-testkit")
            .connect(self.url())
            .await
            .unwrap_or_else(|err| {
                panic!(
                    "connecting to the test nats-server at {} failed: {err}\n{}",
                    self.url,
                    self.log_context(0)
                )
            })
    }

    /// Connects a new client and returns its JetStream context.
    pub async fn jetstream(&self) -> async_nats::jetstream::Context {
        async_nats::jetstream::new(self.connect().await)
    }

    /// Stops the server gracefully (SIGTERM, so JetStream flushes its store), waiting for it
    /// to exit; it is killed if it has not exited within a deadline. Does nothing if it is
    /// not running.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid =
            Pid::from_raw(i32::try_from(child.id()).expect("a Linux process id fits in an i32"));
        // The child is ours and not yet reaped, so its pid cannot belong to anyone else.
        if let Err(err) = kill(pid, Signal::SIGTERM) {
            panic!("sending SIGTERM to nats-server (pid {pid}) failed: {err}");
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => tokio::time::sleep(POLL_INTERVAL).await,
                Ok(None) => {
                    kill_and_reap(&mut child);
                    panic!(
                        "nats-server (pid {pid}) did not exit within {STOP_TIMEOUT:?} of \
                         SIGTERM and was killed\n{}",
                        self.log_context(0)
                    );
                }
                Err(err) => panic!("waiting for nats-server (pid {pid}) to exit failed: {err}"),
            }
        }
    }

    /// Kills the server outright (SIGKILL), like a crash, and reaps it. Data that JetStream
    /// had not yet written may be lost. Does nothing if it is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_and_reap(&mut child);
        }
    }

    /// Starts the server again on the same port with the same store, stopping it gracefully
    /// first if it still runs. Streams, consumers and KV buckets survive; connected clients
    /// reconnect on their own.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.start_again().await;
    }

    /// Starts a stopped or killed server again on the same port with the same store.
    /// Panics if it is already running.
    pub async fn start_again(&mut self) {
        assert!(
            self.child.is_none(),
            "start_again: nats-server at {} is still running (pid {:?})",
            self.url,
            self.pid()
        );
        let url = self.spawn_until_ready(Some(self.port)).await;
        assert_eq!(
            url, self.url,
            "nats-server came back on a different URL than before the restart"
        );
    }

    /// Spawns `nats-server` into `self.child` and waits until it is ready, returning its
    /// client URL. With `port`, binds that port, retrying while it is still taken (a restart
    /// races with the kernel handing that port to someone else only in theory, but a failure
    /// would be baffling).
    ///
    /// The child lives in `self` from the moment it is spawned, so even a test that drops
    /// this future half-way (a timeout around the start, say) leaves no orphan.
    async fn spawn_until_ready(&mut self, port: Option<u16>) -> String {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let log_start = self.log_len();
            self.child = Some(self.spawn(port));
            let outcome = self.wait_ready(deadline).await;
            if outcome.is_err() {
                // Exited: already reaped by `try_wait`. Timed out: still running.
                self.kill();
            }
            match outcome {
                Ok(url) => return url,
                Err(Exited(status)) => {
                    let log = read_log(&self.log_path(), log_start);
                    if port.is_some()
                        && log.contains("address already in use")
                        && Instant::now() < deadline
                    {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    panic!(
                        "nats-server exited during startup ({status})\n{}",
                        self.log_context(log_start)
                    );
                }
                Err(TimedOut(last)) => {
                    panic!(
                        "nats-server did not become ready within {START_TIMEOUT:?} \
                         (last check: {last})\n{}",
                        self.log_context(log_start)
                    );
                }
            }
        }
    }

    fn spawn(&self, port: Option<u16>) -> Child {
        let binary = tools::nats_server();
        let log_path = self.log_path();
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap_or_else(|err| panic!("opening {} failed: {err}", log_path.display()));
        let port_arg = port.map_or_else(|| "-1".to_owned(), |port| port.to_string());
        // A marker keeps the runs of a restarted server apart in the one log file.
        writeln!(
            log,
            "=== warroom-testkit: starting nats-server -p {port_arg} ==="
        )
        .unwrap_or_else(|err| panic!("writing {} failed: {err}", log_path.display()));
        let stdout = log.try_clone().unwrap_or_else(|err| {
            panic!(
                "duplicating the handle of {} failed: {err}",
                log_path.display()
            )
        });
        Command::new(&binary)
            .args(["-a", "127.0.0.1", "-p", &port_arg, "-js", "-sd"])
            .arg(self.store_dir())
            .arg("--ports_file_dir")
            .arg(self.dir.path())
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(log)
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "spawning {} failed: {err} (run scripts/setup to install nats-server, \
                     or set WARROOM_NATS_SERVER_BIN)",
                    binary.display()
                )
            })
    }

    /// Polls until the child's ports file names a URL whose port accepts TCP connections.
    async fn wait_ready(&mut self, deadline: Instant) -> Result<String, NotReady> {
        let child = self
            .child
            .as_mut()
            .expect("wait_ready runs right after spawning the child");
        let ports_file = self
            .dir
            .path()
            .join(format!("nats-server_{}.ports", child.id()));
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Err(Exited(status.to_string())),
                Ok(None) => {}
                Err(err) => return Err(Exited(format!("its status is unknown: {err}"))),
            }
            let last = match read_client_url(&ports_file) {
                Ok(url) => match tokio::net::TcpStream::connect(("127.0.0.1", port_of(&url))).await
                {
                    Ok(_) => return Ok(url),
                    Err(err) => format!("{url} refused a TCP connection: {err}"),
                },
                Err(why) => why,
            };
            if Instant::now() >= deadline {
                return Err(TimedOut(last));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    fn log_len(&self) -> u64 {
        std::fs::metadata(self.log_path()).map_or(0, |meta| meta.len())
    }

    /// The log from byte `from` on, for an error message: all of it if short, else its
    /// first and last lines.
    fn log_context(&self, from: u64) -> String {
        let log = read_log(&self.log_path(), from);
        let lines: Vec<&str> = log.lines().collect();
        let mut out = format!(
            "--- log of nats-server ({}) ---\n",
            self.log_path().display()
        );
        if lines.len() <= LOG_HEAD_LINES + LOG_TAIL_LINES {
            for line in &lines {
                let _ = writeln!(out, "{line}");
            }
        } else {
            for line in &lines[..LOG_HEAD_LINES] {
                let _ = writeln!(out, "{line}");
            }
            let _ = writeln!(
                out,
                "[... {} lines left out ...]",
                lines.len() - LOG_HEAD_LINES - LOG_TAIL_LINES
            );
            for line in &lines[lines.len() - LOG_TAIL_LINES..] {
                let _ = writeln!(out, "{line}");
            }
        }
        out.push_str("--- end of log ---");
        out
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_and_reap(&mut child);
            // The log dies with the temporary directory: show it while it can still explain
            // a failing test. The test harness captures this unless the test fails.
            if std::thread::panicking() {
                eprintln!(
                    "nats-server {} at test failure:\n{}",
                    self.url,
                    self.log_context(0)
                );
            }
        }
    }
}

/// Why a started server is not ready.
enum NotReady {
    /// The process exited; its status.
    Exited(String),
    /// The deadline passed; the last thing observed.
    TimedOut(String),
}
use NotReady::{Exited, TimedOut};

/// Kills the child and waits for it, so no zombie or orphan is left. Never panics: it also
/// runs from `Drop` during a panic.
fn kill_and_reap(child: &mut Child) {
    // Either may fail only if the process is already gone, which is what we want.
    let _ = child.kill();
    let _ = child.wait();
}

/// Reads the client URL out of a `nats-server_<pid>.ports` file, which looks like
/// `{"nats":["nats://127.0.0.1:4222"]}`. The server writes it non-atomically, so a partial
/// file is just "not yet".
fn read_client_url(ports_file: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(ports_file)
        .map_err(|err| format!("{} not readable yet: {err}", ports_file.display()))?;
    let ports: serde_json::Value = serde_json::from_str(&text).map_err(|err| {
        format!(
            "{} is not complete JSON yet ({err}): {text:?}",
            ports_file.display()
        )
    })?;
    ports["nats"][0]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("{} has no nats client URL: {text}", ports_file.display()))
}

/// The port of a `nats://host:port` URL written by nats-server itself.
fn port_of(url: &str) -> u16 {
    url.rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or_else(|| panic!("nats-server reported a client URL without a port: {url:?}"))
}

/// The text of the log at `path` from byte `from` on; never fails, because it only ever
/// decorates another error.
fn read_log(path: &Path, from: u64) -> String {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let mut bytes = Vec::new();
    match File::open(path).and_then(|mut file| {
        file.seek(SeekFrom::Start(from))?;
        file.read_to_end(&mut bytes)
    }) {
        Ok(_) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(err) => format!("(could not read {}: {err})\n", path.display()),
    }
}

/// Nodes of one JetStream cluster on loopback (`nats-server` processes joined by routes),
/// for tests of replicated streams and of losing a node.
pub struct NatsCluster {
    pub nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `size` nodes and waits until the cluster has elected its JetStream leader.
    pub async fn start(size: usize) -> NatsCluster {
        Self::start_with_cluster_config(size, "").await
    }

    /// Like [`NatsCluster::start`], with `cluster_config` added inside every node's
    /// `cluster { }` block (a `tls { }` block for the routes, for example). Panics, with the
    /// first node's log, if the routes do not form a cluster that elects its JetStream
    /// leader within the start deadline.
    pub async fn start_with_cluster_config(size: usize, cluster_config: &str) -> NatsCluster {
        let ports: Vec<u16> = (0..size).map(|_| reserved_port()).collect();
        let routes = ports
            .iter()
            .map(|port| format!("nats-route://127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut nodes = Vec::with_capacity(size);
        for (index, port) in ports.iter().enumerate() {
            let config = format!(
                "server_name: warroom-test-{index}\ncluster {{\n  name: warroom-test\n  \
                 listen: 127.0.0.1:{port}\n  routes: [{routes}]\n{cluster_config}\n}}\n"
            );
            nodes.push(NatsServer::start_with_config(&config).await);
        }
        let cluster = NatsCluster { nodes };
        let js = cluster.nodes[0].jetstream().await;
        crate::wait_for_ok(
            "the JetStream cluster elects its leader",
            START_TIMEOUT,
            || {
                let js = js.clone();
                async move { js.query_account().await }
            },
        )
        .await;
        cluster
    }

    /// Every node's client URL, comma-separated, as the daemons' `--nats-url` takes them.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A port nothing listens on, for a server a test configures itself (a cluster route, a
/// monitoring port), taken outside the kernel's ephemeral range: a port found with `bind(0)`
/// is free only until the next `bind(0)`, and a `nats-server -p -1` started before the port
/// is used could be handed the same one ("address already in use", seen in CI). Ports below
/// the ephemeral range are never handed out that way; a random one is taken and checked free.
pub fn reserved_port() -> u16 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let (first, last) = (10_000u32, low.max(10_001));
    let state = std::collections::hash_map::RandomState::new();
    for attempt in 0u32..10_000 {
        let mut hasher = state.build_hasher();
        hasher.write_u32(attempt);
        hasher.write_u32(std::process::id());
        let candidate = first + (hasher.finish() % u64::from(last - first)) as u32;
        let Ok(port) = u16::try_from(candidate) else {
            continue;
        };
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {first} and {last} after 10,000 tries")
}
