use super::*;
use crate::mask::DocMask;

fn rand_vecs(n: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n * d)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Exhaustive reference on the stored (dequantised) vectors, in f64.
fn brute(idx: &DenseIndex, q: &[f32], k: usize) -> Vec<(i64, f32)> {
    let d = idx.dim();
    let ids = idx.ids();
    let x = idx.get(&ids.iter().map(|&i| i as i64).collect::<Vec<_>>()).unwrap();
    let mut s: Vec<(i64, f64)> = ids
        .iter()
        .enumerate()
        .map(|(r, &id)| {
            (
                id as i64,
                x[r * d..(r + 1) * d]
                    .iter()
                    .zip(q)
                    .map(|(a, b)| *a as f64 * *b as f64)
                    .sum(),
            )
        })
        .collect();
    s.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    s.truncate(k);
    s.into_iter().map(|(i, v)| (i, v as f32)).collect()
}

#[test]
fn exact_topk_all_dtypes_both_paths() {
    for dtype in [Dtype::F32, Dtype::F16, Dtype::I8] {
        for &d in &[1usize, 7, 383, 384] {
            let n = 3000;
            let mut idx = DenseIndex::new(d, dtype, Metric::Ip).unwrap();
            idx.add(&rand_vecs(n, d, 1), None).unwrap();
            let qs = rand_vecs(5, d, 2);
            let one = idx.search_with_path(&qs, 10, false).unwrap();
            let gemm = idx.search_with_path(&qs, 10, true).unwrap();
            for (qi, q) in qs.chunks_exact(d).enumerate() {
                let want = brute(&idx, q, 10);
                for got in [&one[qi], &gemm[qi]] {
                    for (g, w) in got.iter().zip(&want) {
                        assert!(
                            (g.1 - w.1).abs() <= 1e-4 * (1.0 + w.1.abs()),
                            "{dtype:?} d={d}: {g:?} vs {w:?}"
                        );
                    }
                    if d > 1 {
                        // Random scores: no near-ties, ids agree.
                        assert_eq!(
                            got.iter().map(|x| x.0).collect::<Vec<_>>()[..5],
                            want.iter().map(|x| x.0).collect::<Vec<_>>()[..5]
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn ties_by_id_with_unordered_ids() {
    let mut idx = DenseIndex::new(2, Dtype::F32, Metric::Ip).unwrap();
    idx.add(&[1.0, 0.0, 1.0, 0.0, 2.0, 0.0, 1.0, 0.0], Some(&[9, 3, 5, 1]))
        .unwrap();
    for gemm in [false, true] {
        let r = idx
            .search_with_path(&[1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0], 3, gemm)
            .unwrap();
        assert_eq!(r[0], vec![(5, 2.0), (1, 1.0), (3, 1.0)]);
    }
}

#[test]
fn mask_remove_compact_pad() {
    let d = 8;
    let mut idx = DenseIndex::new(d, Dtype::F32, Metric::Ip).unwrap();
    idx.add(&rand_vecs(100, d, 3), None).unwrap();
    let mut mask = vec![0u8; 50];
    mask[10] = 1;
    mask[20] = 1;
    let r = idx
        .search(&rand_vecs(1, d, 4), 5, Some(DocMask::new(&mask)), Some(1))
        .unwrap();
    let got: Vec<i64> = r[0].iter().map(|x| x.0).collect();
    assert!(got[..2].contains(&10) && got[..2].contains(&20));
    assert_eq!(&got[2..], &[-1, -1, -1]);
    assert!(r[0][4].1 == f32::NEG_INFINITY);
    idx.remove(&[10, 11, 12]).unwrap();
    assert_eq!(idx.len(), 97);
    assert!(idx.remove(&[10]).is_err());
    let r = idx
        .search(&rand_vecs(1, d, 4), 5, Some(DocMask::new(&mask)), None)
        .unwrap();
    assert_eq!(r[0][0].0, 20);
    assert_eq!(r[0][1].0, -1);
    idx.remove(&(0..30).filter(|i| !(10..13).contains(i)).collect::<Vec<_>>())
        .unwrap();
    assert_eq!(idx.n_removed(), 0, "auto compaction");
    assert_eq!(idx.len(), 70);
    let new = idx.add(&rand_vecs(2, d, 5), None).unwrap();
    assert_eq!(new, vec![100, 101]);
}

#[test]
fn save_load_mmap_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    for dtype in [Dtype::F32, Dtype::F16, Dtype::I8] {
        let d = 33;
        let mut idx = DenseIndex::new(d, dtype, Metric::Cosine).unwrap();
        idx.add(&rand_vecs(500, d, 6), None).unwrap();
        idx.remove(&[3, 7]).unwrap();
        let p = dir.path().join(format!("{}.dense", dtype.name()));
        idx.save(&p).unwrap();
        let q = rand_vecs(3, d, 7);
        let want = idx.search(&q, 10, None, None).unwrap();
        for mmap in [true, false] {
            let l = DenseIndex::load(&p, mmap).unwrap();
            assert!(l.is_mapped());
            assert_eq!(l.ids(), idx.ids());
            assert_eq!(l.search(&q, 10, None, None).unwrap(), want);
        }
        let mut bytes = std::fs::read(&p).unwrap();
        bytes.truncate(bytes.len() - 1);
        std::fs::write(&p, &bytes).unwrap();
        assert!(matches!(DenseIndex::load(&p, true), Err(Error::Corrupt { .. })));
    }
}

#[test]
fn maxsim_matches_reference() {
    let d = 16;
    let q = rand_vecs(5, d, 8);
    let docs: Vec<Vec<f32>> = [1usize, 3, 40, 300]
        .iter()
        .map(|&n| rand_vecs(n, d, n as u64))
        .collect();
    let refs: Vec<&[f32]> = docs.iter().map(|v| v.as_slice()).collect();
    let got = maxsim(&q, &refs, d, None).unwrap();
    for (doc, g) in docs.iter().zip(&got) {
        let want: f64 = q
            .chunks_exact(d)
            .map(|qr| {
                doc.chunks_exact(d)
                    .map(|p| qr.iter().zip(p).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>())
                    .fold(f64::NEG_INFINITY, f64::max)
            })
            .sum::<f64>()
            / 5.0;
        assert!((*g as f64 - want).abs() < 1e-5, "{g} vs {want}");
    }
    let (order, s) = maxsim_rerank(&q, &refs, d, Some(2), None).unwrap();
    assert_eq!(order.len(), 2);
    assert!(s[0] >= s[1]);
}

#[test]
fn int8_error_bound() {
    let x = rand_vecs(1, 384, 9);
    let mut q = Vec::new();
    let s = quantize_i8(&x, &mut q);
    let m = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    for (a, b) in x.iter().zip(&q) {
        assert!((a - *b as f32 * s).abs() <= m / 254.0 * 1.0001);
    }
}

#[test]
#[ignore]
fn kernel_speed() {
    for d in [384usize, 768] {
        let n = 1000;
        let x = rand_vecs(n, d, 1);
        let q = rand_vecs(1, d, 2);
        let k = kernels::kernels();
        let t = std::time::Instant::now();
        let mut s = 0f32;
        for _ in 0..1000 {
            for r in 0..n {
                s += (k.dot_f32)(&q, &x[r * d..(r + 1) * d]);
            }
        }
        println!(
            "d={d} kernel only: {:.1} ns/row ({s})",
            t.elapsed().as_nanos() as f64 / 1e6
        );
        let mut idx = DenseIndex::new(d, Dtype::F32, Metric::Ip).unwrap();
        idx.add(&x, None).unwrap();
        let t = std::time::Instant::now();
        for _ in 0..1000 {
            std::hint::black_box(idx.search(&q, 10, None, Some(1)).unwrap());
        }
        println!("d={d} search: {:.1} ns/row", t.elapsed().as_nanos() as f64 / 1e6);
    }
}
