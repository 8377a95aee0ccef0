//! Exact top-k of a batch of queries with shared work: the batch's queries are
//! split into groups, and each group walks the union of its terms term at a
//! time over tiles of rows, adding every posting to each query of the group
//! that has the term. A posting list is decoded once per group rather than once
//! per query, and the group's accumulator (rows x queries) stays in cache.
//! It is exhaustive, so it serves indexes whose segments are all small (there
//! the per-query path is exhaustive too); large segments are pruned per query.
//!
//! Scores are the per-query path's: each query's products (query weight x
//! stored weight, exact in f64) are summed in f64 in increasing term order, as
//! the term-at-a-time path does, and rounded once to f32; ties go to the lower
//! id. So the batch returns what `search` returns query by query.

use rayon::prelude::*;
use rustc_hash::FxHashMap;

use super::search::{Eligible, Hits, IdTop};
use super::SparseIndex;
use crate::postings::{Cursor, Weights};

/// Batches of at least this many queries take the shared path.
pub const BATCH_MIN: usize = 32;

/// At most this many queries share one accumulator.
const GROUP: usize = 128;

/// Rows per tile: the accumulator, TILE x GROUP f64, stays in L2 (measured
/// on 200k SPLADE-like documents: 64-200 queries x 256-1024 rows within 10%).
const TILE: usize = 512;

/// Below this, a score cannot be positive: the smallest positive f32.
const MIN_POS: f32 = f32::from_bits(1);

/// The union of a group's terms, ascending, each with the queries that have it.
struct GroupTerms {
    /// (term, start, end) into `qs`.
    terms: Vec<(u32, usize, usize)>,
    /// (query index within the group, query weight).
    qs: Vec<(u32, f64)>,
}

/// The (query, weight) pairs of one term in a group.
type QueryWeights<'a> = &'a [(u32, f64)];

impl GroupTerms {
    fn new(queries: &[Vec<(u32, f32)>]) -> Self {
        let mut by_term: FxHashMap<u32, Vec<(u32, f64)>> = FxHashMap::default();
        for (qi, q) in queries.iter().enumerate() {
            for &(t, w) in q {
                if w > 0.0 {
                    by_term.entry(t).or_default().push((qi as u32, w as f64));
                }
            }
        }
        let mut keys: Vec<u32> = by_term.keys().copied().collect();
        keys.sort_unstable();
        let mut terms = Vec::with_capacity(keys.len());
        let mut qs = Vec::new();
        for t in keys {
            let start = qs.len();
            qs.extend_from_slice(&by_term[&t]);
            terms.push((t, start, qs.len()));
        }
        GroupTerms { terms, qs }
    }
}

impl SparseIndex {
    /// Top-k of every query (pruned already), sharing postings decoding across
    /// groups of queries; groups and row ranges run in parallel on `pool`.
    pub(crate) fn search_batch_shared(
        &self,
        queries: &[Vec<(u32, f32)>],
        k: usize,
        el: &Eligible,
        pool: Option<&rayon::ThreadPool>,
    ) -> Vec<Hits> {
        let nq = queries.len();
        let threads = pool.map_or_else(rayon::current_num_threads, |p| p.current_num_threads());
        // Groups of equal size; when there are fewer groups than threads the
        // rows are split too (each part keeps its own top-k, merged at the end).
        let n_groups = nq.div_ceil(GROUP).max(1);
        let per = nq.div_ceil(n_groups);
        let parts = threads.div_ceil(n_groups).max(1);
        let n_rows = self.ids.len();
        let part_rows = n_rows.div_ceil(parts).div_ceil(TILE) * TILE;
        let tasks: Vec<(usize, usize)> = (0..n_groups).flat_map(|g| (0..parts).map(move |p| (g, p))).collect();
        let run = || {
            tasks
                .par_iter()
                .map(|&(g, p)| {
                    let qs = &queries[g * per..((g + 1) * per).min(nq)];
                    let lo = (p * part_rows).min(n_rows);
                    let hi = ((p + 1) * part_rows).min(n_rows);
                    self.group_topk(qs, k, el, lo as u32, hi as u32)
                })
                .collect::<Vec<Vec<IdTop>>>()
        };
        let results = match pool {
            Some(p) => p.install(run),
            None => run(),
        };
        let mut out = Vec::with_capacity(nq);
        for group in results.chunks(parts) {
            let mut it = group.iter().cloned();
            let mut tops = it.next().unwrap_or_default();
            for other in it {
                for (a, b) in tops.iter_mut().zip(other) {
                    a.merge(b);
                }
            }
            out.extend(tops.into_iter().map(|t| self.finish(t, k, el)));
        }
        out
    }

    /// The top-k of each of `queries` (at most GROUP) over rows `lo..hi`.
    fn group_topk(&self, queries: &[Vec<(u32, f32)>], k: usize, el: &Eligible, lo: u32, hi: u32) -> Vec<IdTop> {
        let g = queries.len();
        let mut tops: Vec<IdTop> = (0..g).map(|_| IdTop::new(k)).collect();
        if k == 0 || lo >= hi {
            return tops;
        }
        let gt = GroupTerms::new(queries);
        let check_rows = el.0.is_some() || self.n_deleted > 0;
        // Lowest score that may still enter each query's top-k (a prefilter;
        // `accepts` decides ties).
        let mut thr = vec![MIN_POS; g];
        let mut acc = vec![0f64; TILE * g];
        let dtype = self.dtype;
        for seg in &self.segments {
            let (s0, s1) = (seg.base, seg.base + seg.n_rows);
            let (a, b) = (lo.max(s0), hi.min(s1));
            if a >= b {
                continue;
            }
            let store = seg.store.bytes();
            let mut cursors: Vec<(Cursor<Weights>, QueryWeights)> = gt
                .terms
                .iter()
                .filter_map(|&(t, qs0, qs1)| {
                    let m = seg.find(t)?;
                    let mut c = Cursor::new(store, m.postings(), m.weights(dtype));
                    c.advance(a - s0);
                    Some((c, &gt.qs[qs0..qs1]))
                })
                .collect();
            if cursors.is_empty() {
                continue;
            }
            let mut t0 = a - s0;
            let end = b - s0;
            while t0 < end {
                let t1 = t0.saturating_add(TILE as u32).min(end);
                let mut any = false;
                for (c, qs) in cursors.iter_mut() {
                    if c.doc >= t1 {
                        continue;
                    }
                    any = true;
                    if let [(qi, qw)] = qs {
                        // One query has the term: no inner loop.
                        let (qi, qw) = (*qi as usize, *qw);
                        c.for_each_until(t1, |d, w| {
                            acc[(d - t0) as usize * g + qi] += qw * w as f64;
                        });
                    } else {
                        // Adding a posting to every query that has its term,
                        // one by one, measured faster than a dense multiply-add
                        // over all the group's queries (with zeros) even with AVX2.
                        c.for_each_until(t1, |d, w| {
                            let row = &mut acc[(d - t0) as usize * g..][..g];
                            let w = w as f64;
                            for &(qi, qw) in qs.iter() {
                                row[qi as usize] += qw * w;
                            }
                        });
                    }
                }
                if any {
                    let rows = (t1 - t0) as usize;
                    for (o, row) in acc[..rows * g].chunks_exact_mut(g).enumerate() {
                        for (qi, x) in row.iter_mut().enumerate() {
                            let s = *x as f32;
                            *x = 0.0;
                            if s >= thr[qi] {
                                let r = s0 + t0 + o as u32;
                                if check_rows && (!el.ok(r) || self.is_deleted(r)) {
                                    continue;
                                }
                                let id = self.ids[r as usize];
                                let top = &mut tops[qi];
                                if top.accepts(id, s) {
                                    top.push(id, s);
                                    thr[qi] = top.threshold().max(MIN_POS);
                                }
                            }
                        }
                    }
                }
                t0 = t1;
            }
        }
        tops
    }
}
