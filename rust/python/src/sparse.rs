//! Bindings of the sparse-vector index. Thin: array and dict conversion, GIL
//! release, a read/write lock (concurrent searches, exclusive add/remove),
//! error mapping. `densparse.SparseIndex` (Python) wraps this class.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1};
use pyo3::exceptions::{PyKeyError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};

use densparse_core::mask::DocMask;
use densparse_core::sparse::{search::thread_pool, Csr, Dtype, Hits, SearchOptions, SparseIndex, SparseVec, DTYPES};
use densparse_core::Error;

use crate::guard::Guarded;
use crate::to_py;

/// An integer array borrowed from numpy without a copy.
enum IntArr<'py> {
    I32(PyReadonlyArray1<'py, i32>),
    I64(PyReadonlyArray1<'py, i64>),
}

fn int_arr<'py>(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<IntArr<'py>> {
    if let Ok(a) = obj.extract::<PyReadonlyArray1<'py, i32>>() {
        return Ok(IntArr::I32(a));
    }
    if let Ok(a) = obj.extract::<PyReadonlyArray1<'py, i64>>() {
        return Ok(IntArr::I64(a));
    }
    Err(PyTypeError::new_err(format!(
        "{what} must be a 1-D int32 or int64 numpy array"
    )))
}

fn f32_arr<'py>(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<PyReadonlyArray1<'py, f32>> {
    obj.extract()
        .map_err(|_| PyTypeError::new_err(format!("{what} must be a 1-D float32 numpy array")))
}

fn slice<'a, T: numpy::Element>(a: &'a PyReadonlyArray1<'_, T>, what: &str) -> PyResult<&'a [T]> {
    a.as_slice()
        .map_err(|_| PyValueError::new_err(format!("{what} must be C-contiguous")))
}

/// Check and clean CSR rows without the GIL (zero-copy views of the arrays).
fn csr_rows(
    py: Python<'_>,
    indptr: &Bound<'_, PyAny>,
    indices: &Bound<'_, PyAny>,
    values: &Bound<'_, PyAny>,
    top_n: Option<usize>,
    what: &str,
) -> PyResult<Vec<SparseVec>> {
    let p = int_arr(indptr, "indptr")?;
    let i = int_arr(indices, "indices")?;
    let v = f32_arr(values, "values")?;
    let v = slice(&v, "values")?;
    macro_rules! go {
        ($p:expr, $i:expr) => {{
            let (ps, is) = (slice($p, "indptr")?, slice($i, "indices")?);
            py.guarded(|| {
                Csr {
                    indptr: ps,
                    indices: is,
                    values: v,
                }
                .rows(top_n, what)
            })?
            .map_err(to_py)
        }};
    }
    match (&p, &i) {
        (IntArr::I32(a), IntArr::I32(b)) => go!(a, b),
        (IntArr::I32(a), IntArr::I64(b)) => go!(a, b),
        (IntArr::I64(a), IntArr::I32(b)) => go!(a, b),
        (IntArr::I64(a), IntArr::I64(b)) => go!(a, b),
    }
}

/// A dict key: an int, or a str holding one (FlagEmbedding's lexical_weights use "1234").
fn dict_key(k: &Bound<'_, PyAny>, doc: usize, what: &str) -> PyResult<i64> {
    if let Ok(s) = k.downcast::<PyString>() {
        let s = s.to_cow()?;
        return s
            .trim()
            .parse::<i64>()
            .map_err(|_| PyValueError::new_err(format!("{what} {doc}: key {s:?} is not an integer token id")));
    }
    if k.is_instance_of::<pyo3::types::PyBool>() {
        return Err(PyTypeError::new_err(format!(
            "{what} {doc}: key {k} is a bool, not a token id"
        )));
    }
    k.extract::<i64>().map_err(|_| {
        PyTypeError::new_err(format!(
            "{what} {doc}: key {} of type {} is not an integer token id",
            k.repr().map(|r| r.to_string()).unwrap_or_default(),
            k.get_type().name().map(|n| n.to_string()).unwrap_or_default()
        ))
    })
}

/// Dicts {token id: weight} to checked rows.
fn dict_rows(py: Python<'_>, dicts: &Bound<'_, PyAny>, top_n: Option<usize>, what: &str) -> PyResult<Vec<SparseVec>> {
    let list = dicts
        .downcast::<PyList>()
        .map_err(|_| PyTypeError::new_err("expected a list of dicts"))?;
    let mut indptr: Vec<i64> = Vec::with_capacity(list.len() + 1);
    indptr.push(0);
    let mut indices: Vec<i64> = Vec::new();
    let mut values: Vec<f32> = Vec::new();
    for (doc, d) in list.iter().enumerate() {
        let d = d.downcast::<PyDict>().map_err(|_| {
            PyTypeError::new_err(format!(
                "{what} {doc} is {}, expected a dict",
                d.get_type().name().unwrap()
            ))
        })?;
        indices.reserve(d.len());
        values.reserve(d.len());
        for (k, v) in d.iter() {
            indices.push(dict_key(&k, doc, what)?);
            let w: f64 = v
                .extract()
                .map_err(|_| PyTypeError::new_err(format!("{what} {doc}: weight of key {k} is not a number")))?;
            values.push(w as f32);
        }
        indptr.push(indices.len() as i64);
    }
    py.guarded(|| {
        Csr {
            indptr: &indptr,
            indices: &indices,
            values: &values,
        }
        .rows(top_n, what)
    })?
    .map_err(to_py)
}

type SearchResult<'py> = (Bound<'py, PyArray2<i64>>, Bound<'py, PyArray2<f32>>);

fn hits_to_numpy(py: Python<'_>, hits: Vec<Hits>, k: usize) -> SearchResult<'_> {
    let q = hits.len();
    let mut ids = Vec::with_capacity(q * k);
    let mut scores = Vec::with_capacity(q * k);
    for h in hits {
        for (d, s) in h {
            ids.push(d);
            scores.push(s);
        }
    }
    (
        Array2::from_shape_vec((q, k), ids).unwrap().into_pyarray(py),
        Array2::from_shape_vec((q, k), scores).unwrap().into_pyarray(py),
    )
}

/// Sparse-vector index (learned sparse / BM25 vectors): exact top-k by dot
/// product. `densparse.SparseIndex` wraps this with input conversion.
#[pyclass(module = "densparse._core", name = "SparseIndex", frozen)]
pub struct PySparseIndex {
    pub(crate) inner: Arc<RwLock<SparseIndex>>,
    dtype: Dtype,
    doc_top_n: Option<usize>,
}

impl PySparseIndex {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, SparseIndex> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, SparseIndex> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    fn ids_vec(ids: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Vec<i64>>> {
        match ids {
            None => Ok(None),
            Some(a) if a.is_none() => Ok(None),
            Some(a) => {
                let arr: PyReadonlyArray1<'_, i64> = a
                    .extract()
                    .map_err(|_| PyTypeError::new_err("ids must be a 1-D int64 numpy array"))?;
                Ok(Some(arr.as_array().to_vec()))
            }
        }
    }

    fn add_rows<'py>(
        &self,
        py: Python<'py>,
        rows: Vec<SparseVec>,
        ids: Option<Vec<i64>>,
    ) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let out = py
            .guarded(|| self.write().add_rows(rows, ids.as_deref()))?
            .map_err(to_py)?;
        Ok(PyArray1::from_vec(py, out.into_iter().map(|i| i as i64).collect()))
    }

    #[allow(clippy::too_many_arguments)]
    fn run_search<'py>(
        &self,
        py: Python<'py>,
        queries: Vec<SparseVec>,
        k: i64,
        mask: Option<&Bound<'_, PyAny>>,
        threads: Option<usize>,
        query_top_n: Option<usize>,
        query_cut: Option<f32>,
    ) -> PyResult<SearchResult<'py>> {
        if k < 1 {
            return Err(PyValueError::new_err(format!("k must be >= 1, got {k}")));
        }
        let mask_arr: Option<PyReadonlyArray1<'_, u8>> =
            match mask {
                Some(m) if !m.is_none() => Some(m.extract().map_err(|_| {
                    PyTypeError::new_err("mask must be a 1-D uint8 (or bool viewed as uint8) numpy array")
                })?),
                _ => None,
            };
        let mask_slice = match &mask_arr {
            Some(a) => Some(DocMask::new(slice(a, "mask")?)),
            None => None,
        };
        let opts = SearchOptions {
            k: k as usize,
            query_top_n,
            query_cut,
        };
        let (hits, kk) = py
            .guarded(|| -> Result<_, Error> {
                let pool = thread_pool(threads)?;
                let pool = pool.as_deref();
                let idx = self.read();
                let kk = opts.k.min(idx.len());
                Ok((idx.search_batch(&queries, &opts, mask_slice, pool)?, kk))
            })?
            .map_err(to_py)?;
        Ok(hits_to_numpy(py, hits, kk))
    }
}

#[pymethods]
impl PySparseIndex {
    #[new]
    #[pyo3(signature = (dtype="float32", doc_top_n=None))]
    fn new(dtype: &str, doc_top_n: Option<i64>) -> PyResult<Self> {
        let dt = Dtype::parse(dtype, &DTYPES).map_err(to_py)?;
        let top = match doc_top_n {
            None => None,
            Some(n) if n >= 1 => Some(n as usize),
            Some(n) => {
                return Err(PyValueError::new_err(format!(
                    "doc_top_n must be >= 1 (or None), got {n}"
                )))
            }
        };
        let idx = SparseIndex::new(dt, top).map_err(to_py)?;
        Ok(PySparseIndex {
            inner: Arc::new(RwLock::new(idx)),
            dtype: dt,
            doc_top_n: top,
        })
    }

    /// Add documents given as CSR arrays (zero-copy); returns their ids.
    #[pyo3(signature = (indptr, indices, values, ids=None))]
    fn add_csr<'py>(
        &self,
        py: Python<'py>,
        indptr: &Bound<'_, PyAny>,
        indices: &Bound<'_, PyAny>,
        values: &Bound<'_, PyAny>,
        ids: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let ids = Self::ids_vec(ids)?;
        let rows = csr_rows(py, indptr, indices, values, self.doc_top_n, "document")?;
        self.add_rows(py, rows, ids)
    }

    /// Add documents given as dicts {token id (int or str): weight}; returns their ids.
    #[pyo3(signature = (docs, ids=None))]
    fn add_dicts<'py>(
        &self,
        py: Python<'py>,
        docs: &Bound<'_, PyAny>,
        ids: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let ids = Self::ids_vec(ids)?;
        let rows = dict_rows(py, docs, self.doc_top_n, "document")?;
        self.add_rows(py, rows, ids)
    }

    /// Top-k for queries given as CSR arrays: (ids [Q, k'], scores [Q, k']).
    #[pyo3(signature = (indptr, indices, values, k=10, mask=None, threads=None, query_top_n=None, query_cut=None))]
    #[allow(clippy::too_many_arguments)]
    fn search_csr<'py>(
        &self,
        py: Python<'py>,
        indptr: &Bound<'_, PyAny>,
        indices: &Bound<'_, PyAny>,
        values: &Bound<'_, PyAny>,
        k: i64,
        mask: Option<&Bound<'_, PyAny>>,
        threads: Option<usize>,
        query_top_n: Option<usize>,
        query_cut: Option<f32>,
    ) -> PyResult<SearchResult<'py>> {
        let qs = csr_rows(py, indptr, indices, values, None, "query")?;
        self.run_search(py, qs, k, mask, threads, query_top_n, query_cut)
    }

    /// Top-k for queries given as dicts.
    #[pyo3(signature = (queries, k=10, mask=None, threads=None, query_top_n=None, query_cut=None))]
    #[allow(clippy::too_many_arguments)]
    fn search_dicts<'py>(
        &self,
        py: Python<'py>,
        queries: &Bound<'_, PyAny>,
        k: i64,
        mask: Option<&Bound<'_, PyAny>>,
        threads: Option<usize>,
        query_top_n: Option<usize>,
        query_cut: Option<f32>,
    ) -> PyResult<SearchResult<'py>> {
        let qs = dict_rows(py, queries, None, "query")?;
        self.run_search(py, qs, k, mask, threads, query_top_n, query_cut)
    }

    /// Remove documents by id; KeyError (index unchanged) if one is unknown.
    fn remove(&self, py: Python<'_>, ids: PyReadonlyArray1<'_, i64>) -> PyResult<()> {
        let ids = ids.as_array().to_vec();
        py.guarded(|| {
            let mut idx = self.write();
            if let Some(&bad) = ids.iter().find(|&&i| i < 0 || !idx.contains(i as u64)) {
                return Err(PyKeyError::new_err(format!("id {bad} is not in the index")));
            }
            idx.remove(&ids).map_err(to_py)
        })?
    }

    /// Rewrite the postings without removed documents (also merges segments).
    fn compact(&self, py: Python<'_>) -> PyResult<()> {
        py.guarded(|| self.write().compact())
    }

    /// Stored (dequantised) vectors of documents: [(term ids int64, weights float32)].
    fn get<'py>(&self, py: Python<'py>, ids: PyReadonlyArray1<'_, i64>) -> PyResult<Bound<'py, PyList>> {
        let ids = ids.as_array().to_vec();
        let rows = py.guarded(|| {
            let idx = self.read();
            if let Some(&bad) = ids.iter().find(|&&i| i < 0 || !idx.contains(i as u64)) {
                return Err(PyKeyError::new_err(format!("id {bad} is not in the index")));
            }
            idx.get(&ids).map_err(to_py)
        })??;
        let items: Vec<Bound<'_, PyTuple>> = rows
            .into_iter()
            .map(|(t, w)| {
                let t: Vec<i64> = t.into_iter().map(|x| x as i64).collect();
                PyTuple::new(
                    py,
                    [
                        PyArray1::from_vec(py, t).into_any(),
                        PyArray1::from_vec(py, w).into_any(),
                    ],
                )
            })
            .collect::<PyResult<_>>()?;
        PyList::new(py, items)
    }

    /// Testing hook: segments up to `rows` rows are searched term at a time,
    /// larger ones with MaxScore (0 forces MaxScore everywhere). Same results.
    fn _set_dense_rows(&self, py: Python<'_>, rows: usize) -> PyResult<()> {
        py.guarded(|| self.write().set_dense_rows(rows))
    }

    /// Live ids in insertion order.
    fn ids<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let v = py.guarded(|| self.read().ids())?;
        Ok(PyArray1::from_vec(py, v.into_iter().map(|i| i as i64).collect()))
    }

    /// Save atomically (temporary file, then rename).
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.guarded(|| self.read().save(&path))?.map_err(to_py)
    }

    /// Load a saved index; with mmap=True the postings are memory-mapped.
    #[staticmethod]
    #[pyo3(signature = (path, mmap=true))]
    fn load(py: Python<'_>, path: PathBuf, mmap: bool) -> PyResult<Self> {
        let idx = py.guarded(|| SparseIndex::load(&path, mmap))?.map_err(to_py)?;
        let (dtype, doc_top_n) = (idx.dtype(), idx.doc_top_n());
        Ok(PySparseIndex {
            inner: Arc::new(RwLock::new(idx)),
            dtype,
            doc_top_n,
        })
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        py.guarded(|| self.read().len())
    }

    #[getter]
    fn dtype(&self) -> &'static str {
        self.dtype.name()
    }

    #[getter]
    fn doc_top_n(&self) -> Option<usize> {
        self.doc_top_n
    }

    #[getter]
    fn vocab_size(&self, py: Python<'_>) -> PyResult<usize> {
        py.guarded(|| self.read().vocab_size())
    }

    /// Sizes: documents, rows, removed, segments, vocabulary, postings, bytes.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = py.guarded(|| self.read().stats())?;
        let d = PyDict::new(py);
        d.set_item("n_docs", s.n_docs)?;
        d.set_item("n_rows", s.n_rows)?;
        d.set_item("n_deleted", s.n_deleted)?;
        d.set_item("n_segments", s.n_segments)?;
        d.set_item("vocab_size", s.vocab_size)?;
        d.set_item("n_terms", s.n_terms)?;
        d.set_item("n_postings", s.n_postings)?;
        d.set_item("postings_bytes", s.postings_bytes)?;
        d.set_item(
            "bytes_per_posting",
            s.postings_bytes as f64 / (s.n_postings.max(1)) as f64,
        )?;
        Ok(d)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PySparseIndex>()
}
