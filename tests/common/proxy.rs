//! A small fault-injecting TCP proxy for client tests.
//!
//! It listens on 127.0.0.1 (random port) and forwards each connection to
//! the upstream server, unless a queued fault says otherwise. Faults apply
//! per *connection*, in order; tests use a client without connection reuse
//! (pool size 0) so that one request is one connection.
//!
//! A proxy started with [`FaultProxy::start_http`] also reads each request
//! head on every connection (pooled ones included), so a rule set with
//! [`FaultProxy::reset_requests`] can fail chosen requests (say, every
//! UploadPart) while all others go through: how a mount, which reuses its
//! connections, is tested against a server failing part-way.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What to do with one incoming connection.
#[derive(Clone, Debug)]
pub enum ProxyFault {
    /// Read the request head, then reset the connection (RST).
    Reset,
    /// Wait this long, then forward normally.
    Delay(Duration),
    /// Answer `503 SlowDown` without contacting the upstream.
    SlowDown,
    /// Accept and read, but never answer.
    Blackhole,
    /// Forward, but pass only this many answer bytes, then stall forever.
    StallAfter(usize),
    /// Forward, but pass only this many answer bytes, then reset.
    ResetAfter(usize),
    /// Forward the request, wait for the answer to start, then reset the
    /// client connection: the server did the work, the client lost the answer.
    LoseAnswer,
}

/// Which requests a request-aware proxy resets: it sees the request line,
/// e.g. `PUT /bucket/key?partNumber=1&uploadId=x HTTP/1.1`.
pub type RequestRule = Arc<dyn Fn(&str) -> bool + Send + Sync>;

type SharedRule = Arc<Mutex<Option<RequestRule>>>;

/// A running proxy; dropped, it stops accepting.
pub struct FaultProxy {
    addr: SocketAddr,
    faults: Arc<Mutex<VecDeque<ProxyFault>>>,
    connections: Arc<AtomicU64>,
    rule: SharedRule,
    reset_requests: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Starts a proxy in front of `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> FaultProxy {
        Self::start_inner(upstream, false).await
    }

    /// Starts a request-aware proxy in front of `upstream`: like
    /// [`FaultProxy::start`], and [`FaultProxy::reset_requests`] applies to
    /// every request on every connection.
    pub async fn start_http(upstream: &str) -> FaultProxy {
        Self::start_inner(upstream, true).await
    }

    async fn start_inner(upstream: &str, http: bool) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let faults: Arc<Mutex<VecDeque<ProxyFault>>> = Arc::default();
        let connections = Arc::new(AtomicU64::new(0));
        let upstream = upstream.to_string();
        let rule: SharedRule = Arc::default();
        let reset_requests = Arc::new(AtomicU64::new(0));
        let (f, c) = (faults.clone(), connections.clone());
        let (r, n) = (rule.clone(), reset_requests.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let fault = f.lock().unwrap().pop_front();
                let upstream = upstream.clone();
                let (r, n) = (r.clone(), n.clone());
                tokio::spawn(async move {
                    let _ = match fault {
                        None if http => forward_requests(client, &upstream, r, n).await,
                        fault => handle(client, &upstream, fault).await,
                    };
                });
            }
        });
        FaultProxy {
            addr,
            faults,
            connections,
            rule,
            reset_requests,
            task,
        }
    }

    /// From now on (proxies from [`FaultProxy::start_http`] only), every
    /// request whose request line satisfies `rule` is answered with a
    /// connection reset, without reaching the server.
    pub fn reset_requests(&self, rule: impl Fn(&str) -> bool + Send + Sync + 'static) {
        *self.rule.lock().unwrap() = Some(Arc::new(rule));
    }

    /// Lets every request through again.
    pub fn clear_request_rule(&self) {
        *self.rule.lock().unwrap() = None;
    }

    /// Requests reset by the rule so far.
    pub fn requests_reset(&self) -> u64 {
        self.reset_requests.load(Ordering::SeqCst)
    }

    /// The port to point the client at.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Queues a fault for the next connection.
    pub fn push(&self, fault: ProxyFault) {
        self.faults.lock().unwrap().push_back(fault);
    }

    /// Queues `n` copies of a fault.
    pub fn push_n(&self, n: usize, fault: ProxyFault) {
        for _ in 0..n {
            self.push(fault.clone());
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Reads until the end of the request head (or EOF); returns what was read.
async fn read_head(client: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(buf)
}

fn reset(stream: TcpStream) {
    // Linger 0 turns the close into an RST.
    let _ = stream.set_zero_linger();
    drop(stream);
}

async fn handle(
    mut client: TcpStream,
    upstream: &str,
    fault: Option<ProxyFault>,
) -> std::io::Result<()> {
    match fault {
        None => forward(client, upstream).await,
        Some(ProxyFault::Delay(d)) => {
            tokio::time::sleep(d).await;
            forward(client, upstream).await
        }
        Some(ProxyFault::Reset) => {
            read_head(&mut client).await?;
            reset(client);
            Ok(())
        }
        Some(ProxyFault::SlowDown) => {
            read_head(&mut client).await?;
            let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message><RequestId>proxy-503</RequestId></Error>";
            let answer = format!(
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nx-amz-request-id: proxy-503\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            client.write_all(answer.as_bytes()).await?;
            client.shutdown().await
        }
        Some(ProxyFault::Blackhole) => {
            let mut sink = [0u8; 65536];
            while client.read(&mut sink).await? > 0 {}
            std::future::pending::<()>().await;
            Ok(())
        }
        Some(ProxyFault::ResetAfter(limit)) => {
            let mut server = TcpStream::connect(upstream).await?;
            {
                let (mut cr, mut cw) = client.split();
                let (mut sr, mut sw) = server.split();
                let request = tokio::io::copy(&mut cr, &mut sw);
                let answer = async {
                    let mut passed = 0usize;
                    let mut buf = vec![0u8; 16384];
                    while passed < limit {
                        let n = sr.read(&mut buf).await?;
                        if n == 0 {
                            break;
                        }
                        let take = n.min(limit - passed);
                        cw.write_all(&buf[..take]).await?;
                        passed += take;
                    }
                    std::io::Result::Ok(())
                };
                tokio::select! {
                    _ = request => {}
                    _ = answer => {}
                }
            }
            reset(client);
            Ok(())
        }
        Some(ProxyFault::StallAfter(limit)) => {
            let server = TcpStream::connect(upstream).await?;
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut cr, &mut sw).await;
            });
            let mut passed = 0usize;
            let mut buf = vec![0u8; 16384];
            while passed < limit {
                let n = sr.read(&mut buf).await?;
                if n == 0 {
                    return Ok(());
                }
                let take = n.min(limit - passed);
                cw.write_all(&buf[..take]).await?;
                passed += take;
            }
            // Hold both sockets open, sending nothing more.
            std::future::pending::<()>().await;
            drop((sr, cw));
            Ok(())
        }
        Some(ProxyFault::LoseAnswer) => {
            let mut server = TcpStream::connect(upstream).await?;
            {
                let (mut cr, _) = client.split();
                let (mut sr, mut sw) = server.split();
                let request = tokio::io::copy(&mut cr, &mut sw);
                let mut first = [0u8; 1];
                let answer_starts = sr.read(&mut first);
                tokio::select! {
                    _ = request => {}
                    _ = answer_starts => {}
                }
            }
            // Give the server time to finish the answer it started.
            tokio::time::sleep(Duration::from_millis(200)).await;
            reset(client);
            Ok(())
        }
    }
}

async fn forward(client: TcpStream, upstream: &str) -> std::io::Result<()> {
    let mut server = TcpStream::connect(upstream).await?;
    let mut client = client;
    tokio::io::copy_bidirectional(&mut client, &mut server).await?;
    Ok(())
}

/// Forwards a connection request by request, resetting it at the first
/// request the rule matches. Requests are parsed only as far as their head
/// and `Content-Length`; a chunked request body switches the rest of the
/// connection to plain forwarding. Answers are passed through untouched.
async fn forward_requests(
    client: TcpStream,
    upstream: &str,
    rule: SharedRule,
    reset_count: Arc<AtomicU64>,
) -> std::io::Result<()> {
    let server = TcpStream::connect(upstream).await?;
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let answers = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut sr, &mut cw).await;
        let _ = cw.shutdown().await;
    });
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 65536];
    loop {
        let head_end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            let n = cr.read(&mut chunk).await?;
            if n == 0 {
                let _ = sw.shutdown().await;
                let _ = answers.await;
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let line = head.lines().next().unwrap_or_default().to_string();
        let matched = rule.lock().unwrap().clone().is_some_and(|r| r(&line));
        if matched {
            reset_count.fetch_add(1, Ordering::SeqCst);
            answers.abort();
            let _ = cr.as_ref().set_zero_linger();
            return Ok(());
        }
        let mut length = 0usize;
        let mut chunked = false;
        for h in head.lines().skip(1) {
            if let Some((name, value)) = h.split_once(':') {
                let (name, value) = (name.trim(), value.trim());
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse().unwrap_or(0);
                } else if name.eq_ignore_ascii_case("transfer-encoding")
                    && value.to_ascii_lowercase().contains("chunked")
                {
                    chunked = true;
                }
            }
        }
        if chunked {
            sw.write_all(&buf).await?;
            let _ = tokio::io::copy(&mut cr, &mut sw).await;
            let _ = sw.shutdown().await;
            let _ = answers.await;
            return Ok(());
        }
        let have = (buf.len() - head_end).min(length);
        sw.write_all(&buf[..head_end + have]).await?;
        buf.drain(..head_end + have);
        let mut left = length - have;
        while left > 0 {
            let n = cr.read(&mut chunk[..left.min(65536)]).await?;
            if n == 0 {
                return Ok(());
            }
            sw.write_all(&chunk[..n]).await?;
            left -= n;
        }
    }
}
