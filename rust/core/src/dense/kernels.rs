//! Dot-product kernels with runtime CPU dispatch.
//!
//! One table of function pointers is picked once per process: AVX-512F, then
//! AVX2+FMA+F16C on x86_64, NEON on aarch64, else portable scalar code (which
//! the compiler still vectorises for the baseline target). Every kernel takes
//! an f32 query and one stored row in its storage type:
//! `dot_f32(q, x)`, `dot_f16(q, x)` (halves converted in registers),
//! `dot_i8(q, x)` = sum q_i * x_i as f32 (the caller multiplies by the row's scale).

use half::f16;
use std::sync::OnceLock;

/// One dispatch target's kernels.
pub struct Kernels {
    pub name: &'static str,
    pub dot_f32: fn(&[f32], &[f32]) -> f32,
    pub dot_f16: fn(&[f32], &[f16]) -> f32,
    pub dot_i8: fn(&[f32], &[i8]) -> f32,
    pub sum_f32: fn(&[f32]) -> f32,
    /// `out[r] = dot(q, row r of x)` for `out.len()` consecutive rows of width `q.len()`.
    pub dots_f32: fn(&[f32], &[f32], &mut [f32]),
    pub dots_f16: fn(&[f32], &[f16], &mut [f32]),
    pub dots_i8: fn(&[f32], &[i8], &mut [f32]),
    /// `out[x][y] = dot(a[x], b[y])` for four rows of each (equal lengths), where
    /// a register-blocked kernel exists (AVX-512); MaxSim uses it.
    pub tile4x4: Option<Tile4x4>,
}

pub type Tile4x4 = fn([&[f32]; 4], [&[f32]; 4], &mut [[f32; 4]; 4]);

/// Row-at-a-time fallback for `dots_*`.
#[inline(always)]
pub(crate) fn dots_by_row<T>(dot: fn(&[f32], &[T]) -> f32, q: &[f32], x: &[T], out: &mut [f32]) {
    let d = q.len();
    for (o, row) in out.iter_mut().zip(x.chunks_exact(d)) {
        *o = dot(q, row);
    }
}

/// The best kernels this CPU runs (detected once).
pub fn kernels() -> &'static Kernels {
    static K: OnceLock<&'static Kernels> = OnceLock::new();
    K.get_or_init(|| available().into_iter().next().unwrap_or(&SCALAR))
}

/// Every kernel table this CPU can run, best first (scalar last).
pub fn available() -> Vec<&'static Kernels> {
    let mut v: Vec<&'static Kernels> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            v.push(&x86::AVX512);
        }
        if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
        {
            v.push(&x86::AVX2);
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            v.push(&arm::NEON);
        }
    }
    v.push(&SCALAR);
    v
}

// ------------------------------------------------------------------ scalar

pub static SCALAR: Kernels = Kernels {
    name: "scalar",
    dot_f32: dot_f32_scalar,
    dot_f16: dot_f16_scalar,
    dot_i8: dot_i8_scalar,
    sum_f32: sum_scalar,
    dots_f32: |q, x, o| dots_by_row(dot_f32_scalar, q, x, o),
    dots_f16: |q, x, o| dots_by_row(dot_f16_scalar, q, x, o),
    dots_i8: |q, x, o| dots_by_row(dot_i8_scalar, q, x, o),
    tile4x4: None,
};

fn dot_f32_scalar(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        s += x * y;
    }
    s
}

fn dot_f16_scalar(a: &[f32], b: &[f16]) -> f32 {
    let mut buf = [0f32; 64];
    let mut s = 0f32;
    for (qa, xb) in a.chunks(64).zip(b.chunks(64)) {
        let n = qa.len().min(xb.len());
        for (d, x) in buf[..n].iter_mut().zip(xb) {
            *d = x.to_f32();
        }
        s += dot_f32_scalar(&qa[..n], &buf[..n]);
    }
    s
}

fn dot_i8_scalar(a: &[f32], b: &[i8]) -> f32 {
    let mut acc = [0f32; 8];
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i] as f32;
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, &y) in ca.remainder().iter().zip(cb.remainder()) {
        s += x * y as f32;
    }
    s
}

fn sum_scalar(a: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let mut c = a.chunks_exact(16);
    for x in &mut c {
        for i in 0..16 {
            acc[i] += x[i];
        }
    }
    acc.iter().sum::<f32>() + c.remainder().iter().sum::<f32>()
}

// ------------------------------------------------------------------ x86_64

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use std::arch::x86_64::*;

    pub static AVX2: Kernels = Kernels {
        name: "avx2+fma+f16c",
        dot_f32: |a, b| unsafe { dot_f32_avx2(a, b) },
        dot_f16: |a, b| unsafe { dot_f16_avx2(a, b) },
        dot_i8: |a, b| unsafe { dot_i8_avx2(a, b) },
        sum_f32: |a| unsafe { sum_avx2(a) },
        dots_f32: |q, x, o| dots_by_row(|a, b| unsafe { dot_f32_avx2(a, b) }, q, x, o),
        dots_f16: |q, x, o| dots_by_row(|a, b| unsafe { dot_f16_avx2(a, b) }, q, x, o),
        dots_i8: |q, x, o| dots_by_row(|a, b| unsafe { dot_i8_avx2(a, b) }, q, x, o),
        tile4x4: None,
    };
    pub static AVX512: Kernels = Kernels {
        name: "avx512f",
        dot_f32: |a, b| unsafe { dot_f32_avx512(a, b) },
        dot_f16: |a, b| unsafe { dot_f16_avx512(a, b) },
        dot_i8: |a, b| unsafe { dot_i8_avx512(a, b) },
        sum_f32: |a| unsafe { sum_avx512(a) },
        dots_f32: |q, x, o| dots_by_row(|a, b| unsafe { dot_f32_avx512(a, b) }, q, x, o),
        dots_f16: |q, x, o| dots_by_row(|a, b| unsafe { dot_f16_avx512(a, b) }, q, x, o),
        dots_i8: |q, x, o| dots_by_row(|a, b| unsafe { dot_i8_avx512(a, b) }, q, x, o),
        tile4x4: Some(|a, b, o| unsafe { tile4x4_avx512(a, b, o) }),
    };

    /// 4 x 4 dot products: 16 accumulators, each loaded vector used four times.
    #[target_feature(enable = "avx512f")]
    unsafe fn tile4x4_avx512(a: [&[f32]; 4], b: [&[f32]; 4], out: &mut [[f32; 4]; 4]) {
        let d = a.iter().chain(&b).map(|r| r.len()).min().unwrap_or(0);
        let full = d / 16 * 16;
        let pa = [a[0].as_ptr(), a[1].as_ptr(), a[2].as_ptr(), a[3].as_ptr()];
        let pb = [b[0].as_ptr(), b[1].as_ptr(), b[2].as_ptr(), b[3].as_ptr()];
        let mut acc = [[_mm512_setzero_ps(); 4]; 4];
        let mut i = 0;
        while i < full {
            let va = [
                _mm512_loadu_ps(pa[0].add(i)),
                _mm512_loadu_ps(pa[1].add(i)),
                _mm512_loadu_ps(pa[2].add(i)),
                _mm512_loadu_ps(pa[3].add(i)),
            ];
            for y in 0..4 {
                let vb = _mm512_loadu_ps(pb[y].add(i));
                for x in 0..4 {
                    acc[x][y] = _mm512_fmadd_ps(va[x], vb, acc[x][y]);
                }
            }
            i += 16;
        }
        for x in 0..4 {
            for y in 0..4 {
                let mut s = _mm512_reduce_add_ps(acc[x][y]);
                for j in full..d {
                    s += a[x][j] * b[y][j];
                }
                out[x][y] = s;
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum256(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps(v, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot_f32_avx2(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (j, s) in acc.iter_mut().enumerate() {
                *s = _mm256_fmadd_ps(
                    _mm256_loadu_ps(pa.add(i + 8 * j)),
                    _mm256_loadu_ps(pb.add(i + 8 * j)),
                    *s,
                );
            }
            i += 32;
        }
        while i + 8 <= n {
            acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc[0]);
            i += 8;
        }
        let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut s = hsum256(v);
        while i < n {
            s += a[i] * b[i];
            i += 1;
        }
        s
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot_f16_avx2(a: &[f32], b: &[f16]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr() as *const u16);
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (j, s) in acc.iter_mut().enumerate() {
                let h = _mm256_cvtph_ps(_mm_loadu_si128(pb.add(i + 8 * j) as *const __m128i));
                *s = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i + 8 * j)), h, *s);
            }
            i += 32;
        }
        while i + 8 <= n {
            let h = _mm256_cvtph_ps(_mm_loadu_si128(pb.add(i) as *const __m128i));
            acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), h, acc[0]);
            i += 8;
        }
        let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut s = hsum256(v);
        while i < n {
            s += a[i] * b[i].to_f32();
            i += 1;
        }
        s
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot_i8_avx2(a: &[f32], b: &[i8]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            let raw = _mm256_loadu_si256(pb.add(i) as *const __m256i);
            let lo = _mm256_castsi256_si128(raw);
            let hi = _mm256_extracti128_si256(raw, 1);
            let parts = [lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)];
            for (j, s) in acc.iter_mut().enumerate() {
                let x = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(parts[j]));
                *s = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i + 8 * j)), x, *s);
            }
            i += 32;
        }
        while i + 8 <= n {
            let raw = _mm_loadl_epi64(pb.add(i) as *const __m128i);
            let x = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(raw));
            acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), x, acc[0]);
            i += 8;
        }
        let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut s = hsum256(v);
        while i < n {
            s += a[i] * b[i] as f32;
            i += 1;
        }
        s
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn sum_avx2(a: &[f32]) -> f32 {
        let n = a.len();
        let p = a.as_ptr();
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (j, s) in acc.iter_mut().enumerate() {
                *s = _mm256_add_ps(_mm256_loadu_ps(p.add(i + 8 * j)), *s);
            }
            i += 32;
        }
        let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        hsum256(v) + a[i..].iter().sum::<f32>()
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn dot_f32_avx512(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut i = 0;
        while i + 64 <= n {
            for (j, s) in acc.iter_mut().enumerate() {
                *s = _mm512_fmadd_ps(
                    _mm512_loadu_ps(pa.add(i + 16 * j)),
                    _mm512_loadu_ps(pb.add(i + 16 * j)),
                    *s,
                );
            }
            i += 64;
        }
        while i + 16 <= n {
            acc[0] = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)), acc[0]);
            i += 16;
        }
        if i < n {
            let m: __mmask16 = ((1u32 << (n - i)) - 1) as __mmask16;
            acc[1] = _mm512_fmadd_ps(
                _mm512_maskz_loadu_ps(m, pa.add(i)),
                _mm512_maskz_loadu_ps(m, pb.add(i)),
                acc[1],
            );
        }
        _mm512_reduce_add_ps(_mm512_add_ps(
            _mm512_add_ps(acc[0], acc[1]),
            _mm512_add_ps(acc[2], acc[3]),
        ))
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn dot_f16_avx512(a: &[f32], b: &[f16]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr() as *const u16);
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut i = 0;
        while i + 64 <= n {
            for (j, s) in acc.iter_mut().enumerate() {
                let h = _mm512_cvtph_ps(_mm256_loadu_si256(pb.add(i + 16 * j) as *const __m256i));
                *s = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i + 16 * j)), h, *s);
            }
            i += 64;
        }
        while i + 16 <= n {
            let h = _mm512_cvtph_ps(_mm256_loadu_si256(pb.add(i) as *const __m256i));
            acc[0] = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), h, acc[0]);
            i += 16;
        }
        let mut s = _mm512_reduce_add_ps(_mm512_add_ps(
            _mm512_add_ps(acc[0], acc[1]),
            _mm512_add_ps(acc[2], acc[3]),
        ));
        while i < n {
            s += a[i] * b[i].to_f32();
            i += 1;
        }
        s
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn dot_i8_avx512(a: &[f32], b: &[i8]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut i = 0;
        while i + 64 <= n {
            for (j, s) in acc.iter_mut().enumerate() {
                let raw = _mm_loadu_si128(pb.add(i + 16 * j) as *const __m128i);
                let x = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(raw));
                *s = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i + 16 * j)), x, *s);
            }
            i += 64;
        }
        while i + 16 <= n {
            let raw = _mm_loadu_si128(pb.add(i) as *const __m128i);
            let x = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(raw));
            acc[0] = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), x, acc[0]);
            i += 16;
        }
        let mut s = _mm512_reduce_add_ps(_mm512_add_ps(
            _mm512_add_ps(acc[0], acc[1]),
            _mm512_add_ps(acc[2], acc[3]),
        ));
        while i < n {
            s += a[i] * b[i] as f32;
            i += 1;
        }
        s
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn sum_avx512(a: &[f32]) -> f32 {
        let n = a.len();
        let p = a.as_ptr();
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut i = 0;
        while i + 64 <= n {
            for (j, s) in acc.iter_mut().enumerate() {
                *s = _mm512_add_ps(_mm512_loadu_ps(p.add(i + 16 * j)), *s);
            }
            i += 64;
        }
        _mm512_reduce_add_ps(_mm512_add_ps(
            _mm512_add_ps(acc[0], acc[1]),
            _mm512_add_ps(acc[2], acc[3]),
        )) + a[i..].iter().sum::<f32>()
    }
}

// ------------------------------------------------------------------ aarch64

#[cfg(target_arch = "aarch64")]
mod arm {
    use super::*;
    use std::arch::aarch64::*;

    pub static NEON: Kernels = Kernels {
        name: "neon",
        dot_f32: |a, b| unsafe { dot_f32_neon(a, b) },
        dot_f16: |a, b| unsafe { dot_f16_neon(a, b) },
        dot_i8: |a, b| unsafe { dot_i8_neon(a, b) },
        sum_f32: |a| unsafe { sum_neon(a) },
        dots_f32: |q, x, o| super::dots_by_row(NEON.dot_f32, q, x, o),
        dots_f16: |q, x, o| super::dots_by_row(NEON.dot_f16, q, x, o),
        dots_i8: |q, x, o| super::dots_by_row(NEON.dot_i8, q, x, o),
        tile4x4: None,
    };

    #[target_feature(enable = "neon")]
    unsafe fn dot_f32_neon(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [vdupq_n_f32(0.0); 4];
        let mut i = 0;
        while i + 16 <= n {
            for (j, s) in acc.iter_mut().enumerate() {
                *s = vfmaq_f32(*s, vld1q_f32(pa.add(i + 4 * j)), vld1q_f32(pb.add(i + 4 * j)));
            }
            i += 16;
        }
        while i + 4 <= n {
            acc[0] = vfmaq_f32(acc[0], vld1q_f32(pa.add(i)), vld1q_f32(pb.add(i)));
            i += 4;
        }
        let mut s = vaddvq_f32(vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3])));
        while i < n {
            s += a[i] * b[i];
            i += 1;
        }
        s
    }

    /// Halves are widened 64 at a time (with the `half` crate's conversion) into a stack buffer.
    #[target_feature(enable = "neon")]
    unsafe fn dot_f16_neon(a: &[f32], b: &[f16]) -> f32 {
        use half::slice::HalfFloatSliceExt;
        let mut buf = [0f32; 64];
        let mut s = 0f32;
        for (qa, xb) in a.chunks(64).zip(b.chunks(64)) {
            let n = qa.len().min(xb.len());
            xb[..n].convert_to_f32_slice(&mut buf[..n]);
            s += dot_f32_neon(&qa[..n], &buf[..n]);
        }
        s
    }

    #[target_feature(enable = "neon")]
    unsafe fn dot_i8_neon(a: &[f32], b: &[i8]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [vdupq_n_f32(0.0); 2];
        let mut i = 0;
        while i + 8 <= n {
            let w = vmovl_s8(vld1_s8(pb.add(i)));
            let lo = vcvtq_f32_s32(vmovl_s16(vget_low_s16(w)));
            let hi = vcvtq_f32_s32(vmovl_s16(vget_high_s16(w)));
            acc[0] = vfmaq_f32(acc[0], vld1q_f32(pa.add(i)), lo);
            acc[1] = vfmaq_f32(acc[1], vld1q_f32(pa.add(i + 4)), hi);
            i += 8;
        }
        let mut s = vaddvq_f32(vaddq_f32(acc[0], acc[1]));
        while i < n {
            s += a[i] * b[i] as f32;
            i += 1;
        }
        s
    }

    #[target_feature(enable = "neon")]
    unsafe fn sum_neon(a: &[f32]) -> f32 {
        let n = a.len();
        let p = a.as_ptr();
        let mut acc = [vdupq_n_f32(0.0); 4];
        let mut i = 0;
        while i + 16 <= n {
            for (j, s) in acc.iter_mut().enumerate() {
                *s = vaddq_f32(*s, vld1q_f32(p.add(i + 4 * j)));
            }
            i += 16;
        }
        vaddvq_f32(vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3]))) + a[i..].iter().sum::<f32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    #[test]
    fn every_path_matches_f64_reference() {
        let ks = available();
        assert_eq!(ks.last().unwrap().name, "scalar");
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            assert_eq!(kernels().name, "avx512f");
        }
        let mut seed = 7u64;
        for &d in &[
            1usize, 2, 7, 8, 15, 16, 17, 31, 33, 63, 64, 65, 127, 383, 384, 385, 768, 1023,
        ] {
            let q: Vec<f32> = (0..d).map(|_| lcg(&mut seed)).collect();
            let x: Vec<f32> = (0..d).map(|_| lcg(&mut seed)).collect();
            let h: Vec<f16> = x.iter().map(|&v| f16::from_f32(v)).collect();
            let b: Vec<i8> = x.iter().map(|&v| (v * 127.0).round() as i8).collect();
            let r32: f64 = q.iter().zip(&x).map(|(a, b)| *a as f64 * *b as f64).sum();
            let r16: f64 = q.iter().zip(&h).map(|(a, b)| *a as f64 * b.to_f64()).sum();
            let r8: f64 = q.iter().zip(&b).map(|(a, b)| *a as f64 * *b as f64).sum();
            let rs: f64 = x.iter().map(|&v| v as f64).sum();
            let tol = 1e-5 * (d as f64).sqrt() + 1e-6;
            for k in &ks {
                assert!(((k.dot_f32)(&q, &x) as f64 - r32).abs() < tol, "{} f32 d={d}", k.name);
                assert!(((k.dot_f16)(&q, &h) as f64 - r16).abs() < tol, "{} f16 d={d}", k.name);
                assert!(
                    ((k.dot_i8)(&q, &b) as f64 - r8).abs() < tol * 127.0,
                    "{} i8 d={d}",
                    k.name
                );
                assert!(((k.sum_f32)(&x) as f64 - rs).abs() < tol, "{} sum d={d}", k.name);
            }
        }
    }

    #[test]
    fn extreme_i8_and_f16_values() {
        let q = vec![1.5f32; 100];
        let b = vec![-128i8; 100];
        let h = vec![f16::from_f32(-65504.0); 100];
        for k in available() {
            assert_eq!((k.dot_i8)(&q, &b), -19200.0, "{}", k.name);
            assert_eq!((k.dot_f16)(&q, &h), -9825600.0, "{}", k.name);
        }
    }
}
