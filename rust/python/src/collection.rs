//! Bindings of the collection search engine (`densparse_core::collection::search`):
//! segment readers built from already-open indexes, and one-call snapshot search with
//! the GIL released. `densparse.Collection` validates arguments and wraps the results.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use densparse_core::collection::search::{fuse_lists, CorpusStats, RouteHits, RouteKind};
use densparse_core::collection::{merge_policy, store, SearchRequest, SegmentReader, Snapshot};
use densparse_core::sparse::{Csr, SparseVec};

use crate::dense::PyDenseIndex;
use crate::guard::Guarded;
use crate::records::{parse_filter, PyRecordStore};
use crate::sparse::PySparseIndex;
use crate::{to_py, PyAnalyzer, PyBm25Index};

/// One segment as a snapshot sees it: records, indexes and which documents are live.
#[pyclass(module = "densparse._core", name = "SegmentReader", frozen)]
pub struct PySegmentReader {
    inner: Arc<SegmentReader>,
}

#[pymethods]
impl PySegmentReader {
    #[new]
    #[pyo3(signature = (records, bm25, dense=None, sparse=None, live=None))]
    fn new(
        records: &Bound<'_, PyRecordStore>,
        bm25: &Bound<'_, PyBm25Index>,
        dense: Option<&Bound<'_, PyDenseIndex>>,
        sparse: Option<&Bound<'_, PySparseIndex>>,
        live: Option<PyReadonlyArray1<'_, bool>>,
    ) -> PyResult<Self> {
        let live = live.map(|l| l.as_array().iter().map(|&b| b as u8).collect());
        let r = SegmentReader::new(
            records.get().inner.clone(),
            bm25.get().inner.clone(),
            dense.map(|d| d.get().inner.clone()),
            sparse.map(|s| s.get().inner.clone()),
            live,
        )
        .map_err(to_py)?;
        Ok(PySegmentReader { inner: Arc::new(r) })
    }

    /// Live documents.
    #[getter]
    fn n_live(&self) -> usize {
        self.inner.n_live()
    }

    #[getter]
    fn n_docs(&self) -> usize {
        self.inner.n_docs()
    }

    fn __repr__(&self) -> String {
        format!(
            "SegmentReader(n_docs={}, n_live={})",
            self.inner.n_docs(),
            self.inner.n_live()
        )
    }
}

/// (route names, docnos int64 [n], fused scores float32 [n], route scores float32 [n, routes])
type Fused<'py> = (
    Vec<&'static str>,
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<f32>>,
    Bound<'py, PyArray2<f32>>,
);

/// One version of a collection: its segments, searched in one call.
#[pyclass(module = "densparse._core", name = "Snapshot", frozen)]
pub struct PySnapshot {
    inner: Arc<Snapshot>,
}

/// Statistics given as (rows, total tokens, {token: df}).
fn corpus_stats(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<CorpusStats>> {
    let Some(obj) = obj else { return Ok(None) };
    let (n_rows, total_tokens, df): (u64, u64, Bound<'_, PyDict>) = obj.extract().map_err(|_| {
        PyTypeError::new_err("bm25_stats must be (n_docs: int >= 0, total_tokens: int >= 0, {token: df})")
    })?;
    let df = df
        .iter()
        .map(|(k, v)| Ok((k.extract::<String>()?, v.extract::<u64>()?)))
        .collect::<PyResult<Vec<_>>>()
        .map_err(|_| PyTypeError::new_err("bm25_stats df must map str tokens to ints >= 0"))?;
    Ok(Some(CorpusStats {
        n_rows,
        total_tokens,
        df,
    }))
}

fn stats_tuple(py: Python<'_>, s: CorpusStats) -> PyResult<(u64, u64, Bound<'_, PyDict>)> {
    let d = PyDict::new(py);
    for (t, n) in s.df {
        d.set_item(t, n)?;
    }
    Ok((s.n_rows, s.total_tokens, d))
}

impl PySnapshot {
    #[allow(clippy::too_many_arguments)]
    fn request(
        &self,
        py: Python<'_>,
        text: Option<String>,
        dense: Option<PyReadonlyArray1<'_, f32>>,
        sparse: Option<(PyReadonlyArray1<'_, i64>, PyReadonlyArray1<'_, f32>)>,
        filter: Option<&Bound<'_, PyAny>>,
        per_route: usize,
        bm25_stats: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<SearchRequest> {
        let filter = filter.map(parse_filter).transpose()?;
        let sparse: Option<SparseVec> = match sparse {
            None => None,
            Some((i, v)) => {
                let (i, v) = (i.as_slice()?.to_vec(), v.as_slice()?.to_vec());
                let indptr = [0i64, i.len() as i64];
                let csr = Csr {
                    indptr: &indptr,
                    indices: &i,
                    values: &v,
                };
                Some(csr.row(0, None, "sparse query").map_err(to_py)?)
            }
        };
        let snap = self.inner.clone();
        let bm25_tokens = text.map(|t| py.guarded(|| snap.analyzer().tokenize(&t))).transpose()?;
        Ok(SearchRequest {
            bm25_tokens,
            dense: dense.map(|d| d.as_array().to_vec()),
            sparse,
            filter,
            per_route,
            bm25_stats: corpus_stats(bm25_stats)?,
        })
    }
}

fn names(lists: &[(RouteKind, RouteHits)]) -> Vec<&'static str> {
    lists.iter().map(|(r, _)| r.name()).collect()
}

#[pymethods]
impl PySnapshot {
    #[new]
    fn new(segments: Vec<Bound<'_, PySegmentReader>>, analyzer: &Bound<'_, PyAnalyzer>) -> Self {
        let segs = segments.iter().map(|s| s.get().inner.clone()).collect();
        PySnapshot {
            inner: Arc::new(Snapshot::new(segs, analyzer.get().inner.clone())),
        }
    }

    /// Each requested route's exact top `per_route`: [(name, docnos, scores)], in the
    /// order bm25, dense, sparse.
    #[pyo3(signature = (text=None, dense=None, sparse=None, filter=None, per_route=10, bm25_stats=None))]
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn route_lists<'py>(
        &self,
        py: Python<'py>,
        text: Option<String>,
        dense: Option<PyReadonlyArray1<'_, f32>>,
        sparse: Option<(PyReadonlyArray1<'_, i64>, PyReadonlyArray1<'_, f32>)>,
        filter: Option<&Bound<'_, PyAny>>,
        per_route: usize,
        bm25_stats: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Vec<(&'static str, Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<f32>>)>> {
        let req = self.request(py, text, dense, sparse, filter, per_route, bm25_stats)?;
        let snap = self.inner.clone();
        let lists = py.guarded(|| snap.route_lists(&req))?.map_err(to_py)?;
        Ok(lists
            .into_iter()
            .map(|(r, h)| {
                let d: Vec<i64> = h.iter().map(|&(d, _)| d as i64).collect();
                let s: Vec<f32> = h.iter().map(|&(_, s)| s).collect();
                (r.name(), d.into_pyarray(py), s.into_pyarray(py))
            })
            .collect())
    }

    /// Route lists and fusion in one call: (route names, docnos, fused scores,
    /// route scores [n, routes] with NaN where a route did not return the document).
    #[pyo3(signature = (text=None, dense=None, sparse=None, filter=None, per_route=10, top=10,
                        fusion="rrf", rrf_k=60.0, normalization="minmax", weights=None, bm25_stats=None))]
    #[allow(clippy::too_many_arguments)]
    fn search<'py>(
        &self,
        py: Python<'py>,
        text: Option<String>,
        dense: Option<PyReadonlyArray1<'_, f32>>,
        sparse: Option<(PyReadonlyArray1<'_, i64>, PyReadonlyArray1<'_, f32>)>,
        filter: Option<&Bound<'_, PyAny>>,
        per_route: usize,
        top: usize,
        fusion: &str,
        rrf_k: f64,
        normalization: &str,
        weights: Option<Vec<f64>>,
        bm25_stats: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Fused<'py>> {
        let req = self.request(py, text, dense, sparse, filter, per_route, bm25_stats)?;
        let params = crate::fusion::params(fusion, rrf_k, weights, normalization, None)?;
        let snap = self.inner.clone();
        let (routes, hits) = py
            .guarded(|| {
                let lists = snap.route_lists(&req)?;
                Ok((names(&lists), fuse_lists(&lists, &params, top)?))
            })?
            .map_err(to_py)?;
        let n = hits.len();
        let w = routes.len();
        let docnos: Vec<i64> = hits.iter().map(|h| h.docno as i64).collect();
        let scores: Vec<f32> = hits.iter().map(|h| h.score).collect();
        let rs: Vec<f32> = hits.into_iter().flat_map(|h| h.route_scores).collect();
        let rs = Array2::from_shape_vec((n, w), rs).expect("n x routes scores");
        Ok((
            routes,
            docnos.into_pyarray(py),
            scores.into_pyarray(py),
            rs.into_pyarray(py),
        ))
    }

    /// BM25 statistics of the live documents for `tokens`: (rows, total tokens, {token: df}).
    fn bm25_stats<'py>(&self, py: Python<'py>, tokens: Vec<String>) -> PyResult<(u64, u64, Bound<'py, PyDict>)> {
        let snap = self.inner.clone();
        let s = py.guarded(|| snap.bm25_stats(&tokens))?.map_err(to_py)?;
        stats_tuple(py, s)
    }

    /// (segment index, document) of a docno, or None.
    fn locate(&self, docno: u64) -> Option<(usize, usize)> {
        self.inner.locate(docno)
    }

    /// (segment index, document) of the live document with this id, or None.
    fn find(&self, py: Python<'_>, id: String) -> PyResult<Option<(usize, usize)>> {
        let snap = self.inner.clone();
        py.guarded(|| snap.find(&id))?.map_err(to_py)
    }

    /// `find` for many ids: (segment indices, documents), int64, -1 where not found.
    #[allow(clippy::type_complexity)]
    fn find_many<'py>(
        &self,
        py: Python<'py>,
        ids: Vec<String>,
    ) -> PyResult<(Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<i64>>)> {
        let snap = self.inner.clone();
        let found = py.guarded(|| snap.find_many(&ids))?.map_err(to_py)?;
        let (segs, docs): (Vec<i64>, Vec<i64>) = found
            .into_iter()
            .map(|f| f.map_or((-1, -1), |(s, d)| (s as i64, d as i64)))
            .unzip();
        Ok((segs.into_pyarray(py), docs.into_pyarray(py)))
    }

    fn __len__(&self) -> usize {
        self.inner.segments().len()
    }
}

// ---------------------------------------------------------------- the directory on disk
// Manifests cross the boundary as JSON text: Python keeps them as dicts.

fn manifest_map(json: &str) -> PyResult<serde_json::Map<String, serde_json::Value>> {
    match serde_json::from_str(json) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        _ => Err(PyValueError::new_err("manifest must be a JSON object")),
    }
}

fn to_text(m: &serde_json::Map<String, serde_json::Value>) -> String {
    serde_json::Value::Object(m.clone()).to_string()
}

/// The committed manifest of the collection at `path`, checked, as JSON text.
#[pyfunction]
fn manifest_read(py: Python<'_>, path: PathBuf) -> PyResult<String> {
    py.guarded(|| store::read_manifest(&path))?
        .map(|m| to_text(&m))
        .map_err(to_py)
}

/// Check a manifest's bytes (read from `path`): JSON text of it.
#[pyfunction]
fn manifest_parse(path: PathBuf, raw: &[u8]) -> PyResult<String> {
    store::parse_manifest(&path, raw).map(|m| to_text(&m)).map_err(to_py)
}

/// Commit a manifest (JSON text): generation copy, then the switch, each fsynced.
/// Returns the manifest as written (version and checksum set), as JSON text.
#[pyfunction]
fn manifest_write(py: Python<'_>, path: PathBuf, manifest: &str) -> PyResult<String> {
    let m = manifest_map(manifest)?;
    py.guarded(|| store::write_manifest(&path, &m))?
        .map(|m| to_text(&m))
        .map_err(to_py)
}

/// `{"size", "crc32"[, "check": "header"]}` of a file, as JSON text.
#[pyfunction]
fn file_digest_entry(py: Python<'_>, path: PathBuf) -> PyResult<String> {
    py.guarded(|| store::digest_entry(&path))?
        .map(|v| v.to_string())
        .map_err(to_py)
}

/// CorruptIndexError unless `path` matches the manifest's entry (JSON text).
#[pyfunction]
fn check_file(py: Python<'_>, path: PathBuf, expected: &str) -> PyResult<()> {
    let v: serde_json::Value = serde_json::from_str(expected).unwrap_or(serde_json::Value::Null);
    py.guarded(|| store::check_file(&path, &v))?.map_err(to_py)
}

/// Retire unheld generations and delete files no remaining generation names.
#[pyfunction]
fn collect_garbage(py: Python<'_>, path: PathBuf, manifest: &str) -> PyResult<()> {
    let m = manifest_map(manifest)?;
    py.guarded(|| store::collect_garbage(&path, &m))?.map_err(to_py)
}

/// Indices of the segments to merge next (see `merge_policy`).
#[pyfunction]
#[pyo3(signature = (live, total, max_segments, factor=3, floor_docs=1))]
fn merge_plan(
    live: Vec<u64>,
    total: Vec<u64>,
    max_segments: usize,
    factor: usize,
    floor_docs: u64,
) -> PyResult<Vec<usize>> {
    if live.len() != total.len() {
        return Err(PyValueError::new_err("live and total must have one count per segment"));
    }
    Ok(merge_policy::plan(&live, &total, max_segments, factor, floor_docs))
}

/// The level of a segment with `live_docs` live documents (see `merge_policy`).
#[pyfunction]
#[pyo3(signature = (live_docs, factor=3, floor_docs=1))]
fn merge_level(live_docs: u64, factor: usize, floor_docs: u64) -> i64 {
    merge_policy::level(live_docs, factor.max(2), floor_docs)
}

/// A shared lock on one generation: while held, no writer deletes its files.
#[pyclass(module = "densparse._core", name = "ReaderPin", frozen)]
pub struct PyReaderPin {
    generation: i64,
    pin: Mutex<Option<store::ReaderPin>>,
}

#[pymethods]
impl PyReaderPin {
    #[getter]
    fn generation(&self) -> i64 {
        self.generation
    }

    /// Let the generation's files go (also happens when the pin is collected).
    fn release(&self) {
        if let Some(mut p) = self.pin.lock().unwrap_or_else(|e| e.into_inner()).take() {
            p.release();
        }
    }
}

fn wrap_pin(p: Option<store::ReaderPin>) -> Option<PyReaderPin> {
    p.map(|p| PyReaderPin {
        generation: p.generation,
        pin: Mutex::new(Some(p)),
    })
}

/// Pin `generation` (None when it is retired).
#[pyfunction]
fn pin_generation(py: Python<'_>, path: PathBuf, generation: i64) -> PyResult<Option<PyReaderPin>> {
    py.guarded(|| store::pin_generation(&path, generation))?
        .map(wrap_pin)
        .map_err(to_py)
}

/// The current manifest (JSON text) and a pin on its generation (None for version 1).
#[pyfunction]
fn open_pinned(py: Python<'_>, path: PathBuf) -> PyResult<(String, Option<PyReaderPin>)> {
    let (m, pin) = py.guarded(|| store::open_pinned(&path))?.map_err(to_py)?;
    Ok((to_text(&m), wrap_pin(pin)))
}

/// The one writer's exclusive lock on a collection.
#[pyclass(module = "densparse._core", name = "WriterLock", frozen)]
pub struct PyWriterLock {
    lock: Mutex<Option<store::WriterLock>>,
}

#[pymethods]
impl PyWriterLock {
    /// Take the lock without waiting; None when another writer holds it.
    #[staticmethod]
    fn try_acquire(py: Python<'_>, path: PathBuf) -> PyResult<Option<PyWriterLock>> {
        let l = py.guarded(|| store::WriterLock::try_acquire(&path))?.map_err(to_py)?;
        Ok(l.map(|l| PyWriterLock {
            lock: Mutex::new(Some(l)),
        }))
    }

    fn release(&self) {
        self.lock.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    #[getter]
    fn held(&self) -> bool {
        self.lock.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PySegmentReader>()?;
    m.add_class::<PySnapshot>()?;
    m.add_class::<PyReaderPin>()?;
    m.add_class::<PyWriterLock>()?;
    for f in [
        wrap_pyfunction!(manifest_read, m)?,
        wrap_pyfunction!(manifest_parse, m)?,
        wrap_pyfunction!(manifest_write, m)?,
        wrap_pyfunction!(file_digest_entry, m)?,
        wrap_pyfunction!(check_file, m)?,
        wrap_pyfunction!(collect_garbage, m)?,
        wrap_pyfunction!(merge_plan, m)?,
        wrap_pyfunction!(merge_level, m)?,
        wrap_pyfunction!(pin_generation, m)?,
        wrap_pyfunction!(open_pinned, m)?,
    ] {
        m.add_function(f)?;
    }
    Ok(())
}
