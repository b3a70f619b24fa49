//! A fault-injecting HTTP proxy in front of moto: AWS calls pass through unchanged
//! unless a rule is armed for their operation, in which case the proxy answers with
//! throttling, a 5xx or access denied, answers slowly, drops the connection (before or
//! after carrying the call out), serves the
//! previous (stale) answer to the same operation, as an eventually consistent read
//! does, or carries the call out and keeps its answer until the test lets it go.
//!
//! Operations are named as AWS does: `X-Amz-Target` for JSON protocols (ECS,
//! DynamoDB), `Action=` for query protocols (ELBv2, CloudWatch), and for S3's REST
//! protocol by method and path (`PutObject`, `GetObject`, `ListObjectsV2`,
//! `HeadObject`, `DeleteObject`, ...). Error answers use each protocol's own error
//! shape, so the SDK's real parsers read their codes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 400 `Throttling` / `ThrottlingException`.
    Throttle,
    /// 503 `ServiceUnavailable`.
    Unavailable,
    /// Forward after this delay.
    Slow(Duration),
    /// Close the connection without an answer.
    Drop,
    /// Forward (the call takes effect), then close the connection without its answer: a
    /// write that landed and whose answer was lost.
    Lost,
    /// Wait, then as [`Fault::Lost`]: a write that reaches AWS late (after someone
    /// else's) and whose answer is lost.
    LateLost(Duration),
    /// Forward, but answer with the previous answer to this operation.
    Stale,
    /// Permission refused, as each protocol says it: JSON `AccessDeniedException` (400),
    /// query `AccessDenied` (403), S3 `AccessDenied` (403). Retrying cannot help.
    AccessDenied,
    /// Forward at once (the call takes effect), then keep the answer until
    /// [`FaultProxy::release`]: a call whose answer is still in flight.
    Hold,
}

/// `times` for a rule that stays armed until [`FaultProxy::disarm`].
pub const ALWAYS: u32 = u32::MAX;

struct Rule {
    operation: String,
    /// Only calls whose request line or body contains this (an S3 key, a record).
    matching: Option<String>,
    fault: Fault,
    skip: u32,
    times: u32,
}

/// How the service speaks, which decides how its errors look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    /// `X-Amz-Target` and a JSON body (ECS, DynamoDB).
    Json,
    /// `Action=` in a form body, XML answers (ELBv2, CloudWatch, Auto Scaling).
    Query,
    /// S3's REST protocol.
    S3,
}

#[derive(Default)]
struct Shared {
    rules: Vec<Rule>,
    served: Vec<(String, Fault)>,
    /// Every operation answered, in the order the answers went out (a held call's when
    /// it was carried out).
    answered: Vec<String>,
    /// The same calls with their request lines (`GET /bucket/key HTTP/1.1`): which
    /// object each S3 call read or wrote.
    requests: Vec<(String, String)>,
    /// Calls carried out whose answers are being kept ([`Fault::Hold`]).
    holding: usize,
    last: HashMap<String, Vec<u8>>,
}

pub struct FaultProxy {
    pub endpoint: String,
    shared: Arc<Mutex<Shared>>,
    /// Bumped by [`FaultProxy::release`]: held answers wait for a later value.
    released: tokio::sync::watch::Sender<u64>,
}

impl FaultProxy {
    /// Listen on 127.0.0.1 and forward to `upstream` (`http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str) -> FaultProxy {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (released, _) = tokio::sync::watch::channel(0u64);
        let state = shared.clone();
        let release = released.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = state.clone();
                let upstream = upstream.clone();
                let release = release.subscribe();
                tokio::spawn(async move {
                    let _ = serve(stream, &upstream, &state, release).await;
                });
            }
        });
        FaultProxy {
            endpoint,
            shared,
            released,
        }
    }

    /// Let `skip` calls of `operation` through, then inject `fault` into the next `times`
    /// ([`ALWAYS`]: until disarmed).
    pub fn arm(&self, operation: &str, fault: Fault, skip: u32, times: u32) {
        self.add(operation, None, fault, skip, times);
    }

    /// [`FaultProxy::arm`] for only the calls of `operation` whose request line or body
    /// contains `matching`: an S3 key's part (`/history/`), a journal record's field.
    pub fn arm_matching(
        &self,
        operation: &str,
        matching: &str,
        fault: Fault,
        skip: u32,
        times: u32,
    ) {
        self.add(operation, Some(matching.to_string()), fault, skip, times);
    }

    fn add(&self, operation: &str, matching: Option<String>, fault: Fault, skip: u32, times: u32) {
        self.shared.lock().unwrap().rules.push(Rule {
            operation: operation.to_string(),
            matching,
            fault,
            skip,
            times,
        });
    }

    /// Remove every rule for `operation`: its calls pass through again.
    pub fn disarm(&self, operation: &str) {
        self.shared
            .lock()
            .unwrap()
            .rules
            .retain(|r| r.operation != operation);
    }

    /// The faults injected so far, in order.
    pub fn served(&self) -> Vec<(String, Fault)> {
        self.shared.lock().unwrap().served.clone()
    }

    /// How many times `fault` was injected into `operation`.
    pub fn count(&self, operation: &str, fault: Fault) -> usize {
        self.served()
            .iter()
            .filter(|(op, f)| op == operation && *f == fault)
            .count()
    }

    /// Every operation answered so far, in the order the answers went out; a held call
    /// ([`Fault::Hold`]) counts when it was carried out, not when its answer goes.
    pub fn answered(&self) -> Vec<String> {
        self.shared.lock().unwrap().answered.clone()
    }

    /// [`FaultProxy::answered`] with each call's request line (method, path and query):
    /// for S3, the object or prefix it named.
    pub fn requests(&self) -> Vec<(String, String)> {
        self.shared.lock().unwrap().requests.clone()
    }

    /// Calls carried out whose answers are held now ([`Fault::Hold`]).
    pub fn holding(&self) -> usize {
        self.shared.lock().unwrap().holding
    }

    /// Send the answers held so far.
    pub fn release(&self) {
        self.released.send_modify(|n| *n += 1);
    }
}

/// Read one request (head and Content-Length body); `None` at end of stream.
async fn read_request(stream: &mut TcpStream) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length: usize = header(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(Some((head, body)))
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// The request's operation, as AWS names it, and its protocol.
fn operation(head: &str, body: &[u8]) -> (String, Protocol) {
    if let Some(target) = header(head, "x-amz-target") {
        let op = target.rsplit('.').next().unwrap_or(target).to_string();
        return (op, Protocol::Json);
    }
    // SigV4 names the service in the credential scope: `.../us-east-1/s3/aws4_request`.
    if header(head, "authorization").is_some_and(|a| a.contains("/s3/aws4_request")) {
        return (s3_operation(head), Protocol::S3);
    }
    if header(head, "authorization").is_some_and(|a| a.contains("/lambda/aws4_request")) {
        return (lambda_operation(head), Protocol::Json);
    }
    let body = String::from_utf8_lossy(body);
    let op = body
        .split('&')
        .find_map(|kv| kv.strip_prefix("Action="))
        .unwrap_or("unknown")
        .to_string();
    (op, Protocol::Query)
}

/// A Lambda REST call's operation from its method and path (the aliases and provisioned
/// concurrency the Lambda target uses; others are `Lambda`).
fn lambda_operation(head: &str) -> String {
    let mut line = head.lines().next().unwrap_or_default().split(' ');
    let method = line.next().unwrap_or_default();
    let path = line.next().unwrap_or_default();
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let op = match (method, path) {
        ("PUT", p) if p.contains("/aliases/") => "UpdateAlias",
        ("GET", p) if p.contains("/aliases/") => "GetAlias",
        ("PUT", p) if p.ends_with("/provisioned-concurrency") => "PutProvisionedConcurrencyConfig",
        ("GET", p) if p.ends_with("/provisioned-concurrency") => "GetProvisionedConcurrencyConfig",
        ("DELETE", p) if p.ends_with("/provisioned-concurrency") => {
            "DeleteProvisionedConcurrencyConfig"
        }
        _ => "Lambda",
    };
    op.to_string()
}

/// An S3 REST call's operation from its method and path-style target
/// (`/BUCKET[/KEY][?QUERY]`).
fn s3_operation(head: &str) -> String {
    let mut line = head.lines().next().unwrap_or_default().split(' ');
    let method = line.next().unwrap_or_default();
    let target = line.next().unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let has_key = path
        .trim_start_matches('/')
        .split_once('/')
        .is_some_and(|(_, key)| !key.is_empty());
    let has = |param: &str| {
        query
            .split('&')
            .any(|kv| kv.split('=').next() == Some(param))
    };
    let op = match (method, has_key) {
        ("PUT", true) if header(head, "x-amz-copy-source").is_some() => "CopyObject",
        ("PUT", true) => "PutObject",
        ("GET", true) => "GetObject",
        ("HEAD", true) => "HeadObject",
        ("DELETE", true) => "DeleteObject",
        ("GET", false) if has("list-type") => "ListObjectsV2",
        ("GET", false) => "ListObjects",
        ("POST", false) if has("delete") => "DeleteObjects",
        ("PUT", false) => "CreateBucket",
        ("HEAD", false) => "HeadBucket",
        ("DELETE", false) => "DeleteBucket",
        _ => "unknown",
    };
    op.to_string()
}

/// An error answer in `protocol`'s own shape: JSON `__type`, the query protocol's
/// `<ErrorResponse>`, or S3's bare `<Error>`.
fn error_response(status: &str, code: &str, protocol: Protocol) -> Vec<u8> {
    let (content_type, body) = match protocol {
        Protocol::Json => (
            "application/x-amz-json-1.1",
            format!(r#"{{"__type":"{code}","message":"injected by the fault proxy"}}"#),
        ),
        Protocol::Query => (
            "text/xml",
            format!(
                "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>\
                 <Message>injected by the fault proxy</Message></Error><RequestId>fault</RequestId></ErrorResponse>"
            ),
        ),
        Protocol::S3 => (
            "application/xml",
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
                 <Message>injected by the fault proxy</Message><RequestId>fault</RequestId></Error>"
            ),
        ),
    };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The response with `Connection: close`, since this proxy serves one request per connection.
fn closing(response: Vec<u8>) -> Vec<u8> {
    let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        return response;
    };
    let head = String::from_utf8_lossy(&response[..end]).into_owned();
    let mut lines: Vec<&str> = head
        .split("\r\n")
        .filter(|l| {
            !l.to_ascii_lowercase().starts_with("connection:")
                && !l.to_ascii_lowercase().starts_with("keep-alive:")
        })
        .collect();
    lines.push("Connection: close");
    let mut out = lines.join("\r\n").into_bytes();
    out.extend_from_slice(&response[end..]);
    out
}

async fn forward(upstream: &str, head: &str, body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut conn = TcpStream::connect(upstream).await?;
    let head: Vec<&str> = head
        .trim_end()
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    let mut request = head.join("\r\n").into_bytes();
    request.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    request.extend_from_slice(body);
    conn.write_all(&request).await?;
    let mut response = Vec::new();
    conn.read_to_end(&mut response).await?;
    Ok(response)
}

async fn serve(
    mut stream: TcpStream,
    upstream: &str,
    shared: &Mutex<Shared>,
    mut released: tokio::sync::watch::Receiver<u64>,
) -> std::io::Result<()> {
    let Some((head, body)) = read_request(&mut stream).await? else {
        return Ok(());
    };
    let (op, protocol) = operation(&head, &body);
    let request_line = head.lines().next().unwrap_or_default();
    let text = String::from_utf8_lossy(&body);
    // A stale answer is the previous answer to the *same* request.
    let key = format!("{op} {request_line} {text}");
    let fault = {
        let mut shared = shared.lock().unwrap();
        let fault = shared.rules.iter_mut().find_map(|rule| {
            if rule.operation != op || rule.times == 0 {
                return None;
            }
            if let Some(part) = &rule.matching
                && !request_line.contains(part.as_str())
                && !text.contains(part.as_str())
            {
                return None;
            }
            if rule.skip > 0 {
                rule.skip -= 1;
                return None;
            }
            rule.times -= 1;
            Some(rule.fault)
        });
        if let Some(fault) = fault {
            shared.served.push((op.clone(), fault));
        }
        fault
    };
    let response = match fault {
        Some(Fault::Drop) => return Ok(()),
        Some(Fault::Lost) => {
            forward(upstream, &head, &body).await?;
            return Ok(());
        }
        Some(Fault::LateLost(delay)) => {
            tokio::time::sleep(delay).await;
            forward(upstream, &head, &body).await?;
            return Ok(());
        }
        Some(Fault::Throttle) => match protocol {
            Protocol::Json => error_response("400 Bad Request", "ThrottlingException", protocol),
            Protocol::Query => error_response("400 Bad Request", "Throttling", protocol),
            Protocol::S3 => error_response("503 Slow Down", "SlowDown", protocol),
        },
        Some(Fault::Unavailable) => {
            error_response("503 Service Unavailable", "ServiceUnavailable", protocol)
        }
        Some(Fault::AccessDenied) => match protocol {
            Protocol::Json => error_response("400 Bad Request", "AccessDeniedException", protocol),
            Protocol::Query | Protocol::S3 => {
                error_response("403 Forbidden", "AccessDenied", protocol)
            }
        },
        Some(Fault::Slow(delay)) => {
            tokio::time::sleep(delay).await;
            forward(upstream, &head, &body).await?
        }
        Some(Fault::Hold) => {
            let seen = *released.borrow_and_update();
            let answer = forward(upstream, &head, &body).await?;
            {
                let mut shared = shared.lock().unwrap();
                shared.holding += 1;
                // Carried out now; only its answer waits.
                shared.requests.push((op.clone(), request_line.to_string()));
                shared.answered.push(op);
            }
            let _ = released.wait_for(|n| *n > seen).await;
            shared.lock().unwrap().holding -= 1;
            stream.write_all(&closing(answer)).await?;
            return stream.shutdown().await;
        }
        Some(Fault::Stale) => {
            let fresh = forward(upstream, &head, &body).await?;
            let mut shared = shared.lock().unwrap();
            let stale = shared
                .last
                .get(&key)
                .cloned()
                .unwrap_or_else(|| fresh.clone());
            shared.last.insert(key, fresh);
            stale
        }
        None => {
            let fresh = forward(upstream, &head, &body).await?;
            shared.lock().unwrap().last.insert(key, fresh.clone());
            fresh
        }
    };
    stream.write_all(&closing(response)).await?;
    {
        let mut shared = shared.lock().unwrap();
        shared.requests.push((op.clone(), request_line.to_string()));
        shared.answered.push(op);
    }
    stream.shutdown().await
}
