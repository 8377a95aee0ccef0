//! Exact top-k by dot product: MaxScore on large segments (`maxscore.rs`),
//! term at a time on small ones, one heap across segments; exhaustive
//! scoring (the reference); batches on rayon.

use super::{Segment, SparseIndex, SparseVec};
use crate::error::{Error, Result};
use crate::mask::DocMask;
use crate::postings::for_each_block;
use crate::topk::caller_hits;

/// Segments up to this many rows are searched term at a time.
pub const DENSE_ROWS: usize = 1 << 16;

thread_local! {
    /// Dense score accumulator (kept zeroed between queries).
    pub(crate) static ACC: std::cell::RefCell<Vec<f64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Ranked hits of one query: (id, score), best first; -1 / -inf pads rows
/// with fewer eligible documents than k.
pub type Hits = crate::topk::Hits<i64>;

/// Query-time options.
#[derive(Clone, Copy, Debug, Default)]
pub struct SearchOptions {
    pub k: usize,
    /// Keep only the query's N largest weights (ties by lower term id).
    pub query_top_n: Option<usize>,
    /// Drop query weights below `query_cut` x the query's largest weight.
    pub query_cut: Option<f32>,
}

impl SearchOptions {
    pub fn validate(&self) -> Result<()> {
        if self.k < 1 {
            return Err(Error::invalid("k must be >= 1"));
        }
        if self.query_top_n == Some(0) {
            return Err(Error::invalid("query_top_n must be >= 1 (or None)"));
        }
        if let Some(c) = self.query_cut {
            if !(0.0..=1.0).contains(&c) {
                return Err(Error::invalid(format!("query_cut must be in [0, 1], got {c}")));
            }
        }
        Ok(())
    }

    /// Apply the query pruning: first the relative cut, then top-N. The
    /// result keeps term order.
    pub fn prune_query(&self, q: &SparseVec) -> Vec<(u32, f32)> {
        let mut pairs: Vec<(u32, f32)> = q.0.iter().copied().zip(q.1.iter().copied()).collect();
        if let Some(c) = self.query_cut {
            let mx = pairs.iter().map(|p| p.1).fold(0f32, f32::max);
            pairs.retain(|p| p.1 >= c * mx);
        }
        if let Some(n) = self.query_top_n {
            if pairs.len() > n {
                pairs.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                pairs.truncate(n);
                pairs.sort_unstable_by_key(|p| p.0);
            }
        }
        pairs
    }
}

/// The best `k` (id, score): score desc then id asc; ids may come in any order.
pub(crate) type IdTop = crate::topk::TopK<u64>;

/// Rows eligible for a search: None = every row.
pub(crate) struct Eligible(pub(crate) Option<Vec<u64>>);

impl Eligible {
    #[inline]
    pub(crate) fn ok(&self, row: u32) -> bool {
        match &self.0 {
            None => true,
            Some(b) => (b[(row / 64) as usize] >> (row % 64)) & 1 == 1,
        }
    }
}

impl SparseIndex {
    /// Eligible rows: live, and (with a mask) whose id the mask contains.
    pub(crate) fn eligible(&self, mask: Option<DocMask>) -> Eligible {
        if mask.is_none() && self.n_deleted == 0 {
            return Eligible(None);
        }
        let n = self.ids.len();
        let mut bits: Vec<u64> = (0..n.div_ceil(64)).map(|w| !self.deleted[w]).collect();
        if let Some(m) = mask {
            for (w, word) in bits.iter_mut().enumerate() {
                if *word == 0 {
                    continue;
                }
                let mut x = *word;
                while x != 0 {
                    let b = x.trailing_zeros();
                    x &= x - 1;
                    let row = w * 64 + b as usize;
                    let id = if row < n { self.ids[row] } else { u64::MAX };
                    if !m.contains(id) {
                        *word &= !(1u64 << b);
                    }
                }
            }
        }
        if !n.is_multiple_of(64) {
            if let Some(last) = bits.last_mut() {
                *last &= (1u64 << (n % 64)) - 1;
            }
        }
        Eligible(Some(bits))
    }

    /// Check and clean queries given as CSR (same rules as documents).
    pub fn prepare_queries<P: super::Int, I: super::Int>(&self, q: super::Csr<'_, P, I>) -> Result<Vec<SparseVec>> {
        q.rows(None, "query")
    }

    /// Scores of every row for one query (exhaustive; the reference for
    /// `search`). Removed rows score too; callers skip them.
    pub fn scores_all(&self, q: &[(u32, f32)]) -> Vec<f32> {
        let mut acc = vec![0f64; self.ids.len()];
        for seg in &self.segments {
            let store = seg.store.bytes();
            for &(t, qw) in q {
                if let Some(m) = seg.find(t) {
                    let base = seg.base as usize;
                    for_each_block(store, m.postings(), m.weights(self.dtype), |docs, ws| {
                        for (&d, &w) in docs.iter().zip(ws) {
                            acc[base + d as usize] += qw as f64 * w as f64;
                        }
                    });
                }
            }
        }
        acc.into_iter().map(|s| s as f32).collect()
    }

    /// Top-k by scoring every document (slow; for tests and checks).
    pub fn search_exhaustive(&self, q: &SparseVec, opts: &SearchOptions, mask: Option<DocMask>) -> Result<Hits> {
        opts.validate()?;
        let q = opts.prune_query(q);
        let el = self.eligible(mask);
        let k = opts.k.min(self.len());
        let scores = self.scores_all(&q);
        let mut top = IdTop::new(k);
        for (r, &s) in scores.iter().enumerate() {
            if el.ok(r as u32) && !self.is_deleted(r as u32) && s > 0.0 {
                top.push(self.ids[r], s);
            }
        }
        Ok(self.finish(top, k, &el))
    }

    /// Exact top-k of one query with pruning.
    pub fn search(&self, q: &SparseVec, opts: &SearchOptions, mask: Option<DocMask>) -> Result<Hits> {
        opts.validate()?;
        let el = self.eligible(mask);
        Ok(self.search_prepared(&opts.prune_query(q), opts.k.min(self.len()), &el))
    }

    /// Many queries in parallel on `pool` (or rayon's global pool), one task
    /// per query; when every segment is small, batches of
    /// [`BATCH_MIN`](super::batch::BATCH_MIN) or more queries share postings
    /// decoding across queries instead. Same hits as searching them one by one.
    pub fn search_batch(
        &self,
        queries: &[SparseVec],
        opts: &SearchOptions,
        mask: Option<DocMask>,
        pool: Option<&rayon::ThreadPool>,
    ) -> Result<Vec<Hits>> {
        opts.validate()?;
        if self.is_empty() {
            return Err(Error::invalid("the index is empty: add documents before searching"));
        }
        let el = self.eligible(mask);
        let k = opts.k.min(self.len());
        // The shared path scores exhaustively, as the per-query path does on
        // small segments; large segments are pruned per query (MaxScore),
        // so there each query is a task of its own: no work is wasted on
        // documents that cannot rank, and the scores are the per-query ones.
        let all_small = self.segments.iter().all(|s| s.n_rows as usize <= self.dense_rows);
        if queries.len() >= super::batch::BATCH_MIN && self.shared_batches && all_small {
            let pruned: Vec<Vec<(u32, f32)>> = queries.iter().map(|q| opts.prune_query(q)).collect();
            return Ok(self.search_batch_shared(&pruned, k, &el, pool));
        }
        Ok(crate::parallel::map_batch(queries, pool, |q| {
            self.search_prepared(&opts.prune_query(q), k, &el)
        }))
    }

    fn search_prepared(&self, q: &[(u32, f32)], k: usize, el: &Eligible) -> Hits {
        let mut top = IdTop::new(k);
        if k > 0 {
            for seg in &self.segments {
                if seg.n_rows as usize <= self.dense_rows {
                    self.search_segment_dense(seg, q, &mut top, el);
                } else {
                    self.search_segment_maxscore(seg, q, &mut top, el);
                }
            }
        }
        self.finish(top, k, el)
    }

    /// Ranked hits, then eligible documents that matched nothing (score 0) by
    /// lowest id, then -1 / -inf padding, to k entries.
    pub(crate) fn finish(&self, top: IdTop, k: usize, el: &Eligible) -> Hits {
        let mut hits: Hits = caller_hits(top);
        if hits.len() < k {
            let taken: rustc_hash::FxHashSet<i64> = hits.iter().map(|h| h.0).collect();
            let ok = |r: u32| el.ok(r) && !self.is_deleted(r) && !taken.contains(&(self.ids[r as usize] as i64));
            if self.ids_sorted {
                for r in 0..self.ids.len() as u32 {
                    if hits.len() >= k {
                        break;
                    }
                    if ok(r) {
                        hits.push((self.ids[r as usize] as i64, 0.0));
                    }
                }
            } else {
                for &r in &self.by_id {
                    if hits.len() >= k {
                        break;
                    }
                    if ok(r) {
                        hits.push((self.ids[r as usize] as i64, 0.0));
                    }
                }
            }
            hits.resize(k, crate::topk::PAD);
        }
        hits
    }

    /// Term at a time into a per-thread accumulator, then one scan of the
    /// segment's rows: cheaper than document-at-a-time merging on small
    /// segments, where a scan of every row costs little.
    fn search_segment_dense(&self, seg: &Segment, q: &[(u32, f32)], top: &mut IdTop, el: &Eligible) {
        let store = seg.store.bytes();
        let n = seg.n_rows as usize;
        ACC.with(|cell| {
            let acc = &mut *cell.borrow_mut();
            if acc.len() < n {
                acc.resize(n, 0.0);
            }
            let acc = &mut acc[..n];
            let mut any = false;
            for &(t, qw) in q {
                if let Some(m) = seg.find(t) {
                    any = true;
                    let qw = qw as f64;
                    for_each_block(store, m.postings(), m.weights(self.dtype), |docs, ws| {
                        for (&d, &w) in docs.iter().zip(ws) {
                            acc[d as usize] += qw * w as f64;
                        }
                    });
                }
            }
            if !any {
                return;
            }
            let base = seg.base;
            for (d, x) in acc.iter_mut().enumerate() {
                if *x > 0.0 {
                    let s = *x as f32;
                    *x = 0.0;
                    let row = base + d as u32;
                    if s > 0.0 && el.ok(row) && !self.is_deleted(row) {
                        let id = self.ids[row as usize];
                        if top.accepts(id, s) {
                            top.push(id, s);
                        }
                    }
                }
            }
        });
    }
}

/// A rayon pool of `threads` workers (None: rayon's global pool).
pub use crate::parallel::thread_pool;
