//! One segment's records in a columnar file, written once and opened by mmap.
//!
//! The file is a standard densparse container (see [`crate::storage`]) of kind `RECORDS`
//! whose sections are flat little-endian arrays:
//!
//! ```text
//! head    n_docs, n_views, n_sparse_entries, n_fields, n_keywords (u64 each)
//! idoff   u64 [n+1]  ids     UTF-8     id of doc d = ids[idoff[d]..idoff[d+1]]
//! idhash  u64 [n]    iddoc   u32 [n]   (FNV-1a 64 of the id, doc) sorted: id -> doc lookup
//! txoff   u64 [n+1]  texts   UTF-8
//! vwidx   u64 [n+1]  views of doc d are views vwidx[d]..vwidx[d+1]
//! vwoff   u64 [V+1]  views   UTF-8
//! mjoff   u64 [n+1]  mjson   the metadata exactly as added (JSON, key order kept)
//! sphas   u8  [n]    1 when the doc has a sparse vector (an empty one is not "none")
//! spoff   u64 [n+1]  spterm  u32 [nnz]  spwt f32 [nnz]
//! fdir    [n_fields] x 21 u64: one typed-column directory per metadata field path
//! fnames  UTF-8 field paths (fields sorted by path)
//! cdocs   u32 pool: sorted doc lists (presence, per-type docs, keyword postings)
//! cint    i64 pool   cflt  f64 pool
//! kw      [n_keywords] x (str off, str len, postings off, postings len) u64, per field
//!         sorted by string;  kwstr  UTF-8
//! cjoff   (off, len) u64 pairs into cjson: per-document JSON of values without a
//!         typed column (lists holding anything but strings)
//! ```
//!
//! Opening reads the header and section table and checks every section's size against
//! the counts: O(1) in the number of records. Offsets inside sections are checked when
//! read, so a crafted file yields [`Error::Corrupt`], never a panic. The body's CRC is
//! checked by [`RecordStore::verify`] or by the manifest's [`file_digest`], not at open.
//!
//! Texts are stored uncompressed: random access to one text is then a slice of the
//! mapping, and the page cache holds only what queries touch.

use std::collections::HashMap;
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::storage::{atomic_write, Blob, FileReader, FileWriter, PutLe};

pub const KIND: &str = "RECORDS";
pub const VERSION: u32 = 1;
const FIELD_WORDS: usize = 21;
const KW_WORDS: usize = 4;

/// One record as a segment stores it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Record {
    pub id: String,
    pub text: String,
    pub views: Vec<String>,
    pub metadata: Map<String, Value>,
    /// (term ids, weights), same length.
    pub sparse: Option<(Vec<u32>, Vec<f32>)>,
}

/// FNV-1a 64: a hash fixed by the file format (std and foldhash may change theirs).
pub fn id_hash(id: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in id.as_bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Size and CRC-32 (the IEEE polynomial, as zlib's `crc32`) of a file, for a manifest.
pub fn file_digest(path: &Path) -> Result<(u64, u32)> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, h.finalize()))
}

/// Integers must fit i64 and floats be finite: anything else would not read back equal.
fn check_value(v: &Value, path: &str) -> Result<()> {
    match v {
        Value::Number(n) => {
            if !(n.is_i64() || n.is_f64()) {
                return Err(Error::invalid(format!(
                    "metadata field {path:?}: integer {n} does not fit in a signed 64-bit integer"
                )));
            }
            if n.as_f64().is_some_and(|f| !f.is_finite()) {
                return Err(Error::invalid(format!("metadata field {path:?}: {n} is not finite")));
            }
        }
        Value::Array(items) => {
            for x in items {
                check_value(x, path)?;
            }
        }
        Value::Object(m) => {
            for (k, x) in m {
                check_value(x, &join(path, k))?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// One metadata field's columns while building.
#[derive(Default)]
struct FieldBuilder {
    present: Vec<u32>,
    int_docs: Vec<u32>,
    ints: Vec<i64>,
    flt_docs: Vec<u32>,
    flts: Vec<f64>,
    btrue: Vec<u32>,
    bfalse: Vec<u32>,
    nulls: Vec<u32>,
    keywords: HashMap<String, Vec<u32>>,
    json_docs: Vec<u32>,
    json: Vec<String>,
}

impl FieldBuilder {
    fn keyword(&mut self, s: &str, doc: u32) {
        let post = self.keywords.entry(s.to_string()).or_default();
        if post.last() != Some(&doc) {
            post.push(doc);
        }
    }
}

/// Builds a record store: add records, then [`RecordStoreWriter::finish`].
#[derive(Default)]
pub struct RecordStoreWriter {
    n: u32,
    idoff: Vec<u8>,
    ids: Vec<u8>,
    hashes: Vec<(u64, u32)>,
    txoff: Vec<u8>,
    texts: Vec<u8>,
    vwidx: Vec<u8>,
    vwoff: Vec<u8>,
    views: Vec<u8>,
    n_views: u64,
    mjoff: Vec<u8>,
    mjson: Vec<u8>,
    sphas: Vec<u8>,
    spoff: Vec<u8>,
    spterm: Vec<u8>,
    spwt: Vec<u8>,
    nnz: u64,
    fields: HashMap<String, FieldBuilder>,
}

impl RecordStoreWriter {
    pub fn new() -> Self {
        let mut w = RecordStoreWriter::default();
        for v in [
            &mut w.idoff,
            &mut w.txoff,
            &mut w.vwidx,
            &mut w.vwoff,
            &mut w.mjoff,
            &mut w.spoff,
        ] {
            v.put_u64(0);
        }
        w
    }

    pub fn len(&self) -> usize {
        self.n as usize
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Append one record (document number = records added before it). Refuses an empty
    /// id, metadata numbers that would not read back equal, and malformed sparse vectors;
    /// duplicate ids are refused by [`RecordStoreWriter::finish`].
    pub fn add(&mut self, r: &Record) -> Result<()> {
        if r.id.is_empty() {
            return Err(Error::invalid("a record id must be a non-empty string"));
        }
        if self.n == u32::MAX {
            return Err(Error::invalid("a record store holds at most 2^32 - 1 records"));
        }
        for (k, v) in &r.metadata {
            check_value(v, k)?;
        }
        if let Some((t, w)) = &r.sparse {
            if t.len() != w.len() {
                return Err(Error::invalid(format!(
                    "record {:?}: sparse vector has {} term ids but {} weights",
                    r.id,
                    t.len(),
                    w.len()
                )));
            }
            if w.iter().any(|x| !x.is_finite()) {
                return Err(Error::invalid(format!(
                    "record {:?}: sparse weights must be finite",
                    r.id
                )));
            }
        }
        let doc = self.n;
        self.hashes.push((id_hash(&r.id), doc));
        self.ids.extend_from_slice(r.id.as_bytes());
        self.idoff.put_u64(self.ids.len() as u64);
        self.texts.extend_from_slice(r.text.as_bytes());
        self.txoff.put_u64(self.texts.len() as u64);
        for v in &r.views {
            self.views.extend_from_slice(v.as_bytes());
            self.vwoff.put_u64(self.views.len() as u64);
        }
        self.n_views += r.views.len() as u64;
        self.vwidx.put_u64(self.n_views);
        if !r.metadata.is_empty() {
            let text = serde_json::to_string(&r.metadata)
                .map_err(|e| Error::invalid(format!("record {:?}: metadata: {e}", r.id)))?;
            self.mjson.extend_from_slice(text.as_bytes());
        }
        self.mjoff.put_u64(self.mjson.len() as u64);
        match &r.sparse {
            Some((t, w)) => {
                self.sphas.push(1);
                for (&ti, &wi) in t.iter().zip(w) {
                    self.spterm.put_u32(ti);
                    self.spwt.put_f32(wi);
                }
                self.nnz += t.len() as u64;
            }
            None => self.sphas.push(0),
        }
        self.spoff.put_u64(self.nnz);
        self.flatten(&r.metadata, "", doc);
        self.n += 1;
        Ok(())
    }

    /// Every path the filter language can reach (keys joined by "."; a key holding a "."
    /// cannot be named by a path, so it gets no column) and its value's typed column.
    fn flatten(&mut self, m: &Map<String, Value>, prefix: &str, doc: u32) {
        for (k, v) in m {
            if k.contains('.') {
                continue;
            }
            let path = join(prefix, k);
            let f = self.fields.entry(path.clone()).or_default();
            f.present.push(doc);
            match v {
                Value::Null => f.nulls.push(doc),
                Value::Bool(true) => f.btrue.push(doc),
                Value::Bool(false) => f.bfalse.push(doc),
                Value::Number(n) => {
                    if let Some(i) = n.as_i64() {
                        f.int_docs.push(doc);
                        f.ints.push(i);
                    } else {
                        f.flt_docs.push(doc);
                        f.flts.push(n.as_f64().unwrap_or(f64::NAN));
                    }
                }
                Value::String(s) => f.keyword(s, doc),
                Value::Array(items) => {
                    if items.iter().all(Value::is_string) {
                        for s in items.iter().filter_map(Value::as_str) {
                            f.keyword(s, doc);
                        }
                    } else {
                        f.json_docs.push(doc);
                        f.json.push(v.to_string());
                    }
                }
                Value::Object(sub) => self.flatten(sub, &path, doc),
            }
        }
    }

    /// The finished file's bytes.
    pub fn into_bytes(mut self) -> Result<Vec<u8>> {
        let n = self.n as u64;
        self.hashes.sort_unstable();
        let mut idhash = Vec::with_capacity(self.hashes.len() * 8);
        let mut iddoc = Vec::with_capacity(self.hashes.len() * 4);
        for w in self.hashes.windows(2) {
            if w[0].0 == w[1].0 {
                let (a, b) = (
                    id_at(&self.idoff, &self.ids, w[0].1),
                    id_at(&self.idoff, &self.ids, w[1].1),
                );
                if a == b {
                    return Err(Error::invalid(format!("duplicate id {:?} in one record store", a)));
                }
            }
        }
        for &(h, d) in &self.hashes {
            idhash.put_u64(h);
            iddoc.put_u32(d);
        }
        let mut names: Vec<String> = self.fields.keys().cloned().collect();
        names.sort_unstable();
        let (mut fdir, mut fnames, mut cdocs, mut cint, mut cflt) = (vec![], vec![], vec![], vec![], vec![]);
        let (mut kw, mut kwstr, mut cjoff, mut cjson) = (vec![], vec![], vec![], vec![]);
        let (mut n_cdocs, mut n_kw, mut n_cj) = (0u64, 0u64, 0u64);
        let mut docs = |list: &[u32], cdocs: &mut Vec<u8>| -> [u64; 2] {
            let off = n_cdocs;
            for &d in list {
                cdocs.put_u32(d);
            }
            n_cdocs += list.len() as u64;
            [off, list.len() as u64]
        };
        for name in &names {
            let f = &self.fields[name];
            let mut words: Vec<u64> = Vec::with_capacity(FIELD_WORDS);
            words.extend([fnames.len() as u64, name.len() as u64]);
            fnames.extend_from_slice(name.as_bytes());
            words.extend(docs(&f.present, &mut cdocs));
            words.extend(docs(&f.int_docs, &mut cdocs));
            words.push((cint.len() / 8) as u64);
            for &i in &f.ints {
                cint.extend_from_slice(&i.to_le_bytes());
            }
            words.extend(docs(&f.flt_docs, &mut cdocs));
            words.push((cflt.len() / 8) as u64);
            for &x in &f.flts {
                cflt.put_f64(x);
            }
            words.extend(docs(&f.btrue, &mut cdocs));
            words.extend(docs(&f.bfalse, &mut cdocs));
            words.extend(docs(&f.nulls, &mut cdocs));
            let mut kws: Vec<(&String, &Vec<u32>)> = f.keywords.iter().collect();
            kws.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            words.extend([n_kw, kws.len() as u64]);
            for (s, post) in kws {
                kw.put_u64(kwstr.len() as u64);
                kw.put_u64(s.len() as u64);
                kwstr.extend_from_slice(s.as_bytes());
                let [o, l] = docs(post, &mut cdocs);
                kw.put_u64(o);
                kw.put_u64(l);
                n_kw += 1;
            }
            words.extend(docs(&f.json_docs, &mut cdocs));
            words.push(n_cj);
            for j in &f.json {
                cjoff.put_u64(cjson.len() as u64);
                cjoff.put_u64(j.len() as u64);
                cjson.extend_from_slice(j.as_bytes());
                n_cj += 1;
            }
            debug_assert_eq!(words.len(), FIELD_WORDS);
            for w in words {
                fdir.put_u64(w);
            }
        }
        let mut head = Vec::new();
        for v in [n, self.n_views, self.nnz, names.len() as u64, n_kw] {
            head.put_u64(v);
        }
        let mut w = FileWriter::new(KIND, VERSION);
        for (name, data) in [
            ("head", head),
            ("idoff", self.idoff),
            ("ids", self.ids),
            ("idhash", idhash),
            ("iddoc", iddoc),
            ("txoff", self.txoff),
            ("texts", self.texts),
            ("vwidx", self.vwidx),
            ("vwoff", self.vwoff),
            ("views", self.views),
            ("mjoff", self.mjoff),
            ("mjson", self.mjson),
            ("sphas", self.sphas),
            ("spoff", self.spoff),
            ("spterm", self.spterm),
            ("spwt", self.spwt),
            ("fdir", fdir),
            ("fnames", fnames),
            ("cdocs", cdocs),
            ("cint", cint),
            ("cflt", cflt),
            ("kw", kw),
            ("kwstr", kwstr),
            ("cjoff", cjoff),
            ("cjson", cjson),
        ] {
            w.section(name, data);
        }
        Ok(w.into_bytes())
    }

    /// The finished store, in memory (save it with [`RecordStore::save`]).
    pub fn finish(self) -> Result<RecordStore> {
        RecordStore::from_bytes(self.into_bytes()?)
    }

    /// Write the finished store to `path` (atomically, fsynced).
    pub fn write(self, path: &Path) -> Result<()> {
        let bytes = self.into_bytes()?;
        save_bytes(path, &bytes)
    }
}

/// Check a container file's body against the CRC-32 in its header, by streaming it.
fn verify_file(path: &Path) -> Result<()> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut head = [0u8; 40];
    if f.read_exact(&mut head).is_err() {
        return Err(Error::corrupt(
            path,
            "not a densparse index file (shorter than its header)",
        ));
    }
    let want = u32::from_le_bytes(head[32..36].try_into().unwrap());
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    if h.finalize() != want {
        return Err(Error::corrupt(path, "checksum mismatch: the file is corrupt"));
    }
    Ok(())
}

fn id_at<'a>(idoff: &[u8], ids: &'a [u8], doc: u32) -> &'a str {
    let at = |i: usize| u64::from_le_bytes(idoff[i * 8..i * 8 + 8].try_into().unwrap()) as usize;
    let d = doc as usize;
    std::str::from_utf8(&ids[at(d)..at(d + 1)]).unwrap_or("")
}

fn save_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    atomic_write(path, |f| std::io::Write::write_all(f, bytes))
}

/// The sections of an opened store, as byte ranges of the file.
struct Layout {
    idoff: Range<usize>,
    ids: Range<usize>,
    idhash: Range<usize>,
    iddoc: Range<usize>,
    txoff: Range<usize>,
    texts: Range<usize>,
    vwidx: Range<usize>,
    vwoff: Range<usize>,
    views: Range<usize>,
    mjoff: Range<usize>,
    mjson: Range<usize>,
    sphas: Range<usize>,
    spoff: Range<usize>,
    spterm: Range<usize>,
    spwt: Range<usize>,
    fdir: Range<usize>,
    fnames: Range<usize>,
    cdocs: Range<usize>,
    cint: Range<usize>,
    cflt: Range<usize>,
    kw: Range<usize>,
    kwstr: Range<usize>,
    cjoff: Range<usize>,
    cjson: Range<usize>,
}

/// An opened record store: every accessor reads the file on demand.
pub struct RecordStore {
    file: FileReader,
    n: usize,
    n_views: usize,
    nnz: usize,
    n_fields: usize,
    lay: Layout,
}

impl std::fmt::Debug for RecordStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RecordStore({}, n_docs={})", self.file.path.display(), self.n)
    }
}

/// A sorted list of document numbers in the `cdocs` pool.
#[derive(Clone, Copy)]
pub struct DocList<'a> {
    bytes: &'a [u8],
}

impl<'a> DocList<'a> {
    pub fn len(&self) -> usize {
        self.bytes.len() / 4
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = u32> + 'a {
        self.bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
    }
}

/// One metadata field's typed columns.
pub struct Field<'a> {
    store: &'a RecordStore,
    w: [u64; FIELD_WORDS],
}

impl<'a> Field<'a> {
    fn docs(&self, at: usize) -> Result<DocList<'a>> {
        let b = self.store.pool(&self.store.lay.cdocs, self.w[at], self.w[at + 1], 4)?;
        Ok(DocList { bytes: b })
    }

    /// Documents that have this path (any value, a sub-document included).
    pub fn present(&self) -> Result<DocList<'a>> {
        self.docs(2)
    }

    /// Documents holding an integer, and the integers.
    pub fn ints(&self) -> Result<(DocList<'a>, impl Iterator<Item = i64> + 'a)> {
        let d = self.docs(4)?;
        let v = self.store.pool(&self.store.lay.cint, self.w[6], self.w[5], 8)?;
        Ok((d, v.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()))))
    }

    /// Documents holding a float, and the floats.
    pub fn floats(&self) -> Result<(DocList<'a>, impl Iterator<Item = f64> + 'a)> {
        let d = self.docs(7)?;
        let v = self.store.pool(&self.store.lay.cflt, self.w[9], self.w[8], 8)?;
        Ok((d, v.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap()))))
    }

    pub fn bools(&self, value: bool) -> Result<DocList<'a>> {
        self.docs(if value { 10 } else { 12 })
    }

    pub fn nulls(&self) -> Result<DocList<'a>> {
        self.docs(14)
    }

    /// Documents whose value is the string `s` or a list of strings holding it.
    pub fn keyword(&self, s: &str) -> Result<Option<DocList<'a>>> {
        let st = self.store;
        let (first, count) = (self.w[16], self.w[17]);
        let entries = st.pool(&st.lay.kw, first, count, (KW_WORDS * 8) as u64)?;
        let entry = |i: usize| -> Result<([u64; KW_WORDS], &'a [u8])> {
            let e = &entries[i * KW_WORDS * 8..(i + 1) * KW_WORDS * 8];
            let w: [u64; KW_WORDS] =
                std::array::from_fn(|j| u64::from_le_bytes(e[j * 8..j * 8 + 8].try_into().unwrap()));
            let key = st.pool(&st.lay.kwstr, w[0], w[1], 1)?;
            Ok((w, key))
        };
        let (mut lo, mut hi) = (0usize, count as usize);
        while lo < hi {
            let mid = (lo + hi) / 2;
            let (w, key) = entry(mid)?;
            match key.cmp(s.as_bytes()) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => {
                    let b = st.pool(&st.lay.cdocs, w[2], w[3], 4)?;
                    return Ok(Some(DocList { bytes: b }));
                }
            }
        }
        Ok(None)
    }

    /// Values without a typed column: (document, its value parsed from JSON).
    pub fn json_values(&self) -> Result<Vec<(u32, Value)>> {
        let st = self.store;
        let docs = self.docs(18)?;
        let offs = st.pool(&st.lay.cjoff, self.w[20], docs.len() as u64, 16)?;
        let mut out = Vec::with_capacity(docs.len());
        for (i, d) in docs.iter().enumerate() {
            let o = u64::from_le_bytes(offs[i * 16..i * 16 + 8].try_into().unwrap());
            let l = u64::from_le_bytes(offs[i * 16 + 8..i * 16 + 16].try_into().unwrap());
            let text = st.pool(&st.lay.cjson, o, l, 1)?;
            let v: Value =
                serde_json::from_slice(text).map_err(|e| st.corrupt(format!("unreadable metadata JSON ({e})")))?;
            out.push((d, v));
        }
        Ok(out)
    }
}

impl RecordStore {
    /// Open a store file (mmap'd when `mmap`): reads the header and checks section sizes.
    pub fn open(path: &Path, mmap: bool) -> Result<Self> {
        Self::open_with(path, mmap, false)
    }

    /// As [`RecordStore::open`]; `verify` first checks the body against the header's
    /// CRC-32 by reading the file (one sequential pass; the pages read are not mapped, so
    /// they do not stay resident in this process).
    pub fn open_with(path: &Path, mmap: bool, verify: bool) -> Result<Self> {
        if verify && mmap {
            verify_file(path)?;
        }
        // Without mmap the bytes are in memory anyway: check them there.
        Self::from_reader(FileReader::open_with(path, KIND, VERSION, mmap, verify && !mmap)?)
    }

    /// A store from the bytes of a file (as [`RecordStoreWriter::into_bytes`] gives).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        let path = PathBuf::from("<in-memory record store>");
        Self::from_reader(FileReader::from_blob(&path, Blob::Owned(bytes), KIND, VERSION, false)?)
    }

    fn from_reader(file: FileReader) -> Result<Self> {
        let corrupt = |m: String| Error::corrupt(&file.path, m);
        let head = file.bytes("head")?;
        if head.len() != 40 {
            return Err(corrupt("bad header section".into()));
        }
        let h = |i: usize| u64::from_le_bytes(head[i * 8..i * 8 + 8].try_into().unwrap());
        let too_big = || corrupt("header counts are impossibly large".into());
        let cnt = |v: u64| -> Result<usize> {
            usize::try_from(v)
                .ok()
                .filter(|&x| x < (1usize << 48))
                .ok_or_else(too_big)
        };
        let (n, n_views, nnz, n_fields, n_kw) = (cnt(h(0))?, cnt(h(1))?, cnt(h(2))?, cnt(h(3))?, cnt(h(4))?);
        let sized = |name: &str, want: usize| -> Result<Range<usize>> {
            let r = file.range(name)?;
            if r.len() != want {
                return Err(corrupt(format!(
                    "section {name:?} has {} bytes, expected {want}",
                    r.len()
                )));
            }
            Ok(r)
        };
        let multiple = |name: &str, unit: usize| -> Result<Range<usize>> {
            let r = file.range(name)?;
            if r.len() % unit != 0 {
                return Err(corrupt(format!("section {name:?} is not a whole number of entries")));
            }
            Ok(r)
        };
        let lay = Layout {
            idoff: sized("idoff", (n + 1) * 8)?,
            ids: file.range("ids")?,
            idhash: sized("idhash", n * 8)?,
            iddoc: sized("iddoc", n * 4)?,
            txoff: sized("txoff", (n + 1) * 8)?,
            texts: file.range("texts")?,
            vwidx: sized("vwidx", (n + 1) * 8)?,
            vwoff: sized("vwoff", (n_views + 1) * 8)?,
            views: file.range("views")?,
            mjoff: sized("mjoff", (n + 1) * 8)?,
            mjson: file.range("mjson")?,
            sphas: sized("sphas", n)?,
            spoff: sized("spoff", (n + 1) * 8)?,
            spterm: sized("spterm", nnz * 4)?,
            spwt: sized("spwt", nnz * 4)?,
            fdir: sized("fdir", n_fields * FIELD_WORDS * 8)?,
            fnames: file.range("fnames")?,
            cdocs: multiple("cdocs", 4)?,
            cint: multiple("cint", 8)?,
            cflt: multiple("cflt", 8)?,
            kw: sized("kw", n_kw * KW_WORDS * 8)?,
            kwstr: file.range("kwstr")?,
            cjoff: multiple("cjoff", 16)?,
            cjson: file.range("cjson")?,
        };
        Ok(RecordStore {
            n,
            n_views,
            nnz,
            n_fields,
            lay,
            file,
        })
    }

    fn corrupt(&self, msg: impl Into<String>) -> Error {
        Error::corrupt(&self.file.path, msg)
    }

    fn bytes(&self) -> &[u8] {
        &self.file.blob
    }

    pub fn path(&self) -> &Path {
        &self.file.path
    }

    /// Bytes of the whole file.
    pub fn nbytes(&self) -> usize {
        self.bytes().len()
    }

    pub fn n_docs(&self) -> usize {
        self.n
    }

    pub fn n_views_total(&self) -> usize {
        self.n_views
    }

    pub fn n_fields(&self) -> usize {
        self.n_fields
    }

    pub fn sparse_entries(&self) -> usize {
        self.nnz
    }

    /// Check the body against the CRC-32 in the file header (reads the whole file).
    pub fn verify(&self) -> Result<()> {
        self.file.verify()
    }

    /// Write the store to `path` (atomically, fsynced).
    pub fn save(&self, path: &Path) -> Result<()> {
        save_bytes(path, self.bytes())
    }

    #[inline]
    fn u64_at(&self, r: &Range<usize>, i: usize) -> u64 {
        let s = r.start + i * 8;
        u64::from_le_bytes(self.bytes()[s..s + 8].try_into().unwrap())
    }

    /// `count` entries of `unit` bytes from entry `off` of the pool section `r`.
    fn pool(&self, r: &Range<usize>, off: u64, count: u64, unit: u64) -> Result<&[u8]> {
        let start = off.checked_mul(unit);
        let end = off.checked_add(count).and_then(|e| e.checked_mul(unit));
        match (start, end) {
            (Some(s), Some(e)) if e <= r.len() as u64 => Ok(&self.bytes()[r.start + s as usize..r.start + e as usize]),
            _ => Err(self.corrupt("a column runs past the end of its section")),
        }
    }

    /// Item `i` of a blob section delimited by the offsets section `offs`.
    fn span(&self, offs: &Range<usize>, blob: &Range<usize>, i: usize) -> Result<&[u8]> {
        let (a, b) = (self.u64_at(offs, i), self.u64_at(offs, i + 1));
        if a > b || b > blob.len() as u64 {
            return Err(self.corrupt("an offset table is out of order or out of bounds"));
        }
        Ok(&self.bytes()[blob.start + a as usize..blob.start + b as usize])
    }

    fn utf8<'a>(&self, b: &'a [u8]) -> Result<&'a str> {
        std::str::from_utf8(b).map_err(|_| self.corrupt("stored text is not valid UTF-8"))
    }

    fn check_doc(&self, doc: usize) -> Result<()> {
        if doc >= self.n {
            return Err(Error::invalid(format!(
                "document {doc} out of range (the store has {})",
                self.n
            )));
        }
        Ok(())
    }

    pub fn id(&self, doc: usize) -> Result<&str> {
        self.check_doc(doc)?;
        self.utf8(self.span(&self.lay.idoff, &self.lay.ids, doc)?)
    }

    /// The document holding `id`, if any.
    pub fn doc_of(&self, id: &str) -> Result<Option<usize>> {
        let h = id_hash(id);
        let (mut lo, mut hi) = (0usize, self.n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.u64_at(&self.lay.idhash, mid) < h {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let bytes = self.bytes();
        while lo < self.n && self.u64_at(&self.lay.idhash, lo) == h {
            let s = self.lay.iddoc.start + lo * 4;
            let doc = u32::from_le_bytes(bytes[s..s + 4].try_into().unwrap()) as usize;
            if doc >= self.n {
                return Err(self.corrupt("the id table names a document out of range"));
            }
            if self.id(doc)? == id {
                return Ok(Some(doc));
            }
            lo += 1;
        }
        Ok(None)
    }

    pub fn text(&self, doc: usize) -> Result<&str> {
        self.check_doc(doc)?;
        self.utf8(self.span(&self.lay.txoff, &self.lay.texts, doc)?)
    }

    /// Number of extra views of `doc`.
    pub fn n_views(&self, doc: usize) -> Result<usize> {
        Ok(self.view_range(doc)?.len())
    }

    fn view_range(&self, doc: usize) -> Result<Range<usize>> {
        self.check_doc(doc)?;
        let (a, b) = (self.u64_at(&self.lay.vwidx, doc), self.u64_at(&self.lay.vwidx, doc + 1));
        if a > b || b > self.n_views as u64 {
            return Err(self.corrupt("the view index is out of order or out of bounds"));
        }
        Ok(a as usize..b as usize)
    }

    pub fn views(&self, doc: usize) -> Result<Vec<&str>> {
        self.view_range(doc)?
            .map(|v| self.utf8(self.span(&self.lay.vwoff, &self.lay.views, v)?))
            .collect()
    }

    /// The metadata as added, as JSON text (`""` for none).
    pub fn metadata_json(&self, doc: usize) -> Result<&str> {
        self.check_doc(doc)?;
        self.utf8(self.span(&self.lay.mjoff, &self.lay.mjson, doc)?)
    }

    pub fn metadata(&self, doc: usize) -> Result<Map<String, Value>> {
        let text = self.metadata_json(doc)?;
        if text.is_empty() {
            return Ok(Map::new());
        }
        serde_json::from_str(text).map_err(|e| self.corrupt(format!("unreadable metadata JSON ({e})")))
    }

    /// (term ids, weights) of `doc`, or None when it was added without one.
    pub fn sparse(&self, doc: usize) -> Result<Option<(Vec<u32>, Vec<f32>)>> {
        self.check_doc(doc)?;
        if self.bytes()[self.lay.sphas.start + doc] == 0 {
            return Ok(None);
        }
        let (a, b) = (self.u64_at(&self.lay.spoff, doc), self.u64_at(&self.lay.spoff, doc + 1));
        if a > b || b > self.nnz as u64 {
            return Err(self.corrupt("the sparse offsets are out of order or out of bounds"));
        }
        let (a, b) = (a as usize, b as usize);
        let t = &self.bytes()[self.lay.spterm.start + a * 4..self.lay.spterm.start + b * 4];
        let w = &self.bytes()[self.lay.spwt.start + a * 4..self.lay.spwt.start + b * 4];
        Ok(Some((
            t.chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            w.chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        )))
    }

    /// The whole record of `doc`.
    pub fn record(&self, doc: usize) -> Result<Record> {
        Ok(Record {
            id: self.id(doc)?.to_string(),
            text: self.text(doc)?.to_string(),
            views: self.views(doc)?.into_iter().map(String::from).collect(),
            metadata: self.metadata(doc)?,
            sparse: self.sparse(doc)?,
        })
    }

    fn field_at(&self, i: usize) -> Result<(Field<'_>, &str)> {
        let w: [u64; FIELD_WORDS] = std::array::from_fn(|j| self.u64_at(&self.lay.fdir, i * FIELD_WORDS + j));
        let name = self.utf8(self.pool(&self.lay.fnames, w[0], w[1], 1)?)?;
        Ok((Field { store: self, w }, name))
    }

    /// Field paths that have typed columns, sorted.
    pub fn field_names(&self) -> Result<Vec<&str>> {
        (0..self.n_fields).map(|i| Ok(self.field_at(i)?.1)).collect()
    }

    /// The columns of the field at `path` (dotted), if any document has it.
    pub fn field(&self, path: &str) -> Result<Option<Field<'_>>> {
        let (mut lo, mut hi) = (0usize, self.n_fields);
        while lo < hi {
            let mid = (lo + hi) / 2;
            let (f, name) = self.field_at(mid)?;
            match name.as_bytes().cmp(path.as_bytes()) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(Some(f)),
            }
        }
        Ok(None)
    }
}

/// A store shared between threads (searches hold it while a writer publishes new ones).
pub type SharedRecordStore = Arc<RecordStore>;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(id: &str, text: &str, views: &[&str], meta: Value, sparse: Option<(Vec<u32>, Vec<f32>)>) -> Record {
        Record {
            id: id.into(),
            text: text.into(),
            views: views.iter().map(|s| s.to_string()).collect(),
            metadata: meta.as_object().cloned().unwrap_or_default(),
            sparse,
        }
    }

    fn sample() -> Vec<Record> {
        vec![
            rec(
                "a",
                "first text",
                &[],
                json!({"year": 2020, "lang": "en", "tags": ["x", "y"]}),
                Some((vec![3, 1], vec![0.5, 2.0])),
            ),
            rec(
                "b",
                "二",
                &["view one", "view two"],
                json!({"year": 2021.5, "meta": {"author": "Li", "n": [1, "a"]}}),
                None,
            ),
            rec("c", "", &[""], json!({}), Some((vec![], vec![]))),
            rec(
                "d",
                "dd",
                &[],
                json!({"z": null, "ok": true, "a.b": 1, "year": 1}),
                None,
            ),
        ]
    }

    fn build(recs: &[Record]) -> RecordStore {
        let mut w = RecordStoreWriter::new();
        for r in recs {
            w.add(r).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn round_trip_in_memory_and_on_disk() {
        let recs = sample();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("records.dsr");
        let mem = build(&recs);
        mem.save(&p).unwrap();
        for s in [
            mem,
            RecordStore::open(&p, true).unwrap(),
            RecordStore::open(&p, false).unwrap(),
        ] {
            s.verify().unwrap();
            assert_eq!(s.n_docs(), recs.len());
            for (d, r) in recs.iter().enumerate() {
                assert_eq!(&s.record(d).unwrap(), r);
                assert_eq!(s.doc_of(&r.id).unwrap(), Some(d));
            }
            assert_eq!(s.doc_of("nope").unwrap(), None);
            // key order and int/float kinds survive
            assert_eq!(
                s.metadata_json(0).unwrap(),
                r#"{"year":2020,"lang":"en","tags":["x","y"]}"#
            );
            assert!(s.metadata(1).unwrap()["year"].is_f64());
            assert!(s.id(4).is_err());
            let names = s.field_names().unwrap();
            assert_eq!(
                names,
                ["lang", "meta", "meta.author", "meta.n", "ok", "tags", "year", "z"]
            );
            let f = s.field("tags").unwrap().unwrap();
            assert_eq!(f.keyword("y").unwrap().unwrap().iter().collect::<Vec<_>>(), [0]);
            assert!(f.keyword("q").unwrap().is_none());
            let f = s.field("meta.n").unwrap().unwrap();
            assert_eq!(f.json_values().unwrap(), vec![(1, json!([1, "a"]))]);
        }
        let (size, crc) = file_digest(&p).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(size as usize, bytes.len());
        assert_eq!(crc, crc32fast::hash(&bytes));
    }

    #[test]
    fn refuses_unfaithful_values_and_duplicates() {
        let mut w = RecordStoreWriter::new();
        let big = rec("a", "", &[], json!({"x": {"y": u64::MAX}}), None);
        let e = w.add(&big).unwrap_err().to_string();
        assert!(e.contains("x.y") && e.contains("64-bit"), "{e}");
        let mut w = RecordStoreWriter::new();
        w.add(&rec("a", "", &[], json!({}), None)).unwrap();
        w.add(&rec("a", "", &[], json!({}), None)).unwrap();
        assert!(w.finish().unwrap_err().to_string().contains("duplicate id"));
        assert!(RecordStoreWriter::new()
            .add(&rec("", "", &[], json!({}), None))
            .is_err());
    }

    #[test]
    fn empty_store() {
        let s = RecordStoreWriter::new().finish().unwrap();
        assert_eq!(s.n_docs(), 0);
        assert_eq!(s.doc_of("a").unwrap(), None);
        assert!(s.field("x").unwrap().is_none());
    }

    /// Every single-byte change and truncation of a small store either fails to open
    /// with Corrupt or gives readers errors or values, never a panic.
    #[test]
    fn crafted_files_never_panic() {
        let s = build(&sample());
        let good = s.bytes().to_vec();
        let exercise = |bytes: Vec<u8>| {
            let Ok(s) = RecordStore::from_bytes(bytes) else { return };
            for d in 0..s.n_docs() + 1 {
                let _ = s.record(d);
            }
            for id in ["a", "b", "c", "d", "zz"] {
                let _ = s.doc_of(id);
            }
            if let Ok(names) = s.field_names() {
                let names: Vec<String> = names.into_iter().map(String::from).collect();
                for n in names {
                    if let Ok(Some(f)) = s.field(&n) {
                        let _ = f.present().map(|d| d.iter().count());
                        let _ = f.ints().map(|(d, v)| (d.len(), v.count()));
                        let _ = f.floats().map(|(d, v)| (d.len(), v.count()));
                        let _ = f.keyword("x");
                        let _ = f.json_values();
                        let _ = f.nulls();
                        let _ = f.bools(true);
                    }
                }
            }
            let f = crate::collection::filters::Filter::parse(&crate::collection::SpecValue::from(&json!({
                "$or": [{"year": {"$gte": 2000}}, {"tags": {"$in": ["x", 1]}}, {"meta.n": 1}, {"z": null}, {"ok": true}]
            })))
            .unwrap();
            let _ = f.eval(&s);
        };
        for i in 0..good.len() {
            for x in [0x01u8, 0x80, 0xff] {
                let mut b = good.clone();
                b[i] ^= x;
                exercise(b);
            }
        }
        for cut in 0..good.len() {
            exercise(good[..cut].to_vec());
        }
    }
}
