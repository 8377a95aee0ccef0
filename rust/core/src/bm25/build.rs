//! Building an index: tokens -> vocabulary -> per-term postings, in parallel.

use rayon::prelude::*;

use crate::analysis::Analyzer;
use crate::hash::{Interner, VocabIndex};

use super::{Bm25Index, Params, TermInfo};
use crate::error::{Error, Result};
use crate::postings::{bucket_starts, encode_term, PostingsStore, Tf, TAIL_PAD};

/// Documents per parallel work unit: large enough that local vocabularies
/// repeat little, small enough that every core gets several units.
fn chunk_size(n_docs: usize) -> usize {
    (n_docs / (4 * rayon::current_num_threads())).clamp(256, 32768)
}

/// One chunk's documents as (local term id, tf) lists plus its local vocabulary.
#[derive(Default)]
struct ChunkCounts {
    /// Local vocabulary: ids in order of first appearance.
    words: Interner,
    /// Every document's (local id, tf) pairs, end to end, in first-seen order.
    terms: Vec<(u32, u32)>,
    /// Where each document's pairs end in `terms`.
    ends: Vec<usize>,
    doc_lens: Vec<u32>,
}

/// One chunk's postings by local term id: documents (global ids) ascending.
struct ChunkPostings {
    /// Where each local term's postings start in `docs` / `tfs` (one past the last: the end).
    start: Vec<usize>,
    docs: Vec<u32>,
    tfs: Vec<u32>,
}

impl ChunkPostings {
    /// Transpose `c`, whose first document is `first`.
    fn of(c: ChunkCounts, first: u32) -> Self {
        let nv = c.words.len();
        let start = bucket_starts(nv, c.terms.iter().map(|&(t, _)| t as usize));
        let mut fill = start[..nv].to_vec();
        let mut docs = vec![0u32; c.terms.len()];
        let mut tfs = vec![0u32; c.terms.len()];
        let mut from = 0;
        for (doc, &end) in (first..).zip(&c.ends) {
            for &(t, tf) in &c.terms[from..end] {
                let i = &mut fill[t as usize];
                docs[*i] = doc;
                tfs[*i] = tf;
                *i += 1;
            }
            from = end;
        }
        ChunkPostings { start, docs, tfs }
    }

    fn df(&self, t: usize) -> u32 {
        (self.start[t + 1] - self.start[t]) as u32
    }

    fn term(&self, t: usize) -> (&[u32], &[u32]) {
        let r = self.start[t]..self.start[t + 1];
        (&self.docs[r.clone()], &self.tfs[r])
    }
}

/// Counts a chunk's tokens document by document. Term frequencies live in a
/// dense array over local ids (no hashing per token beyond the vocabulary).
#[derive(Default)]
struct Counter {
    c: ChunkCounts,
    counts: Vec<u32>,
    order: Vec<u32>,
    len: u32,
}

impl Counter {
    /// The local id of `t`, new ones numbered in order of first appearance.
    #[inline]
    fn id(&mut self, t: &str) -> u32 {
        let (id, new) = self.c.words.intern(t);
        if new {
            self.counts.push(0);
        }
        id
    }

    #[inline]
    fn add(&mut self, id: u32) {
        self.len += 1;
        let n = &mut self.counts[id as usize];
        if *n == 0 {
            self.order.push(id);
        }
        *n += 1;
    }

    fn end_doc(&mut self) {
        for &id in &self.order {
            let n = &mut self.counts[id as usize];
            self.c.terms.push((id, *n));
            *n = 0;
        }
        self.order.clear();
        self.c.ends.push(self.c.terms.len());
        self.c.doc_lens.push(self.len);
        self.len = 0;
    }

    fn finish(self) -> ChunkCounts {
        self.c
    }
}

fn count_chunk(
    range: std::ops::Range<usize>,
    tokens_of: &(impl Fn(usize, &mut dyn FnMut(&str)) + Sync),
) -> ChunkCounts {
    let mut c = Counter::default();
    for i in range {
        tokens_of(i, &mut |t: &str| {
            let id = c.id(t);
            c.add(id);
        });
        c.end_doc();
    }
    c.finish()
}

/// [`count_chunk`] for an analyzer whose tokens are a function of each
/// segment: a segment's local ids are computed once per chunk and reused.
/// Words are Zipfian, so most tokens cost one hash look-up.
fn count_chunk_memo<S: AsRef<str>>(range: std::ops::Range<usize>, texts: &[S], a: &Analyzer) -> ChunkCounts {
    let mut c = Counter::default();
    // Per word flag: the segments met, and each one's ids in `seg_ids`.
    let mut memo: [(Interner, Vec<(u32, u32)>); 2] = Default::default();
    let mut seg_ids: Vec<u32> = Vec::new();
    for text in &texts[range] {
        a.segments(text.as_ref(), &mut |seg, is_word| {
            let (segs, spans) = &mut memo[is_word as usize];
            let (i, new) = segs.intern(seg);
            if new {
                let s = seg_ids.len() as u32;
                a.segment_tokens(seg, is_word, &mut |t| seg_ids.push(c.id(t)));
                spans.push((s, seg_ids.len() as u32));
            }
            let (s, e) = spans[i as usize];
            for &id in &seg_ids[s as usize..e as usize] {
                c.add(id);
            }
        });
        c.end_doc();
    }
    c.finish()
}

impl Bm25Index {
    /// Build from `n_docs` documents; `tokens_of(i, emit)` emits document i's tokens.
    /// Called from many threads at once (rayon); progress(done) is called per chunk.
    pub fn build(
        params: Params,
        n_docs: usize,
        tokens_of: impl Fn(usize, &mut dyn FnMut(&str)) + Sync,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<Self> {
        Self::build_chunked(params, n_docs, |r| count_chunk(r, &tokens_of), progress)
    }

    /// Build from texts analysed with `a` (in parallel, as [`Self::build`]).
    pub fn build_texts<S: AsRef<str> + Sync>(
        params: Params,
        texts: &[S],
        a: &Analyzer,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<Self> {
        if a.per_segment() {
            Self::build_chunked(params, texts.len(), |r| count_chunk_memo(r, texts, a), progress)
        } else {
            Self::build(
                params,
                texts.len(),
                |i, emit| a.tokenize_into(texts[i].as_ref(), emit),
                progress,
            )
        }
    }

    fn build_chunked(
        params: Params,
        n_docs: usize,
        count: impl Fn(std::ops::Range<usize>) -> ChunkCounts + Sync,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<Self> {
        params.validate()?;
        if n_docs == 0 {
            return Err(Error::invalid(
                "cannot index an empty corpus: give at least one document",
            ));
        }
        if n_docs > u32::MAX as usize - 1 {
            return Err(Error::invalid("too many documents for one index (at most 2^32 - 2)"));
        }
        let chunk = chunk_size(n_docs);
        let ranges: Vec<_> = (0..n_docs).step_by(chunk).map(|s| s..(s + chunk).min(n_docs)).collect();
        let chunks: Vec<ChunkCounts> = ranges
            .into_par_iter()
            .map(|r| {
                let n = r.len();
                let c = count(r);
                progress(n);
                c
            })
            .collect();

        // Global ids in order of first appearance (deterministic for any thread count).
        let mut global = Interner::default();
        let remaps: Vec<Vec<u32>> = chunks
            .iter()
            .map(|c| c.words.iter().map(|w| global.intern(w).0).collect())
            .collect();
        let vocab: Vec<String> = global.iter().map(String::from).collect();
        drop(global);
        let doc_lens: Vec<u32> = chunks.iter().flat_map(|c| c.doc_lens.iter().copied()).collect();
        let total_tokens: u64 = doc_lens.iter().map(|&l| l as u64).sum();
        let avgdl = total_tokens as f64 / n_docs as f64;

        // Each chunk turned term-major on its own (in parallel); what stays
        // serial is one pass over the chunks' vocabularies, not their postings.
        let mut first_doc = Vec::with_capacity(chunks.len());
        let mut next = 0u32;
        for c in &chunks {
            first_doc.push(next);
            next += c.ends.len() as u32;
        }
        let posts: Vec<ChunkPostings> = chunks
            .into_par_iter()
            .zip(first_doc)
            .map(|(c, first)| ChunkPostings::of(c, first))
            .collect();
        // For each global term, the (chunk, local term) holding its postings, chunk by
        // chunk: documents ascend through them.
        let v = vocab.len();
        let mut df = vec![0u32; v];
        let part_start = bucket_starts(v, remaps.iter().flatten().map(|&g| g as usize));
        let mut fill = part_start[..v].to_vec();
        let mut parts = vec![(0u32, 0u32); part_start[v]];
        for (ci, (remap, p)) in remaps.iter().zip(&posts).enumerate() {
            for (t, &g) in remap.iter().enumerate() {
                let g = g as usize;
                parts[fill[g]] = (ci as u32, t as u32);
                fill[g] += 1;
                df[g] += p.df(t);
            }
        }
        drop((fill, remaps));

        let kn: Vec<f32> = doc_lens.iter().map(|&l| params.kn(l, avgdl)).collect();
        // Gather and encode terms in parallel, then lay the regions end to end.
        let encoded: Vec<EncodedTerm> = (0..v)
            .into_par_iter()
            .map_init(
                || (Vec::new(), Vec::new()),
                |(docs, tfs), g| {
                    docs.clear();
                    tfs.clear();
                    for &(ci, t) in &parts[part_start[g]..part_start[g + 1]] {
                        let (d, f) = posts[ci as usize].term(t as usize);
                        docs.extend_from_slice(d);
                        tfs.extend_from_slice(f);
                    }
                    let mut buf = Vec::new();
                    let (nb, mx) = encode_term(
                        docs,
                        tfs,
                        Tf,
                        |d, tf| params.tf_weight(tf as f32, kn[d as usize]),
                        &mut buf,
                    );
                    EncodedTerm {
                        bytes: buf,
                        df: df[g],
                        n_blocks: nb,
                        max_tf_weight: mx,
                    }
                },
            )
            .collect();
        Ok(Self::assemble(params, vocab, encoded, doc_lens, kn, String::new()))
    }
}

/// One term's postings, encoded: what [`Bm25Index::assemble`] lays end to end.
pub(super) struct EncodedTerm {
    pub bytes: Vec<u8>,
    pub df: u32,
    pub n_blocks: u32,
    pub max_tf_weight: f32,
}

impl Bm25Index {
    /// The index from its vocabulary and each word's encoded postings (same
    /// order); words with no postings (df 0) are left out and the rest renumbered.
    /// `kn` is what the postings' bounds were computed with, from `doc_lens` and
    /// their average.
    pub(super) fn assemble(
        params: Params,
        vocab: Vec<String>,
        encoded: Vec<EncodedTerm>,
        doc_lens: Vec<u32>,
        kn: Vec<f32>,
        meta: String,
    ) -> Self {
        let total: usize = encoded.iter().map(|e| e.bytes.len()).sum();
        let mut store = Vec::with_capacity(total + TAIL_PAD);
        let mut terms = Vec::with_capacity(encoded.len());
        let mut kept = Vec::with_capacity(vocab.len());
        for (word, e) in vocab.into_iter().zip(encoded) {
            if e.df == 0 {
                continue;
            }
            let t = terms.len() as u32;
            terms.push(TermInfo {
                term: t,
                df: e.df,
                n_blocks: e.n_blocks,
                offset: store.len() as u64,
                max_tf_weight: e.max_tf_weight,
                idf: params.method.idf(e.df as f64, doc_lens.len() as f64),
            });
            store.extend_from_slice(&e.bytes);
            kept.push(word);
        }
        store.extend_from_slice(&[0u8; TAIL_PAD]);
        let total_tokens: u64 = doc_lens.iter().map(|&l| l as u64).sum();
        let avgdl = total_tokens as f64 / doc_lens.len() as f64;
        let v = kept.len();
        let term_ids = VocabIndex::new(&kept).expect("the vocabulary's words are distinct");
        Bm25Index {
            params,
            vocab: kept,
            term_ids,
            terms,
            doc_lens,
            kn,
            avgdl,
            total_tokens,
            postings: PostingsStore::Owned(store),
            meta,
            impacts: Self::empty_impacts(v),
            kn_cache: Default::default(),
        }
    }
}
