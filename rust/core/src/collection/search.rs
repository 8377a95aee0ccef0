//! One-call search over a snapshot of segments.
//!
//! A [`Snapshot`] is the list of [`SegmentReader`]s one version of a collection consists of.
//! [`Snapshot::search`] runs every requested route (BM25, dense, learned sparse) over all
//! segments in parallel, each returning the exact top documents of the whole snapshot for
//! that route, then fuses the lists. BM25 scores every segment with statistics summed over
//! the **live** documents of the snapshot, so scores equal one index built over exactly
//! those documents (Lucene and tantivy count deleted documents until a merge).
//!
//! Documents are numbered across the snapshot (`docno` = segment base + position). A
//! document may hold several rows (its text and its views): a route scores rows and a
//! document takes the best of its rows.

use std::sync::{Arc, OnceLock, RwLock};

use rayon::prelude::*;

use super::{Filter, RecordStore};
use crate::analysis::Analyzer;
use crate::bm25::{Bm25Index, GlobalStats, SearchOpts};
use crate::dense::DenseIndex;
use crate::error::{Error, Result};
use crate::fusion::{self, FusionParams, Route};
use crate::hash::StrMap;
use crate::mask::DocMask;
use crate::sparse::{SearchOptions, SparseIndex, SparseVec};

/// BM25 variants whose documents without a query term score exactly 0 (BM25L and BM25+
/// give every document a positive constant for the terms it lacks).
fn zero_for_no_match(m: crate::bm25::Method) -> bool {
    use crate::bm25::Method::*;
    matches!(m, Lucene | Robertson | Atire)
}

/// What the deleted documents of a segment contribute to its BM25 statistics.
#[derive(Clone, Debug, Default)]
pub struct DeletedRows {
    pub rows: u64,
    pub tokens: u64,
    pub df: StrMap<String, u64>,
}

/// Collection-wide BM25 statistics over live rows: (rows, total tokens, df per token).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CorpusStats {
    pub n_rows: u64,
    pub total_tokens: u64,
    pub df: Vec<(String, u64)>,
}

impl CorpusStats {
    fn to_global(&self) -> Result<GlobalStats> {
        if self.n_rows == 0 {
            return Err(Error::invalid("BM25 statistics: the number of documents must be >= 1"));
        }
        let g = GlobalStats {
            n_docs: self.n_rows,
            avgdl: self.total_tokens as f64 / self.n_rows as f64,
            df: self.df.iter().cloned().collect(),
        };
        g.validate()?;
        Ok(g)
    }
}

/// One segment as a snapshot sees it: its indexes, records and which documents are live.
/// Immutable; a delete makes a new reader (with a new live set).
pub struct SegmentReader {
    pub records: Arc<RecordStore>,
    pub bm25: Arc<Bm25Index>,
    pub dense: Option<Arc<RwLock<DenseIndex>>>,
    pub sparse: Option<Arc<RwLock<SparseIndex>>>,
    /// One byte per document, non-zero when live; `None` when all are.
    live: Option<Vec<u8>>,
    n_live: usize,
    /// Document of each row, built on first use; `None` inside when rows are documents.
    row_doc: OnceLock<Option<Vec<u32>>>,
    /// Statistics of the deleted rows, computed on first BM25 use.
    deleted: OnceLock<DeletedRows>,
}

impl SegmentReader {
    /// A reader over checked parts: the BM25 index must have one row per text and view,
    /// `live` (if given) one entry per document.
    pub fn new(
        records: Arc<RecordStore>,
        bm25: Arc<Bm25Index>,
        dense: Option<Arc<RwLock<DenseIndex>>>,
        sparse: Option<Arc<RwLock<SparseIndex>>>,
        live: Option<Vec<u8>>,
    ) -> Result<Self> {
        let n_docs = records.n_docs();
        let n_rows = n_docs + records.n_views_total();
        if bm25.n_docs() != n_rows {
            return Err(Error::corrupt(
                records.path(),
                format!("BM25 index has {} rows, the records {n_rows}", bm25.n_docs()),
            ));
        }
        if u32::try_from(n_rows).is_err() {
            return Err(Error::invalid("a segment holds at most 2**32 - 1 rows"));
        }
        let (live, n_live) = match live {
            Some(l) if l.len() != n_docs => {
                return Err(Error::invalid(format!(
                    "live mask has {} entries for {n_docs} documents",
                    l.len()
                )))
            }
            Some(l) => {
                let n = l.iter().filter(|&&b| b != 0).count();
                if n == n_docs {
                    (None, n)
                } else {
                    (Some(l), n)
                }
            }
            None => (None, n_docs),
        };
        Ok(SegmentReader {
            records,
            bm25,
            dense,
            sparse,
            live,
            n_live,
            row_doc: OnceLock::new(),
            deleted: OnceLock::new(),
        })
    }

    pub fn n_docs(&self) -> usize {
        self.records.n_docs()
    }

    pub fn n_rows(&self) -> usize {
        self.bm25.n_docs()
    }

    pub fn n_live(&self) -> usize {
        self.n_live
    }

    pub fn is_live(&self, doc: usize) -> bool {
        doc < self.n_docs() && self.live.as_ref().is_none_or(|l| l[doc] != 0)
    }

    /// Document of each row (`None` when every document is a single row).
    fn row_doc(&self) -> Result<Option<&[u32]>> {
        if self.n_rows() == self.n_docs() {
            return Ok(None);
        }
        if let Some(r) = self.row_doc.get() {
            return Ok(r.as_deref());
        }
        let mut out = Vec::with_capacity(self.n_rows());
        for d in 0..self.n_docs() {
            let n = 1 + self.records.n_views(d)?;
            out.extend(std::iter::repeat_n(d as u32, n));
        }
        if out.len() != self.n_rows() {
            return Err(Error::corrupt(
                self.records.path(),
                "view counts disagree with the row count",
            ));
        }
        Ok(self.row_doc.get_or_init(|| Some(out)).as_deref())
    }

    /// Statistics of the deleted documents' rows, by analysing their texts again (exact;
    /// costs time in the number deleted, once per reader).
    pub fn deleted_rows(&self, analyzer: &Analyzer) -> Result<&DeletedRows> {
        if let Some(d) = self.deleted.get() {
            return Ok(d);
        }
        let mut texts: Vec<&str> = Vec::new();
        if let Some(live) = &self.live {
            for (d, _) in live.iter().enumerate().filter(|(_, &l)| l == 0) {
                texts.push(self.records.text(d)?);
                texts.extend(self.records.views(d)?);
            }
        }
        let mut got = DeletedRows {
            rows: texts.len() as u64,
            ..Default::default()
        };
        for toks in analyzer.tokenize_batch(&texts) {
            got.tokens += toks.len() as u64;
            let mut seen: Vec<String> = toks;
            seen.sort_unstable();
            seen.dedup();
            for t in seen {
                *got.df.entry(t).or_insert(0) += 1;
            }
        }
        Ok(self.deleted.get_or_init(|| got))
    }

    /// Eligible documents (live and matching the filter), `None` when all are.
    fn doc_mask(&self, filter: Option<&Filter>) -> Result<Option<Vec<u8>>> {
        let Some(f) = filter else {
            return Ok(self.live.clone());
        };
        let bits = f.eval(&self.records)?;
        let mut m: Vec<u8> = (0..self.n_docs()).map(|d| bits.get(d) as u8).collect();
        if let Some(live) = &self.live {
            for (a, &l) in m.iter_mut().zip(live) {
                *a &= (l != 0) as u8;
            }
        }
        Ok(Some(m))
    }

    /// The doc mask widened to rows.
    fn row_mask(&self, doc_mask: &Option<Vec<u8>>) -> Result<Option<Vec<u8>>> {
        Ok(match (doc_mask, self.row_doc()?) {
            (None, _) => None,
            (Some(m), None) => Some(m.clone()),
            (Some(m), Some(rd)) => Some(rd.iter().map(|&d| m[d as usize]).collect()),
        })
    }
}

/// The routes a query can take, in fusion order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteKind {
    Bm25,
    Dense,
    Sparse,
}

impl RouteKind {
    pub fn name(self) -> &'static str {
        match self {
            RouteKind::Bm25 => "bm25",
            RouteKind::Dense => "dense",
            RouteKind::Sparse => "sparse",
        }
    }
}

/// One query. Each given input is a route; `bm25_tokens` are the analysed query text.
#[derive(Clone, Debug, Default)]
pub struct SearchRequest {
    pub bm25_tokens: Option<Vec<String>>,
    pub dense: Option<Vec<f32>>,
    pub sparse: Option<SparseVec>,
    pub filter: Option<Filter>,
    /// Hits each route returns (the fusion's candidates).
    pub per_route: usize,
    /// BM25 statistics to score with instead of the snapshot's own (a sharded
    /// collection passes the sums over all its shards).
    pub bm25_stats: Option<CorpusStats>,
}

/// Ranked documents of one route: (docno, score), best first (score desc, docno asc).
pub type RouteHits = Vec<(u64, f32)>;

/// A fused hit: docno, fused score, and each route's score (NaN where absent).
#[derive(Clone, Debug, PartialEq)]
pub struct FusedHit {
    pub docno: u64,
    pub score: f32,
    pub route_scores: Vec<f32>,
}

/// One version of a collection: its segments in order.
pub struct Snapshot {
    segments: Vec<Arc<SegmentReader>>,
    /// Docno of each segment's first document.
    bases: Vec<u64>,
    analyzer: Arc<RwLock<Analyzer>>,
}

impl Snapshot {
    pub fn new(segments: Vec<Arc<SegmentReader>>, analyzer: Arc<RwLock<Analyzer>>) -> Self {
        let mut bases = Vec::with_capacity(segments.len());
        let mut b = 0u64;
        for s in &segments {
            bases.push(b);
            b += s.n_docs() as u64;
        }
        Snapshot {
            segments,
            bases,
            analyzer,
        }
    }

    pub fn segments(&self) -> &[Arc<SegmentReader>] {
        &self.segments
    }

    /// (segment index, document) of a docno.
    pub fn locate(&self, docno: u64) -> Option<(usize, usize)> {
        let i = self.bases.partition_point(|&b| b <= docno).checked_sub(1)?;
        let d = (docno - self.bases[i]) as usize;
        (d < self.segments[i].n_docs()).then_some((i, d))
    }

    /// The live document holding `id`: (segment index, document). Later segments win
    /// (an upsert adds the new version after deleting the old one).
    pub fn find(&self, id: &str) -> Result<Option<(usize, usize)>> {
        for (i, s) in self.segments.iter().enumerate().rev() {
            if let Some(d) = s.records.doc_of(id)? {
                if s.is_live(d) {
                    return Ok(Some((i, d)));
                }
            }
        }
        Ok(None)
    }

    /// [`Snapshot::find`] for many ids, in parallel.
    pub fn find_many(&self, ids: &[String]) -> Result<Vec<Option<(usize, usize)>>> {
        ids.par_iter().map(|id| self.find(id)).collect()
    }

    pub fn analyzer(&self) -> std::sync::RwLockReadGuard<'_, Analyzer> {
        self.analyzer.read().unwrap_or_else(|e| e.into_inner())
    }

    /// BM25 statistics over the live rows of the snapshot, for `tokens`.
    pub fn bm25_stats(&self, tokens: &[String]) -> Result<CorpusStats> {
        let mut distinct: Vec<&String> = tokens.iter().collect();
        distinct.sort_unstable();
        distinct.dedup();
        let mut out = CorpusStats {
            df: distinct.iter().map(|t| ((*t).clone(), 0)).collect(),
            ..Default::default()
        };
        let analyzer = self.analyzer();
        for s in &self.segments {
            out.n_rows += s.n_rows() as u64;
            out.total_tokens += s.bm25.total_tokens();
            let gone = if s.n_live < s.n_docs() {
                Some(s.deleted_rows(&analyzer)?)
            } else {
                None
            };
            if let Some(g) = gone {
                out.n_rows -= g.rows;
                out.total_tokens -= g.tokens;
            }
            for (t, df) in out.df.iter_mut() {
                *df += s.bm25.df(t) as u64 - gone.and_then(|g| g.df.get(t)).copied().unwrap_or(0);
            }
        }
        Ok(out)
    }

    /// The exact top `req.per_route` documents of each requested route, in the order
    /// bm25, dense, sparse.
    pub fn route_lists(&self, req: &SearchRequest) -> Result<Vec<(RouteKind, RouteHits)>> {
        let k = req.per_route.max(1);
        let masks: Vec<Option<Vec<u8>>> = self
            .segments
            .par_iter()
            .map(|s| s.doc_mask(req.filter.as_ref()))
            .collect::<Result<_>>()?;
        let mut out = Vec::new();
        if let Some(tokens) = &req.bm25_tokens {
            out.push((
                RouteKind::Bm25,
                self.bm25_route(tokens, &masks, k, req.bm25_stats.as_ref())?,
            ));
        }
        if let Some(q) = &req.dense {
            out.push((RouteKind::Dense, self.dense_route(q, &masks, k)?));
        }
        if let Some(q) = &req.sparse {
            out.push((RouteKind::Sparse, self.sparse_route(q, &masks, k)?));
        }
        Ok(out)
    }

    /// Route lists fused (one route: its own scores), best `top` first.
    pub fn search(&self, req: &SearchRequest, fusion: &FusionParams, top: usize) -> Result<Vec<FusedHit>> {
        let lists = self.route_lists(req)?;
        fuse_lists(&lists, fusion, top)
    }

    fn bm25_route(
        &self,
        tokens: &[String],
        masks: &[Option<Vec<u8>>],
        k: usize,
        given: Option<&CorpusStats>,
    ) -> Result<RouteHits> {
        if tokens.is_empty() || self.segments.is_empty() {
            return Ok(Vec::new());
        }
        let whole = self.segments.len() == 1 && self.segments[0].n_live == self.segments[0].n_docs();
        let stats = match given {
            Some(s) => Some(s.to_global()?),
            None if whole => None,
            None => Some(self.bm25_stats(tokens)?.to_global()?),
        };
        self.per_segment(
            masks,
            k,
            |s, mask, kr| {
                let q = s.bm25.query(tokens);
                let opts = SearchOpts {
                    mask: mask.map(DocMask::new),
                    stats: stats.as_ref(),
                };
                let hits = s.bm25.search_opts(&q, kr, &opts)?;
                Ok(hits.into_iter().map(|(d, sc)| (d as i64, sc)).collect())
            },
            |s| (true, s.n_rows(), zero_for_no_match(s.bm25.params().method)),
        )
    }

    fn dense_route(&self, q: &[f32], masks: &[Option<Vec<u8>>], k: usize) -> Result<RouteHits> {
        self.per_segment(
            masks,
            k,
            |s, mask, kr| {
                let Some(d) = &s.dense else { return Ok(Vec::new()) };
                let d = d.read().unwrap_or_else(|e| e.into_inner());
                let kr = kr.min(d.len());
                // All cores: one large segment is a long scan, and rayon nests it under the
                // parallel loop over segments.
                let mut r = d.search(q, kr, mask.map(DocMask::new), None)?;
                Ok(r.pop().unwrap_or_default())
            },
            |s| {
                let n = s
                    .dense
                    .as_ref()
                    .map_or(0, |d| d.read().unwrap_or_else(|e| e.into_inner()).len());
                (true, n, false)
            },
        )
    }

    fn sparse_route(&self, q: &SparseVec, masks: &[Option<Vec<u8>>], k: usize) -> Result<RouteHits> {
        self.per_segment(
            masks,
            k,
            |s, mask, kr| {
                let Some(sp) = &s.sparse else { return Ok(Vec::new()) };
                let sp = sp.read().unwrap_or_else(|e| e.into_inner());
                let opts = SearchOptions {
                    k: kr.min(sp.len()).max(1),
                    ..Default::default()
                };
                sp.search(q, &opts, mask.map(DocMask::new))
            },
            |s| {
                // Sparse ids are documents; documents sharing no term with the query score 0.
                let n = s
                    .sparse
                    .as_ref()
                    .map_or(0, |d| d.read().unwrap_or_else(|e| e.into_inner()).len());
                (false, n, true)
            },
        )
    }

    /// Run `search` on every segment (in parallel) and merge the per-segment top-k.
    /// `shape(s)` = (ids are rows, searchable rows, only positive scores are hits).
    fn per_segment(
        &self,
        masks: &[Option<Vec<u8>>],
        k: usize,
        search: impl Fn(&SegmentReader, Option<&[u8]>, usize) -> Result<Vec<(i64, f32)>> + Sync,
        shape: impl Fn(&SegmentReader) -> (bool, usize, bool) + Sync,
    ) -> Result<RouteHits> {
        let per: Vec<RouteHits> = self
            .segments
            .par_iter()
            .zip(masks.par_iter())
            .zip(self.bases.par_iter())
            .map(|((s, m), &base)| -> Result<RouteHits> {
                let (by_row, n, positive_only) = shape(s);
                if n == 0 || m.as_ref().is_some_and(|m| !m.iter().any(|&b| b != 0)) {
                    return Ok(Vec::new());
                }
                let (row_doc, mask) = if by_row {
                    (s.row_doc()?, s.row_mask(m)?)
                } else {
                    (None, m.clone())
                };
                let hits = first_per_doc(|kr| search(s, mask.as_deref(), kr), row_doc, k, n, positive_only)?;
                Ok(hits.into_iter().map(|(d, sc)| (base + d as u64, sc)).collect())
            })
            .collect::<Result<_>>()?;
        Ok(merge_ranked(per, k))
    }
}

/// The top `k` documents by the best of their rows: take ranked rows, keep each
/// document's first (best) row, and ask for more rows until k documents are found or
/// the ranking is exhausted. Exact, since a document's best row ranks first.
fn first_per_doc(
    search: impl Fn(usize) -> Result<Vec<(i64, f32)>>,
    row_doc: Option<&[u32]>,
    k: usize,
    n_rows: usize,
    positive_only: bool,
) -> Result<Vec<(u32, f32)>> {
    let mut kr = n_rows.min(if row_doc.is_none() { k } else { k.saturating_mul(2) });
    loop {
        let hits = search(kr)?;
        // Padding (-1 / -inf) and, for term routes, non-matching documents (score 0)
        // form the tail of the ranked list.
        let n_ok = hits
            .iter()
            .take_while(|&&(id, s)| if positive_only { s > 0.0 } else { id >= 0 })
            .count();
        let exhausted = n_ok < hits.len();
        let mut docs: Vec<(u32, f32)> = Vec::with_capacity(n_ok.min(k));
        match row_doc {
            None => docs.extend(hits[..n_ok].iter().map(|&(id, s)| (id as u32, s))),
            Some(rd) => {
                let mut seen = crate::hash::StrSet::<u32>::default();
                for &(id, s) in &hits[..n_ok] {
                    let d = *rd.get(id as usize).ok_or_else(|| {
                        Error::invalid(format!("an index returned row {id}, past its segment's rows"))
                    })?;
                    if seen.insert(d) {
                        docs.push((d, s));
                    }
                }
            }
        }
        if docs.len() >= k || exhausted || hits.len() < kr || kr >= n_rows {
            docs.truncate(k);
            return Ok(docs);
        }
        kr = n_rows.min(kr.saturating_mul(4));
    }
}

/// Global top-k of per-segment ranked lists: score desc, docno asc.
fn merge_ranked(per: Vec<RouteHits>, k: usize) -> RouteHits {
    let mut all: RouteHits = per.into_iter().flatten().collect();
    all.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    all.truncate(k);
    all
}

/// Fuse route lists into the best `top` hits; a single route keeps its own scores.
pub fn fuse_lists(lists: &[(RouteKind, RouteHits)], params: &FusionParams, top: usize) -> Result<Vec<FusedHit>> {
    if lists.len() == 1 {
        return Ok(lists[0]
            .1
            .iter()
            .take(top)
            .map(|&(d, s)| FusedHit {
                docno: d,
                score: s,
                route_scores: vec![s],
            })
            .collect());
    }
    let cols: Vec<(Vec<i64>, Vec<f32>)> = lists
        .iter()
        .map(|(_, h)| {
            (
                h.iter().map(|&(d, _)| d as i64).collect(),
                h.iter().map(|&(_, s)| s).collect(),
            )
        })
        .collect();
    let routes: Vec<Route<'_>> = cols.iter().map(|(i, s)| Route { ids: i, scores: s }).collect();
    let mut p = params.clone();
    p.top_k = Some(top);
    let f = fusion::fuse(&routes, &p)?;
    let n = f.n_routes;
    Ok(f.ids
        .iter()
        .zip(&f.scores)
        .enumerate()
        .map(|(i, (&d, &s))| FusedHit {
            docno: d as u64,
            score: s,
            route_scores: f.route_scores[i * n..(i + 1) * n].to_vec(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{CutMode, Language, StopWords};
    use crate::bm25::{Method, Params};
    use crate::collection::{Record, RecordStoreWriter};
    use crate::test_rng::Lcg;

    fn analyzer() -> Analyzer {
        let none: [&str; 0] = [];
        Analyzer::new(
            Language::En,
            CutMode::Precise,
            false,
            true,
            false,
            StopWords::from_words(none),
            None,
        )
    }

    fn bm25(texts: &[&str], a: &Analyzer, method: Method) -> Bm25Index {
        let params = Params {
            method,
            ..Params::default()
        };
        Bm25Index::build(
            params,
            texts.len(),
            |i, emit| a.tokenize(texts[i]).iter().for_each(|t| emit(t)),
            &|_| {},
        )
        .unwrap()
    }

    fn segment(ids: &[String], texts: &[&str], a: &Analyzer, method: Method, live: Option<Vec<u8>>) -> SegmentReader {
        let mut w = RecordStoreWriter::new();
        for (id, t) in ids.iter().zip(texts) {
            w.add(&Record {
                id: id.clone(),
                text: t.to_string(),
                views: vec![],
                metadata: Default::default(),
                sparse: None,
            })
            .unwrap();
        }
        SegmentReader::new(
            Arc::new(w.finish().unwrap()),
            Arc::new(bm25(texts, a, method)),
            None,
            None,
            live,
        )
        .unwrap()
    }

    /// BM25 over segments with random deletions scores exactly as one fresh index over
    /// the live documents: same documents in the same order, scores to 1e-5.
    #[test]
    fn bm25_over_segments_with_deletes_equals_a_fresh_index() {
        let mut r = Lcg(7);
        let docs: Vec<String> = (0..300)
            .map(|_| {
                let n = 1 + r.next() % 30;
                (0..n)
                    .map(|_| format!("w{}", r.zipf(200)))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        let ids: Vec<String> = (0..docs.len()).map(|i| format!("d{i}")).collect();
        let live: Vec<u8> = (0..docs.len()).map(|_| !r.next().is_multiple_of(4) as u8).collect();
        for method in [
            Method::Lucene,
            Method::Robertson,
            Method::Atire,
            Method::Bm25L,
            Method::Bm25Plus,
        ] {
            let a = analyzer();
            let cuts = [0usize, 90, 200, 300];
            let segs: Vec<Arc<SegmentReader>> = cuts
                .windows(2)
                .map(|w| {
                    let t: Vec<&str> = docs[w[0]..w[1]].iter().map(String::as_str).collect();
                    Arc::new(segment(
                        &ids[w[0]..w[1]],
                        &t,
                        &a,
                        method,
                        Some(live[w[0]..w[1]].to_vec()),
                    ))
                })
                .collect();
            let live_docs: Vec<usize> = (0..docs.len()).filter(|&i| live[i] != 0).collect();
            let live_texts: Vec<&str> = live_docs.iter().map(|&i| docs[i].as_str()).collect();
            let fresh = bm25(&live_texts, &a, method);
            let snap = Snapshot::new(segs, Arc::new(RwLock::new(analyzer())));
            for q in ["w1 w2", "w3 w17 w17", "w40 w5 w0 w199", "w150"] {
                let tokens = a.tokenize(q);
                let req = SearchRequest {
                    bm25_tokens: Some(tokens.clone()),
                    per_route: 15,
                    ..Default::default()
                };
                let got = &snap.route_lists(&req).unwrap()[0].1;
                let want = fresh.search(&fresh.query(&tokens), 15);
                let want: Vec<(u64, f32)> = want
                    .into_iter()
                    .filter(|&(_, s)| !zero_for_no_match(method) || s > 0.0)
                    .map(|(d, s)| (live_docs[d as usize] as u64, s))
                    .collect();
                assert_eq!(got.len(), want.len(), "{method:?} {q}");
                for (g, w) in got.iter().zip(&want) {
                    assert_eq!(g.0, w.0, "{method:?} {q}");
                    assert!(
                        (g.1 - w.1).abs() <= 1e-5 * w.1.abs().max(1.0),
                        "{method:?} {q}: {g:?} vs {w:?}"
                    );
                }
                // The statistics a shard would report sum to the fresh index's.
                let st = snap.bm25_stats(&tokens).unwrap();
                assert_eq!(st.n_rows, live_docs.len() as u64);
                assert_eq!(st.total_tokens, fresh.total_tokens());
                for (t, df) in &st.df {
                    assert_eq!(*df, fresh.df(t) as u64, "{t}");
                }
            }
            // Lookups: a deleted id is not found, a live one is, and docnos round-trip.
            for i in [0usize, 89, 90, 150, 299] {
                let found = snap.find(&ids[i]).unwrap();
                assert_eq!(found.is_some(), live[i] != 0);
                if let Some((s, d)) = found {
                    assert_eq!(snap.locate((cuts[s] + d) as u64), Some((s, d)));
                }
            }
        }
    }

    #[test]
    fn fusing_one_route_keeps_its_scores_and_two_routes_rrf() {
        let a: RouteHits = vec![(3, 2.0), (1, 1.0)];
        let b: RouteHits = vec![(1, 0.9), (5, 0.5)];
        let p = FusionParams::new(fusion::Method::Rrf { k: 60.0 });
        let one = fuse_lists(&[(RouteKind::Bm25, a.clone())], &p, 1).unwrap();
        assert_eq!(
            one,
            vec![FusedHit {
                docno: 3,
                score: 2.0,
                route_scores: vec![2.0]
            }]
        );
        let two = fuse_lists(&[(RouteKind::Bm25, a), (RouteKind::Dense, b)], &p, 10).unwrap();
        assert_eq!(two[0].docno, 1); // in both lists
        assert_eq!(two.len(), 3);
        assert!(two[0].route_scores == vec![1.0, 0.9]);
        assert!(two[1].route_scores[1].is_nan());
    }
}
