//! BM25: five scoring variants over compressed postings with exact,
//! MaxScore-pruned top-k search, BM25 sparse vectors, and index files.

mod build;
mod io;
mod merge;
mod scoring;
mod search;

pub use scoring::{Method, Params};
pub use search::{thread_pool, GlobalStats, Hits, Query, SearchOpts};

use crate::postings::{PostingsStore, TermRef};

/// A term's decoded (doc, tf weight) pairs, built on first use.
type Impacts = std::sync::OnceLock<Box<[(u32, f32)]>>;

/// Per-term statistics and where its postings are.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TermInfo {
    /// The term's id (its index in the term table).
    pub term: u32,
    pub df: u32,
    pub n_blocks: u32,
    /// Byte offset of the term's region in the postings store.
    pub offset: u64,
    /// Largest (tfpart - tfpart0) over the term's postings, rounded up.
    pub max_tf_weight: f32,
    /// The method's idf of this term in this index (kept: a query needs it per term).
    pub idf: f64,
}

impl TermInfo {
    /// Where the term's postings are in the store.
    #[inline]
    pub fn postings(&self) -> TermRef {
        TermRef {
            offset: self.offset as usize,
            n_blocks: self.n_blocks as usize,
        }
    }
}

/// A BM25 index over documents `0..n_docs`.
pub struct Bm25Index {
    params: Params,
    vocab: Vec<String>,
    term_ids: crate::hash::VocabIndex,
    terms: Vec<TermInfo>,
    doc_lens: Vec<u32>,
    /// k1 * (1 - b + b * len / avgdl) per document, for the tf part.
    kn: Vec<f32>,
    avgdl: f64,
    total_tokens: u64,
    postings: PostingsStore,
    /// Opaque text saved with the index (the Python layer stores its analyzer settings).
    pub meta: String,
    /// Small indexes only: each term's postings decoded once into (doc, tf
    /// weight), the same f32 the block decoder computes, so term-at-a-time
    /// scoring reads them instead of decoding again. Filled on first use.
    impacts: Vec<Impacts>,
    /// `kn` recomputed for one foreign avgdl (global statistics), with its
    /// bound scale; the last one used is kept so queries do not recompute it.
    kn_cache: std::sync::Mutex<Option<search::KnCache>>,
}

impl Bm25Index {
    fn empty_impacts(vocab: usize) -> Vec<Impacts> {
        (0..vocab).map(|_| std::sync::OnceLock::new()).collect()
    }

    pub fn params(&self) -> Params {
        self.params
    }

    pub fn n_docs(&self) -> usize {
        self.doc_lens.len()
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    pub fn vocab(&self) -> &[String] {
        &self.vocab
    }

    pub fn term_id(&self, token: &str) -> Option<u32> {
        self.term_ids.get(&self.vocab, token)
    }

    pub fn doc_lens(&self) -> &[u32] {
        &self.doc_lens
    }

    pub fn avgdl(&self) -> f64 {
        self.avgdl
    }

    /// Sum of all document lengths (tokens indexed).
    pub fn total_tokens(&self) -> u64 {
        self.total_tokens
    }

    pub fn n_postings(&self) -> u64 {
        self.terms.iter().map(|t| t.df as u64).sum()
    }

    /// Bytes used by compressed postings (block headers included).
    pub fn postings_bytes(&self) -> usize {
        self.postings.len()
    }

    /// Document frequency of a token, 0 when unknown.
    pub fn df(&self, token: &str) -> u32 {
        self.term_id(token).map_or(0, |t| self.terms[t as usize].df)
    }

    /// Document frequency of a term id.
    pub fn df_of(&self, term: u32) -> u32 {
        self.terms[term as usize].df
    }

    pub(crate) fn idf(&self, term: u32) -> f64 {
        self.terms[term as usize].idf
    }
}

#[cfg(test)]
mod tests;
