//! Hash maps keyed by strings. FxHash is fast for integers but its hashes
//! of short strings collide in hashbrown's tag bits, costing a string compare
//! per probe; foldhash is as fast and spreads strings well. Fixed seeds keep
//! runs deterministic.

pub type StrMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::FixedState>;
pub type StrSet<K> = std::collections::HashSet<K, foldhash::fast::FixedState>;

use std::hash::BuildHasher;

/// A table slot: a string's id with its length and first 8 bytes, so that a
/// string of up to 8 bytes (most words) is compared without reading it.
#[derive(Clone, Copy)]
struct Slot {
    head: u64,
    /// Length, saturated at u32::MAX (longer strings are compared whole).
    len: u32,
    id: u32,
}

impl Slot {
    #[inline]
    fn new(s: &[u8], id: u32) -> Self {
        Slot {
            head: head8(s),
            len: s.len().min(u32::MAX as usize) as u32,
            id,
        }
    }
}

/// Up to the first 8 bytes of `s`, zero-padded, as one integer.
#[inline]
fn head8(s: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = s.len().min(8);
    b[..n].copy_from_slice(&s[..n]);
    u64::from_le_bytes(b)
}

/// Ids of strings kept elsewhere, found by the string: the one hash table
/// behind [`Interner`] and [`VocabIndex`]. `stored(id)` reads string `id`
/// back; a string of up to 8 bytes is matched from its slot alone.
#[derive(Default)]
struct SlotTable {
    table: hashbrown::HashTable<Slot>,
    hasher: foldhash::fast::FixedState,
}

impl SlotTable {
    #[inline]
    fn hash(&self, s: &str) -> u64 {
        self.hasher.hash_one(s)
    }

    /// The id of `s`, whose hash is `h`.
    #[inline]
    fn find<'a>(&self, h: u64, s: &str, stored: impl Fn(u32) -> &'a str) -> Option<u32> {
        let b = s.as_bytes();
        let probe = Slot::new(b, 0);
        self.table
            .find(h, |e| {
                e.len == probe.len && e.head == probe.head && (b.len() <= 8 || stored(e.id).as_bytes()[8..] == b[8..])
            })
            .map(|e| e.id)
    }

    /// Add `s` (not present, hash `h`) as `id`.
    #[inline]
    fn insert<'a>(&mut self, h: u64, s: &str, id: u32, stored: impl Fn(u32) -> &'a str) {
        let hasher = &self.hasher;
        self.table
            .insert_unique(h, Slot::new(s.as_bytes(), id), |e| hasher.hash_one(stored(e.id)));
    }
}

/// Strings end to end in one buffer, numbered in order (no allocation per string).
#[derive(Default)]
pub struct StrList {
    /// Where each string ends in `bytes` (string i starts where i - 1 ends).
    ends: Vec<usize>,
    bytes: String,
}

impl StrList {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// String `id`.
    #[inline]
    pub fn get(&self, id: u32) -> &str {
        let i = id as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    /// Add `s` as string `len()`.
    #[inline]
    pub fn push(&mut self, s: &str) {
        self.bytes.push_str(s);
        self.ends.push(self.bytes.len());
    }
}

/// Strings numbered in order of first appearance, kept in a [`StrList`]: a
/// look-up of a short string touches one table slot only (what indexing does
/// once per token).
#[derive(Default)]
pub struct Interner {
    table: SlotTable,
    strings: StrList,
}

impl Interner {
    pub fn len(&self) -> usize {
        self.strings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.strings.is_empty()
    }

    /// String `id`.
    #[inline]
    pub fn get_str(&self, id: u32) -> &str {
        self.strings.get(id)
    }

    /// The id of `s`, if it was interned.
    #[inline]
    pub fn get(&self, s: &str) -> Option<u32> {
        self.table.find(self.table.hash(s), s, |id| self.strings.get(id))
    }

    /// The id of `s`, and whether it is new (then numbered `len() - 1`).
    #[inline]
    pub fn intern(&mut self, s: &str) -> (u32, bool) {
        let h = self.table.hash(s);
        let strings = &self.strings;
        if let Some(id) = self.table.find(h, s, |id| strings.get(id)) {
            return (id, false);
        }
        let id = strings.len() as u32;
        self.table.insert(h, s, id, |id| strings.get(id));
        self.strings.push(s);
        (id, true)
    }

    /// The strings in id order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        (0..self.len() as u32).map(|i| self.get_str(i))
    }
}

/// Look-up of a vocabulary's words by string, the words themselves kept by
/// the caller (ids are positions in its `Vec<String>`); a word of up to 8
/// bytes (most stems and Chinese words) is found without reading its string.
#[derive(Default)]
pub struct VocabIndex {
    table: SlotTable,
}

impl VocabIndex {
    /// The index of `vocab`; `Err(i)` if word `i` repeats an earlier one.
    pub fn new(vocab: &[String]) -> Result<Self, usize> {
        let mut table = SlotTable {
            table: hashbrown::HashTable::with_capacity(vocab.len()),
            hasher: Default::default(),
        };
        let stored = |id: u32| vocab[id as usize].as_str();
        for (i, w) in vocab.iter().enumerate() {
            let h = table.hash(w);
            if table.find(h, w, stored).is_some() {
                return Err(i);
            }
            table.insert(h, w, i as u32, stored);
        }
        Ok(VocabIndex { table })
    }

    /// The id of `s` in `vocab` (the vocabulary this index was built from).
    #[inline]
    pub fn get(&self, vocab: &[String], s: &str) -> Option<u32> {
        self.table.find(self.table.hash(s), s, |id| vocab[id as usize].as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::{Interner, VocabIndex};

    #[test]
    fn vocab_index_finds_every_word_and_no_other() {
        let mut vocab: Vec<String> = ["", "a", "abcdefgh", "abcdefghi", "abcdefghj", "é", "中文", "abcdefg\0"]
            .map(String::from)
            .to_vec();
        vocab.extend((0..5000).map(|i| format!("word{i}")));
        let ix = VocabIndex::new(&vocab).unwrap();
        for (i, w) in vocab.iter().enumerate() {
            assert_eq!(ix.get(&vocab, w), Some(i as u32), "{w:?}");
        }
        for w in [
            "b",
            "abcdefg",
            "abcdefghk",
            "abcdefghij",
            "word5000",
            "中",
            "abcdefgh\0",
        ] {
            assert_eq!(ix.get(&vocab, w), None, "{w:?}");
        }
        let dup = ["x", "y", "x"].map(String::from).to_vec();
        assert_eq!(VocabIndex::new(&dup).err(), Some(2));
    }

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
        assert_eq!((it.get("ab"), it.get("é"), it.get("c")), (Some(3), Some(4), None));
        // Past many resizes every id still maps back to its string.
        for i in 0..10_000 {
            assert_eq!(it.intern(&format!("w{i}")), (5 + i, true));
        }
        for i in (0..10_000).step_by(97) {
            assert_eq!(it.get_str(5 + i), format!("w{i}"));
            assert_eq!(it.intern(&format!("w{i}")), (5 + i, false));
        }
        // Longer than the 8 bytes a slot keeps: equal heads, different tails.
        let long = ["abcdefghij", "abcdefghik", "abcdefgh", "abcdefghij-k"];
        let ids: Vec<(u32, bool)> = long.iter().map(|w| it.intern(w)).collect();
        assert_eq!(ids, [(10_005, true), (10_006, true), (10_007, true), (10_008, true)]);
        for (i, w) in long.iter().enumerate() {
            assert_eq!(it.intern(w), (10_005 + i as u32, false));
        }
    }
}
