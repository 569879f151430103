"""Experiment statistics: distributions, intervals, sizes, peeking, CUPED, and
the report on simulated data with a known truth."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from waggle.core.errors import InvalidInput
from waggle.rules import stats
from waggle.rules.experiments import build_report


def test_normal_quantile_matches_table_values():
    """The normal quantile reproduces the 97.5%, 80% and 1e-10 table values."""
    cases = {0.975: 1.959963984540054, 0.8: 0.8416212335729143}

    found = {p: stats.normal_quantile(p) for p in cases}
    tail = stats.normal_quantile(1e-10)

    assert found == pytest.approx(cases, abs=1e-13)
    assert tail == pytest.approx(-6.361340902404056, abs=1e-11)


@given(st.floats(min_value=1e-12, max_value=1 - 1e-12))
def test_normal_quantile_inverts_the_distribution_function(p):
    """normal_cdf(normal_quantile(p)) gives p back for any p in (0, 1)."""
    x = stats.normal_quantile(p)

    back = stats.normal_cdf(x)

    assert back == pytest.approx(p, rel=1e-9, abs=1e-15)


def test_student_t_quantiles_match_table_values():
    """Student t quantiles at 97.5% match the tables for 1, 10 and 30 df."""
    table = {1: 12.706204736174707, 10: 2.2281388519649385, 30: 2.0422724563012373}

    found = {df: stats.student_t_quantile(0.975, df) for df in table}

    assert found == pytest.approx(table, rel=1e-9)


@given(
    st.floats(min_value=1e-6, max_value=1 - 1e-6),
    st.floats(min_value=1.0, max_value=5000.0),
)
def test_student_t_quantile_inverts_the_distribution_function(p, df):
    """student_t_cdf(student_t_quantile(p, df), df) gives p back."""
    t = stats.student_t_quantile(p, df)

    back = stats.student_t_cdf(t, df)

    assert back == pytest.approx(p, rel=1e-8, abs=1e-12)


def test_regularized_beta_matches_the_binomial_sum():
    """I_0.3(2, 3) equals P(Binomial(4, 0.3) >= 2) = 0.3483 exactly."""
    expected = 6 * 0.3**2 * 0.7**2 + 4 * 0.3**3 * 0.7 + 0.3**4

    found = stats.regularized_beta(0.3, 2, 3)

    assert found == pytest.approx(expected, abs=1e-14)


def test_wilson_interval_matches_newcombe_example():
    """81 of 263 gives the Wilson interval 0.2553–0.3662 (Newcombe 1998a)."""
    low, high = stats.wilson_interval(81, 263)

    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)


def test_newcombe_difference_interval_matches_published_example():
    """56/70 minus 48/80 gives 0.0524–0.3339 (Newcombe 1998b, method 10)."""
    effect = stats.proportion_difference(56, 70, 48, 80)

    assert effect.absolute == pytest.approx(0.2)
    assert (round(effect.ci_low, 4), round(effect.ci_high, 4)) == (0.0524, 0.3339)
    assert effect.method == "newcombe_wilson"


def test_pooled_z_test_gives_the_two_sided_normal_p_value():
    """30/100 vs 20/100 has pooled z = 0.1 / sqrt(0.25 * 0.75 * 0.02)."""
    z = 0.1 / math.sqrt(0.25 * 0.75 * 0.02)

    effect = stats.proportion_difference(30, 100, 20, 100)

    assert effect.p_value == pytest.approx(2 * (1 - stats.normal_cdf(z)), rel=1e-12)
    assert round(effect.p_value, 4) == 0.1025


def test_welch_uses_satterthwaite_degrees_of_freedom():
    """Welch on 1..5 versus 2,4,..,10 has se sqrt(2.5) and df 6.25 / 1.0625."""
    treatment = stats.summarise([1, 2, 3, 4, 5])
    control = stats.summarise([2, 4, 6, 8, 10])

    effect = stats.welch_difference(treatment, control)

    assert effect.absolute == -3.0
    assert effect.standard_error == pytest.approx(math.sqrt(2.5))
    assert effect.degrees_of_freedom == pytest.approx(6.25 / 1.0625)
    critical = stats.student_t_quantile(0.975, 6.25 / 1.0625)
    assert effect.ci_low == pytest.approx(-3 - critical * math.sqrt(2.5))
    assert round(effect.p_value, 4) == 0.1075


def test_welch_refuses_an_arm_of_one_unit():
    """A Welch comparison needs two units per arm."""
    one, many = stats.summarise([1.0]), stats.summarise([1.0, 2.0])

    with pytest.raises(InvalidInput, match="at least 2 units"):
        stats.welch_difference(one, many)


def test_sample_size_for_two_proportions_matches_the_textbook():
    """0.10 vs 0.12, alpha 0.05, power 0.8 needs 3,841 per arm.

    Formula (Fleiss, equal arms): n = [z_{.975} sqrt(2 p q) + z_{.8}
    sqrt(p1 q1 + p2 q2)]^2 / (p1 - p2)^2 with p = 0.11:
    [1.959964 * 0.442493 + 0.841621 * 0.442267]^2 / 0.0004 = 3840.8 -> 3841.
    """
    found = stats.sample_size_proportions(0.10, 0.12)

    assert found == (3841, 3841)


def test_sample_size_for_means_matches_the_textbook():
    """sigma 1 in both arms and an effect of 0.2 needs 393 per arm.

    n = (z_{.975} + z_{.8})^2 (s1^2 + s2^2) / d^2 = 7.84888 * 2 / 0.04 = 392.4.
    """
    found = stats.sample_size_means(1.0, 1.0, minimum_detectable_effect=0.2)

    assert found == (393, 393)


def test_unequal_arms_need_more_units_in_total():
    """Four treatment units per control unit need 5/8 of the equal-arm control n."""
    equal = stats.sample_size_means(1.0, 1.0, minimum_detectable_effect=0.2)

    treatment, control = stats.sample_size_means(
        1.0, 1.0, minimum_detectable_effect=0.2, ratio=4.0
    )

    # n_c = z^2 (1 + 1/4) / d^2 = 245.3 and n_t = 4 n_c = 981.1.
    assert (treatment, control) == (982, 246)
    assert treatment + control > sum(equal)


def test_obrien_fleming_spending_is_strict_early_and_full_at_the_end():
    """By half the information the plan has spent 0.0056 of alpha, at the end 0.05."""
    half = stats.obrien_fleming_alpha(0.5)
    end = stats.obrien_fleming_alpha(1.0)
    boundary = stats.obrien_fleming_boundary(0.25)

    assert round(half, 4) == 0.0056
    assert end == pytest.approx(0.05, abs=1e-12)
    assert boundary == pytest.approx(2 * 1.959963984540054)


def _correlated(rng: random.Random, n: int, rho: float, shift: float):
    xs = [rng.gauss(0.0, 1.0) for _ in range(n)]
    ys = [shift + rho * x + math.sqrt(1 - rho * rho) * rng.gauss(0.0, 1.0) for x in xs]
    return ys, xs


def test_cuped_variance_ratio_is_one_minus_rho_squared():
    """With corr(X, Y) = 0.6 CUPED leaves 1 - 0.36 = 0.64 of the variance."""
    rng = random.Random(20260302)
    treatment, treatment_x = _correlated(rng, 4000, 0.6, 0.1)
    control, control_x = _correlated(rng, 4000, 0.6, 0.0)

    report = build_report(
        treatment,
        control,
        metric="cycle_time_days",
        treatment_covariate=treatment_x,
        control_covariate=control_x,
    )

    assert report.cuped is not None
    assert report.cuped.variance_ratio == pytest.approx(0.64, abs=0.03)
    assert report.cuped.theta == pytest.approx(0.6, abs=0.03)
    assert report.cuped.effect.ci_low < 0.1 < report.cuped.effect.ci_high


def test_cuped_estimate_is_unbiased_across_seeds():
    """Averaged over 40 simulations the CUPED effect lands on the true 0.1."""
    estimates, errors = [], []
    for seed in range(40):
        rng = random.Random(seed)
        treatment, treatment_x = _correlated(rng, 500, 0.7, 0.1)
        control, control_x = _correlated(rng, 500, 0.7, 0.0)
        cuped = stats.cuped_adjust(
            treatment,
            control,
            treatment_covariate=treatment_x,
            control_covariate=control_x,
        )
        assert cuped is not None
        effect = stats.welch_difference(
            stats.summarise(cuped.adjusted_treatment),
            stats.summarise(cuped.adjusted_control),
        )
        estimates.append(effect.absolute)
        errors.append(effect.standard_error)

    mean = sum(estimates) / len(estimates)
    bound = 3 * (sum(errors) / len(errors)) / math.sqrt(len(estimates))

    assert abs(mean - 0.1) < bound


def test_cuped_with_a_constant_covariate_is_not_available():
    """A covariate without variance cannot adjust anything, so CUPED is None."""
    cuped = stats.cuped_adjust(
        [1.0, 2.0], [3.0, 4.0], treatment_covariate=[5, 5], control_covariate=[5, 5]
    )

    assert cuped is None


def _bernoulli(rng: random.Random, n: int, rate: float) -> list[float]:
    return [1.0 if rng.random() < rate else 0.0 for _ in range(n)]


def test_report_finds_a_known_five_point_lift():
    """4,000 units with a true lift of 5 points: CI covers it and p < 0.05."""
    rng = random.Random(7)
    treatment = _bernoulli(rng, 2000, 0.35)
    control = _bernoulli(rng, 2000, 0.30)

    report = build_report(
        treatment,
        control,
        metric="stage_advanced",
        minimum_detectable_effect=0.05,
        planned_sample_size=4000,
    )

    assert report.effect is not None
    assert report.effect.ci_low < 0.05 < report.effect.ci_high
    assert report.effect.p_value < 0.05
    assert report.sequential.is_early_look is False
    assert report.sequential.warning is None


def test_report_false_positive_rate_stays_near_alpha_under_the_null():
    """Across 200 null simulations about 5% reject and p-values are spread evenly.

    200 tests at alpha 0.05 reject Binomial(200, 0.05) times: mean 10, sd 3.08,
    so more than 20 (p < 0.002) would mean the test is too liberal; the share
    of p-values below 0.5 is Binomial(200, 0.5) / 200, within 0.5 +- 0.12.
    """
    p_values = []
    for seed in range(200):
        rng = random.Random(1000 + seed)
        report = build_report(
            _bernoulli(rng, 500, 0.3), _bernoulli(rng, 500, 0.3), metric="win_rate"
        )
        assert report.effect is not None
        p_values.append(report.effect.p_value)

    rejections = sum(1 for p in p_values if p < 0.05)
    below_half = sum(1 for p in p_values if p < 0.5) / len(p_values)

    assert 2 <= rejections <= 20
    assert 0.38 <= below_half <= 0.62


def test_report_welch_false_positive_rate_stays_near_alpha_under_the_null():
    """Welch on skewed durations with unequal arms rejects about 5% of nulls."""
    rejections = 0
    for seed in range(200):
        rng = random.Random(5000 + seed)
        treatment = [rng.expovariate(1 / 30) for _ in range(400)]
        control = [rng.expovariate(1 / 30) for _ in range(100)]
        report = build_report(treatment, control, metric="cycle_time_days")
        assert report.effect is not None
        rejections += report.effect.p_value < 0.05

    assert 2 <= rejections <= 20


def test_report_plans_the_sample_size_from_the_observed_control_rate():
    """With a 30% control rate and MDE 5 points the plan is n(0.30 vs 0.35)."""
    treatment = [1.0] * 30 + [0.0] * 70
    control = [1.0] * 30 + [0.0] * 70

    report = build_report(
        treatment,
        control,
        metric="stage_advanced",
        minimum_detectable_effect=0.05,
        holdout_share=0.5,
    )

    assert report.sample_size is not None
    expected = stats.sample_size_proportions(0.30, 0.35)
    assert (
        report.sample_size.required_treatment,
        report.sample_size.required_control,
    ) == expected
    assert report.sample_size.remaining_control == expected[1] - 100


def test_an_early_look_warns_and_offers_the_obrien_fleming_threshold():
    """Half the planned units: the report warns and gives p < 0.0056 to stop."""
    treatment = [1.0] * 60 + [0.0] * 140
    control = [1.0] * 40 + [0.0] * 160

    report = build_report(
        treatment, control, metric="stage_advanced", planned_sample_size=800
    )

    sequential = report.sequential
    assert sequential.is_early_look is True
    assert sequential.information_fraction == 0.5
    assert sequential.alpha_spent == pytest.approx(stats.obrien_fleming_alpha(0.5))
    assert sequential.warning is not None
    assert "不能作为停止实验的依据" in sequential.warning["zh-CN"]
    assert "p must fall below 0.006" in sequential.warning["en"]
    assert report.effect is not None
    assert sequential.crosses_boundary is (report.effect.p_value < 0.0056)
