//! Compressed postings of one segment: for every term, blocks of up to 128
//! (doc, weight) pairs. Doc ids are gaps bit-packed at the block's own width
//! (the packing code is shared with BM25); weights follow as little-endian
//! float32, float16 or uint8 codes. Each term's region is its block headers
//! followed by the packed data:
//!
//! ```text
//! header (16 bytes): last doc u32 | block max weight f32 | data offset u32 | doc bits u8 | len - 1 u8 | 0 0
//! ```
//! The block max is the largest dequantised weight of the block, rounded up,
//! so that it bounds every weight of the block (block-max pruning). The store
//! ends with 8 zero bytes so that unpacking may always read a u64.

use half::f16;

use super::Dtype;
use crate::bm25::postings::{bits_for, pack, unpack};

pub const BLOCK: usize = 128;
pub const HEADER: usize = 16;
pub const TAIL_PAD: usize = 8;
pub const END: u32 = u32::MAX;

/// A term's postings in a segment.
#[derive(Clone, Copy, Debug)]
pub struct TermMeta {
    pub term: u32,
    pub df: u32,
    pub n_blocks: u32,
    /// Byte offset of the term's region in the segment's store.
    pub offset: u64,
    /// Upper bound of the term's dequantised weights (largest block max).
    pub max: f32,
    /// uint8 only: weight = code * scale. 1 otherwise.
    pub scale: f32,
}

/// Round a bound up so float noise never makes it smaller than a real weight.
#[inline]
pub fn round_up(x: f32) -> f32 {
    x * (1.0 + 1e-5) + f32::MIN_POSITIVE
}

/// The stored value of one weight, as raw bits in a u32 (f32 bits, f16 bits or the u8 code).
#[inline]
fn encode_weight(dtype: Dtype, w: f32, scale: f32) -> u32 {
    match dtype {
        Dtype::F32 => w.to_bits(),
        Dtype::F16 => f16::from_f32(w).to_bits() as u32,
        Dtype::U8 => (w / scale).round().clamp(0.0, 255.0) as u32,
    }
}

#[inline]
pub fn decode_weight(dtype: Dtype, raw: u32, scale: f32) -> f32 {
    match dtype {
        Dtype::F32 => f32::from_bits(raw),
        Dtype::F16 => f16::from_bits(raw as u16).to_f32(),
        Dtype::U8 => raw as f32 * scale,
    }
}

/// What a weight becomes once stored (0 means the posting is dropped).
pub fn stored_value(dtype: Dtype, w: f32, scale: f32) -> f32 {
    decode_weight(dtype, encode_weight(dtype, w, scale), scale)
}

/// The uint8 scale of a term whose largest weight is `max`.
pub fn u8_scale(max: f32) -> f32 {
    if max > 0.0 {
        max / 255.0
    } else {
        1.0
    }
}

/// Encode one term's postings (doc ids strictly increasing, weights > 0,
/// already stored values, i.e. exactly representable in `dtype` with
/// `scale`) into its region, appended to `out`. Returns (blocks, term max).
pub fn encode_term(docs: &[u32], weights: &[f32], dtype: Dtype, scale: f32, out: &mut Vec<u8>) -> (u32, f32) {
    let region = out.len();
    let n_blocks = docs.len().div_ceil(BLOCK);
    out.resize(region + n_blocks * HEADER, 0);
    let mut prev = 0u32;
    let mut term_max = 0f32;
    let mut gaps = [0u32; BLOCK];
    for (bi, (dchunk, wchunk)) in docs.chunks(BLOCK).zip(weights.chunks(BLOCK)).enumerate() {
        let mut block_max = 0f32;
        for (i, (&d, &w)) in dchunk.iter().zip(wchunk).enumerate() {
            gaps[i] = d - prev;
            prev = d;
            block_max = block_max.max(w);
        }
        let block_max = round_up(block_max);
        term_max = term_max.max(block_max);
        let n = dchunk.len();
        let db = bits_for(gaps[..n].iter().copied().max().unwrap_or(0));
        let data_off = (out.len() - region) as u32;
        pack(&gaps[..n], db, out);
        match dtype {
            Dtype::F32 => wchunk.iter().for_each(|w| out.extend_from_slice(&w.to_le_bytes())),
            Dtype::F16 => wchunk
                .iter()
                .for_each(|&w| out.extend_from_slice(&f16::from_f32(w).to_le_bytes())),
            Dtype::U8 => wchunk
                .iter()
                .for_each(|&w| out.push(encode_weight(Dtype::U8, w, scale) as u8)),
        }
        let h = &mut out[region + bi * HEADER..region + (bi + 1) * HEADER];
        h[0..4].copy_from_slice(&dchunk[n - 1].to_le_bytes());
        h[4..8].copy_from_slice(&block_max.to_le_bytes());
        h[8..12].copy_from_slice(&data_off.to_le_bytes());
        h[12] = db;
        h[13] = (n - 1) as u8;
    }
    (n_blocks as u32, term_max)
}

/// Check a term region's headers against the store, so that a damaged file
/// gives an error at load instead of a panic at search time. Returns the
/// last doc id of the term.
pub fn validate_term(store: &[u8], m: &TermMeta, dtype: Dtype) -> Result<u32, String> {
    let (offset, n_blocks, df) = (m.offset as usize, m.n_blocks as usize, m.df as usize);
    let hdr_end = offset
        .checked_add(n_blocks.checked_mul(HEADER).ok_or("block count overflow")?)
        .ok_or("offset overflow")?;
    if hdr_end > store.len() {
        return Err("postings header past end".into());
    }
    if n_blocks != df.div_ceil(BLOCK) || df == 0 {
        return Err("block count does not match document frequency".into());
    }
    if !(m.max.is_finite() && m.max >= 0.0 && m.scale.is_finite() && m.scale > 0.0) {
        return Err("bad term bound or scale".into());
    }
    let mut count = 0usize;
    let mut last = 0u32;
    for bi in 0..n_blocks {
        let h = &store[offset + bi * HEADER..offset + (bi + 1) * HEADER];
        let (db, n) = (h[12] as usize, h[13] as usize + 1);
        if db > 32 {
            return Err("bit width over 32".into());
        }
        let bmax = f32::from_le_bytes(h[4..8].try_into().unwrap());
        if !(bmax.is_finite() && bmax <= m.max) {
            return Err("bad block bound".into());
        }
        let data = offset + u32::from_le_bytes(h[8..12].try_into().unwrap()) as usize;
        let end = data + (n * db).div_ceil(8) + n * dtype.bytes();
        if end + TAIL_PAD > store.len() {
            return Err("postings data past end".into());
        }
        let l = u32::from_le_bytes(h[0..4].try_into().unwrap());
        if bi > 0 && l <= last {
            return Err("block last doc ids not increasing".into());
        }
        last = l;
        count += n;
    }
    if count != df {
        return Err("posting count does not match document frequency".into());
    }
    Ok(last)
}

#[inline]
fn header(store: &[u8], region: usize, bi: usize) -> &[u8] {
    &store[region + bi * HEADER..region + (bi + 1) * HEADER]
}

/// Decode block `bi`'s weights into `out` (dequantised).
#[inline]
fn decode_weights(store: &[u8], data: usize, n: usize, dtype: Dtype, scale: f32, out: &mut [f32; BLOCK]) {
    match dtype {
        Dtype::F32 => {
            for (o, c) in out[..n].iter_mut().zip(store[data..data + 4 * n].chunks_exact(4)) {
                *o = f32::from_le_bytes(c.try_into().unwrap());
            }
        }
        Dtype::F16 => {
            for (o, c) in out[..n].iter_mut().zip(store[data..data + 2 * n].chunks_exact(2)) {
                *o = f16::from_le_bytes(c.try_into().unwrap()).to_f32();
            }
        }
        Dtype::U8 => {
            for (o, &c) in out[..n].iter_mut().zip(&store[data..data + n]) {
                *o = c as f32 * scale;
            }
        }
    }
}

/// Call `f(docs, weights)` for every block of a term, decoded whole.
pub fn for_each_block(store: &[u8], m: &TermMeta, dtype: Dtype, mut f: impl FnMut(&[u32], &[f32])) {
    let region = m.offset as usize;
    let mut docs = [0u32; BLOCK];
    let mut ws = [0f32; BLOCK];
    let mut base = 0u32;
    for bi in 0..m.n_blocks as usize {
        let h = header(store, region, bi);
        let n = h[13] as usize + 1;
        let data = region + u32::from_le_bytes(h[8..12].try_into().unwrap()) as usize;
        unpack(&store[data..], h[12], n, &mut docs);
        let doc_bytes = (n * h[12] as usize).div_ceil(8);
        decode_weights(store, data + doc_bytes, n, dtype, m.scale, &mut ws);
        let mut acc = base;
        for d in docs[..n].iter_mut() {
            acc = acc.wrapping_add(*d);
            *d = acc;
        }
        base = u32::from_le_bytes(h[0..4].try_into().unwrap());
        f(&docs[..n], &ws[..n]);
    }
}

/// Walks one term's postings.
pub struct Cursor<'a> {
    store: &'a [u8],
    region: usize,
    n_blocks: usize,
    dtype: Dtype,
    scale: f32,
    block: usize,
    pos: usize,
    len: usize,
    docs: [u32; BLOCK],
    ws: [f32; BLOCK],
    ws_decoded: bool,
    /// Current doc id, `END` when exhausted.
    pub doc: u32,
}

impl<'a> Cursor<'a> {
    pub fn new(store: &'a [u8], m: &TermMeta, dtype: Dtype) -> Self {
        let mut c = Cursor {
            store,
            region: m.offset as usize,
            n_blocks: m.n_blocks as usize,
            dtype,
            scale: m.scale,
            block: 0,
            pos: 0,
            len: 0,
            docs: [0; BLOCK],
            ws: [0.0; BLOCK],
            ws_decoded: false,
            doc: END,
        };
        if c.n_blocks > 0 {
            c.load_block(0);
            c.doc = c.docs[0];
        }
        c
    }

    #[inline]
    fn header(&self, bi: usize) -> &'a [u8] {
        header(self.store, self.region, bi)
    }

    #[inline]
    fn block_last(&self, bi: usize) -> u32 {
        u32::from_le_bytes(self.header(bi)[0..4].try_into().unwrap())
    }

    /// Upper bound of the weight this term can give document `target` (the
    /// bound of the block that would hold it, 0 if none can), from the block
    /// headers alone.
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
    /// `target` up to the returned boundary, the boundary).
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

    /// Upper bound of this term's weights over docs `< hi` from the cursor
    /// on (max of the overlapping blocks' bounds; 0 if none), from headers.
    #[inline]
    pub fn window_bound(&self, hi: u32) -> f32 {
        if self.doc >= hi {
            return 0.0;
        }
        let mut m = 0f32;
        let mut bi = self.block;
        while bi < self.n_blocks {
            let h = self.header(bi);
            m = m.max(f32::from_le_bytes(h[4..8].try_into().unwrap()));
            if u32::from_le_bytes(h[0..4].try_into().unwrap()) >= hi {
                break;
            }
            bi += 1;
        }
        m
    }

    #[inline]
    fn ensure_weights(&mut self) {
        if !self.ws_decoded {
            let h = self.header(self.block);
            let n = self.len;
            let data = self.region + u32::from_le_bytes(h[8..12].try_into().unwrap()) as usize;
            let doc_bytes = (n * h[12] as usize).div_ceil(8);
            decode_weights(self.store, data + doc_bytes, n, self.dtype, self.scale, &mut self.ws);
            self.ws_decoded = true;
        }
    }

    /// Call `f(doc, weight)` for every posting with doc < `hi`, leaving the
    /// cursor at the first doc >= `hi`.
    #[inline]
    pub fn for_each_until(&mut self, hi: u32, mut f: impl FnMut(u32, f32)) {
        loop {
            if self.doc >= hi {
                return;
            }
            self.ensure_weights();
            if self.block_last(self.block) < hi {
                for j in self.pos..self.len {
                    f(self.docs[j], self.ws[j]);
                }
                if self.block + 1 < self.n_blocks {
                    self.load_block(self.block + 1);
                    self.doc = self.docs[0];
                } else {
                    self.pos = self.len;
                    self.doc = END;
                    return;
                }
            } else {
                let mut i = self.pos;
                // Terminates: the block's last doc is >= hi.
                while self.docs[i] < hi {
                    f(self.docs[i], self.ws[i]);
                    i += 1;
                }
                self.pos = i;
                self.doc = self.docs[i];
                return;
            }
        }
    }

    fn load_block(&mut self, bi: usize) {
        let h = self.header(bi);
        let n = h[13] as usize + 1;
        let data = self.region + u32::from_le_bytes(h[8..12].try_into().unwrap()) as usize;
        let base = if bi == 0 { 0 } else { self.block_last(bi - 1) };
        unpack(&self.store[data..], h[12], n, &mut self.docs);
        let mut acc = base;
        for d in self.docs[..n].iter_mut() {
            acc = acc.wrapping_add(*d);
            *d = acc;
        }
        self.block = bi;
        self.len = n;
        self.pos = 0;
        self.ws_decoded = false;
    }

    /// Dequantised weight at the current posting (decoded lazily per block).
    #[inline]
    pub fn weight(&mut self) -> f32 {
        self.ensure_weights();
        self.ws[self.pos]
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
