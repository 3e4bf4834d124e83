//! A real local HTTP receiver for notification tests: a webhook endpoint on loopback that records
//! every request and answers with a status the test chooses.
//!
//! [`Receiver::start`] listens on `127.0.0.1:<free port>` in a background thread. Outages are
//! simulated either with an error status ([`Receiver::set_status`]) or by closing the port
//! ([`Receiver::stop`]: connections are refused) and opening the same port again
//! ([`Receiver::restart`]). Signed webhooks are checked with [`Received::signature_valid`].
//!
//! The module also holds the small HTTP/1.1 client the helpers of this crate use
//! ([`request`]): one request per connection, `Connection: close`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header carrying the webhook signature: `sha256=<lowercase hex HMAC-SHA256 of the body>`.
pub const SIGNATURE_HEADER: &str = "x-driftguard-signature";

/// How long [`Receiver::restart`] keeps trying to bind the old port.
const REBIND_FOR: Duration = Duration::from_secs(5);

/// The largest request body the receiver accepts (a test peer, not a server).
const MAX_BODY: usize = 64 * 1024 * 1024;

/// A local HTTP receiver recording every request. Stopped on drop.
#[derive(Debug)]
pub struct Receiver {
    port: u16,
    shared: Arc<Shared>,
    running: Mutex<Option<Running>>,
}

/// One request the receiver got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The method (`POST`).
    pub method: String,
    /// The request target as sent (`/hook`, with the query string if any).
    pub path: String,
    /// The headers in arrival order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The raw body (de-chunked when it was sent chunked).
    pub body: Vec<u8>,
}

/// A response of [`request`].
#[derive(Debug, Clone)]
pub(crate) struct Response {
    /// The status code.
    pub(crate) status: u16,
    /// The body (de-chunked).
    pub(crate) body: Vec<u8>,
}

#[derive(Debug)]
struct Shared {
    requests: Mutex<Vec<Received>>,
    status: AtomicU16,
}

#[derive(Debug)]
struct Running {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

// === impl Receiver ===

impl Receiver {
    /// Starts a receiver on a free loopback port, answering 200.
    pub fn start() -> Result<Receiver> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .context("could not bind a loopback port for the test receiver")?;
        let port = listener
            .local_addr()
            .context("the test receiver's listener has no address")?
            .port();
        let receiver = Receiver {
            port,
            shared: Arc::new(Shared {
                requests: Mutex::new(Vec::new()),
                status: AtomicU16::new(200),
            }),
            running: Mutex::new(None),
        };
        receiver.serve(listener)?;
        Ok(receiver)
    }

    /// The port, the same across [`Receiver::stop`] and [`Receiver::restart`].
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address, `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The URL of `path` on this receiver: `http://127.0.0.1:PORT/hook` for `"/hook"` (a missing
    /// leading `/` is added).
    pub fn url(&self, path: &str) -> String {
        let slash = if path.starts_with('/') { "" } else { "/" };
        format!("http://127.0.0.1:{}{slash}{path}", self.port)
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<Received> {
        lock(&self.shared.requests).clone()
    }

    /// Forgets the requests received so far.
    pub fn clear(&self) {
        lock(&self.shared.requests).clear();
    }

    /// The status of every later answer (200 by default; 500 or 503 simulate an outage).
    pub fn set_status(&self, status: u16) {
        self.shared.status.store(status, Ordering::SeqCst);
    }

    /// The status the receiver answers with.
    pub fn status(&self) -> u16 {
        self.shared.status.load(Ordering::SeqCst)
    }

    /// Whether the port is open (not [`Receiver::stop`]ped).
    pub fn is_running(&self) -> bool {
        lock(&self.running).is_some()
    }

    /// Closes the port: connections are refused until [`Receiver::restart`]. Requests already
    /// being read are still answered and recorded. Does nothing when already stopped.
    pub fn stop(&self) {
        let running = lock(&self.running).take();
        if let Some(running) = running {
            running.stop.store(true, Ordering::SeqCst);
            if running.thread.join().is_err() {
                eprintln!("the test receiver's accept thread panicked");
            }
        }
    }

    /// Opens the same port again after [`Receiver::stop`] (retried for a few seconds while the
    /// port is busy). Does nothing when running.
    pub fn restart(&self) -> Result<()> {
        if self.is_running() {
            return Ok(());
        }
        let deadline = Instant::now() + REBIND_FOR;
        let listener = loop {
            // std sets SO_REUSEADDR on Unix, so connections in TIME_WAIT do not block the bind.
            match TcpListener::bind(self.addr()) {
                Ok(listener) => break listener,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(error) => {
                    return Err(error).with_context(|| {
                        format!(
                            "could not open port {} again for the test receiver within {} s",
                            self.port,
                            REBIND_FOR.as_secs()
                        )
                    });
                }
            }
        };
        self.serve(listener)
    }

    /// Polls [`Receiver::requests`] until `done` holds for them, and returns them; fails after
    /// `timeout` with what was received.
    pub fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> Result<Vec<Received>> {
        let deadline = Instant::now() + timeout;
        loop {
            let requests = self.requests();
            if done(&requests) {
                return Ok(requests);
            }
            if Instant::now() >= deadline {
                let summary: Vec<String> = requests.iter().map(Received::summary).collect();
                bail!(
                    "the test receiver on port {} did not get the expected requests within {:?}; \
                     it got {}:\n{}",
                    self.port,
                    timeout,
                    requests.len(),
                    summary.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn serve(&self, listener: TcpListener) -> Result<()> {
        listener
            .set_nonblocking(true)
            .context("could not make the test receiver's listener non-blocking")?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            let shared = Arc::clone(&self.shared);
            std::thread::Builder::new()
                .name(format!("test-receiver-{}", self.port))
                .spawn(move || accept_loop(listener, &stop, &shared))
                .context("could not start the test receiver's thread")?
        };
        *lock(&self.running) = Some(Running { stop, thread });
        Ok(())
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: TcpListener, stop: &AtomicBool, shared: &Arc<Shared>) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let shared = Arc::clone(shared);
                let spawned = std::thread::Builder::new()
                    .name("test-receiver-conn".into())
                    .spawn(move || {
                        if let Err(error) = handle(stream, &shared) {
                            eprintln!("test receiver: {error:#}");
                        }
                    });
                if let Err(error) = spawned {
                    eprintln!("test receiver: could not start a connection thread: {error}");
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(error) => {
                eprintln!("test receiver: accept failed: {error}");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    // The listener is dropped here: the port is closed and new connections are refused.
}

fn handle(stream: TcpStream, shared: &Shared) -> Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let line = read_line(&mut reader)?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        bail!("a malformed request line: {line:?}");
    };
    let (method, path) = (method.to_owned(), path.to_owned());
    let headers = read_headers(&mut reader)?;
    if header_of(&headers, "expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        (&stream).write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let body = read_body(&mut reader, &headers)?;
    lock(&shared.requests).push(Received {
        method,
        path,
        headers,
        body,
    });
    let status = shared.status.load(Ordering::SeqCst);
    let text = format!("{status} {}\n", reason(status));
    let response = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{text}",
        reason(status),
        text.len()
    );
    let mut stream = stream;
    stream.write_all(response.as_bytes())?;
    stream.flush()?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}

// === impl Received ===

impl Received {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_of(&self.headers, name)
    }

    /// The body parsed as JSON.
    ///
    /// # Panics
    ///
    /// When the body is not JSON, with the body in the message.
    pub fn json(&self) -> serde_json::Value {
        match serde_json::from_slice(&self.body) {
            Ok(value) => value,
            Err(error) => panic!(
                "the {} {} body is not JSON ({error}): {}",
                self.method,
                self.path,
                String::from_utf8_lossy(&self.body)
            ),
        }
    }

    /// The idempotency keys of the DriftGuard webhook events this request carries: the one of
    /// a single-event body, or each of a batch's `events`.
    ///
    /// # Panics
    ///
    /// When the body is not a DriftGuard webhook body.
    pub fn idempotency_keys(&self) -> Vec<String> {
        let body = self.json();
        let key = |event: &serde_json::Value| match event["idempotency_key"].as_str() {
            Some(key) => key.to_owned(),
            None => panic!(
                "{} {}: an event without idempotency_key: {event}",
                self.method, self.path
            ),
        };
        match body["events"].as_array() {
            Some(events) => events.iter().map(key).collect(),
            None => vec![key(&body)],
        }
    }

    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Whether the `X-DriftGuard-Signature` header is exactly `sha256=` plus the lowercase hex
    /// HMAC-SHA256 of the raw body keyed with `secret`.
    pub fn signature_valid(&self, secret: &[u8]) -> bool {
        let Some(value) = self.header(SIGNATURE_HEADER) else {
            return false;
        };
        let Some(hex_mac) = value.trim().strip_prefix("sha256=") else {
            return false;
        };
        if hex_mac.bytes().any(|b| b.is_ascii_uppercase()) {
            return false;
        }
        let Ok(mac_bytes) = hex::decode(hex_mac) else {
            return false;
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
            return false;
        };
        mac.update(&self.body);
        mac.verify_slice(&mac_bytes).is_ok()
    }

    fn summary(&self) -> String {
        let mut body = self.text();
        if body.len() > 200 {
            let mut end = 200;
            while !body.is_char_boundary(end) {
                end -= 1;
            }
            body.truncate(end);
            body.push('…');
        }
        format!("  {} {} {body}", self.method, self.path)
    }
}

/// The signature header value for `body` keyed with `secret`: `sha256=<lowercase hex>`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length: new_from_slice cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(error) => panic!("HMAC-SHA256 refused a key: {error}"),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

// === the HTTP/1.1 wire ===

/// Sends one HTTP/1.1 request to `url` (`http://HOST:PORT/PATH`) and reads the whole response.
pub(crate) fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<Response> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("not an http:// URL: {url}"))?;
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let mut stream = TcpStream::connect(authority)
        .with_context(|| format!("could not connect to {authority} for {method} {url}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\n\
         content-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .and_then(|()| stream.flush())
        .with_context(|| format!("could not send {method} {url}"))?;
    let read = || -> Result<Response> {
        let mut reader = BufReader::new(&stream);
        let status_line = read_line(&mut reader)?;
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse::<u16>().ok())
            .with_context(|| format!("a malformed status line: {status_line:?}"))?;
        let headers = read_headers(&mut reader)?;
        let body = if method == "HEAD" || status == 204 || status == 304 {
            Vec::new()
        } else if header_of(&headers, "content-length").is_some()
            || header_of(&headers, "transfer-encoding").is_some()
        {
            read_body(&mut reader, &headers)?
        } else {
            let mut all = Vec::new();
            reader.read_to_end(&mut all)?;
            all
        };
        Ok(Response { status, body })
    };
    read().with_context(|| format!("could not read the response to {method} {url}"))
}

fn read_line(reader: &mut impl BufRead) -> Result<String> {
    let mut line = String::new();
    let read = reader.read_line(&mut line)?;
    if read == 0 {
        bail!("the connection closed before a full HTTP head");
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

fn read_headers(reader: &mut impl BufRead) -> Result<Vec<(String, String)>> {
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader)?;
        if line.is_empty() {
            return Ok(headers);
        }
        let (name, value) = line
            .split_once(':')
            .with_context(|| format!("a malformed header line: {line:?}"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
}

fn read_body(reader: &mut impl BufRead, headers: &[(String, String)]) -> Result<Vec<u8>> {
    let chunked = header_of(headers, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        let mut body = Vec::new();
        loop {
            let line = read_line(reader)?;
            let size = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size, 16)
                .with_context(|| format!("a malformed chunk size: {line:?}"))?;
            if size == 0 {
                // Trailers, then the empty line.
                while !read_line(reader)?.is_empty() {}
                return Ok(body);
            }
            if body.len() + size > MAX_BODY {
                bail!("a body over {MAX_BODY} bytes");
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..])?;
            read_line(reader)?;
        }
    }
    let length = match header_of(headers, "content-length") {
        Some(value) => value
            .parse::<usize>()
            .with_context(|| format!("a malformed content-length: {value:?}"))?,
        None => 0,
    };
    if length > MAX_BODY {
        bail!("a body over {MAX_BODY} bytes");
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(body)
}

fn header_of<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(10);

    fn post(url: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<Response> {
        request("POST", url, headers, body, TIMEOUT)
    }

    #[test]
    fn records_a_post_and_answers_200() -> Result<()> {
        let receiver = Receiver::start()?;
        let url = receiver.url("/hook");
        assert_eq!(url, format!("http://127.0.0.1:{}/hook", receiver.port()));
        assert_eq!(receiver.url("hook"), url);
        let response = post(
            &url,
            &[("Content-Type", "application/json"), ("X-Extra", "yes")],
            br#"{"kind":"drift","count":2}"#,
        )?;
        assert_eq!(response.status, 200);
        let requests = receiver.wait_for(TIMEOUT, |r| r.len() == 1)?;
        let request = &requests[0];
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/hook");
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.header("X-EXTRA"), Some("yes"));
        assert!(request.headers.iter().any(|(name, _)| name == "x-extra"));
        assert_eq!(request.json()["count"], 2);
        receiver.clear();
        assert!(receiver.requests().is_empty());
        Ok(())
    }

    #[test]
    fn reads_a_chunked_body() -> Result<()> {
        let receiver = Receiver::start()?;
        let mut stream = TcpStream::connect(receiver.addr())?;
        stream.write_all(
            b"POST /c HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n\
              4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n",
        )?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
        let requests = receiver.wait_for(TIMEOUT, |r| r.len() == 1)?;
        assert_eq!(requests[0].json(), serde_json::json!({"a": 1}));
        Ok(())
    }

    #[test]
    fn answers_the_status_set() -> Result<()> {
        let receiver = Receiver::start()?;
        let url = receiver.url("/hook");
        receiver.set_status(503);
        assert_eq!(post(&url, &[], b"1")?.status, 503);
        receiver.set_status(500);
        assert_eq!(post(&url, &[], b"2")?.status, 500);
        receiver.set_status(200);
        assert_eq!(post(&url, &[], b"3")?.status, 200);
        let bodies: Vec<String> = receiver.requests().iter().map(Received::text).collect();
        assert_eq!(bodies, ["1", "2", "3"]);
        Ok(())
    }

    #[test]
    fn refuses_connections_while_stopped_and_restarts_on_the_same_port() -> Result<()> {
        let receiver = Receiver::start()?;
        let port = receiver.port();
        let url = receiver.url("/hook");
        assert_eq!(post(&url, &[], b"before")?.status, 200);

        receiver.stop();
        assert!(!receiver.is_running());
        let error = TcpStream::connect(receiver.addr()).err();
        assert_eq!(
            error.map(|e| e.kind()),
            Some(std::io::ErrorKind::ConnectionRefused)
        );
        assert!(post(&url, &[], b"while down").is_err());

        receiver.restart()?;
        assert!(receiver.is_running());
        assert_eq!(receiver.port(), port);
        assert_eq!(post(&url, &[], b"after")?.status, 200);
        let bodies: Vec<String> = receiver.requests().iter().map(Received::text).collect();
        assert_eq!(bodies, ["before", "after"]);

        // Twice in a row, with connections just closed (TIME_WAIT) on the port.
        receiver.stop();
        receiver.restart()?;
        assert_eq!(post(&url, &[], b"again")?.status, 200);
        Ok(())
    }

    #[test]
    fn checks_the_signature() -> Result<()> {
        let receiver = Receiver::start()?;
        let body = br#"{"resource_id":"Deployment:ns:x"}"#;
        let good = signature(b"s3cret", body);
        assert!(good.starts_with("sha256="));
        assert_eq!(good.len(), "sha256=".len() + 64);
        post(
            &receiver.url("/signed"),
            &[("X-DriftGuard-Signature", &good)],
            body,
        )?;
        post(
            &receiver.url("/upper"),
            &[("X-DriftGuard-Signature", &good.to_ascii_uppercase())],
            body,
        )?;
        post(&receiver.url("/unsigned"), &[], body)?;
        let requests = receiver.wait_for(TIMEOUT, |r| r.len() == 3)?;
        assert!(requests[0].signature_valid(b"s3cret"));
        assert!(!requests[0].signature_valid(b"other"));
        let mut tampered = requests[0].clone();
        tampered.body.push(b' ');
        assert!(!tampered.signature_valid(b"s3cret"));
        assert!(!requests[1].signature_valid(b"s3cret"));
        assert!(!requests[2].signature_valid(b"s3cret"));
        Ok(())
    }

    #[test]
    fn wait_for_reports_what_came() -> Result<()> {
        let receiver = Receiver::start()?;
        post(&receiver.url("/one"), &[], b"only")?;
        let error = receiver
            .wait_for(Duration::from_millis(100), |r| r.len() == 2)
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(error.contains("POST /one only"), "{error}");
        Ok(())
    }
}
