//! An inverted index for sparse vectors: learned sparse (BGE-M3 lexical
//! weights, SPLADE) and BM25 vectors. Exact top-k by dot product with
//! MaxScore pruning.
//!
//! # Design
//!
//! - Documents are rows `0..n_rows` in insertion order; each row carries the
//!   caller's id (a non-negative integer) and an id -> row map answers
//!   `remove` and duplicate checks.
//! - The postings live in **segments**, each covering a contiguous range of
//!   rows and encoded once (doc gaps bit-packed in blocks of 128 with a
//!   per-block max weight, term upper bounds; see [`crate::postings`]). Every `add`
//!   appends one new segment; a small segment is merged with the one before
//!   it once it reaches a quarter of its size (and never more than
//!   [`MAX_SEGMENTS`] are kept), so an index grown one document at a time is
//!   re-encoded O(1) times per document on average and searches see
//!   O(log n) segments.
//! - `remove` sets tombstones (removed rows are never returned); when a
//!   quarter of the rows are tombstones (or on `compact`), all segments are
//!   rewritten into one without them.
//! - Search runs term-at-a-time MaxScore with block-max lookups on large
//!   segments (see `maxscore.rs`) and exhaustive term-at-a-time scoring on
//!   small ones, sharing one top-k heap (and so its threshold) across
//!   segments. A batch is one task per query, except when every segment is
//!   small: then groups of queries share postings decoding (`batch.rs`).
//!
//! # Weights
//!
//! Weights must be finite and >= 0 (learned sparse weights are ReLU outputs;
//! a negative weight would break the pruning bounds), zeros are dropped, and a
//! term id may occur once per document. They are stored as:
//! - float32: exact;
//! - float16: round to nearest even, relative error <= 2^-11 for weights >=
//!   6.1e-5, absolute error <= 2^-25 below; weights above 65504 are rejected;
//!   weights that round to 0 are dropped;
//! - uint8: per term (within a segment) scale = max weight / 255, code =
//!   round(w / scale), so |w - code * scale| <= scale / 2 (plus float32
//!   rounding); codes 0 are dropped. When segments merge, a term's weights
//!   are re-rounded to the merged segment's scale (the largest of the
//!   inputs'), which adds at most half that scale again to the weights of the
//!   segment whose scale was smaller (the largest segment's codes are kept).
//!
//! Scores are sums of query weight x stored (dequantised) weight, products
//! exact in f64, summed in f64 and rounded once to f32; the top-k is exact for
//! those scores, ties broken by lower document id.

mod batch;
pub mod io;
mod maxscore;
pub mod search;

#[cfg(test)]
mod tests;

use rayon::prelude::*;
use rustc_hash::FxHashMap;

use crate::error::{Error, Result};
use crate::postings::{bucket_starts, encode_term, for_each_block, PostingsStore, TermRef, Weights, TAIL_PAD};

pub use crate::dtype::Dtype;
pub use search::{Hits, SearchOptions};

/// At most this many segments; more are merged.
pub const MAX_SEGMENTS: usize = 16;

/// The dtypes weights may be stored as, in the order of their file codes.
pub const DTYPES: [Dtype; 3] = [Dtype::F32, Dtype::F16, Dtype::U8];

/// A term's postings in a segment.
#[derive(Clone, Copy, Debug)]
pub struct TermMeta {
    pub term: u32,
    pub df: u32,
    pub n_blocks: u32,
    /// Byte offset of the term's region in the segment's store.
    pub offset: u64,
    /// Upper bound of the term's dequantised weights (largest block bound).
    pub max: f32,
    /// uint8 only: weight = code * scale. 1 otherwise.
    pub scale: f32,
}

impl TermMeta {
    /// Where the term's postings are in the segment's store.
    #[inline]
    pub fn postings(&self) -> TermRef {
        TermRef {
            offset: self.offset as usize,
            n_blocks: self.n_blocks as usize,
        }
    }

    /// How the term's weights are stored.
    #[inline]
    pub fn weights(&self, dtype: Dtype) -> Weights {
        Weights::new(dtype, self.scale)
    }
}

/// The uint8 scale of a term whose largest weight is `max`.
pub fn u8_scale(max: f32) -> f32 {
    if max > 0.0 {
        max / 255.0
    } else {
        1.0
    }
}

/// Documents in CSR form: row `i` is `indices[indptr[i]..indptr[i+1]]` with
/// the matching `values`. Borrowed, so numpy arrays pass without a copy.
#[derive(Clone, Copy)]
pub struct Csr<'a, P, I> {
    pub indptr: &'a [P],
    pub indices: &'a [I],
    pub values: &'a [f32],
}

/// Integer types accepted for CSR index arrays.
pub trait Int: Copy + Send + Sync {
    fn to_i64(self) -> i64;
}
impl Int for i32 {
    fn to_i64(self) -> i64 {
        self as i64
    }
}
impl Int for i64 {
    fn to_i64(self) -> i64 {
        self
    }
}
impl Int for u32 {
    fn to_i64(self) -> i64 {
        self as i64
    }
}

/// A validated sparse vector: term ids strictly increasing, weights > 0.
pub type SparseVec = (Vec<u32>, Vec<f32>);

impl<P: Int, I: Int> Csr<'_, P, I> {
    pub fn n_rows(&self) -> usize {
        self.indptr.len().saturating_sub(1)
    }

    fn check_shape(&self) -> Result<()> {
        if self.indptr.is_empty() {
            return Err(Error::invalid("indptr must have at least one entry"));
        }
        if self.indices.len() != self.values.len() {
            return Err(Error::invalid(format!(
                "indices and values differ in length ({} vs {})",
                self.indices.len(),
                self.values.len()
            )));
        }
        if self.indptr[0].to_i64() != 0 || self.indptr[self.indptr.len() - 1].to_i64() != self.indices.len() as i64 {
            return Err(Error::invalid(
                "indptr must start at 0 and end at the number of non-zeros",
            ));
        }
        if self.indptr.windows(2).any(|w| w[1].to_i64() < w[0].to_i64()) {
            return Err(Error::invalid("indptr must be non-decreasing"));
        }
        Ok(())
    }

    /// Row `i` checked and cleaned: sorted by term id, zeros dropped, then
    /// (if `top_n`) the `top_n` largest weights kept (ties by lower term id).
    /// `what` names rows in errors ("document", "query").
    pub fn row(&self, i: usize, top_n: Option<usize>, what: &str) -> Result<SparseVec> {
        let (s, e) = (self.indptr[i].to_i64() as usize, self.indptr[i + 1].to_i64() as usize);
        let mut pairs: Vec<(u32, f32)> = Vec::with_capacity(e - s);
        for j in s..e {
            let t = self.indices[j].to_i64();
            let w = self.values[j];
            if !(0..u32::MAX as i64).contains(&t) {
                return Err(Error::invalid(format!(
                    "{what} {i}: term id {t} is out of range (0 <= id < 2**32 - 1)"
                )));
            }
            if !w.is_finite() {
                return Err(Error::invalid(format!(
                    "{what} {i}: weight of term {t} is {w} (must be finite)"
                )));
            }
            if w < 0.0 {
                return Err(Error::invalid(format!(
                    "{what} {i}: weight of term {t} is negative ({w}); sparse weights must be >= 0"
                )));
            }
            if w > 0.0 {
                pairs.push((t as u32, w));
            }
        }
        if !pairs.windows(2).all(|w| w[0].0 < w[1].0) {
            pairs.sort_unstable_by_key(|p| p.0);
            if let Some(w) = pairs.windows(2).find(|w| w[0].0 == w[1].0) {
                return Err(Error::invalid(format!("{what} {i}: duplicate term id {}", w[0].0)));
            }
        }
        // Duplicates of a zero weight were dropped above; look at the raw row too.
        if e - s != pairs.len() {
            let mut raw: Vec<i64> = (s..e).map(|j| self.indices[j].to_i64()).collect();
            raw.sort_unstable();
            if let Some(w) = raw.windows(2).find(|w| w[0] == w[1]) {
                return Err(Error::invalid(format!("{what} {i}: duplicate term id {}", w[0])));
            }
        }
        if let Some(n) = top_n {
            if pairs.len() > n {
                // Largest weights first, ties by lower term id; then back to term order.
                pairs.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                pairs.truncate(n);
                pairs.sort_unstable_by_key(|p| p.0);
            }
        }
        Ok(pairs.into_iter().unzip())
    }

    /// Every row checked and cleaned (in parallel).
    pub fn rows(&self, top_n: Option<usize>, what: &str) -> Result<Vec<SparseVec>> {
        self.check_shape()?;
        (0..self.n_rows())
            .into_par_iter()
            .map(|i| self.row(i, top_n, what))
            .collect()
    }
}

/// One segment: postings of rows `base..base + n_rows`, doc ids local.
pub struct Segment {
    pub base: u32,
    pub n_rows: u32,
    /// Sorted by term id.
    pub terms: Vec<TermMeta>,
    pub store: PostingsStore,
}

impl Segment {
    #[inline]
    pub fn find(&self, term: u32) -> Option<&TermMeta> {
        self.terms
            .binary_search_by_key(&term, |m| m.term)
            .ok()
            .map(|i| &self.terms[i])
    }

    pub fn n_postings(&self) -> u64 {
        self.terms.iter().map(|m| m.df as u64).sum()
    }

    /// Encode local rows (each sorted by term, weights > 0 and finite) with
    /// per-term u8 scales from the rows' own maxima.
    fn build(base: u32, rows: &[SparseVec], dtype: Dtype) -> Result<Segment> {
        let n_rows = rows.len();
        // Counting sort by term: dense counts when term ids are small, else sort.
        let nnz: usize = rows.iter().map(|r| r.0.len()).sum();
        let max_term = rows.iter().filter_map(|r| r.0.last()).copied().max();
        let mut terms_list: Vec<u32>;
        let mut starts: Vec<usize>;
        let mut docs = vec![0u32; nnz];
        let mut ws = vec![0f32; nnz];
        match max_term {
            None => {
                terms_list = Vec::new();
                starts = vec![0];
            }
            Some(mt) if (mt as usize) < (1 << 24).max(4 * nnz) => {
                let counts = bucket_starts(
                    mt as usize + 1,
                    rows.iter().flat_map(|r| r.0.iter().map(|&t| t as usize)),
                );
                let mut pos = counts.clone();
                for (d, r) in rows.iter().enumerate() {
                    for (&t, &w) in r.0.iter().zip(&r.1) {
                        let p = &mut pos[t as usize];
                        docs[*p] = d as u32;
                        ws[*p] = w;
                        *p += 1;
                    }
                }
                terms_list = Vec::new();
                starts = Vec::new();
                for t in 0..=mt as usize {
                    if counts[t + 1] > counts[t] {
                        terms_list.push(t as u32);
                        starts.push(counts[t]);
                    }
                }
                starts.push(nnz);
            }
            Some(_) => {
                let mut all: Vec<(u32, u32, f32)> = Vec::with_capacity(nnz);
                for (d, r) in rows.iter().enumerate() {
                    all.extend(r.0.iter().zip(&r.1).map(|(&t, &w)| (t, d as u32, w)));
                }
                all.sort_unstable_by_key(|x| (x.0, x.1));
                terms_list = Vec::new();
                starts = Vec::new();
                for (i, x) in all.iter().enumerate() {
                    docs[i] = x.1;
                    ws[i] = x.2;
                    if i == 0 || all[i - 1].0 != x.0 {
                        terms_list.push(x.0);
                        starts.push(i);
                    }
                }
                starts.push(nnz);
            }
        }
        Self::encode(base, n_rows as u32, &terms_list, &starts, &mut docs, &mut ws, dtype)
    }

    /// Encode per-term lists (`docs[starts[i]..starts[i+1]]` for `terms[i]`), in parallel.
    fn encode(
        base: u32,
        n_rows: u32,
        terms: &[u32],
        starts: &[usize],
        docs: &mut [u32],
        ws: &mut [f32],
        dtype: Dtype,
    ) -> Result<Segment> {
        if dtype == Dtype::F16 {
            if let Some(w) = ws.iter().find(|&&w| w > 65504.0) {
                return Err(Error::invalid(format!(
                    "weight {w} is too large for float16 (max 65504)"
                )));
            }
        }
        // Chunks of terms with about equal postings, encoded in parallel.
        let nnz = docs.len();
        let n_chunks = (rayon::current_num_threads() * 4).max(1);
        let per = nnz.div_ceil(n_chunks).max(1);
        let mut bounds = vec![0usize];
        let mut acc = 0;
        for i in 0..terms.len() {
            acc += starts[i + 1] - starts[i];
            if acc >= per {
                bounds.push(i + 1);
                acc = 0;
            }
        }
        if *bounds.last().unwrap() != terms.len() {
            bounds.push(terms.len());
        }
        let parts: Vec<(Vec<TermMeta>, Vec<u8>)> = bounds
            .par_windows(2)
            .map(|b| {
                let mut out = Vec::new();
                let mut metas = Vec::new();
                let mut d2 = Vec::new();
                let mut w2 = Vec::new();
                for i in b[0]..b[1] {
                    let (s, e) = (starts[i], starts[i + 1]);
                    let (d, w) = (&docs[s..e], &ws[s..e]);
                    let max = w.iter().copied().fold(0f32, f32::max);
                    let scale = if dtype == Dtype::U8 { u8_scale(max) } else { 1.0 };
                    let payload = Weights::new(dtype, scale);
                    d2.clear();
                    w2.clear();
                    for (&doc, &x) in d.iter().zip(w) {
                        let v = payload.stored(x);
                        if v > 0.0 {
                            d2.push(doc);
                            w2.push(v);
                        }
                    }
                    if d2.is_empty() {
                        continue;
                    }
                    let offset = out.len() as u64;
                    let (n_blocks, tmax) = encode_term(&d2, &w2, payload, |_, w| w, &mut out);
                    metas.push(TermMeta {
                        term: terms[i],
                        df: d2.len() as u32,
                        n_blocks,
                        offset,
                        max: tmax,
                        scale,
                    });
                }
                (metas, out)
            })
            .collect();
        let total: usize = parts.iter().map(|p| p.1.len()).sum();
        let mut store = Vec::with_capacity(total + TAIL_PAD);
        let mut metas = Vec::new();
        for (m, bytes) in parts {
            let shift = store.len() as u64;
            metas.extend(m.into_iter().map(|mut x| {
                x.offset += shift;
                x
            }));
            store.extend_from_slice(&bytes);
        }
        store.extend_from_slice(&[0u8; TAIL_PAD]);
        Ok(Segment {
            base,
            n_rows,
            terms: metas,
            store: PostingsStore::Owned(store),
        })
    }

    /// The stored (dequantised) rows of this segment, local row order;
    /// `keep(local_row)` selects rows.
    fn decode_rows(&self, dtype: Dtype) -> Vec<SparseVec> {
        let mut rows: Vec<SparseVec> = vec![(Vec::new(), Vec::new()); self.n_rows as usize];
        let store = self.store.bytes();
        for m in &self.terms {
            for_each_block(store, m.postings(), m.weights(dtype), |docs, ws| {
                for (&d, &w) in docs.iter().zip(ws) {
                    let r = &mut rows[d as usize];
                    r.0.push(m.term);
                    r.1.push(w);
                }
            });
        }
        rows
    }
}

/// Index statistics.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub n_docs: usize,
    pub n_rows: usize,
    pub n_deleted: usize,
    pub n_segments: usize,
    pub vocab_size: usize,
    pub n_terms: usize,
    pub n_postings: u64,
    pub postings_bytes: usize,
}

/// The sparse index.
pub struct SparseIndex {
    dtype: Dtype,
    doc_top_n: Option<usize>,
    segments: Vec<Segment>,
    /// Row -> caller's id.
    ids: Vec<u64>,
    /// Caller's id -> row (live rows only).
    rows_of: FxHashMap<u64, u32>,
    /// Tombstones: bit set per removed row.
    deleted: Vec<u64>,
    n_deleted: usize,
    /// Whether ids increase with rows (then row order is id order).
    ids_sorted: bool,
    /// Live rows in id order, when `ids_sorted` is false.
    by_id: Vec<u32>,
    /// Next id given to documents added without ids.
    next_id: u64,
    /// 1 + largest term id seen.
    vocab_size: usize,
    /// Segments up to this many rows are searched term at a time (not saved).
    dense_rows: usize,
    /// Whether large batches take the shared path (tests turn it off to compare).
    shared_batches: bool,
}

impl SparseIndex {
    pub fn new(dtype: Dtype, doc_top_n: Option<usize>) -> Result<Self> {
        if !DTYPES.contains(&dtype) {
            return Err(Error::invalid(format!(
                "sparse weights are stored as float32, float16 or uint8, not {}",
                dtype.name()
            )));
        }
        if doc_top_n == Some(0) {
            return Err(Error::invalid("doc_top_n must be >= 1 (or None to keep every weight)"));
        }
        Ok(SparseIndex {
            dtype,
            doc_top_n,
            segments: Vec::new(),
            ids: Vec::new(),
            rows_of: FxHashMap::default(),
            deleted: Vec::new(),
            n_deleted: 0,
            ids_sorted: true,
            by_id: Vec::new(),
            next_id: 0,
            vocab_size: 0,
            dense_rows: search::DENSE_ROWS,
            shared_batches: true,
        })
    }

    /// Segments up to `rows` rows are searched term at a time, larger ones
    /// with MaxScore (results are the same; tests force each strategy).
    pub fn set_dense_rows(&mut self, rows: usize) {
        self.dense_rows = rows;
    }

    /// Whether batches of many queries share postings decoding (the default)
    /// or run query by query; both give the same hits.
    pub fn set_shared_batches(&mut self, on: bool) {
        self.shared_batches = on;
    }

    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    pub fn doc_top_n(&self) -> Option<usize> {
        self.doc_top_n
    }

    /// Live documents.
    pub fn len(&self) -> usize {
        self.ids.len() - self.n_deleted
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn n_rows(&self) -> usize {
        self.ids.len()
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    pub fn contains(&self, id: u64) -> bool {
        self.rows_of.contains_key(&id)
    }

    /// Live ids in row (insertion) order.
    pub fn ids(&self) -> Vec<u64> {
        (0..self.ids.len())
            .filter(|&r| !self.is_deleted(r as u32))
            .map(|r| self.ids[r])
            .collect()
    }

    pub fn stats(&self) -> Stats {
        Stats {
            n_docs: self.len(),
            n_rows: self.n_rows(),
            n_deleted: self.n_deleted,
            n_segments: self.segments.len(),
            vocab_size: self.vocab_size,
            n_terms: self.segments.iter().map(|s| s.terms.len()).sum(),
            n_postings: self.segments.iter().map(|s| s.n_postings()).sum(),
            postings_bytes: self.segments.iter().map(|s| s.store.len()).sum(),
        }
    }

    #[inline]
    pub(crate) fn is_deleted(&self, row: u32) -> bool {
        self.n_deleted > 0 && (self.deleted[(row / 64) as usize] >> (row % 64)) & 1 == 1
    }

    /// Add documents (CSR) with optional ids; returns the ids given.
    /// Checks everything before changing anything: on error the index is unchanged.
    pub fn add<P: Int, I: Int>(&mut self, docs: Csr<'_, P, I>, ids: Option<&[i64]>) -> Result<Vec<u64>> {
        let rows = docs.rows(self.doc_top_n, "document")?;
        self.add_rows(rows, ids)
    }

    /// Add checked rows (term ids strictly increasing, weights > 0 and finite).
    pub fn add_rows(&mut self, rows: Vec<SparseVec>, ids: Option<&[i64]>) -> Result<Vec<u64>> {
        let n = rows.len();
        let new_ids: Vec<u64> = match ids {
            Some(ids) => {
                if ids.len() != n {
                    return Err(Error::invalid(format!("{} ids for {} documents", ids.len(), n)));
                }
                let mut seen = FxHashMap::default();
                seen.reserve(n);
                for &id in ids {
                    if id < 0 {
                        return Err(Error::invalid(format!("ids must be >= 0, got {id}")));
                    }
                    if seen.insert(id as u64, ()).is_some() {
                        return Err(Error::invalid(format!("duplicate id {id} in ids")));
                    }
                    if self.rows_of.contains_key(&(id as u64)) {
                        return Err(Error::invalid(format!("id {id} is already in the index")));
                    }
                }
                ids.iter().map(|&i| i as u64).collect()
            }
            None => {
                // Ids are int64 to callers: automatic ones must not pass 2^63 - 1.
                if self
                    .next_id
                    .checked_add(n as u64)
                    .is_none_or(|end| end > i64::MAX as u64 + 1)
                {
                    return Err(Error::invalid(format!(
                        "automatic ids would pass 2**63 - 1 (the next is {}): give ids= explicitly",
                        self.next_id
                    )));
                }
                (self.next_id..self.next_id + n as u64).collect()
            }
        };
        if self.ids.len() + n >= u32::MAX as usize {
            return Err(Error::invalid("too many documents (at most 2**32 - 2 rows)"));
        }
        if n == 0 {
            return Ok(new_ids);
        }
        let base = self.ids.len() as u32;
        let seg = Segment::build(base, &rows, self.dtype)?;
        drop(rows);
        // Commit.
        if let Some(m) = seg.terms.last() {
            self.vocab_size = self.vocab_size.max(m.term as usize + 1);
        }
        let last_id = self.ids.last().copied();
        let mut sorted = self.ids_sorted && last_id.is_none_or(|l| new_ids[0] > l);
        sorted = sorted && new_ids.windows(2).all(|w| w[0] < w[1]);
        for (r, &id) in new_ids.iter().enumerate() {
            self.rows_of.insert(id, base + r as u32);
        }
        self.ids.extend_from_slice(&new_ids);
        self.next_id = self.next_id.max(new_ids.iter().max().unwrap() + 1);
        self.deleted.resize(self.ids.len().div_ceil(64), 0);
        self.segments.push(seg);
        self.ids_sorted = sorted;
        self.maybe_merge();
        self.refresh_order();
        Ok(new_ids)
    }

    fn refresh_order(&mut self) {
        if self.ids_sorted {
            self.by_id = Vec::new();
        } else {
            let mut rows: Vec<u32> = (0..self.ids.len() as u32).filter(|&r| !self.is_deleted(r)).collect();
            rows.sort_unstable_by_key(|&r| self.ids[r as usize]);
            self.by_id = rows;
        }
    }

    /// Merge the last two segments while the last is at least a quarter of
    /// the one before (or there are too many).
    fn maybe_merge(&mut self) {
        while self.segments.len() >= 2 {
            let l = self.segments.len();
            let (a, b) = (&self.segments[l - 2], &self.segments[l - 1]);
            if (b.n_rows as u64) * 4 < a.n_rows as u64 && l <= MAX_SEGMENTS {
                break;
            }
            let b = self.segments.pop().unwrap();
            let a = self.segments.pop().unwrap();
            let mut rows = a.decode_rows(self.dtype);
            rows.extend(b.decode_rows(self.dtype));
            let seg = Segment::build(a.base, &rows, self.dtype).expect("re-encoding stored weights cannot fail");
            self.segments.push(seg);
        }
    }

    /// Remove documents by id (tombstones). Errors, leaving the index
    /// unchanged, if an id is unknown (or repeated).
    pub fn remove(&mut self, ids: &[i64]) -> Result<()> {
        let mut rows = Vec::with_capacity(ids.len());
        for &id in ids {
            let row = if id < 0 {
                None
            } else {
                self.rows_of.get(&(id as u64)).copied()
            };
            match row {
                Some(r) => rows.push(r),
                None => return Err(Error::invalid(format!("unknown id {id}"))),
            }
        }
        let mut sorted = rows.clone();
        sorted.sort_unstable();
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            return Err(Error::invalid("ids to remove contain duplicates"));
        }
        for (&id, &r) in ids.iter().zip(&rows) {
            self.rows_of.remove(&(id as u64));
            self.deleted[(r / 64) as usize] |= 1 << (r % 64);
        }
        self.n_deleted += rows.len();
        if self.n_deleted * 4 >= self.ids.len() && self.n_deleted > 0 {
            self.compact();
        } else {
            self.refresh_order();
        }
        Ok(())
    }

    /// Rewrite all segments into one without removed documents.
    pub fn compact(&mut self) {
        if self.n_deleted == 0 && self.segments.len() <= 1 {
            return;
        }
        let mut rows: Vec<SparseVec> = Vec::with_capacity(self.len());
        let mut ids = Vec::with_capacity(self.len());
        for seg in &self.segments {
            for (i, r) in seg.decode_rows(self.dtype).into_iter().enumerate() {
                let row = seg.base + i as u32;
                if !self.is_deleted(row) {
                    rows.push(r);
                    ids.push(self.ids[row as usize]);
                }
            }
        }
        self.segments.clear();
        if !rows.is_empty() {
            self.segments
                .push(Segment::build(0, &rows, self.dtype).expect("re-encoding stored weights cannot fail"));
        }
        self.rows_of = ids.iter().enumerate().map(|(r, &id)| (id, r as u32)).collect();
        self.ids_sorted = ids.windows(2).all(|w| w[0] < w[1]);
        self.ids = ids;
        self.deleted = vec![0; self.ids.len().div_ceil(64)];
        self.n_deleted = 0;
        self.refresh_order();
    }

    /// Stored (dequantised) vectors of documents by id.
    pub fn get(&self, ids: &[i64]) -> Result<Vec<SparseVec>> {
        let mut rows = Vec::with_capacity(ids.len());
        for &id in ids {
            match (id >= 0).then(|| self.rows_of.get(&(id as u64))).flatten() {
                Some(&r) => rows.push(r),
                None => return Err(Error::invalid(format!("unknown id {id}"))),
            }
        }
        let mut out: Vec<SparseVec> = vec![(Vec::new(), Vec::new()); ids.len()];
        // Which output slots want each row.
        let mut want: FxHashMap<u32, Vec<usize>> = FxHashMap::default();
        for (i, &r) in rows.iter().enumerate() {
            want.entry(r).or_default().push(i);
        }
        for seg in &self.segments {
            let store = seg.store.bytes();
            for m in &seg.terms {
                for_each_block(store, m.postings(), m.weights(self.dtype), |docs, ws| {
                    for (&d, &w) in docs.iter().zip(ws) {
                        if let Some(slots) = want.get(&(seg.base + d)) {
                            for &s in slots {
                                out[s].0.push(m.term);
                                out[s].1.push(w);
                            }
                        }
                    }
                });
            }
        }
        Ok(out)
    }
}
