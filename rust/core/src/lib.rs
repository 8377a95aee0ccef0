//! densparse-core: the algorithms of densparse, free of Python.
//!
//! - [`analysis`]: jieba-identical Chinese segmentation, English analysis, keywords.
//! - [`bm25`]: BM25 variants, compressed postings, exact top-k with MaxScore pruning,
//!   persistent index files.
//! - [`fusion`]: result-list fusion for hybrid search (RRF, weighted, BGE-M3 mean).
//! - [`dense`]: exact dense top-k (float32 / float16 / int8), ColBERT MaxSim.
//! - [`collection`]: the Collection engine: columnar record store, metadata filters.
//! - [`sparse`]: learned-sparse inverted index, exact top-k by dot product.
//! - [`postings`]: the posting-list codec and cursor that BM25 and sparse share;
//!   [`dtype`], [`mask`] and [`topk`]: the storage types, document masks and
//!   hits every index shares.

pub mod analysis;
pub mod bm25;
pub mod collection;
pub mod dense;
pub mod dtype;
pub mod error;
pub mod fusion;
#[doc(hidden)]
pub mod fuzzing;
pub mod hash;
pub mod mask;
pub mod parallel;
pub mod postings;
pub mod sparse;
pub mod storage;
#[cfg(test)]
mod test_rng;
pub mod topk;

pub use error::{Error, Result};
