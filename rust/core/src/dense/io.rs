//! Dense index files (container format in `storage`, kind "dense", version 1).
//!
//! Sections: `params` (dim u32, dtype u32, metric u32, 0 u32, rows u64,
//! next_id u64), `ids` (u64 per row), `vectors` (rows x dim little-endian
//! float32 / float16 / int8), `scales` (float32 per row, int8 only). Only live
//! rows are written. With mmap the vectors are used in place (zero copy) when
//! the section is aligned for its type, which the 8-byte section alignment
//! guarantees for files written here.

use std::path::Path;
use std::sync::Arc;

use half::f16;
use rustc_hash::FxHashMap;

use super::{Buf, DenseIndex, Dtype, Metric, Vectors, DTYPES};
use crate::error::{Error, Result};
use crate::storage::{Blob, Cursor, FileReader, FileWriter, PutLe};

pub const KIND: &str = "dense";
pub const VERSION: u32 = 1;

fn le_bytes<T: Copy>(x: &[T]) -> Vec<u8> {
    // SAFETY: T is f32, f16, i8 or u64: plain numbers with no padding.
    let b = unsafe { std::slice::from_raw_parts(x.as_ptr() as *const u8, std::mem::size_of_val(x)) };
    if cfg!(target_endian = "little") || std::mem::size_of::<T>() == 1 {
        b.to_vec()
    } else {
        let w = std::mem::size_of::<T>();
        b.chunks_exact(w)
            .flat_map(|c| c.iter().rev().copied().collect::<Vec<_>>())
            .collect()
    }
}

/// A typed view of `range` in `blob`: shared when aligned and little-endian, else decoded.
fn typed<T: Copy + Default>(blob: &Arc<Blob>, range: std::ops::Range<usize>) -> Buf<T> {
    let w = std::mem::size_of::<T>();
    let len = range.len() / w;
    let ptr = blob.as_ptr() as usize + range.start;
    if cfg!(target_endian = "little") && ptr.is_multiple_of(std::mem::align_of::<T>()) {
        return Buf::Shared {
            blob: blob.clone(),
            start: range.start,
            len,
        };
    }
    let mut v = vec![T::default(); len];
    // SAFETY: v has exactly range.len() bytes; T is a plain number type.
    let dst = unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut u8, len * w) };
    dst.copy_from_slice(&blob[range]);
    if cfg!(target_endian = "big") && w > 1 {
        dst.chunks_exact_mut(w).for_each(|c| c.reverse());
    }
    Buf::Owned(v)
}

impl DenseIndex {
    /// Save atomically (temporary file + rename); removed rows are left out.
    pub fn save(&self, path: &Path) -> Result<()> {
        let live: Vec<usize> = (0..self.rows()).filter(|&r| !self.dead[r]).collect();
        let all = live.len() == self.rows();
        let dim = self.dim;
        fn pick<T: Copy>(src: &[T], live: &[usize], w: usize, all: bool) -> Vec<u8> {
            if all {
                return le_bytes(src);
            }
            let mut v = Vec::with_capacity(live.len() * w);
            for &r in live {
                v.extend_from_slice(&src[r * w..(r + 1) * w]);
            }
            le_bytes(&v)
        }
        let mut w = FileWriter::new(KIND, VERSION);
        let mut p = Vec::new();
        p.put_u32(dim as u32);
        p.put_u32(self.dtype.code_in(&DTYPES));
        p.put_u32(match self.metric {
            Metric::Ip => 0,
            Metric::Cosine => 1,
        });
        p.put_u32(0);
        p.put_u64(live.len() as u64);
        p.put_u64(self.next_id);
        w.section("params", p);
        w.section("ids", pick(&self.ids, &live, 1, all));
        match &self.vectors {
            Vectors::F32(b) => w.section("vectors", pick(b.as_slice(), &live, dim, all)),
            Vectors::F16(b) => w.section("vectors", pick(b.as_slice(), &live, dim, all)),
            Vectors::I8 { q, scale } => {
                w.section("vectors", pick(q.as_slice(), &live, dim, all));
                w.section("scales", pick(scale.as_slice(), &live, 1, all));
            }
        }
        w.write(path)
    }

    /// Load a saved index; with `mmap` the vectors stay in the mapped file.
    pub fn load(path: &Path, mmap: bool) -> Result<Self> {
        Self::from_reader(FileReader::open(path, KIND, VERSION, mmap)?)
    }

    /// An index from the bytes of a file (checksum checked, nothing mapped).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        let path = Path::new("<in-memory dense index>");
        Self::from_reader(FileReader::from_blob(path, Blob::Owned(bytes), KIND, VERSION, true)?)
    }

    fn from_reader(r: FileReader) -> Result<Self> {
        let path = r.path.clone();
        let path = path.as_path();
        let bad = |what: &str| Error::corrupt(path, format!("corrupt dense index: {what}"));
        let mut c = Cursor::new(r.bytes("params")?);
        let (Some(dim), Some(dt), Some(mt), Some(_), Some(rows), Some(next_id)) =
            (c.u32(), c.u32(), c.u32(), c.u32(), c.u64(), c.u64())
        else {
            return Err(bad("short parameter section"));
        };
        let dim = dim as usize;
        if dim == 0 || dim > (1 << 20) {
            return Err(bad("dimension out of range"));
        }
        let dtype = Dtype::from_code_in(dt, &DTYPES).ok_or_else(|| bad("unknown dtype"))?;
        let metric = match mt {
            0 => Metric::Ip,
            1 => Metric::Cosine,
            _ => return Err(bad("unknown metric")),
        };
        if rows > u32::MAX as u64 {
            return Err(bad("too many rows"));
        }
        let rows = rows as usize;
        let ids_range = r.range("ids")?;
        let vec_range = r.range("vectors")?;
        if ids_range.len() != rows * 8 {
            return Err(bad("id section size"));
        }
        if vec_range.len() != rows * dim * dtype.bytes() {
            return Err(bad("vector section size"));
        }
        let scale_range = if dtype == Dtype::I8 {
            let s = r.range("scales")?;
            if s.len() != rows * 4 {
                return Err(bad("scale section size"));
            }
            Some(s)
        } else {
            None
        };
        let ids: Vec<u64> = r.blob[ids_range]
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
            .collect();
        let mut row_of = FxHashMap::default();
        row_of.reserve(rows);
        for (i, &id) in ids.iter().enumerate() {
            if id > i64::MAX as u64 || id >= next_id {
                return Err(bad("id out of range"));
            }
            if row_of.insert(id, i as u32).is_some() {
                return Err(bad("duplicate id"));
            }
        }
        #[cfg(target_os = "linux")]
        if let Blob::Mapped(m) = &r.blob {
            // Best effort: huge pages for the mapped vectors where the kernel supports it.
            let _ = m.advise(memmap2::Advice::HugePage);
        }
        let blob = Arc::new(r.blob);
        let vectors = match dtype {
            Dtype::F32 => Vectors::F32(typed::<f32>(&blob, vec_range)),
            Dtype::F16 => Vectors::F16(typed::<f16>(&blob, vec_range)),
            Dtype::I8 => {
                let scale = typed::<f32>(&blob, scale_range.unwrap());
                if scale.as_slice().iter().any(|s| !s.is_finite() || *s < 0.0) {
                    return Err(bad("int8 scale out of range"));
                }
                Vectors::I8 {
                    q: typed::<i8>(&blob, vec_range),
                    scale,
                }
            }
            // Not in DTYPES, so `from_code_in` never gives it.
            Dtype::U8 => return Err(bad("unknown dtype")),
        };
        // Owned loads (mmap=False) keep the file's bytes as the backing store too.
        Ok(DenseIndex {
            dim,
            dtype,
            metric,
            vectors,
            ids,
            row_of,
            dead: vec![false; rows],
            n_dead: 0,
            next_id,
        })
    }
}
