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
    let candidate = p as f64 / q as f64;
    let magnitude = round_correctly(candidate, |m, e| {
        U256::from(p).cmp_scaled(0, U256::mul(q, u128::from(m)), e)
    });
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
    let candidate = (n.to_f64() / d as f64).sqrt();
    // sqrt(n / d) against m * 2^e  <=>  n against d * m^2 * 2^(2e).
    round_correctly(candidate, |m, e| {
        let m = u128::from(m);
        n.cmp_scaled(0, U256::mul(d, m * m), 2 * e)
    })
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
        self.hi as f64 * 2f64.powi(128) + self.lo as f64
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
mod tests {
    use super::*;

    fn d(scaled: i64) -> Decimal {
        Decimal::from_scaled(scaled).unwrap()
    }

    #[test]
    fn u256_products_and_comparisons_are_exact() {
        let p = U256::mul(u128::MAX, u128::MAX);
        assert_eq!(p.hi, u128::MAX - 1);
        assert_eq!(p.lo, 1);
        let three = U256::from(3);
        assert_eq!(three.cmp_scaled(1, U256::from(6), 0), Ordering::Equal);
        assert_eq!(three.cmp_scaled(0, U256::from(6), -1), Ordering::Equal);
        assert_eq!(three.cmp_scaled(200, U256::from(1), 201), Ordering::Greater);
        assert_eq!(
            U256::from(0).cmp_scaled(5, U256::from(1), 0),
            Ordering::Less
        );
    }

    #[test]
    fn equal_values_give_their_value_and_zero_deviation() {
        let values = vec![d(9_700_902_000_000); 1_000];
        let s = DecimalMoments::of(&values);
        assert!(s.is_exact());
        assert_eq!(s.mean(), Some(97_009.02));
        assert_eq!(s.population_std(), Some(0.0));
    }

    #[test]
    fn mean_is_correctly_rounded_where_float_division_of_the_sums_is_not_needed() {
        // 0.1 + 0.2 + 0.3 = 0.6 exactly; the float sum is 0.6000000000000001.
        let s = DecimalMoments::of(&[d(10_000_000), d(20_000_000), d(30_000_000)]);
        assert_eq!(s.mean(), Some(0.2));
        assert_eq!(s.population_std(), Some((2.0f64 / 3.0).sqrt() / 10.0));
    }

    #[test]
    fn an_inexact_value_switches_the_summary_to_the_float_path() {
        let mut s = DecimalMoments::of(&[d(100_000_000), d(300_000_000)]);
        s.add(&Decimal::inexact(1e20));
        assert!(!s.is_exact());
        assert_eq!(s.count(), 3);
        let mean = s.mean().unwrap();
        assert!((mean - (1e20 + 4.0) / 3.0).abs() / mean < 1e-15);
        let merged = DecimalMoments::of(&[d(1)]).merge(&s);
        assert!(!merged.is_exact());
        assert_eq!(merged.count(), 4);
    }

    #[test]
    fn sums_of_squares_that_overflow_fall_back_instead_of_wrapping() {
        let big = d(MAX_SCALED as i64);
        let mut s = DecimalMoments::empty();
        // 2^106 per square: the 2^22nd one no longer fits 128 bits.
        let mut exact_until = 0;
        for i in 0..(1u64 << 22) + 1 {
            s.add(&big);
            if s.is_exact() {
                exact_until = i + 1;
            }
        }
        assert_eq!(exact_until, (1u64 << 22) - 1);
        assert!(!s.is_exact());
        assert_eq!(s.mean(), Some(MAX_SCALED as f64 / 1e8));
    }

    #[test]
    fn merging_with_empty_returns_the_other_side_unchanged() {
        let s = DecimalMoments::of(&[d(1), d(5)]);
        assert_eq!(s.merge(&DecimalMoments::empty()), s);
        assert_eq!(DecimalMoments::empty().merge(&s), s);
    }

    /// Reference: the correctly rounded f64 of `num / den` (or of its square root), from
    /// big integers, independent of the implementation above.
    mod reference {
        use num_bigint::BigUint;
        use num_traits::{One, Zero};

        fn finish(q: BigUint, sticky: bool, scale: i64) -> f64 {
            // q has 54 bits: 53 of significand and a guard bit; x ~ q * 2^-scale.
            let guard = q.bit(0);
            let mut m: u64 = (&q >> 1u32).try_into().unwrap();
            let mut scale = scale - 1;
            if guard && (sticky || m & 1 == 1) {
                m += 1;
                if m == 1 << 53 {
                    m >>= 1;
                    scale -= 1;
                }
            }
            m as f64 * 2f64.powi(-(scale as i32))
        }

        fn shifted_quotient(num: &BigUint, den: &BigUint, s: i64) -> (BigUint, bool) {
            let (n, d) = if s >= 0 {
                (num << s as u64, den.clone())
            } else {
                (num.clone(), den << (-s) as u64)
            };
            (&n / &d, !(&n % &d).is_zero())
        }

        pub fn ratio(num: &BigUint, den: &BigUint) -> f64 {
            let mut s = 54 - (num.bits() as i64 - den.bits() as i64);
            loop {
                let (q, sticky) = shifted_quotient(num, den, s);
                match q.bits() {
                    54 => return finish(q, sticky, s),
                    b if b < 54 => s += 1,
                    _ => s -= 1,
                }
            }
        }

        pub fn sqrt_ratio(num: &BigUint, den: &BigUint) -> f64 {
            let mut s = 54 - (num.bits() as i64 - den.bits() as i64) / 2;
            loop {
                let (floor, rem) = shifted_quotient(num, den, 2 * s);
                let r = floor.sqrt();
                match r.bits() {
                    54 => {
                        let sticky = rem || &r * &r != floor;
                        return finish(r, sticky, s);
                    }
                    b if b < 54 => s += 1,
                    _ => s -= 1,
                }
            }
        }

        #[test]
        fn reference_rounds_known_values() {
            let n = |v: u64| BigUint::from(v);
            assert_eq!(ratio(&n(1), &n(3)), 1.0 / 3.0);
            assert_eq!(ratio(&n(6), &n(10)), 0.6);
            assert_eq!(sqrt_ratio(&n(2), &BigUint::one()), 2f64.sqrt());
            assert_eq!(sqrt_ratio(&n(9), &n(4)), 1.5);
        }
    }

    mod properties {
        use super::super::*;
        use super::reference;
        use num_bigint::{BigInt, BigUint};
        use num_traits::Signed;
        use proptest::prelude::*;

        /// Near-constant series (the hard case: std/mean ~ 1e-9), and wide ones.
        fn series() -> impl Strategy<Value = Vec<i64>> {
            let max = MAX_SCALED as i64;
            prop_oneof![
                (1..max, prop::collection::vec(-3i64..=3, 1..300)).prop_map(move |(base, d)| {
                    d.into_iter().map(|x| (base + x).clamp(-max, max)).collect()
                }),
                prop::collection::vec(-max..=max, 1..100),
                prop::collection::vec(-1_000_000i64..=1_000_000, 1..100),
            ]
        }

        fn expected(values: &[i64]) -> (f64, f64) {
            let n = BigInt::from(values.len());
            let s1: BigInt = values.iter().map(|&v| BigInt::from(v)).sum();
            let s2: BigInt = values
                .iter()
                .map(|&v| BigInt::from(v) * BigInt::from(v))
                .sum();
            let scale = BigInt::from(SCALE);
            let mean = if s1 == BigInt::from(0) {
                0.0
            } else {
                let m = reference::ratio(
                    &s1.abs().to_biguint().unwrap(),
                    &(&n * &scale).to_biguint().unwrap(),
                );
                if s1 < BigInt::from(0) {
                    -m
                } else {
                    m
                }
            };
            let num = (&n * s2 - &s1 * &s1).to_biguint().unwrap();
            let std = if num == BigUint::from(0u8) {
                0.0
            } else {
                reference::sqrt_ratio(&num, &(&n * &n * &scale * &scale).to_biguint().unwrap())
            };
            (mean, std)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2_000))]

            #[test]
            fn exact_mean_and_std_are_the_correctly_rounded_exact_values(
                values in series(),
                cut in 0usize..300,
            ) {
                let (mean, std) = expected(&values);
                let decimals: Vec<Decimal> =
                    values.iter().map(|&v| Decimal::from_scaled(v).unwrap()).collect();
                let cut = cut.min(decimals.len());
                let whole = DecimalMoments::of(&decimals);
                let merged = DecimalMoments::of(&decimals[..cut])
                    .merge(&DecimalMoments::of(&decimals[cut..]));
                for stats in [whole, merged] {
                    prop_assert!(stats.is_exact());
                    prop_assert_eq!(stats.mean().unwrap().to_bits(), mean.to_bits(),
                        "mean {} vs {}", stats.mean().unwrap(), mean);
                    prop_assert_eq!(stats.population_std().unwrap().to_bits(), std.to_bits(),
                        "std {} vs {}", stats.population_std().unwrap(), std);
                }
            }
        }
    }
}
