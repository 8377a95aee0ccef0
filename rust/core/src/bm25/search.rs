//! Query evaluation: exhaustive scores, exact top-k with MaxScore pruning,
//! batches in parallel, and BM25 as sparse vectors.

use rayon::prelude::*;

use super::postings::{for_each_block, Cursor, END};
use super::{Bm25Index, Method, TermInfo};
use crate::error::{Error, Result};
use crate::topk::TopK;

/// Corpora up to this size are always searched term at a time.
const DENSE_DOCS: usize = 1 << 16;

thread_local! {
    /// Dense score accumulator (kept zeroed between queries).
    static ACC: std::cell::RefCell<Vec<f64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A query resolved against the vocabulary: (term id, count) in first-seen order,
/// as bm25s counts repeated query tokens once per occurrence.
#[derive(Clone, Debug, Default)]
pub struct Query {
    pub terms: Vec<(u32, u32)>,
}

/// Ranked hits of one query: (doc id, score), best first.
pub type Hits = Vec<(u32, f32)>;

impl Bm25Index {
    /// Resolve query tokens; tokens not in the vocabulary are ignored.
    pub fn query<S: AsRef<str>>(&self, tokens: &[S]) -> Query {
        let mut terms: Vec<(u32, u32)> = Vec::new();
        for t in tokens {
            if let Some(id) = self.term_id(t.as_ref()) {
                match terms.iter_mut().find(|(i, _)| *i == id) {
                    Some(e) => e.1 += 1,
                    None => terms.push((id, 1)),
                }
            }
        }
        Query { terms }
    }

    /// Score every query term contributes to a document that lacks it (BM25L/BM25+ only).
    fn absent_constant(&self, q: &Query) -> f64 {
        let a = self.params.tf_part_absent() as f64;
        if a == 0.0 {
            return 0.0;
        }
        q.terms.iter().map(|&(t, c)| c as f64 * self.idf(t) * a).sum()
    }

    /// BM25 score of every document (exhaustive; the reference for `search`).
    pub fn get_scores(&self, q: &Query) -> Vec<f32> {
        let n = self.n_docs();
        let mut acc = vec![0f64; n];
        let store = self.postings.bytes();
        for &(t, c) in &q.terms {
            self.accumulate(store, t, c, &mut acc);
        }
        let base = self.absent_constant(q);
        acc.into_iter().map(|s| (s + base) as f32).collect()
    }

    /// Add term `t`'s contributions (query count `c`) to `acc`, block by block.
    #[inline]
    fn accumulate(&self, store: &[u8], t: u32, c: u32, acc: &mut [f64]) {
        let info = self.terms[t as usize];
        let w = c as f64 * self.idf(t);
        if w <= 0.0 {
            return;
        }
        let p = self.params;
        let (k1, delta, absent) = (p.k1, p.delta, p.tf_part_absent());
        // One monomorphic loop per variant, so the inner loop has no match.
        match p.method {
            Method::Lucene | Method::Robertson => self.accumulate_with(store, info, w, acc, |tf, kn| tf / (tf + kn)),
            Method::Atire => self.accumulate_with(store, info, w, acc, |tf, kn| tf * (k1 + 1.0) / (tf + kn)),
            Method::Bm25L => self.accumulate_with(store, info, w, acc, |tf, kn| p.tf_part(tf, kn) - absent),
            Method::Bm25Plus => {
                self.accumulate_with(store, info, w, acc, |tf, kn| (k1 + 1.0) * tf / (kn + tf) + delta - absent)
            }
        }
    }

    #[inline(always)]
    fn accumulate_with(&self, store: &[u8], info: TermInfo, w: f64, acc: &mut [f64], weight: impl Fn(f32, f32) -> f32) {
        let kn = &self.kn[..];
        if self.n_docs() <= DENSE_DOCS {
            let impacts = self.impacts[info.term as usize].get_or_init(|| {
                let mut v = Vec::with_capacity(info.df as usize);
                for_each_block(store, info.offset as usize, info.n_blocks as usize, |docs, tfs| {
                    v.extend(docs.iter().zip(tfs).map(|(&d, &tf1)| (d, weight((tf1 + 1) as f32, kn[d as usize]))));
                });
                v.into_boxed_slice()
            });
            for &(d, x) in impacts.iter() {
                acc[d as usize] += w * x as f64;
            }
            return;
        }
        let mut wts = [0f32; super::postings::BLOCK];
        for_each_block(store, info.offset as usize, info.n_blocks as usize, |docs, tfs| {
            // Weights first (independent divisions pipeline well), then the scatter.
            for ((x, &d), &tf1) in wts.iter_mut().zip(docs).zip(tfs) {
                *x = weight((tf1 + 1) as f32, kn[d as usize]);
            }
            for (&d, &x) in docs.iter().zip(&wts) {
                acc[d as usize] += w * x as f64;
            }
        });
    }

    /// Exact top-k: same hits and order as sorting `get_scores` by
    /// (score desc, doc id asc). Small corpora are scored term at a time into
    /// a dense accumulator (no per-document merge cost); larger ones use
    /// block-max MaxScore, which skips documents that cannot enter the top k.
    pub fn search(&self, q: &Query, k: usize) -> Hits {
        let n = self.n_docs();
        let k = k.min(n);
        if k == 0 {
            return Vec::new();
        }
        // Measured: on 1M documents MaxScore beats scoring every posting even
        // for queries of frequent words, so only small corpora go dense.
        if n <= DENSE_DOCS {
            return self.search_dense(q, k);
        }
        self.search_maxscore(q, k)
    }

    /// Term-at-a-time into a per-thread accumulator, then top-k over the
    /// documents touched.
    pub(crate) fn search_dense(&self, q: &Query, k: usize) -> Hits {
        let k = k.min(self.n_docs());
        let n = self.n_docs();
        let store = self.postings.bytes();
        let base = self.absent_constant(q);
        ACC.with(|cell| {
            let acc = &mut *cell.borrow_mut();
            if acc.len() < n {
                acc.resize(n, 0.0);
            }
            for &(t, c) in &q.terms {
                self.accumulate(store, t, c, &mut acc[..n]);
            }
            // One branch-light scan: documents that matched nothing score
            // `base` and, ranked by id, fill in exactly as in `get_scores`.
            let mut top = TopK::new(k);
            let mut theta = f32::NEG_INFINITY;
            for (d, &x) in acc[..n].iter().enumerate() {
                let s = (x + base) as f32;
                if s > theta {
                    top.push(d as u32, s);
                    theta = top.threshold();
                }
            }
            acc[..n].fill(0.0);
            self.fill(top.into_sorted(), k, base)
        })
    }

    /// Fewer matching documents than k: the rest score the same (zero, or the
    /// BM25L/BM25+ constant) and follow in id order.
    fn fill(&self, mut hits: Hits, k: usize, base: f64) -> Hits {
        if hits.len() < k {
            let mut taken: Vec<u32> = hits.iter().map(|h| h.0).collect();
            taken.sort_unstable();
            let mut next = 0u32;
            let mut j = 0;
            while hits.len() < k {
                if j < taken.len() && taken[j] == next {
                    j += 1;
                } else {
                    hits.push((next, base as f32));
                }
                next += 1;
            }
        }
        hits
    }

    pub(crate) fn search_maxscore(&self, q: &Query, k: usize) -> Hits {
        let k = k.min(self.n_docs());
        let store = self.postings.bytes();
        // Terms by upper bound, ascending: MaxScore's non-essential prefix.
        let mut terms: Vec<(f64, f64, Cursor)> = q
            .terms
            .iter()
            .map(|&(t, c)| {
                let info = self.terms[t as usize];
                let w = c as f64 * self.idf(t);
                let ub = w * info.max_tf_weight as f64;
                (ub, w, Cursor::new(store, info.offset as usize, info.n_blocks as usize))
            })
            .filter(|(_, w, _)| *w > 0.0)
            .collect();
        terms.sort_by(|a, b| a.0.total_cmp(&b.0));
        let m = terms.len();
        let mut prefix = vec![0f64; m];
        let mut s = 0.0;
        for (i, t) in terms.iter().enumerate() {
            s += t.0;
            // A slight over-estimate keeps float rounding from pruning a real hit.
            prefix[i] = s * (1.0 + 1e-9);
        }
        // Scores are ranked as the f32 the caller sees, (sum + base), so that
        // ties resolve exactly as in `get_scores`.
        let base = self.absent_constant(q);
        for p in prefix.iter_mut() {
            *p += base;
        }
        let mut top = TopK::new(k);
        let mut first_essential = 0usize;
        let params = self.params;
        loop {
            let mut d = END;
            for t in &terms[first_essential..] {
                d = d.min(t.2.doc);
            }
            if d == END {
                break;
            }
            if top.is_full() {
                // Block-max skip: the essential terms' block bounds hold for
                // every doc up to the nearest block end; if even they cannot
                // lift a doc past the threshold, jump the whole range.
                let theta = top.threshold() as f64;
                let mut ub = if first_essential > 0 { prefix[first_essential - 1] } else { base };
                let mut boundary = END;
                for t in &terms[first_essential..] {
                    let (b, end) = t.2.block_bound(d);
                    ub += t.1 * b as f64;
                    boundary = boundary.min(end);
                }
                if ub <= theta {
                    if boundary == END {
                        break;
                    }
                    for t in terms[first_essential..].iter_mut() {
                        t.2.advance(boundary);
                    }
                    continue;
                }
            }
            let kn = self.kn[d as usize];
            let mut score = base;
            for t in terms[first_essential..].iter_mut() {
                if t.2.doc == d {
                    score += t.1 * params.tf_weight(t.2.tf() as f32, kn) as f64;
                    t.2.next();
                }
            }
            let theta = top.threshold() as f64;
            let mut alive = true;
            for i in (0..first_essential).rev() {
                if score + prefix[i] - base <= theta {
                    alive = false;
                    break;
                }
                // Block-max refinement: this term's bound for d's own block
                // (read from headers, nothing decoded) plus the others' bounds.
                let rest = if i > 0 { prefix[i - 1] - base } else { 0.0 };
                let t = &mut terms[i];
                if score + t.1 * t.2.bound_at(d) as f64 + rest <= theta {
                    alive = false;
                    break;
                }
                t.2.advance(d);
                if t.2.doc == d {
                    score += t.1 * params.tf_weight(t.2.tf() as f32, kn) as f64;
                }
            }
            if alive && (score as f32) > top.threshold() {
                top.push(d, score as f32);
                if top.is_full() {
                    let theta = top.threshold() as f64;
                    while first_essential < m && prefix[first_essential] <= theta {
                        first_essential += 1;
                    }
                    if first_essential == m {
                        break;
                    }
                }
            }
        }
        self.fill(top.into_sorted(), k, base)
    }

    /// Search many queries in parallel on `pool` (or rayon's global pool).
    pub fn search_batch(&self, queries: &[Query], k: usize, pool: Option<&rayon::ThreadPool>) -> Vec<Hits> {
        let run = || queries.par_iter().map(|q| self.search(q, k)).collect();
        match pool {
            Some(p) => p.install(run),
            None => run(),
        }
    }

    /// A document as a BM25 sparse vector over this index's vocabulary and
    /// statistics: term id -> idf * (tfpart(tf, len) - tfpart(0)). The dot
    /// product with `query_vector` is the BM25 score (minus, for BM25L and
    /// BM25+, the query's constant for absent terms, which does not change ranks).
    pub fn document_vector<S: AsRef<str>>(&self, tokens: &[S]) -> (Vec<u32>, Vec<f32>) {
        let len = tokens.len() as u32;
        let kn = self.params.kn(len, self.avgdl);
        let q = self.query(tokens);
        let mut pairs: Vec<(u32, f32)> = q
            .terms
            .iter()
            .map(|&(t, tf)| (t, (self.idf(t) * self.params.tf_weight(tf as f32, kn) as f64) as f32))
            .collect();
        pairs.sort_unstable_by_key(|p| p.0);
        pairs.into_iter().unzip()
    }

    /// A query as a sparse vector: term id -> count.
    pub fn query_vector<S: AsRef<str>>(&self, tokens: &[S]) -> (Vec<u32>, Vec<f32>) {
        let mut pairs: Vec<(u32, f32)> = self.query(tokens).terms.into_iter().map(|(t, c)| (t, c as f32)).collect();
        pairs.sort_unstable_by_key(|p| p.0);
        pairs.into_iter().unzip()
    }
}

/// A rayon pool of `threads` workers (None: rayon's global pool).
pub fn thread_pool(threads: Option<usize>) -> Result<Option<rayon::ThreadPool>> {
    match threads {
        None => Ok(None),
        Some(0) => Err(Error::invalid("threads must be >= 1 (or None for all cores)")),
        Some(t) => rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build()
            .map(Some)
            .map_err(|e| Error::invalid(format!("cannot start {t} threads: {e}"))),
    }
}
