//! Index files written before BM25 and the sparse index shared one posting-list
//! module (tests/fixtures/postings_v1, made by make.py there at commit ae1799f)
//! still load, and every search gives the very hits and f32 scores it gave then.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use densparse_core::bm25::{Bm25Index, SearchOpts};
use densparse_core::mask::DocMask;
use densparse_core::sparse::{SearchOptions, SparseIndex, SparseVec};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/postings_v1")
}

/// (name, query, masked) -> [(id, score bits)] from expected.txt.
type Expected = BTreeMap<(String, usize, bool), Vec<(i64, u32)>>;

fn expected() -> Expected {
    let text = std::fs::read_to_string(fixtures().join("expected.txt")).unwrap();
    let mut out = Expected::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let key = (f[0].to_string(), f[1].parse().unwrap(), f[2] == "1");
        let hits = out.entry(key).or_default();
        assert_eq!(hits.len(), f[3].parse::<usize>().unwrap());
        hits.push((f[4].parse().unwrap(), u32::from_str_radix(f[5], 16).unwrap()));
    }
    out
}

/// Queries from queries.txt: "bm25 i tok tok ..." and "sparse i term:f32bits ..." (`kind` with its space).
fn queries(kind: &str) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(fixtures().join("queries.txt")).unwrap();
    text.lines()
        .filter_map(|l| {
            l.strip_prefix(kind)
                .map(|r| r.split(' ').skip(1).map(String::from).collect())
        })
        .collect()
}

fn bits(hits: &[(i64, f32)]) -> Vec<(i64, u32)> {
    hits.iter().map(|&(i, s)| (i, s.to_bits())).collect()
}

#[test]
fn bm25_v1_file_gives_the_same_hits() {
    let want = expected();
    for mmap in [false, true] {
        let idx = Bm25Index::load(&fixtures().join("bm25.idx"), mmap).unwrap();
        let mask: Vec<u8> = (0..idx.n_docs()).map(|d| (d % 3 != 0) as u8).collect();
        let qs = queries("bm25 ");
        assert_eq!(qs.len(), 12);
        for (qi, toks) in qs.iter().enumerate() {
            let q = idx.query(toks);
            for masked in [false, true] {
                let opts = SearchOpts {
                    mask: masked.then(|| DocMask::new(&mask)),
                    stats: None,
                };
                let got = idx.search_opts(&q, 10, &opts).unwrap();
                let got: Vec<(i64, f32)> = got.into_iter().map(|(d, s)| (d as i64, s)).collect();
                assert_eq!(
                    bits(&got),
                    want[&("bm25".to_string(), qi, masked)],
                    "query {qi} masked {masked}"
                );
            }
        }
    }
}

#[test]
fn sparse_v1_files_give_the_same_hits() {
    let want = expected();
    let qs: Vec<SparseVec> = queries("sparse ")
        .iter()
        .map(|q| {
            let mut pairs: Vec<(u32, f32)> = q
                .iter()
                .map(|p| {
                    let (t, w) = p.split_once(':').unwrap();
                    (t.parse().unwrap(), f32::from_bits(u32::from_str_radix(w, 16).unwrap()))
                })
                .collect();
            pairs.sort_by_key(|p| p.0);
            pairs.into_iter().unzip()
        })
        .collect();
    assert_eq!(qs.len(), 12);
    let mask: Vec<u8> = (0..1000).map(|i| (i % 4 != 1) as u8).collect();
    for dtype in ["float32", "float16", "uint8"] {
        let name = format!("sparse_{dtype}");
        for mmap in [false, true] {
            let mut idx = SparseIndex::load(&fixtures().join(format!("{name}.idx")), mmap).unwrap();
            assert_eq!(idx.dtype().name(), dtype);
            // Both strategies: MaxScore over every segment, then term at a time.
            for dense_rows in [0, usize::MAX] {
                idx.set_dense_rows(dense_rows);
                for (qi, q) in qs.iter().enumerate() {
                    for masked in [false, true] {
                        let opts = SearchOptions {
                            k: 10,
                            ..Default::default()
                        };
                        let got = idx.search(q, &opts, masked.then(|| DocMask::new(&mask))).unwrap();
                        assert_eq!(
                            bits(&got),
                            want[&(name.clone(), qi, masked)],
                            "{name} query {qi} masked {masked}"
                        );
                    }
                }
            }
            // Saved again (the current format) and loaded: still the same.
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("again.idx");
            idx.save(&p).unwrap();
            let again = SparseIndex::load(&p, mmap).unwrap();
            for (qi, q) in qs.iter().enumerate() {
                let opts = SearchOptions {
                    k: 10,
                    ..Default::default()
                };
                assert_eq!(
                    bits(&again.search(q, &opts, None).unwrap()),
                    want[&(name.clone(), qi, false)]
                );
            }
        }
    }
}
