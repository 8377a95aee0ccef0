//! Batches on rayon: the `threads=` pools, built once per size and reused (starting a
//! pool starts OS threads, which costs more than a small search), and a batch helper
//! that runs a single item on the calling thread (no hand-off to a worker).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use rayon::prelude::*;

use crate::error::{Error, Result};

/// The pool for `threads` workers (`None`: rayon's global pool, all cores).
pub fn thread_pool(threads: Option<usize>) -> Result<Option<Arc<rayon::ThreadPool>>> {
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<rayon::ThreadPool>>>> = OnceLock::new();
    let t = match threads {
        None => return Ok(None),
        Some(0) => return Err(Error::invalid("threads must be >= 1 (or None for all cores)")),
        Some(t) => t,
    };
    let mut pools = POOLS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(p) = pools.get(&t) {
        return Ok(Some(p.clone()));
    }
    let p = rayon::ThreadPoolBuilder::new()
        .num_threads(t)
        .build()
        .map_err(|e| Error::invalid(format!("cannot start {t} threads: {e}")))?;
    let p = Arc::new(p);
    pools.insert(t, p.clone());
    Ok(Some(p))
}

/// `f` over `items` in parallel on `pool` (or the global pool); one item runs inline.
pub fn map_batch<T: Sync, R: Send>(
    items: &[T],
    pool: Option<&rayon::ThreadPool>,
    f: impl Fn(&T) -> R + Sync + Send,
) -> Vec<R> {
    if items.len() <= 1 {
        return items.iter().map(f).collect();
    }
    let run = || items.par_iter().map(&f).collect();
    match pool {
        Some(p) => p.install(run),
        None => run(),
    }
}
