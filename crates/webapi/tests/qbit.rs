//! The qBittorrent WebAPI, cookie login and /metrics on a real session (loopback only:
//! DHT and trackers off), called through the router as a client would.

use std::path::Path;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use session::{Session, SessionConfig};
use tower::ServiceExt;
use webapi::RpcConfig;

async fn open_session(dir: &Path) -> Session {
    let mut cfg = SessionConfig::new(dir.join("state"), "127.0.0.1:0".parse().unwrap());
    cfg.dht = false;
    cfg.use_trackers = false;
    cfg.settings.download_dir = dir.join("downloads");
    cfg.settings.lpd_enabled = false;
    cfg.force_settings = true;
    let (session, report) = Session::open(cfg).await.expect("Session::open");
    assert!(report.damaged_store_kept_at.is_none(), "{report:?}");
    session
}

fn tiny_torrent(dir: &Path, name: &str) -> (Vec<u8>, String) {
    let src = dir.join("src").join(name);
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.bin"), vec![7u8; 40_000]).unwrap();
    std::fs::write(src.join("b.txt"), b"hello").unwrap();
    let opts = metainfo::create::CreateOptions {
        path: src,
        trackers: vec!["http://127.0.0.1:1/announce".into()],
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

struct Client {
    router: Router,
    cookie: Option<String>,
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

impl Client {
    async fn send(&self, mut req: Request<Body>) -> Answer {
        req.headers_mut()
            .insert("host", "127.0.0.1:8080".parse().unwrap());
        if let Some(c) = &self.cookie {
            req.headers_mut()
                .insert("cookie", format!("SID={c}").parse().unwrap());
        }
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(Request::get(path).body(Body::empty()).unwrap())
            .await
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> Answer {
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.send(
            Request::post(path)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(body))
                .unwrap(),
        )
        .await
    }

    async fn ok(&self, path: &str, form: &[(&str, &str)]) -> Answer {
        let a = self.post(path, form).await;
        assert_eq!(a.status, StatusCode::OK, "{path}: {}", a.body);
        a
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

const BOUNDARY: &str = "----spateTestBoundary7MA4YWxk";

fn multipart(fields: &[(&str, &str)], files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in fields {
        out.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    for (name, data) in files {
        out.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"torrents\"; \
                 filename=\"{name}\"\r\nContent-Type: application/x-bittorrent\r\n\r\n"
            )
            .as_bytes(),
        );
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    out
}

fn upload(body: Vec<u8>) -> Request<Body> {
    Request::post("/api/v2/torrents/add")
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(Body::from(body))
        .unwrap()
}

/// qBittorrent's `torrents/info` fields (5.0) that third-party code reads.
const INFO_FIELDS: &[&str] = &[
    "added_on",
    "amount_left",
    "auto_tmm",
    "availability",
    "category",
    "completed",
    "completion_on",
    "content_path",
    "dl_limit",
    "dlspeed",
    "downloaded",
    "downloaded_session",
    "eta",
    "f_l_piece_prio",
    "force_start",
    "hash",
    "infohash_v1",
    "last_activity",
    "magnet_uri",
    "max_ratio",
    "max_seeding_time",
    "name",
    "num_complete",
    "num_incomplete",
    "num_leechs",
    "num_seeds",
    "priority",
    "progress",
    "ratio",
    "ratio_limit",
    "save_path",
    "seeding_time",
    "seeding_time_limit",
    "seen_complete",
    "seq_dl",
    "size",
    "state",
    "super_seeding",
    "tags",
    "time_active",
    "total_size",
    "tracker",
    "trackers_count",
    "up_limit",
    "uploaded",
    "uploaded_session",
    "upspeed",
];

#[tokio::test]
async fn login_cookie_guards_every_api() {
    let dir = tempfile::tempdir().unwrap();
    let session = open_session(dir.path()).await;
    let cfg = RpcConfig {
        username: Some("admin".into()),
        password_hash: Some(webapi::hash_password("secret")),
        ..RpcConfig::default()
    };
    let mut c = Client {
        router: webapi::router(session.clone(), cfg),
        cookie: None,
    };
    let a = c.get("/api/v2/app/version").await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(c.get("/metrics").await.status, StatusCode::UNAUTHORIZED);
    let a = c
        .post(
            "/api/v2/auth/login",
            &[("username", "admin"), ("password", "wrong")],
        )
        .await;
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "Fails."));
    let a = c
        .post(
            "/api/v2/auth/login",
            &[("username", "admin"), ("password", "secret")],
        )
        .await;
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "Ok."));
    let set = a.headers["set-cookie"].to_str().unwrap();
    assert!(
        set.ends_with("; HttpOnly; SameSite=Strict; Path=/"),
        "{set}"
    );
    c.cookie = Some(set["SID=".len()..set.find(';').unwrap()].to_string());
    assert_eq!(c.get("/api/v2/app/version").await.body, "v5.0.0");
    assert_eq!(c.get("/api/v2/app/webapiVersion").await.body, "2.11.2");
    assert_eq!(c.get("/metrics").await.status, StatusCode::OK);
    // A cookie-authenticated change from another site's page is refused.
    let mut req = Request::post("/api/v2/torrents/createTags")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", "http://evil.example")
        .body(Body::from("tags=x"))
        .unwrap();
    assert_eq!(c.send(req).await.status, StatusCode::FORBIDDEN);
    req = Request::post("/api/v2/torrents/createTags")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", "http://127.0.0.1:8080")
        .body(Body::from("tags=x"))
        .unwrap();
    assert_eq!(c.send(req).await.status, StatusCode::OK);
    c.ok("/api/v2/auth/logout", &[]).await;
    assert_eq!(
        c.get("/api/v2/app/version").await.status,
        StatusCode::FORBIDDEN
    );
    session.shutdown().await;
}

#[tokio::test]
async fn add_info_files_categories_tags() {
    let dir = tempfile::tempdir().unwrap();
    let session = open_session(dir.path()).await;
    let c = Client {
        router: webapi::router(session.clone(), RpcConfig::default()),
        cookie: None,
    };
    let (bytes, hash) = tiny_torrent(dir.path(), "tiny");
    let tv = dir.path().join("tv");

    // A category must exist before setCategory, but add creates it.
    c.ok(
        "/api/v2/torrents/createCategory",
        &[("category", "tv"), ("savePath", tv.to_str().unwrap())],
    )
    .await;
    let a = c
        .post("/api/v2/torrents/createCategory", &[("category", "tv")])
        .await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    let a = c
        .send(upload(multipart(
            &[
                ("category", "tv"),
                ("tags", "one, two"),
                ("stopped", "true"),
                ("sequentialDownload", "true"),
                ("ratioLimit", "1.5"),
            ],
            &[("tiny.torrent", &bytes)],
        )))
        .await;
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "Ok."));
    // The same again: a duplicate fails, as in qBittorrent.
    let a = c
        .send(upload(multipart(&[], &[("tiny.torrent", &bytes)])))
        .await;
    assert_eq!(a.body, "Fails.");

    let list = c.get("/api/v2/torrents/info").await.json();
    let t = &list[0];
    for f in INFO_FIELDS {
        assert!(t.get(*f).is_some(), "torrents/info lacks {f}: {t}");
    }
    assert_eq!(t["hash"], hash.as_str());
    assert_eq!(t["name"], "tiny");
    assert_eq!(t["category"], "tv");
    assert_eq!(t["tags"], "one, two");
    assert_eq!(t["state"], "stoppedDL");
    assert_eq!(t["save_path"], tv.to_str().unwrap());
    assert_eq!(t["seq_dl"], true);
    assert_eq!(t["ratio_limit"], 1.5);
    assert_eq!(t["total_size"], 40_005);
    // The Transmission side sees the same thing as labels.
    let v = &session.list()[0];
    assert_eq!(v.labels, vec!["category:tv", "one", "two"]);

    // Filters, category, tag, paging.
    for (q, n) in [
        ("filter=stopped", 1),
        ("filter=paused", 1),
        ("filter=downloading", 1),
        ("filter=seeding", 0),
        ("filter=running", 0),
        ("filter=completed", 0),
        ("category=tv", 1),
        ("category=", 0),
        ("tag=two", 1),
        ("tag=", 0),
        ("hashes=0000000000000000000000000000000000000000", 0),
        (&format!("hashes={hash}") as &str, 1),
        ("offset=1", 0),
        ("offset=-1&limit=1", 1),
        ("sort=name&reverse=true", 1),
    ] {
        let got = c.get(&format!("/api/v2/torrents/info?{q}")).await.json();
        assert_eq!(got.as_array().unwrap().len(), n, "{q}");
    }
    assert_eq!(
        c.get("/api/v2/torrents/info?filter=bogus").await.status,
        StatusCode::BAD_REQUEST
    );

    let p = c
        .get(&format!("/api/v2/torrents/properties?hash={hash}"))
        .await
        .json();
    assert_eq!(p["save_path"], tv.to_str().unwrap());
    assert_eq!(p["piece_size"], 16384);
    assert_eq!(p["pieces_num"], 3);
    assert_eq!(p["comment"], "made by a test");
    assert_eq!(p["created_by"], "webapi tests");
    assert_eq!(p["creation_date"], 1_700_000_000);
    for path in ["properties", "files", "trackers", "pieceStates"] {
        let a = c
            .get(&format!(
                "/api/v2/torrents/{path}?hash=0123456789abcdef0123456789abcdef01234567"
            ))
            .await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}");
    }
    let files = c
        .get(&format!("/api/v2/torrents/files?hash={hash}"))
        .await
        .json();
    assert_eq!(files[0]["name"], "tiny/a.bin");
    assert_eq!(files[0]["priority"], 1);
    assert_eq!(files[0]["piece_range"], json!([0, 2]));
    assert_eq!(files[1]["name"], "tiny/b.txt");
    assert_eq!(files[1]["index"], 1);
    c.ok(
        "/api/v2/torrents/filePrio",
        &[("hash", &hash), ("id", "1"), ("priority", "0")],
    )
    .await;
    c.ok(
        "/api/v2/torrents/filePrio",
        &[("hash", &hash), ("id", "0"), ("priority", "7")],
    )
    .await;
    let files = c
        .get(&format!("/api/v2/torrents/files?hash={hash}"))
        .await
        .json();
    assert_eq!(files[0]["priority"], 6);
    assert_eq!(files[1]["priority"], 0);
    let a = c
        .post(
            "/api/v2/torrents/filePrio",
            &[("hash", &hash), ("id", "9"), ("priority", "1")],
        )
        .await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    let a = c
        .post(
            "/api/v2/torrents/filePrio",
            &[("hash", &hash), ("id", "0"), ("priority", "9")],
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let trackers = c
        .get(&format!("/api/v2/torrents/trackers?hash={hash}"))
        .await
        .json();
    assert_eq!(trackers[0]["url"], "** [DHT] **");
    assert_eq!(trackers[3]["url"], "http://127.0.0.1:1/announce");
    let pieces = c
        .get(&format!("/api/v2/torrents/pieceStates?hash={hash}"))
        .await
        .json();
    assert_eq!(pieces, json!([0, 0, 0]));

    // Categories and tags.
    let cats = c.get("/api/v2/torrents/categories").await.json();
    assert_eq!(
        cats,
        json!({"tv": {"name": "tv", "savePath": tv.to_str().unwrap()}})
    );
    let a = c
        .post(
            "/api/v2/torrents/setCategory",
            &[("hashes", &hash), ("category", "nope")],
        )
        .await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    c.ok("/api/v2/torrents/createTags", &[("tags", "three")])
        .await;
    let tags = c.get("/api/v2/torrents/tags").await.json();
    assert_eq!(tags, json!(["one", "three", "two"]));
    c.ok(
        "/api/v2/torrents/removeTags",
        &[("hashes", &hash), ("tags", "one")],
    )
    .await;
    c.ok(
        "/api/v2/torrents/addTags",
        &[("hashes", &hash), ("tags", "three")],
    )
    .await;
    c.ok("/api/v2/torrents/deleteTags", &[("tags", "two")])
        .await;
    assert_eq!(session.list()[0].labels, vec!["category:tv", "three"]);
    c.ok("/api/v2/torrents/removeCategories", &[("categories", "tv")])
        .await;
    assert_eq!(session.list()[0].labels, vec!["three"]);
    assert_eq!(c.get("/api/v2/torrents/categories").await.json(), json!({}));

    // Actions need POST; unknown endpoints are 404.
    assert_eq!(
        c.get(&format!("/api/v2/torrents/start?hashes={hash}"))
            .await
            .status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        c.get("/api/v2/torrents/nothing").await.status,
        StatusCode::NOT_FOUND
    );
    c.ok(
        "/api/v2/torrents/rename",
        &[("hash", &hash), ("name", "Renamed")],
    )
    .await;
    assert_eq!(session.list()[0].name, "Renamed");
    c.ok(
        "/api/v2/torrents/setShareLimits",
        &[
            ("hashes", &hash),
            ("ratioLimit", "-1"),
            ("seedingTimeLimit", "-2"),
            ("inactiveSeedingTimeLimit", "30"),
        ],
    )
    .await;
    let t = &c.get("/api/v2/torrents/info").await.json()[0];
    assert_eq!(t["ratio_limit"], -1);
    assert_eq!(t["inactive_seeding_time_limit"], 30);

    c.ok(
        "/api/v2/torrents/delete",
        &[("hashes", &hash), ("deleteFiles", "true")],
    )
    .await;
    assert!(session.list().is_empty());
    session.shutdown().await;
}

#[tokio::test]
async fn bad_uploads_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let session = open_session(dir.path()).await;
    let cfg = RpcConfig {
        max_body: 4096,
        ..RpcConfig::default()
    };
    let c = Client {
        router: webapi::router(session.clone(), cfg),
        cookie: None,
    };
    // Too large.
    let a = c
        .send(upload(multipart(&[], &[("big.torrent", &[b'x'; 5000])])))
        .await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    // Malformed multipart bodies.
    for body in [
        format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"urls\"\r\n\r\nmagnet:"),
        format!("--{BOUNDARY}\r\nno header end"),
        format!("--{BOUNDARY}\r\nContent-Disposition: form-data\r\n\r\nx\r\n--{BOUNDARY}--"),
        "no boundary at all".to_string(),
    ] {
        let a = c.send(upload(body.clone().into_bytes())).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body:?}: {}", a.body);
    }
    let a = c
        .send(
            Request::post("/api/v2/torrents/add")
                .header("content-type", "multipart/form-data")
                .body(Body::from("x"))
                .unwrap(),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    // Not a torrent, not a link.
    let a = c
        .send(upload(multipart(&[], &[("junk.torrent", b"d4:junke")])))
        .await;
    assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "Fails."));
    let a = c
        .post("/api/v2/torrents/add", &[("urls", "ftp://nowhere")])
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let a = c.post("/api/v2/torrents/add", &[]).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    // A magnet link by URL, with a save path.
    let hash = "0123456789abcdef0123456789abcdef01234567";
    let a = c
        .post(
            "/api/v2/torrents/add",
            &[
                ("urls", &format!("magnet:?xt=urn:btih:{hash}&dn=m")),
                ("savepath", dir.path().join("m").to_str().unwrap()),
                ("paused", "true"),
            ],
        )
        .await;
    assert_eq!(a.body, "Ok.");
    let t = &c.get("/api/v2/torrents/info").await.json()[0];
    assert_eq!(t["hash"], hash);
    assert_eq!(t["state"], "stoppedDL");
    assert_eq!(t["has_metadata"], false);
    let a = c
        .post(
            "/api/v2/torrents/filePrio",
            &[("hash", hash), ("id", "0"), ("priority", "1")],
        )
        .await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    session.shutdown().await;
}

#[tokio::test]
async fn maindata_deltas() {
    let dir = tempfile::tempdir().unwrap();
    let session = open_session(dir.path()).await;
    let c = Client {
        router: webapi::router(session.clone(), RpcConfig::default()),
        cookie: None,
    };
    let full = c.get("/api/v2/sync/maindata").await.json();
    assert_eq!(full["full_update"], true);
    assert_eq!(full["torrents"], json!({}));
    assert!(full["server_state"]["dl_info_data"].is_u64());
    let rid = full["rid"].as_u64().unwrap();

    let (bytes, hash) = tiny_torrent(dir.path(), "tiny");
    let a = c
        .send(upload(multipart(
            &[("paused", "true")],
            &[("t.torrent", &bytes)],
        )))
        .await;
    assert_eq!(a.body, "Ok.");
    let d = c
        .get(&format!("/api/v2/sync/maindata?rid={rid}"))
        .await
        .json();
    assert!(d.get("full_update").is_none(), "{d}");
    let t = &d["torrents"][&hash];
    assert_eq!(t["name"], "tiny");
    assert_eq!(t["state"], "stoppedDL");
    let rid = d["rid"].as_u64().unwrap();

    // Nothing changed: no torrents in the delta.
    let d = c
        .get(&format!("/api/v2/sync/maindata?rid={rid}"))
        .await
        .json();
    assert!(d.get("torrents").is_none(), "{d}");
    let rid = d["rid"].as_u64().unwrap();

    // One field changes: only it is sent.
    c.ok("/api/v2/torrents/createCategory", &[("category", "c1")])
        .await;
    c.ok(
        "/api/v2/torrents/setCategory",
        &[("hashes", &hash), ("category", "c1")],
    )
    .await;
    let d = c
        .get(&format!("/api/v2/sync/maindata?rid={rid}"))
        .await
        .json();
    assert_eq!(d["torrents"][&hash], json!({"category": "c1"}), "{d}");
    assert_eq!(d["categories"]["c1"]["name"], "c1");
    let rid = d["rid"].as_u64().unwrap();

    c.ok("/api/v2/torrents/delete", &[("hashes", "all")]).await;
    c.ok("/api/v2/torrents/removeCategories", &[("categories", "c1")])
        .await;
    let d = c
        .get(&format!("/api/v2/sync/maindata?rid={rid}"))
        .await
        .json();
    assert_eq!(d["torrents_removed"], json!([hash]));
    assert_eq!(d["categories_removed"], json!(["c1"]));
    // An unknown rid: a full update.
    let d = c.get("/api/v2/sync/maindata?rid=999999").await.json();
    assert_eq!(d["full_update"], true);
    session.shutdown().await;
}

#[tokio::test]
async fn metrics_text_format() {
    let dir = tempfile::tempdir().unwrap();
    let session = open_session(dir.path()).await;
    let c = Client {
        router: webapi::router(session.clone(), RpcConfig::default()),
        cookie: None,
    };
    c.get("/api/v2/app/version").await;
    c.get("/api/v2/app/version").await;
    let a = c.get("/metrics").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let m = &a.body;
    for line in [
        "# TYPE spate_downloaded_bytes_total counter",
        "spate_downloaded_bytes_total 0",
        "spate_uploaded_bytes_total 0",
        "spate_torrents{state=\"downloading\"} 0",
        "spate_http_requests_total{api=\"qbittorrent\"} 2",
        "spate_http_requests_total{api=\"metrics\"} 1",
        "spate_peers 0",
    ] {
        assert!(m.lines().any(|l| l == line), "no {line:?} in\n{m}");
    }
    // DHT off: no node count rather than a made-up 0.
    assert!(!m.contains("spate_dht_nodes"), "{m}");
    session.shutdown().await;
}

#[tokio::test]
async fn preferences_transfer_and_labels_from_transmission() {
    let dir = tempfile::tempdir().unwrap();
    let session = open_session(dir.path()).await;
    let c = Client {
        router: webapi::router(session.clone(), RpcConfig::default()),
        cookie: None,
    };
    let p = c.get("/api/v2/app/preferences").await.json();
    for k in [
        "save_path",
        "queueing_enabled",
        "max_active_downloads",
        "max_ratio_enabled",
        "max_ratio",
        "dl_limit",
        "up_limit",
        "dht",
        "listen_port",
        "bypass_local_auth",
    ] {
        assert!(p.get(k).is_some(), "preferences lack {k}: {p}");
    }
    assert_eq!(p["bypass_local_auth"], true);
    assert_eq!(p["listen_port"], session.listen_addr().port());
    c.ok(
        "/api/v2/app/setPreferences",
        &[(
            "json",
            r#"{"dl_limit": 250000, "max_ratio_enabled": true, "max_ratio": 1.25, "unknown": 1}"#,
        )],
    )
    .await;
    let st = session.settings();
    assert!(st.speed_limit_down_enabled);
    assert_eq!(st.speed_limit_down, 250_000);
    assert!(st.seed_ratio_limited);
    assert_eq!(st.seed_ratio_limit, 1.25);
    let a = c
        .post("/api/v2/app/setPreferences", &[("json", "[1,2]")])
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);

    let t = c.get("/api/v2/transfer/info").await.json();
    for k in [
        "dl_info_speed",
        "dl_info_data",
        "up_info_speed",
        "up_info_data",
        "dl_rate_limit",
        "up_rate_limit",
        "dht_nodes",
        "connection_status",
    ] {
        assert!(t.get(k).is_some(), "transfer/info lacks {k}: {t}");
    }
    assert_eq!(t["dl_rate_limit"], 250_000);
    assert_eq!(c.get("/api/v2/transfer/speedLimitsMode").await.body, "0");
    c.ok("/api/v2/transfer/toggleSpeedLimitsMode", &[]).await;
    assert_eq!(c.get("/api/v2/transfer/speedLimitsMode").await.body, "1");
    assert!(session.settings().alt_speed_enabled);

    // A label set on the Transmission side is a category and a tag here.
    let (bytes, hash) = tiny_torrent(dir.path(), "tiny");
    session
        .add(
            session::AddSource::Metainfo(bytes),
            session::AddOptions {
                paused: Some(true),
                labels: vec!["sonarr".into(), "category:movies".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let t = &c
        .get(&format!("/api/v2/torrents/info?hashes={hash}"))
        .await
        .json()[0];
    assert_eq!(t["category"], "movies");
    assert_eq!(t["tags"], "sonarr");
    let cats = c.get("/api/v2/torrents/categories").await.json();
    assert_eq!(cats["movies"]["savePath"], "");
    assert_eq!(
        c.get("/api/v2/torrents/tags").await.json(),
        json!(["sonarr"])
    );
    session.shutdown().await;
}

#[tokio::test]
async fn categories_and_tags_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let session = open_session(dir.path()).await;
    let c = Client {
        router: webapi::router(session.clone(), RpcConfig::default()),
        cookie: None,
    };
    c.ok(
        "/api/v2/torrents/createCategory",
        &[("category", "tv/hd"), ("savePath", "/srv/tv")],
    )
    .await;
    c.ok("/api/v2/torrents/createTags", &[("tags", "keep,me")])
        .await;
    session.shutdown().await;
    // The store is closed when the last handle goes.
    drop(c);
    drop(session);

    let session = open_session(dir.path()).await;
    let c = Client {
        router: webapi::router(session.clone(), RpcConfig::default()),
        cookie: None,
    };
    assert_eq!(
        c.get("/api/v2/torrents/categories").await.json(),
        json!({"tv/hd": {"name": "tv/hd", "savePath": "/srv/tv"}})
    );
    assert_eq!(
        c.get("/api/v2/torrents/tags").await.json(),
        json!(["keep", "me"])
    );
    c.ok(
        "/api/v2/torrents/editCategory",
        &[("category", "tv/hd"), ("savePath", "/srv/tv2")],
    )
    .await;
    let a = c
        .post("/api/v2/torrents/editCategory", &[("category", "nope")])
        .await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    session.shutdown().await;
}
