use super::*;
use crate::topk::top_k_dense;

/// Small deterministic generator (no external crates in the core's tests).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    /// Zipf-ish: small ids far more often.
    fn zipf(&mut self, v: u64) -> u64 {
        let u = (self.next() % 1_000_000) as f64 / 1_000_000.0;
        ((v as f64).powf(u) - 1.0) as u64
    }
}

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
    let params = Params { method, ..Params::default() };
    Bm25Index::build(params, docs.len(), |i, emit| docs[i].iter().for_each(|t| emit(t)), &|_| {}).unwrap()
}

#[test]
fn pruned_search_equals_exhaustive() {
    let docs = corpus(3000, 2000, 7);
    for method in [Method::Lucene, Method::Robertson, Method::Atire, Method::Bm25L, Method::Bm25Plus] {
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
                    assert!((g.1 - w.1).abs() <= 1e-5 * w.1.abs().max(1.0), "{method:?} q{qi} k{k}: {g:?} vs {w:?}");
                }
                // Ids agree except among scores equal to float precision
                // (sums taken in another order may round apart by one ulp).
                let exhaustive = idx.get_scores(&q);
                for (g, w) in got.iter().zip(&want) {
                    if g.0 != w.0 {
                        assert!((g.1 - w.1).abs() <= 1e-6 * w.1.abs(), "{method:?} q{qi} k{k}: {g:?} vs {w:?}");
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
    let r = Bm25Index::build(Params::default(), 0, |i, emit| docs[i].iter().for_each(|t| emit(t)), &|_| {});
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
