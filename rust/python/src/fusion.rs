//! Bindings of densparse_core::fusion: conversion, GIL release, errors.

use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;

use densparse_core::fusion::{self, BatchRoute, Fused, FusionParams, Method, Route};

use crate::guard::Guarded;
use crate::to_py;

type FusedPy<'py> = (
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray1<f32>>,
    Bound<'py, PyArray2<f32>>,
);

pub(crate) fn params(
    method: &str,
    k: f64,
    weights: Option<Vec<f64>>,
    normalization: &str,
    top_k: Option<usize>,
) -> PyResult<FusionParams> {
    let method = Method::parse(method, k, normalization).map_err(to_py)?;
    Ok(FusionParams { method, weights, top_k })
}

fn to_numpy(py: Python<'_>, f: Fused) -> FusedPy<'_> {
    let n = f.ids.len();
    let rs = Array2::from_shape_vec((n, f.n_routes), f.route_scores).expect("route_scores shape");
    (
        PyArray1::from_vec(py, f.ids),
        PyArray1::from_vec(py, f.scores),
        rs.into_pyarray(py),
    )
}

/// Fuse one query's result lists: routes = [(ids int64 [n], scores float32 [n])].
/// Returns (ids, fused scores, route_scores [n_out, n_routes]).
#[pyfunction]
#[pyo3(signature = (routes, method="rrf", k=60.0, weights=None, normalization="minmax", top_k=None))]
fn fuse<'py>(
    py: Python<'py>,
    routes: Vec<(PyReadonlyArray1<'py, i64>, PyReadonlyArray1<'py, f32>)>,
    method: &str,
    k: f64,
    weights: Option<Vec<f64>>,
    normalization: &str,
    top_k: Option<usize>,
) -> PyResult<FusedPy<'py>> {
    let p = params(method, k, weights, normalization, top_k)?;
    let rs: Vec<Route<'_>> = routes
        .iter()
        .map(|(i, s)| {
            Ok(Route {
                ids: i.as_slice()?,
                scores: s.as_slice()?,
            })
        })
        .collect::<PyResult<_>>()?;
    let f = py.guarded(|| fusion::fuse(&rs, &p))?.map_err(to_py)?;
    Ok(to_numpy(py, f))
}

/// Fuse many queries row by row (rayon): routes = [(ids int64 [Q, k_r], scores float32 [Q, k_r])].
/// Returns one (ids, scores, route_scores) tuple per query.
#[pyfunction]
#[pyo3(signature = (routes, method="rrf", k=60.0, weights=None, normalization="minmax", top_k=None))]
fn fuse_batch<'py>(
    py: Python<'py>,
    routes: Vec<(PyReadonlyArray2<'py, i64>, PyReadonlyArray2<'py, f32>)>,
    method: &str,
    k: f64,
    weights: Option<Vec<f64>>,
    normalization: &str,
    top_k: Option<usize>,
) -> PyResult<Vec<FusedPy<'py>>> {
    let p = params(method, k, weights, normalization, top_k)?;
    let mut rs = Vec::with_capacity(routes.len());
    for (l, (i, s)) in routes.iter().enumerate() {
        if i.shape() != s.shape() {
            return Err(to_py(densparse_core::Error::invalid(format!(
                "result list {l}: ids shape {:?} differs from scores shape {:?}",
                i.shape(),
                s.shape()
            ))));
        }
        let (n_queries, width) = (i.shape()[0], i.shape()[1]);
        rs.push(BatchRoute {
            ids: i.as_slice()?,
            scores: s.as_slice()?,
            n_queries,
            width,
        });
    }
    let out = py.guarded(|| fusion::fuse_batch(&rs, &p))?.map_err(to_py)?;
    Ok(out.into_iter().map(|f| to_numpy(py, f)).collect())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(fuse, m)?)?;
    m.add_function(wrap_pyfunction!(fuse_batch, m)?)?;
    Ok(())
}
