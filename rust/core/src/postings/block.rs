//! The block codec: bit packing, block headers, encoding a term's postings,
//! validating them at load, and decoding whole blocks.

use half::f16;
use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};

use super::{bound, TermRef, BLOCK, HEADER, TAIL_PAD};
use crate::dtype::Dtype;

/// Bits needed to store `max`.
#[inline]
pub fn bits_for(max: u32) -> u8 {
    (32 - max.leading_zeros()) as u8
}

/// Append `values` at `bits` bits each, little-endian bit order.
pub fn pack(values: &[u32], bits: u8, out: &mut Vec<u8>) {
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
pub fn unpack(data: &[u8], bits: u8, n: usize, out: &mut [u32; BLOCK]) {
    unpack_plus(data, bits, n, 0, out)
}

/// [`unpack`], adding `plus` to every value on the way (no second pass).
#[inline(always)]
fn unpack_plus(data: &[u8], bits: u8, n: usize, plus: u32, out: &mut [u32; BLOCK]) {
    if bits == 0 {
        out[..n].fill(plus);
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
        *o = (((word >> (bit % 8)) & mask) as u32).wrapping_add(plus);
    }
}

/// What a posting carries besides its doc id, and how a block stores it.
pub trait Payload: Copy {
    /// A decoded value.
    type Value: Copy + Default;
    /// Bit width of a block holding `values` (the header's value bits).
    fn width(&self, values: &[Self::Value]) -> u8;
    /// Append `values` stored at `width` bits each.
    fn encode(&self, values: &[Self::Value], width: u8, out: &mut Vec<u8>);
    /// Decode `n` values stored at `width` bits from `data` (8 readable bytes past them).
    fn decode(&self, data: &[u8], width: u8, n: usize, out: &mut [Self::Value; BLOCK]);
    /// Whether a stored block width is one this payload writes.
    fn valid_width(&self, width: u8) -> bool;
    /// Whether a decoded value is one this payload writes, under the term's bound.
    fn valid_value(&self, v: Self::Value, term_bound: f32) -> bool;
}

/// BM25 term frequencies (>= 1), stored as tf - 1 at the block's own width.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tf;

impl Payload for Tf {
    type Value = u32;

    #[inline]
    fn width(&self, tfs: &[u32]) -> u8 {
        bits_for(tfs.iter().copied().max().unwrap_or(1) - 1)
    }

    fn encode(&self, tfs: &[u32], width: u8, out: &mut Vec<u8>) {
        let mut tf1 = [0u32; BLOCK];
        for (o, &tf) in tf1.iter_mut().zip(tfs) {
            *o = tf - 1;
        }
        pack(&tf1[..tfs.len()], width, out);
    }

    #[inline]
    fn decode(&self, data: &[u8], width: u8, n: usize, out: &mut [u32; BLOCK]) {
        unpack_plus(data, width, n, 1, out);
    }

    fn valid_width(&self, width: u8) -> bool {
        width <= 32
    }

    /// A term frequency is at least 1 (a stored tf - 1 of all ones wraps to 0).
    fn valid_value(&self, tf: u32, _: f32) -> bool {
        tf >= 1
    }
}

/// Learned-sparse weights (finite, > 0) as float32, float16 or uint8 codes
/// (weight = code * scale, one scale per term).
#[derive(Clone, Copy, Debug)]
pub struct Weights {
    pub dtype: Dtype,
    /// uint8 only; 1 otherwise.
    pub scale: f32,
}

impl Weights {
    pub fn new(dtype: Dtype, scale: f32) -> Self {
        debug_assert!(matches!(dtype, Dtype::F32 | Dtype::F16 | Dtype::U8));
        Weights { dtype, scale }
    }

    /// The stored code of one weight, as raw bits (f32 bits, f16 bits or the u8 code).
    #[inline]
    pub fn code(&self, w: f32) -> u32 {
        match self.dtype {
            Dtype::F16 => f16::from_f32(w).to_bits() as u32,
            Dtype::U8 => (w / self.scale).round().clamp(0.0, 255.0) as u32,
            _ => w.to_bits(),
        }
    }

    /// The weight a stored code stands for.
    #[inline]
    pub fn value(&self, code: u32) -> f32 {
        match self.dtype {
            Dtype::F16 => f16::from_bits(code as u16).to_f32(),
            Dtype::U8 => code as f32 * self.scale,
            _ => f32::from_bits(code),
        }
    }

    /// What a weight becomes once stored (0 means the posting is dropped).
    pub fn stored(&self, w: f32) -> f32 {
        self.value(self.code(w))
    }

    fn bits(&self) -> u8 {
        8 * self.dtype.bytes() as u8
    }
}

impl Payload for Weights {
    type Value = f32;

    #[inline]
    fn width(&self, _: &[f32]) -> u8 {
        self.bits()
    }

    fn encode(&self, ws: &[f32], _: u8, out: &mut Vec<u8>) {
        match self.dtype {
            Dtype::F16 => ws
                .iter()
                .for_each(|&w| out.extend_from_slice(&f16::from_f32(w).to_le_bytes())),
            Dtype::U8 => ws.iter().for_each(|&w| out.push(self.code(w) as u8)),
            _ => ws.iter().for_each(|w| out.extend_from_slice(&w.to_le_bytes())),
        }
    }

    #[inline]
    fn decode(&self, data: &[u8], _: u8, n: usize, out: &mut [f32; BLOCK]) {
        match self.dtype {
            Dtype::F16 => {
                // The bits first, then one slice conversion (F16C SIMD where the CPU has it;
                // exact, like the scalar one, but without a feature check per weight).
                let mut bits = [0u16; BLOCK];
                for (b, c) in bits[..n].iter_mut().zip(data[..2 * n].chunks_exact(2)) {
                    *b = u16::from_le_bytes(c.try_into().unwrap());
                }
                bits[..n].reinterpret_cast::<f16>().convert_to_f32_slice(&mut out[..n]);
            }
            Dtype::U8 => {
                for (o, &c) in out[..n].iter_mut().zip(&data[..n]) {
                    *o = c as f32 * self.scale;
                }
            }
            _ => {
                let src = &data[..4 * n];
                // Stored little-endian, the bytes are the f32s themselves: one copy.
                #[cfg(target_endian = "little")]
                // SAFETY: `src` holds 4n bytes and `out` room for n <= BLOCK f32s; the
                // regions do not overlap, and every bit pattern is a valid f32.
                unsafe {
                    std::ptr::copy_nonoverlapping(src.as_ptr(), out.as_mut_ptr().cast::<u8>(), 4 * n)
                }
                #[cfg(not(target_endian = "little"))]
                for (o, c) in out[..n].iter_mut().zip(src.chunks_exact(4)) {
                    *o = f32::from_le_bytes(c.try_into().unwrap());
                }
            }
        }
    }

    fn valid_width(&self, width: u8) -> bool {
        width == self.bits()
    }

    fn valid_value(&self, w: f32, term_bound: f32) -> bool {
        w.is_finite() && w > 0.0 && w <= term_bound
    }
}

/// One block header, read field by field where it lies in the store.
#[derive(Clone, Copy)]
pub struct Header<'a>(&'a [u8]);

impl<'a> Header<'a> {
    #[inline]
    pub fn at(store: &'a [u8], region: usize, bi: usize) -> Self {
        let s = region + bi * HEADER;
        Header(&store[s..s + HEADER])
    }
    /// Doc id of the block's last posting.
    #[inline]
    pub fn last(&self) -> u32 {
        u32::from_le_bytes(self.0[0..4].try_into().unwrap())
    }
    /// Upper bound of the block's posting bounds.
    #[inline]
    pub fn bound(&self) -> f32 {
        f32::from_le_bytes(self.0[4..8].try_into().unwrap())
    }
    /// Offset of the block's data from the term's region.
    #[inline]
    pub fn data(&self) -> usize {
        u32::from_le_bytes(self.0[8..12].try_into().unwrap()) as usize
    }
    #[inline]
    pub fn doc_bits(&self) -> u8 {
        self.0[12]
    }
    #[inline]
    pub fn value_bits(&self) -> u8 {
        self.0[13]
    }
    /// Postings in the block (1..=BLOCK).
    #[inline]
    pub fn count(&self) -> usize {
        self.0[14] as usize + 1
    }
    /// Bytes of the packed doc gaps (the values follow them).
    #[inline]
    pub fn doc_bytes(&self) -> usize {
        (self.count() * self.doc_bits() as usize).div_ceil(8)
    }
    /// Bytes of the stored values.
    #[inline]
    pub fn value_bytes(&self) -> usize {
        (self.count() * self.value_bits() as usize).div_ceil(8)
    }
}

/// Encode one term's postings (doc ids strictly increasing) into its region,
/// appended to `out`. `bound(doc, value)` is what block-max pruning must
/// bound (BM25: the tf weight; sparse: the weight itself). Returns (blocks,
/// term bound = largest block bound).
pub fn encode_term<P: Payload>(
    docs: &[u32],
    values: &[P::Value],
    payload: P,
    bound: impl Fn(u32, P::Value) -> f32,
    out: &mut Vec<u8>,
) -> (u32, f32) {
    debug_assert_eq!(docs.len(), values.len());
    let region = out.len();
    let n_blocks = docs.len().div_ceil(BLOCK);
    out.resize(region + n_blocks * HEADER, 0);
    let mut prev = 0u32;
    let mut term_bound = 0f32;
    let mut gaps = [0u32; BLOCK];
    for (bi, (dchunk, vchunk)) in docs.chunks(BLOCK).zip(values.chunks(BLOCK)).enumerate() {
        let mut block_max = 0f32;
        for (i, (&d, &v)) in dchunk.iter().zip(vchunk).enumerate() {
            gaps[i] = d - prev;
            prev = d;
            block_max = block_max.max(bound(d, v));
        }
        let block_bound = bound::round_up(block_max);
        term_bound = term_bound.max(block_bound);
        let n = dchunk.len();
        let db = bits_for(gaps[..n].iter().copied().max().unwrap_or(0));
        let vb = payload.width(vchunk);
        let data_off = (out.len() - region) as u32;
        pack(&gaps[..n], db, out);
        payload.encode(vchunk, vb, out);
        let h = &mut out[region + bi * HEADER..region + (bi + 1) * HEADER];
        h[0..4].copy_from_slice(&dchunk[n - 1].to_le_bytes());
        h[4..8].copy_from_slice(&block_bound.to_le_bytes());
        h[8..12].copy_from_slice(&data_off.to_le_bytes());
        h[12] = db;
        h[13] = vb;
        h[14] = (n - 1) as u8;
    }
    (n_blocks as u32, term_bound)
}

/// Check a term region against the store, so that a damaged file gives an
/// error at load instead of a panic or a wrong answer at search time: sizes,
/// widths, data inside the store, block bounds finite and within
/// `[0, term_bound]`; then every block decoded: doc ids strictly increasing
/// across the term, each block's last one equal to its header's (cursors skip
/// and stop by the headers), values valid for the payload. Returns the term's
/// last doc id.
pub fn validate_term<P: Payload>(
    store: &[u8],
    t: TermRef,
    df: usize,
    term_bound: f32,
    payload: P,
) -> Result<u32, String> {
    let (offset, n_blocks) = (t.offset, t.n_blocks);
    let hdr_end = offset
        .checked_add(n_blocks.checked_mul(HEADER).ok_or("block count overflow")?)
        .ok_or("offset overflow")?;
    if hdr_end > store.len() {
        return Err("postings header past end".into());
    }
    if n_blocks != df.div_ceil(BLOCK) {
        return Err("block count does not match document frequency".into());
    }
    if !(term_bound.is_finite() && term_bound >= 0.0) {
        return Err("bad term bound".into());
    }
    let mut count = 0usize;
    let mut last = 0u32;
    let mut docs = [0u32; BLOCK];
    let mut values = [P::Value::default(); BLOCK];
    for bi in 0..n_blocks {
        let h = Header::at(store, offset, bi);
        if h.doc_bits() > 32 || !payload.valid_width(h.value_bits()) {
            return Err("bad bit width".into());
        }
        if h.count() > BLOCK {
            return Err("block longer than a block".into());
        }
        let b = h.bound();
        if !(b.is_finite() && (0.0..=term_bound).contains(&b)) {
            return Err("bad block bound".into());
        }
        // Data before the headers' end would be read as headers too; offsets are u32, no overflow.
        if offset + h.data() < hdr_end {
            return Err("block data overlaps the headers".into());
        }
        let end = offset + h.data() + h.doc_bytes() + h.value_bytes();
        if end + TAIL_PAD > store.len() {
            return Err("postings data past end".into());
        }
        let base = last;
        let n = decode_block(store, offset, h, base, payload, &mut docs, &mut values);
        let mut prev = base;
        for (i, &d) in docs[..n].iter().enumerate() {
            // Strictly increasing; only a term's very first doc id may be 0 (a zero gap).
            if (d <= prev && !(bi == 0 && i == 0)) || d < prev {
                return Err("doc ids not increasing".into());
            }
            prev = d;
        }
        if prev != h.last() {
            return Err("block last doc id does not match its postings".into());
        }
        if !values[..n].iter().all(|&v| payload.valid_value(v, term_bound)) {
            return Err("stored value out of range".into());
        }
        last = prev;
        count += n;
    }
    if count != df {
        return Err("posting count does not match document frequency".into());
    }
    Ok(last)
}

/// Decode block `bi` of a term: doc ids into `docs` (absolute, from the
/// previous block's last doc `base`), values into `values`. Returns its length.
#[inline]
pub fn decode_block<P: Payload>(
    store: &[u8],
    region: usize,
    h: Header<'_>,
    base: u32,
    payload: P,
    docs: &mut [u32; BLOCK],
    values: &mut [P::Value; BLOCK],
) -> usize {
    let n = h.count();
    let data = region + h.data();
    unpack(&store[data..], h.doc_bits(), n, docs);
    payload.decode(&store[data + h.doc_bytes()..], h.value_bits(), n, values);
    let mut acc = base;
    for d in docs[..n].iter_mut() {
        acc = acc.wrapping_add(*d);
        *d = acc;
    }
    n
}

/// Call `f(docs, values)` for every block of a term, decoded whole: the fast
/// path for scoring a term's full list.
#[inline]
pub fn for_each_block<P: Payload>(store: &[u8], t: TermRef, payload: P, mut f: impl FnMut(&[u32], &[P::Value])) {
    let mut docs = [0u32; BLOCK];
    let mut values = [P::Value::default(); BLOCK];
    let mut base = 0u32;
    for bi in 0..t.n_blocks {
        let h = Header::at(store, t.offset, bi);
        let n = decode_block(store, t.offset, h, base, payload, &mut docs, &mut values);
        base = h.last();
        f(&docs[..n], &values[..n]);
    }
}
