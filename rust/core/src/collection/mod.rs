//! The Collection engine, free of Python.
//!
//! - [`records`]: one segment's records (ids, texts, views, metadata, sparse vectors) in a
//!   columnar file opened by mmap in O(1), with an id -> document lookup and typed
//!   metadata columns.
//! - [`filters`]: the metadata filter language, parsed once per query and evaluated per
//!   segment into a [`Bitset`] from those columns.
//! - [`store`]: the directory on disk: checksummed manifest, atomic commits, generation
//!   pins for readers, the writer lock, garbage collection.
//! - [`merge_policy`]: which segments to merge next (log-structured tiers).
//! - [`search`]: a snapshot of segments searched in one call: every route over all
//!   segments in parallel with live-document BM25 statistics, then fusion.

pub mod bitset;
pub mod filters;
pub mod merge_policy;
pub mod records;
pub mod search;
pub mod store;

pub use bitset::Bitset;
pub use filters::{Filter, SpecError, SpecValue};
pub use records::{file_digest, Record, RecordStore, RecordStoreWriter};
pub use search::{CorpusStats, FusedHit, RouteKind, SearchRequest, SegmentReader, Snapshot};
