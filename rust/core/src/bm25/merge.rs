//! Merging indexes without analysing the texts again: the postings of the live
//! documents are read, renumbered and encoded anew (a Collection's segment merge).

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::hash::StrMap;
use crate::mask::DocMask;
use crate::postings::{encode_term, for_each_block, Tf};

use super::build::EncodedTerm;
use super::Bm25Index;

impl Bm25Index {
    /// One index over the live documents of `parts`, in order: part 0's live documents
    /// first, each part's in its own order. `live` masks a part's documents (`None`: all).
    /// The result equals [`Bm25Index::build`] over the same documents' tokens (same
    /// statistics, postings and scores; term ids may be numbered differently).
    pub fn merge(parts: &[(&Bm25Index, Option<DocMask<'_>>)]) -> Result<Self> {
        let Some((first, _)) = parts.first() else {
            return Err(Error::invalid("nothing to merge: give at least one index"));
        };
        let params = first.params;
        if parts.iter().any(|(p, _)| p.params != params) {
            return Err(Error::invalid("cannot merge BM25 indexes with different parameters"));
        }
        // New document numbers: the live documents of each part, in order.
        let mut new_ids: Vec<Vec<u32>> = Vec::with_capacity(parts.len());
        let mut doc_lens: Vec<u32> = Vec::new();
        for (p, live) in parts {
            let ids = (0..p.n_docs() as u32)
                .map(|d| {
                    if live.is_none_or(|m| m.contains(d as u64)) {
                        doc_lens.push(p.doc_lens[d as usize]);
                        (doc_lens.len() - 1) as u32
                    } else {
                        u32::MAX
                    }
                })
                .collect();
            new_ids.push(ids);
        }
        let n_docs = doc_lens.len();
        if n_docs == 0 {
            return Err(Error::invalid("nothing to merge: no live documents"));
        }
        if n_docs > u32::MAX as usize - 1 {
            return Err(Error::invalid("too many documents for one index (at most 2^32 - 2)"));
        }
        let avgdl = doc_lens.iter().map(|&l| l as u64).sum::<u64>() as f64 / n_docs as f64;
        let kn: Vec<f32> = doc_lens.iter().map(|&l| params.kn(l, avgdl)).collect();

        // The vocabulary: every term of every part, in order of first appearance; each
        // new term lists (part, old term) sources.
        let mut term_ids: StrMap<String, u32> = StrMap::default();
        let mut vocab: Vec<String> = Vec::new();
        let mut sources: Vec<Vec<(u32, u32)>> = Vec::new();
        for (pi, (p, _)) in parts.iter().enumerate() {
            for (t, w) in p.vocab.iter().enumerate() {
                let id = match term_ids.get(w.as_str()) {
                    Some(&id) => id,
                    None => {
                        let id = vocab.len() as u32;
                        term_ids.insert(w.clone(), id);
                        vocab.push(w.clone());
                        sources.push(Vec::new());
                        id
                    }
                };
                sources[id as usize].push((pi as u32, t as u32));
            }
        }
        // Each term's live postings, renumbered (ascending: parts are numbered in order),
        // then encoded with the new lengths' normalisation.
        let encoded: Vec<EncodedTerm> = sources
            .par_iter()
            .map(|src| {
                let (mut docs, mut tfs) = (Vec::new(), Vec::new());
                for &(pi, t) in src {
                    let (p, _) = parts[pi as usize];
                    let ids = &new_ids[pi as usize];
                    let info = p.terms[t as usize];
                    for_each_block(p.postings.bytes(), info.postings(), Tf, |ds, vs| {
                        for (&d, &tf) in ds.iter().zip(vs) {
                            let nd = ids[d as usize];
                            if nd != u32::MAX {
                                docs.push(nd);
                                tfs.push(tf);
                            }
                        }
                    });
                }
                let mut bytes = Vec::new();
                let (n_blocks, max_tf_weight) = encode_term(
                    &docs,
                    &tfs,
                    Tf,
                    |d, tf| params.tf_weight(tf as f32, kn[d as usize]),
                    &mut bytes,
                );
                EncodedTerm {
                    bytes,
                    df: docs.len() as u32,
                    n_blocks,
                    max_tf_weight,
                }
            })
            .collect();
        // Terms only deleted documents had get df 0 and are left out, as a fresh build
        // would not know them.
        Ok(Self::assemble(params, vocab, encoded, doc_lens, kn, first.meta.clone()))
    }
}
