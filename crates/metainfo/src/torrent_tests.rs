use super::*;
use bencode::OwnedValue;

fn single(info_extra: &[(&str, OwnedValue)]) -> OwnedValue {
    let mut info = OwnedValue::dict()
        .with("length", 40000i64)
        .with("name", "file.bin")
        .with("piece length", 16384i64)
        .with("pieces", vec![7u8; 60]);
    for (k, v) in info_extra {
        info.insert(k, v.clone());
    }
    OwnedValue::dict().with("info", info)
}

fn multi(files: Vec<OwnedValue>, pieces: usize) -> OwnedValue {
    let info = OwnedValue::dict()
        .with("files", files)
        .with("name", "dir")
        .with("piece length", 16384i64)
        .with("pieces", vec![1u8; 20 * pieces]);
    OwnedValue::dict().with("info", info)
}

fn file(len: i64, path: &[&str]) -> OwnedValue {
    OwnedValue::dict()
        .with("length", len)
        .with("path", OwnedValue::list(path.iter().copied()))
}

fn parse(v: &OwnedValue) -> Result<Torrent, MetainfoError> {
    Torrent::from_bytes(&v.to_bytes())
}

fn err_of(v: &OwnedValue) -> String {
    parse(v).unwrap_err().to_string()
}

#[test]
fn single_file() {
    let v = single(&[])
        .with("announce", " http://t/a ")
        .with("comment", "hi");
    let t = parse(&v).unwrap();
    assert_eq!(t.info.name, "file.bin");
    assert!(!t.info.multi_file && !t.info.private);
    assert_eq!(t.info.files.len(), 1);
    assert_eq!(t.info.files[0].path, ["file.bin"]);
    assert_eq!(t.info.num_pieces(), 3);
    assert_eq!(t.info.piece_hash(2), Some(&[7u8; 20]));
    assert_eq!(t.info.piece_hash(3), None);
    assert_eq!(t.announce.as_deref(), Some("http://t/a"));
    assert_eq!(t.tracker_tiers(), vec![vec!["http://t/a".to_string()]]);
    assert_eq!(t.comment.as_deref(), Some("hi"));
    let info_bytes = v.get("info").unwrap().to_bytes();
    assert_eq!(t.info_bytes, info_bytes);
    assert_eq!(t.info_hash, info_hash_of(&info_bytes));
    assert_eq!(Info::from_bytes(&info_bytes).unwrap(), t.info);
    assert_eq!(Torrent::from_info_bytes(&info_bytes).unwrap().info, t.info);
    let m = Magnet::parse(&t.magnet_link()).unwrap();
    assert_eq!(m.info_hash, t.info_hash);
    assert_eq!(m.display_name.as_deref(), Some("file.bin"));
    assert_eq!(m.trackers, ["http://t/a"]);
}

#[test]
fn multi_file_offsets_and_pads() {
    let pad = OwnedValue::dict()
        .with("attr", "p")
        .with("length", 16384 - 100i64)
        .with("path", OwnedValue::list([".pad", "16284"]));
    let v = multi(vec![file(100, &["a", "b.txt"]), pad, file(5000, &["c"])], 2);
    let t = parse(&v).unwrap();
    assert!(t.info.multi_file);
    let f = &t.info.files;
    assert_eq!(f[0].path, ["dir", "a", "b.txt"]);
    assert_eq!((f[1].offset, f[1].pad), (100, true));
    assert_eq!((f[2].offset, f[2].length, f[2].pad), (16384, 5000, false));
    assert_eq!(t.info.total_length(), 16384 + 5000);
}

#[test]
fn announce_list_and_url_list() {
    let v = single(&[])
        .with("announce", "http://a")
        .with(
            "announce-list",
            OwnedValue::list([
                OwnedValue::list(["http://a", " udp://b "]),
                OwnedValue::list([""]),
                OwnedValue::Int(3),
                OwnedValue::list(["udp://b", "http://c"]),
            ]),
        )
        .with(
            "url-list",
            OwnedValue::list([
                OwnedValue::from("http://w/x y"),
                OwnedValue::from("http://w/x y"),
                OwnedValue::Int(-20),
                OwnedValue::from(""),
            ]),
        );
    let t = parse(&v).unwrap();
    assert_eq!(
        t.announce_list,
        vec![vec!["http://a", "udp://b"], vec!["http://c"]]
    );
    assert_eq!(t.tracker_tiers(), t.announce_list);
    assert_eq!(t.url_list, ["http://w/x%20y"]);
    assert!(t.httpseeds.is_empty());
}

#[test]
fn httpseeds_are_parsed_like_url_list() {
    let v = single(&[]).with(
        "httpseeds",
        OwnedValue::list([
            OwnedValue::from(" http://h/seed.php "),
            OwnedValue::from("http://h/seed.php"),
            OwnedValue::Int(1),
        ]),
    );
    let t = parse(&v).unwrap();
    assert_eq!(t.httpseeds, ["http://h/seed.php"]);
    let v = single(&[]).with("httpseeds", "http://h/x y");
    assert_eq!(parse(&v).unwrap().httpseeds, ["http://h/x%20y"]);
}

#[test]
fn field_errors_are_one_line_and_named() {
    let cases: Vec<(OwnedValue, &str)> = vec![
        (
            single(&[("pieces", vec![0u8; 41].into())]),
            "info.pieces: length 41 is not a multiple of 20",
        ),
        (
            single(&[("pieces", vec![0u8; 40].into())]),
            "info.pieces: 2 hashes for 3 pieces",
        ),
        (
            single(&[("piece length", OwnedValue::Int(1 << 40))]),
            "info.piece length: 1099511627776 is larger than 2^31",
        ),
        (
            single(&[("piece length", OwnedValue::Int(0))]),
            "info.piece length: 0 is not positive",
        ),
        (
            single(&[("piece length", "16384".into())]),
            "info.piece length: expected int, found string",
        ),
        (
            single(&[("length", OwnedValue::Int(-1))]),
            "info.length: -1 is negative",
        ),
        (
            single(&[
                ("length", OwnedValue::Int(0)),
                ("pieces", OwnedValue::Bytes(vec![])),
            ]),
            "info: total length is zero",
        ),
        (
            single(&[("length", OwnedValue::Int(1 << 40))]),
            "info: 67108864 pieces, more than the limit of 2097152",
        ),
        (
            single(&[("name", OwnedValue::Int(1))]),
            "info.name: expected string, found int",
        ),
        (OwnedValue::dict(), "info: missing"),
        (
            single(&[("meta version", 2i64.into())]).with(
                "info",
                OwnedValue::dict()
                    .with("meta version", 2i64)
                    .with("name", "x")
                    .with("piece length", 16384i64),
            ),
            "info.file tree: missing",
        ),
        (multi(vec![], 0), "info.files: no files"),
        (
            multi(vec![OwnedValue::dict().with("length", 5i64)], 1),
            "info.files[0].path: missing",
        ),
        (
            multi(
                vec![OwnedValue::dict()
                    .with("length", 5i64)
                    .with("path", OwnedValue::list([OwnedValue::Int(1)]))],
                1,
            ),
            "info.files[0].path: expected list of strings, found int",
        ),
    ];
    for (v, want) in cases {
        assert_eq!(err_of(&v), want);
    }
    assert_eq!(
        Torrent::from_bytes(b"i1e").unwrap_err().to_string(),
        "torrent: expected dict, found int"
    );
    assert!(Torrent::from_bytes(b"d4:info")
        .unwrap_err()
        .to_string()
        .starts_with("torrent: invalid bencode: truncated input"));
}

#[test]
fn traversal_is_neutralised() {
    let v = multi(
        vec![
            file(1, &["..", "..", "etc", "passwd"]),
            file(1, &["/abs"]),
            file(1, &["C:\\x"]),
            file(1, &["a/../../b"]),
            file(1, &["", "."]),
        ],
        1,
    );
    let t = parse(&v).unwrap();
    let paths: Vec<String> = t.info.files.iter().map(|f| f.path.join("/")).collect();
    assert_eq!(
        paths,
        // `dir/_/_` is a directory already, so the last file is renamed.
        [
            "dir/_/_/etc/passwd",
            "dir/abs",
            "dir/C:x",
            "dir/a....b",
            "dir/_/_.1"
        ]
    );
    for f in &t.info.files {
        assert!(f.path.iter().all(|c| crate::sanitize::is_safe_component(c)));
    }
}

#[test]
fn duplicates_renamed_and_name_fallback() {
    let mut v = multi(vec![file(1, &["x.txt"]), file(1, &["X.txt"])], 1);
    if let OwnedValue::Dict(top) = &mut v {
        if let Some(info) = top.get_mut(&b"info"[..]) {
            info.insert("name", "..");
        }
    }
    let t = parse(&v).unwrap();
    let hex = t.info_hash.to_hex();
    assert_eq!(t.info.name, hex);
    assert_eq!(t.info.files[1].path, [hex.as_str(), "X.1.txt"]);
}

#[test]
fn utf8_variants_preferred() {
    let v = multi(
        vec![file(1, &["raw"]).with("path.utf-8", OwnedValue::list(["nice"]))],
        1,
    );
    let mut v = v;
    if let OwnedValue::Dict(top) = &mut v {
        if let Some(info) = top.get_mut(&b"info"[..]) {
            info.insert("name.utf-8", "Nice Dir");
        }
    }
    let t = parse(&v).unwrap();
    assert_eq!(t.info.files[0].path, ["Nice Dir", "nice"]);
}

#[test]
fn private_flag() {
    assert!(
        parse(&single(&[("private", 1i64.into())]))
            .unwrap()
            .info
            .private
    );
    assert!(
        !parse(&single(&[("private", 0i64.into())]))
            .unwrap()
            .info
            .private
    );
}

proptest::proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
        let _ = Torrent::from_bytes(&data);
        let _ = Info::from_bytes(&data);
    }

    #[test]
    fn mutated_torrents_never_panic(
        flips in proptest::collection::vec((0usize..400, proptest::prelude::any::<u8>()), 1..6)
    ) {
        let v = multi(vec![file(100, &["a", "b"]), file(20000, &["c"])], 2)
            .with("announce", "http://x");
        let mut bytes = v.to_bytes();
        for (pos, b) in flips {
            let n = bytes.len();
            bytes[pos % n] = b;
        }
        if let Ok(t) = Torrent::from_bytes(&bytes) {
            let total: u64 = t.info.files.iter().map(|f| f.length).sum();
            proptest::prop_assert_eq!(total, t.info.total_length());
        }
    }
}

#[test]
fn nul_in_names_is_refused() {
    assert_eq!(
        err_of(&single(&[("name", "a\0b".into())])),
        "info.name: contains a NUL byte"
    );
    assert_eq!(
        err_of(&multi(vec![file(1, &["ok", "x\0"])], 1)),
        "info.files[0].path: contains a NUL byte"
    );
}
