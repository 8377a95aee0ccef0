//! Hash maps keyed by strings. FxHash is fast for integers but its hashes
//! of short strings collide in hashbrown's tag bits, costing a string compare
//! per probe; foldhash is as fast and spreads strings well. Fixed seeds keep
//! runs deterministic.

pub type StrMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::FixedState>;
pub type StrSet<K> = std::collections::HashSet<K, foldhash::fast::FixedState>;
