//! The collection directory on disk: a checksummed manifest, atomic commits, generation
//! pins for readers, the writer lock and garbage collection.
//!
//! Layout:
//!
//! ```text
//! PATH/manifest.json                the committed state (replaced atomically on commit)
//! PATH/writer.lock                  held (flock) by the one process that may write
//! PATH/generations/<gen>.json       a copy of every manifest that may still be in use
//! PATH/generations/<gen>.lock       held shared (flock) by each reader of that generation
//! PATH/segments/<name>/             one immutable segment: records, bm25.idx, dense.idx, ...
//! PATH/segments/<name>/live-<gen>.npy   its deletion marks, when it has any
//! ```
//!
//! A commit writes every new file first (each fsynced), then the manifest's generation
//! copy, then a new `manifest.json` through a temporary file renamed over the old one, and
//! fsyncs the directory: a process killed at any point leaves the old manifest or the new
//! one, and both name only complete files.
//!
//! Readers hold what they read: a reader locks its generation's lock file shared, then
//! checks that the generation's copy still exists (else it starts over from the newer
//! manifest). The writer removes an old generation only when it can lock it exclusively,
//! and deletes only files no remaining generation names.
//!
//! The manifest's checksum is the CRC-32 of its canonical JSON (keys sorted, no spaces,
//! UTF-8, floats as Python writes them), so manifests written by the earlier Python engine
//! verify unchanged.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{Error, Result};

pub const FORMAT: &str = "densparse.collection";
pub const VERSION: i64 = 2;
pub const MANIFEST: &str = "manifest.json";
pub const SEGMENTS: &str = "segments";
pub const GENERATIONS: &str = "generations";
/// A reader retries when the generation it read is retired before it could lock it; a
/// writer committing without pause could make that happen again and again, never this often.
const OPEN_ATTEMPTS: usize = 1000;
const CONTAINER_MAGIC: &[u8; 8] = b"DENSPRSE";

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::io(path, e)
}

// ---------------------------------------------------------------- canonical JSON

/// A float as Python's `repr` writes it (shortest round trip; exponent form below 1e-4 and
/// from 1e16, written `1e-05` / `1e+16`).
fn python_float(x: f64, out: &mut String) {
    if x == x.trunc() && x.abs() < 1e16 {
        out.push_str(&format!("{x:.1}"));
        return;
    }
    let sci = format!("{x:e}"); // shortest digits: "1.5e-5", "-2e20"
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..16).contains(&exp) {
        out.push_str(&format!("{x}"));
    } else {
        out.push_str(mant);
        out.push_str(&format!("e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs()));
    }
}

fn python_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `json.dumps(v, ensure_ascii=False, sort_keys=True, separators=(",", ":"))`.
pub fn canonical_json(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => out.push_str(&i.to_string()),
            (None, Some(u)) => out.push_str(&u.to_string()),
            _ => python_float(n.as_f64().unwrap_or(f64::NAN), out),
        },
        Value::String(s) => python_string(s, out),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(x, out);
            }
            out.push(']');
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_unstable();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                python_string(k, out);
                out.push(':');
                canonical_json(&m[k], out);
            }
            out.push('}');
        }
    }
}

/// CRC-32 of the manifest's canonical JSON without its `checksum` field.
pub fn manifest_checksum(m: &Map<String, Value>) -> u32 {
    let mut body = m.clone();
    body.remove("checksum");
    let mut text = String::new();
    canonical_json(&Value::Object(body), &mut text);
    crc32fast::hash(text.as_bytes())
}

fn int_field(m: &Map<String, Value>, key: &str) -> Option<i64> {
    m.get(key).and_then(Value::as_i64)
}

// ---------------------------------------------------------------- manifests

/// Parse and check a manifest's bytes (format, version, checksum, generation).
pub fn parse_manifest(f: &Path, raw: &[u8]) -> Result<Map<String, Value>> {
    let v: Value = serde_json::from_slice(raw).map_err(|e| Error::corrupt(f, format!("unreadable manifest ({e})")))?;
    let Value::Object(m) = v else {
        return Err(Error::corrupt(f, "not a densparse collection manifest"));
    };
    if m.get("format").and_then(Value::as_str) != Some(FORMAT) {
        return Err(Error::corrupt(f, "not a densparse collection manifest"));
    }
    let version = match m.get("version") {
        Some(Value::Number(n)) if n.as_i64().is_some_and(|v| v >= 1) => n.as_i64().unwrap_or(0),
        other => {
            return Err(Error::corrupt(
                f,
                format!("damaged manifest (format version {other:?})"),
            ));
        }
    };
    if version > VERSION {
        return Err(Error::corrupt(
            f,
            format!("format version {version} is newer than this densparse reads ({VERSION}); upgrade densparse"),
        ));
    }
    if version >= 2 && m.get("checksum").and_then(Value::as_u64) != Some(manifest_checksum(&m) as u64) {
        return Err(Error::corrupt(f, "manifest checksum mismatch: the file is damaged"));
    }
    if int_field(&m, "generation").is_none_or(|g| g < 0) {
        return Err(Error::corrupt(
            f,
            format!("damaged manifest (generation {:?})", m.get("generation")),
        ));
    }
    Ok(m)
}

/// The committed manifest of the collection at `dir`.
pub fn read_manifest(dir: &Path) -> Result<Map<String, Value>> {
    let f = dir.join(MANIFEST);
    let raw = match fs::read(&f) {
        Ok(raw) => raw,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if dir.exists() && !dir.is_dir() {
                return Err(Error::corrupt(dir, "is a file, not a collection directory"));
            }
            return Err(Error::io(
                dir,
                std::io::Error::new(e.kind(), format!("no collection here ({MANIFEST} missing)")),
            ));
        }
        Err(e) => return Err(Error::corrupt(&f, format!("unreadable manifest ({e})"))),
    };
    parse_manifest(&f, &raw)
}

/// fsync a file or directory by path.
pub fn fsync_path(path: &Path) -> Result<()> {
    File::open(path).and_then(|f| f.sync_all()).map_err(io(path))
}

/// `data` into `target` through a fsynced temporary file and a rename.
pub fn write_synced(target: &Path, data: &[u8]) -> Result<()> {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = target.with_file_name(format!("{name}.tmp-{}", std::process::id()));
    let res = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, target)
    })();
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(target, e));
    }
    Ok(())
}

fn generation_name(g: i64) -> String {
    format!("{g:08}")
}

/// Commit `manifest` as version 2 with its checksum: the generation copy, then the switch
/// of `manifest.json`, each fsynced with its directory. Returns the manifest as written.
pub fn write_manifest(dir: &Path, manifest: &Map<String, Value>) -> Result<Map<String, Value>> {
    let mut m = manifest.clone();
    m.remove("checksum");
    m.insert("version".into(), VERSION.into());
    let g = int_field(&m, "generation")
        .filter(|&g| g >= 0)
        .ok_or_else(|| Error::invalid("manifest generation must be an int >= 0"))?;
    let sum = manifest_checksum(&m);
    m.insert("checksum".into(), sum.into());
    let data = serde_json::to_vec_pretty(&Value::Object(m.clone())).map_err(|e| Error::invalid(e.to_string()))?;
    let gens = dir.join(GENERATIONS);
    fs::create_dir_all(&gens).map_err(io(&gens))?;
    write_synced(&gens.join(format!("{}.json", generation_name(g))), &data)?;
    fsync_path(&gens)?;
    write_synced(&dir.join(MANIFEST), &data)?;
    fsync_path(dir)?;
    Ok(m)
}

// ---------------------------------------------------------------- file digests

/// The CRC-32 in a densparse index file's header (its loader checks it over the body).
pub fn container_crc(path: &Path) -> Result<Option<u32>> {
    let mut head = [0u8; 40];
    let mut f = File::open(path).map_err(io(path))?;
    let mut got = 0;
    while got < head.len() {
        match f.read(&mut head[got..]).map_err(io(path))? {
            0 => break,
            n => got += n,
        }
    }
    if got == 40 && &head[..8] == CONTAINER_MAGIC {
        return Ok(Some(u32::from_le_bytes([head[32], head[33], head[34], head[35]])));
    }
    Ok(None)
}

/// `{"size", "crc32"}` of a file, plus `"check": "header"` for densparse index files, whose
/// CRC is the one in their own header (opening then reads 40 bytes here and lets the
/// index loader check the body).
pub fn digest_entry(path: &Path) -> Result<Value> {
    let size = fs::metadata(path).map_err(io(path))?.len();
    let mut e = Map::new();
    e.insert("size".into(), size.into());
    match container_crc(path)? {
        Some(crc) => {
            e.insert("crc32".into(), crc.into());
            e.insert("check".into(), "header".into());
        }
        None => {
            e.insert("crc32".into(), super::file_digest(path)?.1.into());
        }
    }
    Ok(Value::Object(e))
}

/// `CorruptIndexError` unless `path` exists with the manifest's size and digest.
pub fn check_file(path: &Path, expected: &Value) -> Result<()> {
    let (Some(size), Some(crc)) = (
        expected.get("size").and_then(Value::as_u64),
        expected.get("crc32").and_then(Value::as_u64),
    ) else {
        return Err(Error::corrupt(path, "the manifest's entry for it is damaged"));
    };
    let meta = match fs::metadata(path) {
        Ok(m) if m.is_file() => m,
        _ => return Err(Error::corrupt(path, "file named by the manifest is missing")),
    };
    if meta.len() != size {
        return Err(Error::corrupt(
            path,
            format!(
                "size {} does not match the manifest's {size}: the file is truncated, extended or replaced (checksum)",
                meta.len()
            ),
        ));
    }
    // A densparse index file's digest is the CRC its header carries (written so by
    // `digest_entry`, with or without the "check" mark of version 2).
    let got = match container_crc(path)? {
        Some(crc) => Some(crc),
        None if expected.get("check").and_then(Value::as_str) == Some("header") => None,
        None => Some(super::file_digest(path)?.1),
    };
    if got.map(u64::from) != Some(crc) {
        return Err(Error::corrupt(
            path,
            "checksum does not match the manifest: the file is corrupt or was changed outside densparse",
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------- locks

fn lock_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io(path))
}

/// Take `f`'s exclusive lock without waiting; false when another holder has it.
fn try_exclusive(f: &File, path: &Path) -> Result<bool> {
    match f.try_lock() {
        Ok(()) => Ok(true),
        Err(TryLockError::WouldBlock) => Ok(false),
        Err(TryLockError::Error(e)) => Err(Error::io(path, e)),
    }
}

/// A shared lock on one generation: while held, no writer deletes its files. Dropping it
/// (or [`ReaderPin::release`]) lets them go.
#[derive(Debug)]
pub struct ReaderPin {
    pub generation: i64,
    file: Option<File>,
}

impl ReaderPin {
    pub fn release(&mut self) {
        self.file = None; // closing the file drops the flock
    }
}

/// Lock `generation` shared; `None` when it is retired.
pub fn pin_generation(dir: &Path, generation: i64) -> Result<Option<ReaderPin>> {
    let gens = dir.join(GENERATIONS);
    let copy = gens.join(format!("{}.json", generation_name(generation)));
    if !copy.exists() {
        return Ok(None);
    }
    let lock = gens.join(format!("{}.lock", generation_name(generation)));
    let f = match lock_file(&lock) {
        Ok(f) => f,
        // A read-only file system: nobody can be deleting anything.
        Err(_) => return Ok(Some(ReaderPin { generation, file: None })),
    };
    f.lock_shared().map_err(io(&lock))?;
    // The writer deletes the copy while it holds the lock exclusively: checked after the
    // shared lock is ours, its presence means the generation's files stay.
    if !copy.exists() {
        return Ok(None);
    }
    Ok(Some(ReaderPin {
        generation,
        file: Some(f),
    }))
}

/// The current manifest and a pin on its generation (`None` for a version-1 collection,
/// whose writers predate generation copies).
pub fn open_pinned(dir: &Path) -> Result<(Map<String, Value>, Option<ReaderPin>)> {
    for _ in 0..OPEN_ATTEMPTS {
        let m = read_manifest(dir)?;
        if int_field(&m, "version").unwrap_or(1) < 2 {
            return Ok((m, None));
        }
        let g = int_field(&m, "generation").unwrap_or(0);
        if let Some(pin) = pin_generation(dir, g)? {
            return Ok((m, Some(pin)));
        }
    }
    Err(Error::corrupt(
        dir,
        format!("the manifest names generation copies that do not exist ({OPEN_ATTEMPTS} attempts)"),
    ))
}

/// The exclusive lock of the one process that may write to a collection.
#[derive(Debug)]
pub struct WriterLock {
    _file: File,
}

impl WriterLock {
    /// Take the lock without waiting; `None` when another writer holds it.
    pub fn try_acquire(dir: &Path) -> Result<Option<WriterLock>> {
        let path = dir.join("writer.lock");
        let f = lock_file(&path)?;
        Ok(try_exclusive(&f, &path)?.then_some(WriterLock { _file: f }))
    }
}

// ---------------------------------------------------------------- garbage collection

/// Segment directories and (segment, deletion file) pairs a manifest names.
fn named_files(m: &Map<String, Value>, segs: &mut BTreeSet<String>, lives: &mut BTreeSet<(String, String)>) {
    for s in m.get("segments").and_then(Value::as_array).into_iter().flatten() {
        if let Some(name) = s.get("name").and_then(Value::as_str) {
            segs.insert(name.to_string());
            if let Some(live) = s.get("live").and_then(Value::as_str) {
                lives.insert((name.to_string(), live.to_string()));
            }
        }
    }
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    out.sort();
    out
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Retire generations no reader holds, then remove segment directories and deletion files
/// that no remaining generation names. Deletes nothing when a held generation cannot be
/// read (better to keep files than to guess).
pub fn collect_garbage(dir: &Path, manifest: &Map<String, Value>) -> Result<()> {
    let gens = dir.join(GENERATIONS);
    let current = int_field(manifest, "generation").unwrap_or(-1);
    let mut keep = vec![manifest.clone()];
    for f in entries(&gens) {
        let name = file_name(&f);
        let Some(stem) = name.strip_suffix(".json") else {
            continue;
        };
        let Ok(g) = stem.parse::<i64>() else { continue };
        if g == current {
            continue;
        }
        let lock = gens.join(format!("{stem}.lock"));
        let lf = lock_file(&lock)?;
        if try_exclusive(&lf, &lock)? {
            let _ = fs::remove_file(&f); // first: a reader that locks next sees it gone
            let _ = fs::remove_file(&lock);
            continue;
        }
        match fs::read(&f).map_err(io(&f)).and_then(|raw| parse_manifest(&f, &raw)) {
            Ok(m) => keep.push(m),
            Err(_) => return Ok(()),
        }
    }
    // Lock files left by readers that found their generation retired.
    for lock in entries(&gens) {
        let name = file_name(&lock);
        let Some(stem) = name.strip_suffix(".lock") else {
            continue;
        };
        if !gens.join(format!("{stem}.json")).exists() {
            let lf = lock_file(&lock)?;
            if try_exclusive(&lf, &lock)? {
                let _ = fs::remove_file(&lock);
            }
        }
    }
    let (mut segs, mut lives) = (BTreeSet::new(), BTreeSet::new());
    for m in &keep {
        named_files(m, &mut segs, &mut lives);
    }
    for entry in entries(&dir.join(SEGMENTS)) {
        let seg = file_name(&entry);
        if !segs.contains(&seg) {
            let _ = fs::remove_dir_all(&entry);
            continue;
        }
        for f in entries(&entry) {
            let n = file_name(&f);
            if n.starts_with("live-") && !lives.contains(&(seg.clone(), n)) {
                let _ = fs::remove_file(&f);
            }
        }
    }
    for f in entries(dir) {
        if file_name(&f).starts_with(&format!("{MANIFEST}.tmp")) {
            let _ = fs::remove_file(&f);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_matches_python() {
        // Expected strings are what Python's json.dumps(ensure_ascii=False,
        // sort_keys=True, separators=(",", ":")) writes for the same values.
        let v: Value = serde_json::from_str(
            r#"{"b": [1, 2.5, 1e-05, 1.5e16, 3.0, -0.0001, 12345678.9], "a": "é\n\"\u0001", "c": null, "d": true}"#,
        )
        .unwrap();
        let mut s = String::new();
        canonical_json(&v, &mut s);
        assert_eq!(
            s,
            "{\"a\":\"é\\n\\\"\\u0001\",\"b\":[1,2.5,1e-05,1.5e+16,3.0,-0.0001,12345678.9],\"c\":null,\"d\":true}"
        );
    }

    #[test]
    fn commit_read_pin_and_collect() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        fs::create_dir_all(p.join(SEGMENTS).join("seg-1")).unwrap();
        fs::create_dir_all(p.join(SEGMENTS).join("seg-2")).unwrap();
        let mut m: Map<String, Value> = serde_json::from_str(
            r#"{"format": "densparse.collection", "generation": 1, "segments": [{"name": "seg-1"}]}"#,
        )
        .unwrap();
        let written = write_manifest(p, &m).unwrap();
        assert_eq!(read_manifest(p).unwrap(), written);
        let (_, pin) = open_pinned(p).unwrap();
        let pin = pin.expect("generation 1 is pinned");
        // A new generation naming seg-2 only: seg-1 stays while generation 1 is pinned.
        m.insert("generation".into(), 2.into());
        m.insert("segments".into(), serde_json::json!([{"name": "seg-2"}]));
        let m2 = write_manifest(p, &m).unwrap();
        collect_garbage(p, &m2).unwrap();
        assert!(p.join(SEGMENTS).join("seg-1").exists());
        drop(pin);
        collect_garbage(p, &m2).unwrap();
        assert!(!p.join(SEGMENTS).join("seg-1").exists());
        assert!(p.join(SEGMENTS).join("seg-2").exists());
        // Damage is caught by the checksum.
        let raw = fs::read_to_string(p.join(MANIFEST)).unwrap().replace("seg-2", "seg-3");
        fs::write(p.join(MANIFEST), raw).unwrap();
        assert!(matches!(read_manifest(p), Err(Error::Corrupt { .. })));
        // One writer at a time.
        let w = WriterLock::try_acquire(p).unwrap();
        assert!(w.is_some());
        assert!(WriterLock::try_acquire(p).unwrap().is_none());
        drop(w);
        assert!(WriterLock::try_acquire(p).unwrap().is_some());
    }
}
