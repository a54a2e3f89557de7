use super::*;
use crate::Torrent;
use bencode::OwnedValue;
use proptest::prelude::*;

fn torrent(files: &[(u64, &[&str])], name: &str) -> Torrent {
    let list: Vec<OwnedValue> = files
        .iter()
        .map(|(len, path)| {
            OwnedValue::dict()
                .with("length", *len as i64)
                .with("path", OwnedValue::list(path.iter().copied()))
        })
        .collect();
    let total: u64 = files.iter().map(|f| f.0).sum();
    let pieces = total.div_ceil(16384).max(1) as usize;
    let info = OwnedValue::dict()
        .with("files", list)
        .with("name", name)
        .with("piece length", 16384i64)
        .with("pieces", vec![1u8; 20 * pieces]);
    Torrent::from_bytes(&OwnedValue::dict().with("info", info).to_bytes()).unwrap()
}

fn single(name: &str, len: i64) -> Torrent {
    let info = OwnedValue::dict()
        .with("length", len)
        .with("name", name)
        .with("piece length", 16384i64)
        .with("pieces", vec![7u8; 20 * (len as usize).div_ceil(16384)]);
    Torrent::from_bytes(&OwnedValue::dict().with("info", info).to_bytes()).unwrap()
}

#[test]
fn single_file_url_is_the_file_unless_a_folder() {
    let t = single("my file.iso", 40000);
    assert_eq!(
        file_url("http://h/pub/x.iso", &t.info, 0).unwrap(),
        "http://h/pub/x.iso"
    );
    assert_eq!(
        file_url("http://h/pub/", &t.info, 0).unwrap(),
        "http://h/pub/my%20file.iso"
    );
    assert_eq!(file_url("http://h/pub/", &t.info, 1), None);
}

#[test]
fn multi_file_urls_name_the_torrent_and_path() {
    let t = torrent(&[(5, &["a b", "c#?.txt"]), (7, &["d%"])], "top dir");
    assert_eq!(
        file_url("http://h/s/", &t.info, 0).unwrap(),
        "http://h/s/top%20dir/a%20b/c%23%3F.txt"
    );
    assert_eq!(
        file_url("http://h/s", &t.info, 1).unwrap(),
        "http://h/s/top%20dir/d%25"
    );
}

#[test]
fn segments_split_at_files_and_skip_empty_ones() {
    let t = torrent(
        &[(10, &["a"]), (0, &["empty"]), (5, &["b"]), (20, &["c"])],
        "t",
    );
    let segs = url_list_segments("http://h/", &t.info, 8, 10);
    assert_eq!(
        segs,
        vec![
            Segment::Fetch {
                url: "http://h/t/a".into(),
                start: 8,
                len: 2,
                file_len: 10
            },
            Segment::Fetch {
                url: "http://h/t/b".into(),
                start: 0,
                len: 5,
                file_len: 5
            },
            Segment::Fetch {
                url: "http://h/t/c".into(),
                start: 0,
                len: 3,
                file_len: 20
            },
        ]
    );
    // Cut at the end of the torrent.
    let segs = url_list_segments("http://h/", &t.info, 30, 100);
    assert_eq!(segs.iter().map(Segment::len).sum::<u64>(), 5);
    assert!(url_list_segments("http://h/", &t.info, 35, 1).is_empty());
}

#[test]
fn pad_files_are_zeros() {
    let files = vec![
        OwnedValue::dict()
            .with("length", 3i64)
            .with("path", OwnedValue::list(["a"])),
        OwnedValue::dict()
            .with("length", 16381i64)
            .with("attr", "p")
            .with("path", OwnedValue::list([".pad", "16381"])),
        OwnedValue::dict()
            .with("length", 4i64)
            .with("path", OwnedValue::list(["b"])),
    ];
    let info = OwnedValue::dict()
        .with("files", files)
        .with("name", "t")
        .with("piece length", 16384i64)
        .with("pieces", vec![1u8; 40]);
    let t = Torrent::from_bytes(&OwnedValue::dict().with("info", info).to_bytes()).unwrap();
    let segs = url_list_segments("http://h/", &t.info, 0, 16388);
    assert_eq!(segs.len(), 3);
    assert_eq!(segs[1], Segment::Zeros { len: 16381 });
}

#[test]
fn httpseed_query() {
    let mut h = [0u8; 20];
    h[0] = b'A';
    h[1] = 0xff;
    h[2] = b' ';
    let url = httpseed_url("http://h/seed", &InfoHash(h), 3, 16384, 16384);
    assert!(
        url.starts_with("http://h/seed?info_hash=A%FF%20%00"),
        "{url}"
    );
    assert!(url.ends_with("&piece=3&ranges=16384-32767"), "{url}");
    let url = httpseed_url("http://h/seed?x=1", &InfoHash(h), 0, 0, 1);
    assert!(url.contains("?x=1&info_hash="), "{url}");
    assert!(url.ends_with("ranges=0-0"), "{url}");
}

#[test]
fn content_range_parsing() {
    let cr = |s| parse_content_range(s);
    assert_eq!(
        cr("bytes 0-499/1234"),
        Some(ContentRange {
            first: 0,
            last: 499,
            total: Some(1234)
        })
    );
    assert_eq!(cr(" bytes 5-5/*").unwrap().total, None);
    assert_eq!(cr("bytes=1-2/3").unwrap().last, 2);
    for bad in [
        "",
        "bytes",
        "bytes 1-0/5",
        "bytes 0-5/5",
        "bytes -1-2/5",
        "bytes 0-/5",
        "bytes */5",
        "items 0-1/5",
        "bytes 0-1",
        "bytes 0-99999999999999999999/1",
        "bytes +1-2/5",
    ] {
        assert_eq!(cr(bad), None, "{bad:?}");
    }
}

#[test]
fn range_answers_are_checked_exactly() {
    let ok = check_range_answer(206, Some("bytes 10-19/100"), Some(10), 10, 10, 100);
    assert_eq!(ok, Ok(()));
    let e = |r: Result<(), String>| r.unwrap_err();
    assert!(e(check_range_answer(200, None, Some(100), 10, 10, 100)).contains("200"));
    assert!(e(check_range_answer(503, None, None, 10, 10, 100)).contains("503"));
    assert!(e(check_range_answer(206, None, None, 10, 10, 100)).contains("without"));
    assert!(e(check_range_answer(
        206,
        Some("bytes 0-9/100"),
        None,
        10,
        10,
        100
    ))
    .contains("0-9"));
    assert!(e(check_range_answer(
        206,
        Some("bytes 10-19/99"),
        None,
        10,
        10,
        100
    ))
    .contains("99"));
    assert!(e(check_range_answer(
        206,
        Some("bytes 10-19/100"),
        Some(11),
        10,
        10,
        100
    ))
    .contains("11"));
    assert!(e(check_range_answer(206, Some("junk"), None, 10, 10, 100)).contains("junk"));
}

proptest! {
    #[test]
    fn formatted_ranges_parse_back(first in 0u64..1 << 50, span in 0u64..1 << 30, extra in 1u64..1000) {
        let last = first + span;
        let total = last + extra;
        let s = format!("bytes {first}-{last}/{total}");
        prop_assert_eq!(parse_content_range(&s), Some(ContentRange { first, last, total: Some(total) }));
    }

    #[test]
    fn any_header_is_safe(s in "\\PC{0,40}") {
        if let Some(cr) = parse_content_range(&s) {
            prop_assert!(cr.first <= cr.last);
            prop_assert!(cr.total.is_none_or(|t| cr.last < t));
        }
    }

    #[test]
    fn segments_cover_the_range(sizes in proptest::collection::vec(0u64..40_000, 1..6), a in 0u64..200_000, len in 1u64..100_000) {
        let names: Vec<String> = (0..sizes.len()).map(|i| format!("f{i}")).collect();
        let files: Vec<(u64, Vec<&str>)> = sizes.iter().zip(&names).map(|(s, n)| (*s, vec![n.as_str()])).collect();
        let refs: Vec<(u64, &[&str])> = files.iter().map(|(s, p)| (*s, p.as_slice())).collect();
        prop_assume!(sizes.iter().sum::<u64>() > 0);
        let t = torrent(&refs, "t");
        let total = t.info.total_length();
        let offset = a % total;
        let segs = url_list_segments("http://h/", &t.info, offset, len);
        let want = len.min(total - offset);
        prop_assert_eq!(segs.iter().map(Segment::len).sum::<u64>(), want);
        for s in &segs {
            prop_assert!(!s.is_empty());
            if let Segment::Fetch { start, len, file_len, .. } = s {
                prop_assert!(start + len <= *file_len);
            }
        }
    }
}
