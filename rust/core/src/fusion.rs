//! Result-list fusion for hybrid search (docs/algorithms.md: "Fusion of result lists", BGE-M3).
//!
//! Input: for one query, one ranked list of `(doc id, score)` per retriever
//! ("route"). Within a list the rank is the order by score descending, ties
//! by lower id (lists are re-sorted here, whatever order they come in).
//! Entries with id `-1` or score `-inf` are padding and are dropped; a NaN or
//! `+inf` score and a duplicate id inside one list are errors.
//!
//! Methods:
//! - [`Method::Rrf`]: `sum_l w_l / (k + rank_l(d))`, rank from 1 (Cormack et
//!   al. 2009 use k = 60; Qdrant uses 2).
//! - [`Method::Weighted`]: `sum_l w_l * norm_l(s_l(d))` with a per-list
//!   normalisation: min-max (Weaviate relativeScoreFusion; a constant list maps
//!   to 1.0), distribution-based (Qdrant DBSF: mean ± 3 sample std mapped to
//!   [0, 1] and clipped; a one-element or constant list maps to 0.5), or none.
//! - [`Method::M3`]: the BGE-M3 weighted mean `sum_l w_l * s_l(d) / sum_l w_l`.
//!
//! A document missing from a list contributes 0 from it. Fused scores are
//! summed in f64 over the lists in their given order and returned as f32;
//! output order is fused score descending (compared in f64), ties by lower id.

use rayon::prelude::*;
use rustc_hash::FxHashMap;

use crate::error::{Error, Result};

/// Per-list score normalisation of [`Method::Weighted`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Normalization {
    /// `(s - min) / (max - min)`; every score of a constant list becomes 1.0.
    MinMax,
    /// `(s - (mean - 3 std)) / (6 std)` clipped to [0, 1], std the sample
    /// standard deviation (n - 1); one-element or constant lists give 0.5.
    Dbsf,
    /// Raw scores.
    None,
}

impl Normalization {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "minmax" => Ok(Normalization::MinMax),
            "dbsf" => Ok(Normalization::Dbsf),
            "none" => Ok(Normalization::None),
            _ => Err(Error::invalid(format!(
                "unknown normalization {s:?}: expected \"minmax\", \"dbsf\" or \"none\""
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Normalization::MinMax => "minmax",
            Normalization::Dbsf => "dbsf",
            Normalization::None => "none",
        }
    }
}

/// How the lists are combined.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Method {
    /// Reciprocal rank fusion with constant `k` (> 0).
    Rrf { k: f64 },
    /// Weighted sum of normalised scores.
    Weighted(Normalization),
    /// BGE-M3 weighted mean of raw scores.
    M3,
}

impl Method {
    /// `method` is "rrf", "weighted" or "m3"; `k` is used by rrf only and
    /// `normalization` by weighted only (both are still validated).
    pub fn parse(method: &str, k: f64, normalization: &str) -> Result<Self> {
        let norm = Normalization::parse(normalization)?;
        match method {
            "rrf" => {
                if !(k.is_finite() && k > 0.0) {
                    return Err(Error::invalid(format!("rrf needs k > 0 (finite), got {k}")));
                }
                Ok(Method::Rrf { k })
            }
            "weighted" => Ok(Method::Weighted(norm)),
            "m3" => Ok(Method::M3),
            _ => Err(Error::invalid(format!(
                "unknown fusion method {method:?}: expected \"rrf\", \"weighted\" or \"m3\""
            ))),
        }
    }
}

/// Everything that decides a fusion, independent of the lists.
#[derive(Clone, Debug, PartialEq)]
pub struct FusionParams {
    pub method: Method,
    /// One weight per list; `None` means 1 each, except m3 with exactly three
    /// lists: [0.4, 0.2, 0.4] (dense, sparse, ColBERT as in the BGE-M3 README).
    pub weights: Option<Vec<f64>>,
    /// Keep the best `top_k` documents; `None` keeps all.
    pub top_k: Option<usize>,
}

impl FusionParams {
    pub fn new(method: Method) -> Self {
        FusionParams {
            method,
            weights: None,
            top_k: None,
        }
    }

    /// The weights for `n_lists` lists, validated.
    pub fn resolve_weights(&self, n_lists: usize) -> Result<Vec<f64>> {
        if n_lists == 0 {
            return Err(Error::invalid("nothing to fuse: give at least one result list"));
        }
        let w = match &self.weights {
            Some(w) => {
                if w.len() != n_lists {
                    return Err(Error::invalid(format!(
                        "{} weights for {n_lists} result lists: give one weight per list",
                        w.len()
                    )));
                }
                if let Some((i, x)) = w.iter().enumerate().find(|(_, x)| !(x.is_finite() && **x >= 0.0)) {
                    return Err(Error::invalid(format!(
                        "weights[{i}] = {x}: weights must be finite and >= 0"
                    )));
                }
                w.clone()
            }
            None if self.method == Method::M3 && n_lists == 3 => vec![0.4, 0.2, 0.4],
            None => vec![1.0; n_lists],
        };
        if self.method == Method::M3 && w.iter().sum::<f64>() <= 0.0 {
            return Err(Error::invalid("m3 divides by the sum of the weights, which is 0"));
        }
        Ok(w)
    }
}

/// One query's result list from one route: parallel slices.
#[derive(Clone, Copy, Debug)]
pub struct Route<'a> {
    pub ids: &'a [i64],
    pub scores: &'a [f32],
}

/// The fused list of one query.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fused {
    pub ids: Vec<i64>,
    pub scores: Vec<f32>,
    /// Row-major `[ids.len(), n_routes]`: each route's original score of the
    /// document, NaN where the document was not in that route's list.
    pub route_scores: Vec<f32>,
    pub n_routes: usize,
}

/// Padding entries our indexes emit when fewer than k hits exist.
#[inline]
fn is_padding(id: i64, score: f32) -> bool {
    id == -1 || score == f32::NEG_INFINITY
}

/// Fuse one query's lists.
pub fn fuse(routes: &[Route<'_>], params: &FusionParams) -> Result<Fused> {
    let weights = params.resolve_weights(routes.len())?;
    fuse_with(routes, params, &weights)
}

/// The most cells (`kept documents x lists`) a fused result's `route_scores` may hold: its
/// size is the caller's choice (top_k, the number of lists), so it is bounded, not grown.
pub const MAX_ROUTE_SCORE_CELLS: usize = 1 << 28;

fn fuse_with(routes: &[Route<'_>], params: &FusionParams, weights: &[f64]) -> Result<Fused> {
    let n_routes = routes.len();
    let cap: usize = routes.iter().map(|r| r.ids.len()).sum();
    // Memory is linear in the total number of hits: each candidate keeps its fused score,
    // and each hit one (candidate, list, score) entry; the per-list score table is built
    // only for the documents kept.
    let mut slot_of: FxHashMap<i64, u32> = FxHashMap::with_capacity_and_hasher(cap, Default::default());
    let mut ids: Vec<i64> = Vec::with_capacity(cap);
    let mut fused: Vec<f64> = Vec::with_capacity(cap);
    let mut last_list: Vec<u32> = Vec::with_capacity(cap);
    let mut entries: Vec<(u32, u32, f32)> = Vec::with_capacity(cap);
    let mut list: Vec<(i64, f32)> = Vec::new();

    for (l, r) in routes.iter().enumerate() {
        if r.ids.len() != r.scores.len() {
            return Err(Error::invalid(format!(
                "result list {l}: {} ids but {} scores",
                r.ids.len(),
                r.scores.len()
            )));
        }
        list.clear();
        for (&id, &s) in r.ids.iter().zip(r.scores) {
            if s.is_nan() {
                return Err(Error::invalid(format!("result list {l}: score of id {id} is NaN")));
            }
            if s == f32::INFINITY {
                return Err(Error::invalid(format!(
                    "result list {l}: score of id {id} is +inf (only -inf, as padding, is allowed)"
                )));
            }
            if !is_padding(id, s) {
                list.push((id, s));
            }
        }
        // Rank order: score descending, then id ascending.
        list.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let w = weights[l];
        let contrib = contributions(params.method, &list, w);
        for (rank0, &(id, s)) in list.iter().enumerate() {
            let slot = *slot_of.entry(id).or_insert_with(|| {
                ids.push(id);
                fused.push(0.0);
                last_list.push(u32::MAX);
                (ids.len() - 1) as u32
            }) as usize;
            if last_list[slot] == l as u32 {
                return Err(Error::invalid(format!(
                    "result list {l}: id {id} occurs more than once"
                )));
            }
            last_list[slot] = l as u32;
            entries.push((slot as u32, l as u32, s));
            fused[slot] += contrib(rank0, s);
        }
    }
    if params.method == Method::M3 {
        let total: f64 = weights.iter().sum();
        fused.iter_mut().for_each(|f| *f /= total);
    }

    // Order: fused descending (f64), then id ascending; keep top_k.
    let mut order: Vec<u32> = (0..ids.len() as u32).collect();
    let cmp = |a: &u32, b: &u32| {
        let (a, b) = (*a as usize, *b as usize);
        fused[b].total_cmp(&fused[a]).then(ids[a].cmp(&ids[b]))
    };
    let keep = params.top_k.map_or(order.len(), |k| k.min(order.len()));
    if keep.saturating_mul(n_routes) > MAX_ROUTE_SCORE_CELLS {
        return Err(Error::invalid(format!(
            "the fused result would keep {keep} documents x {n_routes} result lists of per-list \
             scores, more than {MAX_ROUTE_SCORE_CELLS}: set top_k or fuse fewer lists"
        )));
    }
    if keep < order.len() {
        if keep > 0 {
            order.select_nth_unstable_by(keep - 1, cmp);
        }
        order.truncate(keep);
    }
    order.sort_unstable_by(cmp);

    // Row of each kept candidate in the output; u32::MAX for the others.
    let mut row_of = vec![u32::MAX; ids.len()];
    for (row, &o) in order.iter().enumerate() {
        row_of[o as usize] = row as u32;
    }
    let mut out = Fused {
        ids: Vec::with_capacity(keep),
        scores: Vec::with_capacity(keep),
        route_scores: vec![f32::NAN; keep * n_routes],
        n_routes,
    };
    for &(slot, l, s) in &entries {
        let row = row_of[slot as usize];
        if row != u32::MAX {
            out.route_scores[row as usize * n_routes + l as usize] = s;
        }
    }
    for &o in &order {
        out.ids.push(ids[o as usize]);
        out.scores.push(fused[o as usize] as f32);
    }
    Ok(out)
}

/// The per-entry contribution of one sorted list: `f(rank0, score)`.
fn contributions(method: Method, list: &[(i64, f32)], w: f64) -> Box<dyn Fn(usize, f32) -> f64> {
    match method {
        Method::Rrf { k } => Box::new(move |rank0, _| w / (k + (rank0 + 1) as f64)),
        Method::M3 | Method::Weighted(Normalization::None) => Box::new(move |_, s| w * s as f64),
        Method::Weighted(Normalization::MinMax) => {
            // Sorted descending: first is the max, last the min.
            let (max, min) = match (list.first(), list.last()) {
                (Some(a), Some(b)) => (a.1 as f64, b.1 as f64),
                _ => return Box::new(|_, _| 0.0),
            };
            if max == min {
                Box::new(move |_, _| w)
            } else {
                Box::new(move |_, s| w * ((s as f64 - min) / (max - min)))
            }
        }
        Method::Weighted(Normalization::Dbsf) => {
            let n = list.len();
            if n == 0 {
                return Box::new(|_, _| 0.0);
            }
            let mean = list.iter().map(|e| e.1 as f64).sum::<f64>() / n as f64;
            let var = if n > 1 {
                list.iter()
                    .map(|e| (e.1 as f64 - mean) * (e.1 as f64 - mean))
                    .sum::<f64>()
                    / (n - 1) as f64
            } else {
                0.0
            };
            let std = var.sqrt();
            if std == 0.0 {
                return Box::new(move |_, _| w * 0.5);
            }
            let lo = mean - 3.0 * std;
            let hi = mean + 3.0 * std;
            Box::new(move |_, s| w * ((s as f64 - lo) / (hi - lo)).clamp(0.0, 1.0))
        }
    }
}

/// Many queries' lists from one route: row-major `[n_queries, width]` ids and
/// scores (the width may differ between routes).
#[derive(Clone, Copy, Debug)]
pub struct BatchRoute<'a> {
    pub ids: &'a [i64],
    pub scores: &'a [f32],
    pub n_queries: usize,
    pub width: usize,
}

/// Fuse query by query, in parallel (rayon); result `q` fuses row `q` of every route.
pub fn fuse_batch(routes: &[BatchRoute<'_>], params: &FusionParams) -> Result<Vec<Fused>> {
    let weights = params.resolve_weights(routes.len())?;
    let nq = routes[0].n_queries;
    for (l, r) in routes.iter().enumerate() {
        if r.n_queries != nq {
            return Err(Error::invalid(format!(
                "result list {l} has {} queries but result list 0 has {nq}: every route needs one row per query",
                r.n_queries
            )));
        }
        let need = r.n_queries.checked_mul(r.width);
        if need != Some(r.ids.len()) || need != Some(r.scores.len()) {
            return Err(Error::invalid(format!(
                "result list {l}: ids ({}) and scores ({}) must both hold {} x {} values",
                r.ids.len(),
                r.scores.len(),
                r.n_queries,
                r.width
            )));
        }
    }
    (0..nq)
        .into_par_iter()
        .map_init(
            || Vec::with_capacity(routes.len()),
            |rows: &mut Vec<Route<'_>>, q| {
                rows.clear();
                rows.extend(routes.iter().map(|r| Route {
                    ids: &r.ids[q * r.width..(q + 1) * r.width],
                    scores: &r.scores[q * r.width..(q + 1) * r.width],
                }));
                fuse_with(rows, params, &weights).map_err(|e| match e {
                    Error::Invalid(m) => Error::invalid(format!("query {q}: {m}")),
                    e => e,
                })
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r<'a>(ids: &'a [i64], scores: &'a [f32]) -> Route<'a> {
        Route { ids, scores }
    }

    fn params(method: Method) -> FusionParams {
        FusionParams::new(method)
    }

    #[test]
    fn rrf_basic_and_tie_rule() {
        // list 0 ranks 10, 20, 30; list 1 ranks 30, 20 (given unsorted).
        let a = r(&[20, 10, 30], &[0.5, 0.9, 0.1]);
        let b = r(&[20, 30], &[1.0, 2.0]);
        let f = fuse(&[a, b], &params(Method::Rrf { k: 60.0 })).unwrap();
        let s = |r0: f64, r1: f64| 1.0 / (60.0 + r0) + 1.0 / (60.0 + r1);
        // 20: ranks 2, 2; 30: ranks 3, 1; 10: rank 1 only.
        assert_eq!(f.ids, vec![30, 20, 10]);
        assert_eq!(
            f.scores,
            vec![s(3.0, 1.0) as f32, s(2.0, 2.0) as f32, (1.0 / 61.0) as f32]
        );
        assert_eq!(f.n_routes, 2);
        assert_eq!(f.route_scores[0..4], [0.1, 2.0, 0.5, 1.0]);
        assert_eq!(f.route_scores[4], 0.9);
        assert!(f.route_scores[5].is_nan());
        // Equal scores inside a list: lower id ranks first; equal fused: lower id first.
        let f = fuse(&[r(&[7, 3], &[1.0, 1.0])], &params(Method::Rrf { k: 1.0 })).unwrap();
        assert_eq!(f.ids, vec![3, 7]);
        assert_eq!(f.scores, vec![0.5, 1.0 / 3.0]);
        let f = fuse(&[r(&[7], &[1.0]), r(&[3], &[1.0])], &params(Method::Rrf { k: 60.0 })).unwrap();
        assert_eq!(f.ids, vec![3, 7]);
    }

    #[test]
    fn minmax_dbsf_none_m3() {
        let a = r(&[1, 2, 3], &[1.0, 3.0, 2.0]);
        let b = r(&[2, 4], &[5.0, 5.0]);
        let f = fuse(&[a, b], &params(Method::Weighted(Normalization::MinMax))).unwrap();
        // a: 1 -> 0, 2 -> 1, 3 -> 0.5; b constant -> 1 each.
        assert_eq!(f.ids, vec![2, 4, 3, 1]);
        assert_eq!(f.scores, vec![2.0, 1.0, 0.5, 0.0]);

        let f = fuse(&[a, b], &params(Method::Weighted(Normalization::Dbsf))).unwrap();
        // a: mean 2, sample std 1 -> (s - (-1)) / 6; b: std 0 -> 0.5.
        let g = |s: f64| ((s + 1.0) / 6.0) as f32;
        assert_eq!(f.ids, vec![2, 3, 4, 1]);
        assert_eq!(f.scores, vec![(4.0 / 6.0 + 0.5) as f32, g(2.0), 0.5, g(1.0)]);

        let f = fuse(&[a, b], &params(Method::Weighted(Normalization::None))).unwrap();
        assert_eq!(f.ids, vec![2, 4, 3, 1]);
        assert_eq!(f.scores, vec![8.0, 5.0, 2.0, 1.0]);

        let c = r(&[3], &[4.0]);
        let f = fuse(&[a, b, c], &params(Method::M3)).unwrap();
        // weights 0.4, 0.2, 0.4
        assert_eq!(f.ids, vec![3, 2, 4, 1]);
        let want = [0.4 * 2.0 + 0.4 * 4.0, 0.4 * 3.0 + 0.2 * 5.0, 0.2 * 5.0, 0.4];
        for (x, y) in f.scores.iter().zip(want) {
            assert_eq!(*x, y as f32);
        }
        let mut p = params(Method::M3);
        p.weights = Some(vec![1.0, 3.0]);
        let f = fuse(&[a, b], &p).unwrap();
        assert_eq!(f.ids, vec![2, 4, 3, 1]);
        assert_eq!(f.scores[0], ((3.0 + 15.0) / 4.0) as f32);
    }

    #[test]
    fn dbsf_clips_and_single() {
        let ids: Vec<i64> = (0..20).collect();
        let mut scores = vec![0.0f32; 20];
        scores[0] = 100.0;
        let f = fuse(&[r(&ids, &scores)], &params(Method::Weighted(Normalization::Dbsf))).unwrap();
        assert!(f.scores.iter().all(|s| (0.0..=1.0).contains(s)));
        assert_eq!(f.scores[0], 1.0);
        let f = fuse(&[r(&[5], &[3.0])], &params(Method::Weighted(Normalization::Dbsf))).unwrap();
        assert_eq!(f.scores, vec![0.5]);
        let f = fuse(&[r(&[5], &[3.0])], &params(Method::Weighted(Normalization::MinMax))).unwrap();
        assert_eq!(f.scores, vec![1.0]);
    }

    #[test]
    fn padding_empty_top_k() {
        let a = r(&[4, -1, 9, 2], &[1.0, 0.0, f32::NEG_INFINITY, 0.5]);
        let f = fuse(&[a, r(&[], &[])], &params(Method::Rrf { k: 60.0 })).unwrap();
        assert_eq!(f.ids, vec![4, 2]);
        let mut p = params(Method::Rrf { k: 60.0 });
        p.top_k = Some(1);
        assert_eq!(fuse(&[a], &p).unwrap().ids, vec![4]);
        p.top_k = Some(0);
        assert!(fuse(&[a], &p).unwrap().ids.is_empty());
        p.top_k = Some(99);
        assert_eq!(fuse(&[a], &p).unwrap().ids.len(), 2);
        let f = fuse(&[r(&[], &[])], &params(Method::M3)).unwrap();
        assert!(f.ids.is_empty() && f.route_scores.is_empty());
        // Any int64 id except -1 is a document.
        let f = fuse(
            &[r(&[i64::MIN, i64::MAX, -2], &[1.0, 1.0, 1.0])],
            &params(Method::Rrf { k: 60.0 }),
        )
        .unwrap();
        assert_eq!(f.ids, vec![i64::MIN, -2, i64::MAX]);
    }

    #[test]
    fn top_k_matches_full_sort() {
        let mut x = 12345u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..50 {
            let n = (next() % 40) as usize;
            let ids: Vec<i64> = (0..n as i64).map(|i| i * 3).collect();
            let scores: Vec<f32> = (0..n).map(|_| (next() % 5) as f32).collect();
            let ids2: Vec<i64> = (0..n as i64).map(|i| i * 2).collect();
            let routes = [r(&ids, &scores), r(&ids2, &scores)];
            let p = params(Method::Weighted(Normalization::MinMax));
            let full = fuse(&routes, &p).unwrap();
            for k in 0..n + 2 {
                let mut pk = p.clone();
                pk.top_k = Some(k);
                let part = fuse(&routes, &pk).unwrap();
                let m = k.min(full.ids.len());
                assert_eq!(part.ids, full.ids[..m]);
                assert_eq!(part.scores, full.scores[..m]);
            }
        }
    }

    #[test]
    fn errors() {
        let p = params(Method::Rrf { k: 60.0 });
        let msg = |e: Error| e.to_string();
        assert!(msg(fuse(&[r(&[1, 1], &[1.0, 2.0])], &p).unwrap_err()).contains("more than once"));
        assert!(msg(fuse(&[r(&[1, 2], &[1.0, f32::NAN])], &p).unwrap_err()).contains("NaN"));
        assert!(msg(fuse(&[r(&[1, 2], &[1.0, f32::INFINITY])], &p).unwrap_err()).contains("+inf"));
        assert!(msg(fuse(&[r(&[1, 2], &[1.0])], &p).unwrap_err()).contains("2 ids but 1 scores"));
        assert!(fuse(&[], &p).is_err());
        let mut pw = p.clone();
        pw.weights = Some(vec![1.0]);
        assert!(msg(fuse(&[r(&[1], &[1.0]), r(&[1], &[1.0])], &pw).unwrap_err()).contains("1 weights for 2"));
        pw.weights = Some(vec![-1.0]);
        assert!(fuse(&[r(&[1], &[1.0])], &pw).is_err());
        pw.weights = Some(vec![f64::NAN]);
        assert!(fuse(&[r(&[1], &[1.0])], &pw).is_err());
        let mut pm = params(Method::M3);
        pm.weights = Some(vec![0.0]);
        assert!(fuse(&[r(&[1], &[1.0])], &pm).is_err());
        assert!(Method::parse("rrf", 0.0, "minmax").is_err());
        assert!(Method::parse("rrf", -1.0, "minmax").is_err());
        assert!(Method::parse("rrf", f64::NAN, "minmax").is_err());
        assert!(Method::parse("sum", 60.0, "minmax").is_err());
        assert!(Method::parse("weighted", 60.0, "l2").is_err());
        assert_eq!(
            Method::parse("weighted", 60.0, "dbsf").unwrap(),
            Method::Weighted(Normalization::Dbsf)
        );
        // Padding may repeat; -1 ids are not duplicates.
        assert!(fuse(&[r(&[-1, -1, 3], &[0.0, 0.0, 1.0])], &p).is_ok());
    }

    #[test]
    fn batch_equals_single() {
        let ids_a: Vec<i64> = vec![1, 2, 3, 4, 5, 6];
        let sc_a: Vec<f32> = vec![0.9, 0.8, 0.7, 0.1, 0.2, f32::NEG_INFINITY];
        let ids_b: Vec<i64> = vec![3, 9, 6, 4];
        let sc_b: Vec<f32> = vec![2.0, 1.0, 5.0, 5.0];
        let a = BatchRoute {
            ids: &ids_a,
            scores: &sc_a,
            n_queries: 2,
            width: 3,
        };
        let b = BatchRoute {
            ids: &ids_b,
            scores: &sc_b,
            n_queries: 2,
            width: 2,
        };
        for m in [
            Method::Rrf { k: 2.0 },
            Method::Weighted(Normalization::Dbsf),
            Method::M3,
        ] {
            let p = params(m);
            let batch = fuse_batch(&[a, b], &p).unwrap();
            for q in 0..2 {
                let one = fuse(
                    &[
                        r(&ids_a[q * 3..q * 3 + 3], &sc_a[q * 3..q * 3 + 3]),
                        r(&ids_b[q * 2..q * 2 + 2], &sc_b[q * 2..q * 2 + 2]),
                    ],
                    &p,
                )
                .unwrap();
                assert_eq!(batch[q].ids, one.ids);
                assert_eq!(batch[q].scores, one.scores);
            }
        }
        let c = BatchRoute {
            ids: &ids_b,
            scores: &sc_b,
            n_queries: 1,
            width: 4,
        };
        let e = fuse_batch(&[a, c], &params(Method::M3)).unwrap_err().to_string();
        assert!(e.contains("1 queries"), "{e}");
        let d = BatchRoute {
            ids: &ids_b,
            scores: &sc_b,
            n_queries: 2,
            width: 3,
        };
        assert!(fuse_batch(&[a, d], &params(Method::M3)).is_err());
        let dup: Vec<i64> = vec![1, 2, 3, 4, 4, 6];
        let e = BatchRoute {
            ids: &dup,
            scores: &sc_a,
            n_queries: 2,
            width: 3,
        };
        let msg = fuse_batch(&[e], &params(Method::M3)).unwrap_err().to_string();
        assert!(msg.starts_with("query 1: "), "{msg}");
    }

    #[test]
    fn many_lists_fuse_in_memory_linear_in_hits() {
        // 65,536 lists of 10 hits each (ids overlapping): RRF by brute force agrees.
        let n_lists = 65_536usize;
        let lists: Vec<(Vec<i64>, Vec<f32>)> = (0..n_lists)
            .map(|l| {
                let ids: Vec<i64> = (0..10).map(|j| ((l * 7 + j * 13) % 5000) as i64).collect();
                let scores: Vec<f32> = (0..10).map(|j| 10.0 - j as f32).collect();
                (ids, scores)
            })
            .collect();
        let routes: Vec<Route> = lists.iter().map(|(i, s)| Route { ids: i, scores: s }).collect();
        let mut params = FusionParams::new(Method::Rrf { k: 60.0 });
        params.top_k = Some(10);
        let got = fuse(&routes, &params).unwrap();
        let mut want: std::collections::HashMap<i64, f64> = Default::default();
        for (ids, _) in &lists {
            for (rank0, id) in ids.iter().enumerate() {
                *want.entry(*id).or_default() += 1.0 / (60.0 + (rank0 + 1) as f64);
            }
        }
        let mut want: Vec<(i64, f64)> = want.into_iter().collect();
        want.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        assert_eq!(got.ids, want[..10].iter().map(|x| x.0).collect::<Vec<_>>());
        assert_eq!(got.route_scores.len(), 10 * n_lists);
        // each kept document's per-list scores are where its hits were
        let row0: Vec<f32> = got.route_scores[..n_lists].to_vec();
        let hits0 = lists.iter().filter(|(i, _)| i.contains(&got.ids[0])).count();
        assert_eq!(row0.iter().filter(|x| !x.is_nan()).count(), hits0);
        // keeping everything would need a table of 5000 x 65,536 scores: refused, not grown
        params.top_k = None;
        let err = fuse(&routes, &params).unwrap_err().to_string();
        assert!(err.contains("top_k"), "{err}");
    }
}
