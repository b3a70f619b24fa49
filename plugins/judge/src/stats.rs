//! The judge's statistics, on plain numbers: means and the Mann–Whitney U test. Nothing
//! here knows about deployer, metrics or WebAssembly, so it is tested natively against
//! values computed with SciPy.
//!
//! Mann–Whitney U asks whether one sample tends to hold larger values than the other,
//! without assuming any distribution (latencies and error rates are rarely normal). It
//! ranks all values of both samples together; ties share the average of their ranks. The
//! canary's U counts the (canary, baseline) pairs in which the canary's value is the
//! larger, a tie counting one half. With no difference between the two, U is close to
//! half the pairs; the p-value says how surprising the U seen is, using the normal
//! approximation of U's distribution with the variance corrected for ties and a
//! continuity correction of one half — exactly SciPy's
//! `mannwhitneyu(canary, baseline, method="asymptotic", use_continuity=True)`.
//!
//! Cost: sorting each sample (O(n log n)), then one merge pass over both.

use std::f64::consts::SQRT_2;

/// Which difference of the canary against the baseline the test looks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alternative {
    /// The canary's values tend to be larger (one-sided).
    Greater,
    /// The canary's values tend to be smaller (one-sided).
    Less,
    /// Either (two-sided).
    TwoSided,
}

/// The outcome of [`mann_whitney`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MannWhitney {
    /// U of the canary: pairs in which the canary's value is larger, ties counting ½
    /// (SciPy's `statistic`, whatever the alternative).
    pub u: f64,
    /// The p-value, in `[0, 1]`: how likely a U at least this far in the direction of
    /// the alternative is when both samples come from one distribution.
    pub p: f64,
}

/// The arithmetic mean; 0 for no values.
pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.iter().sum::<f64>() / values.len() as f64
}

/// Mann–Whitney U test of `canary` against `baseline`, both of finite values (the caller
/// drops NaN and infinities). Sorts both slices in place.
///
/// With an empty sample, or when every value of both is the same (a variance of 0: no
/// evidence of any difference), `p` is 1.
pub fn mann_whitney(
    canary: &mut [f64],
    baseline: &mut [f64],
    alternative: Alternative,
) -> MannWhitney {
    let (n1, n2) = (canary.len(), baseline.len());
    if n1 == 0 || n2 == 0 {
        return MannWhitney { u: 0.0, p: 1.0 };
    }
    canary.sort_unstable_by(f64::total_cmp);
    baseline.sort_unstable_by(f64::total_cmp);
    let (rank_sum, tie_term) = merged_ranks(canary, baseline);
    let (n1, n2) = (n1 as f64, n2 as f64);
    let n = n1 + n2;
    let u1 = rank_sum - n1 * (n1 + 1.0) / 2.0;
    let u2 = n1 * n2 - u1;
    let (u, sides) = match alternative {
        Alternative::Greater => (u1, 1.0),
        Alternative::Less => (u2, 1.0),
        Alternative::TwoSided => (u1.max(u2), 2.0),
    };
    let mu = n1 * n2 / 2.0;
    let variance = n1 * n2 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)));
    if variance <= 0.0 || !variance.is_finite() {
        // All values tied: U is exactly its mean, and nothing points anywhere.
        return MannWhitney { u: u1, p: 1.0 };
    }
    let z = (u - mu - 0.5) / variance.sqrt();
    MannWhitney {
        u: u1,
        p: (sides * normal_sf(z)).clamp(0.0, 1.0),
    }
}

/// One pass over the two sorted samples: the sum of the canary's ranks (ties get the
/// average of the ranks they span) and the tie term Σ(t³ − t) over groups of t equal
/// values. `-0.0` and `0.0` are equal here (they sort next to each other).
fn merged_ranks(canary: &[f64], baseline: &[f64]) -> (f64, f64) {
    let (mut i, mut j) = (0, 0);
    let mut below = 0usize;
    let (mut rank_sum, mut tie_term) = (0.0, 0.0);
    while i < canary.len() || j < baseline.len() {
        let value = match (canary.get(i), baseline.get(j)) {
            (Some(&a), Some(&b)) => {
                if a < b {
                    a
                } else {
                    b
                }
            }
            (Some(&a), None) => a,
            (None, Some(&b)) => b,
            (None, None) => break,
        };
        let from_canary = canary[i..].iter().take_while(|&&x| x == value).count();
        let from_baseline = baseline[j..].iter().take_while(|&&x| x == value).count();
        i += from_canary;
        j += from_baseline;
        let tied = (from_canary + from_baseline) as f64;
        // The group holds ranks below+1 ..= below+tied; each gets their average.
        rank_sum += from_canary as f64 * (below as f64 + (tied + 1.0) / 2.0);
        tie_term += tied * tied * tied - tied;
        below += from_canary + from_baseline;
    }
    (rank_sum, tie_term)
}

/// P(Z > z) for a standard normal Z, accurate far into the tail (erfc, not 1 − cdf).
fn normal_sf(z: f64) -> f64 {
    0.5 * libm::erfc(z / SQRT_2)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generator the SciPy reference values were computed with (a 64-bit LCG;
    /// Python's big integers taken mod 2⁶⁴ give the same sequence).
    fn lcg(seed: u64, n: usize) -> Vec<u64> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                state
            })
            .collect()
    }

    /// Integers 0..100 (plus `shift`): many ties.
    fn small_integers(seed: u64, n: usize, shift: f64) -> Vec<f64> {
        lcg(seed, n)
            .into_iter()
            .map(|v| ((v >> 33) % 100) as f64 + shift)
            .collect()
    }

    /// Uniform in [0, 1) (plus `shift`): no ties.
    fn uniform(seed: u64, n: usize, shift: f64) -> Vec<f64> {
        lcg(seed, n)
            .into_iter()
            .map(|v| (v >> 11) as f64 / (1u64 << 53) as f64 + shift)
            .collect()
    }

    fn test(canary: &[f64], baseline: &[f64], alternative: Alternative) -> MannWhitney {
        mann_whitney(&mut canary.to_vec(), &mut baseline.to_vec(), alternative)
    }

    fn assert_close(actual: f64, expected: f64, what: &str) {
        let scale = expected.abs().max(f64::MIN_POSITIVE);
        assert!(
            ((actual - expected) / scale).abs() < 1e-9,
            "{what}: {actual} != {expected} (SciPy)"
        );
    }

    /// `(u, p greater, p less, p two-sided)` from
    /// `scipy.stats.mannwhitneyu(x, y, alternative=…, method="asymptotic",
    /// use_continuity=True)`, SciPy 1.17.1, on the same data.
    fn check_against_scipy(name: &str, x: &[f64], y: &[f64], expected: (f64, f64, f64, f64)) {
        let (u, greater, less, two_sided) = expected;
        for (alternative, p) in [
            (Alternative::Greater, greater),
            (Alternative::Less, less),
            (Alternative::TwoSided, two_sided),
        ] {
            let result = test(x, y, alternative);
            assert_eq!(result.u, u, "{name} {alternative:?}: U");
            assert_close(result.p, p, &format!("{name} {alternative:?}: p"));
        }
    }

    #[test]
    fn agrees_with_scipy_on_a_small_sample_with_ties() {
        check_against_scipy(
            "A",
            &[1.0, 2.0, 2.0, 3.0, 4.0, 5.0, 5.0, 5.0, 9.0, 10.0],
            &[0.0, 1.0, 1.0, 2.0, 3.0, 3.0, 4.0, 6.0, 7.0],
            (
                59.5,
                0.12471914102057735,
                0.8913948513026264,
                0.2494382820411547,
            ),
        );
    }

    #[test]
    fn agrees_with_scipy_on_shifted_integers_full_of_ties() {
        check_against_scipy(
            "B",
            &small_integers(1, 200, 5.0),
            &small_integers(2, 150, 0.0),
            (
                16804.5,
                0.027052339685525097,
                0.9730142462211295,
                0.05410467937105019,
            ),
        );
        check_against_scipy(
            "C",
            &small_integers(3, 300, 0.0),
            &small_integers(4, 300, 0.0),
            (
                43551.5,
                0.752554942851515,
                0.24759395320468558,
                0.49518790640937116,
            ),
        );
    }

    #[test]
    fn agrees_with_scipy_without_ties_and_far_into_the_tail() {
        check_against_scipy(
            "D",
            &uniform(5, 60, 0.1),
            &uniform(6, 60, 0.0),
            (
                1642.0,
                0.7972699152849316,
                0.20421472591653028,
                0.40842945183306056,
            ),
        );
        check_against_scipy(
            "E",
            &uniform(7, 80, 0.5),
            &uniform(8, 70, 0.0),
            (
                4616.0,
                3.982232506502557e-12,
                0.9999999999961211,
                7.964465013005114e-12,
            ),
        );
    }

    #[test]
    fn agrees_with_scipy_on_mostly_zeros() {
        let mut x = vec![0.0; 30];
        x.extend([1.0; 3]);
        let mut y = vec![0.0; 40];
        y.push(1.0);
        check_against_scipy(
            "F",
            &x,
            &y,
            (
                721.5,
                0.1083324105158397,
                0.8967428021317885,
                0.2166648210316794,
            ),
        );
    }

    #[test]
    fn hand_computed_small_case() {
        // canary [3, 4], baseline [1, 2]: ranks 3 and 4, R1 = 7, U1 = 7 - 3 = 4 (every
        // pair), U2 = 0. mu = 2, var = 4/12 * 5 = 5/3, z = (4 - 2 - 0.5)/sqrt(5/3).
        let result = test(&[4.0, 3.0], &[2.0, 1.0], Alternative::Greater);
        assert_eq!(result.u, 4.0);
        let z = 1.5 / (5.0f64 / 3.0).sqrt();
        assert_close(result.p, 0.5 * libm::erfc(z / SQRT_2), "p");
        // One tie across the samples: canary [1, 2], baseline [2, 3]: the 2s share rank
        // 2.5, R1 = 1 + 2.5 = 3.5, U1 = 0.5.
        assert_eq!(test(&[1.0, 2.0], &[2.0, 3.0], Alternative::Less).u, 0.5);
    }

    #[test]
    fn equal_distributions_give_large_p_values() {
        let same = small_integers(9, 500, 0.0);
        for alternative in [
            Alternative::Greater,
            Alternative::Less,
            Alternative::TwoSided,
        ] {
            let result = test(&same, &same, alternative);
            assert_eq!(result.u, 500.0 * 500.0 / 2.0);
            assert!(result.p > 0.4, "{alternative:?}: {result:?}");
        }
    }

    #[test]
    fn a_clear_shift_gives_a_tiny_p_value_in_its_direction_only() {
        let baseline = uniform(10, 200, 0.0);
        let canary = uniform(11, 200, 0.3);
        assert!(test(&canary, &baseline, Alternative::Greater).p < 1e-9);
        assert!(test(&canary, &baseline, Alternative::TwoSided).p < 1e-9);
        assert!(test(&canary, &baseline, Alternative::Less).p > 0.999);
        assert!(test(&baseline, &canary, Alternative::Less).p < 1e-9);
    }

    #[test]
    fn ties_everywhere_are_no_evidence() {
        let zeros = vec![0.0; 100];
        for alternative in [
            Alternative::Greater,
            Alternative::Less,
            Alternative::TwoSided,
        ] {
            let result = test(&zeros, &zeros[..40], alternative);
            assert_eq!(result.p, 1.0);
            assert_eq!(result.u, 100.0 * 40.0 / 2.0);
        }
        // Negative zero is zero.
        let result = test(&[-0.0; 10], &[0.0; 10], Alternative::TwoSided);
        assert_eq!(result.p, 1.0);
        assert_eq!(result.u, 50.0);
    }

    #[test]
    fn empty_samples_are_no_evidence() {
        assert_eq!(test(&[], &[1.0], Alternative::Greater).p, 1.0);
        assert_eq!(test(&[1.0], &[], Alternative::TwoSided).p, 1.0);
    }

    #[test]
    fn means() {
        assert_eq!(mean(&[]), 0.0);
        assert_eq!(mean(&[1.0, 2.0, 6.0]), 3.0);
    }

    #[test]
    fn large_samples_with_long_tie_runs_stay_exact() {
        // 100k a side, values 0..10: runs of ~20k ties. U counts pairs exactly.
        let canary: Vec<f64> = (0..100_000).map(|i| (i % 10) as f64).collect();
        let baseline: Vec<f64> = (0..100_000).map(|i| ((i + 3) % 10) as f64).collect();
        let result = test(&canary, &baseline, Alternative::TwoSided);
        // Same multiset of values on both sides: U is exactly half the pairs.
        assert_eq!(result.u, 5e9);
        assert!(result.p > 0.99, "{result:?}");
    }
}
