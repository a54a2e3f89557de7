//! The Transmission RPC over a real socket on a real session (loopback only: DHT and
//! trackers off).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use data_encoding::BASE64;
use serde_json::{json, Value};
use session::{Session, SessionConfig};
use webapi::RpcConfig;

struct Server {
    addr: SocketAddr,
    http: reqwest::Client,
    session_id: String,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    session: Session,
}

async fn open_session(dir: &Path) -> Session {
    let mut cfg = SessionConfig::new(dir.join("state"), "127.0.0.1:0".parse().unwrap());
    cfg.dht = false;
    cfg.use_trackers = false;
    cfg.settings.download_dir = dir.join("downloads");
    cfg.force_settings = true;
    let (session, _report) = Session::open(cfg).await.expect("Session::open");
    session
}

async fn start(dir: &Path, cfg: RpcConfig) -> Server {
    let session = open_session(dir).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(webapi::serve(listener, session.clone(), cfg, async {
        let _ = rx.await;
    }));
    Server {
        addr,
        http: reqwest::Client::new(),
        session_id: String::new(),
        task,
        stop: Some(tx),
        session,
    }
}

impl Server {
    fn url(&self) -> String {
        format!("http://{}/transmission/rpc", self.addr)
    }

    /// Posts `body` as a client does: on a 409 it takes the new session id and retries.
    async fn post_raw(&mut self, body: String) -> (u16, String) {
        for _ in 0..2 {
            let resp = self
                .http
                .post(self.url())
                .header("X-Transmission-Session-Id", &self.session_id)
                .body(body.clone())
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            if status == 409 {
                self.session_id = resp.headers()["x-transmission-session-id"]
                    .to_str()
                    .unwrap()
                    .to_string();
                continue;
            }
            return (status, resp.text().await.unwrap());
        }
        panic!("409 twice");
    }

    async fn call(&mut self, method: &str, args: Value) -> Value {
        let body = json!({ "method": method, "arguments": args, "tag": 5 }).to_string();
        let (status, text) = self.post_raw(body).await;
        assert_eq!(status, 200, "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["tag"], 5);
        v
    }

    async fn ok(&mut self, method: &str, args: Value) -> Value {
        let v = self.call(method, args).await;
        assert_eq!(v["result"], "success", "{method}: {v}");
        v["arguments"].clone()
    }

    async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("serve returns after its shutdown signal")
            .unwrap()
            .unwrap();
        self.session.shutdown().await;
    }
}

/// A two-file torrent made with metainfo's creation API.
fn tiny_torrent(dir: &Path) -> (Vec<u8>, String) {
    let src = dir.join("src").join("tiny");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.bin"), vec![7u8; 40_000]).unwrap();
    std::fs::write(src.join("b.txt"), b"hello").unwrap();
    let opts = metainfo::create::CreateOptions {
        path: src,
        trackers: vec![],
        piece_length: Some(16 * 1024),
        private: false,
        web_seeds: vec![],
        comment: Some("made by a test".into()),
        created_by: Some("webapi tests".into()),
        creation_date: Some(1_700_000_000),
    };
    let (bytes, torrent) = metainfo::create::create_torrent(&opts, &mut |_, _| {}).unwrap();
    (bytes, torrent.info_hash.to_hex())
}

/// Base64 with line breaks, as some clients send it.
fn wrapped_base64(bytes: &[u8]) -> String {
    let b = BASE64.encode(bytes);
    b.as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn add_get_set_remove_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, hash) = tiny_torrent(dir.path());
    let mut srv = start(dir.path(), RpcConfig::default()).await;

    let s = srv.ok("session-get", json!({})).await;
    assert_eq!(s["rpc-version"], 17);
    assert_eq!(s["rpc-version-semver"], "5.3.0");
    assert_eq!(s["session-id"], srv.session_id.as_str());
    assert_eq!(s["peer-port"], srv.session.listen_addr().port());
    assert!(s["version"].as_str().unwrap().starts_with("4."));

    let dl = dir.path().join("downloads");
    let added = srv
        .ok(
            "torrent-add",
            json!({"metainfo": wrapped_base64(&bytes), "paused": true,
                   "download-dir": dl.to_str().unwrap(), "labels": ["test"]}),
        )
        .await;
    let t = &added["torrent-added"];
    assert_eq!(t["hashString"], hash.as_str());
    assert_eq!(t["name"], "tiny");
    let id = t["id"].as_u64().unwrap();

    let dup = srv
        .ok("torrent-add", json!({"metainfo": BASE64.encode(&bytes)}))
        .await;
    assert_eq!(dup["torrent-duplicate"]["id"], id);

    let fields = json!([
        "id",
        "name",
        "hashString",
        "status",
        "totalSize",
        "files",
        "fileStats",
        "wanted",
        "labels",
        "downloadDir",
        "comment",
        "pieceCount",
        "peers",
        "pieces",
        "eta",
        "noSuchField"
    ]);
    for ids in [
        json!(id),
        json!([id]),
        json!([hash.to_uppercase()]),
        Value::Null, // no ids: all
    ] {
        let mut args = json!({ "fields": fields });
        if !ids.is_null() {
            args["ids"] = ids.clone();
        }
        let got = srv.ok("torrent-get", args).await;
        let list = got["torrents"].as_array().unwrap();
        assert_eq!(list.len(), 1, "{ids}: {got}");
        let t = &list[0];
        assert_eq!(t["id"], id);
        assert_eq!(t["hashString"], hash.as_str());
        assert_eq!(t["status"], 0, "added paused: stopped");
        assert_eq!(t["totalSize"], 40_005);
        assert_eq!(t["files"].as_array().unwrap().len(), 2);
        assert_eq!(t["wanted"], json!([1, 1]));
        assert_eq!(t["labels"], json!(["test"]));
        assert_eq!(t["comment"], "made by a test");
        assert_eq!(t["pieceCount"], 3);
        assert!(t.get("noSuchField").is_none());
    }

    // Ids that do not exist: an empty list, not an error.
    for ids in [
        json!(9999),
        json!([9999, 12345]),
        json!(["0".repeat(40)]),
        json!([]),
        json!(null), // an explicit null names no torrent
    ] {
        let got = srv
            .ok("torrent-get", json!({"ids": ids, "fields": ["id"]}))
            .await;
        assert_eq!(got["torrents"], json!([]), "{ids}");
    }

    // The table format.
    let got = srv
        .ok(
            "torrent-get",
            json!({"fields": ["id", "name"], "format": "table"}),
        )
        .await;
    assert_eq!(got["torrents"], json!([["id", "name"], [id, "tiny"]]));

    // torrent-set, read back (kB/s of 1000 bytes).
    srv.ok(
        "torrent-set",
        json!({"ids": [id], "downloadLimit": 70, "downloadLimited": true,
               "files-unwanted": [1], "labels": ["a", "b"]}),
    )
    .await;
    let got = srv
        .ok(
            "torrent-get",
            json!({"ids": id, "fields": ["downloadLimit", "downloadLimited", "wanted", "labels"]}),
        )
        .await;
    let t = &got["torrents"][0];
    assert_eq!(t["downloadLimit"], 70);
    assert_eq!(t["downloadLimited"], true);
    assert_eq!(t["wanted"], json!([1, 0]));
    assert_eq!(t["labels"], json!(["a", "b"]));

    // A file index out of range is the session's error, in `result`.
    let v = srv
        .call("torrent-set", json!({"ids": [id], "files-wanted": [7]}))
        .await;
    assert_ne!(v["result"], "success");

    // Actions on ids that do not exist are no-ops.
    srv.ok("torrent-start", json!({"ids": [9999]})).await;
    srv.ok("queue-move-top", json!({"ids": [id]})).await;

    // The JSON-RPC 2.0 form of the same session.
    let (status, text) = srv
        .post_raw(
            json!({"jsonrpc": "2.0", "method": "torrent_get",
                   "params": {"ids": [id], "fields": ["id", "hash_string", "file_stats"]}, "id": 9})
            .to_string(),
        )
        .await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["id"], 9);
    assert_eq!(v["result"]["torrents"][0]["hash_string"], hash.as_str());
    assert!(v["result"]["torrents"][0]["file_stats"][0]
        .get("bytes_completed")
        .is_some());

    srv.ok(
        "torrent-remove",
        json!({"ids": [hash.clone()], "delete-local-data": true}),
    )
    .await;
    let got = srv.ok("torrent-get", json!({"fields": ["id"]})).await;
    assert_eq!(got["torrents"], json!([]));

    let v = srv.call("torrent-explode", json!({})).await;
    assert_eq!(v["result"], "method name not recognized");
    let v = srv
        .call("torrent-get", json!({"ids": "abc", "fields": ["id"]}))
        .await;
    assert!(v["result"].as_str().unwrap().contains("ids"), "{v}");
    let v = srv.call("torrent-get", json!({"fields": 5})).await;
    assert!(v["result"].as_str().unwrap().contains("fields"), "{v}");
    let (status, _) = srv.post_raw("{\"method\":\"session-get\",".into()).await;
    assert_eq!(status, 400);
    // A body over axum's own 2 MB default but under max_body reaches the RPC: the
    // session refuses the junk torrent in `result`, not with a 413.
    let junk = BASE64.encode(&vec![b'x'; 3 << 20]);
    let v = srv.call("torrent-add", json!({"metainfo": junk})).await;
    assert_ne!(v["result"], "success");

    srv.shutdown().await;
}

#[tokio::test]
async fn session_set_round_trip_and_stats() {
    let dir = tempfile::tempdir().unwrap();
    let mut srv = start(dir.path(), RpcConfig::default()).await;
    srv.ok(
        "session-set",
        json!({"speed-limit-down": 512, "speed-limit-down-enabled": true,
               "seedRatioLimit": 1.25, "no-such-key": true}),
    )
    .await;
    let s = srv
        .ok(
            "session-get",
            json!({"fields": ["speed-limit-down", "speed-limit-down-enabled", "seedRatioLimit"]}),
        )
        .await;
    assert_eq!(
        s,
        json!({"speed-limit-down": 512, "speed-limit-down-enabled": true, "seedRatioLimit": 1.25})
    );
    assert_eq!(srv.session.settings().speed_limit_down, 512_000);
    let v = srv
        .call("session-set", json!({"speed-limit-up": "fast"}))
        .await;
    assert_ne!(v["result"], "success");
    let st = srv.ok("session-stats", json!({})).await;
    assert_eq!(st["torrentCount"], 0);
    assert!(st["cumulative-stats"].get("uploadedBytes").is_some());
    let fs = srv
        .ok("free-space", json!({"path": dir.path().to_str().unwrap()}))
        .await;
    assert!(fs["size-bytes"].as_u64().unwrap() > 0);
    let v = srv.call("port-test", json!({})).await;
    assert!(v["result"]
        .as_str()
        .unwrap()
        .starts_with("port-test is not available"));
    srv.shutdown().await;
}

#[tokio::test]
async fn session_close_stops_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let mut srv = start(dir.path(), RpcConfig::default()).await;
    srv.ok("session-close", json!({})).await;
    let task = srv.task;
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("serve returns after session-close")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn event_stream_reports_adds() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, _) = tiny_torrent(dir.path());
    let mut srv = start(dir.path(), RpcConfig::default()).await;
    let mut resp = srv
        .http
        .get(format!("http://{}/spate/events", srv.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    srv.ok(
        "torrent-add",
        json!({"metainfo": BASE64.encode(&bytes), "paused": true}),
    )
    .await;
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains("event: added") {
        let chunk = tokio::time::timeout_at(deadline, resp.chunk())
            .await
            .expect("an `added` event within 10 s")
            .unwrap()
            .expect("stream open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("\"name\":\"tiny\""), "{seen}");
    // The open stream does not hold the server's shutdown up.
    srv.shutdown().await;
}

#[tokio::test]
async fn auth_and_host_over_a_socket() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = RpcConfig {
        username: Some("u".into()),
        password_hash: Some(webapi::hash_password("p")),
        ..RpcConfig::default()
    };
    let srv = start(dir.path(), cfg).await;
    let r = srv.http.post(srv.url()).body("{}").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = srv
        .http
        .post(srv.url())
        .basic_auth("u", Some("p"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let id = r.headers()["x-transmission-session-id"].clone();
    let r = srv
        .http
        .post(srv.url())
        .basic_auth("u", Some("p"))
        .header("X-Transmission-Session-Id", id.clone())
        .body(r#"{"method":"session-get","arguments":{"fields":["rpc-version"]}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(v["arguments"]["rpc-version"], 17);
    let r = srv
        .http
        .post(srv.url())
        .basic_auth("u", Some("p"))
        .header("X-Transmission-Session-Id", id)
        .header("Host", "attacker.example")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 421);
    srv.shutdown().await;
}

/// One raw HTTP/1.1 request (bytes as given, nothing normalised by a client library);
/// returns the status code and the whole answer.
async fn raw_get(addr: SocketAddr, target: &str, extra: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req =
        format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("the server answers and closes")
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

/// Every traversal attempt is refused: 404 from the UI's table (401 from the guard when a
/// password is set, as the path is no UI file), or 400 when the HTTP parser refuses the
/// target itself; never a file's content.
async fn no_file_reachable(addr: SocketAddr, password: bool) {
    for target in [
        "/../Cargo.toml",
        "/../../Cargo.toml",
        "/..%2fCargo.toml",
        "/%2e%2e/Cargo.toml",
        "/%2e%2e%2f%2e%2e%2fetc/passwd",
        "/..\\Cargo.toml",
        "/..\\..\\secret.txt",
        "/%5c..%5cCargo.toml",
        "//etc/passwd",
        "/secret.txt",
        "/state/../secret.txt",
        "/app.js/../../Cargo.toml",
        "/index.html%00",
        "/.%2e/Cargo.toml",
    ] {
        let (code, text) = raw_get(addr, target, "").await;
        let allowed: &[u16] = if password {
            &[400, 401, 404]
        } else {
            &[400, 404]
        };
        assert!(allowed.contains(&code), "{target}: {text}");
        assert!(
            !text.contains("[package]") && !text.contains("TOP-SECRET") && !text.contains("root:"),
            "{target}: {text}"
        );
    }
}

#[tokio::test]
async fn web_ui_over_a_socket() {
    let dir = tempfile::tempdir().unwrap();
    // A file a traversal could aim at, beside the session's folders (the crate's
    // Cargo.toml is in the test's working directory).
    std::fs::write(dir.path().join("secret.txt"), "TOP-SECRET").unwrap();
    let cfg = RpcConfig {
        username: Some("u".into()),
        password_hash: Some(webapi::hash_password("p")),
        ..RpcConfig::default()
    };
    let srv = start(dir.path(), cfg).await;
    // The page and its files need no password (the page asks for one itself).
    let (code, text) = raw_get(srv.addr, "/", "").await;
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("content-security-policy: default-src 'self'"));
    assert!(text.contains("x-content-type-options: nosniff"));
    let (code, text) = raw_get(srv.addr, "/app.js", "").await;
    assert_eq!(code, 200);
    assert!(text.contains("content-type: text/javascript"));
    no_file_reachable(srv.addr, true).await;
    // The UI's requests get a bare 401 (the page shows its login); others the Basic
    // challenge.
    let xhr = "X-Requested-With: XMLHttpRequest\r\n";
    let (code, text) = raw_get(srv.addr, "/spate/events", xhr).await;
    assert_eq!(code, 401);
    assert!(
        !text.to_ascii_lowercase().contains("www-authenticate"),
        "{text}"
    );
    let (code, text) = raw_get(srv.addr, "/spate/events", "").await;
    assert_eq!(code, 401);
    assert!(
        text.to_ascii_lowercase()
            .contains("www-authenticate: basic"),
        "{text}"
    );
    srv.shutdown().await;
    // No password: the UI's own 404s.
    let open = dir.path().join("open");
    std::fs::create_dir_all(&open).unwrap();
    let srv = start(&open, RpcConfig::default()).await;
    no_file_reachable(srv.addr, false).await;
    assert_eq!(raw_get(srv.addr, "/nope", "").await.0, 404);
    srv.shutdown().await;
}
