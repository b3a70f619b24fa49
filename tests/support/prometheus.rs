//! The Prometheus test ground: real parts for the Prometheus gates and the `metrics`
//! capability's `query-prometheus`.
//!
//! - [`MetricsApp`]: a small HTTP app that answers `GET /` with 200 or, with the
//!   probability the test sets (and may change while it runs), 500, and counts what it
//!   answered in `http_requests_total{code, release}` on `GET /metrics`. The `release`
//!   label is how a query tells the new side from the stable one.
//! - [`Load`]: steady traffic to a set of apps, so their counters grow as real ones do.
//! - [`Prometheus`]: Debian's `/usr/bin/prometheus` scraping the apps every second,
//!   started only once it is ready and has scraped every app, stopped on drop; with
//!   [`Prometheus::instant`] for a test's own checks.
//! - [`SigV4Prometheus`]: a stand-in for Amazon Managed Service for Prometheus that
//!   checks each query's SigV4 signature with botocore (`sigv4_prometheus.py`).
//!
//! Everything listens on 127.0.0.1 and speaks plain HTTP over std sockets, so the ground
//! works the same from sync and async tests, and never leaves the machine.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// Where Debian's package puts the server; scripts/setup.sh installs it.
const PROMETHEUS: &str = "/usr/bin/prometheus";

/// How long the ground waits for something that takes a second or two on a quiet
/// machine (a scrape, a start): generous, because the suites share two cores.
const PATIENCE: Duration = Duration::from_secs(90);

/// A label set of a series, `__name__` included when the query keeps it.
pub type Labels = BTreeMap<String, String>;

/// An HTTP app serving one release, with its requests counted for Prometheus; stopped
/// on drop.
pub struct MetricsApp {
    release: String,
    addr: SocketAddr,
    error_percent: Arc<AtomicU32>,
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
}

/// What an app has answered, by status.
#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    errors: AtomicU64,
}

impl MetricsApp {
    /// Serve `release` on a free 127.0.0.1 port, answering `error_percent`% of `GET /`
    /// with 500 (each request drawn at random, as a flaky release fails).
    pub fn start(release: &str, error_percent: u32) -> MetricsApp {
        assert!(
            error_percent <= 100,
            "error_percent is a percentage: {error_percent}"
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let app = MetricsApp {
            release: release.to_string(),
            addr,
            error_percent: Arc::new(AtomicU32::new(error_percent)),
            counts: Arc::new(Counts::default()),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let served = Served {
            release: app.release.clone(),
            error_percent: app.error_percent.clone(),
            counts: app.counts.clone(),
            draws: Arc::new(AtomicU64::new(seed())),
        };
        let stop = app.stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let served = served.clone();
                        std::thread::spawn(move || served.serve(stream));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        app
    }

    /// From now on, answer `percent`% of requests with 500.
    pub fn set_error_percent(&self, percent: u32) {
        assert!(percent <= 100, "a percentage: {percent}");
        self.error_percent.store(percent, Ordering::SeqCst);
    }

    pub fn release(&self) -> &str {
        &self.release
    }

    /// `http://127.0.0.1:PORT/`, the page traffic goes to.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// `127.0.0.1:PORT`, as a Prometheus scrape target.
    pub fn target(&self) -> String {
        self.addr.to_string()
    }

    /// Requests answered so far: (200s, 500s).
    pub fn answered(&self) -> (u64, u64) {
        (
            self.counts.ok.load(Ordering::SeqCst),
            self.counts.errors.load(Ordering::SeqCst),
        )
    }
}

impl Drop for MetricsApp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// What one connection of an app needs.
#[derive(Clone)]
struct Served {
    release: String,
    error_percent: Arc<AtomicU32>,
    counts: Arc<Counts>,
    /// A splitmix64 counter: each request draws the next number, without a lock.
    draws: Arc<AtomicU64>,
}

impl Served {
    fn serve(&self, mut stream: TcpStream) {
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let head = read_head(&mut stream);
        let mut parts = head.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let (status, content_type, body) = match (method, path) {
            ("GET", "/metrics") => (200, "text/plain; version=0.0.4", self.exposition()),
            ("GET", "/") => {
                let failing = splitmix64(self.draws.fetch_add(GOLDEN, Ordering::Relaxed)) % 100
                    < u64::from(self.error_percent.load(Ordering::SeqCst));
                // Counted before answering, as an instrumented handler does.
                if failing {
                    self.counts.errors.fetch_add(1, Ordering::SeqCst);
                    (500, "text/plain", format!("{} failed\n", self.release))
                } else {
                    self.counts.ok.fetch_add(1, Ordering::SeqCst);
                    (200, "text/plain", format!("{} ok\n", self.release))
                }
            }
            _ => (404, "text/plain", format!("no {method} {path} here\n")),
        };
        let reason = match status {
            200 => "OK",
            404 => "Not Found",
            _ => "Internal Server Error",
        };
        let _ = stream.write_all(
            format!(
                "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    }

    /// The counters in Prometheus' text format; both codes are always there (0 until
    /// the first such answer), so a ratio of them exists as soon as traffic does.
    fn exposition(&self) -> String {
        let release = escape_label(&self.release);
        format!(
            "# HELP http_requests_total Requests answered, by status code.\n\
             # TYPE http_requests_total counter\n\
             http_requests_total{{code=\"200\",release=\"{release}\"}} {}\n\
             http_requests_total{{code=\"500\",release=\"{release}\"}} {}\n",
            self.counts.ok.load(Ordering::SeqCst),
            self.counts.errors.load(Ordering::SeqCst),
        )
    }
}

/// A label value as the text format writes it.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(GOLDEN);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A different sequence per app and run.
fn seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    splitmix64(nanos ^ u64::from(std::process::id()))
}

/// The request head: up to the blank line (the apps take no bodies).
fn read_head(stream: &mut TcpStream) -> String {
    let mut data = Vec::new();
    let mut buf = [0u8; 1024];
    while !data.windows(4).any(|w| w == b"\r\n\r\n") && data.len() < 64 << 10 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&data).into_owned()
}

/// Steady traffic: `GET /` to each app at a fixed rate, from a thread per app; stopped
/// (and its threads joined) on drop.
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    /// `per_second` requests a second to each of `apps`.
    pub fn start(apps: &[&MetricsApp], per_second: u32) -> Load {
        assert!(
            per_second > 0,
            "a load of 0 requests a second sends nothing"
        );
        let stop = Arc::new(AtomicBool::new(false));
        let every = Duration::from_secs(1) / per_second;
        let threads = apps
            .iter()
            .map(|app| {
                let (addr, stop) = (app.addr, stop.clone());
                std::thread::spawn(move || {
                    let mut next = Instant::now();
                    while !stop.load(Ordering::Relaxed) {
                        // A refused or slow request is what real traffic meets too.
                        let _ = http(addr, "GET", "/", &[], b"");
                        next += every;
                        let now = Instant::now();
                        if next > now {
                            std::thread::sleep(next - now);
                        } else if now - next > Duration::from_secs(1) {
                            // Fell behind (a busy machine): go on at the rate, no burst.
                            next = now;
                        }
                    }
                })
            })
            .collect();
        Load { stop, threads }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// One plain HTTP/1.0 exchange (the server closes the connection, so the answer is
/// everything up to the end, never chunked): the status and the body.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut request = format!("{method} {path} HTTP/1.0\r\nhost: {addr}\r\n");
    for (name, value) in headers {
        request += &format!("{name}: {value}\r\n");
    }
    request += &format!("content-length: {}\r\n\r\n", body.len());
    stream.write_all(request.as_bytes())?;
    stream.write_all(body)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP answer");
    let end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(bad)?;
    let status = String::from_utf8_lossy(&answer[..end])
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    Ok((status, answer[end + 4..].to_vec()))
}

/// `value` percent-encoded for a URL query (everything but RFC 3986's unreserved).
pub fn url_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Prometheus server scraping apps every second, on a free 127.0.0.1 port, with its
/// config and data in a private directory; killed on drop.
pub struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Start Prometheus scraping `targets`, and return once it is ready and has scraped
    /// each of them (so their series exist).
    pub fn start(targets: &[&MetricsApp]) -> Prometheus {
        assert!(
            Path::new(PROMETHEUS).exists(),
            "{PROMETHEUS} is missing: run scripts/setup.sh (it installs Debian's prometheus package)"
        );
        let mut dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, config_yaml(targets)).unwrap();
        // The port is free when picked, but another process may take it before
        // Prometheus binds it: then start again on another.
        for _ in 0..5 {
            let addr = free_addr();
            let log = dir.path().join("prometheus.log");
            let child = Command::new(PROMETHEUS)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap_or_else(|e| panic!("starting {PROMETHEUS}: {e}"));
            let mut prometheus = Prometheus { child, addr, dir };
            match prometheus.wait_ready() {
                Ok(()) => {
                    prometheus.wait_scraped(targets.len());
                    return prometheus;
                }
                Err(log) if log.contains("address already in use") => {
                    dir = std::mem::replace(&mut prometheus.dir, tempfile::tempdir().unwrap());
                }
                Err(log) => panic!("Prometheus stopped before it was ready:\n{log}"),
            }
        }
        panic!("Prometheus found its port taken five times in a row");
    }

    /// `http://127.0.0.1:PORT`, the server's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What Prometheus logged so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// Wait for `/-/ready`; the log if Prometheus exits first.
    fn wait_ready(&mut self) -> Result<(), String> {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("({status})\n{}", self.log()));
            }
            if let Ok((200, _)) = http(self.addr, "GET", "/-/ready", &[], b"") {
                return Ok(());
            }
            assert!(
                started.elapsed() < PATIENCE,
                "Prometheus at {} was not ready after {PATIENCE:?}:\n{}",
                self.addr,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Wait until each of the `count` targets has been scraped successfully.
    fn wait_scraped(&self, count: usize) {
        let started = Instant::now();
        loop {
            let targets = self.get_json("/api/v1/targets?state=active");
            let active = targets["data"]["activeTargets"].as_array();
            let up = active.map_or(0, |a| a.iter().filter(|t| t["health"] == "up").count());
            if up >= count {
                return;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "Prometheus scraped {up} of {count} targets in {PATIENCE:?}: {targets}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn get_json(&self, path: &str) -> serde_json::Value {
        let (status, body) = http(self.addr, "GET", path, &[], b"")
            .unwrap_or_else(|e| panic!("GET {}{path}: {e}\n{}", self.url(), self.log()));
        serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!(
                "GET {}{path}: {status}, not JSON ({e}): {}",
                self.url(),
                String::from_utf8_lossy(&body)
            )
        })
    }

    /// An instant query, now: each series' labels and value (a scalar answer is one
    /// series without labels). Panics with Prometheus' error if the query is refused.
    pub fn instant(&self, query: &str) -> Vec<(Labels, f64)> {
        let answer = self.get_json(&format!("/api/v1/query?query={}", url_encode(query)));
        assert_eq!(answer["status"], "success", "{query}: {answer}");
        let data = &answer["data"];
        match data["resultType"].as_str() {
            Some("vector") => data["result"]
                .as_array()
                .unwrap()
                .iter()
                .map(|series| {
                    let labels = series["metric"]
                        .as_object()
                        .unwrap()
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                        .collect();
                    (labels, sample_value(&series["value"]))
                })
                .collect(),
            Some("scalar") => vec![(Labels::new(), sample_value(&data["result"]))],
            other => panic!("{query}: an instant query answered with {other:?}: {answer}"),
        }
    }

    /// Ask `query` until its answer is a single number (the series exist and the
    /// window holds enough samples for a rate), and return it.
    pub fn instant_value(&self, query: &str) -> f64 {
        self.instant_until(query, |answer| answer.len() == 1 && answer[0].1.is_finite())[0].1
    }

    /// Ask `query` until `done` holds for its answer, and return that answer. Panics
    /// with the last answer after a generous while (the data never came).
    pub fn instant_until(
        &self,
        query: &str,
        done: impl Fn(&[(Labels, f64)]) -> bool,
    ) -> Vec<(Labels, f64)> {
        let started = Instant::now();
        loop {
            let answer = self.instant(query);
            if done(&answer) {
                return answer;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "{query} still answered {answer:?} after {PATIENCE:?}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One scrape job over the apps, every second (evaluation too, for recording rules a
/// later test may add). The timeout cannot exceed the interval.
fn config_yaml(targets: &[&MetricsApp]) -> String {
    let list: Vec<String> = targets
        .iter()
        .map(|t| format!("'{}'", t.target()))
        .collect();
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: apps\n    static_configs:\n      - targets: [{}]\n",
        list.join(", ")
    )
}

/// A port free right now on 127.0.0.1.
fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A sample's `[time, "value"]`, as Prometheus writes it (`NaN`, `+Inf` and `-Inf`
/// included).
fn sample_value(sample: &serde_json::Value) -> f64 {
    let text = sample[1]
        .as_str()
        .unwrap_or_else(|| panic!("a sample: {sample}"));
    match text {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        _ => text
            .parse()
            .unwrap_or_else(|e| panic!("sample value {text:?}: {e}")),
    }
}

/// The workspace path the stand-in for Amazon Managed Service for Prometheus serves.
pub const AMP_WORKSPACE: &str = "/workspaces/ws-test";

/// A stand-in for Amazon Managed Service for Prometheus that answers only requests
/// SigV4-signed for `aps` with its credentials (see `sigv4_prometheus.py`); stopped on
/// drop.
pub struct SigV4Prometheus {
    child: Child,
    addr: SocketAddr,
    /// Holds the server's stderr, read when it fails.
    dir: tempfile::TempDir,
}

/// A request the stand-in received, and what it made of it.
#[derive(Clone, Debug)]
pub struct SignedRequest {
    pub method: String,
    pub path: String,
    /// The query's parameters, from the URL and (POST) the form body, decoded.
    pub params: Vec<(String, String)>,
    pub body: String,
    /// The header names the signature covers (empty if it was refused before that).
    pub signed_headers: Vec<String>,
    /// `ok`, or why it was refused (what the 403 said).
    pub verdict: String,
}

impl SignedRequest {
    pub fn accepted(&self) -> bool {
        self.verdict == "ok"
    }

    /// The first parameter named `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl SigV4Prometheus {
    /// Start the stand-in for a workspace in `region` that `access_key`/`secret_key`
    /// may query.
    pub fn start(access_key: &str, secret_key: &str, region: &str) -> SigV4Prometheus {
        let venv = super::installed("DEPLOYER_MOTO_VENV", "moto-venv");
        let python = venv.join("bin/python");
        assert!(
            python.exists(),
            "the moto venv (with botocore) is not at {}: run scripts/setup.sh",
            venv.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let stderr = dir.path().join("stderr");
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("support/sigv4_prometheus.py");
        let mut child = Command::new(python)
            .arg(script)
            .args([access_key, secret_key, region])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        // The first line says the port; nothing else is written to stdout.
        let mut line = String::new();
        let read = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
        let port = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|v| v["port"].as_u64());
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "sigv4_prometheus.py did not start ({read:?}, {line:?}):\n{}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
        };
        SigV4Prometheus {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port as u16)),
            dir,
        }
    }

    /// The workspace's base URL, as AMP gives it: queries go to `{url}/api/v1/query`.
    pub fn url(&self) -> String {
        format!("http://{}{AMP_WORKSPACE}", self.addr)
    }

    /// Every query request received so far, in order.
    pub fn requests(&self) -> Vec<SignedRequest> {
        let (status, body) = http(self.addr, "GET", "/_verifier/requests", &[], b"")
            .unwrap_or_else(|e| {
                panic!(
                    "the SigV4 stand-in at {} is gone ({e}):\n{}",
                    self.addr,
                    std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
                )
            });
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let seen: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        seen.iter()
            .map(|r| SignedRequest {
                method: text(&r["method"]),
                path: text(&r["path"]),
                params: r["params"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| (text(&p[0]), text(&p[1])))
                    .collect(),
                body: text(&r["body"]),
                signed_headers: r["signed_headers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(text)
                    .collect(),
                verdict: text(&r["verdict"]),
            })
            .collect()
    }
}

impl Drop for SigV4Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
