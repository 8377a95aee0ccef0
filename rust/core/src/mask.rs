//! Which documents a search may return, shared by BM25, dense and sparse
//! search: a byte per document id, eligible iff inside the mask and non-zero
//! (so a shorter mask excludes the ids past its end, an empty one excludes all).

use crate::postings::END;

/// A borrowed document mask: id `d` is eligible iff `d < len` and `bytes[d] != 0`.
#[derive(Clone, Copy, Debug)]
pub struct DocMask<'a>(&'a [u8]);

impl<'a> DocMask<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        DocMask(bytes)
    }

    pub fn bytes(&self) -> &'a [u8] {
        self.0
    }

    /// Whether id `d` is eligible.
    #[inline(always)]
    pub fn contains(&self, d: u64) -> bool {
        usize::try_from(d)
            .ok()
            .and_then(|i| self.0.get(i))
            .is_some_and(|&m| m != 0)
    }

    /// The first eligible id >= `d` (ids as u32 doc numbers), `END` if none.
    #[inline]
    pub fn next_from(&self, d: u32) -> u32 {
        match self.0.get(d as usize..) {
            Some(rest) => rest.iter().position(|&m| m != 0).map_or(END, |i| d + i as u32),
            None => END,
        }
    }
}

impl<'a> From<&'a [u8]> for DocMask<'a> {
    fn from(bytes: &'a [u8]) -> Self {
        DocMask(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contains_and_next_from() {
        let m = DocMask::new(&[0, 1, 0, 0, 1]);
        let ok: Vec<u64> = (0..8).filter(|&d| m.contains(d)).collect();
        assert_eq!(ok, vec![1, 4]);
        assert!(!m.contains(u64::MAX));
        assert_eq!(m.next_from(0), 1);
        assert_eq!(m.next_from(2), 4);
        assert_eq!(m.next_from(5), END);
        assert_eq!(m.next_from(100), END);
        assert_eq!(DocMask::new(&[]).next_from(0), END);
    }
}
