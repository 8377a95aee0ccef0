//! Exact top-k by dot product: block-max MaxScore per segment with one heap
//! across segments, exhaustive scoring (the reference), batches on rayon.

use super::{Segment, SparseIndex, SparseVec};
use crate::error::{Error, Result};
use crate::mask::DocMask;
use crate::postings::{for_each_block, Cursor, Weights, END};
use crate::topk::caller_hits;

/// Segments up to this many rows are searched term at a time.
pub const DENSE_ROWS: usize = 1 << 16;

/// Rows per MaxScore window (its accumulator stays in L1/L2).
const WINDOW: usize = 8192;

thread_local! {
    /// Dense score accumulator (kept zeroed between queries).
    static ACC: std::cell::RefCell<Vec<f64>> = const { std::cell::RefCell::new(Vec::new()) };
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

    /// Many queries in parallel on `pool` (or rayon's global pool). Batches of
    /// [`BATCH_MIN`](super::batch::BATCH_MIN) or more queries share postings
    /// decoding across queries (same hits as searching them one by one).
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
        if queries.len() >= super::batch::BATCH_MIN && self.shared_batches {
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
                    self.search_segment(seg, q, &mut top, el);
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

    /// Block-max MaxScore over one segment in windows of rows, feeding the
    /// shared heap. Per window: each term's bound is the largest block max
    /// overlapping the window; a window whose bounds cannot reach the
    /// threshold is skipped whole; otherwise the terms are split MaxScore
    /// style by those window bounds, the essential ones are accumulated term
    /// at a time into a window-sized array, and only documents whose partial
    /// score plus the other terms' bounds can still enter the top k look the
    /// other terms up.
    fn search_segment(&self, seg: &Segment, q: &[(u32, f32)], top: &mut IdTop, el: &Eligible) {
        let store = seg.store.bytes();
        let dtype = self.dtype;
        // With ids increasing along rows a document whose bound equals the
        // threshold loses the tie, so it can be pruned.
        let strict = self.ids_sorted;
        // Otherwise an equal f32 score may still win on a lower id: keep a
        // margin larger than the rounding of the f64 sum to f32.
        let prunable = |ub: f64, theta: f64| if strict { ub <= theta } else { ub * (1.0 + 1e-6) < theta };
        let mut terms: Vec<(f64, Cursor<Weights>)> = q
            .iter()
            .filter_map(|&(t, qw)| {
                let m = seg.find(t)?;
                Some((qw as f64, Cursor::new(store, m.postings(), m.weights(dtype))))
            })
            .filter(|x| x.0 > 0.0)
            .collect();
        if terms.is_empty() {
            return;
        }
        let m = terms.len();
        let n = seg.n_rows;
        let base_row = seg.base;
        let ids = &self.ids;
        let mut acc = vec![0f64; WINDOW];
        let mut touched = vec![0u64; WINDOW / 64];
        let check_rows = el.0.is_some() || self.n_deleted > 0;
        let mut order: Vec<usize> = (0..m).collect();
        let mut wb = vec![0f64; m];
        let mut prefix = vec![0f64; m];
        let mut lo = terms.iter().map(|t| t.1.doc).min().unwrap_or(END);
        while lo < n {
            let hi = lo.saturating_add(WINDOW as u32).min(n);
            let theta = top.threshold() as f64;
            for (i, t) in terms.iter().enumerate() {
                wb[i] = t.0 * t.1.window_bound(hi) as f64;
            }
            order.sort_by(|&a, &b| wb[a].total_cmp(&wb[b]));
            let mut s = 0.0;
            for (j, &i) in order.iter().enumerate() {
                s += wb[i];
                // Over-estimate slightly so rounding (also the final f32) never prunes a real hit.
                prefix[j] = s * (1.0 + 1e-6);
            }
            if prunable(prefix[m - 1], theta) {
                // Nothing in this window can enter the top k.
                for t in terms.iter_mut() {
                    t.1.advance(hi);
                }
            } else {
                let mut ne = 0; // order[..ne] are non-essential
                while ne < m && prunable(prefix[ne], theta) {
                    ne += 1;
                }
                for &i in &order[ne..] {
                    let (qw, c) = &mut terms[i];
                    let qw = *qw;
                    c.for_each_until(hi, |d, w| {
                        let o = (d - lo) as usize;
                        acc[o] += qw * w as f64;
                        touched[o / 64] |= 1 << (o % 64);
                    });
                }
                let words = (hi - lo).div_ceil(64) as usize;
                let mut theta = top.threshold() as f64;
                let ne_bound = if ne > 0 { prefix[ne - 1] } else { 0.0 };
                for (wi, tw) in touched.iter_mut().enumerate().take(words) {
                    let mut x = *tw;
                    *tw = 0;
                    while x != 0 {
                        let o = wi * 64 + x.trailing_zeros() as usize;
                        x &= x - 1;
                        let mut score = acc[o];
                        acc[o] = 0.0;
                        if prunable(score + ne_bound, theta) {
                            continue;
                        }
                        let d = lo + o as u32;
                        let row = base_row + d;
                        if check_rows && (!el.ok(row) || self.is_deleted(row)) {
                            continue;
                        }
                        let mut alive = true;
                        for j in (0..ne).rev() {
                            if prunable(score + prefix[j], theta) {
                                alive = false;
                                break;
                            }
                            let rest = if j > 0 { prefix[j - 1] } else { 0.0 };
                            let (qw, c) = &mut terms[order[j]];
                            if prunable((score + *qw * c.bound_at(d) as f64) * (1.0 + 1e-6) + rest, theta) {
                                alive = false;
                                break;
                            }
                            c.advance(d);
                            if c.doc == d {
                                score += *qw * c.value() as f64;
                            }
                        }
                        let id = ids[row as usize];
                        if alive && score > 0.0 && top.accepts(id, score as f32) {
                            top.push(id, score as f32);
                            theta = top.threshold() as f64;
                        }
                    }
                }
                for &i in &order[..ne] {
                    terms[i].1.advance(hi);
                }
            }
            lo = terms.iter().map(|t| t.1.doc).min().unwrap_or(END);
        }
    }
}

/// A rayon pool of `threads` workers (None: rayon's global pool).
pub use crate::parallel::thread_pool;
