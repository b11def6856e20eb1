//! Exact moment statistics of decimal values: integer sums per pane, and the mean and
//! population standard deviation derived from them as the correctly rounded `f64` of the
//! exact rational (mean) and of the exact square root of a rational (deviation).
//!
//! A value is exact when it is a decimal with at most [`SCALE_DIGITS`] fractional digits
//! and `|value| * 10^8 <= 2^53` (`|value| <= 90,071,992.547...`): it is then held as the
//! integer `value * 10^8`. A summary stays exact while every value added or merged into it
//! is exact, its count is at most 2^32 and its sum of squares fits 128 bits; otherwise it
//! falls back, for good, to [`MomentStats`] (the stable float path), starting from its
//! exact moments. Which path a window took is the path of its merged summary
//! ([`DecimalMoments::is_exact`]).
//!
//! Correct rounding without big integers: a float candidate is nudged until the exact value
//! lies between the midpoints to its neighbours, each comparison done exactly in 256-bit
//! integers (the bounds above keep every product within 256 bits).

use std::cmp::Ordering;

use super::aggregate::{Aggregate, MomentStats};

/// Fractional digits of the exact representation.
pub const SCALE_DIGITS: u32 = 8;
/// `10^SCALE_DIGITS`.
pub const SCALE: i64 = 100_000_000;
/// Largest `|scaled|` of an exact value: `2^53`, so that `scaled as f64` is exact.
pub const MAX_SCALED: u64 = 1 << 53;
/// Largest count of an exact summary.
pub const MAX_EXACT_COUNT: u64 = u32::MAX as u64;

/// A parsed number: its `f64` (correctly rounded) and, when exact, `value * 10^8`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decimal {
    pub value: f64,
    pub scaled: Option<i64>,
}

impl Decimal {
    /// The exact decimal `scaled / 10^8`; `None` beyond [`MAX_SCALED`].
    pub fn from_scaled(scaled: i64) -> Option<Self> {
        (scaled.unsigned_abs() <= MAX_SCALED).then(|| Decimal {
            // Both operands are exact doubles and IEEE division rounds correctly.
            value: scaled as f64 / SCALE as f64,
            scaled: Some(scaled),
        })
    }

    /// A value held as a float only.
    pub fn inexact(value: f64) -> Self {
        Decimal {
            value,
            scaled: None,
        }
    }
}

/// Count, mean and population standard deviation of [`Decimal`]s: exact integer sums
/// while they fit, [`MomentStats`] otherwise (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DecimalMoments {
    Exact {
        count: u64,
        /// Sum of the scaled values (at most 2^32 * 2^53 in magnitude).
        sum: i128,
        /// Sum of their squares.
        sum_sq: u128,
    },
    Float(MomentStats),
}

impl DecimalMoments {
    /// The summary of the given values, added in order.
    pub fn of(values: &[Decimal]) -> Self {
        let mut stats = Self::empty();
        for v in values {
            stats.add(v);
        }
        stats
    }

    pub fn count(&self) -> u64 {
        match self {
            DecimalMoments::Exact { count, .. } => *count,
            DecimalMoments::Float(m) => m.count(),
        }
    }

    /// Whether the results are the correctly rounded exact ones.
    pub fn is_exact(&self) -> bool {
        matches!(self, DecimalMoments::Exact { .. })
    }

    /// Arithmetic mean; `None` when empty.
    pub fn mean(&self) -> Option<f64> {
        match *self {
            DecimalMoments::Exact { count: 0, .. } => None,
            DecimalMoments::Exact { count, sum, .. } => Some(exact_mean(count, sum)),
            DecimalMoments::Float(m) => m.mean(),
        }
    }

    /// Population standard deviation; `0.0` for one value, `None` when empty.
    pub fn population_std(&self) -> Option<f64> {
        match *self {
            DecimalMoments::Exact { count: 0, .. } => None,
            DecimalMoments::Exact {
                count, sum, sum_sq, ..
            } => Some(exact_std(count, sum, sum_sq)),
            DecimalMoments::Float(m) => m.population_std(),
        }
    }

    /// The float summary of the same values (the fallback's starting point).
    fn to_float(self) -> MomentStats {
        match self {
            DecimalMoments::Float(m) => m,
            DecimalMoments::Exact { count: 0, .. } => MomentStats::empty(),
            DecimalMoments::Exact { count, sum, sum_sq } => {
                let m2 = numerator(count, sum, sum_sq).to_f64()
                    / (count as f64 * (SCALE as f64 * SCALE as f64));
                MomentStats::from_moments(count, exact_mean(count, sum), m2)
            }
        }
    }
}

impl Aggregate for DecimalMoments {
    type Value = Decimal;

    fn empty() -> Self {
        DecimalMoments::Exact {
            count: 0,
            sum: 0,
            sum_sq: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.count() == 0
    }

    fn add(&mut self, value: &Decimal) {
        if let (DecimalMoments::Exact { count, sum, sum_sq }, Some(scaled)) =
            (&mut *self, value.scaled)
        {
            let square = u128::from(scaled.unsigned_abs()).pow(2);
            if *count < MAX_EXACT_COUNT {
                if let Some(total) = sum_sq.checked_add(square) {
                    *count += 1;
                    *sum += i128::from(scaled);
                    *sum_sq = total;
                    return;
                }
            }
        }
        let mut float = self.to_float();
        float.add(&value.value);
        *self = DecimalMoments::Float(float);
    }

    fn merge(&self, newer: &Self) -> Self {
        if newer.is_empty() {
            return *self;
        }
        if self.is_empty() {
            return *newer;
        }
        if let (
            DecimalMoments::Exact { count, sum, sum_sq },
            DecimalMoments::Exact {
                count: count_b,
                sum: sum_b,
                sum_sq: sum_sq_b,
            },
        ) = (self, newer)
        {
            let total = count + count_b;
            if let (true, Some(sum_sq)) = (total <= MAX_EXACT_COUNT, sum_sq.checked_add(*sum_sq_b))
            {
                return DecimalMoments::Exact {
                    count: total,
                    sum: sum + sum_b,
                    sum_sq,
                };
            }
        }
        DecimalMoments::Float(self.to_float().merge(&newer.to_float()))
    }
}

/// `n * sum_sq - sum^2`: `n^2 * 10^16` times the variance; never negative
/// (Cauchy-Schwarz).
fn numerator(count: u64, sum: i128, sum_sq: u128) -> U256 {
    let square = U256::mul(sum.unsigned_abs(), sum.unsigned_abs());
    U256::mul(u128::from(count), sum_sq).saturating_sub(square)
}

/// Correctly rounded `sum / (count * 10^8)` (count >= 1).
fn exact_mean(count: u64, sum: i128) -> f64 {
    let p = sum.unsigned_abs();
    if p == 0 {
        return 0.0;
    }
    // count <= 2^32, so q < 2^59 and q * (a 54-bit midpoint) < 2^113.
    let q = u128::from(count) * SCALE as u128;
    let candidate = to_f64(p) / to_f64(q);
    if p <= EXACT_F64 && q <= EXACT_F64 {
        // Both exact as floats, so IEEE division already rounded the quotient correctly.
        return if sum < 0 { -candidate } else { candidate };
    }
    let magnitude = round_correctly(candidate, |m, e| cmp_scaled(p, q * u128::from(m), e));
    if sum < 0 {
        -magnitude
    } else {
        magnitude
    }
}

/// Correctly rounded `sqrt((n * sum_sq - sum^2) / (n^2 * 10^16))` (count >= 1).
fn exact_std(count: u64, sum: i128, sum_sq: u128) -> f64 {
    let n = numerator(count, sum, sum_sq);
    if n.is_zero() {
        return 0.0;
    }
    // count <= 2^32: d < 2^118, and d * (a 54-bit midpoint)^2 < 2^226.
    let d = u128::from(count).pow(2) * (SCALE as u128 * SCALE as u128);
    // Within a few ulps: the comparisons below decide the result, not the candidate, so
    // cheap conversions do.
    let wide = 2f64.powi(128);
    let candidate = ((approx_f64(n.hi) * wide + approx_f64(n.lo)) / approx_f64(d)).sqrt();
    // sqrt(n / d) against m * 2^e  <=>  n against d * m^2 * 2^(2e).
    round_correctly(candidate, |m, e| {
        let m = u128::from(m);
        n.cmp_scaled(0, U256::mul(d, m * m), 2 * e)
    })
}

/// Integers up to this are exact as `f64`.
const EXACT_F64: u128 = 1 << 53;

/// `v as f64`, through the much cheaper 64-bit conversion when `v` fits: both round to
/// nearest, so the result is the same.
fn to_f64(v: u128) -> f64 {
    match u64::try_from(v) {
        Ok(v) => v as f64,
        Err(_) => v as f64,
    }
}

/// `v as f64` within an ulp, without the slow correctly rounded 128-bit conversion.
fn approx_f64(v: u128) -> f64 {
    (v >> 64) as u64 as f64 * 2f64.powi(64) + v as u64 as f64
}

/// Orders `a` against `b * 2^e` exactly, in 128 bits.
fn cmp_scaled(a: u128, b: u128, e: i32) -> Ordering {
    if a == 0 || b == 0 {
        return a.cmp(&b);
    }
    let shift = e.unsigned_abs();
    // A shift past the leading zeros would reach 2^128, beyond the other side.
    if e >= 0 {
        if b.leading_zeros() < shift {
            return Ordering::Less;
        }
        a.cmp(&(b << shift))
    } else {
        if a.leading_zeros() < shift {
            return Ordering::Greater;
        }
        (a << shift).cmp(&b)
    }
}

/// The correctly rounded (to nearest, ties to even) `f64` of a positive real `x`, given a
/// candidate within a few ulps and `compare(m, e)`, the exact ordering of `x` against
/// `m * 2^e`.
fn round_correctly(candidate: f64, compare: impl Fn(u64, i32) -> Ordering) -> f64 {
    let mut c = candidate;
    // Bounded: each step moves one ulp towards x; the candidate is a few ulps off.
    for _ in 0..64 {
        if !(c.is_normal() && c > 0.0) {
            return c;
        }
        let (m, e) = midpoint_up(c);
        match compare(m, e) {
            Ordering::Greater => {
                c = f64::from_bits(c.to_bits() + 1);
                continue;
            }
            Ordering::Equal => return even_of(c, f64::from_bits(c.to_bits() + 1)),
            Ordering::Less => {}
        }
        let below = f64::from_bits(c.to_bits() - 1);
        if !below.is_normal() {
            return c;
        }
        let (m, e) = midpoint_up(below);
        match compare(m, e) {
            Ordering::Less => c = below,
            Ordering::Equal => return even_of(below, c),
            Ordering::Greater => return c,
        }
    }
    c
}

/// The midpoint between a positive normal `c` and the next float up, as `m * 2^e`.
fn midpoint_up(c: f64) -> (u64, i32) {
    let bits = c.to_bits();
    let significand = (bits & ((1 << 52) - 1)) | (1 << 52);
    let exponent = ((bits >> 52) & 0x7ff) as i32 - 1075;
    (2 * significand + 1, exponent - 1)
}

fn even_of(a: f64, b: f64) -> f64 {
    if a.to_bits() & 1 == 0 {
        a
    } else {
        b
    }
}

/// A 256-bit unsigned integer: just what the exact comparisons need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct U256 {
    // Field order makes the derived ordering numeric.
    hi: u128,
    lo: u128,
}

impl From<u128> for U256 {
    fn from(lo: u128) -> Self {
        U256 { hi: 0, lo }
    }
}

impl U256 {
    fn mul(a: u128, b: u128) -> U256 {
        const LOW: u128 = u64::MAX as u128;
        if a <= LOW && b <= LOW {
            return U256::from(a * b);
        }
        let (a1, a0) = (a >> 64, a & LOW);
        let (b1, b0) = (b >> 64, b & LOW);
        let (p00, p01, p10, p11) = (a0 * b0, a0 * b1, a1 * b0, a1 * b1);
        // Below 3 * 2^64: no overflow.
        let mid = (p00 >> 64) + (p01 & LOW) + (p10 & LOW);
        U256 {
            hi: p11 + (p01 >> 64) + (p10 >> 64) + (mid >> 64),
            lo: (p00 & LOW) | (mid << 64),
        }
    }

    fn is_zero(&self) -> bool {
        self.hi == 0 && self.lo == 0
    }

    fn bits(&self) -> u32 {
        if self.hi != 0 {
            256 - self.hi.leading_zeros()
        } else {
            128 - self.lo.leading_zeros()
        }
    }

    fn saturating_sub(self, other: U256) -> U256 {
        if self <= other {
            return U256::from(0);
        }
        let (lo, borrow) = self.lo.overflowing_sub(other.lo);
        U256 {
            hi: self.hi - other.hi - u128::from(borrow),
            lo,
        }
    }

    /// `self << shift`; the caller ensures nothing is shifted out.
    fn shl(self, shift: u32) -> U256 {
        match shift {
            0 => self,
            1..=127 => U256 {
                hi: (self.hi << shift) | (self.lo >> (128 - shift)),
                lo: self.lo << shift,
            },
            128..=255 => U256 {
                hi: self.lo << (shift - 128),
                lo: 0,
            },
            _ => U256::from(0),
        }
    }

    fn to_f64(self) -> f64 {
        to_f64(self.hi) * 2f64.powi(128) + to_f64(self.lo)
    }

    /// Orders `self * 2^a` against `other * 2^b` exactly.
    fn cmp_scaled(self, a: i32, other: U256, b: i32) -> Ordering {
        if a >= b {
            self.cmp_shifted((a - b) as u32, other)
        } else {
            other.cmp_shifted((b - a) as u32, self).reverse()
        }
    }

    /// Orders `self * 2^shift` against `other`.
    fn cmp_shifted(self, shift: u32, other: U256) -> Ordering {
        if self.is_zero() || other.is_zero() {
            return self.is_zero().cmp(&other.is_zero()).reverse();
        }
        let (left, right) = (
            u64::from(self.bits()) + u64::from(shift),
            u64::from(other.bits()),
        );
        if left != right {
            return left.cmp(&right);
        }
        // Equal lengths of at most 256 bits: the shift loses nothing.
        self.shl(shift).cmp(&other)
    }
}

#[cfg(test)]
mod tests;
