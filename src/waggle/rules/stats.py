"""Pure statistics for A/B experiments: distributions, tests, sizes, CUPED.

Nothing here touches the database; every function takes numbers and returns
numbers, so the experiment report can be checked on simulated data.

Choices, each a standard textbook method:

- Means: Welch's unequal-variance t interval and test, with the
  Welch–Satterthwaite degrees of freedom.
- Proportions: the interval for a difference is Newcombe's hybrid score
  interval (his "method 10", built from the two Wilson score intervals), which
  keeps its coverage near nominal for small counts and rates near 0 or 1; the
  p-value is the two-sided pooled two-proportion z-test. The two can disagree
  for results right at the significance boundary.
- Relative effect: ratio of means minus one, with a delta-method interval.
- Sample size: the normal-approximation formulas (for proportions the one
  with the pooled variance under the null, Fleiss' form for unequal arms).
- Peeking: the Lan–DeMets spending function of O'Brien–Fleming type,
  ``alpha(t) = 2 - 2 * Phi(z_{1-alpha/2} / sqrt(t))``.
- CUPED: ``theta = cov(Y, X) / var(X)`` over both arms together and
  ``Y' = Y - theta * (X - mean(X))``; randomisation makes ``X`` independent of
  the arm, so the adjusted difference stays unbiased.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from waggle.core.errors import InvalidInput

_SQRT2 = math.sqrt(2.0)
_SQRT2PI = math.sqrt(2.0 * math.pi)
# Beyond this many degrees of freedom Student's t and the normal agree to
# about 1e-7 in the quantiles used here.
_NORMAL_DF = 1e7


@dataclass(frozen=True)
class Summary:
    """Size, mean and sample variance (n - 1 denominator) of one arm."""

    n: int
    mean: float
    variance: float


@dataclass(frozen=True)
class Effect:
    """A treatment-minus-control difference with its interval and p-value."""

    absolute: float
    standard_error: float
    ci_low: float
    ci_high: float
    p_value: float
    relative: float | None
    relative_ci_low: float | None
    relative_ci_high: float | None
    degrees_of_freedom: float | None
    method: str


def normal_cdf(x: float) -> float:
    """Return the standard normal distribution function at ``x``."""
    return 0.5 * math.erfc(-x / _SQRT2)


def normal_quantile(p: float) -> float:
    """Return ``x`` with ``normal_cdf(x) == p`` to about 1e-15.

    Raises:
        InvalidInput: ``p`` is not strictly between 0 and 1.
    """
    _check_probability(p, "p")
    if p > 0.5:
        return -normal_quantile(1.0 - p)
    # Abramowitz & Stegun 26.2.23 (error < 4.5e-4) as the start, then Halley
    # steps on the exact erfc-based distribution function.
    t = math.sqrt(-2.0 * math.log(p))
    x = -(
        t
        - (2.515517 + 0.802853 * t + 0.010328 * t * t)
        / (1.0 + 1.432788 * t + 0.189269 * t * t + 0.001308 * t**3)
    )
    for _ in range(4):
        error = normal_cdf(x) - p
        u = error * _SQRT2PI * math.exp(x * x / 2.0)
        x -= u / (1.0 + x * u / 2.0)
    return x


def student_t_cdf(t: float, df: float) -> float:
    """Return Student's t distribution function with ``df`` degrees of freedom.

    Raises:
        InvalidInput: ``df`` is not positive.
    """
    if not df > 0:
        raise InvalidInput(f"student t: df must be positive, got {df}")
    if df > _NORMAL_DF:
        return normal_cdf(t)
    tail = 0.5 * regularized_beta(df / (df + t * t), df / 2.0, 0.5)
    return 1.0 - tail if t > 0 else tail


def student_t_quantile(p: float, df: float) -> float:
    """Return ``t`` with ``student_t_cdf(t, df) == p``.

    Raises:
        InvalidInput: ``p`` is not strictly between 0 and 1 or ``df`` <= 0.
    """
    _check_probability(p, "p")
    if not df > 0:
        raise InvalidInput(f"student t: df must be positive, got {df}")
    if df > _NORMAL_DF:
        return normal_quantile(p)
    if p > 0.5:
        return -student_t_quantile(1.0 - p, df)
    low, high = normal_quantile(p), 0.0
    while student_t_cdf(low, df) > p:
        low *= 2.0
    return _bisect_newton(p, df, low, high)


def _bisect_newton(p: float, df: float, low: float, high: float) -> float:
    # Newton steps kept inside the bracket [low, high]; a step that would
    # leave it is replaced by bisection, so the search always converges.
    x = 0.5 * (low + high)
    for _ in range(200):
        error = student_t_cdf(x, df) - p
        if error > 0:
            high = x
        else:
            low = x
        step = error / _student_t_pdf(x, df)
        candidate = x - step
        if not low < candidate < high:
            candidate = 0.5 * (low + high)
        if abs(candidate - x) <= 1e-14 * max(1.0, abs(x)):
            return candidate
        x = candidate
    return x


def _student_t_pdf(t: float, df: float) -> float:
    log_density = (
        math.lgamma((df + 1.0) / 2.0)
        - math.lgamma(df / 2.0)
        - 0.5 * math.log(df * math.pi)
        - (df + 1.0) / 2.0 * math.log1p(t * t / df)
    )
    return math.exp(log_density)


def regularized_beta(x: float, a: float, b: float) -> float:
    """Return the regularized incomplete beta function ``I_x(a, b)``.

    Raises:
        InvalidInput: ``x`` lies outside [0, 1] or ``a``/``b`` are not positive.
    """
    if not 0.0 <= x <= 1.0 or not (a > 0 and b > 0):
        raise InvalidInput(f"incomplete beta: need 0<=x<=1, a,b>0; got {x}, {a}, {b}")
    if x in (0.0, 1.0):
        return x
    log_front = (
        math.lgamma(a + b)
        - math.lgamma(a)
        - math.lgamma(b)
        + a * math.log(x)
        + b * math.log1p(-x)
    )
    # The continued fraction converges fast for x < (a + 1) / (a + b + 2);
    # otherwise use the symmetry I_x(a, b) = 1 - I_{1-x}(b, a).
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(x, a, b) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(1.0 - x, b, a) / b


def _beta_fraction(x: float, a: float, b: float) -> float:
    # Modified Lentz evaluation of the incomplete beta continued fraction.
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 10_000):
        for numerator in _fraction_terms(x, a, b, m):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            delta = c * d
            result *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return result


def _fraction_terms(x: float, a: float, b: float, m: int) -> tuple[float, float]:
    even = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
    odd = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
    return even, odd


def summarise(values: Sequence[float]) -> Summary:
    """Return the size, mean and sample variance of ``values`` (0 when n < 2)."""
    n = len(values)
    if n == 0:
        return Summary(0, math.nan, math.nan)
    mean = math.fsum(values) / n
    if n < 2:
        return Summary(n, mean, 0.0)
    variance = math.fsum((value - mean) ** 2 for value in values) / (n - 1)
    return Summary(n, mean, variance)


def covariance(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Return the sample covariance (n - 1 denominator) of two paired series.

    Raises:
        InvalidInput: the series differ in length or have fewer than 2 items.
    """
    if len(xs) != len(ys) or len(xs) < 2:
        raise InvalidInput(
            f"covariance: need two paired series of 2+ items, got {len(xs)}/{len(ys)}"
        )
    mean_x, mean_y = math.fsum(xs) / len(xs), math.fsum(ys) / len(ys)
    total = math.fsum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    return total / (len(xs) - 1)


def welch_difference(
    treatment: Summary, control: Summary, *, level: float = 0.95
) -> Effect:
    """Return the Welch interval and two-sided test of ``treatment - control``.

    Raises:
        InvalidInput: an arm has fewer than 2 units or ``level`` is not in (0, 1).
    """
    _check_probability(level, "level")
    _check_arm_sizes(treatment.n, control.n)
    difference = treatment.mean - control.mean
    share_t, share_c = treatment.variance / treatment.n, control.variance / control.n
    standard_error = math.sqrt(share_t + share_c)
    if standard_error == 0.0:
        return _degenerate(difference, treatment, control, "welch")
    df = (share_t + share_c) ** 2 / (
        share_t**2 / (treatment.n - 1) + share_c**2 / (control.n - 1)
    )
    critical = student_t_quantile(0.5 + level / 2.0, df)
    statistic = abs(difference) / standard_error
    p_value = 2.0 * (1.0 - student_t_cdf(statistic, df))
    relative = _relative(treatment, control, level=level)
    return Effect(
        absolute=difference,
        standard_error=standard_error,
        ci_low=difference - critical * standard_error,
        ci_high=difference + critical * standard_error,
        p_value=min(1.0, p_value),
        relative=relative[0],
        relative_ci_low=relative[1],
        relative_ci_high=relative[2],
        degrees_of_freedom=df,
        method="welch",
    )


def wilson_interval(
    successes: int, n: int, *, level: float = 0.95
) -> tuple[float, float]:
    """Return the Wilson score interval of a proportion.

    Raises:
        InvalidInput: ``n`` < 1, ``successes`` outside [0, n] or a bad ``level``.
    """
    _check_probability(level, "level")
    if n < 1 or not 0 <= successes <= n:
        raise InvalidInput(f"wilson interval: need 0 <= {successes} <= n={n}, n >= 1")
    z = normal_quantile(0.5 + level / 2.0)
    rate = successes / n
    denominator = 1.0 + z * z / n
    centre = (rate + z * z / (2.0 * n)) / denominator
    half = z / denominator * math.sqrt(rate * (1.0 - rate) / n + z * z / (4.0 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def proportion_difference(
    successes_treatment: int,
    n_treatment: int,
    successes_control: int,
    n_control: int,
    *,
    level: float = 0.95,
) -> Effect:
    """Return Newcombe's interval and the pooled z-test of a rate difference.

    Raises:
        InvalidInput: an arm has fewer than 2 units or a count is impossible.
    """
    _check_arm_sizes(n_treatment, n_control)
    rate_t, rate_c = successes_treatment / n_treatment, successes_control / n_control
    low_t, high_t = wilson_interval(successes_treatment, n_treatment, level=level)
    low_c, high_c = wilson_interval(successes_control, n_control, level=level)
    difference = rate_t - rate_c
    pooled = (successes_treatment + successes_control) / (n_treatment + n_control)
    null_error = math.sqrt(pooled * (1 - pooled) * (1 / n_treatment + 1 / n_control))
    p_value = (
        1.0 if null_error == 0 else math.erfc(abs(difference) / null_error / _SQRT2)
    )
    treatment = Summary(n_treatment, rate_t, _bernoulli_variance(rate_t, n_treatment))
    control = Summary(n_control, rate_c, _bernoulli_variance(rate_c, n_control))
    relative = _relative(treatment, control, level=level)
    return Effect(
        absolute=difference,
        standard_error=math.sqrt(
            rate_t * (1 - rate_t) / n_treatment + rate_c * (1 - rate_c) / n_control
        ),
        ci_low=difference - math.hypot(rate_t - low_t, high_c - rate_c),
        ci_high=difference + math.hypot(high_t - rate_t, rate_c - low_c),
        p_value=min(1.0, p_value),
        relative=relative[0],
        relative_ci_low=relative[1],
        relative_ci_high=relative[2],
        degrees_of_freedom=None,
        method="newcombe_wilson",
    )


def _bernoulli_variance(rate: float, n: int) -> float:
    # The sample variance of n zeros and ones with this mean.
    return rate * (1.0 - rate) * n / (n - 1)


def _relative(
    treatment: Summary, control: Summary, *, level: float
) -> tuple[float | None, float | None, float | None]:
    # Delta method for the ratio of two independent means, as ratio - 1.
    if control.mean == 0:
        return None, None, None
    ratio = treatment.mean / control.mean
    variance = treatment.variance / (treatment.n * control.mean**2) + (
        treatment.mean**2 * control.variance / (control.n * control.mean**4)
    )
    half = normal_quantile(0.5 + level / 2.0) * math.sqrt(variance)
    return ratio - 1.0, ratio - 1.0 - half, ratio - 1.0 + half


def _degenerate(
    difference: float, treatment: Summary, control: Summary, method: str
) -> Effect:
    # Both arms constant: the difference is known exactly.
    relative = None if control.mean == 0 else treatment.mean / control.mean - 1.0
    return Effect(
        absolute=difference,
        standard_error=0.0,
        ci_low=difference,
        ci_high=difference,
        p_value=1.0 if difference == 0 else 0.0,
        relative=relative,
        relative_ci_low=relative,
        relative_ci_high=relative,
        degrees_of_freedom=None,
        method=method,
    )


def sample_size_means(
    variance_treatment: float,
    variance_control: float,
    *,
    minimum_detectable_effect: float,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
) -> tuple[int, int]:
    """Return (treatment, control) units needed to detect a difference of means.

    ``n_c = (z_{1-a/2} + z_{power})^2 (var_c + var_t / k) / mde^2`` and
    ``n_t = k n_c``, with ``k = ratio`` treatment units per control unit.

    Raises:
        InvalidInput: a non-positive effect or ratio, or a bad alpha or power.
    """
    _check_design(minimum_detectable_effect, alpha, power, ratio)
    z = normal_quantile(1 - alpha / 2) + normal_quantile(power)
    control = (
        z
        * z
        * (variance_control + variance_treatment / ratio)
        / minimum_detectable_effect**2
    )
    return _round_up(control * ratio), _round_up(control)


def sample_size_proportions(
    rate_control: float,
    rate_treatment: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
) -> tuple[int, int]:
    """Return (treatment, control) units needed to tell two rates apart.

    ``n_c = [z_{1-a/2} sqrt((1 + 1/k) p q) + z_{power} sqrt(p_c q_c + p_t q_t / k)]^2
    / (p_t - p_c)^2`` with ``p = (p_c + k p_t) / (1 + k)``, ``q = 1 - p`` and
    ``n_t = k n_c`` (Fleiss; for k = 1 the usual equal-arm formula).

    Raises:
        InvalidInput: a rate outside (0, 1), equal rates, or a bad design.
    """
    _check_probability(rate_control, "rate_control")
    _check_probability(rate_treatment, "rate_treatment")
    _check_design(abs(rate_treatment - rate_control), alpha, power, ratio)
    pooled = (rate_control + ratio * rate_treatment) / (1 + ratio)
    spread_null = math.sqrt((1 + 1 / ratio) * pooled * (1 - pooled))
    spread_alternative = math.sqrt(
        rate_control * (1 - rate_control)
        + rate_treatment * (1 - rate_treatment) / ratio
    )
    numerator = (
        normal_quantile(1 - alpha / 2) * spread_null
        + normal_quantile(power) * spread_alternative
    )
    control = numerator**2 / (rate_treatment - rate_control) ** 2
    return _round_up(control * ratio), _round_up(control)


def _round_up(value: float) -> int:
    # Tolerate floating error just above an integer (392.0000000001 -> 392).
    return math.ceil(value - 1e-9)


def obrien_fleming_alpha(information_fraction: float, *, alpha: float = 0.05) -> float:
    """Return the two-sided alpha an O'Brien–Fleming-type plan has spent by ``t``.

    Lan–DeMets: ``2 - 2 Phi(z_{1-alpha/2} / sqrt(t))``; at ``t = 1`` it is
    ``alpha``. For a first interim look it is the exact p-value threshold;
    after several looks it is an approximation (a full group-sequential plan
    spends only the increment at each look).

    Raises:
        InvalidInput: ``information_fraction`` not in (0, 1] or a bad alpha.
    """
    boundary = obrien_fleming_boundary(information_fraction, alpha=alpha)
    return math.erfc(boundary / _SQRT2)


def obrien_fleming_boundary(
    information_fraction: float, *, alpha: float = 0.05
) -> float:
    """Return the |z| an interim result must pass: ``z_{1-alpha/2} / sqrt(t)``.

    Raises:
        InvalidInput: ``information_fraction`` not in (0, 1] or a bad alpha.
    """
    _check_probability(alpha, "alpha")
    if not 0.0 < information_fraction <= 1.0:
        raise InvalidInput(
            f"information_fraction must be in (0, 1], got {information_fraction}"
        )
    return normal_quantile(1 - alpha / 2) / math.sqrt(information_fraction)


@dataclass(frozen=True)
class Cuped:
    """Outcomes adjusted by a pre-period covariate, with the fitted theta."""

    theta: float
    correlation: float
    adjusted_treatment: list[float]
    adjusted_control: list[float]


def cuped_adjust(
    treatment: Sequence[float],
    control: Sequence[float],
    *,
    treatment_covariate: Sequence[float],
    control_covariate: Sequence[float],
) -> Cuped | None:
    """Return CUPED-adjusted outcomes, or ``None`` when the covariate is constant.

    Theta and the covariate mean come from both arms pooled, so the same
    shift applies to every unit whatever its arm.

    Raises:
        InvalidInput: outcomes and covariates differ in length.
    """
    if len(treatment) != len(treatment_covariate) or len(control) != len(
        control_covariate
    ):
        raise InvalidInput("cuped: each outcome needs exactly one covariate value")
    ys = [*treatment, *control]
    xs = [*treatment_covariate, *control_covariate]
    if len(xs) < 2:
        return None
    variance_x = covariance(xs, xs)
    variance_y = covariance(ys, ys)
    if variance_x == 0.0:
        return None
    covariance_xy = covariance(xs, ys)
    theta = covariance_xy / variance_x
    mean_x = math.fsum(xs) / len(xs)
    correlation = (
        covariance_xy / math.sqrt(variance_x * variance_y) if variance_y else 0.0
    )
    return Cuped(
        theta=theta,
        correlation=correlation,
        adjusted_treatment=_adjust(treatment, treatment_covariate, theta, mean_x),
        adjusted_control=_adjust(control, control_covariate, theta, mean_x),
    )


def _adjust(
    ys: Sequence[float], xs: Sequence[float], theta: float, mean_x: float
) -> list[float]:
    return [y - theta * (x - mean_x) for y, x in zip(ys, xs, strict=True)]


def _check_probability(value: float, name: str) -> None:
    if not 0.0 < value < 1.0:
        raise InvalidInput(f"{name} must be strictly between 0 and 1, got {value}")


def _check_arm_sizes(n_treatment: int, n_control: int) -> None:
    if n_treatment < 2 or n_control < 2:
        raise InvalidInput(
            "each arm needs at least 2 units, got "
            f"treatment={n_treatment}, control={n_control}"
        )


def _check_design(effect: float, alpha: float, power: float, ratio: float) -> None:
    _check_probability(alpha, "alpha")
    _check_probability(power, "power")
    if not effect > 0:
        raise InvalidInput(f"minimum detectable effect must be > 0, got {effect}")
    if not ratio > 0:
        raise InvalidInput(f"allocation ratio must be > 0, got {ratio}")
