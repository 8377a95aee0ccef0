#![no_main]
//! Arbitrary bytes as text through the English, Chinese and mixed analyzers and keywords
//! (densparse_core::fuzzing::analyzer_text): must never panic.

use std::sync::OnceLock;

use densparse_core::analysis::keywords::KeywordExtractor;
use densparse_core::analysis::Analyzer;
use libfuzzer_sys::fuzz_target;

// Built once per fuzzing process: loading the dictionary takes longer than a run.
static SETUP: OnceLock<(Vec<Analyzer>, KeywordExtractor)> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let (analyzers, keywords) = SETUP.get_or_init(|| (densparse_core::fuzzing::analyzers(), KeywordExtractor::default()));
    densparse_core::fuzzing::analyzer_text(analyzers, keywords, data);
});
