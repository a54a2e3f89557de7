//! Shared helpers: a tracker on 127.0.0.1 port 0 in its own runtime thread, a blocking HTTP
//! GET, and a UDP client. Every socket has a timeout.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

use tracker::{Config, Tracker, TrackerHandle, TrackerServerError};
use tracker_proto::udp::{Request, Response};
use tracker_proto::{AnnounceRequest, Event, InfoHash, PeerId};

pub const T: Duration = Duration::from_secs(5);

pub fn local_config() -> Config {
    Config {
        http: vec!["127.0.0.1:0".parse().unwrap()],
        udp: vec!["127.0.0.1:0".parse().unwrap()],
        udp_threads: 2,
        ..Config::default()
    }
}

pub struct Running {
    pub http: SocketAddr,
    pub udp: SocketAddr,
    pub handle: TrackerHandle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), TrackerServerError>>>,
}

impl Running {
    pub fn start(config: Config) -> Running {
        Self::start_with_path(config, None)
    }

    pub fn start_with_path(config: Config, path: Option<PathBuf>) -> Running {
        let t = Tracker::bind(config, path).expect("bind");
        let http = t
            .http_addrs()
            .first()
            .copied()
            .unwrap_or(([0, 0, 0, 0], 0).into());
        let udp = t
            .udp_addrs()
            .first()
            .copied()
            .unwrap_or(([0, 0, 0, 0], 0).into());
        let handle = t.handle();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(t.run(async {
                let _ = rx.await;
            }))
        });
        Running {
            http,
            udp,
            handle,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    pub fn stop(mut self) -> Result<(), TrackerServerError> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<(), TrackerServerError> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.thread.take() {
            Some(t) => t.join().expect("tracker thread panicked"),
            None => Ok(()),
        }
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

/// Sends raw bytes, returns everything the server sent until it closed (or the timeout).
pub fn raw_http(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect_timeout(&addr, T).expect("connect");
    s.set_read_timeout(Some(T)).unwrap();
    s.set_write_timeout(Some(T)).unwrap();
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// GET `target` (path and query); returns (status, body).
pub fn get(addr: SocketAddr, target: &str) -> (u16, Vec<u8>) {
    let req = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    split_response(&raw_http(addr, req.as_bytes()))
}

pub fn split_response(resp: &[u8]) -> (u16, Vec<u8>) {
    let end = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head");
    let head = std::str::from_utf8(&resp[..end]).unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, resp[end + 4..].to_vec())
}

/// The target of an announce to `path` (e.g. "/announce" or "/announce/KEY").
pub fn announce_target(path: &str, req: &AnnounceRequest) -> String {
    tracker_proto::http::announce_url(path, req)
}

pub fn req(hash: u8, peer: u8, port: u16, left: u64) -> AnnounceRequest {
    AnnounceRequest {
        info_hash: InfoHash([hash; 20]),
        peer_id: PeerId([peer; 20]),
        port,
        uploaded: 0,
        downloaded: 0,
        left,
        event: Event::Started,
        numwant: None,
        key: peer as u32,
        compact: true,
        ip: None,
    }
}

pub struct UdpClient {
    pub sock: UdpSocket,
    pub server: SocketAddr,
    tid: u32,
}

impl UdpClient {
    pub fn new(server: SocketAddr) -> UdpClient {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(T)).unwrap();
        UdpClient {
            sock,
            server,
            tid: 1,
        }
    }

    pub fn next_tid(&mut self) -> u32 {
        self.tid += 1;
        self.tid
    }

    pub fn send_raw(&self, b: &[u8]) {
        self.sock.send_to(b, self.server).unwrap();
    }

    pub fn recv(&self) -> Option<Response> {
        let mut buf = [0u8; 4096];
        let (n, _) = self.sock.recv_from(&mut buf).ok()?;
        Some(Response::parse(&buf[..n], false).expect("valid response"))
    }

    pub fn roundtrip(&mut self, r: &Request) -> Response {
        let mut b = Vec::new();
        r.encode(&mut b);
        self.send_raw(&b);
        let resp = self.recv().expect("answer");
        assert_eq!(resp.transaction_id(), r.transaction_id());
        resp
    }

    pub fn connect(&mut self) -> u64 {
        let tid = self.next_tid();
        match self.roundtrip(&Request::Connect {
            transaction_id: tid,
        }) {
            Response::Connect { connection_id, .. } => connection_id,
            other => panic!("unexpected {other:?}"),
        }
    }

    pub fn announce(&mut self, cid: u64, request: AnnounceRequest, url_data: &[u8]) -> Response {
        let tid = self.next_tid();
        self.roundtrip(&Request::Announce {
            connection_id: cid,
            transaction_id: tid,
            request,
            url_data: url_data.to_vec(),
        })
    }
}
