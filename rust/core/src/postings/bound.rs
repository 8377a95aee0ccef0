//! Block-max bounds: how a block's bound is made at encode time, and what a
//! cursor can say about the values ahead of it from the headers alone
//! (nothing decoded), for MaxScore-style pruning.

use super::block::Payload;
use super::cursor::Cursor;
use super::END;

/// Round a bound up so float noise never makes it smaller than a real value.
#[inline]
pub fn round_up(x: f32) -> f32 {
    x * (1.0 + 1e-5) + f32::MIN_POSITIVE
}

impl<P: Payload> Cursor<'_, P> {
    /// Upper bound of what this term can give document `target` (the bound
    /// of the block that would hold it; 0 if none can). For increasing
    /// targets: `hint` remembers the block reached (start it at 0), so headers
    /// are walked once per query however many targets are asked about while
    /// the cursor stays behind.
    #[inline]
    pub fn bound_at_from(&self, hint: &mut usize, target: u32) -> f32 {
        if self.doc == END || self.doc > target {
            return 0.0;
        }
        let mut bi = (*hint).max(self.block);
        while bi < self.n_blocks && self.header(bi).last() < target {
            bi += 1;
        }
        *hint = bi;
        if bi == self.n_blocks {
            return 0.0;
        }
        self.header(bi).bound()
    }

    /// For a cursor at doc >= `target`: (bound of this term for every doc from
    /// `target` up to the returned boundary, the boundary). At `target`
    /// itself that is the current block's bound up to its last doc; past it,
    /// 0 up to the next posting.
    #[inline]
    pub fn block_bound(&self, target: u32) -> (f32, u32) {
        if self.doc == END {
            (0.0, END)
        } else if self.doc > target {
            (0.0, self.doc)
        } else {
            let h = self.header(self.block);
            (h.bound(), h.last().saturating_add(1))
        }
    }
}
