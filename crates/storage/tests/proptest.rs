mod common;

use proptest::prelude::*;
use storage::{OpenOptions, Storage};

/// (length, is pad) per file.
fn files() -> impl Strategy<Value = Vec<(u64, bool)>> {
    prop::collection::vec(
        (
            prop_oneof![Just(0u64), 1u64..3000],
            prop::bool::weighted(0.15),
        ),
        1..8,
    )
    .prop_filter("non-empty torrent", |v| v.iter().any(|(l, _)| *l > 0))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn write_all_pieces_then_read_random_ranges(
        files in files(),
        piece_length in 1u64..5000,
        seed in any::<u64>(),
        ranges in prop::collection::vec((any::<u32>(), any::<u32>(), any::<u32>()), 1..20),
    ) {
        let named: Vec<(String, u64)> = files
            .iter()
            .enumerate()
            .map(|(i, (len, pad))| {
                let path = if *pad { format!(".pad/{i}") } else { format!("t/d{}/f{i}", i % 3) };
                (path, *len)
            })
            .collect();
        let spec: Vec<(&str, u64)> = named.iter().map(|(p, l)| (p.as_str(), *l)).collect();
        let (layout, reference) = common::layout(&spec, piece_length, seed);
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path(), layout, OpenOptions::default()).unwrap();
        let l = *s.layout().lengths();
        for p in 0..l.num_pieces() {
            s.write_piece(p, common::piece(s.layout(), &reference, p)).unwrap();
        }
        for (p, b, n) in ranges {
            let piece = p % l.num_pieces();
            let plen = l.piece_len(piece);
            let begin = b % plen;
            let len = 1 + n % (plen - begin);
            let mut buf = vec![0xAAu8; len as usize];
            s.read(piece, begin, &mut buf).unwrap();
            let start = (l.piece_offset(piece) + begin as u64) as usize;
            prop_assert_eq!(&buf[..], &reference[start..start + len as usize]);
        }
        let have = s.recheck(&mut |_, _| ()).unwrap();
        prop_assert!(have.is_full());
        // Every non-pad file holds exactly its part of the reference.
        for (i, f) in s.files().iter().enumerate() {
            if !f.pad {
                let on_disk = std::fs::read(s.file_path(i).unwrap()).unwrap();
                prop_assert_eq!(&on_disk[..], &reference[f.range().start as usize..f.range().end as usize]);
            }
        }
    }
}
