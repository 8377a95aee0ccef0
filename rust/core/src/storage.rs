//! The container format of every densparse index file.
//!
//! ```text
//! magic "DENSPRSE" | kind [8] | version u32 | section count u32 | body length u64 | crc32 u32 | 0 u32
//! section table: count x (name [8], offset u64, length u64)   (offsets from file start)
//! section data, each 8-byte aligned
//! ```
//! The CRC-32 covers everything after the 40-byte header. Files are written to
//! a temporary file in the same directory, flushed, then renamed over the
//! target, so a crash or a failed save never leaves a half-written index and
//! never harms the file already there.

use std::fs::File;
use std::io::Write;
use std::ops::Deref;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::{Error, Result};

pub const MAGIC: &[u8; 8] = b"DENSPRSE";
pub const HEADER_LEN: usize = 40;
const ENTRY_LEN: usize = 24;

/// File bytes, read into memory or memory-mapped.
pub enum Blob {
    Owned(Vec<u8>),
    Mapped(Mmap),
}

impl Deref for Blob {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Blob::Owned(v) => v,
            Blob::Mapped(m) => m,
        }
    }
}

/// Collects named sections, then writes them atomically.
pub struct FileWriter {
    kind: [u8; 8],
    version: u32,
    sections: Vec<([u8; 8], Vec<u8>)>,
}

fn name8(name: &str) -> [u8; 8] {
    let mut n = [0u8; 8];
    n[..name.len().min(8)].copy_from_slice(&name.as_bytes()[..name.len().min(8)]);
    n
}

impl FileWriter {
    pub fn new(kind: &str, version: u32) -> Self {
        FileWriter {
            kind: name8(kind),
            version,
            sections: Vec::new(),
        }
    }

    pub fn section(&mut self, name: &str, data: Vec<u8>) {
        self.sections.push((name8(name), data));
    }

    /// Header, section table, the padding after the table and after each section.
    fn layout(&self) -> (Vec<u8>, Vec<u8>, Vec<u8>, Vec<Vec<u8>>) {
        let table_len = self.sections.len() * ENTRY_LEN;
        let mut offset = align8(HEADER_LEN + table_len);
        let mut table = Vec::with_capacity(table_len);
        for (name, data) in &self.sections {
            table.extend_from_slice(name);
            table.extend_from_slice(&(offset as u64).to_le_bytes());
            table.extend_from_slice(&(data.len() as u64).to_le_bytes());
            offset = align8(offset + data.len());
        }
        let total = offset;
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&table);
        let pad_to = |pos: usize| vec![0u8; align8(pos) - pos];
        let mut pos = HEADER_LEN + table.len();
        let first_pad = pad_to(pos);
        hasher.update(&first_pad);
        pos += first_pad.len();
        let mut pads = Vec::with_capacity(self.sections.len());
        for (_, data) in &self.sections {
            hasher.update(data);
            pos += data.len();
            let p = pad_to(pos);
            hasher.update(&p);
            pos += p.len();
            pads.push(p);
        }
        debug_assert_eq!(pos, total);
        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&self.kind);
        header.extend_from_slice(&self.version.to_le_bytes());
        header.extend_from_slice(&(self.sections.len() as u32).to_le_bytes());
        header.extend_from_slice(&((total - HEADER_LEN) as u64).to_le_bytes());
        header.extend_from_slice(&hasher.finalize().to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes());
        (header, table, first_pad, pads)
    }

    /// The whole file as bytes (for indexes built in memory and saved later).
    pub fn into_bytes(self) -> Vec<u8> {
        let (header, table, first_pad, pads) = self.layout();
        let total = header.len()
            + table.len()
            + first_pad.len()
            + self
                .sections
                .iter()
                .zip(&pads)
                .map(|((_, d), p)| d.len() + p.len())
                .sum::<usize>();
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&header);
        out.extend_from_slice(&table);
        out.extend_from_slice(&first_pad);
        for ((_, data), pad) in self.sections.iter().zip(&pads) {
            out.extend_from_slice(data);
            out.extend_from_slice(pad);
        }
        out
    }

    /// Write to `path` atomically (temporary file + fsync + rename).
    pub fn write(self, path: &Path) -> Result<()> {
        let (header, table, first_pad, pads) = self.layout();
        atomic_write(path, |f| {
            f.write_all(&header)?;
            f.write_all(&table)?;
            f.write_all(&first_pad)?;
            for ((_, data), pad) in self.sections.iter().zip(&pads) {
                f.write_all(data)?;
                f.write_all(pad)?;
            }
            Ok(())
        })
    }
}

/// Write a file through `fill` into a temporary sibling, fsync, then rename.
pub fn atomic_write(
    path: &Path,
    fill: impl FnOnce(&mut std::io::BufWriter<&File>) -> std::io::Result<()>,
) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(Error::io(
            dir,
            std::io::Error::new(std::io::ErrorKind::NotFound, "directory does not exist"),
        ));
    }
    let fname = path
        .file_name()
        .ok_or_else(|| Error::invalid(format!("{}: not a file path", path.display())))?;
    let tmp: PathBuf = dir.join(format!(".{}.tmp-{}", fname.to_string_lossy(), std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let file = File::create(&tmp)?;
        {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, &file);
            fill(&mut w)?;
            w.flush()?;
        }
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

#[inline]
/// CRC-32 of a file's bytes from `start` to the end, read in 1 MiB pieces.
fn stream_crc(file: &mut File, start: u64) -> std::io::Result<u32> {
    use std::io::{Read, Seek, SeekFrom};
    file.seek(SeekFrom::Start(start))?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher.finalize());
        }
        hasher.update(&buf[..n]);
    }
}

fn align8(x: usize) -> usize {
    (x + 7) & !7
}

impl std::fmt::Debug for FileReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileReader({})", self.path.display())
    }
}

/// A checked, opened file: its bytes and where each section lies.
pub struct FileReader {
    pub path: PathBuf,
    pub blob: Blob,
    pub version: u32,
    sections: Vec<([u8; 8], usize, usize)>,
}

impl FileReader {
    /// Open `path`, expecting a file of `kind` with a version in `versions`.
    pub fn open(path: &Path, kind: &str, max_version: u32, mmap: bool) -> Result<Self> {
        Self::open_with(path, kind, max_version, mmap, true)
    }

    /// As [`FileReader::open`]; `verify = false` skips the CRC over the body (O(1) open
    /// for files whose integrity is checked elsewhere, e.g. by a manifest digest).
    pub fn open_with(path: &Path, kind: &str, max_version: u32, mmap: bool, verify: bool) -> Result<Self> {
        let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
        if !mmap {
            let blob = Blob::Owned(std::fs::read(path).map_err(|e| Error::io(path, e))?);
            return Self::from_blob(path, blob, kind, max_version, verify);
        }
        // SAFETY: the mapping is read-only; files are only ever replaced by
        // rename, never modified in place, so the mapped bytes do not change.
        let blob = Blob::Mapped(unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?);
        let reader = Self::from_blob(path, blob, kind, max_version, false)?;
        if verify {
            // Checked through read(), not the mapping: a mapped page once touched counts in
            // the process's resident memory, and opening must not make the whole index
            // resident only to check it.
            let crc = u32::from_le_bytes(reader.blob[32..36].try_into().unwrap());
            if stream_crc(&mut file, HEADER_LEN as u64).map_err(|e| Error::io(path, e))? != crc {
                return Err(Error::corrupt(path, "checksum mismatch: the file is corrupt"));
            }
        }
        Ok(reader)
    }

    /// Check the header and section table of `blob` (and its CRC when `verify`).
    pub fn from_blob(path: &Path, blob: Blob, kind: &str, max_version: u32, verify: bool) -> Result<Self> {
        let b: &[u8] = &blob;
        let corrupt = |m: String| Error::corrupt(path, m);
        if b.len() < HEADER_LEN || &b[..8] != MAGIC {
            return Err(corrupt("not a densparse index file (bad magic number)".into()));
        }
        let want = name8(kind);
        if b[8..16] != want {
            let got = String::from_utf8_lossy(&b[8..16]).trim_end_matches('\0').to_string();
            return Err(corrupt(format!("is a densparse {got:?} file, not a {kind:?} file")));
        }
        let version = u32::from_le_bytes(b[16..20].try_into().unwrap());
        if version == 0 || version > max_version {
            return Err(corrupt(format!(
                "format version {version} is not supported (this densparse reads up to {max_version}); upgrade densparse"
            )));
        }
        let count = u32::from_le_bytes(b[20..24].try_into().unwrap()) as usize;
        let body = u64::from_le_bytes(b[24..32].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(b[32..36].try_into().unwrap());
        if HEADER_LEN.checked_add(body) != Some(b.len()) {
            return Err(corrupt(format!(
                "truncated or extended: header says {} bytes, file has {}",
                HEADER_LEN.saturating_add(body),
                b.len()
            )));
        }
        if verify && crc32fast::hash(&b[HEADER_LEN..]) != crc {
            return Err(corrupt("checksum mismatch: the file is corrupt".into()));
        }
        let table_end = count.checked_mul(ENTRY_LEN).and_then(|t| t.checked_add(HEADER_LEN));
        if table_end.is_none_or(|t| t > b.len()) {
            return Err(corrupt("section table runs past the end of the file".into()));
        }
        let mut sections = Vec::with_capacity(count);
        for i in 0..count {
            let e = &b[HEADER_LEN + i * ENTRY_LEN..HEADER_LEN + (i + 1) * ENTRY_LEN];
            let name: [u8; 8] = e[..8].try_into().unwrap();
            let off = u64::from_le_bytes(e[8..16].try_into().unwrap()) as usize;
            let len = u64::from_le_bytes(e[16..24].try_into().unwrap()) as usize;
            if off.checked_add(len).is_none_or(|end| end > b.len()) {
                return Err(corrupt("a section runs past the end of the file".into()));
            }
            sections.push((name, off, len));
        }
        Ok(FileReader {
            path: path.to_path_buf(),
            blob,
            version,
            sections,
        })
    }

    /// Whether the body matches the CRC-32 in the header (reads the whole file).
    pub fn verify(&self) -> Result<()> {
        let b: &[u8] = &self.blob;
        let crc = u32::from_le_bytes(b[32..36].try_into().unwrap());
        if crc32fast::hash(&b[HEADER_LEN..]) != crc {
            return Err(Error::corrupt(&self.path, "checksum mismatch: the file is corrupt"));
        }
        Ok(())
    }

    /// Byte range of section `name`.
    pub fn range(&self, name: &str) -> Result<std::ops::Range<usize>> {
        let n = name8(name);
        self.sections
            .iter()
            .find(|(s, _, _)| *s == n)
            .map(|&(_, off, len)| off..off + len)
            .ok_or_else(|| Error::corrupt(&self.path, format!("missing section {name:?}")))
    }

    pub fn bytes(&self, name: &str) -> Result<&[u8]> {
        let r = self.range(name)?;
        Ok(&self.blob[r])
    }
}

/// Little-endian readers over a byte slice with bounds checks turned into errors.
pub struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Cursor { b, pos: 0 }
    }

    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }

    pub fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|s| u32::from_le_bytes(s.try_into().unwrap()))
    }

    pub fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|s| u64::from_le_bytes(s.try_into().unwrap()))
    }

    pub fn f64(&mut self) -> Option<f64> {
        self.take(8).map(|s| f64::from_le_bytes(s.try_into().unwrap()))
    }
}

/// Append helpers for building sections.
pub trait PutLe {
    fn put_u32(&mut self, v: u32);
    fn put_u64(&mut self, v: u64);
    fn put_f32(&mut self, v: f32);
    fn put_f64(&mut self, v: f64);
}

impl PutLe for Vec<u8> {
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_f32(&mut self, v: f32) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_f64(&mut self, v: f64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.idx");
        let mut w = FileWriter::new("TEST", 1);
        w.section("a", vec![1, 2, 3]);
        w.section("bb", vec![9; 20]);
        w.write(&p).unwrap();
        for mmap in [false, true] {
            let r = FileReader::open(&p, "TEST", 1, mmap).unwrap();
            assert_eq!(r.bytes("a").unwrap(), &[1, 2, 3]);
            assert_eq!(r.bytes("bb").unwrap(), &[9; 20]);
        }
        assert!(FileReader::open(&p, "OTHER", 1, false)
            .unwrap_err()
            .to_string()
            .contains("not a"));
        let mut bytes = std::fs::read(&p).unwrap();
        let last = bytes.len() - 10;
        bytes[last] ^= 0xff;
        std::fs::write(&p, &bytes).unwrap();
        assert!(FileReader::open(&p, "TEST", 1, false)
            .unwrap_err()
            .to_string()
            .contains("checksum"));
        std::fs::write(&p, &bytes[..bytes.len() - 3]).unwrap();
        assert!(FileReader::open(&p, "TEST", 1, false)
            .unwrap_err()
            .to_string()
            .contains("truncated"));
    }
}
