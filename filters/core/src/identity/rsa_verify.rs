//! RSA signature verification (RS256/384/512, PS256/384/512), public side
//! only, written for speed in wasm.
//!
//! Verification needs one modular exponentiation with a small public
//! exponent (65537: 16 squarings and one multiplication). The general
//! constant-time big-integer code in the `rsa` crate spends most of its
//! time on machinery a public operation does not need (constant-time table
//! lookups, windowing, heap-allocated temporaries), which makes a cold RS256
//! verification cost milliseconds in wasm. Here the modulus is prepared once
//! at configure time (Montgomery constants, `R² mod n`), and a verification
//! is ~17 Montgomery multiplications on fixed limbs (64-bit natively, 32-bit in wasm), with no
//! allocation but the scratch vectors.
//!
//! Nothing secret is involved (the key, signature and message are public),
//! so the code is variable-time by design. Correctness is what matters, and
//! the checks are the conservative ones: the signature must have exactly
//! the modulus length and be below it; PKCS#1 v1.5 is checked by building
//! the one valid encoding and comparing all of it (never by parsing, the
//! source of the classic Bleichenbacher-2006 forgeries); PSS follows RFC
//! 8017 §9.1.2 step by step with salt length = hash length (RFC 7518
//! §3.5). The tests check it against tokens signed by an independent
//! implementation (`jsonwebtoken` over the `rsa` crate).

use sha2::{Digest, Sha256, Sha384, Sha512};

// wasm has a 64-bit multiply but no 64×64→128 one; 32-bit limbs with 64-bit
// products are much faster there. Natively, 64-bit limbs.
#[cfg(target_arch = "wasm32")]
type Limb = u32;
#[cfg(target_arch = "wasm32")]
type Wide = u64;
#[cfg(not(target_arch = "wasm32"))]
type Limb = u64;
#[cfg(not(target_arch = "wasm32"))]
type Wide = u128;
const LIMB_BYTES: usize = std::mem::size_of::<Limb>();
const LIMB_BITS: u32 = Limb::BITS;

/// Smallest and largest accepted modulus, in bits.
pub const MIN_BITS: usize = 2048;
pub const MAX_BITS: usize = 8192;

/// A prepared RSA public key.
#[derive(Clone)]
pub struct RsaPublicKey {
    /// Modulus, little-endian limbs.
    n: Vec<Limb>,
    /// Modulus length in bytes (`k` in RFC 8017).
    k: usize,
    /// Modulus length in bits.
    bits: usize,
    e: u64,
    /// `-n⁻¹ mod 2^LIMB_BITS`.
    n0inv: Limb,
    /// `R² mod n`, `R = 2^(LIMB_BITS·limbs)`.
    r2: Vec<Limb>,
}

/// The hash of a scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    fn len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }

    fn digest(self, parts: &[&[u8]]) -> Vec<u8> {
        fn run<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
            let mut d = D::new();
            for p in parts {
                d.update(p);
            }
            d.finalize().to_vec()
        }
        match self {
            Hash::Sha256 => run::<Sha256>(parts),
            Hash::Sha384 => run::<Sha384>(parts),
            Hash::Sha512 => run::<Sha512>(parts),
        }
    }

    /// DER `DigestInfo` prefix (RFC 8017 §9.2, note 1).
    fn digest_info_prefix(self) -> &'static [u8] {
        match self {
            Hash::Sha256 => &[
                0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x01, 0x05, 0x00, 0x04, 0x20,
            ],
            Hash::Sha384 => &[
                0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x02, 0x05, 0x00, 0x04, 0x30,
            ],
            Hash::Sha512 => &[
                0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x03, 0x05, 0x00, 0x04, 0x40,
            ],
        }
    }
}

impl std::fmt::Debug for RsaPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RsaPublicKey({} bits)", self.bits)
    }
}

/// Big-endian bytes → little-endian limbs, `limbs` long.
fn to_limbs(be: &[u8], limbs: usize) -> Vec<Limb> {
    let mut out: Vec<Limb> = vec![0; limbs];
    for (i, chunk) in be.rchunks(LIMB_BYTES).enumerate() {
        let limb = chunk
            .iter()
            .fold(0 as Limb, |acc, b| (acc << 8) | Limb::from(*b));
        if let Some(slot) = out.get_mut(i) {
            *slot = limb;
        }
    }
    out
}

/// Little-endian limbs → `k` big-endian bytes (the value must fit).
fn to_bytes(limbs: &[Limb], k: usize) -> Vec<u8> {
    let mut out = vec![0u8; limbs.len() * LIMB_BYTES];
    for (chunk, limb) in out.rchunks_mut(LIMB_BYTES).zip(limbs) {
        chunk.copy_from_slice(&limb.to_be_bytes());
    }
    let skip = out.len().saturating_sub(k);
    out.split_off(skip)
}

/// `a >= b`, same length.
fn geq(a: &[Limb], b: &[Limb]) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x > y;
        }
    }
    true
}

/// `a -= b`, same length; returns the borrow.
fn sub_assign(a: &mut [Limb], b: &[Limb]) -> bool {
    let mut borrow = false;
    for (x, y) in a.iter_mut().zip(b) {
        let (d1, b1) = x.overflowing_sub(*y);
        let (d2, b2) = d1.overflowing_sub(Limb::from(borrow));
        *x = d2;
        borrow = b1 || b2;
    }
    borrow
}

/// `t[..] += m * n`, carrying into the rest of `t`.
#[inline(always)]
fn mul_add_into(t: &mut [Limb], m: Limb, n: &[Limb]) {
    let mut carry: Limb = 0;
    let mut rest = t.iter_mut();
    // `n` first: zip polls its left side first, and must not swallow the
    // limb the carry goes into.
    for (nj, tj) in n.iter().zip(&mut rest) {
        let uv = Wide::from(*tj) + Wide::from(m) * Wide::from(*nj) + Wide::from(carry);
        *tj = uv as Limb;
        carry = (uv >> LIMB_BITS) as Limb;
    }
    for tj in rest {
        if carry == 0 {
            break;
        }
        let (s, c) = tj.overflowing_add(carry);
        *tj = s;
        carry = Limb::from(c);
    }
}

impl RsaPublicKey {
    /// Prepares a key from big-endian `n` and `e`. Refuses moduli outside
    /// [`MIN_BITS`]..=[`MAX_BITS`], even moduli, and exponents that are even,
    /// below 3 or above 2³³ − 1 (large exponents are a denial-of-service
    /// vector).
    pub fn new(n_be: &[u8], e_be: &[u8]) -> Result<RsaPublicKey, &'static str> {
        let n_be = strip_zeros(n_be);
        let e_be = strip_zeros(e_be);
        let k = n_be.len();
        let top = n_be.first().copied().unwrap_or(0);
        let bits = k.saturating_sub(1) * 8 + (8 - top.leading_zeros() as usize);
        if !(MIN_BITS..=MAX_BITS).contains(&bits) {
            return Err("RSA modulus size outside 2048..8192 bits");
        }
        if n_be.last().is_none_or(|b| b & 1 == 0) {
            return Err("RSA modulus must be odd");
        }
        if e_be.len() > 8 {
            return Err("RSA public exponent too large");
        }
        let e = e_be.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        if e < 3 || e & 1 == 0 || e > (1 << 33) - 1 {
            return Err("RSA public exponent must be odd, between 3 and 2^33-1");
        }
        let limbs = k.div_ceil(LIMB_BYTES);
        let n = to_limbs(n_be, limbs);
        let n0 = n.first().copied().unwrap_or(1);
        // Newton iteration: each step doubles the correct low bits.
        let mut inv: Limb = 1;
        for _ in 0..6 {
            inv = inv.wrapping_mul((2 as Limb).wrapping_sub(n0.wrapping_mul(inv)));
        }
        let n0inv = inv.wrapping_neg();
        // R² mod n by doubling 1, 2·LIMB_BITS·limbs times, reducing each time.
        let mut r2: Vec<Limb> = vec![0; limbs];
        if let Some(first) = r2.first_mut() {
            *first = 1;
        }
        for _ in 0..(2 * LIMB_BITS as usize * limbs) {
            let mut carry: Limb = 0;
            for limb in r2.iter_mut() {
                let next = *limb >> (LIMB_BITS - 1);
                *limb = (*limb << 1) | carry;
                carry = next;
            }
            if carry == 1 || geq(&r2, &n) {
                sub_assign(&mut r2, &n);
            }
        }
        Ok(RsaPublicKey {
            n,
            k,
            bits,
            e,
            n0inv,
            r2,
        })
    }

    pub fn bits(&self) -> usize {
        self.bits
    }

    /// Montgomery product `a·b·R⁻¹ mod n` into `out`. `t` is scratch of
    /// `2·limbs + 1`.
    fn mont_mul(&self, a: &[Limb], b: &[Limb], t: &mut [Limb], out: &mut [Limb]) {
        t.fill(0);
        for (i, ai) in a.iter().enumerate() {
            if let Some(row) = t.get_mut(i..) {
                mul_add_into(row, *ai, b);
            }
        }
        self.reduce(t, out);
    }

    /// Montgomery square `a²·R⁻¹ mod n` into `out`: each cross product
    /// `a_i·a_j` is computed once and doubled, about half the limb
    /// products of [`Self::mont_mul`] before the reduction. `t` is scratch
    /// of `2·limbs + 1`.
    fn mont_sqr(&self, a: &[Limb], t: &mut [Limb], out: &mut [Limb]) {
        t.fill(0);
        // Σ_{i<j} a_i·a_j·2^(w(i+j)): row i starts at limb 2i+1.
        for (i, ai) in a.iter().enumerate() {
            if let (Some(row), Some(rest)) = (t.get_mut(2 * i + 1..), a.get(i + 1..)) {
                mul_add_into(row, *ai, rest);
            }
        }
        // Doubled (below a² < R², so no bit leaves t).
        let mut top: Limb = 0;
        for limb in t.iter_mut() {
            let next = *limb >> (LIMB_BITS - 1);
            *limb = (*limb << 1) | top;
            top = next;
        }
        // Plus the squares a_i² at limb 2i.
        let mut carry: Wide = 0;
        let mut pairs = t.chunks_exact_mut(2);
        for (ai, pair) in a.iter().zip(&mut pairs) {
            let sq = Wide::from(*ai) * Wide::from(*ai);
            if let [lo, hi] = pair {
                let low = Wide::from(*lo) + Wide::from(sq as Limb) + carry;
                *lo = low as Limb;
                let high = Wide::from(*hi) + (sq >> LIMB_BITS) + (low >> LIMB_BITS);
                *hi = high as Limb;
                carry = high >> LIMB_BITS;
            }
        }
        if let Some(last) = t.get_mut(2 * a.len()) {
            *last = last.wrapping_add(carry as Limb);
        }
        self.reduce(t, out);
    }

    /// Montgomery reduction of `t` (below `n·R`) into `out`: `t·R⁻¹ mod n`.
    fn reduce(&self, t: &mut [Limb], out: &mut [Limb]) {
        let l = self.n.len();
        for i in 0..l {
            if let Some(row) = t.get_mut(i..) {
                let m = row.first().copied().unwrap_or(0).wrapping_mul(self.n0inv);
                mul_add_into(row, m, &self.n);
            }
        }
        // The result, t[l..2l+1], is below 2n.
        let high = t.get(l..).unwrap_or(&[]);
        let top = high.get(l).copied().unwrap_or(0);
        for (o, h) in out.iter_mut().zip(high) {
            *o = *h;
        }
        if top != 0 || geq(out, &self.n) {
            sub_assign(out, &self.n);
        }
    }

    /// RSAVP1: `s^e mod n` as `k` big-endian bytes, or `None` when `sig`
    /// is not exactly `k` bytes or not below `n`.
    ///
    /// Left-to-right square-and-multiply in Montgomery form, except the
    /// last step: `e` is odd, so it ends with a multiplication, and
    /// multiplying by the plain `s` (not `s·R`) leaves the result out of
    /// Montgomery form without a conversion. For e = 65537: one conversion,
    /// 16 squarings, one multiplication.
    fn public_op(&self, sig: &[u8]) -> Option<Vec<u8>> {
        if sig.len() != self.k {
            return None;
        }
        let l = self.n.len();
        let s = to_limbs(sig, l);
        if geq(&s, &self.n) {
            return None;
        }
        let mut t: Vec<Limb> = vec![0; 2 * l + 1];
        let mut x: Vec<Limb> = vec![0; l];
        self.mont_mul(&s, &self.r2, &mut t, &mut x); // s·R
        let mut acc = x.clone();
        let mut tmp: Vec<Limb> = vec![0; l];
        let top_bit = 63 - self.e.leading_zeros();
        // Bits top_bit-1 down to 1; bit 0 (set: e is odd) is below.
        for bit in (1..top_bit).rev() {
            self.mont_sqr(&acc, &mut t, &mut tmp);
            std::mem::swap(&mut acc, &mut tmp);
            if (self.e >> bit) & 1 == 1 {
                self.mont_mul(&acc, &x, &mut t, &mut tmp);
                std::mem::swap(&mut acc, &mut tmp);
            }
        }
        self.mont_sqr(&acc, &mut t, &mut tmp);
        // (y²·R)·s·R⁻¹ = y²·s: the plain result.
        self.mont_mul(&tmp, &s, &mut t, &mut acc);
        Some(to_bytes(&acc, self.k))
    }

    /// RSASSA-PKCS1-v1_5 verification of `sig` over `msg`.
    pub fn verify_pkcs1v15(&self, hash: Hash, msg: &[u8], sig: &[u8]) -> bool {
        let Some(em) = self.public_op(sig) else {
            return false;
        };
        let prefix = hash.digest_info_prefix();
        let t_len = prefix.len() + hash.len();
        if self.k < t_len + 11 {
            return false;
        }
        let mut expected = Vec::with_capacity(self.k);
        expected.extend_from_slice(&[0x00, 0x01]);
        expected.resize(self.k - t_len - 1, 0xff);
        expected.push(0x00);
        expected.extend_from_slice(prefix);
        expected.extend_from_slice(&hash.digest(&[msg]));
        em == expected
    }

    /// RSASSA-PSS verification of `sig` over `msg`, MGF1 with the same
    /// hash, salt length = hash length.
    pub fn verify_pss(&self, hash: Hash, msg: &[u8], sig: &[u8]) -> bool {
        self.verify_pss_inner(hash, msg, sig).unwrap_or(false)
    }

    fn verify_pss_inner(&self, hash: Hash, msg: &[u8], sig: &[u8]) -> Option<bool> {
        let h_len = hash.len();
        let s_len = h_len;
        let em_bits = self.bits - 1;
        let em_len = em_bits.div_ceil(8);
        let full = self.public_op(sig)?;
        // RSAVP1 gives k bytes; EM is the low em_len of them, and any byte
        // above must be zero.
        let extra = full.len().checked_sub(em_len)?;
        if full.get(..extra)?.iter().any(|b| *b != 0) {
            return Some(false);
        }
        let em = full.get(extra..)?;
        if em_len < h_len + s_len + 2 || em.last() != Some(&0xbc) {
            return Some(false);
        }
        let db_len = em_len - h_len - 1;
        let masked_db = em.get(..db_len)?;
        let h = em.get(db_len..db_len + h_len)?;
        let unused_bits = 8 * em_len - em_bits;
        let top_mask = 0xffu8
            .checked_shr(u32::try_from(unused_bits).ok()?)
            .unwrap_or(0);
        if masked_db.first()? & !top_mask != 0 {
            return Some(false);
        }
        let mut db = mgf1(hash, h, db_len);
        for (d, m) in db.iter_mut().zip(masked_db) {
            *d ^= m;
        }
        if let Some(first) = db.first_mut() {
            *first &= top_mask;
        }
        let ps_len = em_len - h_len - s_len - 2;
        if db.get(..ps_len)?.iter().any(|b| *b != 0) || db.get(ps_len) != Some(&0x01) {
            return Some(false);
        }
        let salt = db.get(ps_len + 1..)?;
        let m_hash = hash.digest(&[msg]);
        let h2 = hash.digest(&[&[0u8; 8], &m_hash, salt]);
        Some(h == h2.as_slice())
    }
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|x| *x != 0).unwrap_or(b.len());
    b.get(first..).unwrap_or(&[])
}

/// MGF1 (RFC 8017 B.2.1).
fn mgf1(hash: Hash, seed: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + hash.len());
    let mut counter: u32 = 0;
    while out.len() < len {
        out.extend_from_slice(&hash.digest(&[seed, &counter.to_be_bytes()]));
        counter = counter.wrapping_add(1);
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_exponent_arithmetic_matches_a_reference() {
        // n = a 2048-bit odd number built from a pattern; check
        // public_op against square-and-multiply on u128-free schoolbook
        // arithmetic via num-like reference: (s^e mod n) computed by
        // repeated mont-free multiplication is out of scope here, so test
        // the identity s^e · s^-e style properties instead: 1^e = 1, and
        // (n-1)^e = n-1 for odd e.
        let mut n = vec![0xA5u8; 256];
        n[0] = 0xC3;
        n[255] |= 1;
        let key = RsaPublicKey::new(&n, &[1, 0, 1]).unwrap();
        let mut one = vec![0u8; 256];
        one[255] = 1;
        assert_eq!(key.public_op(&one).unwrap(), one);
        let mut n_minus_1 = n.clone();
        n_minus_1[255] -= 1;
        assert_eq!(key.public_op(&n_minus_1).unwrap(), n_minus_1);
        assert!(key.public_op(&n).is_none(), "s = n is refused");
        assert!(key.public_op(&n[1..]).is_none(), "short signature refused");
        // 2^65537 mod n computed by doubling reference.
        let mut two = vec![0u8; 256];
        two[255] = 2;
        let got = key.public_op(&two).unwrap();
        let limbs = 256 / LIMB_BYTES;
        let nl = to_limbs(&n, limbs);
        let mut r: Vec<Limb> = vec![0; limbs];
        r[0] = 1;
        for _ in 0..65537 {
            let mut carry: Limb = 0;
            for limb in r.iter_mut() {
                let next = *limb >> (LIMB_BITS - 1);
                *limb = (*limb << 1) | carry;
                carry = next;
            }
            if carry == 1 || geq(&r, &nl) {
                sub_assign(&mut r, &nl);
            }
        }
        assert_eq!(got, to_bytes(&r, 256));
    }

    /// `a·b mod n` by shift-and-add: slow, and independent of the
    /// Montgomery code.
    fn mulmod(a: &[Limb], b: &[Limb], n: &[Limb]) -> Vec<Limb> {
        let mut r: Vec<Limb> = vec![0; n.len()];
        for limb in b.iter().rev() {
            for bit in (0..LIMB_BITS).rev() {
                let mut carry: Limb = 0;
                for x in r.iter_mut() {
                    let next = *x >> (LIMB_BITS - 1);
                    *x = (*x << 1) | carry;
                    carry = next;
                }
                if carry == 1 || geq(&r, n) {
                    sub_assign(&mut r, n);
                }
                if (limb >> bit) & 1 == 1 {
                    let mut c = false;
                    for (x, y) in r.iter_mut().zip(a) {
                        let (s1, c1) = x.overflowing_add(*y);
                        let (s2, c2) = s1.overflowing_add(Limb::from(c));
                        *x = s2;
                        c = c1 || c2;
                    }
                    if c || geq(&r, n) {
                        sub_assign(&mut r, n);
                    }
                }
            }
        }
        r
    }

    fn powmod(s: &[Limb], e: u64, n: &[Limb]) -> Vec<Limb> {
        let mut acc: Vec<Limb> = vec![0; n.len()];
        acc[0] = 1;
        for bit in (0..64 - e.leading_zeros()).rev() {
            acc = mulmod(&acc, &acc, n);
            if (e >> bit) & 1 == 1 {
                acc = mulmod(&acc, s, n);
            }
        }
        acc
    }

    /// Deterministic bytes from a label (SHA-256 in counter mode).
    fn filler(label: &str, len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0u32;
        while out.len() < len {
            out.extend_from_slice(&Sha256::digest(format!("{label}/{i}").as_bytes()));
            i += 1;
        }
        out.truncate(len);
        out
    }

    #[test]
    fn squaring_and_exponentiation_match_a_reference() {
        for (bits, e) in [
            (2048usize, 65537u64),
            (2048, 3),
            (3072, 17),
            (2056, (1 << 33) - 1),
        ] {
            let k = bits / 8;
            let mut n = filler(&format!("n/{bits}/{e}"), k);
            n[0] |= 0x80;
            n[k - 1] |= 1;
            let key = RsaPublicKey::new(&n, &e.to_be_bytes()).unwrap();
            let l = key.n.len();
            let mut t: Vec<Limb> = vec![0; 2 * l + 1];
            for i in 0..4 {
                let mut sig = filler(&format!("s/{bits}/{e}/{i}"), k);
                sig[0] &= 0x7f;
                if i == 3 {
                    // All ones below n's top bit: every carry path.
                    sig.fill(0xff);
                    sig[0] = 0x7f;
                }
                let s = to_limbs(&sig, l);
                let (mut sq, mut mul) = (vec![0; l], vec![0; l]);
                key.mont_sqr(&s, &mut t, &mut sq);
                key.mont_mul(&s, &s, &mut t, &mut mul);
                assert_eq!(sq, mul, "{bits} bits, e = {e}, input {i}");
                let want = to_bytes(&powmod(&s, e, &key.n), k);
                assert_eq!(key.public_op(&sig).unwrap(), want, "{bits} bits, e = {e}");
            }
        }
    }

    #[test]
    fn refuses_bad_keys() {
        assert!(
            RsaPublicKey::new(&[0xff; 128], &[1, 0, 1]).is_err(),
            "1024 bits"
        );
        let mut even = vec![0xffu8; 256];
        even[255] = 0xfe;
        assert!(RsaPublicKey::new(&even, &[1, 0, 1]).is_err());
        assert!(RsaPublicKey::new(&[0xff; 256], &[1]).is_err());
        assert!(RsaPublicKey::new(&[0xff; 256], &[2]).is_err());
        assert!(RsaPublicKey::new(&[0xff; 256], &[0xff; 9]).is_err());
    }
}
