//! The Prometheus test ground works as the gate and capability tests need it to: apps
//! that fail as often as a test says, a real Prometheus that sees it by release, and a
//! stand-in for Amazon Managed Service for Prometheus that lets through only correctly
//! SigV4-signed queries (`tests/support/prometheus.rs`).

use std::time::SystemTime;

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use deployer_tests::support::prometheus::{
    Load, MetricsApp, Prometheus, SigV4Prometheus, url_encode,
};

/// The share of a release's requests answered with 500 over the last 5 s.
fn error_ratio(release: &str) -> String {
    format!(
        r#"sum(rate(http_requests_total{{code="500",release="{release}"}}[5s])) / sum(rate(http_requests_total{{release="{release}"}}[5s]))"#
    )
}

/// One counter of `/metrics`, read straight from the app.
async fn counter(app: &MetricsApp, code: &str) -> u64 {
    let text = reqwest::get(format!("{}metrics", app.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = format!(
        "http_requests_total{{code=\"{code}\",release=\"{}\"}} ",
        app.release()
    );
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .unwrap_or_else(|| panic!("no {series} in {text}"))
        .parse()
        .unwrap()
}

/// The app answers as its error percentage says, changes when told, and counts each
/// answer under its code and release.
#[tokio::test]
async fn an_app_fails_as_often_as_set_and_counts_what_it_answered() {
    let app = MetricsApp::start("web:2", 0);
    let get = || async { reqwest::get(app.url()).await.unwrap().status().as_u16() };
    for _ in 0..20 {
        assert_eq!(get().await, 200);
    }
    app.set_error_percent(100);
    for _ in 0..5 {
        assert_eq!(get().await, 500);
    }
    assert_eq!(app.answered(), (20, 5));
    assert_eq!(counter(&app, "200").await, 20);
    assert_eq!(counter(&app, "500").await, 5);
    // Scrapes are not traffic.
    assert_eq!(app.answered(), (20, 5));
}

/// A release label value that needs escaping is written so Prometheus reads it back
/// unchanged.
#[tokio::test]
async fn a_release_label_with_quotes_is_escaped_in_the_exposition() {
    let app = MetricsApp::start(r#"web "2"\x"#, 0);
    reqwest::get(app.url()).await.unwrap();
    let text = reqwest::get(format!("{}metrics", app.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(r#"http_requests_total{code="200",release="web \"2\"\\x"} 1"#),
        "{text}"
    );
}

/// Under steady load, Prometheus sees a healthy release's error ratio at 0 and a
/// release failing half its requests clearly above 0.3, each by its `release` label.
#[test]
fn prometheus_tells_a_failing_release_from_a_healthy_one() {
    let stable = MetricsApp::start("web:1", 0);
    let canary = MetricsApp::start("web:2", 50);
    let _load = Load::start(&[&stable, &canary], 50);
    let prometheus = Prometheus::start(&[&stable, &canary]);

    let healthy = prometheus.instant_value(&error_ratio("web:1"));
    let failing = prometheus.instant_value(&error_ratio("web:2"));
    assert!(healthy < 0.01, "web:1 error ratio {healthy}");
    assert!(
        (0.3..0.7).contains(&failing),
        "web:2 error ratio {failing} (answered {:?})",
        canary.answered()
    );

    // Each app's series carry its release, and the scrape's job and instance.
    let series = prometheus.instant(r#"http_requests_total{release="web:2"}"#);
    assert_eq!(series.len(), 2, "{series:?}");
    for (labels, value) in &series {
        assert_eq!(labels["job"], "apps", "{labels:?}");
        assert_eq!(labels["instance"], canary.target(), "{labels:?}");
        assert!(
            ["200", "500"].contains(&labels["code"].as_str()),
            "{labels:?}"
        );
        assert!(*value > 0.0, "{labels:?} {value}");
    }
}

/// A release that starts failing while it serves: the ratio Prometheus reports follows.
#[test]
fn prometheus_follows_a_release_that_starts_failing() {
    let app = MetricsApp::start("web:2", 0);
    let _load = Load::start(&[&app], 50);
    let prometheus = Prometheus::start(&[&app]);
    let before = prometheus.instant_value(&error_ratio("web:2"));
    assert!(before < 0.01, "{before}");

    app.set_error_percent(100);
    // Polled until the 5 s window holds mostly failures; it panics if it never does.
    let after = prometheus.instant_until(&error_ratio("web:2"), |answer| {
        answer.len() == 1 && answer[0].1 > 0.9
    });
    assert!(after[0].1 <= 1.0, "{after:?}");
}

/// A query Prometheus refuses fails the helper with Prometheus' own error, not an empty
/// answer that a test could take for "no data yet".
#[test]
fn a_bad_query_is_an_error_not_an_empty_answer() {
    let app = MetricsApp::start("web:1", 0);
    let prometheus = Prometheus::start(&[&app]);
    let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        prometheus.instant("sum(rate(http_requests_total[5s])")
    }));
    let message = *answer.unwrap_err().downcast::<String>().unwrap();
    assert!(message.contains("parse error"), "{message}");
}

const ACCESS_KEY: &str = "AKIDGROUNDTEST";
const SECRET_KEY: &str = "ground-secret-key";
const REGION: &str = "eu-west-1";

/// Headers signing adds to a request (authorization, x-amz-date), as an AWS SDK signs it
/// for service `aps`: over the method, the URL, the `headers` given and the body.
fn sigv4_headers(
    secret: &str,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<(String, String)> {
    let identity =
        aws_credential_types::Credentials::new(ACCESS_KEY, secret, None, None, "test").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name("aps")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let request = SignableRequest::new(
        method,
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (instructions, _) = sign(request, &params).unwrap().into_parts();
    instructions
        .headers()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Send a request with `headers` (signing's among them) and return the status and body.
async fn send(
    method: reqwest::Method,
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> (u16, serde_json::Value) {
    let mut request = reqwest::Client::new()
        .request(method, url)
        .body(body.to_vec());
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{status} with a body that is not JSON ({e}): {text}"));
    (status, json)
}

const FORM: &str = "application/x-www-form-urlencoded";

/// A query signed by the AWS SDK's own signer (the `aws-sigv4` crate), with the
/// stand-in's credentials, is answered as AMP answers: by GET and by POST form, for
/// instant and range queries; and the stand-in records what it was asked and signed.
#[tokio::test]
async fn a_query_signed_by_the_aws_signer_is_answered() {
    let amp = SigV4Prometheus::start(ACCESS_KEY, SECRET_KEY, REGION);
    let promql = r#"sum(rate(http_requests_total{code="500",release="web:2"}[5m]))"#;

    let url = format!("{}/api/v1/query?query={}", amp.url(), url_encode(promql));
    let signed = sigv4_headers(SECRET_KEY, "GET", &url, &[], b"");
    let (status, answer) = send(reqwest::Method::GET, &url, &signed, b"").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["data"]["resultType"], "vector", "{answer}");
    assert_eq!(answer["data"]["result"][0]["value"][1], "0.5", "{answer}");

    let url = format!("{}/api/v1/query_range", amp.url());
    let body = format!("query={}&start=1&end=61&step=15", url_encode(promql));
    let headers = [("content-type", FORM)];
    let mut signed = sigv4_headers(SECRET_KEY, "POST", &url, &headers, body.as_bytes());
    signed.push(("content-type".into(), FORM.into()));
    let (status, answer) = send(reqwest::Method::POST, &url, &signed, body.as_bytes()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["data"]["resultType"], "matrix", "{answer}");
    assert_eq!(
        answer["data"]["result"][0]["values"][0][1], "0.5",
        "{answer}"
    );

    let seen = amp.requests();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.iter().all(|r| r.accepted()), "{seen:?}");
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("GET", "/workspaces/ws-test/api/v1/query")
    );
    assert_eq!(seen[0].param("query"), Some(promql));
    assert_eq!(
        (seen[1].method.as_str(), seen[1].path.as_str()),
        ("POST", "/workspaces/ws-test/api/v1/query_range")
    );
    assert_eq!(seen[1].param("query"), Some(promql));
    assert_eq!(seen[1].param("step"), Some("15"));
    for name in ["host", "x-amz-date", "content-type"] {
        assert!(
            seen[1].signed_headers.iter().any(|h| h == name),
            "{:?}",
            seen[1]
        );
    }
}

/// What AMP refuses, the stand-in refuses with 403 and a message: no signature, a
/// signature made with the wrong secret, a query or a body changed after signing, and
/// credentials scoped to another service.
#[tokio::test]
async fn a_request_not_signed_for_what_it_asks_is_refused() {
    let amp = SigV4Prometheus::start(ACCESS_KEY, SECRET_KEY, REGION);
    let query_url =
        |promql: &str| format!("{}/api/v1/query?query={}", amp.url(), url_encode(promql));
    let asked = query_url("up");

    let refused = |(status, answer): (u16, serde_json::Value), wanted: &str| {
        assert_eq!(status, 403, "{answer}");
        let message = answer["message"].as_str().unwrap();
        assert!(message.contains(wanted), "{message}");
    };
    refused(
        send(reqwest::Method::GET, &asked, &[], b"").await,
        "Missing Authentication Token",
    );

    let wrong_secret = sigv4_headers("not-the-secret", "GET", &asked, &[], b"");
    refused(
        send(reqwest::Method::GET, &asked, &wrong_secret, b"").await,
        "signature we calculated does not match",
    );

    // Signed for `up`, sent asking for something else.
    let signed = sigv4_headers(SECRET_KEY, "GET", &asked, &[], b"");
    refused(
        send(
            reqwest::Method::GET,
            &query_url("http_requests_total"),
            &signed,
            b"",
        )
        .await,
        "signature we calculated does not match",
    );
    // The same signature on the query it was made for still passes.
    let (status, answer) = send(reqwest::Method::GET, &asked, &signed, b"").await;
    assert_eq!(status, 200, "{answer}");

    // A form body changed after signing.
    let url = format!("{}/api/v1/query", amp.url());
    let mut signed = sigv4_headers(
        SECRET_KEY,
        "POST",
        &url,
        &[("content-type", FORM)],
        b"query=up",
    );
    signed.push(("content-type".into(), FORM.into()));
    refused(
        send(reqwest::Method::POST, &url, &signed, b"query=down").await,
        "signature we calculated does not match",
    );

    // Right keys, signed for another service.
    let identity =
        aws_credential_types::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name("monitoring")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let request =
        SignableRequest::new("GET", &asked, std::iter::empty(), SignableBody::Bytes(b"")).unwrap();
    let other_service: Vec<(String, String)> = sign(request, &params)
        .unwrap()
        .into_parts()
        .0
        .headers()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    refused(
        send(reqwest::Method::GET, &asked, &other_service, b"").await,
        "/eu-west-1/aps/aws4_request",
    );

    let verdicts: Vec<bool> = amp.requests().iter().map(|r| r.accepted()).collect();
    assert_eq!(verdicts, [false, false, false, true, false, false]);
}
