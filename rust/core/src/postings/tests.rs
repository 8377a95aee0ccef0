//! The shared codec on its own: round trips for every payload, cursor
//! next/advance against a plain list, block bounds against the true maxima.

use super::block::Header;
use super::*;
use crate::dtype::Dtype;
use crate::test_rng::Lcg;

/// `n` increasing doc ids with gaps of 1..=max_gap.
fn doc_ids(n: usize, max_gap: u64, r: &mut Lcg) -> Vec<u32> {
    let mut d = r.next() % 5;
    (0..n)
        .map(|_| {
            let x = d as u32;
            d += 1 + r.next() % max_gap;
            x
        })
        .collect()
}

fn store_of<P: Payload>(
    docs: &[u32],
    values: &[P::Value],
    p: P,
    bound: impl Fn(u32, P::Value) -> f32,
) -> (Vec<u8>, TermRef, f32) {
    // A leading byte so the region does not start at 0.
    let mut store = vec![7u8];
    let (nb, tb) = encode_term(docs, values, p, bound, &mut store);
    store.extend_from_slice(&[0u8; TAIL_PAD]);
    let t = TermRef {
        offset: 1,
        n_blocks: nb as usize,
    };
    (store, t, tb)
}

/// Everything the codec gives back for one term, three ways.
fn check_round_trip<P: Payload>(docs: &[u32], values: &[P::Value], p: P, bound: impl Fn(u32, P::Value) -> f32 + Copy)
where
    P::Value: PartialEq + std::fmt::Debug,
{
    let (store, t, tb) = store_of(docs, values, p, bound);
    let last = validate_term(&store, t, docs.len(), tb, p).unwrap();
    assert_eq!(last, *docs.last().unwrap());
    let want: Vec<(u32, P::Value)> = docs.iter().copied().zip(values.iter().copied()).collect();
    // Whole blocks.
    let mut got = Vec::new();
    for_each_block(&store, t, p, |d, v| {
        got.extend(d.iter().copied().zip(v.iter().copied()))
    });
    assert_eq!(got, want);
    // Cursor, next by next.
    let mut c = Cursor::new(&store, t, p);
    let mut got = Vec::new();
    while c.doc != END {
        got.push((c.doc, c.value()));
        c.next();
    }
    assert_eq!(got, want);
    // Cursor, by windows.
    let mut c = Cursor::new(&store, t, p);
    let mut got = Vec::new();
    let mut hi = 0u32;
    while c.doc != END {
        hi += 300;
        c.for_each_until(hi, |d, v| got.push((d, v)));
        assert!(c.doc >= hi);
    }
    assert_eq!(got, want);
}

#[test]
fn round_trip_term_frequencies() {
    let mut r = Lcg(1);
    for (n, gap, max_tf) in [
        (1, 3, 1),
        (127, 2, 1),
        (128, 1, 3),
        (129, 9, 40),
        (1000, 70, 1000),
        (700, 1 << 20, 70_000),
    ] {
        let docs = doc_ids(n, gap, &mut r);
        let tfs: Vec<u32> = (0..n).map(|_| 1 + (r.next() % max_tf) as u32).collect();
        check_round_trip(&docs, &tfs, Tf, |_, tf| tf as f32);
    }
}

#[test]
fn round_trip_weights_each_dtype() {
    let mut r = Lcg(2);
    for dtype in [Dtype::F32, Dtype::F16, Dtype::U8] {
        for n in [1usize, 128, 129, 1000] {
            let docs = doc_ids(n, 50, &mut r);
            let raw: Vec<f32> = (0..n).map(|_| 0.01 + (r.next() % 100_000) as f32 / 997.0).collect();
            let max = raw.iter().copied().fold(0f32, f32::max);
            let p = Weights::new(dtype, if dtype == Dtype::U8 { max / 255.0 } else { 1.0 });
            // Weights as stored (what the sparse index encodes): exact round trip.
            let ws: Vec<f32> = raw.iter().map(|&w| p.stored(w)).collect();
            if dtype == Dtype::F32 {
                assert_eq!(ws, raw);
            }
            // As the index does, postings whose weight stores as 0 are dropped (loading
            // refuses a stored weight that is not > 0).
            let (docs, ws): (Vec<u32>, Vec<f32>) = docs.iter().zip(&ws).filter(|(_, &w)| w > 0.0).unzip();
            check_round_trip(&docs, &ws, p, |_, w| w);
        }
    }
}

#[test]
fn bit_packing_every_width() {
    let mut r = Lcg(3);
    for bits in 0..=32u8 {
        let mask = if bits == 32 { u32::MAX } else { (1u32 << bits) - 1 };
        let vals: Vec<u32> = (0..BLOCK)
            .map(|_| (r.next() as u32 ^ (r.next() << 16) as u32) & mask)
            .collect();
        let mut out = Vec::new();
        block::pack(&vals, bits, &mut out);
        assert_eq!(out.len(), (BLOCK * bits as usize).div_ceil(8));
        out.extend_from_slice(&[0u8; TAIL_PAD]);
        let mut back = [0u32; BLOCK];
        block::unpack(&out, bits, BLOCK, &mut back);
        assert_eq!(&back[..], &vals[..], "bits {bits}");
    }
}

#[test]
fn cursor_advance_and_skip() {
    let mut r = Lcg(4);
    let docs = doc_ids(2000, 20, &mut r);
    let tfs: Vec<u32> = (0..docs.len()).map(|i| 1 + (i % 7) as u32).collect();
    let (store, t, _) = store_of(&docs, &tfs, Tf, |_, tf| tf as f32);
    for step in [1u32, 3, 50, 129, 1000, 5000] {
        let mut c = Cursor::new(&store, t, Tf);
        let mut target = 0u32;
        loop {
            c.advance(target);
            let i = docs.partition_point(|&d| d < target);
            if i == docs.len() {
                assert_eq!(c.doc, END);
                break;
            }
            assert_eq!((c.doc, c.value()), (docs[i], tfs[i]), "target {target}");
            // advance never moves back.
            c.advance(target.saturating_sub(5));
            assert_eq!(c.doc, docs[i]);
            target += step;
        }
        // Exhausted stays exhausted.
        c.advance(u32::MAX - 1);
        c.next();
        assert_eq!(c.doc, END);
    }
    // Mixing next and advance.
    let mut c = Cursor::new(&store, t, Tf);
    c.next();
    c.next();
    assert_eq!(c.doc, docs[2]);
    c.advance(docs[300]);
    assert_eq!(c.value(), tfs[300]);
    c.next();
    assert_eq!((c.doc, c.value()), (docs[301], tfs[301]));
}

#[test]
fn block_bounds_hold() {
    let mut r = Lcg(5);
    let docs = doc_ids(1500, 9, &mut r);
    let ws: Vec<f32> = (0..docs.len()).map(|_| (r.next() % 1000) as f32 / 7.0 + 1e-3).collect();
    let p = Weights::new(Dtype::F32, 1.0);
    let (store, t, term_bound) = store_of(&docs, &ws, p, |_, w| w);
    // Every stored block bound is >= the block's true maximum and close to it.
    for (bi, chunk) in ws.chunks(BLOCK).enumerate() {
        let true_max = chunk.iter().copied().fold(0f32, f32::max);
        let b = Header::at(&store, t.offset, bi).bound();
        assert!(
            b >= true_max && b <= true_max * 1.0001 + 1e-30,
            "block {bi}: {b} vs {true_max}"
        );
        assert!(b <= term_bound);
    }
    assert!(term_bound >= ws.iter().copied().fold(0f32, f32::max));
    // Cursor bounds, from headers, never below the value of any doc they cover.
    let mut c = Cursor::new(&store, t, p);
    for target in (0..docs.last().unwrap() + 3).step_by(11) {
        c.advance(target);
        // One hint over increasing targets, as MaxScore uses it.
        let mut hint = 0;
        for (&d, &w) in docs.iter().zip(&ws) {
            if d >= target && d < target + 400 {
                assert!(c.bound_at_from(&mut hint, d) >= w, "bound_at_from {d}");
            }
        }
        let (b, until) = c.block_bound(target);
        for (&d, &w) in docs.iter().zip(&ws) {
            if d >= target && d < until {
                assert!(b >= w, "block_bound {target}..{until}");
            }
        }
        assert!(until > target || c.doc == END);
    }
    // A bound computed from a weight function (BM25's tf weight) bounds that function.
    let tfs: Vec<u32> = (0..docs.len()).map(|_| 1 + (r.next() % 30) as u32).collect();
    let wf = |d: u32, tf: u32| tf as f32 / (tf as f32 + 0.5 + (d % 13) as f32 / 10.0);
    let (store, t, _) = store_of(&docs, &tfs, Tf, wf);
    for (bi, (dc, tc)) in docs.chunks(BLOCK).zip(tfs.chunks(BLOCK)).enumerate() {
        let true_max = dc.iter().zip(tc).map(|(&d, &tf)| wf(d, tf)).fold(0f32, f32::max);
        assert!(Header::at(&store, t.offset, bi).bound() >= true_max);
    }
}

#[test]
fn validation_rejects_damage() {
    let mut r = Lcg(6);
    let docs = doc_ids(400, 30, &mut r);
    let tfs: Vec<u32> = (0..docs.len()).map(|i| 1 + (i % 5) as u32).collect();
    let (store, t, tb) = store_of(&docs, &tfs, Tf, |_, tf| tf as f32);
    assert!(validate_term(&store, t, docs.len(), tb, Tf).is_ok());
    // Wrong document frequency, wrong block count, region past the end.
    assert!(validate_term(&store, t, docs.len() - 1, tb, Tf).is_err());
    let t2 = TermRef {
        n_blocks: t.n_blocks - 1,
        ..t
    };
    assert!(validate_term(&store, t2, docs.len(), tb, Tf).is_err());
    let t3 = TermRef {
        offset: store.len() - 4,
        ..t
    };
    assert!(validate_term(&store, t3, docs.len(), tb, Tf).is_err());
    // A bound above the term's, a width the payload never writes, a data offset past the end.
    let h = t.offset + HEADER;
    for (at, byte) in [(h + 7, 0x7f), (h + 13, 40), (h + 11, 0x10)] {
        let mut bad = store.clone();
        bad[at] = byte;
        assert!(
            validate_term(&bad, t, docs.len(), tb, Tf).is_err(),
            "byte {at} = {byte}"
        );
    }
    // Block last doc ids that do not increase.
    let mut bad = store.clone();
    bad.copy_within(t.offset..t.offset + 4, h);
    assert!(validate_term(&bad, t, docs.len(), tb, Tf).is_err());
    // A weights block must carry exactly its dtype's width.
    let p = Weights::new(Dtype::F16, 1.0);
    let ws: Vec<f32> = docs.iter().map(|&d| p.stored(1.0 + d as f32 / 64.0)).collect();
    let (mut store, t, tb) = store_of(&docs, &ws, p, |_, w| w);
    assert!(validate_term(&store, t, docs.len(), tb, p).is_ok());
    store[t.offset + 13] = 8;
    assert!(validate_term(&store, t, docs.len(), tb, p).is_err());
}
