//! BM25 index files (container format in `storage`).
//!
//! Sections: `params` (method, k1, b, delta, docs, tokens), `meta` (UTF-8
//! text from the caller), `vocab` (count, offsets, bytes), `terms` (df, blocks,
//! offset, bound per term), `doclens` (u32 per document), `postings`.

use std::path::Path;
use std::sync::Arc;

use crate::hash::VocabIndex;

use super::{Bm25Index, Method, Params, TermInfo};
use crate::error::{Error, Result};
use crate::postings::{validate_term, PostingsStore, Tf, TAIL_PAD};
use crate::storage::{Blob, Cursor, FileReader, FileWriter, PutLe};

pub const KIND: &str = "BM25";
pub const VERSION: u32 = 1;

impl Bm25Index {
    /// Save atomically: a failed save leaves any existing file at `path` intact.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.save_with_meta(path, &self.meta)
    }

    /// Save with another `meta` text (the index itself is shared and immutable).
    pub fn save_with_meta(&self, path: &Path, meta: &str) -> Result<()> {
        let mut w = FileWriter::new(KIND, VERSION);
        let mut p = Vec::new();
        p.put_u32(self.params.method.code());
        p.put_u32(0);
        p.put_f64(self.params.k1 as f64);
        p.put_f64(self.params.b as f64);
        p.put_f64(self.params.delta as f64);
        p.put_u64(self.n_docs() as u64);
        p.put_u64(self.total_tokens);
        w.section("params", p);
        w.section("meta", meta.as_bytes().to_vec());

        let mut v = Vec::new();
        v.put_u32(self.vocab.len() as u32);
        let mut off = 0u64;
        v.put_u64(0);
        for word in &self.vocab {
            off += word.len() as u64;
            v.put_u64(off);
        }
        for word in &self.vocab {
            v.extend_from_slice(word.as_bytes());
        }
        w.section("vocab", v);

        let mut t = Vec::with_capacity(self.terms.len() * 24);
        for info in &self.terms {
            t.put_u32(info.df);
            t.put_u32(info.n_blocks);
            t.put_u64(info.offset);
            t.put_f32(info.max_tf_weight);
            t.put_u32(0);
        }
        w.section("terms", t);
        let mut d = Vec::with_capacity(self.doc_lens.len() * 4);
        for &l in &self.doc_lens {
            d.put_u32(l);
        }
        w.section("doclens", d);
        w.section("postings", self.postings.bytes().to_vec());
        w.write(path)
    }

    /// Load an index; with `mmap` the postings stay in the page cache instead of being read.
    pub fn load(path: &Path, mmap: bool) -> Result<Self> {
        Self::from_reader(FileReader::open(path, KIND, VERSION, mmap)?)
    }

    /// An index from the bytes of a file (checksum checked, nothing mapped).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        let path = Path::new("<in-memory BM25 index>");
        Self::from_reader(FileReader::from_blob(path, Blob::Owned(bytes), KIND, VERSION, true)?)
    }

    fn from_reader(r: FileReader) -> Result<Self> {
        let path = r.path.clone();
        let path = path.as_path();
        let bad = |what: &str| Error::corrupt(path, format!("corrupt BM25 index: {what}"));

        let mut c = Cursor::new(r.bytes("params")?);
        let method = c
            .u32()
            .and_then(Method::from_code)
            .ok_or_else(|| bad("unknown method"))?;
        c.u32();
        let (k1, b, delta) = (c.f64(), c.f64(), c.f64());
        let (n_docs, total_tokens) = (c.u64(), c.u64());
        let (Some(k1), Some(b), Some(delta), Some(n_docs), Some(total_tokens)) = (k1, b, delta, n_docs, total_tokens)
        else {
            return Err(bad("short parameter section"));
        };
        let params = Params {
            method,
            k1: k1 as f32,
            b: b as f32,
            delta: delta as f32,
        };
        params.validate().map_err(|_| bad("parameters out of range"))?;
        // Documents are numbered by u32 (the postings' doc ids).
        if n_docs > u32::MAX as u64 {
            return Err(bad("document count out of range"));
        }
        let n_docs = n_docs as usize;
        let meta = String::from_utf8(r.bytes("meta")?.to_vec()).map_err(|_| bad("meta is not UTF-8"))?;

        let vb = r.bytes("vocab")?;
        let mut c = Cursor::new(vb);
        let nv = c.u32().ok_or_else(|| bad("vocab"))? as usize;
        let offs: Vec<u64> = (0..=nv)
            .map(|_| c.u64())
            .collect::<Option<_>>()
            .ok_or_else(|| bad("vocab offsets"))?;
        let text = c
            .take(*offs.last().unwrap_or(&0) as usize)
            .ok_or_else(|| bad("vocab text"))?;
        let mut vocab = Vec::with_capacity(nv);
        if offs[0] != 0 {
            return Err(bad("vocab offsets"));
        }
        for i in 0..nv {
            // Ascending and inside the text (the last one is its length).
            let (s, e) = (offs[i], offs[i + 1]);
            if s > e || e > text.len() as u64 {
                return Err(bad("vocab offsets"));
            }
            let w = std::str::from_utf8(&text[s as usize..e as usize])
                .map_err(|_| bad("vocab is not UTF-8"))?
                .to_string();
            vocab.push(w);
        }
        let term_ids = VocabIndex::new(&vocab).map_err(|_| bad("a word appears twice in the vocabulary"))?;

        let prange = r.range("postings")?;
        let store = &r.blob[prange.clone()];
        if store.len() < TAIL_PAD {
            return Err(bad("postings too short"));
        }
        let tb = r.bytes("terms")?;
        if Some(tb.len()) != nv.checked_mul(24) {
            return Err(bad("term table size"));
        }
        let mut terms = Vec::with_capacity(nv);
        let mut c = Cursor::new(tb);
        for _ in 0..nv {
            let (Some(df), Some(nb), Some(off), Some(mx), Some(_)) = (c.u32(), c.u32(), c.u64(), c.u32(), c.u32())
            else {
                return Err(bad("term table size"));
            };
            if df as usize > n_docs {
                return Err(bad("document frequency above the document count"));
            }
            let info = TermInfo {
                term: terms.len() as u32,
                df,
                n_blocks: nb,
                offset: off,
                max_tf_weight: f32::from_bits(mx),
                idf: params.method.idf(df as f64, n_docs as f64),
            };
            let last =
                validate_term(store, info.postings(), df as usize, info.max_tf_weight, Tf).map_err(|e| bad(&e))?;
            // Postings must not name a document past the end (ids ascend, so the last one bounds them).
            if df > 0 && last as usize >= n_docs {
                return Err(bad("posting names a document past the end"));
            }
            terms.push(info);
        }
        let db = r.bytes("doclens")?;
        if Some(db.len()) != n_docs.checked_mul(4) || n_docs == 0 {
            return Err(bad("document lengths"));
        }
        let doc_lens: Vec<u32> = db
            .chunks_exact(4)
            .map(|x| u32::from_le_bytes(x.try_into().unwrap()))
            .collect();
        if doc_lens.iter().map(|&l| l as u64).sum::<u64>() != total_tokens {
            return Err(bad("document lengths do not add up"));
        }
        let avgdl = total_tokens as f64 / n_docs as f64;
        let kn = doc_lens.iter().map(|&l| params.kn(l, avgdl)).collect();
        let postings = match r.blob {
            crate::storage::Blob::Owned(mut v) => {
                v.truncate(prange.end);
                v.drain(..prange.start);
                PostingsStore::Owned(v)
            }
            blob @ crate::storage::Blob::Mapped(_) => PostingsStore::Shared {
                blob: Arc::new(blob),
                start: prange.start,
                len: prange.len(),
            },
        };
        let impacts = Self::empty_impacts(nv);
        Ok(Bm25Index {
            params,
            vocab,
            term_ids,
            terms,
            doc_lens,
            kn,
            avgdl,
            total_tokens,
            postings,
            meta,
            impacts,
            kn_cache: Default::default(),
        })
    }
}
