//! A TCP listener that counts every connection it accepts: what a sandboxed request must
//! never reach, or, when the test allows it, the server it reaches. It listens on
//! 127.0.0.1 and, when the machine has IPv6 loopback, on `[::1]` at the same port, so a
//! request that slips through in either family is counted. Requests are answered as
//! [`Reply`] says.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the listener answers a request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// 200 with a two-byte body.
    Ok,
    /// 200 with `bytes` bytes of body: with a content-length, or `chunked` in 64 KiB
    /// chunks as it is written (the client cannot know the size up front).
    Body { bytes: usize, chunked: bool },
    /// 200 with `count` extra headers whose values are `value_bytes` long.
    Headers { count: usize, value_bytes: usize },
    /// 302 to `location`.
    Redirect(String),
}

/// A counting listener, stopped on drop.
pub struct Listener {
    pub port: u16,
    /// Whether `[::1]:port` is listened on too.
    pub ipv6: bool,
    accepted: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Listener {
    pub fn start(reply: Reply) -> Listener {
        let v4 = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = v4.local_addr().unwrap().port();
        let v6 = TcpListener::bind((Ipv6Addr::LOCALHOST, port)).ok();
        let ipv6 = v6.is_some();
        let listeners: Vec<TcpListener> = std::iter::once(v4).chain(v6).collect();
        for listener in &listeners {
            listener.set_nonblocking(true).unwrap();
        }
        let accepted = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, seen, flag) = (accepted.clone(), requests.clone(), stop.clone());
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let mut idle = true;
                for listener in &listeners {
                    if let Ok((stream, _)) = listener.accept() {
                        idle = false;
                        count.fetch_add(1, Ordering::SeqCst);
                        let (seen, reply) = (seen.clone(), reply.clone());
                        std::thread::spawn(move || serve(stream, &reply, &seen));
                    }
                }
                if idle {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        });
        Listener {
            port,
            ipv6,
            accepted,
            requests,
            stop,
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Connections accepted once any still queued have been taken (a connection the
    /// kernel completed is counted even if its request never came).
    pub fn settled(&self) -> usize {
        std::thread::sleep(Duration::from_millis(100));
        self.accepted()
    }

    /// The requests received: their heads, then `[N body bytes]`.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(mut stream: TcpStream, reply: &Reply, seen: &Mutex<Vec<String>>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let (head, body) = read_request(&mut stream);
    seen.lock()
        .unwrap()
        .push(format!("{head}\r\n\r\n[{body} body bytes]"));
    let head = |status: &str, extra: &str| {
        format!("HTTP/1.1 {status}\r\n{extra}connection: close\r\n\r\n").into_bytes()
    };
    let _ = match reply {
        Reply::Ok => {
            stream.write_all(&[head("200 OK", "content-length: 2\r\n"), b"ok".to_vec()].concat())
        }
        Reply::Body {
            bytes,
            chunked: false,
        } => stream
            .write_all(&head("200 OK", &format!("content-length: {bytes}\r\n")))
            .and_then(|()| stream.write_all(&vec![b'x'; *bytes])),
        Reply::Body {
            bytes,
            chunked: true,
        } => (|| {
            stream.write_all(&head("200 OK", "transfer-encoding: chunked\r\n"))?;
            let mut left = *bytes;
            while left > 0 {
                let n = left.min(64 << 10);
                stream.write_all(format!("{n:x}\r\n").as_bytes())?;
                stream.write_all(&vec![b'x'; n])?;
                stream.write_all(b"\r\n")?;
                left -= n;
            }
            stream.write_all(b"0\r\n\r\n")
        })(),
        Reply::Headers { count, value_bytes } => {
            let value = "v".repeat(*value_bytes);
            let extra: String = (0..*count)
                .map(|i| format!("x-extra-{i}: {value}\r\n"))
                .collect();
            stream.write_all(
                &[
                    head("200 OK", &format!("{extra}content-length: 2\r\n")),
                    b"ok".to_vec(),
                ]
                .concat(),
            )
        }
        Reply::Redirect(location) => stream.write_all(&head(
            "302 Found",
            &format!("location: {location}\r\ncontent-length: 0\r\n"),
        )),
    };
}

/// One request: its head as text and how many body bytes came (up to content-length).
fn read_request(stream: &mut TcpStream) -> (String, usize) {
    let mut data = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut head_end = None;
    let mut wanted = 0;
    loop {
        if let Some(end) = head_end
            && data.len() >= end + 4 + wanted
        {
            break;
        }
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        data.extend_from_slice(&buf[..n]);
        if head_end.is_none()
            && let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n")
        {
            head_end = Some(end);
            wanted = String::from_utf8_lossy(&data[..end])
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
        }
    }
    match head_end {
        Some(end) => (
            String::from_utf8_lossy(&data[..end]).into_owned(),
            data.len() - end - 4,
        ),
        None => (String::from_utf8_lossy(&data).into_owned(), 0),
    }
}

/// An AWS endpoint that only counts the connections it gets (and closes them): for
/// configs whose commands must refuse before any cloud call.
pub fn counting_endpoint() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            seen.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (url, count)
}
