//! Sparse index files (container format in `storage`, kind "sparse", version 2).
//!
//! Sections: `config` (dtype, doc_top_n, next id, rows, removed, vocab size,
//! segment count), `ids` (u64 per row), `deleted` (tombstone bit set),
//! `segments` (base row, rows, term count, first term, store offset, store
//! length), `terms` (term, df, blocks, offset, bound, scale), `postings`
//! (every segment's store, concatenated, in the format of [`crate::postings`]).
//! Loading checks every posting, so a damaged file fails at load with
//! `Corrupt`, never at search time.
//!
//! Version 1 differs only in the block headers (the block length at byte 13,
//! no value width): such files load, their postings read into memory and
//! rewritten to version 2 headers (so never memory-mapped).

use std::path::Path;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::{Dtype, Segment, SparseIndex, TermMeta, DTYPES};
use crate::error::{Error, Result};
use crate::postings::{validate_term, PostingsStore, HEADER, TAIL_PAD};
use crate::storage::{Blob, Cursor, FileReader, FileWriter, PutLe};

pub const KIND: &str = "sparse";
pub const VERSION: u32 = 2;

/// Rewrite version 1 block headers (`.. | doc bits | len - 1 | 0 | 0`) of
/// one segment's terms to version 2 (`.. | doc bits | value bits | len - 1 | 0`).
/// Headers outside the store are left for validation to report.
fn upgrade_v1_headers(store: &mut [u8], terms: &[TermMeta], dtype: Dtype) {
    let bits = 8 * dtype.bytes() as u8;
    for m in terms {
        for bi in 0..m.n_blocks as usize {
            let Some(h) = (m.offset as usize)
                .checked_add(bi * HEADER)
                .and_then(|s| store.get_mut(s..s.checked_add(HEADER)?))
            else {
                break;
            };
            h[14] = h[13];
            h[13] = bits;
        }
    }
}

impl SparseIndex {
    /// Save atomically: a failed save leaves any existing file at `path` intact.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut w = FileWriter::new(KIND, VERSION);
        let mut c = Vec::new();
        c.put_u32(self.dtype.code_in(&DTYPES));
        c.put_u32(self.doc_top_n.is_some() as u32);
        c.put_u64(self.doc_top_n.unwrap_or(0) as u64);
        c.put_u64(self.next_id);
        c.put_u64(self.ids.len() as u64);
        c.put_u64(self.n_deleted as u64);
        c.put_u64(self.vocab_size as u64);
        c.put_u64(self.segments.len() as u64);
        w.section("config", c);
        let mut ids = Vec::with_capacity(self.ids.len() * 8);
        self.ids.iter().for_each(|&i| ids.put_u64(i));
        w.section("ids", ids);
        let mut del = Vec::with_capacity(self.deleted.len() * 8);
        self.deleted.iter().for_each(|&x| del.put_u64(x));
        w.section("deleted", del);
        let mut segs = Vec::new();
        let mut terms = Vec::new();
        let mut postings = Vec::new();
        let mut first_term = 0u64;
        for s in &self.segments {
            segs.put_u32(s.base);
            segs.put_u32(s.n_rows);
            segs.put_u64(s.terms.len() as u64);
            segs.put_u64(first_term);
            segs.put_u64(postings.len() as u64);
            segs.put_u64(s.store.len() as u64);
            first_term += s.terms.len() as u64;
            for m in &s.terms {
                terms.put_u32(m.term);
                terms.put_u32(m.df);
                terms.put_u32(m.n_blocks);
                terms.put_u32(0);
                terms.put_u64(m.offset);
                terms.put_f32(m.max);
                terms.put_f32(m.scale);
            }
            postings.extend_from_slice(s.store.bytes());
        }
        w.section("segments", segs);
        w.section("terms", terms);
        w.section("postings", postings);
        w.write(path)
    }

    /// Load an index; with `mmap` the postings stay in the page cache instead of being read.
    pub fn load(path: &Path, mmap: bool) -> Result<Self> {
        Self::from_reader(FileReader::open(path, KIND, VERSION, mmap)?)
    }

    /// An index from the bytes of a file (checksum checked, nothing mapped).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        let path = Path::new("<in-memory sparse index>");
        Self::from_reader(FileReader::from_blob(path, Blob::Owned(bytes), KIND, VERSION, true)?)
    }

    fn from_reader(r: FileReader) -> Result<Self> {
        let path = r.path.clone();
        let path = path.as_path();
        let bad = |what: &str| Error::corrupt(path, format!("corrupt sparse index: {what}"));
        let mut c = Cursor::new(r.bytes("config")?);
        let vals: Option<Vec<u64>> = (|| {
            Some(vec![
                c.u32()? as u64,
                c.u32()? as u64,
                c.u64()?,
                c.u64()?,
                c.u64()?,
                c.u64()?,
                c.u64()?,
                c.u64()?,
            ])
        })();
        let v = vals.ok_or_else(|| bad("short config section"))?;
        let dtype = Dtype::from_code_in(v[0] as u32, &DTYPES).ok_or_else(|| bad("unknown dtype"))?;
        let doc_top_n = match v[1] {
            0 => None,
            1 if v[2] > 0 => Some(v[2] as usize),
            _ => return Err(bad("doc_top_n")),
        };
        let (next_id, n_rows, n_deleted, vocab_size, n_segs) =
            (v[3], v[4] as usize, v[5] as usize, v[6] as usize, v[7] as usize);
        if n_rows >= u32::MAX as usize || vocab_size > u32::MAX as usize {
            return Err(bad("sizes out of range"));
        }
        let ib = r.bytes("ids")?;
        if ib.len() != n_rows * 8 {
            return Err(bad("id table size"));
        }
        let ids: Vec<u64> = ib
            .chunks_exact(8)
            .map(|x| u64::from_le_bytes(x.try_into().unwrap()))
            .collect();
        let db = r.bytes("deleted")?;
        if db.len() != n_rows.div_ceil(64) * 8 {
            return Err(bad("tombstone table size"));
        }
        let deleted: Vec<u64> = db
            .chunks_exact(8)
            .map(|x| u64::from_le_bytes(x.try_into().unwrap()))
            .collect();
        let count: usize = deleted.iter().map(|w| w.count_ones() as usize).sum();
        if count != n_deleted || (!n_rows.is_multiple_of(64) && deleted.last().is_some_and(|w| w >> (n_rows % 64) != 0))
        {
            return Err(bad("tombstone count"));
        }
        let mut rows_of = FxHashMap::default();
        rows_of.reserve(n_rows - n_deleted);
        let mut seen = FxHashMap::default();
        for (row, &id) in ids.iter().enumerate() {
            if id >= i64::MAX as u64 || id >= next_id {
                return Err(bad("id out of range"));
            }
            if seen.insert(id, ()).is_some() {
                return Err(bad("duplicate id"));
            }
            if (deleted[row / 64] >> (row % 64)) & 1 == 0 {
                rows_of.insert(id, row as u32);
            }
        }
        drop(seen);

        let prange = r.range("postings")?;
        let sb = r.bytes("segments")?;
        let tb = r.bytes("terms")?;
        if Some(sb.len()) != n_segs.checked_mul(40) || !tb.len().is_multiple_of(32) {
            return Err(bad("segment or term table size"));
        }
        let mut sc = Cursor::new(sb);
        let mut specs = Vec::with_capacity(n_segs);
        let mut expect_base = 0u64;
        let mut expect_term = 0u64;
        let mut expect_off = 0u64;
        for _ in 0..n_segs {
            let (Some(base), Some(nr), Some(nt), Some(ft), Some(off), Some(len)) =
                (sc.u32(), sc.u32(), sc.u64(), sc.u64(), sc.u64(), sc.u64())
            else {
                return Err(bad("segment table"));
            };
            let (base, nr) = (base as u64, nr as u64);
            if base != expect_base || nr == 0 || ft != expect_term || off != expect_off || (len as usize) < TAIL_PAD {
                return Err(bad("segment table"));
            }
            expect_base += nr;
            expect_term = ft.checked_add(nt).ok_or_else(|| bad("segment table"))?;
            expect_off = off.checked_add(len).ok_or_else(|| bad("segment table"))?;
            specs.push((
                base as u32,
                nr as u32,
                ft as usize,
                nt as usize,
                off as usize,
                len as usize,
            ));
        }
        if expect_base as usize != n_rows
            || expect_term.checked_mul(32) != Some(tb.len() as u64)
            || expect_off as usize != prange.len()
        {
            return Err(bad("segments do not cover the rows, terms and postings"));
        }
        let mut tc = Cursor::new(tb);
        let mut all_terms = Vec::with_capacity(tb.len() / 32);
        for _ in 0..tb.len() / 32 {
            let (Some(term), Some(df), Some(nb), Some(_), Some(off), Some(mx), Some(sc)) =
                (tc.u32(), tc.u32(), tc.u32(), tc.u32(), tc.u64(), tc.u32(), tc.u32())
            else {
                return Err(bad("term table size"));
            };
            let (mx, sc) = (f32::from_bits(mx), f32::from_bits(sc));
            all_terms.push(TermMeta {
                term,
                df,
                n_blocks: nb,
                offset: off,
                max: mx,
                scale: sc,
            });
        }
        let v1 = r.version == 1;
        let blob = Arc::new(r.blob);
        let mut segments = Vec::with_capacity(n_segs);
        for &(base, n_rows, ft, nt, off, len) in &specs {
            let start = prange.start + off;
            let terms = all_terms[ft..ft + nt].to_vec();
            let store = match &*blob {
                Blob::Mapped(_) if !v1 => PostingsStore::Shared {
                    blob: blob.clone(),
                    start,
                    len,
                },
                // Read into memory: each segment owns its bytes (the file
                // buffer is dropped); version 1 headers are rewritten here.
                b => {
                    let mut bytes = b[start..start + len].to_vec();
                    if v1 {
                        upgrade_v1_headers(&mut bytes, &terms, dtype);
                    }
                    PostingsStore::Owned(bytes)
                }
            };
            let bytes = store.bytes();
            for (i, m) in terms.iter().enumerate() {
                if i > 0 && terms[i - 1].term >= m.term {
                    return Err(bad("term ids not increasing"));
                }
                if m.term as usize >= vocab_size {
                    return Err(bad("term id past the vocabulary size"));
                }
                if m.df == 0 || !(m.scale.is_finite() && m.scale > 0.0) {
                    return Err(bad("bad term entry"));
                }
                let last =
                    validate_term(bytes, m.postings(), m.df as usize, m.max, m.weights(dtype)).map_err(|e| bad(&e))?;
                if last >= n_rows {
                    return Err(bad("posting names a document past the segment"));
                }
                // validate_term decoded every posting: doc ids increase up to `last`, which is
                // inside the segment, and weights are finite, > 0 and within the term's bound.
            }
            segments.push(Segment {
                base,
                n_rows,
                terms,
                store,
            });
        }
        let mut idx = SparseIndex::new(dtype, doc_top_n)?;
        idx.segments = segments;
        idx.ids_sorted = ids.windows(2).all(|w| w[0] < w[1]);
        idx.ids = ids;
        idx.rows_of = rows_of;
        idx.deleted = deleted;
        idx.n_deleted = n_deleted;
        idx.next_id = next_id;
        idx.vocab_size = vocab_size;
        idx.refresh_order();
        Ok(idx)
    }
}
