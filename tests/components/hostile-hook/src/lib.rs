//! A hook that uses the http and kv capabilities as its params say, or misbehaves.
//!
//! Built twice by `tests/build.rs`: for wasm32-unknown-unknown (no WASI) and for
//! wasm32-wasip2 (the host links WASI with an empty context), so the `probe` mode can
//! report what a WASI guest sees.

use deployer_plugin_sdk::bindings::log::Level;
use deployer_plugin_sdk::hook::{HookContext, http, kv, result};
use deployer_plugin_sdk::{GateResult, GateStatus, Hook, PluginInfo};
use serde::Deserialize;

#[derive(Deserialize)]
struct Params {
    /// Send a request here and report the status, or the capability error.
    #[serde(default)]
    url: Option<String>,
    /// The request's method (GET).
    #[serde(default)]
    method: Option<String>,
    /// Extra request headers `x-probe-N`, each with a value of `header_bytes` bytes.
    #[serde(default)]
    headers: u32,
    #[serde(default)]
    header_bytes: u32,
    /// Headers sent as given, after the `x-probe-N` ones.
    #[serde(default)]
    set_headers: Vec<(String, String)>,
    /// A request body of this many bytes.
    #[serde(default)]
    body_bytes: u32,
    #[serde(default)]
    remember: Option<String>,
    /// Misbehave instead: "loop", "trap", "oom", "huge", "fill" (the kv store, until
    /// refused); or "log" (log `message`, then
    /// `token`), "detail" (fail with `message` as the gate detail), "probe" (report what
    /// the environment shows: env, args, files, sockets to `connect`, the clock).
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    message: Option<String>,
    /// A secret handed in by config that the hook tries to leak.
    #[serde(default)]
    token: Option<String>,
    /// `host:port` for the probe's TCP connection.
    #[serde(default)]
    connect: Option<String>,
}

struct Probe;

impl Hook for Probe {
    type Params = Params;

    fn info() -> PluginInfo {
        PluginInfo {
            name: "probe".into(),
            version: "0.1.0".into(),
            description: "calls capabilities on request".into(),
        }
    }

    fn run(params: &Params, ctx: &HookContext) -> GateResult {
        match params.mode.as_deref() {
            Some("loop") => loop {
                std::hint::black_box(());
            },
            Some("trap") => panic!("deliberate trap"),
            Some("oom") => {
                let mut hoard = Vec::new();
                loop {
                    hoard.push(std::hint::black_box(vec![7u8; 1 << 20]));
                }
            }
            Some("huge") => return result("probe", GateStatus::Pass, "y".repeat(8 << 20)),
            Some("log") => {
                let message = params.message.as_deref().unwrap_or_default();
                deployer_plugin_sdk::log(Level::Info, message);
                if let Some(token) = &params.token {
                    deployer_plugin_sdk::log(Level::Warn, &format!("token is {token}"));
                    return result("probe", GateStatus::Pass, format!("logged; token {token}"));
                }
                return result("probe", GateStatus::Pass, "logged");
            }
            Some("detail") => {
                let message = params.message.clone().unwrap_or_default();
                return result("probe", GateStatus::Fail, message);
            }
            Some("probe") => return result("probe", GateStatus::Pass, probe(params)),
            Some("fill") => {
                // Fill the kv store with 15 KiB values until the host says no.
                for i in 0..1000 {
                    if let Err(e) = kv::set(&format!("k{i:03}"), &vec![b'v'; 15 << 10]) {
                        return result("probe", GateStatus::Pass, format!("stored {i}: {e:?}"));
                    }
                }
                return result("probe", GateStatus::Pass, "stored 1000");
            }
            _ => {}
        }
        if let Some(value) = &params.remember {
            let previous = kv::get("remembered").map(|v| String::from_utf8_lossy(&v).into_owned());
            if let Err(e) = kv::set("remembered", value.as_bytes()) {
                return result("probe", GateStatus::Fail, format!("kv: {e:?}"));
            }
            return result("probe", GateStatus::Pass, format!("previous={previous:?}"));
        }
        if let Some(url) = &params.url {
            let request = http::Request {
                method: params.method.clone().unwrap_or_else(|| "GET".into()),
                url: url.clone(),
                headers: (0..params.headers)
                    .map(|i| {
                        (
                            format!("x-probe-{i}"),
                            "h".repeat(params.header_bytes.max(1) as usize),
                        )
                    })
                    .chain(params.set_headers.iter().cloned())
                    .collect(),
                body: vec![b'b'; params.body_bytes as usize],
                timeout_ms: 1000,
            };
            return match http::send(&request) {
                Ok(response) => result(
                    "probe",
                    GateStatus::Pass,
                    format!(
                        "status {} body {} bytes, {} headers",
                        response.status,
                        response.body.len(),
                        response.headers.len()
                    ),
                ),
                Err(e) => result("probe", GateStatus::Fail, format!("http: {e:?}")),
            };
        }
        result("probe", GateStatus::Pass, format!("ran at {:?}", ctx.point))
    }
}

/// What the guest can see of the machine it runs on, on one line.
fn probe(params: &Params) -> String {
    // Written where the host would show it if it passed stdio through.
    println!("PROBE-STDOUT-MARKER");
    eprintln!("PROBE-STDERR-MARKER");
    let connect = match &params.connect {
        Some(addr) => match std::net::TcpStream::connect(addr.as_str()) {
            Ok(_) => "connected".to_string(),
            Err(e) => format!("refused ({:?})", e.kind()),
        },
        None => "not tried".to_string(),
    };
    format!(
        "env={} args={} read={} dir={} root={} write={} connect={connect} clock={}",
        std::env::vars().count(),
        std::env::args().count(),
        std::fs::read("/etc/passwd").is_ok(),
        std::fs::read_dir(".").is_ok(),
        std::fs::read_dir("/").is_ok(),
        std::fs::write("probe-was-here", b"x").is_ok(),
        clock(),
    )
}

/// Wall-clock milliseconds as the guest reads them (0 when it cannot).
#[cfg(target_os = "wasi")]
fn clock() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// Without WASI there is no clock to read (std would panic).
#[cfg(not(target_os = "wasi"))]
fn clock() -> u128 {
    0
}

deployer_plugin_sdk::export_hook!(Probe);
