//! Exact top-k of one query over a large segment: term-at-a-time MaxScore.
//!
//! The query's terms are taken in decreasing order of their upper bound
//! (query weight x the term's largest stored weight). The first ones (short,
//! high-impact lists, usually) are accumulated term at a time into a dense
//! f64 array while a threshold `theta` is kept: the k-th largest partial
//! score among distinct eligible documents (a partial score only grows, so
//! those k documents end at least that high). Once the bounds of the terms
//! left sum to less than half of `theta`, accumulation stops: a document
//! none of the accumulated terms reached cannot enter the top k, and the few
//! documents whose partial score plus the bounds left can still reach `theta`
//! look the remaining terms up (doc-ordered cursor skips, block-max bounds),
//! dropping out as soon as their bound falls below the (rising) threshold.
//!
//! Pruning is exact: a document is dropped only when its upper bound is below
//! `theta` by a relative margin (2e-6) larger than f64 summation noise plus the
//! final rounding to f32, so its f32 score is strictly below k scores that
//! are in (or will be in) the top k, whatever the ids. Scores are the
//! products query weight x stored weight, exact in f64, summed in f64 (in the
//! order the terms are taken) and rounded once to f32.

use super::search::{Eligible, IdTop, ACC};
use super::{Segment, SparseIndex, TermMeta};
use crate::postings::{for_each_block, Cursor};

/// Stop accumulating once the bounds of the terms left sum below this
/// fraction of the threshold (on SPLADE-like data 0.5 balances postings
/// accumulated against candidates looked up; 0.3-0.7 measured within noise).
const STOP_FRACTION: f64 = 0.5;

/// Lists longer than 1/LONG_LIST of the segment's rows do not feed the
/// threshold's candidates (a test per posting there costs more than it finds).
const LONG_LIST: usize = 8;

/// Relative margin of every pruning test (see the module docs).
const MARGIN: f64 = 1.0 + 2e-6;

/// Below this threshold nothing is pruned: the margin argument needs scores
/// that round to normal f32 (subnormals are spaced wider than the margin).
const MIN_THETA: f64 = 1e-30;

#[inline]
fn prunable(bound: f64, theta: f64) -> bool {
    bound * MARGIN < theta && theta > MIN_THETA
}

/// The k-th largest of `vals` (len >= k >= 1), reordering them.
fn kth_largest(vals: &mut [f64], k: usize) -> f64 {
    let n = vals.len();
    let (_, v, _) = vals.select_nth_unstable_by(n - k, |a, b| a.total_cmp(b));
    *v
}

impl SparseIndex {
    /// Term-at-a-time MaxScore over one segment, feeding the shared heap
    /// (whose threshold, from earlier segments, seeds `theta`).
    pub(crate) fn search_segment_maxscore(&self, seg: &Segment, q: &[(u32, f32)], top: &mut IdTop, el: &Eligible) {
        let k = top.capacity();
        if k == 0 {
            return;
        }
        let store = seg.store.bytes();
        let dtype = self.dtype;
        // (query weight, term, upper bound), by decreasing bound.
        let mut terms: Vec<(f64, &TermMeta, f64)> = q
            .iter()
            .filter(|p| p.1 > 0.0)
            .filter_map(|&(t, qw)| {
                let m = seg.find(t)?;
                Some((qw as f64, m, qw as f64 * m.max as f64))
            })
            .collect();
        if terms.is_empty() {
            return;
        }
        terms.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.1.term.cmp(&b.1.term)));
        let m = terms.len();
        // rest[i]: bound of the terms i.. together.
        let mut rest = vec![0f64; m + 1];
        for i in (0..m).rev() {
            rest[i] = rest[i + 1] + terms[i].2;
        }
        let n = seg.n_rows as usize;
        let base = seg.base;
        let check_rows = el.0.is_some() || self.n_deleted > 0;
        let live = |d: u32| !check_rows || (el.ok(base + d) && !self.is_deleted(base + d));
        let mut theta = (top.threshold() as f64).max(0.0);
        ACC.with(|cell| {
            let acc = &mut *cell.borrow_mut();
            if acc.len() < n {
                acc.resize(n, 0.0);
            }
            let acc = &mut acc[..n];
            // Documents whose partial score reached the threshold when last
            // raised: where the next threshold is looked for.
            let mut high: Vec<u32> = Vec::new();
            let mut vals: Vec<f64> = Vec::new();
            let mut i = 0;
            while i < m && !(theta > MIN_THETA && rest[i] < STOP_FRACTION * theta) {
                let (qw, meta, _) = terms[i];
                if (meta.df as usize) * LONG_LIST <= n {
                    // A short list: documents that reach the threshold are
                    // where the next one is looked for.
                    let push_at = theta;
                    for_each_block(store, meta.postings(), meta.weights(dtype), |docs, ws| {
                        for (&d, &w) in docs.iter().zip(ws) {
                            let v = acc[d as usize] + qw * w as f64;
                            acc[d as usize] = v;
                            if v >= push_at {
                                high.push(d);
                            }
                        }
                    });
                } else {
                    // A long list (low weights, usually): no test per posting;
                    // documents it lifts are seen again through shorter lists.
                    for_each_block(store, meta.postings(), meta.weights(dtype), |docs, ws| {
                        for (&d, &w) in docs.iter().zip(ws) {
                            acc[d as usize] += qw * w as f64;
                        }
                    });
                }
                i += 1;
                if high.len() >= k {
                    high.sort_unstable();
                    high.dedup();
                    high.retain(|&d| live(d));
                    if high.len() >= k {
                        vals.clear();
                        vals.extend(high.iter().map(|&d| acc[d as usize]));
                        let t = kth_largest(&mut vals, k);
                        high.retain(|&d| acc[d as usize] >= t);
                        theta = theta.max(t);
                    }
                }
            }
            // Candidates: documents the accumulated terms reached whose bound
            // can still reach theta (the others, at most rest[i] < theta, cannot).
            let r = rest[i];
            let mut cands: Vec<(u32, f64)> = Vec::new();
            // Eight rows at a time: a branch-free test (vectorised) skips
            // the rows that are no candidate, and zeroes them.
            for (ci, chunk) in acc.chunks_mut(8).enumerate() {
                let hit = chunk.iter().fold(false, |a, &x| a | !prunable(x + r, theta));
                if hit {
                    for (o, &v) in chunk.iter().enumerate() {
                        let d = (ci * 8 + o) as u32;
                        if v > 0.0 && !prunable(v + r, theta) && live(d) {
                            cands.push((d, v));
                        }
                    }
                }
                chunk.fill(0.0);
            }
            // The remaining terms, looked up for the candidates (in doc order).
            for j in i..m {
                if cands.is_empty() {
                    break;
                }
                let (qw, meta, _) = terms[j];
                let after = rest[j + 1];
                let mut c = Cursor::new(store, meta.postings(), meta.weights(dtype));
                // Candidates come in doc order: bounds read through one hint.
                let mut hint = 0;
                cands.retain_mut(|(d, v)| {
                    if prunable(*v + rest[j], theta) {
                        return false;
                    }
                    if prunable(*v + qw * c.bound_at_from(&mut hint, *d) as f64 + after, theta) {
                        return false;
                    }
                    c.advance(*d);
                    if c.doc == *d {
                        *v += qw * c.value() as f64;
                    }
                    true
                });
                if cands.len() >= k {
                    vals.clear();
                    vals.extend(cands.iter().map(|c| c.1));
                    theta = theta.max(kth_largest(&mut vals, k));
                }
            }
            for (d, v) in cands {
                let s = v as f32;
                let id = self.ids[(base + d) as usize];
                if s > 0.0 && top.accepts(id, s) {
                    top.push(id, s);
                }
            }
        });
    }
}
