//! What the benches share: sending a signed GitHub push webhook to the gateway, a free port,
//! the wall clock as Unix time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::Mac as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The webhook secret the benches give the gateway (`--webhook-secret`).
pub const SECRET: &str = "bench-webhook-secret";

/// Now, as time since the Unix epoch.
pub fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
}

/// POSTs a signed push delivery to the gateway's webhook; returns the HTTP status line.
pub async fn send_webhook(port: u16, delivery: &str) -> String {
    let body = br#"{"ref":"refs/heads/main"}"#;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(body);
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("the webhook listens");
    let head = format!(
        "POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\nX-GitHub-Event: push\r\n\
         X-GitHub-Delivery: {delivery}\r\nX-Hub-Signature-256: {signature}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("send");
    stream.write_all(body).await.expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    answer.lines().next().unwrap_or_default().to_owned()
}

/// A TCP port free on the loopback interface now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The gateway's flags for its webhook on `port` of the loopback, with [`SECRET`].
pub fn webhook_args(port: u16) -> Vec<String> {
    vec![
        "--webhook-addr".to_owned(),
        format!("127.0.0.1:{port}"),
        "--webhook-secret".to_owned(),
        SECRET.to_owned(),
    ]
}
