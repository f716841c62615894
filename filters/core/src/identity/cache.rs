//! The verified-token cache, one per VM.
//!
//! An RSA or ECDSA verification in wasm costs around a millisecond; a client
//! sends the same token on every request of a session. So a verified token's
//! [`Identity`] is kept, keyed by the SHA-256 of the whole token (the token
//! itself is never stored, and any change to any byte is a miss), until the
//! token's `exp` (plus the provider's skew). A hit costs one SHA-256 of the
//! token and a hash-map probe.
//!
//! Only the signature and claim mapping are cached: the time and audience
//! checks run again on every hit (they depend on the request), and an entry
//! is ignored when its provider's fingerprint changed (a key rotation or
//! any other edit of the `IdentityProvider`).
//!
//! The bound is enforced with the CLOCK algorithm (second-chance LRU): O(1)
//! per operation, no linked lists, expired entries evicted first. Failed
//! verifications are not cached, so a flood of forged tokens cannot push
//! good entries out; it can only cost the attacker's own CPU.

use super::claims::Identity;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

/// Default number of entries.
pub const DEFAULT_CAPACITY: usize = 1024;

/// The cache key of a token: SHA-256 of its bytes.
pub type TokenKey = [u8; 32];

/// SHA-256 of `token`.
pub fn token_key(token: &str) -> TokenKey {
    let mut key = [0u8; 32];
    key.copy_from_slice(&Sha256::digest(token.as_bytes()));
    key
}

/// A verified token.
#[derive(Debug, Clone)]
pub struct CachedToken {
    pub identity: Arc<Identity>,
    /// [`super::Provider::fingerprint`] at verification time.
    pub fingerprint: [u8; 32],
    /// Unix seconds after which the entry is dead.
    pub expires_at: u64,
}

/// Keys are already uniform hashes: use their first eight bytes.
#[derive(Default)]
struct PrefixHasher(u64);

impl Hasher for PrefixHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes.iter().take(8) {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
}

struct Slot {
    key: TokenKey,
    entry: CachedToken,
    referenced: bool,
}

/// Cache statistics, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub expirations: u64,
}

/// A bounded cache of verified tokens. Not thread-safe by design: a
/// proxy-wasm VM is single-threaded, and each VM has its own.
pub struct TokenCache {
    index: HashMap<TokenKey, usize, BuildHasherDefault<PrefixHasher>>,
    slots: Vec<Slot>,
    hand: usize,
    capacity: usize,
    stats: CacheStats,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("len", &self.slots.len())
            .field("capacity", &self.capacity)
            .field("stats", &self.stats)
            .finish()
    }
}

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache::new(DEFAULT_CAPACITY)
    }
}

impl TokenCache {
    /// A cache holding at most `capacity` entries (0 disables caching).
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            index: HashMap::default(),
            slots: Vec::new(),
            hand: 0,
            capacity,
            stats: CacheStats::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// Drops everything (for example when a new bundle arrives, although
    /// fingerprints already make stale entries unreachable).
    pub fn clear(&mut self) {
        self.index.clear();
        self.slots.clear();
        self.hand = 0;
    }

    /// The live entry for `key` at `now` (Unix seconds). An expired entry is
    /// removed and reported as a miss.
    pub fn get(&mut self, key: &TokenKey, now: u64) -> Option<&CachedToken> {
        let Some(&i) = self.index.get(key) else {
            self.stats.misses += 1;
            return None;
        };
        let expired = self.slots.get(i).is_none_or(|s| now >= s.entry.expires_at);
        if expired {
            self.remove(key);
            self.stats.expirations += 1;
            self.stats.misses += 1;
            return None;
        }
        self.stats.hits += 1;
        let slot = self.slots.get_mut(i)?;
        slot.referenced = true;
        Some(&slot.entry)
    }

    /// Removes `key`, if present.
    pub fn remove(&mut self, key: &TokenKey) {
        let Some(i) = self.index.remove(key) else {
            return;
        };
        if i >= self.slots.len() {
            return;
        }
        self.slots.swap_remove(i);
        if let Some(moved) = self.slots.get(i) {
            self.index.insert(moved.key, i);
        }
        if self.hand >= self.slots.len() {
            self.hand = 0;
        }
    }

    /// Inserts (or replaces) an entry, evicting one if the cache is full.
    /// Entries already dead at `now` are not stored.
    pub fn insert(&mut self, key: TokenKey, entry: CachedToken, now: u64) {
        if self.capacity == 0 || now >= entry.expires_at {
            return;
        }
        if let Some(&i) = self.index.get(&key)
            && let Some(slot) = self.slots.get_mut(i)
        {
            slot.entry = entry;
            slot.referenced = true;
            return;
        }
        if self.slots.len() >= self.capacity {
            self.evict_one(now);
        }
        self.index.insert(key, self.slots.len());
        self.slots.push(Slot {
            key,
            entry,
            // New entries get no second chance until they are used once.
            referenced: false,
        });
    }

    fn evict_one(&mut self, now: u64) {
        // Two sweeps at most: the first clears reference bits.
        let n = self.slots.len();
        for _ in 0..2 * n.max(1) {
            if self.hand >= self.slots.len() {
                self.hand = 0;
            }
            let Some(slot) = self.slots.get_mut(self.hand) else {
                return;
            };
            if now >= slot.entry.expires_at {
                let key = slot.key;
                self.remove(&key);
                self.stats.expirations += 1;
                return;
            }
            if slot.referenced {
                slot.referenced = false;
                self.hand += 1;
                continue;
            }
            let key = slot.key;
            self.remove(&key);
            self.stats.evictions += 1;
            return;
        }
    }
}
