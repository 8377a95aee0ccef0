//! Hash maps keyed by strings. FxHash is fast for integers but its hashes
//! of short strings collide in hashbrown's tag bits, costing a string compare
//! per probe; foldhash is as fast and spreads strings well. Fixed seeds keep
//! runs deterministic.

pub type StrMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::FixedState>;
pub type StrSet<K> = std::collections::HashSet<K, foldhash::fast::FixedState>;

use std::hash::BuildHasher;

/// Strings numbered in order of first appearance, their bytes kept end to
/// end in one buffer: no allocation per string, and a look-up touches one
/// table slot and the bytes (what indexing does once per token).
#[derive(Default)]
pub struct Interner {
    table: hashbrown::HashTable<u32>,
    /// Where each string ends in `bytes` (string i starts where i - 1 ends).
    ends: Vec<usize>,
    bytes: String,
    hasher: foldhash::fast::FixedState,
}

impl Interner {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// String `id`.
    #[inline]
    pub fn get_str(&self, id: u32) -> &str {
        interned(&self.ends, &self.bytes, id)
    }

    /// The id of `s`, and whether it is new (then numbered `len() - 1`).
    #[inline]
    pub fn intern(&mut self, s: &str) -> (u32, bool) {
        let h = self.hasher.hash_one(s);
        let Interner {
            table,
            ends,
            bytes,
            hasher,
        } = self;
        let str_of = |id: u32| interned(ends, bytes, id);
        if let Some(&id) = table.find(h, |&id| str_of(id) == s) {
            return (id, false);
        }
        let id = ends.len() as u32;
        table.insert_unique(h, id, |&id| hasher.hash_one(str_of(id)));
        bytes.push_str(s);
        ends.push(bytes.len());
        (id, true)
    }

    /// The strings in id order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        (0..self.len() as u32).map(|i| self.get_str(i))
    }
}

/// String `id` of an [`Interner`]'s buffer (a free function: `intern`
/// borrows the table mutably while it reads the strings).
#[inline]
fn interned<'a>(ends: &[usize], bytes: &'a str, id: u32) -> &'a str {
    let i = id as usize;
    let start = if i == 0 { 0 } else { ends[i - 1] };
    &bytes[start..ends[i]]
}

#[cfg(test)]
mod tests {
    use super::Interner;

    #[test]
    fn interner_numbers_in_order_of_first_appearance() {
        let mut it = Interner::default();
        let words = ["b", "", "a", "b", "ab", "", "a", "é"];
        let ids: Vec<(u32, bool)> = words.iter().map(|w| it.intern(w)).collect();
        assert_eq!(
            ids,
            [
                (0, true),
                (1, true),
                (2, true),
                (0, false),
                (3, true),
                (1, false),
                (2, false),
                (4, true)
            ]
        );
        assert_eq!(it.iter().collect::<Vec<_>>(), ["b", "", "a", "ab", "é"]);
        // Past many resizes every id still maps back to its string.
        for i in 0..10_000 {
            assert_eq!(it.intern(&format!("w{i}")), (5 + i, true));
        }
        for i in (0..10_000).step_by(97) {
            assert_eq!(it.get_str(5 + i), format!("w{i}"));
            assert_eq!(it.intern(&format!("w{i}")), (5 + i, false));
        }
    }
}
