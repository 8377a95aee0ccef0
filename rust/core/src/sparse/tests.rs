use super::*;
use crate::mask::DocMask;
use crate::test_rng::Lcg;

/// Random documents; `dyadic` weights are multiples of 1/8 (exact sums, many ties).
fn docs(n: usize, vocab: u64, seed: u64, dyadic: bool) -> Vec<SparseVec> {
    let mut r = Lcg(seed);
    (0..n)
        .map(|_| {
            let len = r.next() % 40;
            let mut m = std::collections::BTreeMap::new();
            for _ in 0..len {
                let t = r.zipf(vocab) as u32;
                let w = if dyadic {
                    (1 + r.next() % 4) as f32 / 8.0
                } else {
                    0.01 + r.unit() * 3.0
                };
                m.insert(t, w);
            }
            m.into_iter().unzip()
        })
        .collect()
}

fn check_equal(idx: &mut SparseIndex, queries: &[SparseVec], opts: &SearchOptions, mask: Option<DocMask>) {
    // Both strategies: MaxScore everywhere, then term at a time everywhere.
    for dense_rows in [0, usize::MAX] {
        idx.set_dense_rows(dense_rows);
        for q in queries {
            let a = idx.search(q, opts, mask).unwrap();
            let b = idx.search_exhaustive(q, opts, mask).unwrap();
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(&b) {
                // (Padding is -inf in both.)
                assert!(
                    x.1 == y.1 || (x.1 - y.1).abs() <= 1e-6 * y.1.abs().max(1.0),
                    "{a:?} vs {b:?}"
                );
            }
            let ai: Vec<i64> = a.iter().map(|h| h.0).collect();
            let bi: Vec<i64> = b.iter().map(|h| h.0).collect();
            assert_eq!(ai, bi, "query {q:?}");
        }
    }
    idx.set_dense_rows(search::DENSE_ROWS);
    check_batch(idx, queries, opts, mask);
}

/// A batch returns the per-query hits: same ids in the same order. With every
/// segment small a large batch takes the shared path (groups of queries, row
/// ranges split over threads; scores within 1e-6); with large segments
/// (forced: `dense_rows` 0) each query runs the MaxScore path as a task of its
/// own, and the scores are bit for bit the per-query ones.
fn check_batch(idx: &mut SparseIndex, queries: &[SparseVec], opts: &SearchOptions, mask: Option<DocMask>) {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
    for dense_rows in [search::DENSE_ROWS, 0] {
        idx.set_dense_rows(dense_rows);
        // Batch sizes below, at and above the shared path's minimum and one group.
        for n in [batch::BATCH_MIN - 1, batch::BATCH_MIN, 65, 150] {
            let qs = &queries[..n.min(queries.len())];
            let one: Vec<Hits> = qs.iter().map(|q| idx.search(q, opts, mask).unwrap()).collect();
            for (p, shared) in [(None, true), (Some(&pool), true), (Some(&pool), false)] {
                idx.set_shared_batches(shared);
                let got = idx.search_batch(qs, opts, mask, p).unwrap();
                idx.set_shared_batches(true);
                assert_eq!(got.len(), one.len());
                for (a, b) in got.iter().zip(&one) {
                    let ai: Vec<i64> = a.iter().map(|h| h.0).collect();
                    let bi: Vec<i64> = b.iter().map(|h| h.0).collect();
                    assert_eq!(ai, bi);
                    for (x, y) in a.iter().zip(b) {
                        if dense_rows == 0 {
                            assert_eq!(x.1.to_bits(), y.1.to_bits(), "{a:?} vs {b:?}");
                        } else {
                            assert!(
                                x.1 == y.1 || (x.1 - y.1).abs() <= 1e-6 * y.1.abs().max(1.0),
                                "{a:?} vs {b:?}"
                            );
                        }
                    }
                }
            }
        }
    }
    idx.set_dense_rows(search::DENSE_ROWS);
}

/// Queries whose terms match fewer documents than k (rare terms, empty
/// queries, terms no document has), on one large segment and on several:
/// the MaxScore path pads like the exhaustive one, and batches agree.
#[test]
fn few_matches_and_empty_queries_maxscore() {
    let d = docs(4000, 5000, 7, false);
    let mut qs: Vec<SparseVec> = vec![(vec![], vec![]), (vec![999_999], vec![1.0])];
    let mut r = Lcg(77);
    for _ in 0..70 {
        // Two rare terms (high ids are rare under the Zipf law) and maybe a common one.
        let mut t = vec![4000 + (r.next() % 1000) as u32, 4000 + (r.next() % 1000) as u32];
        if r.next().is_multiple_of(2) {
            t.push((r.next() % 5) as u32);
        }
        t.sort_unstable();
        t.dedup();
        let w = t.iter().map(|_| 0.1 + r.unit()).collect();
        qs.push((t, w));
    }
    for split in [false, true] {
        let mut idx = SparseIndex::new(Dtype::F32, None).unwrap();
        if split {
            idx.add_rows(d[..3000].to_vec(), None).unwrap();
            idx.add_rows(d[3000..].to_vec(), None).unwrap();
        } else {
            idx.add_rows(d.clone(), None).unwrap();
        }
        idx.remove(&[0, 5, 17]).unwrap();
        for k in [3, 50, 4500] {
            let opts = SearchOptions {
                k,
                ..Default::default()
            };
            check_equal(&mut idx, &qs, &opts, None);
            let mask: Vec<u8> = (0..4000).map(|i| (i % 4 != 1) as u8).collect();
            check_equal(&mut idx, &qs, &opts, Some(DocMask::new(&mask)));
        }
    }
}

#[test]
fn pruned_equals_exhaustive_all_dtypes() {
    for dyadic in [false, true] {
        for dtype in [Dtype::F32, Dtype::F16, Dtype::U8] {
            let mut idx = SparseIndex::new(dtype, None).unwrap();
            let d = docs(5000, 3000, 3, dyadic);
            // Several adds (segments and merges), some with shuffled ids.
            idx.add_rows(d[..2000].to_vec(), None).unwrap();
            idx.add_rows(d[2000..2600].to_vec(), None).unwrap();
            let ids: Vec<i64> = (0..2400).map(|i| 100_000 - i as i64 * 3).collect();
            idx.add_rows(d[2600..].to_vec(), Some(&ids)).unwrap();
            let qs = docs(150, 3000, 11, dyadic);
            for k in [1, 10, 100] {
                check_equal(
                    &mut idx,
                    &qs,
                    &SearchOptions {
                        k,
                        ..Default::default()
                    },
                    None,
                );
            }
            let rm: Vec<i64> = (0..500).map(|i| i * 3).collect();
            idx.remove(&rm).unwrap();
            check_equal(
                &mut idx,
                &qs,
                &SearchOptions {
                    k: 10,
                    ..Default::default()
                },
                None,
            );
            let mask: Vec<u8> = (0..60_000).map(|i| (i % 3 != 0) as u8).collect();
            check_equal(
                &mut idx,
                &qs,
                &SearchOptions {
                    k: 10,
                    ..Default::default()
                },
                Some(DocMask::new(&mask)),
            );
            idx.compact();
            check_equal(
                &mut idx,
                &qs,
                &SearchOptions {
                    k: 10,
                    ..Default::default()
                },
                Some(DocMask::new(&mask)),
            );
        }
    }
}

#[test]
fn ties_with_shuffled_ids_many_seeds() {
    // Dyadic and quantised weights give many exact ties; ids in no particular
    // order exercise the tie margin of the pruning.
    for seed in 0..6u64 {
        for dtype in [Dtype::F32, Dtype::U8] {
            let mut idx = SparseIndex::new(dtype, None).unwrap();
            let d = docs(3000, 300, 100 + seed, seed % 2 == 0);
            let mut r = Lcg(seed);
            let mut ids: Vec<i64> = (0..3000).collect();
            for i in (1..ids.len()).rev() {
                ids.swap(i, (r.next() % (i as u64 + 1)) as usize);
            }
            idx.add_rows(d, Some(&ids)).unwrap();
            let qs = docs(60, 300, 200 + seed, seed % 2 == 0);
            for k in [1, 5, 37] {
                check_equal(
                    &mut idx,
                    &qs,
                    &SearchOptions {
                        k,
                        ..Default::default()
                    },
                    None,
                );
            }
        }
    }
}

#[test]
fn fill_and_padding() {
    let mut idx = SparseIndex::new(Dtype::F32, None).unwrap();
    let d: Vec<SparseVec> = vec![
        (vec![1], vec![1.0]),
        (vec![2], vec![2.0]),
        (vec![], vec![]),
        (vec![1, 2], vec![0.5, 0.5]),
    ];
    idx.add_rows(d, None).unwrap();
    let q = (vec![2], vec![1.0]);
    let h = idx
        .search(
            &q,
            &SearchOptions {
                k: 10,
                ..Default::default()
            },
            None,
        )
        .unwrap();
    assert_eq!(h, vec![(1, 2.0), (3, 0.5), (0, 0.0), (2, 0.0)]);
    let mask = [1u8, 0, 1];
    let h = idx
        .search(
            &q,
            &SearchOptions {
                k: 10,
                ..Default::default()
            },
            Some(DocMask::new(&mask)),
        )
        .unwrap();
    assert_eq!(
        h,
        vec![(0, 0.0), (2, 0.0), (-1, f32::NEG_INFINITY), (-1, f32::NEG_INFINITY)]
    );
}

#[test]
fn save_load_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s.idx");
    let mut idx = SparseIndex::new(Dtype::U8, Some(20)).unwrap();
    idx.add_rows(docs(3000, 500, 5, false), None).unwrap();
    idx.add_rows(docs(100, 500, 6, false), None).unwrap();
    idx.remove(&[5, 7, 9]).unwrap();
    idx.save(&p).unwrap();
    let qs = docs(50, 500, 8, false);
    let o = SearchOptions {
        k: 10,
        ..Default::default()
    };
    for mmap in [false, true] {
        let l = SparseIndex::load(&p, mmap).unwrap();
        assert_eq!(l.len(), idx.len());
        for q in &qs {
            assert_eq!(l.search(q, &o, None).unwrap(), idx.search(q, &o, None).unwrap());
        }
    }
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 5]).unwrap();
    assert!(matches!(SparseIndex::load(&p, true), Err(Error::Corrupt { .. })));
}

#[test]
fn automatic_ids_stop_at_i64_max() {
    let mut idx = SparseIndex::new(Dtype::F32, None).unwrap();
    let v: SparseVec = (vec![1], vec![1.0]);
    idx.add_rows(vec![v.clone()], Some(&[i64::MAX])).unwrap();
    let err = idx.add_rows(vec![v], None).unwrap_err().to_string();
    assert!(err.contains("2**63 - 1"), "{err}");
    assert_eq!(idx.len(), 1);
}

/// Scores that round to subnormal float32 (spaced wider than the pruning
/// margin) and ties among them: MaxScore prunes nothing there and still
/// returns the exhaustive hits.
#[test]
fn subnormal_scores_maxscore() {
    let scale = |v: Vec<SparseVec>, s: f32| -> Vec<SparseVec> {
        v.into_iter()
            .map(|(t, w)| (t, w.into_iter().map(|x| x * s).collect()))
            .collect()
    };
    let d = scale(docs(3000, 400, 21, true), 1e-22);
    let qs = scale(docs(60, 400, 22, true), 1e-22);
    let mut idx = SparseIndex::new(Dtype::F32, None).unwrap();
    idx.add_rows(d, None).unwrap();
    for k in [1, 10] {
        let opts = SearchOptions {
            k,
            ..Default::default()
        };
        check_equal(&mut idx, &qs, &opts, None);
    }
}
