//! Exact top-k selection with a deterministic order: score descending, then
//! id ascending. Used by every index so ties always resolve the same way;
//! [`Hit`] is the one result type of BM25, dense and sparse search.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// One search hit: (id, score). BM25 ids are doc numbers (u32); dense and
/// sparse ids are the caller's (i64), where [`PAD`] fills a list that has
/// fewer eligible documents than asked for.
pub type Hit<I = u32> = (I, f32);

/// Hits of one query, best first: score descending, then id ascending.
pub type Hits<I = u32> = Vec<Hit<I>>;

/// The entry that pads a short list of caller-id hits.
pub const PAD: Hit<i64> = (-1, f32::NEG_INFINITY);

/// Caller-id hits from a top-k, best first.
pub fn caller_hits(top: TopK<u64>) -> Hits<i64> {
    top.into_sorted().into_iter().map(|(id, s)| (id as i64, s)).collect()
}

/// Caller-id hits from a top-k, best first, padded with [`PAD`] to `len`.
pub fn into_padded(top: TopK<u64>, len: usize) -> Hits<i64> {
    let mut v = caller_hits(top);
    v.resize(len, PAD);
    v
}

/// A (score, id) pair ordered so that the *worst* hit is the heap's maximum.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Entry<I> {
    score: f32,
    id: I,
}

impl<I: Ord> Eq for Entry<I> {}

impl<I: Ord> Ord for Entry<I> {
    #[inline]
    fn cmp(&self, other: &Self) -> Ordering {
        // Lower score is worse; at equal scores the higher id is worse.
        other.score.total_cmp(&self.score).then(self.id.cmp(&other.id))
    }
}

impl<I: Ord> PartialOrd for Entry<I> {
    #[inline]
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Keeps the best `k` (score, id) pairs seen; ids are row numbers (u32) or user ids (u64).
#[derive(Clone)]
pub struct TopK<I = u32> {
    k: usize,
    heap: BinaryHeap<Entry<I>>,
}

impl<I: Copy + Ord> TopK<I> {
    pub fn new(k: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    /// How many hits are kept (the k).
    #[inline]
    pub fn capacity(&self) -> usize {
        self.k
    }

    #[inline]
    pub fn is_full(&self) -> bool {
        self.heap.len() >= self.k
    }

    /// Score a new hit must reach to enter once the heap is full (at equal
    /// scores the id decides; see `accepts`).
    #[inline]
    pub fn threshold(&self) -> f32 {
        if self.is_full() {
            self.heap.peek().map_or(f32::NEG_INFINITY, |e| e.score)
        } else {
            f32::NEG_INFINITY
        }
    }

    /// Whether `push(id, score)` would keep the hit.
    #[inline]
    pub fn accepts(&self, id: I, score: f32) -> bool {
        match self.heap.peek() {
            Some(w) if self.is_full() => Entry { score, id } < *w,
            _ => self.k > 0,
        }
    }

    /// Offer a hit; ids may arrive in any order.
    #[inline]
    pub fn push(&mut self, id: I, score: f32) {
        if self.k == 0 {
            return;
        }
        let e = Entry { score, id };
        if self.heap.len() < self.k {
            self.heap.push(e);
        } else if let Some(mut worst) = self.heap.peek_mut() {
            if e < *worst {
                *worst = e;
            }
        }
    }

    /// Add another heap's hits (parallel partial results).
    pub fn merge(&mut self, other: TopK<I>) {
        for e in other.heap {
            self.push(e.id, e.score);
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Best first.
    pub fn into_sorted(self) -> Hits<I> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|e| (e.id, e.score))
            .collect()
    }
}

/// Top `k` of a dense score array (ties by lower index), best first.
pub fn top_k_dense(scores: &[f32], k: usize) -> Hits<u32> {
    let mut t = TopK::<u32>::new(k.min(scores.len()));
    for (i, &s) in scores.iter().enumerate() {
        if !t.is_full() || s > t.threshold() {
            t.push(i as u32, s);
        }
    }
    t.into_sorted()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_break_by_id() {
        let scores = [1.0, 3.0, 3.0, 2.0, 3.0];
        assert_eq!(top_k_dense(&scores, 3), vec![(1, 3.0), (2, 3.0), (4, 3.0)]);
        let mut t = TopK::<u32>::new(2);
        for (i, s) in [(4u32, 3.0f32), (2, 3.0), (1, 3.0)] {
            t.push(i, s);
        }
        assert_eq!(t.into_sorted(), vec![(1, 3.0), (2, 3.0)]);
    }
}
