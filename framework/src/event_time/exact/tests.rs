//! Unit and property tests of the exact moment statistics.
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

    /// Any 128-bit value, biased towards the edges the shortcuts decide on.
    fn wide() -> impl Strategy<Value = u128> {
        prop_oneof![
            any::<u128>(),
            (any::<u128>(), 0u32..128).prop_map(|(v, bits)| v >> bits),
            Just(0),
            Just(1),
            Just(u128::MAX),
        ]
    }

    proptest! {
        #[test]
        fn conversions_to_f64_round_as_the_128_bit_one(v in wide()) {
            prop_assert_eq!(to_f64(v).to_bits(), (v as f64).to_bits());
        }

        #[test]
        fn comparisons_in_128_bits_agree_with_the_256_bit_ones(
            a in wide(),
            b in wide(),
            e in -260i32..260,
        ) {
            let wide = U256::from(a).cmp_scaled(0, U256::from(b), e);
            prop_assert_eq!(cmp_scaled(a, b, e), wide);
        }
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
