//! The verified-token cache, one per VM.
//!
//! An RSA or ECDSA verification in wasm costs hundreds of microseconds; a
//! client sends the same token on every request of a session. So a
//! verified token's [`Identity`] is kept, keyed by the token itself (its
//! exact bytes are stored and compared on every probe, so any change to any
//! byte is a miss), until the token's `exp` (plus the provider's skew). A
//! hit costs a hash of the token's last bytes, a hash-map probe and one
//! comparison of the whole token: no cryptographic hash, which in wasm (no
//! SHA instructions) cost more than everything else on a hit.
//!
//! The map's hash reads only the length and the last 32 bytes (the end of
//! the signature, uniform for any signed token). That is not keyed, and it
//! need not be: equality is exact, so a collision can only lengthen a probe,
//! and only verified tokens are inserted, so nobody without the issuer's key
//! can fill a bucket.
//!
//! Only the signature and claim mapping are cached: the time and audience
//! checks run again on every hit (they depend on the request), and an entry
//! is ignored when its provider's fingerprint changed (a key rotation or
//! any other edit of the `IdentityProvider`).
//!
//! Memory: each entry holds its token (bounded by `maxTokenBytes`, 8 KiB
//! by default; typical access tokens are 1–2 KiB) and its [`Identity`].
//!
//! The bound is enforced with the CLOCK algorithm (second-chance LRU): O(1)
//! per operation, no linked lists, expired entries evicted first. Failed
//! verifications are not cached, so a flood of forged tokens cannot push
//! good entries out; it can only cost the attacker's own CPU.

use super::claims::Identity;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

/// Default number of entries.
pub const DEFAULT_CAPACITY: usize = 1024;

/// A verified token.
#[derive(Debug, Clone)]
pub struct CachedToken {
    pub identity: Arc<Identity>,
    /// [`super::Provider::fingerprint`] at verification time.
    pub fingerprint: [u8; 32],
    /// Unix seconds after which the entry is dead.
    pub expires_at: u64,
}

/// FNV-1a over a key's length and last 32 bytes (see the module docs for
/// why that is enough).
struct TailHasher(u64);

impl Default for TailHasher {
    fn default() -> Self {
        TailHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for TailHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let tail = bytes.get(bytes.len().saturating_sub(32)..).unwrap_or(bytes);
        let len = bytes.len() as u64;
        for b in len.to_le_bytes().iter().chain(tail) {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

struct Slot {
    key: Arc<str>,
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
    index: HashMap<Arc<str>, usize, BuildHasherDefault<TailHasher>>,
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
    pub fn get(&mut self, key: &str, now: u64) -> Option<&CachedToken> {
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
    pub fn remove(&mut self, key: &str) {
        let Some(i) = self.index.remove(key) else {
            return;
        };
        if i >= self.slots.len() {
            return;
        }
        self.slots.swap_remove(i);
        if let Some(moved) = self.slots.get(i) {
            self.index.insert(moved.key.clone(), i);
        }
        if self.hand >= self.slots.len() {
            self.hand = 0;
        }
    }

    /// Inserts (or replaces) an entry, evicting one if the cache is full.
    /// Entries already dead at `now` are not stored.
    pub fn insert(&mut self, key: &str, entry: CachedToken, now: u64) {
        if self.capacity == 0 || now >= entry.expires_at {
            return;
        }
        if let Some(&i) = self.index.get(key)
            && let Some(slot) = self.slots.get_mut(i)
        {
            slot.entry = entry;
            slot.referenced = true;
            return;
        }
        if self.slots.len() >= self.capacity {
            self.evict_one(now);
        }
        let key: Arc<str> = Arc::from(key);
        self.index.insert(key.clone(), self.slots.len());
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
                let key = slot.key.clone();
                self.remove(&key);
                self.stats.expirations += 1;
                return;
            }
            if slot.referenced {
                slot.referenced = false;
                self.hand += 1;
                continue;
            }
            let key = slot.key.clone();
            self.remove(&key);
            self.stats.evictions += 1;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::identity::claims::Verification;

    fn entry(subject: &str) -> CachedToken {
        let mut claims = serde_json::Map::new();
        claims.insert("iss".into(), "https://idp".into());
        claims.insert("sub".into(), subject.into());
        let identity = crate::identity::claims::build_identity(
            "p",
            claims,
            &crate::identity::claims::ClaimMapping::compile(&Default::default(), "").unwrap(),
            &[],
            Verification::EnvoyJwtAuthn,
        )
        .unwrap();
        CachedToken {
            identity: Arc::new(identity),
            fingerprint: [0; 32],
            expires_at: 100,
        }
    }

    #[test]
    fn tokens_with_the_same_hash_are_told_apart_by_their_bytes() {
        // Same length, same last 32 bytes: the same bucket, different tokens.
        let tail = "x".repeat(40);
        let a = format!("aaaa.{tail}");
        let b = format!("bbbb.{tail}");
        let mut cache = TokenCache::new(8);
        cache.insert(&a, entry("alice"), 10);
        assert!(cache.get(&b, 10).is_none());
        cache.insert(&b, entry("bob"), 10);
        assert_eq!(cache.get(&a, 10).unwrap().identity.subject, "alice");
        assert_eq!(cache.get(&b, 10).unwrap().identity.subject, "bob");
        // A prefix or an extension of a cached token is another token.
        assert!(cache.get(&a[1..], 10).is_none());
        assert!(cache.get(&format!("{a}x"), 10).is_none());
        // Expiry is checked against the time of each probe.
        assert!(cache.get(&a, 100).is_none());
        assert_eq!(cache.len(), 1);
    }
}
