//! Entry points shared by the crafted-file tests and the cargo-fuzz targets (`fuzz/`):
//! each takes arbitrary bytes, loads them as one kind of index file (after recomputing
//! the container's CRC-32, so that the structure behind the checksum is what gets
//! tested), and exercises what a loaded index offers. Loading may fail with an error;
//! nothing here may panic. Not part of the supported API.

use crate::analysis::keywords::{KeywordExtractor, KeywordMethod};
use crate::bm25::Bm25Index;
use crate::collection::records::RecordStore;
use crate::dense::DenseIndex;
use crate::dtype::Dtype;
use crate::sparse::{SearchOptions, SparseIndex};

/// Make `bytes` carry a valid CRC-32 for its body (a no-op on files too short for a header).
pub fn reseal(bytes: &mut [u8]) {
    if bytes.len() >= crate::storage::HEADER_LEN {
        let crc = crc32fast::hash(&bytes[crate::storage::HEADER_LEN..]);
        bytes[32..36].copy_from_slice(&crc.to_le_bytes());
    }
}

/// A BM25 file: load, then search with words of its vocabulary and unknown ones.
pub fn bm25_file(bytes: &[u8]) {
    let mut b = bytes.to_vec();
    reseal(&mut b);
    let Ok(idx) = Bm25Index::from_bytes(b) else { return };
    let mut words: Vec<String> = idx.vocab().iter().take(8).cloned().collect();
    words.push("unknown-word".into());
    let q = idx.query(&words);
    for k in [1, 10, 1000] {
        let _ = idx.search(&q, k);
        // Both strategies, whatever the index size (`search` picks one by size).
        #[cfg(any(test, fuzzing))]
        {
            let _ = idx.search_dense(&q, k);
            let _ = idx.search_maxscore(&q, k);
        }
    }
    let _ = idx.get_scores(&q);
    let _ = idx.document_vector(&words);
    let _ = idx.query_vector(&words);
    for w in &words {
        let _ = idx.df(w);
    }
}

/// A sparse file: load, then search and read rows back.
pub fn sparse_file(bytes: &[u8]) {
    let mut b = bytes.to_vec();
    reseal(&mut b);
    let Ok(mut idx) = SparseIndex::from_bytes(b) else {
        return;
    };
    let v = idx.vocab_size().min(64) as u32;
    let q: (Vec<u32>, Vec<f32>) = ((0..v).collect(), (0..v).map(|t| 1.0 + t as f32).collect());
    for k in [1, 10, 1000] {
        let opts = SearchOptions {
            k,
            query_top_n: None,
            query_cut: None,
        };
        let _ = idx.search(&q, &opts, None);
        let _ = idx.search_exhaustive(&q, &opts, None);
    }
    let ids: Vec<i64> = idx.ids().into_iter().map(|i| i as i64).collect();
    let _ = idx.get(&ids);
    let _ = idx.stats();
    idx.set_dense_rows(0);
    let opts = SearchOptions {
        k: 5,
        query_top_n: Some(3),
        query_cut: None,
    };
    let _ = idx.search(&q, &opts, None);
    idx.compact();
    let _ = idx.search(&q, &opts, None);
}

/// A dense file: load, then search with a few queries.
pub fn dense_file(bytes: &[u8]) {
    let mut b = bytes.to_vec();
    reseal(&mut b);
    let Ok(mut idx) = DenseIndex::from_bytes(b) else { return };
    let dim = idx.dim();
    let q: Vec<f32> = (0..2 * dim).map(|i| ((i % 7) as f32 - 3.0) / 3.0).collect();
    for k in [1, 10, 1000] {
        let _ = idx.search(&q, k, None, Some(1));
        let _ = idx.search_with_path(&q, k, true);
        let _ = idx.search_with_path(&q, k, false);
    }
    let ids = idx.ids();
    if let Some(&first) = ids.first() {
        let _ = idx.remove(&[first as i64]);
        let _ = idx.search(&q, 3, None, Some(1));
        idx.compact();
    }
}

/// A record store file: open, then read every record, look ids up, and run a filter.
pub fn records_file(bytes: &[u8]) {
    let mut b = bytes.to_vec();
    reseal(&mut b);
    let Ok(s) = RecordStore::from_bytes(b) else { return };
    let _ = s.verify();
    for d in 0..s.n_docs().min(64) + 1 {
        let _ = s.record(d);
    }
    for id in ["a", "b", "c", "d", "zz"] {
        let _ = s.doc_of(id);
    }
    if let Ok(names) = s.field_names() {
        let names: Vec<String> = names.into_iter().take(16).map(String::from).collect();
        for n in names {
            if let Ok(Some(f)) = s.field(&n) {
                let _ = f.present().map(|d| d.iter().count());
                let _ = f.ints().map(|(d, v)| (d.len(), v.count()));
                let _ = f.floats().map(|(d, v)| (d.len(), v.count()));
                let _ = f.keyword("x");
                let _ = f.json_values();
                let _ = f.nulls();
                let _ = f.bools(true);
            }
        }
    }
    let spec = serde_json::json!({
        "$or": [{"year": {"$gte": 2000}}, {"tags": {"$in": ["x", 1]}}, {"meta.n": 1}, {"z": null}, {"ok": true}]
    });
    if let Ok(f) = crate::collection::filters::Filter::parse(&crate::collection::SpecValue::from(&spec)) {
        let _ = f.eval(&s);
    }
}

/// The analyzers [`analyzer_text`] runs: English, Chinese and mixed (auto), in every cut mode,
/// with stemming, stopwords and Han n-grams (building them loads the dictionary: build once).
pub fn analyzers() -> Vec<crate::analysis::Analyzer> {
    use crate::analysis::{Analyzer, CutMode, Language, NamedStemmer, StopWords};
    let mut out = Vec::new();
    for (lang, mode) in [
        (Language::En, CutMode::Precise),
        (Language::Zh, CutMode::Precise),
        (Language::Zh, CutMode::Search),
        (Language::Zh, CutMode::Full),
        (Language::Auto, CutMode::Search),
    ] {
        let stem = (lang != Language::Zh)
            .then(|| NamedStemmer::new("english").ok())
            .flatten();
        let mut sw = StopWords::english();
        sw.extend(&StopWords::chinese());
        let mut a = Analyzer::new(lang, mode, mode != CutMode::Full, true, false, sw, stem);
        if lang == Language::Auto {
            a.char_ngrams = Some((1, 2));
        }
        out.push(a);
    }
    out
}

/// Arbitrary bytes as text (lossy UTF-8) through each analyzer, and keywords of it.
pub fn analyzer_text(analyzers: &[crate::analysis::Analyzer], keywords: &KeywordExtractor, data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for a in analyzers {
        let _ = a.tokenize(&text);
    }
    if let Some(zh) = analyzers.get(1) {
        for m in [KeywordMethod::TfIdf, KeywordMethod::TextRank] {
            let _ = keywords.extract(zh.segmenter(), &text, 5, m);
        }
    }
}

/// Arbitrary bytes as dense rows (f32 from the bytes) added, searched and removed.
pub fn dense_add(data: &[u8]) {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let dim = 1 + (head % 8) as usize;
    let vals: Vec<f32> = rest
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap_or([0; 4])))
        .collect();
    let dtype = [Dtype::F32, Dtype::F16, Dtype::I8][(head as usize / 8) % 3];
    let metric = if head & 0x80 != 0 {
        crate::dense::Metric::Cosine
    } else {
        crate::dense::Metric::Ip
    };
    let Ok(mut idx) = DenseIndex::new(dim, dtype, metric) else {
        return;
    };
    let _ = idx.add(&vals, None);
    let ids: Vec<i64> = vals.iter().take(vals.len() / dim).map(|v| v.to_bits() as i64).collect();
    let _ = idx.add(&vals, Some(&ids));
    let _ = idx.search(&vals, 3, None, Some(1));
    let _ = idx.remove(&ids);
}

/// Arbitrary bytes as CSR sparse rows (indptr / indices / values from the bytes) added and searched.
pub fn sparse_add(data: &[u8]) {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let words: Vec<u32> = rest
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap_or([0; 4])))
        .collect();
    let n = words.len() / 3;
    let indptr: Vec<i64> = words[..n].iter().map(|&w| (w % 64) as i64).collect();
    let indices: Vec<i64> = words[n..2 * n].iter().map(|&w| w as i32 as i64).collect();
    let values: Vec<f32> = words[2 * n..3 * n].iter().map(|&w| f32::from_bits(w)).collect();
    let dtype = [Dtype::F32, Dtype::F16, Dtype::U8][(head as usize) % 3];
    let top_n = (head & 0x10 != 0).then_some(2);
    let Ok(mut idx) = SparseIndex::new(dtype, top_n) else {
        return;
    };
    let csr = crate::sparse::Csr {
        indptr: &indptr,
        indices: &indices,
        values: &values,
    };
    let _ = idx.add(csr, None);
    let q = (vec![0u32, 1, 2, 5], vec![1.0f32, 0.5, 2.0, 0.25]);
    let opts = SearchOptions {
        k: 3,
        query_top_n: None,
        query_cut: None,
    };
    let _ = idx.search(&q, &opts, None);
    if let Ok(qs) = idx.prepare_queries(csr) {
        for q in &qs {
            let _ = idx.search(q, &opts, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bm25::{Method, Params};
    use crate::collection::records::{Record, RecordStoreWriter};
    use crate::test_rng::Lcg;
    use serde_json::json;

    fn bm25_bytes() -> Vec<u8> {
        let mut r = Lcg(3);
        // Some terms with over 128 postings, so that terms have several blocks.
        let docs: Vec<Vec<String>> = (0..300)
            .map(|_| (0..1 + r.next() % 12).map(|_| format!("t{}", r.zipf(60))).collect())
            .collect();
        let idx = Bm25Index::build(
            Params {
                method: Method::Lucene,
                ..Params::default()
            },
            docs.len(),
            |i, emit| docs[i].iter().for_each(|t| emit(t)),
            &|_| {},
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.bm25");
        idx.save(&p).unwrap();
        std::fs::read(&p).unwrap()
    }

    fn sparse_bytes(dtype: Dtype) -> Vec<u8> {
        let mut r = Lcg(5);
        let mut idx = SparseIndex::new(dtype, None).unwrap();
        for _ in 0..2 {
            // Two segments.
            let rows: Vec<(Vec<u32>, Vec<f32>)> = (0..200)
                .map(|_| {
                    let mut t: Vec<u32> = (0..1 + r.next() % 6).map(|_| r.zipf(40) as u32).collect();
                    t.sort();
                    t.dedup();
                    let w = t.iter().map(|_| 0.1 + r.unit()).collect();
                    (t, w)
                })
                .collect();
            idx.add_rows(rows, None).unwrap();
        }
        idx.remove(&[3, 250]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.sparse");
        idx.save(&p).unwrap();
        std::fs::read(&p).unwrap()
    }

    fn dense_bytes(dtype: Dtype) -> Vec<u8> {
        let mut r = Lcg(9);
        let mut idx = DenseIndex::new(4, dtype, crate::dense::Metric::Ip).unwrap();
        let v: Vec<f32> = (0..4 * 40).map(|_| r.unit() - 0.5).collect();
        idx.add(&v, None).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.dense");
        idx.save(&p).unwrap();
        std::fs::read(&p).unwrap()
    }

    fn records_bytes() -> Vec<u8> {
        let mut w = RecordStoreWriter::new();
        for (i, (id, meta)) in [
            ("a", json!({"year": 2001, "tags": ["x", "y"], "ok": true})),
            (
                "b",
                json!({"year": 1999.5, "tags": "x", "meta": {"n": [1, "a"]}, "z": null}),
            ),
            ("c", json!({"tags": ["q", "x"], "ok": false})),
            ("d", json!({})),
        ]
        .into_iter()
        .enumerate()
        {
            let Value::Object(metadata) = meta else { unreachable!() };
            w.add(&Record {
                id: id.into(),
                text: format!("text {i} 中文"),
                views: (0..i).map(|v| format!("view {v}")).collect(),
                metadata,
                sparse: (i % 2 == 0).then(|| (vec![1, 7], vec![0.5, 1.5])),
            })
            .unwrap();
        }
        w.into_bytes().unwrap()
    }
    use serde_json::Value;

    /// One structural mutation of a file's body: a byte flipped, or a little-endian u32 /
    /// u64 at any offset overwritten with a boundary value (0, 1, small, the file length,
    /// all ones, a sign bit), or a run of bytes copied from elsewhere in the file.
    fn mutate(good: &[u8], r: &mut Lcg) -> Vec<u8> {
        let mut b = good.to_vec();
        let body = 40..b.len();
        let at = body.start + (r.next() as usize) % body.len();
        let len = b.len() as u64;
        let interesting = [
            0u64,
            1,
            2,
            7,
            8,
            127,
            128,
            129,
            255,
            len / 2,
            len,
            len + 1,
            u32::MAX as u64 - 1,
            u32::MAX as u64,
            1 << 31,
            1 << 63,
            u64::MAX,
            r.next(),
        ];
        let v = interesting[(r.next() as usize) % interesting.len()];
        match r.next() % 5 {
            0 => b[at] ^= 1 << (r.next() % 8),
            1 => b[at] = v as u8,
            2 => {
                let end = (at + 4).min(b.len());
                b[at..end].copy_from_slice(&(v as u32).to_le_bytes()[..end - at]);
            }
            3 => {
                let end = (at + 8).min(b.len());
                b[at..end].copy_from_slice(&v.to_le_bytes()[..end - at]);
            }
            _ => {
                let from = body.start + (r.next() as usize) % body.len();
                let n = (1 + r.next() as usize % 16).min(b.len() - at).min(b.len() - from);
                let src = b[from..from + n].to_vec();
                b[at..at + n].copy_from_slice(&src);
            }
        }
        b
    }

    /// `n` mutations of `good` through `exercise`: every one must load with an error or
    /// work, never panic. Returns how many of them loaded (the rest were refused).
    fn campaign(good: &[u8], n: usize, seed: u64, exercise: fn(&[u8])) {
        let mut r = Lcg(seed);
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let mut panics = Vec::new();
        for i in 0..n {
            let b = mutate(good, &mut r);
            if std::panic::catch_unwind(|| exercise(&b)).is_err() {
                panics.push(i);
            }
        }
        std::panic::set_hook(prev);
        // Re-run the first failure with the default hook, so its message is shown.
        if let Some(&i) = panics.first() {
            let mut r = Lcg(seed);
            let mut b = Vec::new();
            for _ in 0..=i {
                b = mutate(good, &mut r);
            }
            exercise(&b);
        }
        assert!(panics.is_empty(), "{} of {n} mutations panicked", panics.len());
    }

    #[test]
    fn the_unmutated_files_load() {
        let mut b = bm25_bytes();
        reseal(&mut b);
        assert!(Bm25Index::from_bytes(b).is_ok());
        assert!(SparseIndex::from_bytes(sparse_bytes(Dtype::F16)).is_ok());
        assert!(DenseIndex::from_bytes(dense_bytes(Dtype::I8)).is_ok());
        assert!(RecordStore::from_bytes(records_bytes()).is_ok());
    }

    #[test]
    fn crafted_bm25_files_never_panic() {
        campaign(&bm25_bytes(), 4000, 1, bm25_file);
    }

    #[test]
    fn crafted_sparse_files_never_panic() {
        for (i, dt) in [Dtype::F32, Dtype::F16, Dtype::U8].into_iter().enumerate() {
            campaign(&sparse_bytes(dt), 1500, 10 + i as u64, sparse_file);
        }
    }

    #[test]
    fn crafted_dense_files_never_panic() {
        for (i, dt) in [Dtype::F32, Dtype::F16, Dtype::I8].into_iter().enumerate() {
            campaign(&dense_bytes(dt), 1500, 20 + i as u64, dense_file);
        }
    }

    #[test]
    fn crafted_record_stores_never_panic() {
        campaign(&records_bytes(), 4000, 30, records_file);
    }

    #[test]
    fn analyzer_takes_any_text() {
        let a = analyzers();
        let kw = KeywordExtractor::default();
        let mut r = Lcg(50);
        let pieces: [&[u8]; 8] = [
            b"\xff\xfe",
            "中文分词".as_bytes(),
            b"Running dogs ",
            b"\0",
            "\u{1F600}".as_bytes(),
            b"\xe4\xb8",
            b"  ",
            "ｆｕｌｌ".as_bytes(),
        ];
        for _ in 0..300 {
            let data: Vec<u8> = (0..r.next() % 12)
                .flat_map(|_| pieces[r.next() as usize % pieces.len()].to_vec())
                .collect();
            analyzer_text(&a, &kw, &data);
        }
    }

    #[test]
    fn add_paths_never_panic() {
        let mut r = Lcg(40);
        for _ in 0..3000 {
            let n = r.next() as usize % 200;
            let data: Vec<u8> = (0..n).map(|_| r.next() as u8).collect();
            dense_add(&data);
            sparse_add(&data);
        }
    }
}
