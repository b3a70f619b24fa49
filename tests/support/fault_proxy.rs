//! A fault-injecting HTTP proxy in front of moto: AWS calls pass through unchanged
//! unless a rule is armed for their operation, in which case the proxy answers with
//! throttling or a 5xx, answers slowly, drops the connection, or serves the previous
//! (stale) answer to the same operation, as an eventually consistent read does.
//!
//! Operations are named as AWS does: `X-Amz-Target` for JSON protocols (ECS,
//! DynamoDB), `Action=` for query protocols (ELBv2, CloudWatch).

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
    /// Forward, but answer with the previous answer to this operation.
    Stale,
}

struct Rule {
    operation: String,
    fault: Fault,
    skip: u32,
    times: u32,
}

#[derive(Default)]
struct Shared {
    rules: Vec<Rule>,
    served: Vec<(String, Fault)>,
    last: HashMap<String, Vec<u8>>,
}

pub struct FaultProxy {
    pub endpoint: String,
    shared: Arc<Mutex<Shared>>,
}

impl FaultProxy {
    /// Listen on 127.0.0.1 and forward to `upstream` (`http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str) -> FaultProxy {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Mutex::new(Shared::default()));
        let state = shared.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = state.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, &upstream, &state).await;
                });
            }
        });
        FaultProxy { endpoint, shared }
    }

    /// Let `skip` calls of `operation` through, then inject `fault` into the next `times`.
    pub fn arm(&self, operation: &str, fault: Fault, skip: u32, times: u32) {
        self.shared.lock().unwrap().rules.push(Rule {
            operation: operation.to_string(),
            fault,
            skip,
            times,
        });
    }

    /// The faults injected so far, in order.
    pub fn served(&self) -> Vec<(String, Fault)> {
        self.shared.lock().unwrap().served.clone()
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

fn operation(head: &str, body: &[u8]) -> (String, bool) {
    if let Some(target) = header(head, "x-amz-target") {
        let op = target.rsplit('.').next().unwrap_or(target).to_string();
        return (op, true);
    }
    let body = String::from_utf8_lossy(body);
    let op = body
        .split('&')
        .find_map(|kv| kv.strip_prefix("Action="))
        .unwrap_or("unknown")
        .to_string();
    (op, false)
}

fn error_response(status: &str, code: &str, json: bool) -> Vec<u8> {
    let (content_type, body) = if json {
        (
            "application/x-amz-json-1.1",
            format!(r#"{{"__type":"{code}","message":"injected by the fault proxy"}}"#),
        )
    } else {
        (
            "text/xml",
            format!(
                "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>\
                 <Message>injected by the fault proxy</Message></Error><RequestId>fault</RequestId></ErrorResponse>"
            ),
        )
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
) -> std::io::Result<()> {
    let Some((head, body)) = read_request(&mut stream).await? else {
        return Ok(());
    };
    let (op, json) = operation(&head, &body);
    // A stale answer is the previous answer to the *same* request.
    let key = format!("{op} {}", String::from_utf8_lossy(&body));
    let fault = {
        let mut shared = shared.lock().unwrap();
        let fault = shared.rules.iter_mut().find_map(|rule| {
            if rule.operation != op || rule.times == 0 {
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
        Some(Fault::Throttle) => {
            let code = if json {
                "ThrottlingException"
            } else {
                "Throttling"
            };
            error_response("400 Bad Request", code, json)
        }
        Some(Fault::Unavailable) => {
            error_response("503 Service Unavailable", "ServiceUnavailable", json)
        }
        Some(Fault::Slow(delay)) => {
            tokio::time::sleep(delay).await;
            forward(upstream, &head, &body).await?
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
    stream.shutdown().await
}
