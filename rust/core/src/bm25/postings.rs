//! Compressed postings: blocks of up to 128 (doc id, tf) pairs, doc id gaps
//! and tf - 1 bit-packed at the block's own widths. Each term's region is its
//! block headers followed by the packed data:
//!
//! ```text
//! header (16 bytes): last doc u32 | block max tf weight f32 | data offset u32 | doc bits u8 | tf bits u8 | len - 1 u8 | 0
//! ```
//! The store ends with 8 zero bytes so that unpacking may always read a u64.

use std::sync::Arc;

use crate::storage::Blob;

pub const BLOCK: usize = 128;
pub const HEADER: usize = 16;
pub const TAIL_PAD: usize = 8;

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
}

#[inline]
pub(crate) fn bits_for(max: u32) -> u8 {
    (32 - max.leading_zeros()) as u8
}

pub(crate) fn pack(values: &[u32], bits: u8, out: &mut Vec<u8>) {
    if bits == 0 {
        return;
    }
    let start = out.len();
    let nbytes = (values.len() * bits as usize).div_ceil(8);
    out.resize(start + nbytes, 0);
    let buf = &mut out[start..];
    for (i, &v) in values.iter().enumerate() {
        let bit = i * bits as usize;
        let mut v = (v as u64) << (bit % 8);
        let mut byte = bit / 8;
        while v != 0 {
            buf[byte] |= v as u8;
            v >>= 8;
            byte += 1;
        }
    }
}

/// Unpack `n` values of `bits` bits from `data` (which has 8 readable bytes past the packed ones).
#[inline]
pub(crate) fn unpack(data: &[u8], bits: u8, n: usize, out: &mut [u32; BLOCK]) {
    if bits == 0 {
        out[..n].fill(0);
        return;
    }
    let mask = if bits == 32 {
        u32::MAX as u64
    } else {
        (1u64 << bits) - 1
    };
    let bits = bits as usize;
    // One check for the whole block instead of one per value.
    assert!(
        (n * bits).div_ceil(8) + TAIL_PAD <= data.len(),
        "packed block past the end of the store"
    );
    let ptr = data.as_ptr();
    for (i, o) in out.iter_mut().enumerate().take(n) {
        let bit = i * bits;
        // SAFETY: bit / 8 + 8 <= ceil(n * bits / 8) + TAIL_PAD <= data.len(), checked above.
        let word = u64::from_le(unsafe { ptr.add(bit / 8).cast::<u64>().read_unaligned() });
        *o = ((word >> (bit % 8)) & mask) as u32;
    }
}

/// Encode one term's postings (doc ids strictly increasing, tf >= 1) into
/// its region, appended to `out`. `weight(doc, tf)` gives the tf weight whose
/// block maximum is stored for pruning. Returns (blocks, max weight).
pub fn encode_term(docs: &[u32], tfs: &[u32], weight: impl Fn(u32, u32) -> f32, out: &mut Vec<u8>) -> (u32, f32) {
    let region = out.len();
    let n_blocks = docs.len().div_ceil(BLOCK);
    out.resize(region + n_blocks * HEADER, 0);
    let mut prev = 0u32;
    let mut term_max = 0f32;
    let mut gaps = [0u32; BLOCK];
    let mut tf1 = [0u32; BLOCK];
    for (bi, (dchunk, tchunk)) in docs.chunks(BLOCK).zip(tfs.chunks(BLOCK)).enumerate() {
        let mut block_max = 0f32;
        for (i, (&d, &tf)) in dchunk.iter().zip(tchunk).enumerate() {
            gaps[i] = d - prev;
            prev = d;
            tf1[i] = tf - 1;
            block_max = block_max.max(weight(d, tf));
        }
        // Round up so float noise never makes a bound smaller than a real score.
        let block_max = block_max * (1.0 + 1e-5) + f32::MIN_POSITIVE;
        term_max = term_max.max(block_max);
        let n = dchunk.len();
        let db = bits_for(gaps[..n].iter().copied().max().unwrap_or(0));
        let tb = bits_for(tf1[..n].iter().copied().max().unwrap_or(0));
        let data_off = (out.len() - region) as u32;
        pack(&gaps[..n], db, out);
        pack(&tf1[..n], tb, out);
        let h = &mut out[region + bi * HEADER..region + (bi + 1) * HEADER];
        h[0..4].copy_from_slice(&dchunk[n - 1].to_le_bytes());
        h[4..8].copy_from_slice(&block_max.to_le_bytes());
        h[8..12].copy_from_slice(&data_off.to_le_bytes());
        h[12] = db;
        h[13] = tb;
        h[14] = (n - 1) as u8;
    }
    (n_blocks as u32, term_max)
}

/// Check a term region's headers against the store, so that a damaged file
/// gives an error at load instead of a panic at search time.
pub fn validate_term(store: &[u8], offset: usize, n_blocks: usize, df: usize) -> Result<(), String> {
    let hdr_end = offset.checked_add(n_blocks * HEADER).ok_or("offset overflow")?;
    if hdr_end > store.len() {
        return Err("postings header past end".into());
    }
    if n_blocks != df.div_ceil(BLOCK) {
        return Err("block count does not match document frequency".into());
    }
    let mut count = 0usize;
    for bi in 0..n_blocks {
        let h = &store[offset + bi * HEADER..offset + (bi + 1) * HEADER];
        let (db, tb, n) = (h[12] as usize, h[13] as usize, h[14] as usize + 1);
        if db > 32 || tb > 32 {
            return Err("bit width over 32".into());
        }
        let data = offset + u32::from_le_bytes(h[8..12].try_into().unwrap()) as usize;
        let end = data + (n * db).div_ceil(8) + (n * tb).div_ceil(8);
        if end + TAIL_PAD > store.len() {
            return Err("postings data past end".into());
        }
        count += n;
    }
    if count != df {
        return Err("posting count does not match document frequency".into());
    }
    Ok(())
}

pub const END: u32 = u32::MAX;

/// Call `f(docs, tfs_minus_1)` for every block of a term, decoded whole:
/// the fast path for scoring a term's full list.
pub fn for_each_block(store: &[u8], region: usize, n_blocks: usize, mut f: impl FnMut(&[u32], &[u32])) {
    let mut docs = [0u32; BLOCK];
    let mut tfs = [0u32; BLOCK];
    let mut base = 0u32;
    for bi in 0..n_blocks {
        let h = &store[region + bi * HEADER..region + (bi + 1) * HEADER];
        let n = h[14] as usize + 1;
        let data = region + u32::from_le_bytes(h[8..12].try_into().unwrap()) as usize;
        unpack(&store[data..], h[12], n, &mut docs);
        let doc_bytes = (n * h[12] as usize).div_ceil(8);
        unpack(&store[data + doc_bytes..], h[13], n, &mut tfs);
        let mut acc = base;
        for d in docs[..n].iter_mut() {
            acc += *d;
            *d = acc;
        }
        base = u32::from_le_bytes(h[0..4].try_into().unwrap());
        f(&docs[..n], &tfs[..n]);
    }
}

/// Walks one term's postings.
pub struct Cursor<'a> {
    store: &'a [u8],
    region: usize,
    n_blocks: usize,
    block: usize,
    pos: usize,
    len: usize,
    docs: [u32; BLOCK],
    tfs: [u32; BLOCK],
    tfs_decoded: bool,
    /// Current doc id, `END` when exhausted.
    pub doc: u32,
}

impl<'a> Cursor<'a> {
    pub fn new(store: &'a [u8], region: usize, n_blocks: usize) -> Self {
        let mut c = Cursor {
            store,
            region,
            n_blocks,
            block: 0,
            pos: 0,
            len: 0,
            docs: [0; BLOCK],
            tfs: [0; BLOCK],
            tfs_decoded: false,
            doc: END,
        };
        if n_blocks > 0 {
            c.load_block(0);
            c.doc = c.docs[0];
        }
        c
    }

    #[inline]
    fn header(&self, bi: usize) -> &'a [u8] {
        let s = self.region + bi * HEADER;
        &self.store[s..s + HEADER]
    }

    #[inline]
    fn block_last(&self, bi: usize) -> u32 {
        u32::from_le_bytes(self.header(bi)[0..4].try_into().unwrap())
    }

    /// Upper bound of the tf weight this term can give document `target`
    /// (the bound of the block that would hold it, 0 if none can), found from
    /// the block headers alone without decoding anything.
    #[inline]
    pub fn bound_at(&self, target: u32) -> f32 {
        if self.doc == END || self.doc > target {
            return 0.0;
        }
        let mut bi = self.block;
        while bi < self.n_blocks && self.block_last(bi) < target {
            bi += 1;
        }
        if bi == self.n_blocks {
            return 0.0;
        }
        f32::from_le_bytes(self.header(bi)[4..8].try_into().unwrap())
    }

    /// For a cursor at doc >= `target`: (bound of this term for every doc from
    /// `target` up to the returned boundary, the boundary). At `target`
    /// itself that is the current block's bound up to its last doc; past it,
    /// 0 up to the next posting.
    #[inline]
    pub fn block_bound(&self, target: u32) -> (f32, u32) {
        if self.doc == END {
            (0.0, END)
        } else if self.doc > target {
            (0.0, self.doc)
        } else {
            let h = self.header(self.block);
            let last = u32::from_le_bytes(h[0..4].try_into().unwrap());
            (f32::from_le_bytes(h[4..8].try_into().unwrap()), last.saturating_add(1))
        }
    }

    fn load_block(&mut self, bi: usize) {
        let h = self.header(bi);
        let n = h[14] as usize + 1;
        let db = h[12];
        let data = self.region + u32::from_le_bytes(h[8..12].try_into().unwrap()) as usize;
        let base = if bi == 0 { 0 } else { self.block_last(bi - 1) };
        unpack(&self.store[data..], db, n, &mut self.docs);
        let mut acc = base;
        for d in self.docs[..n].iter_mut() {
            acc += *d;
            *d = acc;
        }
        self.block = bi;
        self.len = n;
        self.pos = 0;
        self.tfs_decoded = false;
    }

    /// Term frequency at the current posting (decoded lazily per block).
    #[inline]
    pub fn tf(&mut self) -> u32 {
        if !self.tfs_decoded {
            let h = self.header(self.block);
            let n = self.len;
            let data = self.region + u32::from_le_bytes(h[8..12].try_into().unwrap()) as usize;
            let doc_bytes = (n * h[12] as usize).div_ceil(8);
            unpack(&self.store[data + doc_bytes..], h[13], n, &mut self.tfs);
            self.tfs_decoded = true;
        }
        self.tfs[self.pos] + 1
    }

    #[inline]
    pub fn next(&mut self) {
        self.pos += 1;
        if self.pos < self.len {
            self.doc = self.docs[self.pos];
        } else if self.block + 1 < self.n_blocks {
            self.load_block(self.block + 1);
            self.doc = self.docs[0];
        } else {
            self.doc = END;
        }
    }

    /// Move to the first posting with doc >= target.
    #[inline]
    pub fn advance(&mut self, target: u32) {
        if self.doc >= target {
            return;
        }
        if self.block_last(self.block) < target {
            // Skip whole blocks by their last doc id, without decoding them.
            let mut bi = self.block + 1;
            while bi < self.n_blocks && self.block_last(bi) < target {
                bi += 1;
            }
            if bi == self.n_blocks {
                self.doc = END;
                self.pos = self.len;
                self.block = self.n_blocks - 1;
                return;
            }
            self.load_block(bi);
        }
        while self.docs[self.pos] < target {
            self.pos += 1;
        }
        self.doc = self.docs[self.pos];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip() {
        let docs: Vec<u32> = (0..1000u32).map(|i| i * 7 + (i % 3)).collect();
        let tfs: Vec<u32> = (0..1000u32).map(|i| 1 + (i % 11) * (i % 5)).collect();
        let mut store = Vec::new();
        let (nb, _) = encode_term(&docs, &tfs, |_, tf| tf as f32, &mut store);
        store.extend_from_slice(&[0u8; TAIL_PAD]);
        validate_term(&store, 0, nb as usize, docs.len()).unwrap();
        let mut c = Cursor::new(&store, 0, nb as usize);
        let mut got = Vec::new();
        while c.doc != END {
            got.push((c.doc, c.tf()));
            c.next();
        }
        assert_eq!(got, docs.iter().copied().zip(tfs.iter().copied()).collect::<Vec<_>>());
        let mut c = Cursor::new(&store, 0, nb as usize);
        c.advance(3500);
        assert_eq!(c.doc, docs[docs.iter().position(|&d| d >= 3500).unwrap()]);
        c.advance(1_000_000);
        assert_eq!(c.doc, END);
    }
}
