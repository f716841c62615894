//! ES256 (ECDSA over P-256 with SHA-256) verification with tables of
//! multiples of each public key and of the generator, computed once.
//!
//! A verification computes `u1·G + u2·Q` and compares its x with `r`. The
//! generic code (`p256`'s verifier) recomputes a small table of `Q` per call
//! and spends 256 doublings, and `p256`'s own basepoint table holds
//! projective points (full additions, and four doublings). Here both bases
//! are fixed, so each has a table of affine multiples `j·2^(7i)·P` (`j` in
//! 1..=64, `i` in 0..37), and a scalar is recoded into 37 signed 7-bit
//! digits in `[-63, 64]` (a negative digit adds the negated point, which
//! costs one field negation). `u1·G + u2·Q` is then at most 74 mixed
//! additions into one accumulator and no doubling.
//!
//! Memory: 2368 affine points per table, 72 bytes each natively (68 in
//! wasm): about 166 KiB per key (157 KiB in wasm), shared by clones of the
//! key, plus one table for `G` per process (per VM in wasm), built with the
//! first key. Building a table costs 2368 point additions and one batched
//! inversion: about 25 verifications, once per key per VM, at bundle load.
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
use p256::elliptic_curve::ops::Reduce;
use p256::elliptic_curve::point::AffineCoordinates;
use p256::{AffinePoint, FieldBytes, ProjectivePoint, Scalar};
use sha2::{Digest, Sha256};
use std::sync::{Arc, LazyLock};

/// Bits per digit.
const WIDTH: usize = 7;
/// Digits of a 256-bit scalar: 37·7 = 259 bits hold the recoding's carry.
const WINDOWS: usize = 37;
/// Largest digit magnitude, and table entries per window.
const HALF: usize = 1 << (WIDTH - 1);

/// Affine multiples `j·2^(7i)·P` of one point: `points[HALF·i + j - 1]`.
struct Table {
    points: Vec<AffinePoint>,
}

impl Table {
    /// 2368 additions (63 per window and one doubling to the next) and one
    /// batched inversion.
    fn new(p: ProjectivePoint) -> Table {
        let mut multiples = Vec::with_capacity(WINDOWS * HALF);
        let mut base = p;
        for _ in 0..WINDOWS {
            let mut acc = base;
            for j in 1..=HALF {
                multiples.push(acc);
                if j < HALF {
                    acc += base;
                }
            }
            // acc = 64·base; the next window's base is 128·base.
            base = acc.double();
        }
        Table {
            points: ProjectivePoint::batch_normalize(multiples.as_slice()),
        }
    }

    /// `acc += digit·2^(7i)·P`.
    #[inline]
    fn add(&self, acc: &mut ProjectivePoint, window: usize, digit: i8) {
        let magnitude = usize::from(digit.unsigned_abs());
        if magnitude == 0 {
            return;
        }
        if let Some(p) = self.points.get(HALF * window + magnitude - 1) {
            if digit > 0 {
                *acc += p;
            } else {
                *acc += -p;
            }
        }
    }
}

/// The signed base-128 digits of `k`: `k = Σ d_i·2^(7i)`, `d_i` in
/// `[-63, 64]`.
fn digits(k: &Scalar) -> [i8; WINDOWS] {
    let bytes: FieldBytes = k.to_bytes();
    let mut out = [0i8; WINDOWS];
    let mut carry = 0u16;
    for (i, d) in out.iter_mut().enumerate() {
        let bit = WIDTH * i;
        // The 7 bits at `bit` from the big-endian bytes (two bytes cover
        // them; bytes past the top read as zero).
        let byte = |b: usize| -> u16 {
            31usize
                .checked_sub(b)
                .and_then(|at| bytes.get(at))
                .map_or(0, |x| u16::from(*x))
        };
        let pair = byte(bit / 8) | (byte(bit / 8 + 1) << 8);
        let value = ((pair >> (bit % 8)) & 0x7f) + carry;
        // value ≤ 128; above 64 it becomes value - 128 with a carry.
        let (digit, next) = if value > HALF as u16 {
            (i16::try_from(value).unwrap_or(0) - 128, 1)
        } else {
            (i16::try_from(value).unwrap_or(0), 0)
        };
        *d = i8::try_from(digit).unwrap_or(0);
        carry = next;
    }
    out
}

/// The generator's table, once per process (per VM in wasm).
static GENERATOR: LazyLock<Table> = LazyLock::new(|| Table::new(ProjectivePoint::GENERATOR));

/// A P-256 public key with its table of multiples.
#[derive(Clone)]
pub struct P256Key {
    key: VerifyingKey,
    table: Arc<Table>,
}

impl std::fmt::Debug for P256Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("P256Key(..)")
    }
}

impl P256Key {
    /// Builds the key's table (and the generator's, the first time), so a
    /// request never pays for either.
    pub fn new(key: VerifyingKey) -> P256Key {
        LazyLock::force(&GENERATOR);
        let table = Arc::new(Table::new(ProjectivePoint::from(*key.as_affine())));
        P256Key { key, table }
    }

    /// The key, for `p256`'s own verifier (tests compare the two).
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// `a·G + b·Q` from the two tables.
    fn mul2(&self, a: &Scalar, b: &Scalar) -> ProjectivePoint {
        let (da, db) = (digits(a), digits(b));
        let mut acc = ProjectivePoint::IDENTITY;
        for (i, (x, y)) in da.iter().zip(db.iter()).enumerate() {
            GENERATOR.add(&mut acc, i, *x);
            self.table.add(&mut acc, i, *y);
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
        let point = self.mul2(&u1, &u2);
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

    /// Scalars whose digits hit the edges: zero, one, n-1, digits of 64
    /// (a carry) and -63, and hashes.
    fn scalars() -> Vec<Scalar> {
        let mut out = vec![Scalar::ZERO, Scalar::ONE, -Scalar::ONE];
        for k in [2u64, 63, 64, 65, 127, 128, 129, 0x4040_4040_4040, u64::MAX] {
            out.push(Scalar::from(k));
            out.push(-Scalar::from(k));
        }
        for byte in [0x40u8, 0x41, 0x7f, 0x80, 0xff] {
            let bytes = FieldBytes::from([byte; 32]);
            out.push(<Scalar as Reduce<FieldBytes>>::reduce(&bytes));
        }
        for i in 0..16 {
            let h = FieldBytes::from(bytes("scalar", i));
            out.push(<Scalar as Reduce<FieldBytes>>::reduce(&h));
        }
        out
    }

    #[test]
    fn digits_recompose_the_scalar() {
        let radix = Scalar::from(128u64);
        for k in scalars() {
            let d = digits(&k);
            assert!(d.iter().all(|x| (-63..=64).contains(x)), "{d:?}");
            let mut sum = Scalar::ZERO;
            for x in d.iter().rev() {
                let term = if *x < 0 {
                    -Scalar::from(u64::from(x.unsigned_abs()))
                } else {
                    Scalar::from(u64::from(x.unsigned_abs()))
                };
                sum = sum * radix + term;
            }
            assert_eq!(sum, k);
        }
    }

    #[test]
    fn tables_give_the_linear_combination() {
        let fast = P256Key::new(*key(3).verifying_key());
        assert_eq!(fast.table.points.len(), WINDOWS * HALF);
        assert_eq!(GENERATOR.points.len(), WINDOWS * HALF);
        let q = ProjectivePoint::from(*fast.verifying_key().as_affine());
        let g = ProjectivePoint::GENERATOR;
        let all = scalars();
        for (i, a) in all.iter().enumerate() {
            // Each scalar against a few others, both ways round.
            for b in all.iter().skip(i % 5).step_by(7) {
                assert_eq!(fast.mul2(a, b), g * a + q * b);
                assert_eq!(fast.mul2(b, a), g * b + q * a);
            }
        }
    }
}
