//! Bindings of the collection search engine (`densparse_core::collection::search`):
//! segment readers built from already-open indexes, and one-call snapshot search with
//! the GIL released. `densparse.Collection` validates arguments and wraps the results.

use std::sync::Arc;

use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use densparse_core::collection::search::{fuse_lists, CorpusStats, RouteHits, RouteKind};
use densparse_core::collection::{SearchRequest, SegmentReader, Snapshot};
use densparse_core::sparse::{Csr, SparseVec};

use crate::dense::PyDenseIndex;
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
        let bm25_tokens = text.map(|t| py.allow_threads(|| snap.analyzer().tokenize(&t)));
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
        let lists = py.allow_threads(|| snap.route_lists(&req)).map_err(to_py)?;
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
            .allow_threads(|| {
                let lists = snap.route_lists(&req)?;
                Ok((names(&lists), fuse_lists(&lists, &params, top)?))
            })
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
        let s = py.allow_threads(|| snap.bm25_stats(&tokens)).map_err(to_py)?;
        stats_tuple(py, s)
    }

    /// (segment index, document) of a docno, or None.
    fn locate(&self, docno: u64) -> Option<(usize, usize)> {
        self.inner.locate(docno)
    }

    /// (segment index, document) of the live document with this id, or None.
    fn find(&self, py: Python<'_>, id: String) -> PyResult<Option<(usize, usize)>> {
        let snap = self.inner.clone();
        py.allow_threads(|| snap.find(&id)).map_err(to_py)
    }

    fn __len__(&self) -> usize {
        self.inner.segments().len()
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PySegmentReader>()?;
    m.add_class::<PySnapshot>()?;
    Ok(())
}
