//! What the host offers plugins: the store state, the capability grants from config,
//! and the providers behind each capability (the plug-in points for cloud backends).
//!
//! Every import checks its grant on each call, even though ungranted imports are
//! already refused at load time: defence in depth costs a branch.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use deployer_engine::describe::error_chain;
use deployer_engine::redact::printable;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::types::CapabilityError;
use super::bindings::{http, log, metrics};
use super::egress::{self, Destination};
use super::limits::Limiter;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Capabilities a hook's config grants (`[plugins.NAME]` in `deployer.toml`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grants {
    /// Hosts the plugin may send HTTP requests to (`http-allow`), exact names or
    /// `*.example.com` suffix patterns.
    pub http_allow: Vec<String>,
    /// The per-deployment key/value store (`kv = true`).
    pub kv: bool,
    /// Wall-clock time (`clock = true`).
    pub clock: bool,
    /// Metric namespaces the plugin may query (`metrics-namespaces`).
    pub metrics_namespaces: Vec<String>,
    /// Prometheus metric names the plugin's PromQL may select (`prometheus-metrics`),
    /// exact names or `prefix_*` patterns.
    pub prometheus_metrics: Vec<String>,
}

impl Grants {
    /// Whether the capability interface `name` (`http`, `kv`, ...) is granted, and if
    /// not, the config line that would grant it.
    pub(crate) fn check(&self, name: &str) -> Result<(), String> {
        let (granted, fix) = match name {
            "log" => (true, ""),
            "clock" => (self.clock, "clock = true"),
            "kv" => (self.kv, "kv = true"),
            "http" => (
                !self.http_allow.is_empty(),
                "http-allow = [\"hooks.example.com\"]",
            ),
            "metrics" => (
                !self.metrics_namespaces.is_empty() || !self.prometheus_metrics.is_empty(),
                "metrics-namespaces = [\"AWS/ApplicationELB\"]` or `prometheus-metrics = [\"http_requests_total\"]",
            ),
            _ => (false, ""),
        };
        if granted {
            Ok(())
        } else {
            Err(fix.to_string())
        }
    }
}

/// Where plugin log lines go.
pub trait LogSink: Send + Sync {
    fn log(&self, plugin: &str, level: log::Level, message: &str);
}

/// A log level as people read it (`info`), not as the bindings debug-print it
/// (`Level::Info`).
pub fn level_name(level: log::Level) -> &'static str {
    match level {
        log::Level::Trace => "trace",
        log::Level::Debug => "debug",
        log::Level::Info => "info",
        log::Level::Warn => "warn",
        log::Level::Error => "error",
    }
}

/// A plugin's log line as deployer prints it: `[plugin NAME] info: message`, escaped onto
/// one line so a plugin cannot start a line of its own.
pub fn log_line(plugin: &str, level: log::Level, message: &str) -> String {
    format!(
        "[plugin {}] {}: {}",
        printable(plugin),
        level_name(level),
        printable(message)
    )
}

/// Writes plugin logs to stderr, each escaped onto its own line.
pub struct StderrLog;

impl LogSink for StderrLog {
    fn log(&self, plugin: &str, level: log::Level, message: &str) {
        eprintln!("{}", log_line(plugin, level, message));
    }
}

/// Sends HTTP requests already checked against the allow-list, to the checked address.
pub trait HttpTransport: Send + Sync {
    fn send(
        &self,
        destination: Destination,
        request: http::Request,
    ) -> BoxFuture<'_, Result<http::Response, CapabilityError>>;
}

/// Resolves a name for a hook's request, once: the request then connects to the address
/// the allow-list check accepted.
pub trait Resolver: Send + Sync {
    fn resolve(&self, host: String, port: u16) -> BoxFuture<'_, std::io::Result<Vec<SocketAddr>>>;
}

/// The system's resolver (what `getaddrinfo` answers).
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn resolve(&self, host: String, port: u16) -> BoxFuture<'_, std::io::Result<Vec<SocketAddr>>> {
        Box::pin(async move {
            tokio::net::lookup_host((host.as_str(), port))
                .await
                .map(Iterator::collect)
        })
    }
}

/// Answers metric queries already checked against the plugin's grant: CloudWatch
/// queries against its namespaces, PromQL against its metric names.
pub trait MetricsSource: Send + Sync {
    fn query(
        &self,
        query: metrics::MetricQuery,
    ) -> BoxFuture<'_, Result<Vec<metrics::Datapoint>, CapabilityError>>;

    /// A PromQL query for the configured Prometheus server; without one, unavailable.
    fn prometheus(
        &self,
        query: metrics::PromqlQuery,
    ) -> BoxFuture<'_, Result<Vec<metrics::Series>, CapabilityError>> {
        let _ = query;
        Box::pin(async {
            Err(CapabilityError::Unavailable(
                "no Prometheus server is configured: add a `[prometheus]` table with its `url` \
                 to deployer.toml"
                    .into(),
            ))
        })
    }
}

/// A deployment's private key/value store.
#[derive(Clone, Default)]
pub struct KvStore(Arc<Mutex<BTreeMap<String, Vec<u8>>>>);

impl KvStore {
    pub const MAX_KEYS: usize = 256;
    pub const MAX_KEY_BYTES: usize = 256;
    pub const MAX_VALUE_BYTES: usize = 16 << 10;
    /// Keys and values together: the store is journaled whole whenever a gate step
    /// changed it, so it stays small (a journal line of at most 128 KiB of hex; a run of
    /// a thousand steps cannot grow its journal by more than that each).
    pub const MAX_TOTAL_BYTES: usize = 64 << 10;

    fn total(map: &BTreeMap<String, Vec<u8>>) -> usize {
        map.iter().map(|(k, v)| k.len() + v.len()).sum()
    }

    pub fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        self.0.lock().unwrap().clone()
    }

    /// The store as a JSON object of hex-encoded values: how the journal keeps it.
    pub fn to_json(&self) -> serde_json::Value {
        let map = self.0.lock().unwrap();
        serde_json::Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(hex::encode(v))))
                .collect(),
        )
    }

    /// Replace the contents with what [`KvStore::to_json`] wrote. Entries that are not
    /// hex strings, or exceed the store's limits, are left out: a damaged journal must
    /// not grow the store past what a plugin could have put there.
    pub fn restore_json(&self, json: &serde_json::Value) {
        let restored: BTreeMap<String, Vec<u8>> = json
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(key, _)| key.len() <= Self::MAX_KEY_BYTES)
            .filter_map(|(key, value)| Some((key.clone(), hex::decode(value.as_str()?).ok()?)))
            .filter(|(_, value)| value.len() <= Self::MAX_VALUE_BYTES)
            .take(Self::MAX_KEYS)
            .scan(0usize, |total, (key, value)| {
                *total += key.len() + value.len();
                Some((*total <= Self::MAX_TOTAL_BYTES).then_some((key, value)))
            })
            .flatten()
            .collect();
        *self.0.lock().unwrap() = restored;
    }
}

/// The providers behind the capabilities; `None` means "not available here".
#[derive(Clone)]
pub struct HostServices {
    pub log: Arc<dyn LogSink>,
    pub kv: KvStore,
    pub resolver: Arc<dyn Resolver>,
    pub http: Option<Arc<dyn HttpTransport>>,
    pub metrics: Option<Arc<dyn MetricsSource>>,
}

impl Default for HostServices {
    fn default() -> Self {
        HostServices {
            log: Arc::new(StderrLog),
            kv: KvStore::default(),
            resolver: Arc::new(SystemResolver),
            http: None,
            metrics: None,
        }
    }
}

/// The data of one store: one plugin call.
pub struct HostState {
    pub(crate) plugin: Arc<str>,
    pub(crate) limiter: Limiter,
    pub(crate) grants: Arc<Grants>,
    pub(crate) services: HostServices,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl HostState {
    pub(crate) fn new(
        plugin: Arc<str>,
        limiter: Limiter,
        grants: Arc<Grants>,
        services: HostServices,
    ) -> Self {
        HostState {
            wasi: empty_wasi(&grants),
            plugin,
            limiter,
            grants,
            services,
            table: ResourceTable::new(),
        }
    }

    fn require(&self, capability: &str) -> Result<(), CapabilityError> {
        self.grants.check(capability).map_err(|fix| {
            CapabilityError::Denied(format!(
                "capability `{capability}` is not granted; add `{fix}` to the plugin's config"
            ))
        })
    }
}

/// No env, args, files, sockets or stdio: WASI only so that guests built for wasip2 link
/// at all. Its clocks read zero unless the plugin is granted `clock`: WASI's clocks
/// would otherwise be a way around the grant.
fn empty_wasi(grants: &Grants) -> WasiCtx {
    let mut builder = WasiCtx::builder();
    if !grants.clock {
        builder.wall_clock(Stopped).monotonic_clock(Stopped);
    }
    builder.build()
}

/// A clock that reads zero, for plugins without the `clock` grant.
struct Stopped;

impl wasmtime_wasi::HostWallClock for Stopped {
    fn resolution(&self) -> std::time::Duration {
        std::time::Duration::from_secs(1)
    }
    fn now(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for Stopped {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

type Trappable<T> = wasmtime::Result<T>;

impl super::bindings::types::Host for HostState {}

impl log::Host for HostState {
    async fn log(&mut self, level: log::Level, message: String) -> Trappable<()> {
        let message = super::limits::clip(message);
        self.services.log.log(&self.plugin, level, &message);
        Ok(())
    }
}

impl super::bindings::hook_world::deployer::plugin::clock::Host for HostState {
    async fn now_ms(&mut self) -> Trappable<u64> {
        if self.require("clock").is_err() {
            return Err(wasmtime::format_err!("clock capability not granted"));
        }
        Ok(SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0))
    }
}

impl super::bindings::hook_world::deployer::plugin::kv::Host for HostState {
    async fn get(&mut self, key: String) -> Trappable<Option<Vec<u8>>> {
        if self.require("kv").is_err() {
            return Ok(None);
        }
        Ok(self.services.kv.0.lock().unwrap().get(&key).cloned())
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> Trappable<Result<(), CapabilityError>> {
        if let Err(e) = self.require("kv") {
            return Ok(Err(e));
        }
        if key.len() > KvStore::MAX_KEY_BYTES || value.len() > KvStore::MAX_VALUE_BYTES {
            return Ok(Err(CapabilityError::Limit(format!(
                "keys are at most {} bytes and values at most {} bytes",
                KvStore::MAX_KEY_BYTES,
                KvStore::MAX_VALUE_BYTES
            ))));
        }
        let mut map = self.services.kv.0.lock().unwrap();
        if map.len() >= KvStore::MAX_KEYS && !map.contains_key(&key) {
            return Ok(Err(CapabilityError::Limit(format!(
                "at most {} keys",
                KvStore::MAX_KEYS
            ))));
        }
        let replaced = map.get(&key).map_or(0, |old| key.len() + old.len());
        if KvStore::total(&map) - replaced + key.len() + value.len() > KvStore::MAX_TOTAL_BYTES {
            return Ok(Err(CapabilityError::Limit(format!(
                "the store holds at most {} bytes of keys and values in all",
                KvStore::MAX_TOTAL_BYTES
            ))));
        }
        map.insert(key, value);
        Ok(Ok(()))
    }

    async fn delete(&mut self, key: String) -> Trappable<()> {
        if self.require("kv").is_ok() {
            self.services.kv.0.lock().unwrap().remove(&key);
        }
        Ok(())
    }
}

impl http::Host for HostState {
    async fn send(
        &mut self,
        req: http::Request,
    ) -> Trappable<Result<http::Response, CapabilityError>> {
        if let Err(e) = self.require("http") {
            return Ok(Err(e));
        }
        if let Err(e) = check_request(&req) {
            return Ok(Err(e));
        }
        let resolver = self.services.resolver.clone();
        let resolve = |host: String, port: u16| async move { resolver.resolve(host, port).await };
        let destination = match egress::check(&self.grants.http_allow, &req.url, resolve).await {
            Ok(destination) => destination,
            Err(e) => return Ok(Err(e)),
        };
        let Some(transport) = self.services.http.clone() else {
            return Ok(Err(CapabilityError::Unavailable(
                "no HTTP transport in this host".into(),
            )));
        };
        Ok(transport.send(destination, req).await)
    }
}

impl metrics::Host for HostState {
    async fn query(
        &mut self,
        q: metrics::MetricQuery,
    ) -> Trappable<Result<Vec<metrics::Datapoint>, CapabilityError>> {
        if let Err(e) = self.require("metrics") {
            return Ok(Err(e));
        }
        if !self.grants.metrics_namespaces.contains(&q.namespace) {
            return Ok(Err(CapabilityError::Denied(format!(
                "namespace `{}` is not in this plugin's metrics-namespaces",
                q.namespace
            ))));
        }
        let Some(source) = self.services.metrics.clone() else {
            return Ok(Err(CapabilityError::Unavailable(
                "no metrics source in this host".into(),
            )));
        };
        Ok(source.query(q).await)
    }

    async fn query_prometheus(
        &mut self,
        q: metrics::PromqlQuery,
    ) -> Trappable<Result<Vec<metrics::Series>, CapabilityError>> {
        if let Err(e) = self.require("metrics") {
            return Ok(Err(e));
        }
        // From here on the query is the checked expression as the host prints it.
        let q = match super::promql::check(&self.grants.prometheus_metrics, &q) {
            Ok(q) => q,
            Err(e) => return Ok(Err(e)),
        };
        let Some(source) = self.services.metrics.clone() else {
            return Ok(Err(CapabilityError::Unavailable(
                "no metrics source in this host".into(),
            )));
        };
        Ok(source
            .prometheus(q)
            .await
            .and_then(super::promql::within_limits))
    }
}

/// Bounds on what a hook's request and the response it gets may weigh.
pub mod http_limits {
    /// Request body.
    pub const MAX_REQUEST_BODY: usize = 1 << 20;
    /// Headers of a request, and of a response handed back.
    pub const MAX_HEADERS: usize = 64;
    /// One header name plus value, and all of a message's headers together.
    pub const MAX_HEADER_BYTES: usize = 8 << 10;
    pub const MAX_ALL_HEADER_BYTES: usize = 64 << 10;
    /// Response body handed back to a plugin, counted while it streams in.
    pub const MAX_RESPONSE_BODY: usize = 1 << 20;
}

fn limit(message: String) -> CapabilityError {
    CapabilityError::Limit(message)
}

/// Headers within [`http_limits`].
fn check_headers(headers: &[(String, String)], whose: &str) -> Result<(), CapabilityError> {
    use http_limits::*;
    if headers.len() > MAX_HEADERS {
        return Err(limit(format!(
            "{whose} has more than {MAX_HEADERS} headers"
        )));
    }
    let mut total = 0;
    for (name, value) in headers {
        let size = name.len() + value.len();
        if size > MAX_HEADER_BYTES {
            return Err(limit(format!(
                "{whose} has a header over {MAX_HEADER_BYTES} bytes"
            )));
        }
        total += size;
    }
    if total > MAX_ALL_HEADER_BYTES {
        return Err(limit(format!(
            "{whose}'s headers are over {MAX_ALL_HEADER_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Methods a hook may use. `CONNECT` would open a tunnel through the granted host,
/// `TRACE` echo what the host added; neither is a request *to* the granted host.
pub const ALLOWED_METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// Headers the host sets itself or that change how a message is framed or routed:
/// `Host` would reach another virtual host behind the granted address, the framing
/// and hop-by-hop ones could smuggle a second request to it, `Proxy-*` and `Upgrade`
/// talk to what sits in between.
const HOST_OWNED_HEADERS: [&str; 11] = [
    "host",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "expect",
    "via",
    "http2-settings",
];

/// A plugin's request within [`http_limits`], checked before anything is sent.
fn check_request(request: &http::Request) -> Result<(), CapabilityError> {
    if !ALLOWED_METHODS.contains(&request.method.as_str()) {
        return Err(CapabilityError::Invalid(format!(
            "method `{}` is not allowed: use one of {}",
            request.method.escape_debug(),
            ALLOWED_METHODS.join(", ")
        )));
    }
    for (name, _) in &request.headers {
        let lower = name.to_ascii_lowercase();
        if HOST_OWNED_HEADERS.contains(&lower.as_str()) || lower.starts_with("proxy-") {
            return Err(CapabilityError::Invalid(format!(
                "header `{}` is set by the host (from the URL and the body), not by a plugin",
                name.escape_debug()
            )));
        }
    }
    if request.body.len() > http_limits::MAX_REQUEST_BODY {
        return Err(limit(format!(
            "request bodies are at most {} bytes",
            http_limits::MAX_REQUEST_BODY
        )));
    }
    check_headers(&request.headers, "the request")
}

/// The real HTTP transport: a request a hook makes (already allow-listed) goes to the
/// address that was checked, through no proxy, following no redirect, within the
/// request's own timeout; the response is cut off at its limits as it streams in.
pub struct ReqwestTransport {
    /// For requests to an address written in the URL (no name to pin).
    client: reqwest::Client,
}

impl ReqwestTransport {
    /// Largest response body handed back to a plugin.
    pub const MAX_BODY: usize = http_limits::MAX_RESPONSE_BODY;

    fn builder() -> reqwest::ClientBuilder {
        // Redirects could leave the allow-list: a plugin sees them as responses. A proxy
        // would resolve the name again, somewhere else.
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
    }

    /// # Errors
    /// When the TLS backend cannot be initialised.
    pub fn new() -> reqwest::Result<Self> {
        Ok(ReqwestTransport {
            client: Self::builder().build()?,
        })
    }

    /// A client that connects to `destination`'s checked address whatever DNS says now.
    fn client_for(&self, destination: &Destination) -> Result<reqwest::Client, CapabilityError> {
        match &destination.domain {
            None => Ok(self.client.clone()),
            Some(domain) => Self::builder()
                .resolve(domain, destination.addr)
                .build()
                .map_err(|e| CapabilityError::Unavailable(error_chain(&e))),
        }
    }
}

impl HttpTransport for ReqwestTransport {
    fn send(
        &self,
        destination: Destination,
        request: http::Request,
    ) -> BoxFuture<'_, Result<http::Response, CapabilityError>> {
        Box::pin(async move {
            let method = reqwest::Method::from_bytes(request.method.as_bytes()).map_err(|_| {
                CapabilityError::Invalid(format!(
                    "`{}` is not an HTTP method",
                    request.method.escape_debug()
                ))
            })?;
            let client = self.client_for(&destination)?;
            let mut builder = client
                .request(method, destination.url)
                .timeout(std::time::Duration::from_millis(u64::from(
                    request.timeout_ms.max(1),
                )))
                .body(request.body);
            for (name, value) in request.headers {
                builder = builder.header(name, value);
            }
            // Errors without the URL: its query or user info may carry secrets.
            let mut response = builder
                .send()
                .await
                .map_err(|e| CapabilityError::Unavailable(error_chain(&e.without_url())))?;
            let status = response.status().as_u16();
            let headers: Vec<(String, String)> = response
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            check_headers(&headers, "the response")?;
            let mut body = Vec::new();
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| CapabilityError::Unavailable(error_chain(&e.without_url())))?
            {
                if body.len() + chunk.len() > Self::MAX_BODY {
                    return Err(limit(format!(
                        "response body over {} bytes",
                        Self::MAX_BODY
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(http::Response {
                status,
                headers,
                body,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ungranted_capabilities_say_how_to_grant_them() {
        let grants = Grants::default();
        assert_eq!(grants.check("log"), Ok(()));
        assert_eq!(grants.check("kv"), Err("kv = true".into()));
        assert!(grants.check("http").unwrap_err().contains("http-allow"));
    }

    /// The level in words, as the CLI prints it, never the bindings' `Level::Info`.
    #[test]
    fn log_lines_name_the_plugin_and_the_level_in_words() {
        assert_eq!(
            log_line("notify", log::Level::Info, "sent"),
            "[plugin notify] info: sent"
        );
        assert_eq!(
            log_line("notify", log::Level::Warn, "slow\n::error::x"),
            "[plugin notify] warn: slow\\n::error::x"
        );
        for (level, name) in [
            (log::Level::Trace, "trace"),
            (log::Level::Debug, "debug"),
            (log::Level::Error, "error"),
        ] {
            assert_eq!(level_name(level), name);
        }
    }
}
