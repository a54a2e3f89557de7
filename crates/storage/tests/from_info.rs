//! A parsed `.torrent` drives the storage: `Layout::from_info(&torrent.info)`.

use metainfo::Torrent;
use storage::{sha1, Layout, OpenOptions, Storage};

fn bstr(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(format!("{}:", s.len()).as_bytes());
    out.extend_from_slice(s);
}

fn file(out: &mut Vec<u8>, len: usize, path: &[&str], pad: bool) {
    out.push(b'd');
    if pad {
        bstr(out, b"attr");
        bstr(out, b"p");
    }
    out.extend_from_slice(format!("6:lengthi{len}e4:pathl").as_bytes());
    for c in path {
        bstr(out, c.as_bytes());
    }
    out.extend_from_slice(b"ee");
}

#[test]
fn storage_from_a_parsed_torrent() {
    let plen = 4096;
    // a.bin (5000), a zero-length file, a pad file up to the next piece, sub/b.bin (9000).
    let mut data = common_data(5000 + 3192 + 9000);
    data[5000..8192].fill(0);
    let pieces: Vec<u8> = data.chunks(plen).flat_map(sha1).collect();
    let mut t = b"d4:infod5:filesl".to_vec();
    file(&mut t, 5000, &["a.bin"], false);
    file(&mut t, 0, &["empty"], false);
    file(&mut t, 3192, &[".pad", "3192"], true);
    file(&mut t, 9000, &["sub", "b.bin"], false);
    t.extend_from_slice(b"e4:name4:demo12:piece lengthi4096e6:pieces");
    bstr(&mut t, &pieces);
    t.extend_from_slice(b"ee");
    let torrent = Torrent::from_bytes(&t).unwrap();
    let layout = Layout::from_info(&torrent.info).unwrap();
    assert_eq!(Layout::try_from(&torrent.info).unwrap(), layout);
    assert_eq!(layout.files().len(), 4);
    for (f, e) in layout.files().iter().zip(&torrent.info.files) {
        assert_eq!(
            (&f.path, f.length, f.offset, f.pad),
            (&e.path, e.length, e.offset, e.pad)
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path(), layout, OpenOptions::default()).unwrap();
    assert!(dir.path().join("demo/a.bin").is_file());
    assert!(dir.path().join("demo/empty").is_file());
    assert!(dir.path().join("demo/sub/b.bin").is_file());
    assert!(!dir.path().join("demo/.pad").exists());
    for (p, chunk) in data.chunks(plen).enumerate() {
        s.write_piece(p as u32, chunk).unwrap();
    }
    assert!(s.recheck(&mut |_, _| ()).unwrap().is_full());
    assert_eq!(
        std::fs::read(dir.path().join("demo/sub/b.bin")).unwrap(),
        &data[8192..]
    );
}

fn common_data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// A v2-only torrent (made by `metainfo::create_torrent_as`): the storage writes its files
/// without the virtual pads, a re-check verifies every piece with the v2 hashes, and a
/// changed byte loses exactly its piece. A v2 file placed off its piece is refused.
#[test]
fn v2_only_storage_rechecks_with_merkle_hashes() {
    use metainfo::{create_torrent_as, CreateOptions, TorrentFormat};
    let src = tempfile::tempdir().unwrap();
    let root = src.path().join("v2demo");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("a.bin"), common_data(50_000)).unwrap();
    std::fs::write(root.join("empty"), b"").unwrap();
    std::fs::write(root.join("sub/b.bin"), common_data(70_001)).unwrap();
    let opts = CreateOptions {
        path: root.clone(),
        piece_length: Some(32768),
        ..CreateOptions::default()
    };
    let (_, t) = create_torrent_as(&opts, TorrentFormat::V2, &mut |_, _| {}).unwrap();
    assert!(!t.info.has_v1());
    let layout = Layout::from_info(&t.info).unwrap();
    let n = layout.num_pieces();
    assert!(layout.piece_hash(0).is_none());

    // The files as they are, in the download folder: every piece verifies.
    let s = Storage::open(src.path(), layout.clone(), OpenOptions::default()).unwrap();
    let have = s.recheck(&mut |_, _| {}).unwrap();
    assert_eq!(have.count_ones(), n);
    // Pad files are never created.
    assert!(!root.join(".pad").exists());

    // One byte changed in b.bin: only its piece is lost.
    let mut b = common_data(70_001);
    b[40_000] ^= 0xff;
    std::fs::write(root.join("sub/b.bin"), &b).unwrap();
    let have = s.recheck(&mut |_, _| {}).unwrap();
    assert_eq!(have.count_ones(), n - 1);
    let bad = (0..n).find(|&p| !have.get(p)).unwrap();
    // b.bin starts on piece 2 (a.bin takes pieces 0 and 1); byte 40,000 is in its 2nd.
    assert_eq!(bad, 3);

    // A V2Info that does not sit where the layout puts its file is refused.
    let mut info = t.info.clone();
    info.v2.as_mut().unwrap().files[1].first_piece += 1;
    let e = Layout::from_info(&info).unwrap_err().to_string();
    assert!(e.contains("v2 file"), "{e}");
}
