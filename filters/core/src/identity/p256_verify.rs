//! ES256 (ECDSA over P-256 with SHA-256) verification with a table of
//! multiples of each public key, computed once when the key is loaded.
//!
//! A verification computes `u1·G + u2·Q` and compares its x with `r`. The
//! generic code (`p256`'s verifier) recomputes a small table of `Q` per call
//! and spends 256 doublings; with the keys fixed at configure time, the
//! multiples `j·16^i·Q` (`j` in 1..=15, `i` in 0..64) are computed once, so
//! `u2·Q` is at most 64 mixed additions and no doubling. `u1·G` uses
//! `p256`'s own precomputed basepoint table (feature `precomputed-tables`).
//! The table holds 960 affine points, about 70 KiB per key.
//!
//! Everything here is public (key, signature, message), so the arithmetic is
//! variable-time. The checks are the ones `p256::ecdsa` makes: `r` and `s`
//! in `[1, n-1]` (by `Signature::from_slice`), `z` the SHA-256 of the input
//! reduced mod `n`, and `x(R) mod n == r`; the point at infinity is
//! refused. High `s` is accepted, as `p256` does (JWS does not require
//! low-s).

use p256::ecdsa::{Signature, VerifyingKey};
use p256::elliptic_curve::BatchNormalize;
use p256::elliptic_curve::Group;
use p256::elliptic_curve::ops::{MulByGeneratorVartime, Reduce};
use p256::elliptic_curve::point::AffineCoordinates;
use p256::{AffinePoint, FieldBytes, ProjectivePoint, Scalar};
use sha2::{Digest, Sha256};

/// 4-bit digits of a 256-bit scalar.
const WINDOWS: usize = 64;
/// Non-zero digit values.
const DIGITS: usize = 15;

/// A P-256 public key with its table of multiples.
#[derive(Clone)]
pub struct P256Key {
    key: VerifyingKey,
    /// `table[DIGITS·i + j - 1] = j·16^i·Q`.
    table: Vec<AffinePoint>,
}

impl std::fmt::Debug for P256Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("P256Key(..)")
    }
}

impl P256Key {
    /// Builds the table: 960 additions and one batched inversion.
    pub fn new(key: VerifyingKey) -> P256Key {
        let q = ProjectivePoint::from(*key.as_affine());
        let mut multiples = Vec::with_capacity(WINDOWS * DIGITS);
        let mut base = q;
        for _ in 0..WINDOWS {
            let mut acc = base;
            for _ in 0..DIGITS {
                multiples.push(acc);
                acc += base;
            }
            // acc = 16·base
            base = acc;
        }
        let table = ProjectivePoint::batch_normalize(multiples.as_slice());
        P256Key { key, table }
    }

    /// The key, for `p256`'s own verifier (tests compare the two).
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// `k·Q` from the table.
    fn mul(&self, k: &Scalar) -> ProjectivePoint {
        let bytes: FieldBytes = k.to_bytes();
        let mut acc = ProjectivePoint::IDENTITY;
        // Big-endian bytes: the last byte holds digits 0 and 1.
        for (i, byte) in bytes.iter().rev().enumerate() {
            for (half, digit) in [(0, byte & 0x0f), (1, byte >> 4)] {
                if digit != 0
                    && let Some(p) = self
                        .table
                        .get(DIGITS * (2 * i + half) + usize::from(digit) - 1)
                {
                    acc += p;
                }
            }
        }
        acc
    }

    /// Checks a JWS ES256 signature (`r || s`, 64 bytes) over `input`.
    pub fn verify(&self, input: &[u8], signature: &[u8]) -> bool {
        let Ok(sig) = Signature::from_slice(signature) else {
            return false;
        };
        let (r, s) = sig.split_scalars();
        let z = <Scalar as Reduce<FieldBytes>>::reduce(&Sha256::digest(input));
        let Some(s_inv) = Option::<Scalar>::from(s.invert_vartime()) else {
            return false;
        };
        let u1 = z * s_inv;
        let u2 = *r * s_inv;
        let point = ProjectivePoint::mul_by_generator_vartime(&u1) + self.mul(&u2);
        if bool::from(point.is_identity()) {
            return false;
        }
        let x = point.to_affine().x();
        <Scalar as Reduce<FieldBytes>>::reduce(&x) == *r
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::{Signer, Verifier};

    /// Deterministic "random" bytes: SHA-256 of a label and a counter.
    fn bytes(label: &str, i: u32) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(&Sha256::digest(format!("{label}/{i}").as_bytes()));
        out
    }

    fn key(i: u32) -> SigningKey {
        SigningKey::from_slice(&bytes("key", i)).unwrap()
    }

    /// Both verifiers' answers for one (key, message, signature).
    fn both(fast: &P256Key, msg: &[u8], sig: &[u8]) -> (bool, bool) {
        let slow = Signature::from_slice(sig)
            .map(|s| fast.verifying_key().verify(msg, &s).is_ok())
            .unwrap_or(false);
        (fast.verify(msg, sig), slow)
    }

    #[test]
    fn agrees_with_p256_on_valid_and_tampered_signatures() {
        for k in 0..4 {
            let sk = key(k);
            let fast = P256Key::new(*sk.verifying_key());
            let other = P256Key::new(*key(k + 100).verifying_key());
            for m in 0..16 {
                let msg = bytes("msg", k * 100 + m);
                let sig: Signature = sk.sign(&msg);
                let sig = sig.to_bytes().to_vec();
                assert_eq!(both(&fast, &msg, &sig), (true, true), "key {k} msg {m}");
                // Another key, another message, any flipped bit of r or s.
                assert_eq!(both(&other, &msg, &sig), (false, false));
                let mut msg2 = msg;
                msg2[(m as usize) % 32] ^= 1;
                assert_eq!(both(&fast, &msg2, &sig), (false, false));
                for bit in [0usize, 7, 100, 255, 256, 300, 511] {
                    let mut bad = sig.clone();
                    bad[bit / 8] ^= 1 << (bit % 8);
                    assert_eq!(both(&fast, &msg, &bad), (false, false), "bit {bit}");
                }
                // s and n - s both verify (ECDSA is malleable; JWS does not
                // require low-s, nor does p256's verifier).
                let parsed = Signature::from_slice(&sig).unwrap();
                let (r, s) = parsed.split_scalars();
                let flipped = Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap();
                assert_eq!(both(&fast, &msg, &flipped.to_bytes()), (true, true));
            }
        }
    }

    #[test]
    fn refuses_out_of_range_and_malformed_signatures() {
        let sk = key(7);
        let fast = P256Key::new(*sk.verifying_key());
        let msg = b"header.payload";
        let sig: Signature = sk.sign(msg);
        let sig = sig.to_bytes().to_vec();
        // n, the order of the group: r or s equal to it (or 0, or all ones)
        // is out of range.
        let n = hex::decode("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551")
            .unwrap();
        for bad_r in [vec![0u8; 32], n.clone(), vec![0xff; 32]] {
            let mut bad = bad_r.clone();
            bad.extend_from_slice(&sig[32..]);
            assert_eq!(both(&fast, msg, &bad), (false, false));
            let mut bad = sig[..32].to_vec();
            bad.extend_from_slice(&bad_r);
            assert_eq!(both(&fast, msg, &bad), (false, false));
        }
        for len in [0, 1, 63, 65, 72] {
            let bad: Vec<u8> = sig.iter().copied().cycle().take(len).collect();
            assert!(!fast.verify(msg, &bad), "length {len}");
        }
    }

    #[test]
    fn table_holds_the_multiples_of_the_key() {
        let fast = P256Key::new(*key(3).verifying_key());
        assert_eq!(fast.table.len(), WINDOWS * DIGITS);
        let q = ProjectivePoint::from(*fast.verifying_key().as_affine());
        for k in [1u64, 2, 15, 16, 17, 255, 256, 0xdead_beef, u64::MAX] {
            let k = Scalar::from(k);
            assert_eq!(fast.mul(&k), q * k);
        }
        let big = <Scalar as Reduce<FieldBytes>>::reduce(&Sha256::digest(b"big"));
        assert_eq!(fast.mul(&big), q * big);
        assert_eq!(fast.mul(&-Scalar::ONE), -q);
    }
}
