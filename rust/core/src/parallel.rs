//! Batches on rayon: the `threads=` pools, built once per size and reused (starting a
//! pool starts OS threads, which costs more than a small search), and a batch helper
//! that runs a single item on the calling thread (no hand-off to a worker).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use rayon::prelude::*;

use crate::error::{Error, Result};

/// The number of worker threads `threads` asks for, at most the number of cores: more
/// threads than cores only add switching, and a user-given size must not start thousands
/// of OS threads (nor one pool per distinct value).
pub fn effective_threads(threads: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    threads.clamp(1, cores)
}

/// The pool for `threads` workers (`None`: rayon's global pool, all cores). Requests above
/// the number of cores get the all-cores pool; pools are built once per size and shared.
pub fn thread_pool(threads: Option<usize>) -> Result<Option<Arc<rayon::ThreadPool>>> {
    // A process-wide cache of OS thread pools (at most one per core count): sharing them
    // is the point, and they hold no data.
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<rayon::ThreadPool>>>> = OnceLock::new();
    let t = match threads {
        None => return Ok(None),
        Some(0) => return Err(Error::invalid("threads must be >= 1 (or None for all cores)")),
        Some(t) => effective_threads(t),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_counts_are_capped_at_the_cores_and_pools_shared() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let big = thread_pool(Some(10_000)).unwrap().unwrap();
        assert_eq!(big.current_num_threads(), cores);
        let again = thread_pool(Some(cores + 7)).unwrap().unwrap();
        assert!(Arc::ptr_eq(&big, &again));
        assert!(thread_pool(Some(0)).is_err());
        assert!(thread_pool(None).unwrap().is_none());
    }
}
