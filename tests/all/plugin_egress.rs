//! Where a hook's HTTP request may go, probed as an attacker would: every way to write an
//! address or disguise a host, names that resolve inside, a name that resolves again to
//! somewhere else, redirects, and requests and responses over their limits. Each probe
//! runs through the real transport against a listener on 127.0.0.1 (and `[::1]`) that
//! counts the connections it accepts, and each test has a control that does reach it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use deployer_contract::{GateResult, GateStatus, LifecyclePoint};
use deployer_plugin_host::capabilities::{BoxFuture, ReqwestTransport, Resolver, SystemResolver};
use deployer_plugin_host::hook::{HookContext, HookPlugin};
use deployer_plugin_host::{Grants, HostServices, Limits, PluginHost};
use deployer_tests::support::listener::{Listener, Reply};
use deployer_tests::{components, host, source};
use serde_json::{Value, json};

/// An address outside every private range, never routed (TEST-NET-1).
const PUBLIC: &str = "192.0.2.1";

/// A resolver whose `n`-th answer (from 0) is `answer(n)`, at the port asked for.
struct Scripted {
    calls: AtomicUsize,
    answer: Box<dyn Fn(usize) -> Vec<&'static str> + Send + Sync>,
}

impl Scripted {
    fn new(answer: impl Fn(usize) -> Vec<&'static str> + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Scripted {
            calls: AtomicUsize::new(0),
            answer: Box::new(answer),
        })
    }

    /// Every name is `ip`.
    fn always(ip: &'static str) -> Arc<Self> {
        Scripted::new(move |_| vec![ip])
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Resolver for Scripted {
    fn resolve(&self, _host: String, port: u16) -> BoxFuture<'_, std::io::Result<Vec<SocketAddr>>> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let addrs = (self.answer)(n)
            .into_iter()
            .map(|ip| SocketAddr::new(ip.parse::<IpAddr>().unwrap(), port))
            .collect();
        Box::pin(async move { Ok(addrs) })
    }
}

/// The probe hook with `http-allow = allow` (and `kv`, which it also imports).
fn probe(host: &PluginHost, allow: &[&str]) -> HookPlugin {
    let grants = Grants {
        http_allow: allow.iter().map(|s| s.to_string()).collect(),
        kv: true,
        ..Grants::default()
    };
    HookPlugin::load(
        host,
        &source("probe", components::HOSTILE_HOOK),
        Limits::hook(),
        grants,
    )
    .unwrap()
}

/// The real transport, names answered by `resolver`.
fn services(resolver: Arc<dyn Resolver>) -> HostServices {
    HostServices {
        resolver,
        http: Some(Arc::new(ReqwestTransport::new().unwrap())),
        ..HostServices::default()
    }
}

async fn run(hook: &HookPlugin, services: &HostServices, params: serde_json::Value) -> GateResult {
    let ctx = HookContext {
        point: LifecyclePoint::PreTraffic,
        deployment_id: "d-1".into(),
        service: "web".into(),
        new_release: "web:2".into(),
        stable_release: Some("web:1".into()),
        new_traffic_percent: 0,
        params: params.to_string(),
    };
    hook.run_with(&ctx, services.clone()).await.unwrap()
}

async fn get(hook: &HookPlugin, services: &HostServices, url: &str) -> GateResult {
    run(hook, services, json!({ "url": url })).await
}

/// The host refused the request itself (not a transport error after connecting).
fn refused(result: &GateResult) -> bool {
    result.status == GateStatus::Fail
        && (result.detail.starts_with("http: CapabilityError::Denied(")
            || result.detail.starts_with("http: CapabilityError::Invalid("))
}

/// 127.0.0.1 written every other way the URL parser reads as 127.0.0.1 (or as another
/// address that reaches this machine): each octet in decimal, hex or octal, the short
/// forms that fold the last octets into one number, zero padding, case, a trailing dot.
fn ipv4_notations() -> Vec<String> {
    let forms = |octet: u32| {
        vec![
            octet.to_string(),
            format!("0x{octet:x}"),
            format!("0{octet:o}"),
            format!("{octet:03}"),
        ]
    };
    let mut hosts = std::collections::BTreeSet::new();
    for a in forms(127) {
        for b in forms(0) {
            for c in forms(0) {
                for d in forms(1) {
                    hosts.insert(format!("{a}.{b}.{c}.{d}"));
                }
            }
        }
    }
    hosts.remove("127.0.0.1");
    hosts.extend(
        [
            "2130706433",
            "0x7f000001",
            "0X7F000001",
            "0x7F000001",
            "017700000001",
            "0x7f.1",
            "0x7f.0x1",
            "0177.1",
            "127.1",
            "127.0.1",
            "127.0x1",
            "127.0.0x1",
            "127.65536",
            "127.0.0.1.",
            "127.1.",
            "2130706433.",
            "0",
            "0.0.0.0",
            "0x0",
            "00",
            "127.0.0.01",
            "0000127.0.0.1",
        ]
        .map(String::from),
    );
    hosts.into_iter().collect()
}

/// Hosts written so that a reader sees one thing and the parser another, or that are no
/// host the grant could mean: refused whatever the grant lists, `127.0.0.1` included.
fn disguises(port: u16) -> Vec<String> {
    let p = port;
    let mut urls: Vec<String> = ipv4_notations()
        .into_iter()
        .map(|host| format!("http://{host}:{p}/"))
        .collect();
    // IPv6 forms of loopback, of 127.0.0.1 and of other inside addresses, zone ids.
    for host in [
        "[::1]",
        "[0:0:0:0:0:0:0:1]",
        "[0000:0000:0000:0000:0000:0000:0000:0001]",
        "[::0:1]",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "[::FFFF:7F00:1]",
        "[0:0:0:0:0:ffff:7f00:1]",
        "[::127.0.0.1]",
        "[::7f00:1]",
        "[::]",
        "[::ffff:0.0.0.0]",
        "[::ffff:169.254.169.254]",
        "[fd00:ec2::254]",
        "[fe80::1%25lo]",
        "[fe80::1%lo]",
        "[::1%25lo]",
        "[::1]]",
        "[127.0.0.1]",
    ] {
        urls.push(format!("http://{host}:{p}/"));
    }
    urls.extend([
        // User info: the name a reader sees first is not the host.
        format!("http://allowed.example.com@127.0.0.1:{p}/"),
        format!("http://allowed.example.com:{p}@127.0.0.1:{p}/"),
        format!("http://user:pass@ok.example.com:{p}/"),
        format!("http://@127.0.0.1:{p}/"),
        format!("http://ok.example.com%2f@127.0.0.1:{p}/"),
        format!("http://127.0.0.1\\@allowed.example.com:{p}/"),
        format!("http://allowed.example.com\\@127.0.0.1:{p}/"),
        format!("http://allowed.example.com\\.127.0.0.1:{p}/"),
        format!("http:\\\\127.0.0.1:{p}/"),
        // Percent-encoding in the host.
        format!("http://%31%32%37.0.0.1:{p}/"),
        format!("http://127.0.0.1%2e:{p}/"),
        format!("http://ok%2eexample.com:{p}/"),
        format!("http://%6Fk.example.com:{p}/"),
        format!("http://ok.example.com%00:{p}/"),
        format!("http://ok.example.com%2523:{p}/"),
        // Ports the parser rejects or reads differently.
        format!("http://127.0.0.1:{}/", u32::from(p) + 65536),
        format!("http://127.0.0.1:{p}:{p}/"),
        format!("http://127.0.0.1:+{p}/"),
        format!("http://127.0.0.1:{p};@ok.example.com/"),
        // Non-ASCII: ideographic and fullwidth dots, fullwidth letters, IDNA.
        format!("http://127\u{3002}0\u{3002}0\u{3002}1:{p}/"),
        format!("http://127\u{ff0e}0\u{ff0e}0\u{ff0e}1:{p}/"),
        format!("http://127\u{ff61}0\u{ff61}0\u{ff61}1:{p}/"),
        format!(
            "http://\u{ff4c}\u{ff4f}\u{ff43}\u{ff41}\u{ff4c}\u{ff48}\u{ff4f}\u{ff53}\u{ff54}:{p}/"
        ),
        format!("http://ok.example\u{3002}com:{p}/"),
        format!("http://ok\u{ff0e}example\u{ff0e}com:{p}/"),
        format!("http://\u{1d6a8}k.example.com:{p}/"),
        // Names with a trailing dot.
        format!("http://ok.example.com.:{p}/"),
        format!("http://localhost.:{p}/"),
        // Spaces, tabs, newlines and NUL, which the parser would strip or stop at.
        format!(" http://127.0.0.1:{p}/"),
        format!("http://127.0.0.1:{p}/ "),
        format!("http://127.0.0\t.1:{p}/"),
        format!("http://127.0.0.1\n:{p}/"),
        format!("http://ok.example.com\r\n@127.0.0.1:{p}/"),
        format!("\u{0}http://127.0.0.1:{p}/"),
        // Not http(s), or no authority the way it is written.
        format!("ftp://127.0.0.1:{p}/"),
        format!("gopher://127.0.0.1:{p}/_GET%20/"),
        format!("ws://127.0.0.1:{p}/"),
        "file://127.0.0.1/etc/passwd".to_string(),
        "file:///etc/passwd".to_string(),
        "data:text/plain,hello".to_string(),
        format!("//127.0.0.1:{p}/"),
        format!("http:127.0.0.1:{p}/"),
        format!("http:/127.0.0.1:{p}/"),
        format!("http:///127.0.0.1:{p}/"),
    ]);
    urls
}

/// Plainly written URLs that reach this machine: refused only because the grant does not
/// name 127.0.0.1 (IP literals) or the address a name resolves to (loopback).
fn plainly_inside(port: u16) -> Vec<String> {
    let p = port;
    vec![
        format!("http://127.0.0.1:{p}/"),
        format!("HTTP://127.0.0.1:{p}/"),
        format!("hTTp://127.0.0.1:{p}/"),
        format!("https://127.0.0.1:{p}/"),
        format!("http://127.0.0.1:0000{p}/"),
        format!("http://127.0.0.1:{p}#@allowed.example.com/"),
        format!("http://127.0.0.1:{p}?@allowed.example.com/"),
        format!("http://127.0.0.1:{p}/#@allowed.example.com"),
        format!("http://localhost:{p}/"),
        format!("http://LOCALHOST:{p}/"),
        // Names on the allow-list whose answer is 127.0.0.1.
        format!("http://ok.example.com:{p}/"),
        format!("http://OK.Example.COM:{p}/"),
        format!("http://127.0.0.1.example.com:{p}/"),
        format!("http://a.b.c.example.com:{p}/"),
        format!("http://xn--k-mfa.example.com:{p}/"),
        format!("https://ok.example.com:{p}/"),
        format!("http://ok.example.com#@127.0.0.1:{p}/"),
    ]
}

/// Run every URL and return those not refused by the host, with what happened.
async fn not_refused(hook: &HookPlugin, services: &HostServices, urls: &[String]) -> Vec<String> {
    let mut escaped = Vec::new();
    for url in urls {
        let result = get(hook, services, url).await;
        if !refused(&result) {
            escaped.push(format!("{url:?}: {:?} {}", result.status, result.detail));
        }
    }
    escaped
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_way_of_writing_a_url_reaches_an_address_the_grant_does_not_name() {
    let listener = Listener::start(Reply::Ok);
    let (host, _cache) = host();
    let resolver = Scripted::always("127.0.0.1");
    let services = services(resolver.clone());
    let disguised = disguises(listener.port);
    let inside = plainly_inside(listener.port);
    assert!(disguised.len() > 200, "{} URLs", disguised.len());

    // Allowed: names under example.com. Every URL is refused before any connection.
    let hook = probe(&host, &["*.example.com"]);
    let all: Vec<String> = disguised.iter().chain(&inside).cloned().collect();
    let escaped = not_refused(&hook, &services, &all).await;
    assert!(escaped.is_empty(), "not refused:\n{}", escaped.join("\n"));
    assert_eq!(listener.settled(), 0, "{:?}", listener.requests());

    // Allowed as well: 127.0.0.1 itself. The disguised forms are still refused: only the
    // address written plainly is the address granted.
    let hook = probe(&host, &["*.example.com", "127.0.0.1"]);
    let escaped = not_refused(&hook, &services, &disguised).await;
    assert!(escaped.is_empty(), "not refused:\n{}", escaped.join("\n"));
    assert_eq!(listener.settled(), 0, "{:?}", listener.requests());

    // Control: a name on the list whose address is granted reaches the listener, once,
    // at the checked address, with the name as the Host header.
    let before = resolver.calls();
    let url = format!("http://ok.example.com:{}/control", listener.port);
    let result = get(&hook, &services, &url).await;
    assert_eq!(result.status, GateStatus::Pass, "{}", result.detail);
    assert!(result.detail.starts_with("status 200"), "{}", result.detail);
    assert_eq!(listener.settled(), 1);
    assert_eq!(resolver.calls(), before + 1, "resolved once");
    let requests = listener.requests();
    assert!(
        requests[0].starts_with("GET /control HTTP/1.1")
            && requests[0]
                .to_ascii_lowercase()
                .contains(&format!("host: ok.example.com:{}", listener.port)),
        "{requests:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_is_refused_when_any_answer_it_would_use_is_inside() {
    let listener = Listener::start(Reply::Ok);
    let (host, _cache) = host();
    let hook = probe(&host, &["*.example.com", "127.0.0.1"]);
    let url = format!("http://rebind.example.com:{}/", listener.port);
    // Every kind of address that reaches this machine or its network, in both families.
    for inside in [
        "127.0.0.2",
        "127.255.255.254",
        "0.0.0.0",
        "0.1.2.3",
        "::1",
        "::",
        "::ffff:127.0.0.1",
        "::127.0.0.1",
        "169.254.169.254",
        "::ffff:169.254.169.254",
        "fd00:ec2::254",
        "fe80::1",
        "febf::1",
        "10.0.0.1",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "100.64.0.1",
        "100.127.255.255",
        "fc00::1",
        "fd12:3456::1",
        "224.0.0.1",
        "ff02::1",
        "255.255.255.255",
        "240.0.0.1",
    ] {
        let services = services(Scripted::always(inside));
        let result = get(&hook, &services, &url).await;
        let shown = inside.parse::<IpAddr>().unwrap().to_string();
        assert!(
            refused(&result)
                && result.detail.contains(&format!("resolves to {shown}"))
                && result.detail.contains("to http-allow"),
            "{inside}: {:?} {}",
            result.status,
            result.detail
        );
    }
    // Only inside answers: refused, whatever their order.
    let only_inside = services(Scripted::new(|_| {
        vec!["::1", "127.0.0.2", "169.254.169.254"]
    }));
    assert!(refused(&get(&hook, &only_inside, &url).await));
    assert_eq!(listener.settled(), 0, "{:?}", listener.requests());
    // Control: the granted address itself is allowed.
    let granted = services(Scripted::always("127.0.0.1"));
    let result = get(&hook, &granted, &url).await;
    assert!(result.detail.starts_with("status 200"), "{}", result.detail);
    assert_eq!(listener.settled(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_goes_to_the_checked_address_never_to_a_second_lookup() {
    let listener = Listener::start(Reply::Ok);
    // What the system says of `localhost`: if the transport looked the name up itself,
    // it would reach the listener.
    let system: Vec<SocketAddr> = tokio::net::lookup_host(("localhost", listener.port))
        .await
        .unwrap()
        .collect();
    assert!(system.iter().any(|a| a.ip().is_loopback()), "{system:?}");
    let (host, _cache) = host();
    let hook = probe(&host, &["localhost"]);
    let url = format!("http://localhost:{}/", listener.port);

    // The check's answer is a public address; any later lookup would say 127.0.0.1.
    let rebinding = Scripted::new(|n| {
        if n == 0 {
            vec![PUBLIC]
        } else {
            vec!["127.0.0.1"]
        }
    });
    let result = get(&hook, &services(rebinding.clone()), &url).await;
    assert_eq!(rebinding.calls(), 1, "resolved once");
    assert!(
        result
            .detail
            .starts_with("http: CapabilityError::Unavailable("),
        "it tried the public address and could not reach it: {}",
        result.detail
    );
    assert_eq!(listener.settled(), 0, "{:?}", listener.requests());

    // A loopback and a public answer: the request goes to the public one only.
    let mixed = Scripted::new(|_| vec!["127.0.0.1", "::1", PUBLIC]);
    let result = get(&hook, &services(mixed), &url).await;
    assert!(
        result
            .detail
            .starts_with("http: CapabilityError::Unavailable("),
        "{}",
        result.detail
    );
    assert_eq!(listener.settled(), 0, "{:?}", listener.requests());

    // With the system's own answer, `localhost` is loopback and refused.
    let result = get(&hook, &services(Arc::new(SystemResolver)), &url).await;
    assert!(
        refused(&result) && result.detail.contains("loopback"),
        "{}",
        result.detail
    );
    assert_eq!(listener.settled(), 0, "{:?}", listener.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_handed_to_the_plugin_not_followed() {
    // Allowed: 127.0.0.1. The first listener redirects to `localhost` on a second one,
    // which the grant does not name; a client that followed it would reach it.
    let elsewhere = Listener::start(Reply::Ok);
    let redirecting = Listener::start(Reply::Redirect(format!(
        "http://localhost:{}/",
        elsewhere.port
    )));
    let (host, _cache) = host();
    let hook = probe(&host, &["127.0.0.1"]);
    let services = services(Arc::new(SystemResolver));
    let result = get(&hook, &services, &redirecting.url("/")).await;
    assert_eq!(result.status, GateStatus::Pass, "{}", result.detail);
    assert!(
        result.detail.starts_with("status 302"),
        "the plugin sees the redirect: {}",
        result.detail
    );
    assert_eq!(redirecting.settled(), 1);
    assert_eq!(elsewhere.settled(), 0, "{:?}", elsewhere.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_over_their_limits_are_cut_off_and_the_plugin_gets_none_of_them() {
    const MIB: usize = 1 << 20;
    let (host, _cache) = host();
    let hook = probe(&host, &["127.0.0.1"]);
    let services = services(Arc::new(SystemResolver));
    for (reply, expected) in [
        // At the limits: delivered whole (the controls).
        (
            Reply::Body {
                bytes: MIB,
                chunked: true,
            },
            Some(format!("status 200 body {MIB} bytes")),
        ),
        (
            Reply::Body {
                bytes: MIB,
                chunked: false,
            },
            Some(format!("status 200 body {MIB} bytes")),
        ),
        (
            Reply::Headers {
                count: 60,
                value_bytes: 16,
            },
            Some("status 200 body 2 bytes, 62 headers".into()),
        ),
        // Over them: refused, streamed or announced.
        (
            Reply::Body {
                bytes: 2 * MIB,
                chunked: true,
            },
            None,
        ),
        (
            Reply::Body {
                bytes: MIB + 1,
                chunked: true,
            },
            None,
        ),
        (
            Reply::Body {
                bytes: 2 * MIB,
                chunked: false,
            },
            None,
        ),
        (
            Reply::Headers {
                count: 70,
                value_bytes: 1,
            },
            None,
        ),
        (
            Reply::Headers {
                count: 1,
                value_bytes: 9 << 10,
            },
            None,
        ),
        (
            Reply::Headers {
                count: 20,
                value_bytes: 4 << 10,
            },
            None,
        ),
    ] {
        let listener = Listener::start(reply.clone());
        let result = get(&hook, &services, &listener.url("/")).await;
        match expected {
            Some(prefix) => {
                assert_eq!(
                    result.status,
                    GateStatus::Pass,
                    "{reply:?}: {}",
                    result.detail
                );
                assert!(
                    result.detail.starts_with(&prefix),
                    "{reply:?}: {}",
                    result.detail
                );
            }
            None => {
                assert!(
                    result.status == GateStatus::Fail
                        && result.detail.starts_with("http: CapabilityError::Limit(")
                        && !result.detail.contains("status"),
                    "{reply:?}: {}",
                    result.detail
                );
                assert!(result.detail.len() < 200, "{reply:?}: {}", result.detail);
            }
        }
        assert_eq!(listener.settled(), 1, "{reply:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_their_limits_never_leave_the_host() {
    let (host, _cache) = host();
    let hook = probe(&host, &["127.0.0.1"]);
    let services = services(Arc::new(SystemResolver));
    for (params, within) in [
        (json!({ "body_bytes": 1 << 20, "method": "POST" }), true),
        (json!({ "headers": 64, "header_bytes": 16 }), true),
        (
            json!({ "body_bytes": (1 << 20) + 1, "method": "POST" }),
            false,
        ),
        (json!({ "body_bytes": 4 << 20, "method": "POST" }), false),
        (json!({ "headers": 65 }), false),
        (json!({ "headers": 1000 }), false),
        (
            json!({ "headers": 1, "header_bytes": (8 << 10) + 1 }),
            false,
        ),
        (json!({ "headers": 10, "header_bytes": 7 << 10 }), false),
    ] {
        let listener = Listener::start(Reply::Ok);
        let mut params = params;
        params["url"] = listener.url("/").into();
        let result = run(&hook, &services, params.clone()).await;
        if within {
            assert!(
                result.detail.starts_with("status 200"),
                "{params}: {}",
                result.detail
            );
            assert_eq!(listener.settled(), 1, "{params}");
            if let Some(bytes) = params["body_bytes"].as_u64() {
                assert!(
                    listener.requests()[0].ends_with(&format!("[{bytes} body bytes]")),
                    "{:?}",
                    listener.requests()
                );
            }
        } else {
            assert!(
                result.detail.starts_with("http: CapabilityError::Limit("),
                "{params}: {}",
                result.detail
            );
            assert_eq!(listener.settled(), 0, "{params}: {:?}", listener.requests());
        }
    }
    // A URL over 8 KiB, to an address the grant names.
    let listener = Listener::start(Reply::Ok);
    let long = listener.url(&format!("/{}", "a".repeat(8 << 10)));
    let result = get(&hook, &services, &long).await;
    assert!(
        result.detail.starts_with("http: CapabilityError::Limit("),
        "{}",
        result.detail
    );
    assert_eq!(listener.settled(), 0);
}

/// A hook cannot pick another virtual host behind its granted address, frame its own
/// message (a smuggled second request), talk to a proxy in between, or tunnel: such
/// requests are refused before any connection. Controls: an ordinary header and each
/// allowed method reach the listener.
#[tokio::test]
async fn requests_that_would_reach_past_the_granted_host_are_refused() {
    let (host, _cache) = host();
    let hook = probe(&host, &["127.0.0.1"]);
    let services = services(Arc::new(SystemResolver));
    let mut refused: Vec<Value> = [
        "Host",
        "host",
        "HOST",
        "Transfer-Encoding",
        "Content-Length",
        "Connection",
        "Keep-Alive",
        "Upgrade",
        "TE",
        "Trailer",
        "Expect",
        "Via",
        "HTTP2-Settings",
        "Proxy-Authorization",
        "Proxy-Connection",
        "proxy-anything",
    ]
    .iter()
    .map(|name| json!({ "set_headers": [[name, "169.254.169.254"]] }))
    .collect();
    for method in ["CONNECT", "TRACE", "get", "PROPFIND", "FOO", "GET "] {
        refused.push(json!({ "method": method }));
    }
    for params in refused {
        let listener = Listener::start(Reply::Ok);
        let mut params = params;
        params["url"] = listener.url("/").into();
        let result = run(&hook, &services, params.clone()).await;
        assert!(
            result.detail.starts_with("http: CapabilityError::Invalid("),
            "{params}: {}",
            result.detail
        );
        assert_eq!(listener.settled(), 0, "{params}: {:?}", listener.requests());
    }
    let mut allowed: Vec<Value> = vec![json!({ "set_headers": [["x-request-id", "abc"]] })];
    for method in deployer_plugin_host::capabilities::ALLOWED_METHODS {
        allowed.push(json!({ "method": method }));
    }
    for params in allowed {
        let listener = Listener::start(Reply::Ok);
        let mut params = params;
        params["url"] = listener.url("/").into();
        let result = run(&hook, &services, params.clone()).await;
        assert!(
            result.detail.starts_with("status 200"),
            "{params}: {}",
            result.detail
        );
        assert_eq!(listener.settled(), 1, "{params}");
    }
}

/// A `plugin test` scenario for the probe hook: `grants` as TOML lines, one run a URL
/// expecting `expect`.
fn scenario(dir: &std::path::Path, grants: &str, urls: &[String], expect: &str) -> String {
    let mut text = format!("kind = \"hook\"\n[grants]\nkv = true\n{grants}\n");
    for url in urls {
        let url = toml::Value::String(url.clone());
        text += &format!(
            "\n[[runs]]\npoint = \"pre-traffic\"\nparams = {{ url = {url} }}\nexpect = \"{expect}\"\n"
        );
    }
    let path = dir.join("scenario.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_test_shows_the_refusals_a_deployment_gets() {
    let listener = Listener::start(Reply::Ok);
    let p = listener.port;
    let urls = [
        format!("http://2130706433:{p}/"),
        format!("http://localhost:{p}/"),
        format!("http://ok.example.com@127.0.0.1:{p}/"),
        format!("http://[::ffff:127.0.0.1]:{p}/"),
    ];
    // What the host answers a deployment's hook: the system's resolver, the real
    // transport.
    let (host, _cache) = host();
    let hook = probe(&host, &["*.example.com", "localhost"]);
    let services = services(Arc::new(SystemResolver));
    let mut details = Vec::new();
    for url in &urls {
        let result = get(&hook, &services, url).await;
        assert!(refused(&result), "{url}: {}", result.detail);
        details.push(result.detail);
    }

    let dir = tempfile::tempdir().unwrap();
    let scenario = scenario(
        dir.path(),
        r#"http-allow = ["*.example.com", "localhost"]"#,
        &urls,
        "fail",
    );
    let (code, out, err) = deployer_tests::support::cli::run(&[
        "plugin",
        "test",
        components::HOSTILE_HOOK,
        "--scenario",
        &scenario,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    for (i, detail) in details.iter().enumerate() {
        let line = format!(
            "run {} at pre-traffic: fail: {detail}   (as expected)",
            i + 1
        );
        assert!(out.contains(&line), "expected `{line}` in:\n{out}");
    }
    assert!(details[1].contains("resolves to") && details[1].contains("loopback"));
    assert_eq!(listener.settled(), 0, "{:?}", listener.requests());
}

#[test]
fn a_hooks_request_goes_through_no_proxy() {
    // A proxy would look the name up again, somewhere else: the transport uses none,
    // whatever the environment says.
    let target = Listener::start(Reply::Ok);
    let proxy = Listener::start(Reply::Ok);
    let dir = tempfile::tempdir().unwrap();
    let scenario = scenario(
        dir.path(),
        r#"http-allow = ["127.0.0.1"]"#,
        &[target.url("/")],
        "pass",
    );
    let mut cmd = deployer_tests::support::cli::plain();
    cmd.args([
        "plugin",
        "test",
        components::HOSTILE_HOOK,
        "--scenario",
        &scenario,
    ]);
    for var in ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"] {
        cmd.env(var, proxy.url(""));
    }
    let out = cmd
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("pass: status 200"), "{stdout}");
    assert_eq!(target.settled(), 1);
    assert_eq!(proxy.settled(), 0, "{:?}", proxy.requests());
}
