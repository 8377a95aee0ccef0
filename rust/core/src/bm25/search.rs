//! Query evaluation: exhaustive scores, exact top-k with MaxScore pruning,
//! batches in parallel, and BM25 as sparse vectors.

use std::sync::Arc;

use super::{Bm25Index, Method, TermInfo};
use crate::error::{Error, Result};
use crate::hash::StrMap;
use crate::mask::DocMask;
use crate::postings::{for_each_block, Cursor, Tf, BLOCK, END};
use crate::topk::TopK;

/// Corpora up to this size are always searched term at a time.
const DENSE_DOCS: usize = 1 << 16;

/// Accumulator entries checked at once against the entry gate.
const SCAN_CHUNK: usize = 16;

/// Most accumulator entries per block of the first pass, whose best scores
/// set a floor under the k-th best score.
const FLOOR_BLOCK: usize = 256;

/// Largest value of `xs` (-inf if empty), in four lanes so that it vectorises.
fn block_max(xs: &[f64]) -> f64 {
    let mut m = [f64::NEG_INFINITY; 4];
    let (quads, rest) = xs.as_chunks::<4>();
    for q in quads {
        for l in 0..4 {
            m[l] = if q[l] > m[l] { q[l] } else { m[l] };
        }
    }
    for &x in rest {
        m[0] = if x > m[0] { x } else { m[0] };
    }
    m[0].max(m[1]).max(m[2].max(m[3]))
}

/// An accumulator value `g` such that every x <= g scores at most `theta`:
/// (x + base) as f32 <= theta, as rounding is monotonic. A lower gate only
/// costs time, so when a few steps of about one ulp do not settle it there is
/// none (-inf).
fn entry_gate(theta: f32, base: f64) -> f64 {
    let t = theta as f64;
    if !t.is_finite() {
        return t;
    }
    let step = t.abs().max(base.abs()) * f64::EPSILON;
    let mut g = t - base;
    for _ in 0..4 {
        if g + base <= t {
            return g;
        }
        g -= step;
    }
    f64::NEG_INFINITY
}

/// Top k (k >= 1) of `(acc[d] + base) as f32` over the documents `f` allows
/// (ties by lower id), zeroing `acc` on the way.
///
/// With every document eligible, a first pass takes the best score of each
/// block: k blocks reach their k-th best, so k distinct documents do, and no
/// document below it is in the top k. The scan then reads a chunk entry by
/// entry only if some value in it passes the gate of that floor and of the
/// running threshold (one vectorised comparison per chunk).
fn scan_top<F: Filter>(acc: &mut [f64], base: f64, k: usize, f: F) -> TopK {
    let score = |x: f64| (x + base) as f32;
    let mut floor = f32::NEG_INFINITY;
    // About 8k blocks (a floor near the k-th best score), each whole chunks.
    let block = (acc.len() / (8 * k)).clamp(SCAN_CHUNK, FLOOR_BLOCK) / SCAN_CHUNK * SCAN_CHUNK;
    if F::ALL && k <= acc.len() / block {
        let mut best: Vec<f32> = acc.chunks(block).map(|b| score(block_max(b))).collect();
        floor = *best.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a)).1;
    }
    let floor_gate = if floor.is_finite() {
        entry_gate(floor.next_down(), base)
    } else {
        f64::NEG_INFINITY
    };
    let mut top = TopK::new(k);
    let mut theta = f32::NEG_INFINITY;
    let mut gate = floor_gate;
    // Entry by entry; returns the gate, raised as the threshold rises.
    let mut visit = |first: u32, chunk: &[f64], gate: f64| -> f64 {
        let mut gate = gate;
        for (d, &x) in (first..).zip(chunk) {
            let s = score(x);
            // Ids rise through the scan: a score equal to the threshold never enters.
            if s > theta && s >= floor && f.ok(d) {
                top.push(d, s);
                let t = top.threshold();
                if t != theta {
                    theta = t;
                    gate = floor_gate.max(entry_gate(t, base));
                }
            }
        }
        gate
    };
    let (chunks, rest) = acc.as_chunks_mut::<SCAN_CHUNK>();
    for (i, chunk) in chunks.iter_mut().enumerate() {
        if chunk.iter().fold(false, |hit, &x| hit | (x > gate)) {
            gate = visit((i * SCAN_CHUNK) as u32, chunk, gate);
        }
        *chunk = [0.0; SCAN_CHUNK];
    }
    visit((chunks.len() * SCAN_CHUNK) as u32, rest, gate);
    rest.fill(0.0);
    top
}

thread_local! {
    /// Dense score accumulator (kept zeroed between queries).
    static ACC: std::cell::RefCell<Vec<f64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A query resolved against the vocabulary: (term id, count) in first-seen order,
/// as bm25s counts repeated query tokens once per occurrence.
#[derive(Clone, Debug, Default)]
pub struct Query {
    pub terms: Vec<(u32, u32)>,
    /// Tokens this index does not have, with their counts (first-seen order).
    /// They score nothing with the index's own statistics; with
    /// [`GlobalStats`] they add the BM25L/BM25+ constant of absent terms.
    pub unknown: Vec<(String, u32)>,
}

/// Ranked hits of one query: (doc id, score), best first.
pub type Hits = crate::topk::Hits<u32>;

/// Corpus statistics of a whole collection, to score one segment of it
/// exactly as a single index over the collection would.
#[derive(Clone, Debug, Default)]
pub struct GlobalStats {
    /// Documents in the collection (>= 1).
    pub n_docs: u64,
    /// Average document length over the collection (finite, > 0); give it as
    /// total tokens / n_docs computed in f64 for bit-exact length normalisation.
    pub avgdl: f64,
    /// Document frequency over the collection by token (at least the query
    /// tokens); a missing token counts as df 0, i.e. absent from the collection.
    pub df: StrMap<String, u64>,
}

impl GlobalStats {
    /// Check the collection-wide numbers (per-token checks happen per query).
    pub fn validate(&self) -> Result<()> {
        if self.n_docs == 0 {
            return Err(Error::invalid("global statistics: n_docs must be >= 1"));
        }
        if !(self.avgdl.is_finite() && self.avgdl > 0.0) {
            return Err(Error::invalid(format!(
                "global statistics: avgdl must be a finite number > 0, got {}",
                self.avgdl
            )));
        }
        if let Some((t, &d)) = self.df.iter().find(|(_, &d)| d > self.n_docs) {
            return Err(Error::invalid(format!(
                "global statistics: df of {t:?} is {d}, more than n_docs = {}",
                self.n_docs
            )));
        }
        Ok(())
    }
}

/// Options of [`Bm25Index::search_opts`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SearchOpts<'a> {
    /// Eligible documents (by doc id).
    pub mask: Option<DocMask<'a>>,
    /// Score with these collection statistics instead of the index's own.
    pub stats: Option<&'a GlobalStats>,
}

/// `kn` for one foreign avgdl, and the factor that turns the stored
/// (local-avgdl) tf-weight bounds into bounds under it.
pub(crate) struct KnCache {
    avgdl_bits: u64,
    kn: Arc<[f32]>,
    inv_c: f64,
}

/// A query ready to score: the weight (count * idf) of each term with one,
/// and the constant every document gets from absent terms.
struct Plan {
    terms: Vec<(u32, f64)>,
    base: f64,
}

/// Which documents may be returned.
trait Filter: Copy {
    /// Every document is eligible.
    const ALL: bool = false;
    fn ok(&self, d: u32) -> bool;
    /// The first eligible doc >= d, END if none.
    fn next_ok(&self, d: u32) -> u32;
}

#[derive(Clone, Copy)]
struct All;

impl Filter for All {
    const ALL: bool = true;
    #[inline(always)]
    fn ok(&self, _: u32) -> bool {
        true
    }
    #[inline(always)]
    fn next_ok(&self, d: u32) -> u32 {
        d
    }
}

impl Filter for DocMask<'_> {
    #[inline(always)]
    fn ok(&self, d: u32) -> bool {
        self.contains(d as u64)
    }
    #[inline]
    fn next_ok(&self, d: u32) -> u32 {
        self.next_from(d)
    }
}

/// Turns a stored block/term bound of the tf weight into the bound MaxScore uses.
trait BoundMap: Copy {
    fn map(&self, b: f32) -> f64;
}

/// The index's own statistics: stored bounds hold as they are.
#[derive(Clone, Copy)]
struct Stored;

impl BoundMap for Stored {
    #[inline(always)]
    fn map(&self, b: f32) -> f64 {
        b as f64
    }
}

/// Bounds under a foreign avgdl A' (see `kn_for`): every document has
/// kn' >= c * kn, and every variant's tf weight is an increasing function of
/// r = tf / kn alone, so a stored bound B = max w(r) maps to w(r_max / c):
/// invert w at B, divide by c (multiply by `inv_c`), apply w again.
#[derive(Clone, Copy)]
struct Rescaled {
    method: Method,
    k1: f64,
    delta: f64,
    absent: f64,
    inv_c: f64,
}

impl BoundMap for Rescaled {
    #[inline]
    fn map(&self, b: f32) -> f64 {
        let b = b as f64;
        let (k1, m) = (self.k1, self.k1 + 1.0);
        let exact = match self.method {
            // w = r / (1 + r)
            Method::Lucene | Method::Robertson => {
                if b >= 1.0 {
                    1.0
                } else {
                    let r = b / (1.0 - b) * self.inv_c;
                    r / (1.0 + r)
                }
            }
            // w = (k1 + 1) r / (1 + r) (BM25+: its + delta cancels against the absent part).
            Method::Atire | Method::Bm25Plus => {
                let y = b / m;
                if y >= 1.0 {
                    m
                } else {
                    let r = y / (1.0 - y) * self.inv_c;
                    m * r / (1.0 + r)
                }
            }
            // w = (k1 + 1) x / (k1 + x) - absent with x = k1 r + delta.
            Method::Bm25L => {
                if k1 <= 0.0 {
                    // The tf part is constant: every weight is 0.
                    b
                } else {
                    let y = b + self.absent;
                    if y >= m {
                        m - self.absent
                    } else {
                        let x = k1 * y / (m - y);
                        let x2 = (x - self.delta).max(0.0) * self.inv_c + self.delta;
                        m * x2 / (k1 + x2) - self.absent
                    }
                }
            }
        };
        // Round up, relative and absolute (the f32 weights the search computes
        // carry rounding of the size of the tf part), so that float error
        // never prunes a real hit.
        exact.max(0.0) * (1.0 + 1e-5) + 1e-6 * (1.0 + m + self.delta)
    }
}

impl Bm25Index {
    /// Resolve query tokens; tokens not in the vocabulary are kept apart in `unknown`.
    pub fn query<S: AsRef<str>>(&self, tokens: &[S]) -> Query {
        let mut terms: Vec<(u32, u32)> = Vec::with_capacity(tokens.len());
        let mut unknown: Vec<(String, u32)> = Vec::new();
        // Short queries (the common case) count through a small table on the
        // stack (open addressing, at most half full): no hash map is built.
        if tokens.len() <= 64 {
            const SLOTS: usize = 128;
            let mut slot = [u32::MAX; SLOTS];
            for t in tokens {
                let t = t.as_ref();
                if let Some(id) = self.term_id(t) {
                    let mut h = (id.wrapping_mul(0x9E37_79B1) >> 25) as usize;
                    loop {
                        match slot[h] {
                            u32::MAX => {
                                slot[h] = terms.len() as u32;
                                terms.push((id, 1));
                                break;
                            }
                            j if terms[j as usize].0 == id => {
                                terms[j as usize].1 += 1;
                                break;
                            }
                            _ => h = (h + 1) % SLOTS,
                        }
                    }
                } else {
                    match unknown.iter_mut().find(|x| x.0 == t) {
                        Some(x) => x.1 += 1,
                        None => unknown.push((t.to_string(), 1)),
                    }
                }
            }
            return Query { terms, unknown };
        }
        // Longer ones through hash maps (linear in the query length, however many distinct
        // tokens); terms keep the order of their first occurrence.
        let cap = tokens.len();
        let mut term_at: rustc_hash::FxHashMap<u32, usize> =
            rustc_hash::FxHashMap::with_capacity_and_hasher(cap, Default::default());
        let mut unknown_at: rustc_hash::FxHashMap<&str, usize> = Default::default();
        for t in tokens {
            let t = t.as_ref();
            if let Some(id) = self.term_id(t) {
                let i = *term_at.entry(id).or_insert_with(|| {
                    terms.push((id, 0));
                    terms.len() - 1
                });
                terms[i].1 += 1;
            } else {
                let i = *unknown_at.entry(t).or_insert_with(|| {
                    unknown.push((t.to_string(), 0));
                    unknown.len() - 1
                });
                unknown[i].1 += 1;
            }
        }
        Query { terms, unknown }
    }

    /// Score every query term contributes to a document that lacks it (BM25L/BM25+ only).
    fn absent_constant(&self, q: &Query) -> f64 {
        let a = self.params.tf_part_absent() as f64;
        if a == 0.0 {
            return 0.0;
        }
        q.terms.iter().map(|&(t, c)| c as f64 * self.idf(t) * a).sum()
    }

    /// Term weights and base constant of `q`, from the index's own statistics
    /// or from `stats` (global df and N; an error if they contradict this index).
    fn plan(&self, q: &Query, stats: Option<&GlobalStats>) -> Result<Plan> {
        let Some(st) = stats else {
            let terms = q
                .terms
                .iter()
                .map(|&(t, c)| (t, c as f64 * self.idf(t)))
                .filter(|x| x.1 > 0.0)
                .collect();
            return Ok(Plan {
                terms,
                base: self.absent_constant(q),
            });
        };
        let method = self.params.method;
        let a = self.params.tf_part_absent() as f64;
        let n = st.n_docs as f64;
        let mut terms = Vec::with_capacity(q.terms.len());
        let mut base = 0.0;
        for &(t, c) in &q.terms {
            let tok = &self.vocab[t as usize];
            // The collection may count fewer documents than this index holds: its
            // statistics cover live documents only, and deleted ones are masked out here.
            let gdf = st.df.get(tok).copied().unwrap_or(0);
            if gdf == 0 {
                continue; // only deleted documents have it: as if the term were unknown
            }
            if gdf > st.n_docs {
                return Err(Error::invalid(format!(
                    "global statistics: df of {tok:?} is {gdf}, more than n_docs = {}",
                    st.n_docs
                )));
            }
            let idf = method.idf(gdf as f64, n);
            let w = c as f64 * idf;
            if a != 0.0 {
                base += w * a;
            }
            if w > 0.0 {
                terms.push((t, w));
            }
        }
        if a != 0.0 {
            // Terms this index lacks still count for BM25L/BM25+, if the
            // collection has them (a single index would know them).
            for (tok, c) in &q.unknown {
                let gdf = st.df.get(tok.as_str()).copied().unwrap_or(0);
                if gdf == 0 {
                    continue;
                }
                if gdf > st.n_docs {
                    return Err(Error::invalid(format!(
                        "global statistics: df of {tok:?} is {gdf}, more than n_docs = {}",
                        st.n_docs
                    )));
                }
                base += *c as f64 * method.idf(gdf as f64, n) * a;
            }
        }
        Ok(Plan { terms, base })
    }

    /// Length normalisation for `stats` (None: this index's own), cached per avgdl.
    ///
    /// Bound scale: with A the local and A' the global avgdl and L >= 0,
    /// kn' = k1 (1 - b + b L/A') and kn = k1 (1 - b + b L/A). If A' >= A:
    /// (1 - b + b L/A') - (A/A')(1 - b + b L/A) = (1 - b)(1 - A/A') >= 0, so
    /// kn' >= (A/A') kn; if A' < A then L/A' >= L/A and kn' >= kn. Hence
    /// kn' >= c kn with c = min(1, A/A') for every document, and
    /// r' = tf/kn' <= (tf/kn)/c. Instead of that closed form we take the
    /// tightest c over the actual f32 values, c = min_d kn'[d]/kn[d] (>= the
    /// closed form), stored as inv_c = max_d kn[d]/kn'[d].
    fn kn_for(&self, stats: Option<&GlobalStats>) -> Option<(Arc<[f32]>, f64)> {
        let st = stats?;
        if st.avgdl.to_bits() == self.avgdl.to_bits() {
            return None;
        }
        let bits = st.avgdl.to_bits();
        let mut cache = self.kn_cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = cache.as_ref().filter(|c| c.avgdl_bits == bits) {
            return Some((c.kn.clone(), c.inv_c));
        }
        let kn: Arc<[f32]> = self.doc_lens.iter().map(|&l| self.params.kn(l, st.avgdl)).collect();
        let mut inv_c = 0f64;
        for (&old, &new) in self.kn.iter().zip(kn.iter()) {
            if old > 0.0 {
                inv_c = inv_c.max(if new > 0.0 {
                    old as f64 / new as f64
                } else {
                    f64::INFINITY
                });
            }
        }
        // Scaled bounds must stay finite; 1e30 makes them the variant's supremum.
        let inv_c = inv_c.min(1e30) * (1.0 + 1e-9);
        *cache = Some(KnCache {
            avgdl_bits: bits,
            kn: kn.clone(),
            inv_c,
        });
        Some((kn, inv_c))
    }

    /// Collection statistics must be valid (per-token df checks happen per query). They
    /// may describe fewer documents than this index holds: the live ones of a collection
    /// whose deleted documents the caller masks out.
    fn check_stats(&self, stats: Option<&GlobalStats>) -> Result<()> {
        let Some(st) = stats else { return Ok(()) };
        st.validate()
    }

    fn rescaled(&self, inv_c: f64) -> Rescaled {
        let p = self.params;
        Rescaled {
            method: p.method,
            k1: p.k1 as f64,
            delta: p.delta as f64,
            absent: p.tf_part_absent() as f64,
            inv_c,
        }
    }

    /// BM25 score of every document (exhaustive; the reference for `search`).
    pub fn get_scores(&self, q: &Query) -> Vec<f32> {
        let plan = self.plan(q, None).expect("local statistics are consistent");
        self.scores_with(&plan, &self.kn, self.n_docs() <= DENSE_DOCS)
    }

    /// [`get_scores`](Self::get_scores) with collection statistics: equal to
    /// what one index over the whole collection gives this index's documents.
    pub fn get_scores_opts(&self, q: &Query, stats: Option<&GlobalStats>) -> Result<Vec<f32>> {
        self.check_stats(stats)?;
        let plan = self.plan(q, stats)?;
        Ok(match self.kn_for(stats) {
            Some((kn, _)) => self.scores_with(&plan, &kn, false),
            None => self.scores_with(&plan, &self.kn, self.n_docs() <= DENSE_DOCS),
        })
    }

    fn scores_with(&self, plan: &Plan, kn: &[f32], impacts: bool) -> Vec<f32> {
        let mut acc = vec![0f64; self.n_docs()];
        let store = self.postings.bytes();
        for &(t, w) in &plan.terms {
            self.accumulate(store, t, w, kn, impacts, &mut acc);
        }
        acc.into_iter().map(|s| (s + plan.base) as f32).collect()
    }

    /// Add term `t`'s contributions (weight `w` = count * idf) to `acc`, block by
    /// block, with normalisation `kn`; `impacts`: read (or fill) the cached
    /// per-term weights, valid only for the index's own `kn`.
    #[inline]
    fn accumulate(&self, store: &[u8], t: u32, w: f64, kn: &[f32], impacts: bool, acc: &mut [f64]) {
        let info = self.terms[t as usize];
        if w <= 0.0 {
            return;
        }
        let p = self.params;
        let (k1, delta, absent) = (p.k1, p.delta, p.tf_part_absent());
        // One monomorphic loop per variant, so the inner loop has no match.
        match p.method {
            Method::Lucene | Method::Robertson => {
                self.accumulate_with(store, info, w, kn, impacts, acc, |tf, kn| tf / (tf + kn))
            }
            Method::Atire => {
                self.accumulate_with(store, info, w, kn, impacts, acc, |tf, kn| tf * (k1 + 1.0) / (tf + kn))
            }
            Method::Bm25L => {
                self.accumulate_with(store, info, w, kn, impacts, acc, |tf, kn| p.tf_part(tf, kn) - absent)
            }
            Method::Bm25Plus => self.accumulate_with(store, info, w, kn, impacts, acc, |tf, kn| {
                (k1 + 1.0) * tf / (kn + tf) + delta - absent
            }),
        }
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn accumulate_with(
        &self,
        store: &[u8],
        info: TermInfo,
        w: f64,
        kn: &[f32],
        impacts: bool,
        acc: &mut [f64],
        weight: impl Fn(f32, f32) -> f32,
    ) {
        if impacts {
            let impacts = self.impacts[info.term as usize].get_or_init(|| {
                let mut v = Vec::with_capacity(info.df as usize);
                for_each_block(store, info.postings(), Tf, |docs, tfs| {
                    v.extend(
                        docs.iter()
                            .zip(tfs)
                            .map(|(&d, &tf)| (d, weight(tf as f32, kn[d as usize]))),
                    );
                });
                v.into_boxed_slice()
            });
            for &(d, x) in impacts.iter() {
                acc[d as usize] += w * x as f64;
            }
            return;
        }
        let mut wts = [0f32; BLOCK];
        for_each_block(store, info.postings(), Tf, |docs, tfs| {
            // Weights first (independent divisions pipeline well), then the scatter.
            for ((x, &d), &tf) in wts.iter_mut().zip(docs).zip(tfs) {
                *x = weight(tf as f32, kn[d as usize]);
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
        let plan = self.plan(q, None).expect("local statistics are consistent");
        // Measured: on 1M documents MaxScore beats scoring every posting even
        // for queries of frequent words, so only small corpora go dense.
        if n <= DENSE_DOCS {
            return self.dense_with(&plan, &self.kn, true, k, All);
        }
        self.maxscore_with(&plan, &self.kn, k, All, Stored)
    }

    /// Top-k with options: a mask of eligible documents and/or collection
    /// statistics. Exact like [`search`](Self::search): the same hits as
    /// sorting [`get_scores_opts`](Self::get_scores_opts) restricted to the
    /// mask by (score desc, id asc). Returns min(k, n_docs) hits, or fewer when
    /// fewer documents are eligible.
    pub fn search_opts(&self, q: &Query, k: usize, opts: &SearchOpts) -> Result<Hits> {
        self.check_stats(opts.stats)?;
        let kn = self.kn_for(opts.stats);
        self.search_resolved(q, k, opts, kn.as_ref())
    }

    /// Many queries in parallel with the same options; statistics are
    /// checked and the normalisation resolved once for the batch.
    pub fn search_batch_opts(
        &self,
        queries: &[Query],
        k: usize,
        opts: &SearchOpts,
        pool: Option<&rayon::ThreadPool>,
    ) -> Result<Vec<Hits>> {
        self.check_stats(opts.stats)?;
        let kn = self.kn_for(opts.stats);
        crate::parallel::map_batch(queries, pool, |q| self.search_resolved(q, k, opts, kn.as_ref()))
            .into_iter()
            .collect()
    }

    fn search_resolved(&self, q: &Query, k: usize, opts: &SearchOpts, kn: Option<&(Arc<[f32]>, f64)>) -> Result<Hits> {
        let n = self.n_docs();
        let k = k.min(n);
        let plan = self.plan(q, opts.stats)?;
        if k == 0 {
            return Ok(Vec::new());
        }
        let dense = n <= DENSE_DOCS;
        Ok(match (kn, opts.mask) {
            (None, None) if dense => self.dense_with(&plan, &self.kn, true, k, All),
            (None, Some(m)) if dense => self.dense_with(&plan, &self.kn, true, k, m),
            (Some((kn, _)), None) if dense => self.dense_with(&plan, kn, false, k, All),
            (Some((kn, _)), Some(m)) if dense => self.dense_with(&plan, kn, false, k, m),
            (None, None) => self.maxscore_with(&plan, &self.kn, k, All, Stored),
            (None, Some(m)) => self.maxscore_with(&plan, &self.kn, k, m, Stored),
            (Some((kn, c)), None) => self.maxscore_with(&plan, kn, k, All, self.rescaled(*c)),
            (Some((kn, c)), Some(m)) => self.maxscore_with(&plan, kn, k, m, self.rescaled(*c)),
        })
    }

    /// Term-at-a-time into a per-thread accumulator, then top-k over the
    /// documents touched.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn search_dense(&self, q: &Query, k: usize) -> Hits {
        let k = k.min(self.n_docs());
        let plan = self.plan(q, None).expect("local statistics are consistent");
        self.dense_with(&plan, &self.kn, self.n_docs() <= DENSE_DOCS, k, All)
    }

    fn dense_with<F: Filter>(&self, plan: &Plan, kn: &[f32], impacts: bool, k: usize, f: F) -> Hits {
        let n = self.n_docs();
        let store = self.postings.bytes();
        let base = plan.base;
        ACC.with(|cell| {
            let acc = &mut *cell.borrow_mut();
            if acc.len() < n {
                acc.resize(n, 0.0);
            }
            for &(t, w) in &plan.terms {
                self.accumulate(store, t, w, kn, impacts, &mut acc[..n]);
            }
            // Documents that matched nothing score `base` and, ranked by id,
            // fill in exactly as in `get_scores`.
            let top = scan_top(&mut acc[..n], base, k, f);
            self.fill(top.into_sorted(), k, base, f)
        })
    }

    /// Fewer matching documents than k: the rest score the same (zero, or the
    /// BM25L/BM25+ constant) and follow in id order (eligible ones only).
    fn fill<F: Filter>(&self, mut hits: Hits, k: usize, base: f64, f: F) -> Hits {
        if hits.len() < k {
            let n = self.n_docs() as u32;
            let mut taken: Vec<u32> = hits.iter().map(|h| h.0).collect();
            taken.sort_unstable();
            let mut next = f.next_ok(0);
            let mut j = 0;
            while hits.len() < k && next < n {
                while j < taken.len() && taken[j] < next {
                    j += 1;
                }
                if j >= taken.len() || taken[j] != next {
                    hits.push((next, base as f32));
                }
                next = f.next_ok(next + 1);
            }
        }
        hits
    }

    #[cfg(any(test, fuzzing))]
    pub(crate) fn search_maxscore(&self, q: &Query, k: usize) -> Hits {
        let k = k.min(self.n_docs());
        let plan = self.plan(q, None).expect("local statistics are consistent");
        self.maxscore_with(&plan, &self.kn, k, All, Stored)
    }

    fn maxscore_with<F: Filter, M: BoundMap>(&self, plan: &Plan, kn: &[f32], k: usize, f: F, bm: M) -> Hits {
        let store = self.postings.bytes();
        // Terms by upper bound, ascending: MaxScore's non-essential prefix.
        let mut terms: Vec<(f64, f64, Cursor<Tf>)> = plan
            .terms
            .iter()
            .map(|&(t, w)| {
                let info = self.terms[t as usize];
                let ub = w * bm.map(info.max_tf_weight);
                (ub, w, Cursor::new(store, info.postings(), Tf))
            })
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
        let base = plan.base;
        for p in prefix.iter_mut() {
            *p += base;
        }
        let mut top = TopK::new(k);
        let mut first_essential = 0usize;
        let params = self.params;
        // The last block-max check that passed: it holds for every doc below
        // `passed_until` while the threshold (and so the essential set) stays.
        let mut passed_until = 0u32;
        // Per term, the block its bound was last read from (targets only grow).
        let mut hints = vec![0usize; m];
        let mut passed_theta = f64::NAN;
        loop {
            let mut d = END;
            for t in &terms[first_essential..] {
                d = d.min(t.2.doc);
            }
            if d == END {
                break;
            }
            if !f.ok(d) {
                // Skip ineligible documents before any scoring: jump the
                // essential cursors to the next eligible one.
                let e = f.next_ok(d + 1);
                if e == END {
                    break;
                }
                for t in terms[first_essential..].iter_mut() {
                    t.2.advance(e);
                }
                continue;
            }
            if top.is_full() && !(d < passed_until && top.threshold() as f64 == passed_theta) {
                // Block-max skip: the essential terms' block bounds hold for
                // every doc up to the nearest block end; if even they cannot
                // lift a doc past the threshold, jump the whole range.
                let theta = top.threshold() as f64;
                let mut ub = if first_essential > 0 {
                    prefix[first_essential - 1]
                } else {
                    base
                };
                let mut boundary = END;
                for t in &terms[first_essential..] {
                    let (b, end) = t.2.block_bound(d);
                    ub += t.1 * bm.map(b);
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
                passed_until = boundary;
                passed_theta = theta;
            }
            let kn = kn[d as usize];
            let mut score = base;
            for t in terms[first_essential..].iter_mut() {
                if t.2.doc == d {
                    score += t.1 * params.tf_weight(t.2.value() as f32, kn) as f64;
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
                if score + t.1 * bm.map(t.2.bound_at_from(&mut hints[i], d)) + rest <= theta {
                    alive = false;
                    break;
                }
                t.2.advance(d);
                if t.2.doc == d {
                    score += t.1 * params.tf_weight(t.2.value() as f32, kn) as f64;
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
        self.fill(top.into_sorted(), k, base, f)
    }

    /// Search many queries in parallel on `pool` (or rayon's global pool).
    pub fn search_batch(&self, queries: &[Query], k: usize, pool: Option<&rayon::ThreadPool>) -> Vec<Hits> {
        crate::parallel::map_batch(queries, pool, |q| self.search(q, k))
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
        let mut pairs: Vec<(u32, f32)> = self
            .query(tokens)
            .terms
            .into_iter()
            .map(|(t, c)| (t, c as f32))
            .collect();
        pairs.sort_unstable_by_key(|p| p.0);
        pairs.into_iter().unzip()
    }
}

pub use crate::parallel::thread_pool;
