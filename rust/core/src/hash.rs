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

    /// Whether this slot holds `s`, whose own slot is `probe`; `stored(id)`
    /// gives the bytes of a string longer than 8 bytes.
    #[inline]
    fn holds<'a>(&self, probe: &Slot, s: &[u8], stored: impl Fn(u32) -> &'a [u8]) -> bool {
        self.len == probe.len && self.head == probe.head && (s.len() <= 8 || stored(self.id)[8..] == s[8..])
    }
}

/// Strings numbered in order of first appearance, their bytes kept end to
/// end in one buffer: no allocation per string, and a look-up of a short
/// string touches one table slot only (what indexing does once per token).
#[derive(Default)]
pub struct Interner {
    table: hashbrown::HashTable<Slot>,
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

    /// The id of `s`, if it was interned.
    #[inline]
    pub fn get(&self, s: &str) -> Option<u32> {
        let probe = Slot::new(s.as_bytes(), 0);
        self.table
            .find(self.hasher.hash_one(s), |e| {
                e.holds(&probe, s.as_bytes(), |id| self.get_str(id).as_bytes())
            })
            .map(|e| e.id)
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
        let probe = Slot::new(s.as_bytes(), 0);
        if let Some(e) = table.find(h, |e| e.holds(&probe, s.as_bytes(), |id| str_of(id).as_bytes())) {
            return (e.id, false);
        }
        let id = ends.len() as u32;
        table.insert_unique(h, Slot { id, ..probe }, |e| hasher.hash_one(str_of(e.id)));
        bytes.push_str(s);
        ends.push(bytes.len());
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
    table: hashbrown::HashTable<Slot>,
    hasher: foldhash::fast::FixedState,
}

/// Up to the first 8 bytes of `s`, zero-padded, as one integer.
#[inline]
fn head8(s: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = s.len().min(8);
    b[..n].copy_from_slice(&s[..n]);
    u64::from_le_bytes(b)
}

impl VocabIndex {
    /// The index of `vocab`; `Err(i)` if word `i` repeats an earlier one.
    pub fn new(vocab: &[String]) -> Result<Self, usize> {
        let mut ix = VocabIndex {
            table: hashbrown::HashTable::with_capacity(vocab.len()),
            hasher: Default::default(),
        };
        for (i, w) in vocab.iter().enumerate() {
            let h = ix.hasher.hash_one(w.as_str());
            if ix.find(vocab, w, h).is_some() {
                return Err(i);
            }
            let hasher = &ix.hasher;
            ix.table.insert_unique(h, Slot::new(w.as_bytes(), i as u32), |e| {
                hasher.hash_one(vocab[e.id as usize].as_str())
            });
        }
        Ok(ix)
    }

    /// The id of `s` in `vocab` (the vocabulary this index was built from).
    #[inline]
    pub fn get(&self, vocab: &[String], s: &str) -> Option<u32> {
        self.find(vocab, s, self.hasher.hash_one(s))
    }

    #[inline]
    fn find(&self, vocab: &[String], s: &str, h: u64) -> Option<u32> {
        let b = s.as_bytes();
        let probe = Slot::new(b, 0);
        self.table
            .find(h, |e| e.holds(&probe, b, |id| vocab[id as usize].as_bytes()))
            .map(|e| e.id)
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
