//! Which segments to merge after a write: a log-structured (tiered) policy, as in Lucene's
//! and tantivy's LogMergePolicy.
//!
//! Segments fall into levels by size: level `L` holds segments of `f^L` to `f^(L+1)` live
//! documents (`f` the merge factor, 3). When a level holds `f` segments they are merged
//! into one segment of the next level, so a document is rewritten about once per level:
//! `log_f(N / batch)` times over the life of a collection of N documents added in batches
//! (merging the smallest segments whenever there are too many rewrites far more: 7.7 against
//! 50 rewrites per document over 2,000 adds of 100 documents). `max_segments` stays a hard
//! cap, since a search touches every segment: above it, just enough of the smallest
//! segments are merged. A segment that is mostly deleted documents is merged at the next
//! chance, so deleted documents do not linger.

use std::collections::BTreeMap;

pub const MERGE_FACTOR: usize = 3;
pub const FLOOR_DOCS: u64 = 1;
/// A segment with more than this share of deleted documents is merged at the next chance.
pub const DELETED_SHARE: f64 = 0.5;

/// The level of a segment with `live_docs` live documents.
pub fn level(live_docs: u64, factor: usize, floor_docs: u64) -> i64 {
    let floor = floor_docs.max(1);
    let x = live_docs.max(floor) as f64 / floor as f64;
    // As Python's math.log(x, factor): log(x) / log(factor), then the same epsilon.
    (x.ln() / (factor as f64).ln() + 1e-9) as i64
}

/// Indices of the segments to merge next (empty: nothing to do), smallest first (a
/// mostly deleted segment: by position). `live` and
/// `total` are each segment's live and stored document counts.
pub fn plan(live: &[u64], total: &[u64], max_segments: usize, factor: usize, floor_docs: u64) -> Vec<usize> {
    let factor = factor.max(2);
    let n = live.len();
    let mut levels: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (i, &l) in live.iter().enumerate() {
        levels.entry(level(l, factor, floor_docs)).or_default().push(i);
    }
    let by_size = |v: &mut Vec<usize>| v.sort_by_key(|&i| live[i]); // stable: ties keep order
    for members in levels.values() {
        if members.len() >= factor {
            let mut m = members.clone();
            by_size(&mut m);
            m.truncate(factor);
            return m;
        }
    }
    let mostly_deleted = (0..n).find(|&i| {
        total
            .get(i)
            .is_some_and(|&t| t > 0 && 1.0 - live[i] as f64 / t as f64 > DELETED_SHARE)
    });
    if let Some(i) = mostly_deleted {
        // Merged with the smallest segment of its level (or alone, to drop its deletions).
        let mut peers: Vec<usize> = levels[&level(live[i], factor, floor_docs)]
            .iter()
            .copied()
            .filter(|&j| j != i)
            .collect();
        by_size(&mut peers);
        let mut out: Vec<usize> = std::iter::once(i).chain(peers.into_iter().take(1)).collect();
        out.sort_unstable();
        return out;
    }
    if n > max_segments {
        let mut all: Vec<usize> = (0..n).collect();
        by_size(&mut all);
        all.truncate(2.max(n - max_segments + 1));
        return all;
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_plans() {
        assert_eq!(level(1, 3, 1), 0);
        assert_eq!(level(3, 3, 1), 1);
        assert_eq!(level(9, 3, 1), 2);
        assert_eq!(level(26, 3, 1), 2);
        // Three segments of one level merge; the cap merges the smallest.
        assert_eq!(plan(&[10, 12, 11, 500], &[10, 12, 11, 500], 10, 3, 1), vec![0, 2, 1]);
        assert_eq!(plan(&[10, 100, 1000], &[10, 100, 1000], 10, 3, 1), Vec::<usize>::new());
        assert_eq!(plan(&[10, 100, 1000], &[10, 100, 1000], 2, 3, 1), vec![0, 1]);
        // A mostly deleted segment goes at the next chance.
        assert_eq!(plan(&[10, 100, 4], &[10, 100, 40], 10, 3, 1), vec![2]);
    }

    /// Adding batches under the policy rewrites each document about once per level.
    #[test]
    fn rewrites_per_document_are_logarithmic() {
        let (mut segs, mut written) = (Vec::<u64>::new(), 0u64);
        for batch in 0..2000u64 {
            segs.push(100 + batch % 2); // batches of 100-101 documents
            loop {
                let mut p = plan(&segs, &segs, 10, MERGE_FACTOR, FLOOR_DOCS);
                p.sort_unstable();
                if p.is_empty() {
                    break;
                }
                let merged: u64 = p.iter().map(|&i| segs[i]).sum();
                written += merged;
                for &i in p.iter().rev() {
                    segs.remove(i);
                }
                segs.push(merged);
            }
        }
        let per_doc = written as f64 / 201_000.0;
        assert!(per_doc < 10.0, "{per_doc} rewrites per document");
        assert!(segs.len() <= 10);
    }
}
