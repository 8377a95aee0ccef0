//! densparse-core: the algorithms of densparse, free of Python.
//!
//! - [`analysis`]: jieba-identical Chinese segmentation, English analysis, keywords.
//! - [`bm25`]: BM25 variants, compressed postings, exact top-k with MaxScore pruning,
//!   persistent index files.

pub mod analysis;
pub mod bm25;
pub mod error;
pub mod hash;
pub mod sparse;
pub mod storage;
pub mod topk;

pub use error::{Error, Result};
