//! The five BM25 variants (docs/algorithms.md, "BM25 variants"), as bm25s computes them.

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Lucene,
    Robertson,
    Atire,
    Bm25L,
    Bm25Plus,
}

impl Method {
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "lucene" => Ok(Method::Lucene),
            "robertson" => Ok(Method::Robertson),
            "atire" => Ok(Method::Atire),
            "bm25l" => Ok(Method::Bm25L),
            "bm25+" | "bm25plus" => Ok(Method::Bm25Plus),
            _ => Err(Error::invalid(format!(
                "unknown BM25 method {s:?}: expected one of lucene, robertson, atire, bm25l, bm25+"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Method::Lucene => "lucene",
            Method::Robertson => "robertson",
            Method::Atire => "atire",
            Method::Bm25L => "bm25l",
            Method::Bm25Plus => "bm25+",
        }
    }

    pub(crate) fn code(self) -> u32 {
        self as u32
    }

    pub(crate) fn from_code(c: u32) -> Option<Self> {
        [
            Method::Lucene,
            Method::Robertson,
            Method::Atire,
            Method::Bm25L,
            Method::Bm25Plus,
        ]
        .get(c as usize)
        .copied()
    }

    /// Inverse document frequency for a term in `df` of `n` documents.
    pub fn idf(self, df: f64, n: f64) -> f64 {
        match self {
            Method::Lucene => (1.0 + (n - df + 0.5) / (df + 0.5)).ln(),
            // Clamped so that idf >= 0 (bm25s's allow_negative=False).
            Method::Robertson => ((n - df + 0.5) / (df + 0.5)).max(1.0).ln(),
            Method::Atire => (n / df).ln(),
            Method::Bm25L => ((n + 1.0) / (df + 0.5)).ln(),
            Method::Bm25Plus => ((n + 1.0) / df).ln(),
        }
    }
}

/// Scoring parameters, fixed when an index is built.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Params {
    pub method: Method,
    pub k1: f32,
    pub b: f32,
    pub delta: f32,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            method: Method::Lucene,
            k1: 1.5,
            b: 0.75,
            delta: 0.5,
        }
    }
}

impl Params {
    pub fn validate(&self) -> Result<()> {
        let ok = |x: f32| x.is_finite() && x >= 0.0;
        if !ok(self.k1) || !ok(self.b) || self.b > 1.0 || !ok(self.delta) {
            return Err(Error::invalid(format!(
                "BM25 parameters out of range: k1={} (>= 0), b={} (0..=1), delta={} (>= 0)",
                self.k1, self.b, self.delta
            )));
        }
        Ok(())
    }

    /// k1 * (1 - b + b * len / avgdl): the length normalisation of a document.
    #[inline]
    pub fn kn(&self, len: u32, avgdl: f64) -> f32 {
        let avg = if avgdl > 0.0 { avgdl } else { 1.0 };
        (self.k1 as f64 * (1.0 - self.b as f64 + self.b as f64 * len as f64 / avg)) as f32
    }

    /// The tf part for `tf` occurrences in a document with normalisation `kn`.
    #[inline]
    pub fn tf_part(&self, tf: f32, kn: f32) -> f32 {
        let k1 = self.k1;
        match self.method {
            Method::Lucene | Method::Robertson => tf / (tf + kn),
            Method::Atire => tf * (k1 + 1.0) / (tf + kn),
            Method::Bm25L => {
                // c = tf / norm, with norm = kn / k1 (k1 = 0 makes the part constant).
                let norm = if k1 > 0.0 { kn / k1 } else { 1.0 };
                let c = tf / norm;
                (k1 + 1.0) * (c + self.delta) / (k1 + c + self.delta)
            }
            Method::Bm25Plus => (k1 + 1.0) * tf / (kn + tf) + self.delta,
        }
    }

    /// tf part of a document without the term: non-zero only for BM25L and BM25+,
    /// where it is the same for every document.
    #[inline]
    pub fn tf_part_absent(&self) -> f32 {
        match self.method {
            Method::Bm25L | Method::Bm25Plus => self.tf_part(0.0, self.k1),
            _ => 0.0,
        }
    }

    /// What a posting adds over an absent term: tfpart(tf) - tfpart(0) (>= 0).
    #[inline]
    pub fn tf_weight(&self, tf: f32, kn: f32) -> f32 {
        self.tf_part(tf, kn) - self.tf_part_absent()
    }
}
