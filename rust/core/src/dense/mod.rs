//! Exact dense vector search and ColBERT MaxSim.
//!
//! - [`DenseIndex`]: rows of `dim` numbers stored as float32, float16 or int8
//!   (symmetric, one scale per row: `scale = max|x| / 127`, `x ≈ q * scale`, so
//!   every component is off by at most `scale / 2 = max|x| / 254`). Exact top-k
//!   by inner product (`Metric::Ip`) or cosine (rows and queries L2-normalised).
//!   Order: score descending, ties broken by lower id.
//! - One query: SIMD dot kernels ([`kernels`]) over the rows, parallel over row
//!   chunks. Batches: a blocked matrix product (`gemm` crate) per row block
//!   with a per-query top-k, parallel over blocks.
//! - [`maxsim`]: ColBERT late interaction, mean over query rows of the max dot
//!   over passage rows (FlagEmbedding's `colbert_score`).

pub mod io;
pub mod kernels;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use half::f16;
use rayon::prelude::*;
use rustc_hash::FxHashMap;

use crate::error::{Error, Result};
use crate::mask::DocMask;
use crate::storage::Blob;
use crate::topk::{into_padded, Hits};
use kernels::kernels;

/// Batches of at least this many queries use the matrix-product path.
pub const GEMM_MIN_QUERIES: usize = 4;
/// Removed rows are dropped from storage once they are more than this share of the rows.
pub const COMPACT_SHARE: f64 = 0.25;
/// Rows per parallel task in one-query search.
const CHUNK_ROWS: usize = 8192;

pub use crate::dtype::Dtype;

/// The dtypes vectors may be stored as, in the order of their file codes.
pub const DTYPES: [Dtype; 3] = [Dtype::F32, Dtype::F16, Dtype::I8];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    Ip,
    Cosine,
}

impl Metric {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "ip" | "dot" => Ok(Metric::Ip),
            "cosine" | "cos" => Ok(Metric::Cosine),
            _ => Err(Error::invalid(format!(
                "unknown metric {s:?}: expected \"ip\" or \"cosine\""
            ))),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Metric::Ip => "ip",
            Metric::Cosine => "cosine",
        }
    }
}

// ------------------------------------------------------------------ storage

/// A typed array, owned or a zero-copy view into a loaded file.
pub(crate) enum Buf<T> {
    Owned(Vec<T>),
    Shared { blob: Arc<Blob>, start: usize, len: usize },
}

impl<T: Copy> Buf<T> {
    pub(crate) fn as_slice(&self) -> &[T] {
        match self {
            Buf::Owned(v) => v,
            // SAFETY: `io::load` only builds `Shared` after checking the range lies
            // inside the blob and is aligned for T; T is a plain number type.
            Buf::Shared { blob, start, len } => unsafe {
                std::slice::from_raw_parts(blob.as_ptr().add(*start) as *const T, *len)
            },
        }
    }
    fn owned(&mut self) -> &mut Vec<T> {
        if let Buf::Shared { .. } = self {
            let src = self.as_slice();
            let mut v = Vec::with_capacity(src.len());
            advise_huge(&v);
            v.extend_from_slice(src);
            *self = Buf::Owned(v);
        }
        match self {
            Buf::Owned(v) => v,
            Buf::Shared { .. } => unreachable!(),
        }
    }
    fn is_shared(&self) -> bool {
        matches!(self, Buf::Shared { .. })
    }
}

/// Input rows for [`DenseIndex::add_rows`].
#[derive(Clone, Copy)]
pub enum Rows<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
}

pub use half::f16 as F16;

/// Ask Linux for transparent huge pages over a vector's buffer (before it is
/// written): with 4 KiB pages a scan pays a TLB miss every few rows, which on
/// virtual machines costs a large share of the memory bandwidth. A no-op elsewhere.
fn advise_huge<T>(v: &Vec<T>) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let start = v.as_ptr() as usize;
        let end = start + v.capacity() * std::mem::size_of::<T>();
        let (a, b) = (start.next_multiple_of(HUGE), end / HUGE * HUGE);
        if b > a {
            // SAFETY: the range lies inside the vector's allocation; MADV_HUGEPAGE
            // only changes how the kernel backs it, never its contents.
            unsafe {
                libc::madvise(a as *mut libc::c_void, b - a, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = v;
}

/// Reserve room for `extra` more items, with huge pages where the OS offers them.
fn reserve_huge<T>(v: &mut Vec<T>, extra: usize) {
    if v.capacity() - v.len() < extra {
        v.reserve(extra);
        advise_huge(v);
    }
}

pub(crate) enum Vectors {
    F32(Buf<f32>),
    F16(Buf<f16>),
    I8 { q: Buf<i8>, scale: Buf<f32> },
}

/// Quantise one row to int8: `scale = max|x| / 127`, `q = round(x / scale)`.
pub fn quantize_i8(x: &[f32], out: &mut Vec<i8>) -> f32 {
    let m = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    if m == 0.0 {
        out.extend(std::iter::repeat_n(0i8, x.len()));
        return 0.0;
    }
    let scale = m / 127.0;
    out.extend(x.iter().map(|&v| (v / scale).round().clamp(-127.0, 127.0) as i8));
    scale
}

// ------------------------------------------------------------------ top-k over u64 ids

/// Best `k` (id, score) pairs: score descending, then id ascending.
pub type TopK64 = crate::topk::TopK<u64>;

// ------------------------------------------------------------------ thread pools

/// Run `f` with `threads` workers: None = rayon's global pool, Some(1) = this
/// thread only (callers take their serial paths then; no pool hand-off), Some(n)
/// = a cached pool of n threads.
pub fn with_threads<R: Send>(threads: Option<usize>, f: impl FnOnce() -> R + Send) -> Result<R> {
    match threads {
        None | Some(1) => Ok(f()),
        Some(t) => match crate::parallel::thread_pool(Some(t))? {
            Some(pool) => Ok(pool.install(f)),
            None => Ok(f()),
        },
    }
}

fn check_finite(x: &[f32], dim: usize, what: &str) -> Result<()> {
    if let Some(p) = x.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid(format!(
            "{what} row {} has a non-finite value ({}) at column {}",
            p / dim.max(1),
            x[p],
            p % dim.max(1)
        )));
    }
    Ok(())
}

/// L2-normalise rows in place; a zero row is an error.
fn normalize_rows(x: &mut [f32], dim: usize, what: &str) -> Result<()> {
    for (i, row) in x.chunks_exact_mut(dim).enumerate() {
        let n = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
        if n == 0.0 {
            return Err(Error::invalid(format!(
                "{what} row {i} is all zeros: it has no direction for the cosine metric"
            )));
        }
        let inv = (1.0 / n) as f32;
        row.iter_mut().for_each(|v| *v *= inv);
    }
    Ok(())
}

// ------------------------------------------------------------------ the index

/// Exact dense index. Rows keep insertion order; each has a user id.
pub struct DenseIndex {
    pub(crate) dim: usize,
    pub(crate) dtype: Dtype,
    pub(crate) metric: Metric,
    pub(crate) vectors: Vectors,
    pub(crate) ids: Vec<u64>,
    pub(crate) row_of: FxHashMap<u64, u32>,
    /// One flag per row: removed (a tombstone until compaction).
    pub(crate) dead: Vec<bool>,
    pub(crate) n_dead: usize,
    /// Default ids continue from here (one past the largest id ever added).
    pub(crate) next_id: u64,
}

/// Which rows a search may return.
struct Eligible<'a> {
    dead: Option<&'a [bool]>,
    mask: Option<DocMask<'a>>,
    ids: &'a [u64],
}

impl Eligible<'_> {
    #[inline]
    fn ok(&self, row: usize) -> bool {
        if let Some(d) = self.dead {
            if d[row] {
                return false;
            }
        }
        match self.mask {
            None => true,
            Some(m) => m.contains(self.ids[row]),
        }
    }
    fn all(&self) -> bool {
        self.dead.is_none() && self.mask.is_none()
    }
}

impl DenseIndex {
    pub fn new(dim: usize, dtype: Dtype, metric: Metric) -> Result<Self> {
        if dim == 0 {
            return Err(Error::invalid("dim must be >= 1"));
        }
        if dim > (1 << 20) {
            return Err(Error::invalid(format!("dim={dim} is too large (at most 1048576)")));
        }
        let vectors = match dtype {
            Dtype::F32 => Vectors::F32(Buf::Owned(Vec::new())),
            Dtype::F16 => Vectors::F16(Buf::Owned(Vec::new())),
            Dtype::I8 => Vectors::I8 {
                q: Buf::Owned(Vec::new()),
                scale: Buf::Owned(Vec::new()),
            },
            Dtype::U8 => {
                return Err(Error::invalid(
                    "dense vectors are stored as float32, float16 or int8, not uint8",
                ))
            }
        };
        Ok(DenseIndex {
            dim,
            dtype,
            metric,
            vectors,
            ids: Vec::new(),
            row_of: FxHashMap::default(),
            dead: Vec::new(),
            n_dead: 0,
            next_id: 0,
        })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }
    pub fn dtype(&self) -> Dtype {
        self.dtype
    }
    pub fn metric(&self) -> Metric {
        self.metric
    }
    /// Live (not removed) vectors.
    pub fn len(&self) -> usize {
        self.ids.len() - self.n_dead
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Stored rows, removed ones included until compaction.
    pub fn rows(&self) -> usize {
        self.ids.len()
    }
    pub fn n_removed(&self) -> usize {
        self.n_dead
    }
    /// Whether the vectors are a zero-copy view of a loaded file.
    pub fn is_mapped(&self) -> bool {
        match &self.vectors {
            Vectors::F32(b) => b.is_shared(),
            Vectors::F16(b) => b.is_shared(),
            Vectors::I8 { q, .. } => q.is_shared(),
        }
    }
    /// Bytes of vector data (and int8 scales).
    pub fn vector_bytes(&self) -> usize {
        self.rows() * (self.dim * self.dtype.bytes() + if self.dtype == Dtype::I8 { 4 } else { 0 })
    }
    /// Live ids in row (insertion) order.
    pub fn ids(&self) -> Vec<u64> {
        self.ids
            .iter()
            .zip(&self.dead)
            .filter(|(_, &d)| !d)
            .map(|(&i, _)| i)
            .collect()
    }
    pub fn contains(&self, id: u64) -> bool {
        self.row_of.contains_key(&id)
    }
    /// First id of `ids` that is not in the index.
    pub fn first_missing(&self, ids: &[i64]) -> Option<i64> {
        ids.iter()
            .copied()
            .find(|&i| i < 0 || !self.row_of.contains_key(&(i as u64)))
    }

    /// Add `data` (n rows of `dim`, row-major); `ids` default to the next
    /// sequential ids. All checks run before anything changes.
    pub fn add(&mut self, data: &[f32], ids: Option<&[i64]>) -> Result<Vec<u64>> {
        self.add_rows(Rows::F32(data), ids)
    }

    /// [`add`](Self::add) for float32 or float16 input; float16 rows go into
    /// float16 storage (inner-product metric) without a float32 detour.
    pub fn add_rows(&mut self, rows_in: Rows, ids: Option<&[i64]>) -> Result<Vec<u64>> {
        let dim = self.dim;
        let len = match rows_in {
            Rows::F32(d) => d.len(),
            Rows::F16(d) => d.len(),
        };
        if !len.is_multiple_of(dim) {
            return Err(Error::invalid(format!(
                "vectors have {len} values, not a multiple of dim={dim}"
            )));
        }
        let n = len / dim;
        match rows_in {
            Rows::F32(d) => check_finite(d, dim, "vectors")?,
            Rows::F16(d) => {
                if let Some(p) = d.iter().position(|v| !v.is_finite()) {
                    return Err(Error::invalid(format!(
                        "vectors row {} has a non-finite value ({}) at column {}",
                        p / dim,
                        d[p],
                        p % dim
                    )));
                }
            }
        }
        let new_ids: Vec<u64> = match ids {
            Some(ids) => {
                if ids.len() != n {
                    return Err(Error::invalid(format!("got {} ids for {n} vectors", ids.len())));
                }
                let mut seen = FxHashMap::default();
                seen.reserve(n);
                for (i, &id) in ids.iter().enumerate() {
                    if id < 0 {
                        return Err(Error::invalid(format!("ids[{i}] = {id}: ids must be >= 0")));
                    }
                    if self.row_of.contains_key(&(id as u64)) {
                        return Err(Error::invalid(format!("ids[{i}] = {id} is already in the index")));
                    }
                    if seen.insert(id, i).is_some() {
                        return Err(Error::invalid(format!("id {id} appears twice in ids")));
                    }
                }
                ids.iter().map(|&i| i as u64).collect()
            }
            None => {
                if self.next_id.checked_add(n as u64).is_none_or(|e| e > i64::MAX as u64) {
                    return Err(Error::invalid("no more sequential ids: pass ids explicitly"));
                }
                (self.next_id..self.next_id + n as u64).collect()
            }
        };
        if self.ids.len() + n > u32::MAX as usize {
            return Err(Error::invalid("an index holds at most 4294967295 rows"));
        }
        if let (Rows::F16(d), Dtype::F16, Metric::Ip) = (rows_in, self.dtype, self.metric) {
            if let Vectors::F16(b) = &mut self.vectors {
                let v = b.owned();
                reserve_huge(v, d.len());
                v.extend_from_slice(d);
            }
            return Ok(self.commit_ids(new_ids));
        }
        let widened: Vec<f32>;
        let data: &[f32] = match rows_in {
            Rows::F32(d) => d,
            Rows::F16(d) => {
                widened = d.iter().map(|h| h.to_f32()).collect();
                &widened
            }
        };
        let normalized = if self.metric == Metric::Cosine {
            let mut v = data.to_vec();
            normalize_rows(&mut v, dim, "vectors")?;
            Some(v)
        } else {
            None
        };
        let rows: &[f32] = normalized.as_deref().unwrap_or(data);
        if self.dtype == Dtype::F16 {
            if let Some(p) = rows.iter().position(|v| v.abs() > 65504.0) {
                return Err(Error::invalid(format!(
                    "vectors row {} has {} at column {}: outside the float16 range (|x| <= 65504)",
                    p / dim,
                    rows[p],
                    p % dim
                )));
            }
        }
        match &mut self.vectors {
            Vectors::F32(b) => {
                let v = b.owned();
                reserve_huge(v, rows.len());
                v.extend_from_slice(rows);
            }
            Vectors::F16(b) => {
                let v = b.owned();
                reserve_huge(v, rows.len());
                v.extend(rows.iter().map(|&x| f16::from_f32(x)));
            }
            Vectors::I8 { q, scale } => {
                let (q, scale) = (q.owned(), scale.owned());
                reserve_huge(q, rows.len());
                for r in rows.chunks_exact(dim) {
                    scale.push(quantize_i8(r, q));
                }
            }
        }
        Ok(self.commit_ids(new_ids))
    }

    /// Record the ids of rows just appended to storage.
    fn commit_ids(&mut self, new_ids: Vec<u64>) -> Vec<u64> {
        let base = self.ids.len() as u32;
        self.row_of.reserve(new_ids.len());
        for (i, &id) in new_ids.iter().enumerate() {
            self.row_of.insert(id, base + i as u32);
            self.next_id = self.next_id.max(id + 1);
        }
        self.ids.extend_from_slice(&new_ids);
        self.dead.resize(self.ids.len(), false);
        new_ids
    }

    /// Remove ids (all must be present and distinct; checked first). Storage
    /// is compacted once removed rows pass [`COMPACT_SHARE`].
    pub fn remove(&mut self, ids: &[i64]) -> Result<()> {
        if let Some(id) = self.first_missing(ids) {
            return Err(Error::invalid(format!("id {id} is not in the index")));
        }
        let mut seen = rustc_hash::FxHashSet::default();
        for &id in ids {
            if !seen.insert(id) {
                return Err(Error::invalid(format!("id {id} appears twice in ids")));
            }
        }
        for &id in ids {
            let row = self.row_of.remove(&(id as u64)).unwrap() as usize;
            self.dead[row] = true;
            self.n_dead += 1;
        }
        if self.n_dead as f64 > COMPACT_SHARE * self.ids.len() as f64 {
            self.compact();
        }
        Ok(())
    }

    /// Drop removed rows from storage now (ids and results do not change).
    pub fn compact(&mut self) {
        if self.n_dead == 0 {
            return;
        }
        let dim = self.dim;
        let keep: Vec<usize> = (0..self.ids.len()).filter(|&r| !self.dead[r]).collect();
        fn gather<T: Copy>(src: &[T], keep: &[usize], w: usize) -> Vec<T> {
            let mut v = Vec::with_capacity(keep.len() * w);
            advise_huge(&v);
            for &r in keep {
                v.extend_from_slice(&src[r * w..(r + 1) * w]);
            }
            v
        }
        self.vectors = match &self.vectors {
            Vectors::F32(b) => Vectors::F32(Buf::Owned(gather(b.as_slice(), &keep, dim))),
            Vectors::F16(b) => Vectors::F16(Buf::Owned(gather(b.as_slice(), &keep, dim))),
            Vectors::I8 { q, scale } => Vectors::I8 {
                q: Buf::Owned(gather(q.as_slice(), &keep, dim)),
                scale: Buf::Owned(gather(scale.as_slice(), &keep, 1)),
            },
        };
        self.ids = keep.iter().map(|&r| self.ids[r]).collect();
        self.dead = vec![false; self.ids.len()];
        self.n_dead = 0;
        self.row_of.clear();
        for (r, &id) in self.ids.iter().enumerate() {
            self.row_of.insert(id, r as u32);
        }
    }

    /// Stored vectors of `ids` as float32 (dequantised; normalised under cosine).
    pub fn get(&self, ids: &[i64]) -> Result<Vec<f32>> {
        if let Some(id) = self.first_missing(ids) {
            return Err(Error::invalid(format!("id {id} is not in the index")));
        }
        let dim = self.dim;
        let mut out = Vec::with_capacity(ids.len() * dim);
        for &id in ids {
            let r = self.row_of[&(id as u64)] as usize;
            self.row_f32(r, &mut out);
        }
        Ok(out)
    }

    fn row_f32(&self, r: usize, out: &mut Vec<f32>) {
        let dim = self.dim;
        match &self.vectors {
            Vectors::F32(b) => out.extend_from_slice(&b.as_slice()[r * dim..(r + 1) * dim]),
            Vectors::F16(b) => out.extend(b.as_slice()[r * dim..(r + 1) * dim].iter().map(|h| h.to_f32())),
            Vectors::I8 { q, scale } => {
                let s = scale.as_slice()[r];
                out.extend(q.as_slice()[r * dim..(r + 1) * dim].iter().map(|&v| v as f32 * s))
            }
        }
    }

    /// Check and prepare queries (finite, right width, normalised for cosine).
    fn prepare_queries(&self, queries: &[f32], k: usize) -> Result<Vec<f32>> {
        let dim = self.dim;
        if k == 0 {
            return Err(Error::invalid("k must be >= 1"));
        }
        if queries.is_empty() {
            return Err(Error::invalid("no queries given"));
        }
        if !queries.len().is_multiple_of(dim) {
            return Err(Error::invalid(format!(
                "queries have {} values, not a multiple of dim={dim}",
                queries.len()
            )));
        }
        if self.is_empty() {
            return Err(Error::invalid("the index is empty: add vectors before searching"));
        }
        check_finite(queries, dim, "queries")?;
        let mut q = queries.to_vec();
        if self.metric == Metric::Cosine {
            normalize_rows(&mut q, dim, "queries")?;
        }
        Ok(q)
    }

    /// Exact top-k for each query (rows of `queries`). Each result has
    /// k' = min(k, live count) entries, best first (ties by lower id); queries
    /// with fewer than k' eligible rows are padded with (-1, -inf).
    /// `mask[id] != 0` marks an eligible id (ids past its end are not eligible).
    pub fn search(
        &self,
        queries: &[f32],
        k: usize,
        mask: Option<DocMask>,
        threads: Option<usize>,
    ) -> Result<Vec<Hits<i64>>> {
        let q = self.prepare_queries(queries, k)?;
        let kk = k.min(self.len());
        let nq = q.len() / self.dim;
        let el = Eligible {
            dead: (self.n_dead > 0).then_some(&self.dead[..]),
            mask,
            ids: &self.ids,
        };
        with_threads(threads, || {
            let tops = if nq >= GEMM_MIN_QUERIES {
                self.search_gemm(&q, kk, &el, threads == Some(1))
            } else {
                q.chunks_exact(self.dim)
                    .map(|qr| self.search_one(qr, kk, &el, threads == Some(1)))
                    .collect()
            };
            tops.into_iter().map(|t| into_padded(t, kk)).collect()
        })
    }

    /// Force a path (tests and benchmarks): `gemm` true = matrix product.
    pub fn search_with_path(&self, queries: &[f32], k: usize, gemm: bool) -> Result<Vec<Hits<i64>>> {
        let q = self.prepare_queries(queries, k)?;
        let kk = k.min(self.len());
        let el = Eligible {
            dead: (self.n_dead > 0).then_some(&self.dead[..]),
            mask: None,
            ids: &self.ids,
        };
        let tops = if gemm {
            self.search_gemm(&q, kk, &el, false)
        } else {
            q.chunks_exact(self.dim)
                .map(|qr| self.search_one(qr, kk, &el, false))
                .collect()
        };
        Ok(tops.into_iter().map(|t| into_padded(t, kk)).collect())
    }

    /// Score rows `lo..hi` against one query into `top`: the dot kernels fill a
    /// small score buffer, then the eligible rows that can enter go to `top`.
    fn scan(&self, q: &[f32], lo: usize, hi: usize, el: &Eligible, top: &mut TopK64) {
        const B: usize = 64;
        let dim = self.dim;
        let kn = kernels();
        let mut buf = [0f32; B];
        let mut r0 = lo;
        while r0 < hi {
            let r1 = (r0 + B).min(hi);
            let out = &mut buf[..r1 - r0];
            match &self.vectors {
                Vectors::F32(b) => (kn.dots_f32)(q, &b.as_slice()[r0 * dim..r1 * dim], out),
                Vectors::F16(b) => (kn.dots_f16)(q, &b.as_slice()[r0 * dim..r1 * dim], out),
                Vectors::I8 { q: qb, scale } => {
                    (kn.dots_i8)(q, &qb.as_slice()[r0 * dim..r1 * dim], out);
                    for (o, s) in out.iter_mut().zip(&scale.as_slice()[r0..r1]) {
                        *o *= s;
                    }
                }
            }
            let all = el.all();
            for (j, &s) in out.iter().enumerate() {
                if s >= top.threshold() && (all || el.ok(r0 + j)) {
                    top.push(self.ids[r0 + j], s);
                }
            }
            r0 = r1;
        }
    }

    fn search_one(&self, q: &[f32], k: usize, el: &Eligible, serial: bool) -> TopK64 {
        let n = self.rows();
        if serial || n <= CHUNK_ROWS {
            let mut t = TopK64::new(k);
            self.scan(q, 0, n, el, &mut t);
            return t;
        }
        let chunks = n.div_ceil(CHUNK_ROWS);
        (0..chunks)
            .into_par_iter()
            .fold(
                || TopK64::new(k),
                |mut t, c| {
                    self.scan(q, c * CHUNK_ROWS, ((c + 1) * CHUNK_ROWS).min(n), el, &mut t);
                    t
                },
            )
            .reduce(
                || TopK64::new(k),
                |mut a, b| {
                    a.merge(b);
                    a
                },
            )
    }

    /// Rows per matrix-product block: about 1 MiB of float32 rows.
    fn block_rows(&self) -> usize {
        ((1 << 20) / (self.dim * 4)).clamp(64, 4096)
    }

    fn search_gemm(&self, q: &[f32], k: usize, el: &Eligible, serial: bool) -> Vec<TopK64> {
        let dim = self.dim;
        let nq = q.len() / dim;
        let n = self.rows();
        let br = self.block_rows();
        let blocks = n.div_ceil(br);
        // Queries go in groups so the score buffer stays small.
        let qg = 256usize;
        struct State {
            tops: Vec<TopK64>,
            conv: Vec<f32>,
            scores: Vec<f32>,
        }
        let new_state = || State {
            tops: vec![TopK64::new(k); nq],
            conv: Vec::new(),
            scores: Vec::new(),
        };
        let step = |mut st: State, b: usize| -> State {
            let lo = b * br;
            let hi = ((b + 1) * br).min(n);
            let m = hi - lo;
            let (x, scales): (&[f32], Option<&[f32]>) = match &self.vectors {
                Vectors::F32(v) => (&v.as_slice()[lo * dim..hi * dim], None),
                Vectors::F16(v) => {
                    use half::slice::HalfFloatSliceExt;
                    st.conv.resize(m * dim, 0.0);
                    v.as_slice()[lo * dim..hi * dim].convert_to_f32_slice(&mut st.conv);
                    (&st.conv, None)
                }
                Vectors::I8 { q: qb, scale } => {
                    st.conv.clear();
                    st.conv
                        .extend(qb.as_slice()[lo * dim..hi * dim].iter().map(|&v| v as f32));
                    (&st.conv, Some(&scale.as_slice()[lo..hi]))
                }
            };
            for g0 in (0..nq).step_by(qg) {
                let g1 = (g0 + qg).min(nq);
                let gm = g1 - g0;
                st.scores.resize(gm * m, 0.0);
                // SAFETY: dimensions and strides describe the slices exactly:
                // dst [gm x m] row-major, lhs = queries [gm x dim] row-major,
                // rhs = X^T [dim x m] (X is [m x dim] row-major).
                unsafe {
                    gemm::gemm(
                        gm,
                        m,
                        dim,
                        st.scores.as_mut_ptr(),
                        1,
                        m as isize,
                        false,
                        q[g0 * dim..].as_ptr(),
                        1,
                        dim as isize,
                        x.as_ptr(),
                        dim as isize,
                        1,
                        0.0f32,
                        1.0f32,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
                for (qi, srow) in st.scores.chunks_exact(m).enumerate() {
                    let top = &mut st.tops[g0 + qi];
                    for (j, &s0) in srow.iter().enumerate() {
                        let s = match scales {
                            Some(sc) => s0 * sc[j],
                            None => s0,
                        };
                        if s >= top.threshold() && el.ok(lo + j) {
                            top.push(self.ids[lo + j], s);
                        }
                    }
                }
            }
            st
        };
        let merge = |mut a: State, b: State| -> State {
            for (x, y) in a.tops.iter_mut().zip(b.tops) {
                x.merge(y);
            }
            a
        };
        let st = if serial {
            (0..blocks).fold(new_state(), step)
        } else {
            (0..blocks)
                .into_par_iter()
                .fold(new_state, step)
                .reduce(new_state, merge)
        };
        st.tops
    }
}

// ------------------------------------------------------------------ MaxSim

/// ColBERT late-interaction score of one query (m rows) against passages:
/// `(1/m) * sum_i max_j dot(q_i, p_j)`. `docs[i]` holds n_i rows of `dim`.
pub fn maxsim(query: &[f32], docs: &[&[f32]], dim: usize, threads: Option<usize>) -> Result<Vec<f32>> {
    if dim == 0 {
        return Err(Error::invalid("vectors must have at least one column"));
    }
    if query.is_empty() || !query.len().is_multiple_of(dim) {
        return Err(Error::invalid("query_vecs must be a non-empty [m, dim] array"));
    }
    check_finite(query, dim, "query_vecs")?;
    for (i, d) in docs.iter().enumerate() {
        if d.is_empty() {
            return Err(Error::invalid(format!("doc_vecs[{i}] has no rows")));
        }
        if !d.len().is_multiple_of(dim) {
            return Err(Error::invalid(format!("doc_vecs[{i}] does not have dim={dim} columns")));
        }
        check_finite(d, dim, &format!("doc_vecs[{i}]"))?;
    }
    let m = query.len() / dim;
    let kn = kernels();
    let one = |buf: &mut Vec<f32>, d: &[f32]| -> f32 {
        let n = d.len() / dim;
        if let Some(tile) = kn.tile4x4 {
            // Register-blocked 4 x 4 tiles: no packing, the passage streams once per
            // four query rows.
            fn row(x: &[f32], i: usize, dim: usize) -> &[f32] {
                &x[i * dim..(i + 1) * dim]
            }
            buf.clear();
            buf.resize(m, f32::NEG_INFINITY);
            let (m4, n4) = (m / 4 * 4, n / 4 * 4);
            let mut out = [[0f32; 4]; 4];
            // Passage tiles outside, query groups inside: four passage rows stay in L1
            // while the (small) query streams from L2.
            for j in (0..n4).step_by(4) {
                let pb = [
                    row(d, j, dim),
                    row(d, j + 1, dim),
                    row(d, j + 2, dim),
                    row(d, j + 3, dim),
                ];
                for i in (0..m4).step_by(4) {
                    let qa = [
                        row(query, i, dim),
                        row(query, i + 1, dim),
                        row(query, i + 2, dim),
                        row(query, i + 3, dim),
                    ];
                    tile(qa, pb, &mut out);
                    for x in 0..4 {
                        buf[i + x] = buf[i + x].max(out[x][0]).max(out[x][1]).max(out[x][2]).max(out[x][3]);
                    }
                }
            }
            for j in n4..n {
                for (i, best) in buf.iter_mut().enumerate().take(m4) {
                    *best = best.max((kn.dot_f32)(row(query, i, dim), row(d, j, dim)));
                }
            }
            for (i, best) in buf.iter_mut().enumerate().skip(m4) {
                for j in 0..n {
                    *best = best.max((kn.dot_f32)(row(query, i, dim), row(d, j, dim)));
                }
            }
            let total: f64 = buf.iter().map(|&v| v as f64).sum();
            return (total / m as f64) as f32;
        }
        if m * n * dim < 4096 {
            let mut total = 0f64;
            for qr in query.chunks_exact(dim) {
                let best = d
                    .chunks_exact(dim)
                    .map(|p| (kn.dot_f32)(qr, p))
                    .fold(f32::NEG_INFINITY, f32::max);
                total += best as f64;
            }
            return (total / m as f64) as f32;
        }
        buf.resize(m * n, 0.0);
        // SAFETY: dst [m x n] row-major, lhs = query [m x dim], rhs = D^T [dim x n].
        unsafe {
            gemm::gemm(
                m,
                n,
                dim,
                buf.as_mut_ptr(),
                1,
                n as isize,
                false,
                query.as_ptr(),
                1,
                dim as isize,
                d.as_ptr(),
                dim as isize,
                1,
                0.0f32,
                1.0f32,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        let total: f64 = buf
            .chunks_exact(n)
            .map(|r| r.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64)
            .sum();
        (total / m as f64) as f32
    };
    with_threads(threads, || {
        if threads == Some(1) || docs.len() < 4 {
            let mut buf = Vec::new();
            docs.iter().map(|d| one(&mut buf, d)).collect()
        } else {
            docs.par_iter().map_init(Vec::new, |buf, d| one(buf, d)).collect()
        }
    })
}

/// Candidates sorted by MaxSim score, best first (ties by lower position): (positions, scores), top `k`.
pub fn maxsim_rerank(
    query: &[f32],
    docs: &[&[f32]],
    dim: usize,
    k: Option<usize>,
    threads: Option<usize>,
) -> Result<(Vec<usize>, Vec<f32>)> {
    if k == Some(0) {
        return Err(Error::invalid("k must be >= 1"));
    }
    let s = maxsim(query, docs, dim, threads)?;
    let mut order: Vec<usize> = (0..s.len()).collect();
    order.sort_by(|&a, &b| s[b].total_cmp(&s[a]).then(a.cmp(&b)));
    order.truncate(k.unwrap_or(usize::MAX));
    let scores = order.iter().map(|&i| s[i]).collect();
    Ok((order, scores))
}

/// Sum of `data` on `threads` workers: a memory read-bandwidth probe.
pub fn stream_sum(data: &[f32], threads: Option<usize>) -> Result<f64> {
    let kn = kernels();
    with_threads(threads, || {
        if threads == Some(1) {
            (kn.sum_f32)(data) as f64
        } else {
            data.par_chunks(1 << 20).map(|c| (kn.sum_f32)(c) as f64).sum()
        }
    })
}
