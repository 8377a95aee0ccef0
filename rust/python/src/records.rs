//! Bindings of the collection record store and metadata filters. Thin: conversion of
//! Python values to and from JSON values, GIL release, error mapping.

use std::path::PathBuf;
use std::sync::Arc;

use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::exceptions::{PyIndexError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PyMapping, PySet, PyString, PyTuple};
use serde_json::{Map, Number, Value};

use densparse_core::collection::records::{Record, RecordStore, RecordStoreWriter};
use densparse_core::collection::{file_digest, Filter, SpecError, SpecValue};

use crate::guard::Guarded;
use crate::to_py;

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// A metadata value as JSON; refuses what would not read back equal, naming the field.
fn to_json(obj: &Bound<'_, PyAny>, path: &str) -> PyResult<Value> {
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = obj.downcast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        return match obj.extract::<i64>() {
            Ok(i) => Ok(Value::Number(i.into())),
            Err(_) => Err(PyValueError::new_err(format!(
                "metadata field {path:?}: integer {} does not fit in a signed 64-bit integer",
                obj.str()?
            ))),
        };
    }
    if let Ok(f) = obj.downcast::<PyFloat>() {
        let x = f.value();
        return match Number::from_f64(x).filter(|_| x.is_finite()) {
            Some(n) => Ok(Value::Number(n)),
            None => Err(PyValueError::new_err(format!(
                "metadata field {path:?}: {x} cannot be stored (NaN and infinities are refused)"
            ))),
        };
    }
    if let Ok(s) = obj.downcast::<PyString>() {
        return Ok(Value::String(s.to_cow()?.into_owned()));
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        let mut out = Vec::new();
        for item in obj.try_iter()? {
            out.push(to_json(&item?, path)?);
        }
        return Ok(Value::Array(out));
    }
    if let Ok(d) = obj.downcast::<PyDict>() {
        return Ok(Value::Object(dict_to_json(d, path)?));
    }
    Err(PyTypeError::new_err(format!(
        "metadata field {path:?}: a value of type {} is not JSON-like (str, numbers, bools, None, lists, dicts)",
        type_name(obj)
    )))
}

fn dict_to_json(d: &Bound<'_, PyDict>, prefix: &str) -> PyResult<Map<String, Value>> {
    let mut m = Map::new();
    for (k, v) in d.iter() {
        let Ok(key) = k.downcast::<PyString>() else {
            return Err(PyTypeError::new_err(format!(
                "metadata keys must be str, not {} (in {prefix:?})",
                type_name(&k)
            )));
        };
        let key = key.to_cow()?.into_owned();
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let value = to_json(&v, &path)?;
        m.insert(key, value);
    }
    Ok(m)
}

fn from_json<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.into_pyobject(py)?.into_any(),
            None => match n.as_u64() {
                Some(u) => u.into_pyobject(py)?.into_any(),
                None => PyFloat::new(py, n.as_f64().unwrap_or(f64::NAN)).into_any(),
            },
        },
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(a) => {
            let l = PyList::empty(py);
            for x in a {
                l.append(from_json(py, x)?)?;
            }
            l.into_any()
        }
        Value::Object(m) => map_to_dict(py, m)?.into_any(),
    })
}

fn map_to_dict<'py>(py: Python<'py>, m: &Map<String, Value>) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (k, x) in m {
        d.set_item(k, from_json(py, x)?)?;
    }
    Ok(d)
}

/// A filter spec from Python values (ints beyond 64 bits become floats, as Python
/// compares them; tuples and sets are lists).
fn to_spec(obj: &Bound<'_, PyAny>) -> PyResult<SpecValue> {
    if obj.is_none() {
        return Ok(SpecValue::Null);
    }
    if let Ok(b) = obj.downcast::<PyBool>() {
        return Ok(SpecValue::Bool(b.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        return Ok(match obj.extract::<i64>() {
            Ok(i) => SpecValue::Int(i),
            Err(_) => SpecValue::Float(obj.extract::<f64>()?),
        });
    }
    if let Ok(f) = obj.downcast::<PyFloat>() {
        return Ok(SpecValue::Float(f.value()));
    }
    if let Ok(s) = obj.downcast::<PyString>() {
        return Ok(SpecValue::Str(s.to_cow()?.into_owned()));
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() || obj.is_instance_of::<PySet>() {
        let mut out = Vec::new();
        for item in obj.try_iter()? {
            out.push(to_spec(&item?)?);
        }
        return Ok(SpecValue::List(out));
    }
    let dict;
    let d = match obj.downcast::<PyDict>() {
        Ok(d) => Some(d),
        // any other Mapping reads as the dict of its items
        Err(_) if obj.downcast::<PyMapping>().is_ok() => {
            dict = PyDict::new(obj.py());
            for item in obj.downcast::<PyMapping>()?.items()?.iter() {
                let (k, v): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item.extract()?;
                dict.set_item(k, v)?;
            }
            Some(&dict)
        }
        Err(_) => None,
    };
    if let Some(d) = d {
        let mut out = Vec::with_capacity(d.len());
        for (k, v) in d.iter() {
            let Ok(key) = k.downcast::<PyString>() else {
                return Err(PyTypeError::new_err(format!(
                    "filter keys must be str, not {}: {}",
                    type_name(&k),
                    k.repr()?
                )));
            };
            out.push((key.to_cow()?.into_owned(), to_spec(&v)?));
        }
        return Ok(SpecValue::Map(out));
    }
    if obj.is_instance_of::<PyFrozenSet>() {
        return Err(PyTypeError::new_err(
            "filter lists must be list, tuple or set, not frozenset",
        ));
    }
    Err(PyTypeError::new_err(format!(
        "cannot filter on a value of type {}: {}",
        type_name(obj),
        obj.repr()?
    )))
}

pub(crate) fn parse_filter(spec: &Bound<'_, PyAny>) -> PyResult<Filter> {
    if spec.downcast::<PyMapping>().is_err() {
        return Err(PyTypeError::new_err(format!(
            "filter must be a dict, not {}",
            type_name(spec)
        )));
    }
    Filter::parse(&to_spec(spec)?).map_err(|e| match e {
        SpecError::Type(m) => PyTypeError::new_err(m),
        SpecError::Value(m) => PyValueError::new_err(m),
    })
}

/// Check a filter spec without evaluating it: TypeError / ValueError naming the fault.
#[pyfunction]
fn validate_filter(spec: &Bound<'_, PyAny>) -> PyResult<()> {
    parse_filter(spec).map(|_| ())
}

/// (size in bytes, CRC-32 as zlib.crc32) of a file, for a manifest.
#[pyfunction(name = "file_digest")]
fn py_file_digest(py: Python<'_>, path: PathBuf) -> PyResult<(u64, u32)> {
    py.guarded(|| file_digest(&path))?.map_err(to_py)
}

/// Sparse term ids from an int array or sequence, checked to fit u32.
fn term_ids(obj: &Bound<'_, PyAny>) -> PyResult<Vec<u32>> {
    let wide: Vec<i64> = if let Ok(a) = obj.extract::<PyReadonlyArray1<'_, i64>>() {
        a.as_array().to_vec()
    } else if let Ok(a) = obj.extract::<PyReadonlyArray1<'_, i32>>() {
        a.as_array().iter().map(|&x| x as i64).collect()
    } else if let Ok(a) = obj.extract::<PyReadonlyArray1<'_, u32>>() {
        return Ok(a.as_array().to_vec());
    } else {
        obj.extract()
            .map_err(|_| PyTypeError::new_err("sparse term ids must be a 1-D int array or a list of int"))?
    };
    wide.into_iter()
        .map(|x| {
            u32::try_from(x).map_err(|_| PyValueError::new_err(format!("sparse term id {x} is not in [0, 2**32)")))
        })
        .collect()
}

fn weights(obj: &Bound<'_, PyAny>) -> PyResult<Vec<f32>> {
    if let Ok(a) = obj.extract::<PyReadonlyArray1<'_, f32>>() {
        return Ok(a.as_array().to_vec());
    }
    obj.extract()
        .map_err(|_| PyTypeError::new_err("sparse weights must be a 1-D float32 array or a list of float"))
}

/// Builds one segment's record store: `add` records in document order, then `finish`.
#[pyclass(name = "RecordStoreWriter", module = "densparse._core")]
pub struct PyRecordStoreWriter {
    inner: Option<RecordStoreWriter>,
}

impl PyRecordStoreWriter {
    fn writer(&mut self) -> PyResult<&mut RecordStoreWriter> {
        self.inner
            .as_mut()
            .ok_or_else(|| PyValueError::new_err("this RecordStoreWriter is finished"))
    }
}

#[pymethods]
impl PyRecordStoreWriter {
    #[new]
    fn new() -> Self {
        PyRecordStoreWriter {
            inner: Some(RecordStoreWriter::new()),
        }
    }

    /// Append a record; its document number is the count added before it. Metadata must
    /// be JSON-like with str keys; integers beyond 64 bits, NaN and infinities are refused
    /// (ValueError naming the field). ``sparse`` is ``(term ids, weights)``.
    #[pyo3(signature = (id, text = "", views = None, metadata = None, sparse = None))]
    fn add(
        &mut self,
        id: &str,
        text: &str,
        views: Option<Vec<String>>,
        metadata: Option<&Bound<'_, PyAny>>,
        sparse: Option<(Bound<'_, PyAny>, Bound<'_, PyAny>)>,
    ) -> PyResult<()> {
        let metadata = match metadata {
            None => Map::new(),
            Some(m) if m.is_none() => Map::new(),
            Some(m) => match m.downcast::<PyDict>() {
                Ok(d) => dict_to_json(d, "")?,
                Err(_) => {
                    return Err(PyTypeError::new_err(format!(
                        "metadata must be a dict, not {}",
                        type_name(m)
                    )))
                }
            },
        };
        let sparse = match sparse {
            None => None,
            Some((t, w)) => Some((term_ids(&t)?, weights(&w)?)),
        };
        let rec = Record {
            id: id.to_string(),
            text: text.to_string(),
            views: views.unwrap_or_default(),
            metadata,
            sparse,
        };
        self.writer()?.add(&rec).map_err(to_py)
    }

    /// Append documents ``docs`` of ``store``, copied as stored (no Python objects per
    /// record): how a merge carries records over.
    fn add_from(&mut self, py: Python<'_>, store: &Bound<'_, PyRecordStore>, docs: &Bound<'_, PyAny>) -> PyResult<()> {
        let src = store.get().inner.clone();
        let docs = store.get().docs(Some(docs))?;
        let w = self.writer()?;
        py.guarded(|| -> Result<(), densparse_core::Error> {
            for d in docs {
                w.add(&src.record(d)?)?;
            }
            Ok(())
        })?
        .map_err(to_py)
    }

    fn __len__(&mut self) -> PyResult<usize> {
        Ok(self.writer()?.len())
    }

    /// The store, in memory (``save`` it to a file). The writer cannot be used after.
    fn finish(&mut self, py: Python<'_>) -> PyResult<PyRecordStore> {
        let w = self
            .inner
            .take()
            .ok_or_else(|| PyValueError::new_err("this RecordStoreWriter is finished"))?;
        let store = py.guarded(|| w.finish())?.map_err(to_py)?;
        Ok(PyRecordStore { inner: Arc::new(store) })
    }
}

/// One segment's records: ids, texts, views, metadata, sparse vectors, read on demand
/// from a memory-mapped file; metadata filters evaluated from typed columns.
#[pyclass(name = "RecordStore", module = "densparse._core", frozen)]
pub struct PyRecordStore {
    pub(crate) inner: Arc<RecordStore>,
}

impl PyRecordStore {
    fn doc(&self, doc: i64) -> PyResult<usize> {
        let n = self.inner.n_docs();
        if doc < 0 || doc as u64 >= n as u64 {
            return Err(PyIndexError::new_err(format!(
                "document {doc} out of range (the store has {n})"
            )));
        }
        Ok(doc as usize)
    }

    /// Document numbers from an int array / list, or every document when None.
    fn docs(&self, docs: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<usize>> {
        let Some(obj) = docs else {
            return Ok((0..self.inner.n_docs()).collect());
        };
        let raw: Vec<i64> = if let Ok(a) = obj.extract::<PyReadonlyArray1<'_, i64>>() {
            a.as_array().to_vec()
        } else {
            obj.extract()
                .map_err(|_| PyTypeError::new_err("docs must be a 1-D int64 array or a list of int"))?
        };
        raw.into_iter().map(|d| self.doc(d)).collect()
    }
}

#[pymethods]
impl PyRecordStore {
    /// Open a store file: reads its header only, in O(1); ``verify=True`` also checks the
    /// whole body against the header's CRC-32 (one sequential read of the file).
    #[staticmethod]
    #[pyo3(signature = (path, mmap = true, verify = false))]
    fn open(py: Python<'_>, path: PathBuf, mmap: bool, verify: bool) -> PyResult<Self> {
        let s = py
            .guarded(|| RecordStore::open_with(&path, mmap, verify))?
            .map_err(to_py)?;
        Ok(PyRecordStore { inner: Arc::new(s) })
    }

    /// Write the store to ``path`` atomically (fsynced).
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.guarded(|| self.inner.save(&path))?.map_err(to_py)
    }

    /// Check the whole file against the CRC in its header (CorruptIndexError if not).
    fn verify(&self, py: Python<'_>) -> PyResult<()> {
        py.guarded(|| self.inner.verify())?.map_err(to_py)
    }

    #[getter]
    fn n_docs(&self) -> usize {
        self.inner.n_docs()
    }

    fn __len__(&self) -> usize {
        self.inner.n_docs()
    }

    /// Size of the store's file in bytes.
    #[getter]
    fn nbytes(&self) -> usize {
        self.inner.nbytes()
    }

    /// Total number of extra views over all documents.
    #[getter]
    fn n_views_total(&self) -> usize {
        self.inner.n_views_total()
    }

    fn id(&self, doc: i64) -> PyResult<String> {
        let d = self.doc(doc)?;
        self.inner.id(d).map(String::from).map_err(to_py)
    }

    /// Ids of ``docs`` (every document when None).
    #[pyo3(signature = (docs = None))]
    fn ids(&self, py: Python<'_>, docs: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<String>> {
        let docs = self.docs(docs)?;
        py.guarded(|| {
            docs.iter()
                .map(|&d| self.inner.id(d).map(String::from))
                .collect::<Result<_, _>>()
        })?
        .map_err(to_py)
    }

    /// The document holding ``id``, or None.
    fn doc_of(&self, id: &str) -> PyResult<Option<usize>> {
        self.inner.doc_of(id).map_err(to_py)
    }

    /// Document of each id (-1 where absent), as int64.
    fn docs_of<'py>(&self, py: Python<'py>, ids: Vec<String>) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let out = py
            .guarded(|| {
                ids.iter()
                    .map(|i| self.inner.doc_of(i).map(|d| d.map_or(-1, |d| d as i64)))
                    .collect::<Result<Vec<_>, _>>()
            })?
            .map_err(to_py)?;
        Ok(out.into_pyarray(py))
    }

    fn text(&self, doc: i64) -> PyResult<String> {
        let d = self.doc(doc)?;
        self.inner.text(d).map(String::from).map_err(to_py)
    }

    /// Texts of ``docs`` (every document when None).
    #[pyo3(signature = (docs = None))]
    fn texts(&self, py: Python<'_>, docs: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<String>> {
        let docs = self.docs(docs)?;
        py.guarded(|| {
            docs.iter()
                .map(|&d| self.inner.text(d).map(String::from))
                .collect::<Result<_, _>>()
        })?
        .map_err(to_py)
    }

    /// The extra views of ``doc`` (a new list).
    fn views(&self, doc: i64) -> PyResult<Vec<String>> {
        let d = self.doc(doc)?;
        Ok(self
            .inner
            .views(d)
            .map_err(to_py)?
            .into_iter()
            .map(String::from)
            .collect())
    }

    /// Number of extra views of each of ``docs`` (every document when None), int64.
    #[pyo3(signature = (docs = None))]
    fn view_counts<'py>(
        &self,
        py: Python<'py>,
        docs: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let docs = self.docs(docs)?;
        let out = py
            .guarded(|| {
                docs.iter()
                    .map(|&d| self.inner.n_views(d).map(|v| v as i64))
                    .collect::<Result<Vec<_>, _>>()
            })?
            .map_err(to_py)?;
        Ok(out.into_pyarray(py))
    }

    /// The metadata of ``doc`` as added (a new dict each call; key order and int/float
    /// kinds kept).
    fn metadata<'py>(&self, py: Python<'py>, doc: i64) -> PyResult<Bound<'py, PyDict>> {
        let d = self.doc(doc)?;
        let m = self.inner.metadata(d).map_err(to_py)?;
        map_to_dict(py, &m)
    }

    /// The metadata of ``doc`` as JSON text (``""`` when it has none).
    fn metadata_json(&self, doc: i64) -> PyResult<String> {
        let d = self.doc(doc)?;
        self.inner.metadata_json(d).map(String::from).map_err(to_py)
    }

    /// ``(term ids int64, weights float32)`` of ``doc``, or None when it has none.
    #[allow(clippy::type_complexity)]
    fn sparse<'py>(
        &self,
        py: Python<'py>,
        doc: i64,
    ) -> PyResult<Option<(Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<f32>>)>> {
        let d = self.doc(doc)?;
        Ok(self.inner.sparse(d).map_err(to_py)?.map(|(t, w)| {
            let t: Vec<i64> = t.into_iter().map(i64::from).collect();
            (t.into_pyarray(py), w.into_pyarray(py))
        }))
    }

    /// Field paths with typed metadata columns (dotted for nested dicts), sorted.
    fn field_names(&self) -> PyResult<Vec<String>> {
        Ok(self
            .inner
            .field_names()
            .map_err(to_py)?
            .into_iter()
            .map(String::from)
            .collect())
    }

    /// Documents matching the filter ``spec`` (see ``densparse.collection.filters``), as a
    /// bool array [n_docs]. Bad specs raise TypeError / ValueError.
    fn filter<'py>(&self, py: Python<'py>, spec: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyArray1<bool>>> {
        let f = parse_filter(spec)?;
        let bits = py
            .guarded(|| f.eval(&self.inner).map(|b| b.to_bools()))?
            .map_err(to_py)?;
        Ok(bits.into_pyarray(py))
    }

    fn __repr__(&self) -> String {
        format!("RecordStore(n_docs={})", self.inner.n_docs())
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyRecordStoreWriter>()?;
    m.add_class::<PyRecordStore>()?;
    m.add_function(wrap_pyfunction!(validate_filter, m)?)?;
    m.add_function(wrap_pyfunction!(py_file_digest, m)?)?;
    Ok(())
}
