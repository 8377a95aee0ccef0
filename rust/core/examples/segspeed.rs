use densparse_core::analysis::{Analyzer, CutMode, Language, StopWords};
use std::io::BufRead;
use std::time::Instant;
fn main() {
    let texts: Vec<String> = std::io::stdin().lock().lines().map(|l| l.unwrap().replace("\\n", "\n")).collect();
    let mb: f64 = texts.iter().map(|t| t.len()).sum::<usize>() as f64 / 1e6;
    let a = Analyzer::new(Language::Zh, CutMode::Precise, true, false, true, StopWords::default(), None);
    let j = a.segmenter().jieba();
    for _ in 0..2 {
        let t = Instant::now();
        let mut n = 0;
        for s in &texts { n += j.cut(s, true).len(); }
        println!("jieba-rs cut: {:.1} MB/s ({n})", mb / t.elapsed().as_secs_f64());
        let t = Instant::now();
        let mut n = 0;
        for s in &texts { a.segmenter().cut_each(s, CutMode::Precise, true, &mut |_w| n += 1); }
        println!("segmenter: {:.1} MB/s ({n})", mb / t.elapsed().as_secs_f64());
        let t = Instant::now();
        let mut n = 0;
        for s in &texts { a.tokenize_into(s, &mut |_w| n += 1); }
        println!("analyzer: {:.1} MB/s ({n})", mb / t.elapsed().as_secs_f64());
    }
}
