//! Mergeable window aggregates, and the moment statistics (count, mean, population
//! standard deviation) of prices.

/// A summary of the values of a pane, mergeable into the summary of a window.
///
/// `merge` need not be exactly associative (floating point rarely is): the window
/// operator always combines the panes of a given window in the same order, whatever the
/// history, so results are reproducible bit for bit.
pub trait Aggregate: Clone {
    /// What one record contributes.
    type Value: ?Sized;
    /// The summary of no values: the identity of `merge`.
    fn empty() -> Self;
    fn is_empty(&self) -> bool;
    /// Adds one value (records of a pane are added in arrival order).
    fn add(&mut self, value: &Self::Value);
    /// The summary of `self`'s values followed by `newer`'s. When either side is empty it
    /// must return the other side unchanged.
    fn merge(&self, newer: &Self) -> Self;
}

/// Count, mean and second central moment of `f64` values, for averages and population
/// standard deviations that stay accurate when the spread is tiny next to the values
/// (prices near 1e5 moving by cents).
///
/// Values are stored shifted by the summary's first value (`x - shift` is exact by
/// Sterbenz's lemma when `x` is within a factor two of `shift`), Welford-updated, and
/// combined with Chan's parallel merge. When every value is equal, the shifted values are
/// all exactly zero, so the mean is exactly that value and the deviation exactly `0.0`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MomentStats {
    count: u64,
    shift: f64,
    /// Mean of `x - shift`.
    mean: f64,
    /// Sum of squared deviations from the mean.
    m2: f64,
}

impl MomentStats {
    /// The summary of the given values, added in order.
    pub fn of(values: &[f64]) -> Self {
        let mut stats = Self::empty();
        for v in values {
            stats.add(v);
        }
        stats
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Arithmetic mean; `None` when empty.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then_some(self.shift + self.mean)
    }

    /// Population standard deviation `sqrt(sum((x - mean)^2) / n)`; `0.0` for one value,
    /// `None` when empty.
    pub fn population_std(&self) -> Option<f64> {
        match self.count {
            0 => None,
            1 => Some(0.0),
            n => Some((self.m2 / n as f64).sqrt()),
        }
    }

    /// The summary of `count` values with this mean and sum of squared deviations `m2`
    /// (how an exact summary hands over to the float path).
    pub fn from_moments(count: u64, mean: f64, m2: f64) -> Self {
        if count == 0 {
            return Self::empty();
        }
        MomentStats {
            count,
            shift: mean,
            mean: 0.0,
            m2: m2.max(0.0),
        }
    }

    /// Sum of squared deviations from the mean (`n` times the population variance).
    pub fn m2(&self) -> f64 {
        self.m2
    }
}

impl Aggregate for MomentStats {
    type Value = f64;

    fn empty() -> Self {
        MomentStats {
            count: 0,
            shift: 0.0,
            mean: 0.0,
            m2: 0.0,
        }
    }

    fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn add(&mut self, &x: &f64) {
        if self.count == 0 {
            *self = MomentStats {
                count: 1,
                shift: x,
                mean: 0.0,
                m2: 0.0,
            };
            return;
        }
        let y = x - self.shift;
        self.count += 1;
        let d = y - self.mean;
        self.mean += d / self.count as f64;
        // `d` and `y - mean` have the same sign, so m2 never decreases or goes negative.
        self.m2 += d * (y - self.mean);
    }

    fn merge(&self, newer: &Self) -> Self {
        if newer.count == 0 {
            return *self;
        }
        if self.count == 0 {
            return *newer;
        }
        let na = self.count as f64;
        let nb = newer.count as f64;
        let count = self.count + newer.count;
        let n = count as f64;
        // `newer`'s mean in this summary's shifted frame; the shift difference is exact for
        // nearby prices, and the result is of the order of the spread, not of the price.
        let mean_b = (newer.shift - self.shift) + newer.mean;
        let delta = mean_b - self.mean;
        MomentStats {
            count,
            shift: self.shift,
            mean: self.mean + delta * (nb / n),
            m2: self.m2 + newer.m2 + delta * delta * (na * nb / n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_give_exactly_their_value_and_zero_deviation() {
        let values = [97_009.02_f64; 1_000];
        let one = MomentStats::of(&values);
        assert_eq!(one.mean(), Some(97_009.02));
        assert_eq!(one.population_std(), Some(0.0));
        let merged = MomentStats::of(&values[..333]).merge(&MomentStats::of(&values[333..]));
        assert_eq!(merged.mean(), Some(97_009.02));
        assert_eq!(merged.population_std(), Some(0.0));
        assert_eq!(merged.m2().to_bits(), 0.0_f64.to_bits());
    }

    #[test]
    fn single_value_has_zero_deviation_and_empty_has_none() {
        assert_eq!(MomentStats::of(&[3.5]).population_std(), Some(0.0));
        assert_eq!(MomentStats::empty().mean(), None);
        assert_eq!(MomentStats::empty().population_std(), None);
    }

    #[test]
    fn merging_with_empty_returns_the_other_side_unchanged() {
        let s = MomentStats::of(&[1.0, 2.0, 4.0]);
        assert_eq!(s.merge(&MomentStats::empty()), s);
        assert_eq!(MomentStats::empty().merge(&s), s);
    }

    #[test]
    fn tiny_spread_near_1e5_matches_exact_arithmetic() {
        // 100000 + k/1024 are exact doubles; exact stats from integer sums.
        let ks: Vec<i128> = (0..10_000).map(|i| (i * 7919) % 13).collect();
        let values: Vec<f64> = ks.iter().map(|&k| 100_000.0 + k as f64 / 1024.0).collect();
        let n = ks.len() as i128;
        let s1: i128 = ks.iter().sum();
        let s2: i128 = ks.iter().map(|k| k * k).sum();
        let exact_std = (((n * s2 - s1 * s1) as f64).sqrt()) / (n as f64 * 1024.0);
        let exact_mean = 100_000.0 + s1 as f64 / (n as f64 * 1024.0);
        let a = MomentStats::of(&values[..4_000]);
        let b = MomentStats::of(&values[4_000..]);
        for stats in [MomentStats::of(&values), a.merge(&b)] {
            let std = stats.population_std().unwrap();
            assert!(
                ((std - exact_std) / exact_std).abs() < 1e-12,
                "{std} vs {exact_std}"
            );
            let mean = stats.mean().unwrap();
            assert!(((mean - exact_mean) / exact_mean).abs() < 1e-15);
        }
        // The naive formula loses everything at this scale.
        let naive_var = values.iter().map(|v| v * v).sum::<f64>() / n as f64
            - (values.iter().sum::<f64>() / n as f64).powi(2);
        assert!((naive_var.max(0.0).sqrt() - exact_std).abs() / exact_std > 1e-6);
    }
}
