//! Compressed posting lists, shared by BM25 (term frequencies) and the
//! learned-sparse index (float32 / float16 / uint8 weights).
//!
//! A term's postings are blocks of up to [`BLOCK`] (doc id, value) pairs.
//! Its region in the store is its block headers, then each block's data:
//! doc id gaps bit-packed at the block's own width, then the values as the
//! [`Payload`] stores them (term frequencies - 1 bit-packed at the block's
//! width; weights as little-endian f32 / f16 / u8 codes, i.e. packed at 32,
//! 16 or 8 bits).
//!
//! ```text
//! header (16 bytes): last doc u32 | block bound f32 | data offset u32 | doc bits u8 | value bits u8 | len - 1 u8 | 0
//! ```
//! The bound is the largest per-posting bound of the block, rounded up (see
//! [`bound`]), so MaxScore can skip blocks from headers alone. The store ends
//! with [`TAIL_PAD`] zero bytes so that unpacking may always read a u64.
//!
//! - [`block`]: the codec (packing, headers, encode, validate, whole-block decode);
//! - [`cursor`]: walking one term's postings (next, advance, lazy values);
//! - [`bound`]: block-max bounds, at encode time and from a cursor.

pub mod block;
pub mod bound;
pub mod cursor;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use crate::storage::Blob;

pub use block::{encode_term, for_each_block, validate_term, Payload, Tf, Weights};
pub use cursor::Cursor;

/// Postings per block.
pub const BLOCK: usize = 128;
/// Bytes per block header.
pub const HEADER: usize = 16;
/// Zero bytes at the end of every store (unpacking reads whole u64 words).
pub const TAIL_PAD: usize = 8;
/// Doc id of an exhausted cursor.
pub const END: u32 = u32::MAX;

/// Where each bucket's items start when items are grouped by bucket (a
/// counting sort): one entry per bucket below `n`, then the total. `keys` gives
/// each item's bucket; how term-major postings are laid out from doc-major ones.
pub fn bucket_starts(n: usize, keys: impl IntoIterator<Item = usize>) -> Vec<usize> {
    let mut start = vec![0usize; n + 1];
    for k in keys {
        start[k + 1] += 1;
    }
    for i in 0..n {
        start[i + 1] += start[i];
    }
    start
}

/// Where one term's postings are: its region's byte offset in the store and its block count.
#[derive(Clone, Copy, Debug)]
pub struct TermRef {
    pub offset: usize,
    pub n_blocks: usize,
}

/// Bytes of all postings, owned or memory-mapped.
pub enum PostingsStore {
    Owned(Vec<u8>),
    Shared { blob: Arc<Blob>, start: usize, len: usize },
}

impl PostingsStore {
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        match self {
            PostingsStore::Owned(v) => v,
            PostingsStore::Shared { blob, start, len } => &blob[*start..*start + *len],
        }
    }

    pub fn len(&self) -> usize {
        self.bytes().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
