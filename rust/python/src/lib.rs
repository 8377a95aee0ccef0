//! Python bindings of densparse-core. Thin by design: argument conversion,
//! GIL release around every long call, and error mapping. No algorithms here.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, TryLockError};
use std::time::Duration;

use densparse_core::hash::StrMap;
use densparse_core::mask::DocMask;
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::create_exception;
use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};

use densparse_core::analysis::keywords::{KeywordExtractor, KeywordMethod};
use densparse_core::analysis::{self as an, CutMode, Language, NamedStemmer, StopWords};
use densparse_core::bm25::{thread_pool, Bm25Index, GlobalStats, Method, Params, Query, SearchOpts};
use densparse_core::Error;

mod collection;
mod dense;
mod fusion;
mod guard;
mod records;
mod sparse;

use guard::{Guarded, InternalError};

/// Texts up to this many bytes are tokenized without releasing the GIL.
const SHORT_TEXT: usize = 4096;

create_exception!(
    _core,
    CorruptIndexError,
    PyValueError,
    "An index file is corrupt, truncated or not of the expected kind."
);

fn to_py(e: Error) -> PyErr {
    match e {
        Error::Invalid(m) => PyValueError::new_err(m),
        e @ Error::Corrupt { .. } => CorruptIndexError::new_err(e.to_string()),
        Error::Io { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(e.to_string())
        }
        // With the errno, so that Python picks the OSError subclass and callers can test it.
        Error::Io { ref source, .. } => match source.raw_os_error() {
            Some(code) => PyOSError::new_err((code, e.to_string())),
            None => PyOSError::new_err(e.to_string()),
        },
    }
}

/// A list of str, with an error naming the first item that is not one.
fn str_list(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<String>> {
    let mut out = Vec::new();
    for_each_str(obj, &|| what.to_string(), |s| {
        out.push(s.to_cow()?.into_owned());
        Ok(())
    })?;
    Ok(out)
}

/// Call `f` on each item of the iterable `obj`, which must hold str only (a
/// single str is refused); `what` names it in errors and is only called then.
fn for_each_str<'py>(
    obj: &Bound<'py, PyAny>,
    what: &dyn Fn() -> String,
    mut f: impl FnMut(Bound<'py, PyString>) -> PyResult<()>,
) -> PyResult<()> {
    if obj.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(format!(
            "{} must be a list of str, not a single str",
            what()
        )));
    }
    for_each_item(
        obj,
        |_| PyTypeError::new_err(format!("{} must be a list of str", what())),
        |i, item| match item.downcast_into::<PyString>() {
            Ok(s) => f(s),
            Err(e) => Err(PyTypeError::new_err(format!(
                "{}[{i}] is {}, expected str",
                what(),
                e.into_inner().get_type().name()?
            ))),
        },
    )
}

/// Call `f(i, item)` on each item of the iterable `obj`; a list is read by
/// index, without an iterator object. `not_iterable` turns the error of an
/// object that cannot be iterated into the caller's.
fn for_each_item<'py>(
    obj: &Bound<'py, PyAny>,
    not_iterable: impl FnOnce(PyErr) -> PyErr,
    mut f: impl FnMut(usize, Bound<'py, PyAny>) -> PyResult<()>,
) -> PyResult<()> {
    if let Ok(list) = obj.downcast::<PyList>() {
        for (i, item) in list.iter().enumerate() {
            f(i, item)?;
        }
        return Ok(());
    }
    for (i, item) in obj.try_iter().map_err(not_iterable)?.enumerate() {
        f(i, item?)?;
    }
    Ok(())
}

/// A list of token lists (for each list, the same checks and errors as [`str_list`]).
fn token_lists(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<Vec<String>>> {
    let mut out = Vec::new();
    for (i, item) in obj.try_iter()?.enumerate() {
        out.push(str_list(&item?, &format!("{what}[{i}]"))?);
    }
    Ok(out)
}

/// The UTF-8 of every item of a list of str, through borrowed pointers: no
/// reference count is touched per item. None if an item is not a str or has no
/// UTF-8 (a lone surrogate); the caller then takes the checked path, which
/// raises the right error.
fn borrowed_strs<'a>(list: &'a Bound<'_, PyList>) -> Option<Vec<&'a str>> {
    let n = list.len();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        // SAFETY: the GIL is held and i < len. The item is borrowed from the list, which
        // `list` keeps alive; nothing here runs Python code, so the list cannot change
        // while the returned slices are in use (they live as long as the borrow of `list`).
        let s = unsafe {
            let item = pyo3::ffi::PyList_GetItem(list.as_ptr(), i as pyo3::ffi::Py_ssize_t);
            if item.is_null() || pyo3::ffi::PyUnicode_Check(item) == 0 {
                None
            } else {
                utf8_of(item)
            }
        };
        match s {
            Some(s) => out.push(s),
            None => {
                let _ = PyErr::take(list.py());
                return None;
            }
        }
    }
    Some(out)
}

/// Queries given as token lists, resolved against `idx` as they are read: the
/// tokens' UTF-8 is borrowed from the str objects, not copied (the same checks
/// and errors as [`token_lists`]).
fn bm25_token_queries<'py>(obj: &Bound<'py, PyAny>, idx: &Bm25Index, what: &str) -> PyResult<Vec<Query>> {
    let mut strs: Vec<Bound<'py, PyString>> = Vec::new();
    let mut resolve = |i: usize, item: &Bound<'py, PyAny>| -> PyResult<Query> {
        if let Some(tokens) = item.downcast::<PyList>().ok().and_then(borrowed_strs) {
            return Ok(idx.query(&tokens));
        }
        strs.clear();
        for_each_str(item, &|| format!("{what}[{i}]"), |s| {
            strs.push(s);
            Ok(())
        })?;
        let tokens = strs.iter().map(str_utf8).collect::<PyResult<Vec<_>>>()?;
        Ok(idx.query(&tokens))
    };
    let mut out = Vec::new();
    for_each_item(
        obj,
        |e| e,
        |i, item| {
            out.push(resolve(i, &item)?);
            Ok(())
        },
    )?;
    Ok(out)
}

/// Run `work` without the GIL on a helper thread while this thread reports
/// progress to the Python callable `progress(n_done_increment)`.
fn with_progress<T: Send>(
    py: Python<'_>,
    progress: Option<&Bound<'_, PyAny>>,
    work: impl FnOnce(&(dyn Fn(usize) + Sync)) -> T + Send,
) -> PyResult<T> {
    let done = AtomicUsize::new(0);
    let finished = AtomicBool::new(false);
    let tick = |n: usize| {
        done.fetch_add(n, Ordering::Relaxed);
    };
    let Some(cb) = progress else {
        return py.guarded(|| work(&tick));
    };
    let cb = cb.clone().unbind();
    let mut reported = 0usize;
    let mut cb_err: Option<PyErr> = None;
    let result = py.guarded(|| {
        std::thread::scope(|s| {
            let h = s.spawn(|| {
                let r = work(&tick);
                finished.store(true, Ordering::Release);
                r
            });
            loop {
                let fin = finished.load(Ordering::Acquire);
                let now = done.load(Ordering::Relaxed);
                if now > reported && cb_err.is_none() {
                    Python::with_gil(|py| {
                        if let Err(e) = cb.call1(py, (now - reported,)) {
                            cb_err = Some(e);
                        }
                    });
                    reported = now;
                }
                if fin {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            h.join().expect("worker thread panicked")
        })
    })?;
    match cb_err {
        Some(e) => Err(e),
        None => Ok(result),
    }
}

// ---------------------------------------------------------------- Analyzer

/// Read-lock an analyzer while holding the GIL without ever blocking on the
/// lock with the GIL held (a writer in `add_word` waits without the GIL, and a
/// reader on another thread may need the GIL back before it can finish).
fn read_with_gil<'a>(py: Python<'_>, lock: &'a RwLock<an::Analyzer>) -> RwLockReadGuard<'a, an::Analyzer> {
    loop {
        match lock.try_read() {
            Ok(g) => return g,
            Err(TryLockError::Poisoned(e)) => return e.into_inner(),
            Err(TryLockError::WouldBlock) => {
                let _ = py.guarded(std::thread::yield_now);
            }
        }
    }
}

extern "C" {
    // In the limited API from 3.10 on, and exported by every CPython 3: pyo3's
    // abi3-py39 build leaves it out, and falls back to PyUnicode_AsUTF8String,
    // which copies the text into a new bytes object on every call.
    fn PyUnicode_AsUTF8AndSize(
        unicode: *mut pyo3::ffi::PyObject,
        size: *mut pyo3::ffi::Py_ssize_t,
    ) -> *const std::ffi::c_char;
}

/// The UTF-8 of a Python str without a copy: CPython keeps it beside the str
/// (ASCII strs are their own UTF-8), so a text tokenized again costs nothing
/// here. Strings CPython cannot encode (lone surrogates) take pyo3's path and
/// its error.
fn str_utf8<'a>(s: &'a Bound<'_, PyString>) -> PyResult<std::borrow::Cow<'a, str>> {
    // SAFETY: `s` is a live str, and the borrow of it bounds the result.
    if let Some(u) = unsafe { utf8_of(s.as_ptr()) } {
        return Ok(std::borrow::Cow::Borrowed(u));
    }
    // Clear CPython's error; to_cow raises it again with pyo3's handling.
    let _ = PyErr::take(s.py());
    s.to_cow()
}

/// CPython's UTF-8 of the str at `p`, or None (with a Python error set) if it
/// has none (a lone surrogate).
///
/// # Safety
/// `p` is a live str and stays alive, unchanged, for `'a`; the GIL is held.
/// The buffer belongs to the str and CPython's UTF-8 is valid UTF-8.
unsafe fn utf8_of<'a>(p: *mut pyo3::ffi::PyObject) -> Option<&'a str> {
    let mut n: pyo3::ffi::Py_ssize_t = 0;
    let b = PyUnicode_AsUTF8AndSize(p, &mut n);
    (!b.is_null()).then(|| std::str::from_utf8_unchecked(std::slice::from_raw_parts(b.cast::<u8>(), n as usize)))
}

/// Text analysis: jieba-identical Chinese segmentation, English words with
/// stopwords and Snowball stems, mixed text, keywords. Thread-safe.
#[pyclass(module = "densparse._core", name = "Analyzer", frozen, subclass)]
pub struct PyAnalyzer {
    pub(crate) inner: Arc<RwLock<an::Analyzer>>,
    config: Py<PyDict>,
    /// Python str objects of tokens seen by `tokenize`: making a str is most
    /// of a short call's cost, and vocabularies repeat. Only touched with the GIL.
    strings: std::sync::Mutex<TokenStrings>,
    /// The keyword extractor (its IDF table is large): built on this analyzer's
    /// first `keywords` call and owned by it, so no state is shared between analyzers.
    keywords: Arc<OnceLock<KeywordExtractor>>,
}

/// Python str objects of tokens. Tokens of up to 15 bytes (nearly all) are
/// keyed by their bytes packed in a `u128`: no string hashing or `memcmp`
/// on the hot path of short texts.
#[derive(Default)]
struct TokenStrings {
    short: StrMap<u128, Py<PyString>>,
    long: StrMap<String, Py<PyString>>,
    /// The tokens of the call in progress, kept between calls for its capacity.
    out: Vec<Py<PyString>>,
}

/// A list of `items`, which are moved into it (left empty, capacity kept).
fn list_from<'py>(py: Python<'py>, items: &mut Vec<Py<PyString>>) -> PyResult<Bound<'py, PyList>> {
    use pyo3::ffi;
    // SAFETY: a fresh list of length n has n empty slots; PyList_SetItem
    // takes over each reference and cannot fail for an index below n.
    unsafe {
        let list = ffi::PyList_New(items.len() as ffi::Py_ssize_t);
        if list.is_null() {
            items.clear();
            return Err(PyErr::fetch(py));
        }
        for (i, s) in items.drain(..).enumerate() {
            ffi::PyList_SetItem(list, i as ffi::Py_ssize_t, s.into_ptr());
        }
        Ok(Bound::from_owned_ptr(py, list).downcast_into_unchecked())
    }
}

impl TokenStrings {
    fn len(&self) -> usize {
        self.short.len() + self.long.len()
    }

    fn clear(&mut self) {
        self.short.clear();
        self.long.clear();
    }

    #[inline]
    fn get<'py>(&mut self, py: Python<'py>, t: &str) -> Bound<'py, PyString> {
        let b = t.as_bytes();
        if b.len() < 16 {
            let mut buf = [0u8; 16];
            buf[..b.len()].copy_from_slice(b);
            buf[15] = b.len() as u8;
            return self
                .short
                .entry(u128::from_le_bytes(buf))
                .or_insert_with(|| PyString::new(py, t).unbind())
                .bind(py)
                .clone();
        }
        match self.long.get(t) {
            Some(s) => s.bind(py).clone(),
            None => {
                let s = PyString::new(py, t);
                self.long.insert(t.to_string(), s.clone().unbind());
                s
            }
        }
    }
}

/// Cap on `PyAnalyzer::strings` (cleared when reached).
const STRING_CACHE: usize = 1 << 18;

fn resolve_stopwords(lang: Language, sw: &Bound<'_, PyAny>) -> PyResult<(StopWords, PyObject)> {
    let py = sw.py();
    if sw.is_none() {
        return Ok((StopWords::default(), py.None()));
    }
    if let Ok(s) = sw.downcast::<PyString>() {
        let s = s.to_cow()?.into_owned();
        let words = match (s.as_str(), lang) {
            ("auto", Language::En) | ("en", _) => StopWords::english(),
            ("auto", Language::Zh) | ("zh", _) => StopWords::chinese(),
            ("auto", Language::Auto) => {
                let mut w = StopWords::english();
                w.extend(&StopWords::chinese());
                w
            }
            _ => {
                return Err(PyValueError::new_err(format!(
                    "stopwords={s:?}: expected \"auto\", \"en\", \"zh\", None or a list of words"
                )))
            }
        };
        return Ok((words, s.into_pyobject(py)?.into_any().unbind()));
    }
    let list = str_list(sw, "stopwords")?;
    let obj = PyList::new(py, &list)?.into_any().unbind();
    Ok((StopWords::from_words(list), obj))
}

#[pymethods]
impl PyAnalyzer {
    #[new]
    #[pyo3(signature = (language="auto", mode="default", hmm=true, stopwords=None, stemmer=None,
                        lowercase=true, keep_punctuation=false, user_dict=None, char_ngrams=None,
                        tokenizer=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        language: &str,
        mode: &str,
        hmm: bool,
        stopwords: Option<&Bound<'_, PyAny>>,
        stemmer: Option<&Bound<'_, PyAny>>,
        lowercase: bool,
        keep_punctuation: bool,
        user_dict: Option<PathBuf>,
        char_ngrams: Option<&Bound<'_, PyAny>>,
        tokenizer: Option<&str>,
    ) -> PyResult<Self> {
        let lang = Language::parse(language).map_err(to_py)?;
        let tok = an::Tokenizer::parse(tokenizer.unwrap_or("default")).map_err(to_py)?;
        let cut = CutMode::parse(mode).map_err(to_py)?;
        // densparse.Analyzer (Python) passes every argument, "auto" included;
        // here a missing argument means None.
        let none = py.None().into_bound(py);
        let sw_arg = stopwords.cloned().unwrap_or_else(|| none.clone());
        let (sw, sw_obj) = resolve_stopwords(lang, &sw_arg)?;
        let stem_arg = stemmer.cloned().unwrap_or_else(|| none.clone());
        let stem = if stem_arg.is_none() {
            None
        } else {
            let name: String = stem_arg
                .extract()
                .map_err(|_| PyTypeError::new_err("stemmer must be a str or None"))?;
            match (name.as_str(), lang) {
                ("auto", Language::Zh) => None,
                ("auto", _) => Some(NamedStemmer::new("english").map_err(to_py)?),
                (n, _) => Some(NamedStemmer::new(n).map_err(to_py)?),
            }
        };
        let ng_arg = char_ngrams.cloned().unwrap_or_else(|| none.clone());
        let ngrams = if ng_arg.is_none() {
            None
        } else if ng_arg.extract::<String>().is_ok_and(|s| s == "auto") {
            // Retrieval analyzers for Chinese add Han unigrams and bigrams; the
            // jieba-identical configuration (keep_punctuation=True) does not.
            (lang != Language::En && !keep_punctuation).then_some((1, 2))
        } else {
            let (lo, hi): (usize, usize) = ng_arg
                .extract()
                .map_err(|_| PyTypeError::new_err("char_ngrams must be \"auto\", None or a (min, max) tuple"))?;
            if lo == 0 || hi < lo || hi > 8 {
                return Err(PyValueError::new_err(format!(
                    "char_ngrams=({lo}, {hi}): need 1 <= min <= max <= 8"
                )));
            }
            Some((lo, hi))
        };
        let mut a = an::Analyzer::new(lang, cut, hmm, lowercase, keep_punctuation, sw, stem);
        a.char_ngrams = ngrams;
        a.tokenizer = tok;
        if let Some(p) = &user_dict {
            if lang == Language::En {
                return Err(PyValueError::new_err(
                    "user_dict needs a Chinese analyzer (language=\"zh\" or \"auto\")",
                ));
            }
            let f = std::fs::File::open(p).map_err(|e| to_py(Error::io(p, e)))?;
            a.segmenter_mut()
                .load_user_dict(std::io::BufReader::new(f), &p.display().to_string())
                .map_err(to_py)?;
        }
        let config = PyDict::new(py);
        config.set_item("language", lang.name())?;
        config.set_item("mode", mode)?;
        config.set_item("hmm", hmm)?;
        config.set_item("stopwords", sw_obj)?;
        config.set_item("stemmer", a.stemmer.as_ref().map(|s| s.name.clone()))?;
        config.set_item("lowercase", lowercase)?;
        config.set_item("keep_punctuation", keep_punctuation)?;
        config.set_item("user_dict", user_dict.as_ref().map(|p| p.display().to_string()))?;
        config.set_item("char_ngrams", ngrams)?;
        config.set_item("tokenizer", tok.name())?;
        config.set_item("added_words", PyList::empty(py))?;
        Ok(PyAnalyzer {
            inner: Arc::new(RwLock::new(a)),
            config: config.unbind(),
            strings: std::sync::Mutex::new(TokenStrings::default()),
            keywords: Arc::default(),
        })
    }

    /// Tokens of one text.
    fn tokenize<'py>(&self, py: Python<'py>, text: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
        let text = text
            .downcast::<PyString>()
            .map_err(|_| PyTypeError::new_err(format!("text must be str, not {}", text.get_type().name().unwrap())))?;
        let text = str_utf8(text)?;
        if text.len() <= SHORT_TEXT {
            let a = read_with_gil(py, &self.inner);
            // Short texts: releasing the GIL would cost more than it frees,
            // and tokens go straight into Python strings with no Vec between.
            let mut cache = self.strings.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() >= STRING_CACHE {
                cache.clear();
            }
            let mut out = std::mem::take(&mut cache.out);
            a.tokenize_into(&text, &mut |t| out.push(cache.get(py, t).unbind()));
            let list = list_from(py, &mut out);
            cache.out = out;
            return list;
        }
        let inner = self.inner.clone();
        let toks = py.guarded(|| inner.read().unwrap_or_else(|e| e.into_inner()).tokenize(&text))?;
        PyList::new(py, toks)
    }

    /// Tokens of many texts, in parallel on all cores (GIL released).
    fn tokenize_batch<'py>(&self, py: Python<'py>, texts: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
        let texts = str_list(texts, "texts")?;
        let inner = self.inner.clone();
        let toks = py.guarded(|| inner.read().unwrap_or_else(|e| e.into_inner()).tokenize_batch(&texts))?;
        // Words repeat across a batch: make each distinct one a Python str once.
        let mut interned: StrMap<&str, Bound<'py, PyString>> = StrMap::default();
        let lists = toks
            .iter()
            .map(|doc| {
                let items: Vec<Bound<'py, PyString>> = doc
                    .iter()
                    .map(|t| {
                        interned
                            .entry(t.as_str())
                            .or_insert_with(|| PyString::new(py, t))
                            .clone()
                    })
                    .collect();
                PyList::new(py, items)
            })
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, lists)
    }

    /// Top-k keywords with weights, as jieba.analyse (tfidf: extract_tags; textrank).
    #[pyo3(signature = (text, k=10, method="tfidf"))]
    fn keywords(&self, py: Python<'_>, text: String, k: i64, method: &str) -> PyResult<Vec<(String, f64)>> {
        if k < 1 {
            return Err(PyValueError::new_err(format!("k must be >= 1, got {k}")));
        }
        let k = usize::try_from(k).unwrap_or(usize::MAX);
        let m = KeywordMethod::parse(method).map_err(to_py)?;
        let (inner, keywords) = (self.inner.clone(), self.keywords.clone());
        py.guarded(|| {
            let ex = keywords.get_or_init(KeywordExtractor::default);
            let a = inner.read().unwrap_or_else(|e| e.into_inner());
            ex.extract(a.segmenter(), &text, k, m)
        })
    }

    /// Add a word to the segmentation dictionary (jieba.add_word). Returns the frequency used.
    #[pyo3(signature = (word, freq=None, tag=None))]
    fn add_word(&self, py: Python<'_>, word: &str, freq: Option<usize>, tag: Option<&str>) -> PyResult<usize> {
        let inner = self.inner.clone();
        let f = py
            .guarded(|| {
                let mut a = inner.write().unwrap_or_else(|e| e.into_inner());
                if a.language == Language::En {
                    return Err(Error::invalid(
                        "add_word needs a Chinese analyzer (language=\"zh\" or \"auto\")",
                    ));
                }
                a.segmenter_mut().add_word(word, freq, tag)
            })?
            .map_err(to_py)?;
        let cfg = self.config.bind(py);
        if let Some(list) = cfg.get_item("added_words")? {
            list.downcast::<PyList>()?.append((word, f, tag))?;
        }
        Ok(f)
    }

    /// Frequency that would keep `word` in one piece (jieba.suggest_freq).
    fn suggest_freq(&self, py: Python<'_>, word: &str) -> usize {
        read_with_gil(py, &self.inner).segmenter().suggest_freq(word)
    }

    /// The settings this analyzer was built with (JSON-serialisable).
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.config.bind(py).copy()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let c = self.config.bind(py);
        let get = |k: &str| -> PyResult<String> {
            Ok(c.get_item(k)?
                .map_or("None".into(), |v| v.repr().map(|r| r.to_string()).unwrap_or_default()))
        };
        Ok(format!(
            "Analyzer(language={}, mode={}, hmm={}, stemmer={}, char_ngrams={}, lowercase={})",
            get("language")?,
            get("mode")?,
            get("hmm")?,
            get("stemmer")?,
            get("char_ngrams")?,
            get("lowercase")?
        ))
    }
}

// ---------------------------------------------------------------- BM25

/// A BM25 index (compressed postings, exact MaxScore top-k). The Python class
/// `densparse.BM25` wraps this with analyzers and friendlier arguments.
#[pyclass(module = "densparse._core", name = "BM25Index", frozen)]
pub struct PyBm25Index {
    pub(crate) inner: Arc<Bm25Index>,
}

type SearchResult<'py> = (Bound<'py, PyArray2<i64>>, Bound<'py, PyArray2<f32>>);

/// Rows of k hits; a row with fewer (a mask left too few documents) is
/// padded with id -1 and score -inf.
fn hits_to_numpy(py: Python<'_>, hits: Vec<Vec<(u32, f32)>>, k: usize) -> SearchResult<'_> {
    let q = hits.len();
    let mut ids = Vec::with_capacity(q * k);
    let mut scores = Vec::with_capacity(q * k);
    for h in hits {
        debug_assert!(h.len() <= k);
        let pad = k - h.len().min(k);
        for (d, s) in h.into_iter().take(k) {
            ids.push(d as i64);
            scores.push(s);
        }
        ids.extend(std::iter::repeat_n(-1i64, pad));
        scores.extend(std::iter::repeat_n(f32::NEG_INFINITY, pad));
    }
    (
        Array2::from_shape_vec((q, k), ids).unwrap().into_pyarray(py),
        Array2::from_shape_vec((q, k), scores).unwrap().into_pyarray(py),
    )
}

/// A document mask: None, or a 1-D numpy array of bool or uint8 (copied, so
/// that Python code cannot change it while the GIL is released).
fn mask_arg(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Vec<u8>>> {
    let Some(o) = obj.filter(|o| !o.is_none()) else {
        return Ok(None);
    };
    if let Ok(a) = o.downcast::<PyArray1<u8>>() {
        return Ok(Some(a.readonly().as_array().iter().copied().collect()));
    }
    if let Ok(a) = o.downcast::<PyArray1<bool>>() {
        return Ok(Some(a.readonly().as_array().iter().map(|&b| b as u8).collect()));
    }
    if let Ok(a) = o.downcast::<PyUntypedArray>() {
        let dt = a.dtype().str()?.to_string();
        if a.ndim() != 1 && (dt == "bool" || dt == "uint8") {
            return Err(PyValueError::new_err(format!(
                "mask must be 1-D, got {} dimensions",
                a.ndim()
            )));
        }
        return Err(PyTypeError::new_err(format!(
            "mask must be a 1-D bool or uint8 array, got dtype {dt}"
        )));
    }
    Err(PyTypeError::new_err(format!(
        "mask must be a 1-D numpy array of bool or uint8, not {}",
        o.get_type().name()?
    )))
}

fn tname(o: &Bound<'_, PyAny>) -> String {
    o.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Global statistics from Python: (n_docs: int, avgdl: float, df: dict[str, int]).
fn stats_arg(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<GlobalStats>> {
    let Some(o) = obj.filter(|o| !o.is_none()) else {
        return Ok(None);
    };
    let shape = "global_stats must be a tuple (n_docs: int, avgdl: float, df: dict[str, int])";
    let t = o.downcast::<PyTuple>().map_err(|_| PyTypeError::new_err(shape))?;
    if t.len() != 3 {
        return Err(PyTypeError::new_err(format!("{shape}, got {} items", t.len())));
    }
    let (n, a, d) = (t.get_item(0)?, t.get_item(1)?, t.get_item(2)?);
    if n.is_instance_of::<pyo3::types::PyBool>() || !n.is_instance_of::<pyo3::types::PyInt>() {
        return Err(PyTypeError::new_err(format!(
            "global_stats n_docs must be an int, not {}",
            n.get_type().name()?
        )));
    }
    let n_docs: i128 = n.extract()?;
    if n_docs < 1 || n_docs > u64::MAX as i128 {
        return Err(PyValueError::new_err(format!(
            "global_stats n_docs must be >= 1, got {n_docs}"
        )));
    }
    let avgdl: f64 = a
        .extract()
        .map_err(|_| PyTypeError::new_err(format!("global_stats avgdl must be a float, not {}", tname(&a))))?;
    let d = d
        .downcast::<PyDict>()
        .map_err(|_| PyTypeError::new_err(format!("global_stats df must be a dict[str, int], not {}", tname(&d))))?;
    let mut df = StrMap::default();
    for (key, v) in d.iter() {
        let key: String = key
            .extract()
            .map_err(|_| PyTypeError::new_err(format!("global_stats df keys must be str, not {}", tname(&key))))?;
        if v.is_instance_of::<pyo3::types::PyBool>() {
            return Err(PyTypeError::new_err(format!(
                "global_stats df[{key:?}] must be an int, not bool"
            )));
        }
        let x: i128 = v
            .extract()
            .map_err(|_| PyTypeError::new_err(format!("global_stats df[{key:?}] must be an int")))?;
        if x < 0 || x > u64::MAX as i128 {
            return Err(PyValueError::new_err(format!(
                "global_stats df[{key:?}] must be >= 0, got {x}"
            )));
        }
        df.insert(key, x as u64);
    }
    let stats = GlobalStats {
        n_docs: n_docs as u64,
        avgdl,
        df,
    };
    stats.validate().map_err(to_py)?;
    Ok(Some(stats))
}

fn sparse_to_py(py: Python<'_>, v: Vec<(Vec<u32>, Vec<f32>)>) -> PyResult<Bound<'_, PyList>> {
    let items: Vec<Bound<'_, PyTuple>> = v
        .into_iter()
        .map(|(i, x)| {
            let i: Vec<i64> = i.into_iter().map(|t| t as i64).collect();
            PyTuple::new(
                py,
                [
                    PyArray1::from_vec(py, i).into_any(),
                    PyArray1::from_vec(py, x).into_any(),
                ],
            )
        })
        .collect::<PyResult<_>>()?;
    PyList::new(py, items)
}

impl PyBm25Index {
    fn analyzer_of(a: &Bound<'_, PyAnalyzer>) -> Arc<RwLock<an::Analyzer>> {
        a.get().inner.clone()
    }
}

#[pymethods]
impl PyBm25Index {
    /// Build from texts, analysed in parallel with `analyzer`.
    #[staticmethod]
    #[pyo3(signature = (texts, analyzer, method="lucene", k1=1.5, b=0.75, delta=0.5, progress=None))]
    #[allow(clippy::too_many_arguments)]
    fn from_texts(
        py: Python<'_>,
        texts: &Bound<'_, PyAny>,
        analyzer: &Bound<'_, PyAnalyzer>,
        method: &str,
        k1: f32,
        b: f32,
        delta: f32,
        progress: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let params = Params {
            method: Method::parse(method).map_err(to_py)?,
            k1,
            b,
            delta,
        };
        let texts = str_list(texts, "corpus")?;
        let a = Self::analyzer_of(analyzer);
        let idx = with_progress(py, progress, |tick| {
            let a = a.read().unwrap_or_else(|e| e.into_inner());
            Bm25Index::build_texts(params, &texts, &a, tick)
        })?
        .map_err(to_py)?;
        Ok(PyBm25Index { inner: Arc::new(idx) })
    }

    /// Build from token lists (already analysed).
    #[staticmethod]
    #[pyo3(signature = (tokens, method="lucene", k1=1.5, b=0.75, delta=0.5, progress=None))]
    fn from_tokens(
        py: Python<'_>,
        tokens: &Bound<'_, PyAny>,
        method: &str,
        k1: f32,
        b: f32,
        delta: f32,
        progress: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let params = Params {
            method: Method::parse(method).map_err(to_py)?,
            k1,
            b,
            delta,
        };
        let docs = token_lists(tokens, "corpus")?;
        let idx = with_progress(py, progress, |tick| {
            Bm25Index::build(params, docs.len(), |i, emit| docs[i].iter().for_each(|t| emit(t)), tick)
        })?
        .map_err(to_py)?;
        Ok(PyBm25Index { inner: Arc::new(idx) })
    }

    /// Scores of every document for one query given as tokens; with
    /// `global_stats` = (n_docs, avgdl, df) the collection's statistics are used.
    #[pyo3(signature = (tokens, global_stats=None))]
    fn get_scores<'py>(
        &self,
        py: Python<'py>,
        tokens: &Bound<'_, PyAny>,
        global_stats: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let toks = str_list(tokens, "query")?;
        let stats = stats_arg(global_stats)?;
        let inner = self.inner.clone();
        let s = py
            .guarded(|| inner.get_scores_opts(&inner.query(&toks), stats.as_ref()))?
            .map_err(to_py)?;
        Ok(PyArray1::from_vec(py, s))
    }

    /// Top-k for queries given as token lists: (ids [Q, k'], scores [Q, k']).
    /// `mask`: 1-D bool/uint8 array of eligible documents; rows with fewer
    /// eligible documents than k' are padded with id -1 and score -inf.
    #[pyo3(signature = (queries, k=10, threads=None, mask=None, global_stats=None))]
    fn search_tokens<'py>(
        &self,
        py: Python<'py>,
        queries: &Bound<'_, PyAny>,
        k: usize,
        threads: Option<usize>,
        mask: Option<&Bound<'_, PyAny>>,
        global_stats: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<SearchResult<'py>> {
        let inner = self.inner.clone();
        let queries = bm25_token_queries(queries, &inner, "queries")?;
        let mask = mask_arg(mask)?;
        let stats = stats_arg(global_stats)?;
        let k = k.min(inner.n_docs());
        let hits = py.guarded(|| -> Result<_, Error> {
            let pool = thread_pool(threads)?;
            let pool = pool.as_deref();
            if mask.is_none() && stats.is_none() {
                return Ok(inner.search_batch(&queries, k, pool));
            }
            let opts = SearchOpts {
                mask: mask.as_deref().map(DocMask::new),
                stats: stats.as_ref(),
            };
            inner.search_batch_opts(&queries, k, &opts, pool)
        })?;
        Ok(hits_to_numpy(py, hits.map_err(to_py)?, k))
    }

    /// Top-k for query texts analysed with `analyzer` (analysis runs in parallel too).
    #[pyo3(signature = (queries, analyzer, k=10, threads=None, mask=None, global_stats=None))]
    #[allow(clippy::too_many_arguments)]
    fn search_texts<'py>(
        &self,
        py: Python<'py>,
        queries: &Bound<'_, PyAny>,
        analyzer: &Bound<'_, PyAnalyzer>,
        k: usize,
        threads: Option<usize>,
        mask: Option<&Bound<'_, PyAny>>,
        global_stats: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<SearchResult<'py>> {
        let qs = str_list(queries, "queries")?;
        let mask = mask_arg(mask)?;
        let stats = stats_arg(global_stats)?;
        let a = Self::analyzer_of(analyzer);
        let inner = self.inner.clone();
        let k = k.min(inner.n_docs());
        let hits = py.guarded(|| -> Result<_, Error> {
            use rayon::prelude::*;
            let pool = thread_pool(threads)?;
            let pool = pool.as_deref();
            let a = a.read().unwrap_or_else(|e| e.into_inner());
            if mask.is_none() && stats.is_none() {
                let run = || {
                    qs.par_iter()
                        .map(|q| inner.search(&inner.query(&a.tokenize(q)), k))
                        .collect::<Vec<_>>()
                };
                return Ok(match pool {
                    Some(p) => p.install(run),
                    None => run(),
                });
            }
            let run = || qs.par_iter().map(|q| inner.query(&a.tokenize(q))).collect::<Vec<_>>();
            let queries = match &pool {
                Some(p) => p.install(run),
                None => run(),
            };
            let opts = SearchOpts {
                mask: mask.as_deref().map(DocMask::new),
                stats: stats.as_ref(),
            };
            inner.search_batch_opts(&queries, k, &opts, pool)
        })?;
        Ok(hits_to_numpy(py, hits.map_err(to_py)?, k))
    }

    /// BM25 sparse vectors of documents given as token lists: [(term ids, weights)].
    fn document_vectors<'py>(&self, py: Python<'py>, docs: &Bound<'_, PyAny>) -> PyResult<Bound<'py, PyList>> {
        let docs = token_lists(docs, "documents")?;
        let inner = self.inner.clone();
        let v = py.guarded(|| {
            use rayon::prelude::*;
            docs.par_iter().map(|d| inner.document_vector(d)).collect::<Vec<_>>()
        })?;
        sparse_to_py(py, v)
    }

    /// BM25 sparse vectors of queries given as token lists: [(term ids, counts)].
    fn query_vectors<'py>(&self, py: Python<'py>, queries: &Bound<'_, PyAny>) -> PyResult<Bound<'py, PyList>> {
        let qs = token_lists(queries, "queries")?;
        let v = qs.iter().map(|q| self.inner.query_vector(q)).collect();
        sparse_to_py(py, v)
    }

    /// Save atomically (temporary file, then rename); `meta` is stored verbatim.
    #[pyo3(signature = (path, meta=""))]
    fn save(&self, py: Python<'_>, path: PathBuf, meta: &str) -> PyResult<()> {
        let inner = self.inner.clone();
        let meta = meta.to_string();
        py.guarded(|| inner.save_with_meta(&path, &meta))?.map_err(to_py)
    }

    /// Load a saved index; with mmap=True the postings are memory-mapped.
    #[staticmethod]
    #[pyo3(signature = (path, mmap=true))]
    fn load(py: Python<'_>, path: PathBuf, mmap: bool) -> PyResult<Self> {
        let idx = py.guarded(|| Bm25Index::load(&path, mmap))?.map_err(to_py)?;
        Ok(PyBm25Index { inner: Arc::new(idx) })
    }

    /// One index over the live documents of `parts` (index, mask or None), in order,
    /// read from their postings: no text is analysed again.
    #[staticmethod]
    fn merge(py: Python<'_>, parts: Vec<(PyRef<'_, PyBm25Index>, Option<Bound<'_, PyAny>>)>) -> PyResult<Self> {
        let mut owned = Vec::with_capacity(parts.len());
        for (idx, mask) in &parts {
            let m = mask_arg(mask.as_ref())?;
            if let Some(m) = &m {
                if m.len() != idx.inner.n_docs() {
                    return Err(PyValueError::new_err(format!(
                        "mask has {} entries for an index of {} documents",
                        m.len(),
                        idx.inner.n_docs()
                    )));
                }
            }
            owned.push((idx.inner.clone(), m));
        }
        let merged = py
            .guarded(|| {
                let args: Vec<_> = owned
                    .iter()
                    .map(|(i, m)| (&**i, m.as_deref().map(densparse_core::mask::DocMask::new)))
                    .collect();
                Bm25Index::merge(&args)
            })?
            .map_err(to_py)?;
        Ok(PyBm25Index {
            inner: Arc::new(merged),
        })
    }

    #[getter]
    fn meta(&self) -> String {
        self.inner.meta.clone()
    }
    #[getter]
    fn n_docs(&self) -> usize {
        self.inner.n_docs()
    }
    #[getter]
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }
    #[getter]
    fn n_postings(&self) -> u64 {
        self.inner.n_postings()
    }
    #[getter]
    fn postings_bytes(&self) -> usize {
        self.inner.postings_bytes()
    }
    #[getter]
    fn avgdl(&self) -> f64 {
        self.inner.avgdl()
    }
    /// Sum of all document lengths (tokens indexed).
    #[getter]
    fn total_tokens(&self) -> u64 {
        self.inner.total_tokens()
    }
    #[getter]
    fn method(&self) -> &'static str {
        self.inner.params().method.name()
    }
    #[getter]
    fn k1(&self) -> f32 {
        self.inner.params().k1
    }
    #[getter]
    fn b(&self) -> f32 {
        self.inner.params().b
    }
    #[getter]
    fn delta(&self) -> f32 {
        self.inner.params().delta
    }
    /// The vocabulary, in term-id order.
    fn vocab(&self) -> Vec<String> {
        self.inner.vocab().to_vec()
    }
    /// Document frequency of a token (0 if unknown).
    fn df(&self, token: &str) -> u32 {
        self.inner.df(token)
    }
    /// Token count of every document.
    fn doc_lens<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u32>> {
        PyArray1::from_vec(py, self.inner.doc_lens().to_vec())
    }
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyAnalyzer>()?;
    m.add_class::<PyBm25Index>()?;
    fusion::register(m)?;
    sparse::register(m)?;
    records::register(m)?;
    collection::register(m)?;
    m.add("CorruptIndexError", m.py().get_type::<CorruptIndexError>())?;
    m.add("InternalError", m.py().get_type::<InternalError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    dense::register(m)?;
    Ok(())
}
