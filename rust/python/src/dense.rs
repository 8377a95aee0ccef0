//! Bindings of the exact dense index and MaxSim (thin: conversion, GIL release, errors).
//! The Python class `densparse.DenseIndex` wraps `DenseIndexCore` and normalises arguments.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::{PyKeyError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyList;

use densparse_core::dense::{self, DenseIndex, Dtype, Metric, Rows, DTYPES, F16};
use densparse_core::mask::DocMask;
use densparse_core::Error;

use crate::guard::Guarded;
use crate::to_py;

type Hits<'py> = (Bound<'py, PyArray2<i64>>, Bound<'py, PyArray2<f32>>);
type Ranked<'py> = (Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<f32>>);
/// (query rows, passage slices, dim)
type MaxSimInput<'a> = (&'a [f32], Vec<&'a [f32]>, usize);

fn slice2<'a>(a: &'a PyReadonlyArray2<'_, f32>, what: &str) -> PyResult<&'a [f32]> {
    a.as_slice()
        .map_err(|_| PyValueError::new_err(format!("{what} must be C-contiguous")))
}

fn slice1<'a, T: numpy::Element>(a: &'a PyReadonlyArray1<'_, T>, what: &str) -> PyResult<&'a [T]> {
    a.as_slice()
        .map_err(|_| PyValueError::new_err(format!("{what} must be contiguous")))
}

/// Exact dense index (see `densparse.DenseIndex`). Thread-safe: searches share
/// a read lock, changes take the write lock; the GIL is released throughout.
#[pyclass(module = "densparse._core", name = "DenseIndexCore", frozen)]
pub struct PyDenseIndex {
    pub(crate) inner: Arc<RwLock<DenseIndex>>,
}

enum Failure {
    Core(Error),
    Missing(i64),
}

fn fail(e: Failure) -> PyErr {
    match e {
        Failure::Core(e) => to_py(e),
        Failure::Missing(id) => PyKeyError::new_err(format!("id {id} is not in the index")),
    }
}

impl PyDenseIndex {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, DenseIndex> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }
}

#[pymethods]
impl PyDenseIndex {
    #[new]
    #[pyo3(signature = (dim, dtype="float32", metric="ip"))]
    fn new(dim: usize, dtype: &str, metric: &str) -> PyResult<Self> {
        let idx = DenseIndex::new(
            dim,
            Dtype::parse(dtype, &DTYPES).map_err(to_py)?,
            Metric::parse(metric).map_err(to_py)?,
        )
        .map_err(to_py)?;
        Ok(PyDenseIndex {
            inner: Arc::new(RwLock::new(idx)),
        })
    }

    /// Add rows [n, dim] (float32 or float16, C-contiguous: read in place); returns their ids.
    #[pyo3(signature = (vectors, ids=None))]
    fn add<'py>(
        &self,
        py: Python<'py>,
        vectors: &Bound<'py, PyAny>,
        ids: Option<PyReadonlyArray1<'py, i64>>,
    ) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let dim = self.read().dim();
        let a32 = vectors.extract::<PyReadonlyArray2<'py, f32>>().ok();
        let a16 = if a32.is_some() {
            None
        } else {
            Some(
                vectors
                    .extract::<PyReadonlyArray2<'py, F16>>()
                    .map_err(|_| PyTypeError::new_err("vectors must be a 2-D float32 or float16 array"))?,
            )
        };
        let cols = a32
            .as_ref()
            .map_or_else(|| a16.as_ref().unwrap().shape()[1], |a| a.shape()[1]);
        if cols != dim {
            return Err(PyValueError::new_err(format!(
                "vectors have {cols} columns but the index has dim={dim}"
            )));
        }
        let rows = match (&a32, &a16) {
            (Some(a), _) => Rows::F32(slice2(a, "vectors")?),
            (None, Some(a)) => Rows::F16(
                a.as_slice()
                    .map_err(|_| PyValueError::new_err("vectors must be C-contiguous"))?,
            ),
            (None, None) => unreachable!(),
        };
        let ids_s = match &ids {
            Some(a) => Some(slice1(a, "ids")?),
            None => None,
        };
        let inner = self.inner.clone();
        let out = py
            .guarded(|| inner.write().unwrap_or_else(|e| e.into_inner()).add_rows(rows, ids_s))?
            .map_err(to_py)?;
        Ok(PyArray1::from_vec(py, out.into_iter().map(|i| i as i64).collect()))
    }

    /// Top-k of each query row: (ids int64 [Q, k'], scores float32 [Q, k']).
    #[pyo3(signature = (queries, k=10, mask=None, threads=None))]
    fn search<'py>(
        &self,
        py: Python<'py>,
        queries: PyReadonlyArray2<'py, f32>,
        k: usize,
        mask: Option<PyReadonlyArray1<'py, u8>>,
        threads: Option<usize>,
    ) -> PyResult<Hits<'py>> {
        let dim = self.read().dim();
        if queries.shape()[1] != dim {
            return Err(PyValueError::new_err(format!(
                "queries have {} columns but the index has dim={dim}",
                queries.shape()[1]
            )));
        }
        let q = slice2(&queries, "queries")?;
        let m = match &mask {
            Some(a) => Some(DocMask::new(slice1(a, "mask")?)),
            None => None,
        };
        let inner = self.inner.clone();
        let hits = py
            .guarded(|| inner.read().unwrap_or_else(|e| e.into_inner()).search(q, k, m, threads))?
            .map_err(to_py)?;
        let nq = hits.len();
        let kk = hits.first().map_or(0, |h| h.len());
        let mut ids = Vec::with_capacity(nq * kk);
        let mut scores = Vec::with_capacity(nq * kk);
        for h in hits {
            for (i, s) in h {
                ids.push(i);
                scores.push(s);
            }
        }
        Ok((
            Array2::from_shape_vec((nq, kk), ids).unwrap().into_pyarray(py),
            Array2::from_shape_vec((nq, kk), scores).unwrap().into_pyarray(py),
        ))
    }

    /// Remove ids (KeyError if one is absent; nothing changes then).
    fn remove(&self, py: Python<'_>, ids: PyReadonlyArray1<'_, i64>) -> PyResult<()> {
        let ids = slice1(&ids, "ids")?;
        let inner = self.inner.clone();
        py.guarded(|| {
            let mut g = inner.write().unwrap_or_else(|e| e.into_inner());
            if let Some(id) = g.first_missing(ids) {
                return Err(Failure::Missing(id));
            }
            g.remove(ids).map_err(Failure::Core)
        })?
        .map_err(fail)
    }

    /// Stored vectors of ids as float32 [n, dim] (dequantised).
    fn get<'py>(&self, py: Python<'py>, ids: PyReadonlyArray1<'py, i64>) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let ids = slice1(&ids, "ids")?;
        let inner = self.inner.clone();
        let (v, dim) = py
            .guarded(|| {
                let g = inner.read().unwrap_or_else(|e| e.into_inner());
                if let Some(id) = g.first_missing(ids) {
                    return Err(Failure::Missing(id));
                }
                g.get(ids).map(|v| (v, g.dim())).map_err(Failure::Core)
            })?
            .map_err(fail)?;
        Ok(Array2::from_shape_vec((ids.len(), dim), v).unwrap().into_pyarray(py))
    }

    /// Drop removed rows from storage now.
    fn compact(&self, py: Python<'_>) -> PyResult<()> {
        let inner = self.inner.clone();
        py.guarded(|| inner.write().unwrap_or_else(|e| e.into_inner()).compact())
    }

    /// Live ids in insertion order.
    fn ids<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        let v: Vec<i64> = self.read().ids().into_iter().map(|i| i as i64).collect();
        PyArray1::from_vec(py, v)
    }

    fn contains(&self, id: i64) -> bool {
        id >= 0 && self.read().contains(id as u64)
    }

    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let inner = self.inner.clone();
        py.guarded(|| inner.read().unwrap_or_else(|e| e.into_inner()).save(&path))?
            .map_err(to_py)
    }

    #[staticmethod]
    #[pyo3(signature = (path, mmap=true))]
    fn load(py: Python<'_>, path: PathBuf, mmap: bool) -> PyResult<Self> {
        let idx = py.guarded(|| DenseIndex::load(&path, mmap))?.map_err(to_py)?;
        Ok(PyDenseIndex {
            inner: Arc::new(RwLock::new(idx)),
        })
    }

    fn __len__(&self) -> usize {
        self.read().len()
    }
    #[getter]
    fn dim(&self) -> usize {
        self.read().dim()
    }
    #[getter]
    fn dtype(&self) -> &'static str {
        self.read().dtype().name()
    }
    #[getter]
    fn metric(&self) -> &'static str {
        self.read().metric().name()
    }
    #[getter]
    fn n_removed(&self) -> usize {
        self.read().n_removed()
    }
    #[getter]
    fn rows(&self) -> usize {
        self.read().rows()
    }
    #[getter]
    fn is_mapped(&self) -> bool {
        self.read().is_mapped()
    }
    #[getter]
    fn vector_bytes(&self) -> usize {
        self.read().vector_bytes()
    }
}

/// float32 C-contiguous [n_i, dim] arrays of a list, with their common width.
fn doc_arrays<'py>(docs: &Bound<'py, PyList>) -> PyResult<Vec<PyReadonlyArray2<'py, f32>>> {
    docs.iter()
        .enumerate()
        .map(|(i, d)| {
            d.extract::<PyReadonlyArray2<'py, f32>>()
                .map_err(|_| PyValueError::new_err(format!("doc_vecs[{i}] must be a float32 2-D array")))
        })
        .collect()
}

fn maxsim_inputs<'a>(
    query: &'a PyReadonlyArray2<'_, f32>,
    docs: &'a [PyReadonlyArray2<'_, f32>],
) -> PyResult<MaxSimInput<'a>> {
    let dim = query.shape()[1];
    let q = slice2(query, "query_vecs")?;
    let mut ds = Vec::with_capacity(docs.len());
    for (i, d) in docs.iter().enumerate() {
        if d.shape()[1] != dim {
            return Err(PyValueError::new_err(format!(
                "doc_vecs[{i}] has {} columns but query_vecs has {dim}",
                d.shape()[1]
            )));
        }
        ds.push(slice2(d, "doc_vecs")?);
    }
    Ok((q, ds, dim))
}

/// ColBERT MaxSim of one query [m, dim] against each passage [n_i, dim]: float32 [len(docs)].
#[pyfunction]
#[pyo3(signature = (query_vecs, doc_vecs, threads=None))]
fn maxsim<'py>(
    py: Python<'py>,
    query_vecs: PyReadonlyArray2<'py, f32>,
    doc_vecs: &Bound<'py, PyList>,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyArray1<f32>>> {
    let docs = doc_arrays(doc_vecs)?;
    let (q, ds, dim) = maxsim_inputs(&query_vecs, &docs)?;
    let s = py.guarded(|| dense::maxsim(q, &ds, dim, threads))?.map_err(to_py)?;
    Ok(PyArray1::from_vec(py, s))
}

/// Passages re-ranked by MaxSim: (positions int64, scores float32), best first, ties by lower position.
#[pyfunction]
#[pyo3(signature = (query_vecs, doc_vecs, k=None, threads=None))]
fn maxsim_rerank<'py>(
    py: Python<'py>,
    query_vecs: PyReadonlyArray2<'py, f32>,
    doc_vecs: &Bound<'py, PyList>,
    k: Option<usize>,
    threads: Option<usize>,
) -> PyResult<Ranked<'py>> {
    let docs = doc_arrays(doc_vecs)?;
    let (q, ds, dim) = maxsim_inputs(&query_vecs, &docs)?;
    let (order, s) = py
        .guarded(|| dense::maxsim_rerank(q, &ds, dim, k, threads))?
        .map_err(to_py)?;
    Ok((
        PyArray1::from_vec(py, order.into_iter().map(|i| i as i64).collect()),
        PyArray1::from_vec(py, s),
    ))
}

/// Memory read-bandwidth probe: sum of a float32 array on `threads` workers (GIL released).
#[pyfunction]
#[pyo3(signature = (data, threads=None))]
fn _dense_stream_sum(py: Python<'_>, data: PyReadonlyArray1<'_, f32>, threads: Option<usize>) -> PyResult<f64> {
    let d = slice1(&data, "data")?;
    py.guarded(|| dense::stream_sum(d, threads))?.map_err(to_py)
}

/// Name of the dot-product kernels chosen for this CPU.
#[pyfunction]
fn _dense_kernels() -> &'static str {
    dense::kernels::kernels().name
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyDenseIndex>()?;
    m.add_function(wrap_pyfunction!(maxsim, m)?)?;
    m.add_function(wrap_pyfunction!(maxsim_rerank, m)?)?;
    m.add_function(wrap_pyfunction!(_dense_stream_sum, m)?)?;
    m.add_function(wrap_pyfunction!(_dense_kernels, m)?)?;
    Ok(())
}
