use super::*;
use crate::mask::DocMask;
use crate::test_rng::Lcg;
use crate::topk::top_k_dense;

fn corpus(n: usize, vocab: u64, seed: u64) -> Vec<Vec<String>> {
    let mut r = Lcg(seed);
    (0..n)
        .map(|_| {
            let len = 1 + r.next() % 60;
            (0..len).map(|_| format!("t{}", r.zipf(vocab))).collect()
        })
        .collect()
}

fn build(docs: &[Vec<String>], method: Method) -> Bm25Index {
    let params = Params {
        method,
        ..Params::default()
    };
    Bm25Index::build(
        params,
        docs.len(),
        |i, emit| docs[i].iter().for_each(|t| emit(t)),
        &|_| {},
    )
    .unwrap()
}

#[test]
fn pruned_search_equals_exhaustive() {
    let docs = corpus(3000, 2000, 7);
    for method in [
        Method::Lucene,
        Method::Robertson,
        Method::Atire,
        Method::Bm25L,
        Method::Bm25Plus,
    ] {
        let idx = build(&docs, method);
        let mut r = Lcg(99);
        for qi in 0..200 {
            let ql = 1 + r.next() % 8;
            let q: Vec<String> = (0..ql).map(|_| format!("t{}", r.zipf(2500))).collect();
            let q = idx.query(&q);
            for (k, strategy) in [1, 10, 100, 5000].into_iter().flat_map(|k| [(k, 0), (k, 1), (k, 2)]) {
                let got = match strategy {
                    0 => idx.search(&q, k),
                    1 => idx.search_maxscore(&q, k),
                    _ => idx.search_dense(&q, k),
                };
                let want = top_k_dense(&idx.get_scores(&q), k);
                assert_eq!(got.len(), want.len());
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (g.1 - w.1).abs() <= 1e-5 * w.1.abs().max(1.0),
                        "{method:?} q{qi} k{k}: {g:?} vs {w:?}"
                    );
                }
                // Ids agree except among scores equal to float precision
                // (sums taken in another order may round apart by one ulp).
                let exhaustive = idx.get_scores(&q);
                for (g, w) in got.iter().zip(&want) {
                    if g.0 != w.0 {
                        assert!(
                            (g.1 - w.1).abs() <= 1e-6 * w.1.abs(),
                            "{method:?} q{qi} k{k}: {g:?} vs {w:?}"
                        );
                    }
                    assert!((exhaustive[g.0 as usize] - g.1).abs() <= 1e-6 * g.1.abs().max(1e-6));
                }
                let mut ids: Vec<u32> = got.iter().map(|h| h.0).collect();
                ids.sort_unstable();
                ids.dedup();
                assert_eq!(ids.len(), got.len());
            }
        }
    }
}

/// Small corpora: the chunked scan returns exactly the exhaustive top k, ties
/// by id included. Documents repeat a few templates, so equal scores straddle
/// chunks; k runs past the number of chunks; unknown-only queries score every
/// document alike (zero, or the BM25L/BM25+ constant).
#[test]
fn small_corpus_scan_equals_exhaustive_with_ties() {
    let templates = corpus(40, 300, 5);
    let mut r = Lcg(17);
    let docs: Vec<Vec<String>> = (0..1234).map(|_| templates[(r.next() % 40) as usize].clone()).collect();
    for method in METHODS {
        let idx = build(&docs, method);
        for qi in 0..60 {
            let ql = 1 + r.next() % 5;
            let mut q: Vec<String> = (0..ql).map(|_| format!("t{}", r.zipf(400))).collect();
            if qi % 10 == 0 {
                q = vec!["never-seen".to_string()];
            }
            let q = idx.query(&q);
            let scores = idx.get_scores(&q);
            for k in [1, 3, 16, 17, 77, 78, 200, 1234] {
                let want = top_k_dense(&scores, k);
                let got = idx.search(&q, k);
                assert_eq!(got, want, "{method:?} q{qi} k{k}");
            }
        }
    }
}

#[test]
fn save_load_round_trip() {
    let docs = corpus(500, 300, 3);
    let idx = build(&docs, Method::Bm25Plus);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("i.bm25");
    idx.save(&p).unwrap();
    for mmap in [false, true] {
        let l = Bm25Index::load(&p, mmap).unwrap();
        let q = l.query(&["t1", "t5", "t30"]);
        assert_eq!(l.search(&q, 20), idx.search(&idx.query(&["t1", "t5", "t30"]), 20));
        assert_eq!(l.vocab(), idx.vocab());
    }
}

#[test]
fn empty_corpus_is_an_error() {
    let docs: Vec<Vec<String>> = vec![];
    let r = Bm25Index::build(
        Params::default(),
        0,
        |i, emit| docs[i].iter().for_each(|t| emit(t)),
        &|_| {},
    );
    assert!(r.is_err());
}

#[test]
fn sparse_vectors_dot_to_scores() {
    let docs = corpus(200, 100, 5);
    let idx = build(&docs, Method::Lucene);
    let q = vec!["t1".to_string(), "t2".to_string(), "t1".to_string()];
    let scores = idx.get_scores(&idx.query(&q));
    let (qi, qv) = idx.query_vector(&q);
    for (d, doc) in docs.iter().enumerate().take(50) {
        let (di, dv) = idx.document_vector(doc);
        let mut dot = 0f32;
        for (i, t) in qi.iter().enumerate() {
            if let Some(j) = di.iter().position(|x| x == t) {
                dot += qv[i] * dv[j];
            }
        }
        assert!((dot - scores[d]).abs() < 1e-4, "{d}: {dot} vs {}", scores[d]);
    }
}

const METHODS: [Method; 5] = [
    Method::Lucene,
    Method::Robertson,
    Method::Atire,
    Method::Bm25L,
    Method::Bm25Plus,
];

/// Segment `s` of a collection: documents of its own length range, shared
/// words and words only this segment has ("s{s}w{i}").
fn segment_corpus(n: usize, s: u64, max_len: u64, seed: u64) -> Vec<Vec<String>> {
    let mut r = Lcg(seed);
    (0..n)
        .map(|_| {
            let len = 1 + r.next() % max_len;
            (0..len)
                .map(|_| {
                    if r.next().is_multiple_of(10) {
                        format!("s{s}w{}", r.zipf(300))
                    } else {
                        format!("t{}", r.zipf(3000))
                    }
                })
                .collect()
        })
        .collect()
}

/// Reference: (id, score) over eligible docs, by score desc then id asc, first k.
fn reference_top(scores: &[f32], k: usize, mask: Option<&[u8]>) -> Vec<(u32, f32)> {
    let mut v: Vec<(u32, f32)> = scores
        .iter()
        .enumerate()
        .filter(|(d, _)| mask.is_none_or(|m| m.get(*d).is_some_and(|&x| x != 0)))
        .map(|(d, &s)| (d as u32, s))
        .collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    v.truncate(k);
    v
}

/// Same hits up to float noise: scores rel 1e-6, ids equal except among
/// scores equal to that precision; `scores` (exhaustive) confirms each hit.
fn assert_same_hits(got: &[(u32, f32)], want: &[(u32, f32)], scores: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: {got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g.1 - w.1).abs() <= 1e-6 * w.1.abs().max(1e-6),
            "{what}: {g:?} vs {w:?}"
        );
        assert!(
            (scores[g.0 as usize] - g.1).abs() <= 1e-6 * g.1.abs().max(1e-6),
            "{what}: {g:?}"
        );
    }
}

fn global_stats(segs: &[&Bm25Index], tokens: &[String]) -> GlobalStats {
    let n: u64 = segs.iter().map(|s| s.n_docs() as u64).sum();
    let total: u64 = segs.iter().map(|s| s.total_tokens()).sum();
    let mut df = crate::hash::StrMap::default();
    for t in tokens {
        df.insert(t.clone(), segs.iter().map(|s| s.df(t) as u64).sum());
    }
    GlobalStats {
        n_docs: n,
        avgdl: total as f64 / n as f64,
        df,
    }
}

fn check_segments(sizes: &[(usize, u64)], n_queries: usize) {
    let parts: Vec<Vec<Vec<String>>> = sizes
        .iter()
        .enumerate()
        .map(|(s, &(n, len))| segment_corpus(n, s as u64, len, 11 + s as u64))
        .collect();
    let all: Vec<Vec<String>> = parts.iter().flatten().cloned().collect();
    let offsets: Vec<usize> = parts
        .iter()
        .scan(0, |o, p| {
            let x = *o;
            *o += p.len();
            Some(x)
        })
        .collect();
    for method in METHODS {
        let whole = build(&all, method);
        let segs: Vec<Bm25Index> = parts.iter().map(|p| build(p, method)).collect();
        let mut r = Lcg(5);
        for qi in 0..n_queries {
            let ql = 1 + r.next() % 6;
            let mut q: Vec<String> = (0..ql).map(|_| format!("t{}", r.zipf(4000))).collect();
            // Words of one segment only (possibly absent from all), and repeats.
            q.push(format!("s{}w{}", r.next() % (sizes.len() as u64 + 1), r.zipf(400)));
            if qi % 3 == 0 {
                q.push(q[0].clone());
            }
            let stats = global_stats(&segs.iter().collect::<Vec<_>>(), &q);
            let want_scores = whole.get_scores(&whole.query(&q));
            for k in [1, 10, 100] {
                let want = whole.search(&whole.query(&q), k);
                let mut merged = Vec::new();
                for (s, seg) in segs.iter().enumerate() {
                    let sq = seg.query(&q);
                    let got = seg.get_scores_opts(&sq, Some(&stats)).unwrap();
                    let slice = &want_scores[offsets[s]..offsets[s] + seg.n_docs()];
                    for (d, (g, w)) in got.iter().zip(slice).enumerate() {
                        assert!(
                            (g - w).abs() <= 1e-6 * w.abs().max(1e-6),
                            "{method:?} q{qi} seg{s} doc{d}: {g} vs {w}"
                        );
                    }
                    let opts = SearchOpts {
                        mask: None,
                        stats: Some(&stats),
                    };
                    let hits = seg.search_opts(&sq, k, &opts).unwrap();
                    assert_same_hits(
                        &hits,
                        &reference_top(&got, k, None),
                        &got,
                        &format!("{method:?} q{qi} seg{s} k{k}"),
                    );
                    merged.extend(hits.into_iter().map(|(d, x)| (d + offsets[s] as u32, x)));
                }
                merged.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                merged.truncate(k);
                assert_same_hits(&merged, &want, &want_scores, &format!("{method:?} q{qi} merged k{k}"));
            }
        }
    }
}

#[test]
fn segments_with_global_stats_equal_one_index_small() {
    // Dense term-at-a-time path; avgdl differs a lot between segments.
    check_segments(&[(1500, 20), (900, 80), (600, 5)], 60);
}

#[test]
fn segments_with_global_stats_equal_one_index_maxscore() {
    // Both segments above 65,536 documents: block-max MaxScore with rescaled bounds.
    check_segments(&[(70_000, 12), (66_000, 60)], 25);
}

fn masks(n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut r = Lcg(seed);
    let mut v = vec![
        vec![],
        vec![0u8; n],
        vec![1u8; n / 3],
        (0..n).map(|_| (r.next() % 2) as u8).collect(),
        (0..n).map(|_| r.next().is_multiple_of(200) as u8 * 7).collect(),
    ];
    let mut few = vec![0u8; n];
    few[3] = 1;
    few[n - 1] = 1;
    v.push(few);
    v
}

fn check_masks(n: usize, n_queries: usize) {
    let docs = corpus(n, 3000, 21);
    let half = corpus(n / 2, 3000, 22);
    for method in METHODS {
        let idx = build(&docs, method);
        let other = build(&half, method);
        let mut r = Lcg(77);
        for qi in 0..n_queries {
            let ql = 1 + r.next() % 6;
            let q: Vec<String> = (0..ql).map(|_| format!("t{}", r.zipf(3500))).collect();
            let stats = global_stats(&[&idx, &other], &q);
            let query = idx.query(&q);
            for use_stats in [false, true] {
                let st = use_stats.then_some(&stats);
                let scores = idx.get_scores_opts(&query, st).unwrap();
                for (mi, mask) in masks(n, qi as u64).iter().enumerate() {
                    for k in [1, 10, 1000] {
                        let opts = SearchOpts {
                            mask: Some(DocMask::new(mask)),
                            stats: st,
                        };
                        let got = idx.search_opts(&query, k, &opts).unwrap();
                        let want = reference_top(&scores, k, Some(mask));
                        let what = format!("{method:?} q{qi} mask{mi} k{k} stats={use_stats}");
                        assert_same_hits(&got, &want, &scores, &what);
                        assert!(
                            got.iter().all(|h| mask.get(h.0 as usize).is_some_and(|&m| m != 0)),
                            "{what}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn masks_small() {
    check_masks(4000, 20);
}

#[test]
fn masks_maxscore() {
    check_masks(70_000, 6);
}

#[test]
fn options_without_mask_or_stats_equal_search() {
    let docs = corpus(3000, 2000, 7);
    let idx = build(&docs, Method::Bm25L);
    let q = idx.query(&["t1", "t7", "t40", "nope"]);
    assert_eq!(
        idx.search_opts(&q, 20, &SearchOpts::default()).unwrap(),
        idx.search(&q, 20)
    );
    // Stats equal to the index's own give the same results too.
    let toks: Vec<String> = ["t1", "t7", "t40", "nope"].iter().map(|s| s.to_string()).collect();
    let own = global_stats(&[&idx], &toks);
    let got = idx
        .search_opts(
            &q,
            20,
            &SearchOpts {
                mask: None,
                stats: Some(&own),
            },
        )
        .unwrap();
    assert_eq!(got, idx.search(&q, 20));
    let batch = idx
        .search_batch_opts(&[q.clone(), q.clone()], 5, &SearchOpts::default(), None)
        .unwrap();
    assert_eq!(batch[1], idx.search(&q, 5));
}

#[test]
fn bad_global_stats_are_errors() {
    let docs = corpus(300, 100, 7);
    let idx = build(&docs, Method::Lucene);
    let q = idx.query(&["t1", "t2"]);
    let toks = vec!["t1".to_string(), "t2".to_string()];
    let good = global_stats(&[&idx], &toks);
    let run = |st: &GlobalStats| {
        idx.search_opts(
            &q,
            5,
            &SearchOpts {
                mask: None,
                stats: Some(st),
            },
        )
    };
    assert!(run(&good).is_ok());
    assert!(run(&GlobalStats {
        n_docs: 0,
        ..good.clone()
    })
    .is_err());
    for a in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(run(&GlobalStats {
            avgdl: a,
            ..good.clone()
        })
        .is_err());
    }
    // Live-document statistics may count fewer documents than this index holds (its
    // deleted ones are masked out): a df of 0 scores the term as unknown, not an error.
    let mut low = good.clone();
    low.df.insert("t1".into(), 0);
    let without_t1 = idx.search(&idx.query(&["t2"]), 5);
    let got = run(&low).unwrap();
    assert_eq!(got.len(), without_t1.len());
    for (a, b) in got.iter().zip(&without_t1) {
        assert!(a.0 == b.0 && (a.1 - b.1).abs() <= 1e-5 * b.1.abs().max(1.0));
    }
    let mut high = good.clone();
    high.df.insert("t2".into(), good.n_docs + 1);
    assert!(run(&high).is_err());
    assert!(idx.get_scores_opts(&q, Some(&high)).is_err());
}

#[test]
fn merged_indexes_equal_one_build_over_the_live_documents() {
    for method in [Method::Lucene, Method::Bm25L, Method::Bm25Plus] {
        let docs = corpus(3000, 400, 11);
        let chunks: Vec<&[Vec<String>]> = vec![&docs[..900], &docs[900..1000], &docs[1000..]];
        let parts: Vec<Bm25Index> = chunks.iter().map(|c| build(c, method)).collect();
        let mut r = Lcg(5);
        let masks: Vec<Vec<u8>> = chunks
            .iter()
            .map(|c| (0..c.len()).map(|_| u8::from(!r.next().is_multiple_of(4))).collect())
            .collect();
        // the middle part without a mask: all live
        let args: Vec<(&Bm25Index, Option<DocMask>)> = parts
            .iter()
            .zip(&masks)
            .enumerate()
            .map(|(i, (p, m))| (p, (i != 1).then(|| DocMask::new(m))))
            .collect();
        let mut live_docs = Vec::new();
        for (i, (c, m)) in chunks.iter().zip(&masks).enumerate() {
            live_docs.extend(
                c.iter()
                    .zip(m)
                    .filter(|(_, &k)| i == 1 || k != 0)
                    .map(|(d, _)| d.clone()),
            );
        }
        let merged = Bm25Index::merge(&args).unwrap();
        let fresh = build(&live_docs, method);
        assert_eq!(merged.n_docs(), fresh.n_docs());
        assert_eq!(merged.total_tokens(), fresh.total_tokens());
        assert_eq!(merged.vocab_size(), fresh.vocab_size());
        for q in [
            vec!["t1", "t2"],
            vec!["t7", "t30", "t399"],
            vec!["t3"],
            vec!["nope", "t5"],
        ] {
            let (a, b) = (merged.query(&q), fresh.query(&q));
            assert_eq!(merged.get_scores(&a), fresh.get_scores(&b));
            assert_eq!(merged.search(&a, 20), fresh.search(&b, 20));
        }
    }
    assert!(Bm25Index::merge(&[]).is_err());
}

/// Indexing texts memoizes each segment's tokens per chunk; the index must be
/// the one built from the analyzer's own token stream, byte for byte, for
/// every configuration that memoizes (and the ones that do not).
#[test]
fn build_texts_equals_build_from_tokens() {
    use crate::analysis::{CutMode, Language, NamedStemmer, StopWords, Tokenizer};
    let pieces = [
        "The",
        "the",
        "Running",
        "run",
        "dogs",
        "U.S.",
        "e.g.",
        "2.5",
        "1,000",
        "don't",
        "It's",
        "café",
        "Ünïcode",
        "x",
        "__",
        "_a",
        "a_b",
        "...",
        "!",
        "(",
        "—",
        "3.11",
        "i.e",
        "CAFÉ",
        "naïve",
        "organisms",
        "dog's",
        "a",
    ];
    let mut r = Lcg(5);
    // More documents than one chunk holds, so chunks and their memos differ.
    let texts: Vec<String> = (0..1500)
        .map(|_| {
            let n = 1 + r.next() % 40;
            let mut t = String::new();
            for _ in 0..n {
                t.push_str(pieces[(r.next() % pieces.len() as u64) as usize]);
                t.push_str(if r.next().is_multiple_of(5) { "," } else { " " });
            }
            t
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let bytes = |idx: &Bm25Index, name: &str| {
        let p = dir.path().join(name);
        idx.save(&p).unwrap();
        std::fs::read(&p).unwrap()
    };
    for language in [Language::En, Language::Auto] {
        for tokenizer in [Tokenizer::Default, Tokenizer::Bm25s, Tokenizer::Uax29] {
            for (lowercase, punct, stem, stop) in [
                (true, false, true, true),
                (false, false, false, false),
                (true, true, true, false),
                (false, true, false, true),
            ] {
                let mut a = crate::analysis::Analyzer::new(
                    language,
                    CutMode::Search,
                    true,
                    lowercase,
                    punct,
                    if stop {
                        StopWords::english()
                    } else {
                        StopWords::from_words(Vec::<String>::new())
                    },
                    stem.then(|| NamedStemmer::new("english").unwrap()),
                );
                a.tokenizer = tokenizer;
                let via_texts = Bm25Index::build_texts(Params::default(), &texts, &a, &|_| {}).unwrap();
                let via_tokens = Bm25Index::build(
                    Params::default(),
                    texts.len(),
                    |i, emit| a.tokenize(&texts[i]).iter().for_each(|t| emit(t)),
                    &|_| {},
                )
                .unwrap();
                let what = format!("{language:?} {tokenizer:?} {lowercase} {punct} {stem} {stop}");
                assert!(via_texts.vocab_size() > 10, "{what}");
                assert!(bytes(&via_texts, "a") == bytes(&via_tokens, "b"), "{what}");
            }
        }
    }
}
