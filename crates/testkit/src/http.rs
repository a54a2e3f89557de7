//! A minimal HTTP/1.1 client on std's `TcpStream` (one request per connection), and a
//! Transmission RPC client on it that does the `X-Transmission-Session-Id` 409 dance. Raw on
//! purpose: tests send malformed and oversized requests no real client would.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// What came back.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lowercased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "HTTP {} body is not JSON: {:?}",
                self.status,
                self.text().chars().take(300).collect::<String>()
            )
        })
    }
}

/// Sends `head` (request line and headers, without the blank line ending them; a
/// `Connection: close` and, when `body` is given, a `Content-Length` are added unless `head`
/// has them) and `body`, then reads the whole response (the server closes the connection).
/// A server that answers early and closes while the body is still being sent is fine: what
/// it answered is returned.
pub fn http_raw(port: u16, head: &str, body: &[u8], timeout: Duration) -> Result<HttpResponse> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to 127.0.0.1:{port}"))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let lower = head.to_ascii_lowercase();
    let mut req = head.trim_end().to_string();
    req.push_str("\r\n");
    if !lower.contains("\nconnection:") {
        req.push_str("Connection: close\r\n");
    }
    if !lower.contains("\ncontent-length:") && !lower.contains("\ntransfer-encoding:") {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let sent = s
        .write_all(req.as_bytes())
        .and_then(|_| s.write_all(body))
        .and_then(|_| s.flush());
    let mut resp = Vec::new();
    let read = s.read_to_end(&mut resp);
    if resp.is_empty() {
        if let Err(e) = read {
            bail!("no answer from 127.0.0.1:{port} ({e}; sending: {sent:?})");
        }
        bail!("127.0.0.1:{port} closed the connection without an answer (sending: {sent:?})");
    }
    parse_response(&resp)
}

/// `POST PATH` with the given extra header lines (`Name: value`) and body.
pub fn http_post(
    port: u16,
    path: &str,
    headers: &[String],
    body: &[u8],
    timeout: Duration,
) -> Result<HttpResponse> {
    let mut head = format!("POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    http_raw(port, &head, body, timeout)
}

fn parse_response(raw: &[u8]) -> Result<HttpResponse> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("HTTP response without the end of its head")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad HTTP status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        body = dechunk(&body)?;
    } else if let Some(n) = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        body.truncate(n);
    }
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let nl = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("chunked body: no chunk size line")?;
        let size_text = String::from_utf8_lossy(&b[..nl]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .with_context(|| format!("chunked body: bad chunk size {size_text:?}"))?;
        b = &b[nl + 2..];
        if size == 0 {
            return Ok(out);
        }
        if b.len() < size {
            bail!("chunked body: chunk of {size} bytes cut short");
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size..];
        b = b.strip_prefix(b"\r\n").unwrap_or(b);
    }
}

/// A Transmission RPC client on `http://127.0.0.1:PORT/transmission/rpc`: keeps the
/// session id the server hands out with its 409 answers.
pub struct RpcClient {
    pub port: u16,
    pub path: String,
    session_id: std::cell::RefCell<Option<String>>,
    pub timeout: Duration,
}

impl RpcClient {
    pub fn new(port: u16) -> RpcClient {
        RpcClient {
            port,
            path: "/transmission/rpc".into(),
            session_id: std::cell::RefCell::new(None),
            timeout: Duration::from_secs(20),
        }
    }

    /// POSTs `body` as is (with the session id once known; a 409 is answered once by
    /// retrying with the id it carries) and returns the final HTTP answer, whatever it is.
    pub fn post_raw(&self, body: &[u8]) -> Result<HttpResponse> {
        for _ in 0..3 {
            let mut headers = vec!["Content-Type: application/json".to_string()];
            if let Some(id) = self.session_id.borrow().as_ref() {
                headers.push(format!("X-Transmission-Session-Id: {id}"));
            }
            let r = http_post(self.port, &self.path, &headers, body, self.timeout)?;
            if r.status == 409 {
                let Some(id) = r.header("x-transmission-session-id") else {
                    bail!(
                        "HTTP 409 without an X-Transmission-Session-Id header: {}",
                        r.text()
                    );
                };
                *self.session_id.borrow_mut() = Some(id.to_string());
                continue;
            }
            return Ok(r);
        }
        bail!("three 409 answers in a row from 127.0.0.1:{}", self.port)
    }

    /// `{"method": METHOD, "arguments": ARGS}`; returns the whole JSON answer (with its
    /// `result`), failing only when the HTTP status is not 200 or the body is not JSON.
    pub fn call(&self, method: &str, args: serde_json::Value) -> Result<serde_json::Value> {
        let body = serde_json::json!({"method": method, "arguments": args, "tag": 7});
        let r = self.post_raw(body.to_string().as_bytes())?;
        if r.status != 200 {
            bail!("{method}: HTTP {} {}", r.status, r.text());
        }
        r.json()
    }

    /// [`RpcClient::call`] that also requires `"result": "success"`; returns `arguments`.
    pub fn ok(&self, method: &str, args: serde_json::Value) -> Result<serde_json::Value> {
        let v = self.call(method, args)?;
        if v["result"] != "success" {
            bail!("{method}: result {} (whole answer: {v})", v["result"]);
        }
        Ok(v["arguments"].clone())
    }
}
