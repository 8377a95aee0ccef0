//! Exact top-k by dot product: block-max MaxScore per segment with one heap
//! across segments, exhaustive scoring (the reference), batches on rayon.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use rayon::prelude::*;

use super::postings::{for_each_block, Cursor, END};
use super::{Segment, SparseIndex, SparseVec};
use crate::error::{Error, Result};

/// Segments up to this many rows are searched term at a time.
pub const DENSE_ROWS: usize = 1 << 16;

thread_local! {
    /// Dense score accumulator (kept zeroed between queries).
    static ACC: std::cell::RefCell<Vec<f64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Ranked hits of one query: (id, score), best first; -1 / -inf pads rows
/// with fewer eligible documents than k.
pub type Hits = Vec<(i64, f32)>;

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

#[derive(Clone, Copy, Debug, PartialEq)]
struct Entry {
    score: f32,
    id: u64,
}
impl Eq for Entry {}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        // Greater = worse: lower score, or equal score and higher id.
        other.score.total_cmp(&self.score).then(self.id.cmp(&other.id))
    }
}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The best `k` (score, id), score desc then id asc; ids may come in any order.
pub(crate) struct IdTop {
    k: usize,
    heap: BinaryHeap<Entry>,
}

impl IdTop {
    pub fn new(k: usize) -> Self {
        IdTop { k, heap: BinaryHeap::with_capacity(k + 1) }
    }
    #[inline]
    pub fn is_full(&self) -> bool {
        self.heap.len() >= self.k
    }
    #[inline]
    pub fn threshold(&self) -> f32 {
        if self.is_full() {
            self.heap.peek().map_or(f32::NEG_INFINITY, |e| e.score)
        } else {
            f32::NEG_INFINITY
        }
    }
    #[inline]
    pub fn accepts(&self, score: f32, id: u64) -> bool {
        match self.heap.peek() {
            Some(w) if self.is_full() => Entry { score, id } < *w,
            _ => self.k > 0,
        }
    }
    #[inline]
    pub fn push(&mut self, score: f32, id: u64) {
        if self.k == 0 {
            return;
        }
        let e = Entry { score, id };
        if self.heap.len() < self.k {
            self.heap.push(e);
        } else if let Some(mut worst) = self.heap.peek_mut() {
            if e < *worst {
                *worst = e;
            }
        }
    }
    pub fn into_sorted(self) -> Vec<(u64, f32)> {
        self.heap.into_sorted_vec().into_iter().map(|e| (e.id, e.score)).collect()
    }
}

/// Rows eligible for a search: None = every row.
pub(crate) struct Eligible(Option<Vec<u64>>);

impl Eligible {
    #[inline]
    fn ok(&self, row: u32) -> bool {
        match &self.0 {
            None => true,
            Some(b) => (b[(row / 64) as usize] >> (row % 64)) & 1 == 1,
        }
    }
}

impl SparseIndex {
    /// Eligible rows: live, and (with a mask) id < mask.len() and mask[id] != 0.
    pub(crate) fn eligible(&self, mask: Option<&[u8]>) -> Eligible {
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
                    if !(id < m.len() as u64 && m[id as usize] != 0) {
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
                    for_each_block(store, m, self.dtype, |docs, ws| {
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
    pub fn search_exhaustive(&self, q: &SparseVec, opts: &SearchOptions, mask: Option<&[u8]>) -> Result<Hits> {
        opts.validate()?;
        let q = opts.prune_query(q);
        let el = self.eligible(mask);
        let k = opts.k.min(self.len());
        let scores = self.scores_all(&q);
        let mut top = IdTop::new(k);
        for (r, &s) in scores.iter().enumerate() {
            if el.ok(r as u32) && !self.is_deleted(r as u32) && s > 0.0 {
                top.push(s, self.ids[r]);
            }
        }
        Ok(self.finish(top, k, &el))
    }

    /// Exact top-k of one query with pruning.
    pub fn search(&self, q: &SparseVec, opts: &SearchOptions, mask: Option<&[u8]>) -> Result<Hits> {
        opts.validate()?;
        let el = self.eligible(mask);
        Ok(self.search_prepared(&opts.prune_query(q), opts.k.min(self.len()), &el))
    }

    /// Many queries in parallel on `pool` (or rayon's global pool).
    pub fn search_batch(
        &self,
        queries: &[SparseVec],
        opts: &SearchOptions,
        mask: Option<&[u8]>,
        pool: Option<&rayon::ThreadPool>,
    ) -> Result<Vec<Hits>> {
        opts.validate()?;
        if self.is_empty() {
            return Err(Error::invalid("the index is empty: add documents before searching"));
        }
        let el = self.eligible(mask);
        let k = opts.k.min(self.len());
        let run = || queries.par_iter().map(|q| self.search_prepared(&opts.prune_query(q), k, &el)).collect();
        Ok(match pool {
            Some(p) => p.install(run),
            None => run(),
        })
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
    fn finish(&self, top: IdTop, k: usize, el: &Eligible) -> Hits {
        let mut hits: Hits = top.into_sorted().into_iter().map(|(id, s)| (id as i64, s)).collect();
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
            hits.resize(k, (-1, f32::NEG_INFINITY));
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
                    for_each_block(store, m, self.dtype, |docs, ws| {
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
                        if top.accepts(s, id) {
                            top.push(s, id);
                        }
                    }
                }
            }
        });
    }

    /// Block-max MaxScore over one segment, feeding the shared heap.
    fn search_segment(&self, seg: &Segment, q: &[(u32, f32)], top: &mut IdTop, el: &Eligible) {
        let store = seg.store.bytes();
        let dtype = self.dtype;
        // Prune a candidate only when its bound is below the threshold; with
        // ids increasing along rows an equal bound loses the tie too.
        let strict = self.ids_sorted;
        let prunable = |ub: f64, theta: f64| ub < theta || (strict && ub <= theta);
        let mut terms: Vec<(f64, f64, Cursor)> = q
            .iter()
            .filter_map(|&(t, qw)| {
                let m = seg.find(t)?;
                Some((qw as f64 * m.max as f64, qw as f64, Cursor::new(store, m, dtype)))
            })
            .filter(|x| x.1 > 0.0)
            .collect();
        if terms.is_empty() {
            return;
        }
        terms.sort_by(|a, b| a.0.total_cmp(&b.0));
        let m = terms.len();
        let mut prefix = vec![0f64; m];
        let mut s = 0.0;
        for (i, t) in terms.iter().enumerate() {
            s += t.0;
            // Over-estimate slightly so rounding (also the final f32) never prunes a real hit.
            prefix[i] = s * (1.0 + 1e-6);
        }
        let base_row = seg.base;
        let ids = &self.ids;
        let theta_of = |top: &IdTop| top.threshold() as f64;
        let mut first_essential = 0usize;
        if top.is_full() {
            let theta = theta_of(top);
            while first_essential < m && prunable(prefix[first_essential], theta) {
                first_essential += 1;
            }
            if first_essential == m {
                return;
            }
        }
        loop {
            let mut d = END;
            for t in &terms[first_essential..] {
                d = d.min(t.2.doc);
            }
            if d == END {
                break;
            }
            let row = base_row + d;
            if !el.ok(row) || self.is_deleted(row) {
                for t in terms[first_essential..].iter_mut() {
                    if t.2.doc == d {
                        t.2.next();
                    }
                }
                continue;
            }
            if top.is_full() {
                // Block-max skip: essential terms' block bounds hold up to the
                // nearest block end; if they cannot reach the threshold, jump.
                let theta = theta_of(top);
                let mut ub = if first_essential > 0 { prefix[first_essential - 1] } else { 0.0 };
                let mut boundary = END;
                for t in &terms[first_essential..] {
                    let (b, end) = t.2.block_bound(d);
                    ub += t.1 * b as f64;
                    boundary = boundary.min(end);
                }
                if prunable(ub * (1.0 + 1e-6), theta) {
                    if boundary == END {
                        break;
                    }
                    for t in terms[first_essential..].iter_mut() {
                        t.2.advance(boundary);
                    }
                    continue;
                }
            }
            let mut score = 0f64;
            for t in terms[first_essential..].iter_mut() {
                if t.2.doc == d {
                    score += t.1 * t.2.weight() as f64;
                    t.2.next();
                }
            }
            let theta = theta_of(top);
            let mut alive = true;
            for i in (0..first_essential).rev() {
                if prunable(score + prefix[i], theta) {
                    alive = false;
                    break;
                }
                let rest = if i > 0 { prefix[i - 1] } else { 0.0 };
                let t = &mut terms[i];
                if prunable((score + t.1 * t.2.bound_at(d) as f64) * (1.0 + 1e-6) + rest, theta) {
                    alive = false;
                    break;
                }
                t.2.advance(d);
                if t.2.doc == d {
                    score += t.1 * t.2.weight() as f64;
                }
            }
            let id = ids[row as usize];
            if alive && score > 0.0 && top.accepts(score as f32, id) {
                top.push(score as f32, id);
                if top.is_full() {
                    let theta = theta_of(top);
                    while first_essential < m && prunable(prefix[first_essential], theta) {
                        first_essential += 1;
                    }
                    if first_essential == m {
                        break;
                    }
                }
            }
        }
    }
}

/// A rayon pool of `threads` workers (None: rayon's global pool).
pub use crate::bm25::thread_pool;
