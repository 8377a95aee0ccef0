//! Walking one term's postings: doc ids decoded a block at a time, values
//! only when asked for (a skipped block's values are never decoded).

use super::block::{unpack, Header, Payload};
use super::{TermRef, BLOCK, END};

/// Walks one term's postings in doc id order.
pub struct Cursor<'a, P: Payload> {
    store: &'a [u8],
    region: usize,
    pub(super) n_blocks: usize,
    payload: P,
    pub(super) block: usize,
    pos: usize,
    len: usize,
    docs: [u32; BLOCK],
    values: [P::Value; BLOCK],
    values_decoded: bool,
    /// Current doc id, `END` when exhausted.
    pub doc: u32,
}

impl<'a, P: Payload> Cursor<'a, P> {
    pub fn new(store: &'a [u8], t: TermRef, payload: P) -> Self {
        let mut c = Cursor {
            store,
            region: t.offset,
            n_blocks: t.n_blocks,
            payload,
            block: 0,
            pos: 0,
            len: 0,
            docs: [0; BLOCK],
            values: [P::Value::default(); BLOCK],
            values_decoded: false,
            doc: END,
        };
        if c.n_blocks > 0 {
            c.load_block(0);
            c.doc = c.docs[0];
        }
        c
    }

    #[inline]
    pub(super) fn header(&self, bi: usize) -> Header<'a> {
        Header::at(self.store, self.region, bi)
    }

    /// Decode block `bi`'s doc ids (its values wait until asked for).
    fn load_block(&mut self, bi: usize) {
        let h = self.header(bi);
        let n = h.count();
        let base = if bi == 0 { 0 } else { self.header(bi - 1).last() };
        unpack(&self.store[self.region + h.data()..], h.doc_bits(), n, &mut self.docs);
        let mut acc = base;
        for d in self.docs[..n].iter_mut() {
            acc = acc.wrapping_add(*d);
            *d = acc;
        }
        self.block = bi;
        self.len = n;
        self.pos = 0;
        self.values_decoded = false;
    }

    #[inline]
    fn ensure_values(&mut self) {
        if !self.values_decoded {
            let h = self.header(self.block);
            let data = self.region + h.data() + h.doc_bytes();
            self.payload
                .decode(&self.store[data..], h.value_bits(), self.len, &mut self.values);
            self.values_decoded = true;
        }
    }

    /// Value at the current posting (decoded lazily per block).
    #[inline]
    pub fn value(&mut self) -> P::Value {
        self.ensure_values();
        self.values[self.pos]
    }

    #[inline]
    pub fn next(&mut self) {
        self.pos += 1;
        if self.pos < self.len {
            self.doc = self.docs[self.pos];
        } else if self.block + 1 < self.n_blocks {
            self.load_block(self.block + 1);
            self.doc = self.docs[0];
        } else {
            self.doc = END;
        }
    }

    /// Move to the first posting with doc >= target.
    #[inline]
    pub fn advance(&mut self, target: u32) {
        if self.doc >= target {
            return;
        }
        if self.header(self.block).last() < target {
            // Skip whole blocks by their last doc id, without decoding them.
            let mut bi = self.block + 1;
            while bi < self.n_blocks && self.header(bi).last() < target {
                bi += 1;
            }
            if bi == self.n_blocks {
                self.doc = END;
                self.pos = self.len;
                self.block = self.n_blocks - 1;
                return;
            }
            self.load_block(bi);
        }
        while self.docs[self.pos] < target {
            self.pos += 1;
        }
        self.doc = self.docs[self.pos];
    }

    /// Call `f(doc, value)` for every posting with doc < `hi`, leaving the
    /// cursor at the first doc >= `hi`.
    #[inline]
    pub fn for_each_until(&mut self, hi: u32, mut f: impl FnMut(u32, P::Value)) {
        loop {
            if self.doc >= hi {
                return;
            }
            self.ensure_values();
            if self.header(self.block).last() < hi {
                for j in self.pos..self.len {
                    f(self.docs[j], self.values[j]);
                }
                if self.block + 1 < self.n_blocks {
                    self.load_block(self.block + 1);
                    self.doc = self.docs[0];
                } else {
                    self.pos = self.len;
                    self.doc = END;
                    return;
                }
            } else {
                let mut i = self.pos;
                // Terminates: the block's last doc is >= hi.
                while self.docs[i] < hi {
                    f(self.docs[i], self.values[i]);
                    i += 1;
                }
                self.pos = i;
                self.doc = self.docs[i];
                return;
            }
        }
    }
}
