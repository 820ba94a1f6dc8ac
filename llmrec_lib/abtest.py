"""An offline A/B readout: every system an arm of one experiment, lifts over a control.

Every arm is measured on the same users, targets and catalogue (:mod:`llmrec_lib.evaluate`),
so arms can be compared **user by user**: the lift of an arm over the control is the mean of
per-user differences, with a paired bootstrap interval and p-value
(:func:`llmrec_lib.metrics.paired_bootstrap`). Comparing many arms with one control inflates
the chance that one "wins" by luck; :func:`holm` adjusts the p-values (Holm, 1979), which
controls the family-wise error rate without assuming the tests are independent.

Segments re-measure the same top-K lists on a subset of users or targets
(:meth:`EvalResult.segment`): cold-start targets, short- and long-history users, popular and
tail targets; :func:`segment_readout` tests every (segment, arm) against the control with one
Holm correction over all of them, and :func:`slot_shares` shows where each arm's list slots go.

What a readout needs beyond lifts:

- **power**: :func:`mde` is the smallest true lift the paired test detects with 80% power, so
  "no detectable difference" can say what size of effect it rules out; :func:`users_needed`
  inverts it.
- **relative lifts** with :func:`ratio_bootstrap`: mean(treatment) / mean(control) - 1
  recomputed on every resample, so the control mean's own noise is in the interval
  (:func:`ratio_delta_interval` is the delta-method approximation of the same thing).
- **guardrails** (:func:`guardrails`): catalogue coverage, novelty and intra-list genre
  entropy, from the top-K lists alone.
- **interleaving** (:func:`team_draft`, :func:`interleave`): a replay of the team-draft
  interleaving an online test would run, scored with each user's held-out targets.
- **training seeds** (:func:`seed_aware_diff`): an arm trained with several seeds is several
  draws of a random model; the interval of its lift adds the spread between seeds to the
  spread between users.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from llmrec_lib import evaluate as E
from llmrec_lib import metrics as M

__all__ = ["holm", "mde", "mde_from_interval", "users_needed", "simulated_power", "ratio_bootstrap", "ratio_delta_interval",
           "readout", "popular_items", "segment_masks", "segment_table", "segment_readout", "slot_shares",
           "genre_matrix", "guardrails", "team_draft", "sign_test", "Interleaving", "interleave",
           "interleave_results", "load_rankings", "t_quantile", "SeedAwareDiff", "seed_aware_diff", "seed_aware_vs",
           "NotOnThisData", "need", "check_arms", "ledger_row"]


def holm(p_values) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (same order as given), each in [0, 1].

    Reject hypothesis i at level alpha when its adjusted p-value is <= alpha.

    Args:
        p_values: the raw p-values.

    Returns:
        The adjusted p-values, a float array in the given order.
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1 or ((p < 0) | (p > 1)).any() or np.isnan(p).any():
        raise ValueError("p_values must be a 1-D array of probabilities in [0, 1]")
    m = len(p)
    order = np.argsort(p, kind="stable")
    adj = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(adj, 1.0)
    return out


# --------------------------------------------------------------------------------------
# Power: the smallest lift a paired readout can see
# --------------------------------------------------------------------------------------


def _z_sum(alpha: float, power: float, n_comparisons: int) -> float:
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError("alpha and power must be in (0, 1)")
    if int(n_comparisons) < 1:
        raise ValueError("n_comparisons must be at least 1")
    a = alpha / int(n_comparisons)
    return NormalDist().inv_cdf(1 - a / 2) + NormalDist().inv_cdf(power)


def _sd(diffs) -> tuple[float, int]:
    d = np.asarray(diffs, dtype=np.float64).ravel()
    d = d[np.isfinite(d)]
    if d.size < 2:
        raise ValueError("need at least two finite per-user differences to estimate their SD")
    return float(d.std(ddof=1)), int(d.size)


def mde(diffs=None, *, sd: float | None = None, n: int | None = None, alpha: float = 0.05,
        power: float = 0.8, n_comparisons: int = 1) -> float:
    """Minimum detectable effect of a paired test on ``n`` users: the true mean per-user
    difference that a two-sided test at level ``alpha`` detects with probability ``power``.

    MDE = (z_{1 - alpha'/2} + z_{power}) * SD(d) / sqrt(n), the normal approximation that the
    paired bootstrap of :func:`readout` also rests on for a few hundred users. Give the
    per-user differences ``diffs`` (their SD and count are used) or ``sd`` and ``n``.

    ``n_comparisons`` = m uses alpha' = alpha / m: the level Holm's procedure applies to the
    *smallest* of m p-values (Bonferroni's level for every one of them). Holm tests the later
    ones at alpha / (m - 1), ..., alpha, so the MDE at alpha / m is a **conservative** bound:
    an arm tested with Holm among m has an MDE between this and the one at ``n_comparisons=1``.

    Args:
        diffs: the per-user differences (their SD and count are used), or None.
        sd: the per-user differences' SD, when ``diffs`` is not given.
        n: the number of users, when ``diffs`` is not given.
        alpha: the test's two-sided level.
        power: the probability of detecting the effect.
        n_comparisons: m tested arms: the level is alpha / m (see :func:`mde`).

    Returns:
        The MDE, in the metric's units.
    """
    if diffs is not None:
        if sd is not None or n is not None:
            raise ValueError("give either diffs or sd and n, not both")
        sd, n = _sd(diffs)
    if sd is None or n is None or n < 1 or sd < 0:
        raise ValueError("need the per-user differences, or their SD (>= 0) and n (>= 1)")
    return float(_z_sum(alpha, power, n_comparisons) * sd / math.sqrt(n))


def mde_from_interval(lo: float, hi: float, *, alpha: float = 0.05, power: float = 0.8,
                      n_comparisons: int = 1) -> float:
    """The MDE implied by a reported (1 - alpha) interval of a mean difference, when the per-user
    values are not at hand: SE ~ (hi - lo) / (2 z_{1 - alpha/2}) (normal approximation),
    MDE = (z_{1 - alpha'/2} + z_{power}) * SE with alpha' = alpha / n_comparisons.

    Args:
        lo: the interval's lower end.
        hi: the interval's upper end.
        alpha: the test's two-sided level.
        power: the probability of detecting the effect.
        n_comparisons: m tested arms: the level is alpha / m (see :func:`mde`).

    Returns:
        The MDE, in the metric's units.
    """
    if not hi >= lo:
        raise ValueError("need lo <= hi")
    se = (hi - lo) / (2 * NormalDist().inv_cdf(1 - alpha / 2))
    return float(_z_sum(alpha, power, n_comparisons) * se)


def users_needed(effect: float, sd: float, *, alpha: float = 0.05, power: float = 0.8,
                 n_comparisons: int = 1) -> float:
    """Users a paired test needs to detect a true mean difference ``effect`` with probability
    ``power``: the inverse of :func:`mde`.

    Args:
        effect: the true mean per-user difference.
        sd: the per-user differences' SD.
        alpha: the test's two-sided level.
        power: the probability of detecting the effect.
        n_comparisons: m tested arms: the level is alpha / m (see :func:`mde`).

    Returns:
        The number of users (not rounded); infinite for no effect.
    """
    if effect == 0:
        return float("inf")
    return float((_z_sum(alpha, power, n_comparisons) * sd / abs(effect)) ** 2)


def simulated_power(values, n: int, *, n_sims: int = 1000, alpha: float = 0.05, seed: int = 0) -> float:
    """The empirical power at ``n`` users: the share of simulated experiments, drawn with
    replacement from the per-user outcomes ``values``, in which a two-sided z-test of
    "mean = 0" rejects at ``alpha``.

    Args:
        values: per-user outcomes (paired differences, or interleaving preferences).
        n: users per simulated experiment.
        n_sims: simulated experiments.
        alpha: the test's two-sided level.
        seed: the simulation's seed.

    Returns:
        The share of experiments that rejected.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size < 2 or int(n) < 2:
        raise ValueError("need at least two values and n >= 2")
    rng = np.random.default_rng(seed)
    z_crit = NormalDist().inv_cdf(1 - alpha / 2)
    hits = 0
    for start in range(0, n_sims, 200):
        draws = v[rng.integers(0, v.size, size=(min(200, n_sims - start), int(n)))]
        se = draws.std(axis=1, ddof=1) / math.sqrt(n)
        z = np.divide(draws.mean(axis=1), se, out=np.zeros(len(draws)), where=se > 0)
        hits += int((np.abs(z) > z_crit).sum())
    return hits / n_sims


# --------------------------------------------------------------------------------------
# Relative lifts: a ratio of two noisy means
# --------------------------------------------------------------------------------------


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t (numerical: the density integrated on a grid, then
    inverted; accurate to about 1e-4 for df >= 1).

    Args:
        p: the probability, in (0, 1).
        df: the degrees of freedom (need not be whole).

    Returns:
        The quantile.
    """
    if not 0.5 <= p < 1:
        raise ValueError(f"p must be in [0.5, 1), got {p}")
    if not df > 0:
        raise ValueError(f"df must be > 0, got {df}")
    if df > 1e4:
        return NormalDist().inv_cdf(p)
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    x = np.linspace(0.0, 2000.0 if df < 3 else 60.0, 400_001)
    pdf = np.exp(log_c - (df + 1) / 2 * np.log1p(x * x / df))
    cdf = 0.5 + np.concatenate([[0.0], np.cumsum((pdf[1:] + pdf[:-1]) / 2 * np.diff(x))])
    return float(np.interp(p, cdf, x))


@dataclass(frozen=True)
class SeedAwareDiff:
    """A lift whose interval counts both noises: users sampled, and models trained."""

    mean_diff: float
    lo: float
    hi: float
    se: float
    se_users: float  # the user-sampling part alone (what a paired bootstrap reports)
    se_seeds: float  # the training-seed part alone
    df: float
    seed_sd_treatment: float  # SD of the treatment's mean over its seeds (0 with one seed)
    seed_sd_control: float


def seed_aware_diff(treatment, control, alpha: float = 0.05) -> SeedAwareDiff:
    """Mean per-user difference of two arms, each given as a (seeds, users) array of a
    per-user metric (one row for an arm with one seed, e.g. item-kNN), with an interval that
    adds training-seed noise to user-sampling noise:

    ``SE^2 = Var_u(d_u) / n + s_T^2 / k_T + s_C^2 / k_C``, with ``d_u`` the user's
    seed-averaged difference and ``s^2`` the variance of an arm's mean over its ``k`` seeds;
    the interval uses Student's t with Welch-Satterthwaite degrees of freedom, because three
    seeds estimate ``s`` poorly. Users with a non-finite value in any row are left out.

    Args:
        treatment: (seeds, users) per-user metric of the treatment arm (one row for an arm
            with one seed, e.g. item-kNN).
        control: (seeds, users) the control's, the same users in the same order.
        alpha: the interval is at level 1 - alpha.

    Returns:
        A :class:`SeedAwareDiff`: mean difference, interval, SE and its parts, degrees of
        freedom.
    """
    t = np.atleast_2d(np.asarray(treatment, dtype=np.float64))
    c = np.atleast_2d(np.asarray(control, dtype=np.float64))
    if t.shape[1] != c.shape[1]:
        raise ValueError(f"treatment has {t.shape[1]} users, control {c.shape[1]}: pass the same users")
    ok = np.isfinite(t).all(axis=0) & np.isfinite(c).all(axis=0)
    t, c = t[:, ok], c[:, ok]
    n = t.shape[1]
    if n < 2:
        raise ValueError("need at least two users with finite values")
    d = t.mean(axis=0) - c.mean(axis=0)
    var_u = float(d.var(ddof=1)) / n
    parts = [(var_u, n - 1)]
    sds = []
    for arm in (t, c):
        k = arm.shape[0]
        s2 = float(arm.mean(axis=1).var(ddof=1)) if k > 1 else 0.0
        sds.append(math.sqrt(s2))
        if k > 1:
            parts.append((s2 / k, k - 1))
    var = sum(v for v, _ in parts)
    se = math.sqrt(var)
    den = sum(v * v / dof for v, dof in parts if v > 0)
    df = var * var / den if den > 0 else float("inf")
    q = t_quantile(1 - alpha / 2, df) if math.isfinite(df) else NormalDist().inv_cdf(1 - alpha / 2)
    m = float(d.mean())
    return SeedAwareDiff(m, m - q * se, m + q * se, se, math.sqrt(var_u), math.sqrt(var - var_u), float(df),
                         sds[0], sds[1])


def seed_aware_vs(seeds, control, metric: str = "recall@50") -> tuple[np.ndarray, SeedAwareDiff]:
    """An arm's training seeds against a control run, user by user: each seed's mean and the
    seed-aware difference (:func:`seed_aware_diff`).

    Args:
        seeds: the arm's results (``EvalResult``, or anything with a ``per_user`` frame),
            one per training seed.
        control: the control's result (one run).
        metric: the per-user metric compared.

    Returns:
        (each seed's mean over the control's users, the :class:`SeedAwareDiff`).
    """
    c = control.per_user.set_index("user_id")[metric]
    t = np.stack([r.per_user.set_index("user_id")[metric].reindex(c.index).to_numpy(dtype=np.float64)
                  for r in seeds])
    return np.nanmean(t, axis=1), seed_aware_diff(t, c.to_numpy())

def _pair(treatment, control) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(treatment, dtype=np.float64).ravel()
    c = np.asarray(control, dtype=np.float64).ravel()
    if t.shape != c.shape:
        raise ValueError("treatment and control must hold the same users in the same order")
    keep = np.isfinite(t) & np.isfinite(c)
    return t[keep], c[keep]


def ratio_bootstrap(treatment, control, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> M.CI:
    """Relative lift mean(treatment) / mean(control) - 1 with a (1 - alpha) percentile
    bootstrap interval. Users are resampled **jointly** (a user's two values stay together),
    and the ratio is recomputed on every resample, so the interval carries the noise of the
    denominator as well as the numerator's. (Dividing the interval of the absolute lift by the
    control's point mean does not.) Pairs with a NaN on either side are dropped.

    Args:
        treatment: one number per user.
        control: the same users' numbers under the control, in the same order.
        n_boot: resamples.
        alpha: the interval is at level 1 - alpha.
        seed: the resampling seed.

    Returns:
        A :class:`llmrec_lib.metrics.CI` of the relative lift.
    """
    M.check_bootstrap_args(n_boot, alpha)
    t, c = _pair(treatment, control)
    if t.size == 0 or c.mean() == 0:
        nan = float("nan")
        return M.CI(nan, nan, nan)
    n = t.size
    rng = np.random.default_rng(seed)
    ratios = np.empty(int(n_boot))
    chunk = max(1, min(int(n_boot), (1 << 22) // n))
    tc = np.stack([t, c], axis=1)
    for start in range(0, int(n_boot), chunk):
        k = min(chunk, int(n_boot) - start)
        idx = rng.integers(0, n, size=(k, n))
        counts = np.bincount((idx + (np.arange(k) * n)[:, None]).ravel(), minlength=k * n).reshape(k, n)
        sums = counts @ tc  # (k, 2): resampled totals of treatment and control
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios[start:start + k] = sums[:, 0] / sums[:, 1] - 1
    ratios = ratios[np.isfinite(ratios)]
    lo, hi = np.quantile(ratios, [alpha / 2, 1 - alpha / 2])
    return M.CI(float(t.mean() / c.mean() - 1), float(lo), float(hi))


def ratio_delta_interval(treatment, control, alpha: float = 0.05) -> M.CI:
    """The delta-method (1 - alpha) interval of mean(t) / mean(c) - 1 on paired users:
    R = mt / mc, Var(R) ~ (Var t - 2 R Cov(t, c) + R^2 Var c) / (n mc^2). A large-sample
    check on :func:`ratio_bootstrap`.

    Args:
        treatment: one number per user.
        control: the same users' numbers under the control, in the same order.
        alpha: the interval is at level 1 - alpha.

    Returns:
        A :class:`llmrec_lib.metrics.CI` of the relative lift.
    """
    t, c = _pair(treatment, control)
    n = t.size
    mt, mc = t.mean(), c.mean()
    r = mt / mc
    cov = np.cov(t, c, ddof=1)
    se = math.sqrt(max(cov[0, 0] - 2 * r * cov[0, 1] + r * r * cov[1, 1], 0.0) / (n * mc * mc))
    z = NormalDist().inv_cdf(1 - alpha / 2)
    return M.CI(float(r - 1), float(r - 1 - z * se), float(r - 1 + z * se))


def _paired_values(res: E.EvalResult, base: E.EvalResult, metric: str) -> tuple[np.ndarray, np.ndarray]:
    a = res.per_user.set_index("user_id")[metric]
    b = base.per_user.set_index("user_id")[metric]
    if set(a.index) != set(b.index):
        raise ValueError("the arms cover different users; evaluate every arm on the same EvalData")
    return a.to_numpy(np.float64), b.loc[a.index].to_numpy(np.float64)


def readout(results: Mapping[str, E.EvalResult], control: str, metric: str = "recall@50", *,
            n_boot: int = 1000, alpha: float = 0.05, seed: int = 0, power: float = 0.8) -> pd.DataFrame:
    """One row per arm: mean, 95% interval, absolute and relative lift over ``control`` with a
    paired bootstrap interval, raw and Holm-adjusted p-values, and the minimum detectable effect.
    The control's row has no lift.

    - ``relative lo`` / ``relative hi``: the :func:`ratio_bootstrap` interval of
      mean(arm) / mean(control) - 1 (the same resamples as the absolute interval);
    - ``MDE`` / ``relative MDE``: :func:`mde` of the arm's per-user differences from the control,
      at ``power`` and the Bonferroni level alpha / m for m tested arms (conservative under
      Holm), absolute and as a share of the control's mean. A "no detectable difference"
      verdict rules out true lifts of at least that size (with probability ``power``).

    Args:
        results: arm name -> its :class:`llmrec_lib.evaluate.EvalResult`, the same users.
        control: the control arm's name.
        metric: the metric compared.
        n_boot: resamples.
        alpha: the tests' level (Holm over the arms).
        seed: the resampling seed.
        power: the power the MDE is computed at.

    Returns:
        A DataFrame, one row per arm.
    """
    if control not in results:
        raise KeyError(f"control {control!r} is not one of the arms {sorted(results)}")
    base = results[control]
    base_mean = base.mean(metric)
    m = len(results) - 1
    rows = []
    for name, res in results.items():
        s = res.summary(n_boot=n_boot, alpha=alpha, seed=seed, metrics=[metric]).loc[metric]
        row = {"arm": name, metric: s["mean"], "lo": s["lo"], "hi": s["hi"], "users": int(s["n"])}
        if name != control:
            p = res.compare(base, metric, n_boot=n_boot, alpha=alpha, seed=seed)
            a, b = _paired_values(res, base, metric)
            rel = ratio_bootstrap(a, b, n_boot=n_boot, alpha=alpha, seed=seed)
            d = a - b
            d = d[np.isfinite(d)]
            mde_abs = mde(sd=float(d.std(ddof=1)), n=d.size, alpha=alpha, power=power, n_comparisons=m) \
                if d.size > 1 else np.nan
            row |= {"lift": p.mean_diff, "lift lo": p.lo, "lift hi": p.hi,
                    "relative lift": p.mean_diff / base_mean if base_mean else np.nan,
                    "relative lo": rel.lo, "relative hi": rel.hi, "p": p.p_value,
                    "MDE": mde_abs, "relative MDE": mde_abs / base_mean if base_mean else np.nan}
        rows.append(row)
    table = pd.DataFrame(rows).set_index("arm")
    tested = table["p"].notna()
    table["p (Holm)"] = np.nan
    table.loc[tested, "p (Holm)"] = holm(table.loc[tested, "p"].to_numpy())
    table["verdict"] = np.where(~tested, "control",
                                np.where(table["p (Holm)"] > alpha, "no detectable difference",
                                         np.where(table["lift"] > 0, "better", "worse")))
    return table


def popular_items(item_ids, train: pd.DataFrame, *, popular_share: float = 0.2) -> np.ndarray:
    """Bool mask over catalogue columns: the ``popular_share`` most rated items in ``train``
    (by count, among items rated at least once; ties broken by column order).

    Args:
        item_ids: the catalogue's item ids, in column order.
        train: the training ratings (``item_id`` column).
        popular_share: the share of rated items called popular.

    Returns:
        (n_items,) bool.
    """
    counts = train.groupby("item_id").size().reindex(np.asarray(item_ids), fill_value=0).to_numpy()
    n_top = max(1, int(round(popular_share * (counts > 0).sum())))
    top_cols = np.argsort(-counts, kind="stable")[:n_top]
    is_pop = np.zeros(len(counts), dtype=bool)
    is_pop[top_cols] = True
    return is_pop


def segment_masks(data: E.EvalData, train: pd.DataFrame, *, popular_share: float = 0.2) -> dict[str, dict]:
    """The book's standard segments as arguments for :meth:`EvalResult.segment`.

    - ``cold targets``: targets nobody rated in training;
    - ``short history`` / ``long history``: users at or below / above the median number of
      history ratings;
    - ``popular targets`` / ``tail targets``: targets among / outside the ``popular_share`` most
      rated items in training (by count), which hold most of the interactions.

    Args:
        data: the evaluated users and targets.
        train: the training ratings.
        popular_share: as for :func:`popular_items`.

    Returns:
        Segment name -> keyword arguments of :meth:`EvalResult.segment`.
    """
    is_pop = popular_items(data.item_ids, train, popular_share=popular_share)
    med = float(np.median(data.n_history))
    return {
        "cold targets": {"name": "cold"},
        "short history": {"users": data.user_ids[data.n_history <= med]},
        "long history": {"users": data.user_ids[data.n_history > med]},
        "popular targets": {"targets": is_pop[data.target_cols]},
        "tail targets": {"targets": ~is_pop[data.target_cols]},
    }


def segment_table(results: Mapping[str, E.EvalResult], segments: Mapping[str, dict],
                  metric: str = "recall@50", *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Mean and 95% interval of ``metric`` per (arm, segment), with the segment's user count.

    Args:
        results: arm name -> its EvalResult.
        segments: segment name -> keyword arguments of :meth:`EvalResult.segment`
            (:func:`segment_masks`).
        metric: the metric.
        n_boot: resamples.
        seed: the resampling seed.

    Returns:
        A DataFrame, one row per (arm, segment).
    """
    rows = []
    for name, res in results.items():
        for seg, kwargs in segments.items():
            part = res.segment(**kwargs)
            if len(part.per_user) == 0:
                rows.append({"arm": name, "segment": seg, "mean": np.nan, "lo": np.nan, "hi": np.nan, "users": 0})
                continue
            s = part.summary(n_boot=n_boot, seed=seed).loc[metric]
            rows.append({"arm": name, "segment": seg, "mean": s["mean"], "lo": s["lo"], "hi": s["hi"],
                         "users": int(s["n"])})
    return pd.DataFrame(rows)


IDENTICAL = "identical for every user (no evidence)"


def segment_readout(results: Mapping[str, E.EvalResult], segments: Mapping[str, dict], control: str,
                    metric: str = "recall@50", *, metric_for: Mapping[str, str] | None = None,
                    n_boot: int = 1000, alpha: float = 0.05, seed: int = 0, power: float = 0.8) -> pd.DataFrame:
    """Every (segment, arm) against the control on that segment, with **one** Holm correction
    over all segments x arms: looking at 5 segments of 7 arms is 35 chances to find a lucky
    win. ``metric_for`` overrides the metric per segment (e.g. recall@100 for cold targets).
    MDE as in :func:`readout`, at the Bonferroni level over every tested pair. A pair equal for
    every user of the segment gets the verdict :data:`IDENTICAL`, not "no detectable difference".

    Args:
        results: arm name -> its EvalResult.
        segments: segment name -> keyword arguments of :meth:`EvalResult.segment`.
        control: the control arm's name.
        metric: the metric compared.
        metric_for: segment name -> the metric for that segment instead.
        n_boot: resamples.
        alpha: the tests' level (one Holm correction over every pair).
        seed: the resampling seed.
        power: the power the MDE is computed at.

    Returns:
        A DataFrame, one row per (segment, arm), with a verdict.
    """
    if control not in results:
        raise KeyError(f"control {control!r} is not one of the arms {sorted(results)}")
    metric_for = dict(metric_for or {})
    rows = []
    for seg, kwargs in segments.items():
        met = metric_for.get(seg, metric)
        base = results[control].segment(**kwargs)
        for name, res in results.items():
            if name == control:
                continue
            part = res.segment(**kwargs)
            row = {"segment": seg, "arm": name, "metric": met, "users": len(part.per_user)}
            if len(part.per_user) < 2:
                rows.append(row | {"control": np.nan, "mean": np.nan, "lift": np.nan, "lift lo": np.nan,
                                   "lift hi": np.nan, "p": np.nan, "sd": np.nan})
                continue
            p = part.compare(base, met, n_boot=n_boot, alpha=alpha, seed=seed)
            a, b = _paired_values(part, base, met)
            d = (a - b)[np.isfinite(a - b)]
            rows.append(row | {"control": base.mean(met), "mean": part.mean(met), "lift": p.mean_diff,
                               "lift lo": p.lo, "lift hi": p.hi, "p": p.p_value, "sd": float(d.std(ddof=1))})
    table = pd.DataFrame(rows)
    tested = table["p"].notna()
    m = int(tested.sum())
    table["p (Holm)"] = np.nan
    if m:
        table.loc[tested, "p (Holm)"] = holm(table.loc[tested, "p"].to_numpy())
    table["MDE"] = [mde(sd=sd, n=n, alpha=alpha, power=power, n_comparisons=max(m, 1)) if np.isfinite(sd) else np.nan
                    for sd, n in zip(table["sd"], table["users"])]
    table["verdict"] = np.where(~tested, "not tested",
                                np.where(table["p (Holm)"] > alpha, "no detectable difference",
                                         np.where(table["lift"] > 0, "better", "worse")))
    # equal for every user (e.g. two ID models that both score 0 on cold targets): an identity,
    # which says nothing about the arms, not a null result with an MDE
    table.loc[tested & (table["sd"] == 0) & (table["lift"] == 0), "verdict"] = IDENTICAL
    return table.drop(columns="sd")


def slot_shares(results: Mapping[str, E.EvalResult], groups: Mapping[str, np.ndarray], k: int = 50) -> pd.DataFrame:
    """Share of each arm's filled top-``k`` slots that go to each group of items: where the
    lists' mix moves.

    Args:
        results: arm name -> its EvalResult.
        groups: group name -> bool mask over catalogue columns (e.g. popular vs tail).
        k: the list length.

    Returns:
        A DataFrame, one row per arm, one column per group.
    """
    rows = {}
    for name, res in results.items():
        sub = res.topk[:, :k]
        filled = sub[sub >= 0]
        rows[name] = {g: float(np.asarray(mask, dtype=bool)[filled].mean()) if filled.size else np.nan
                      for g, mask in groups.items()}
    return pd.DataFrame(rows).T


def list_overlap(result: E.EvalResult, control: E.EvalResult, k: int = 50) -> float:
    """Mean share of a user's top-``k`` slots that hold an item of the control's top ``k``.

    The paired readout compares an arm with its control user by user, so an arm whose lists
    mostly repeat the control's has small per-user differences and a small MDE: this says how
    much of a list an arm shares with its control.

    Args:
        result: the arm's EvalResult.
        control: the control's EvalResult, on the same users in the same order.
        k: the list length.

    Returns:
        The mean over users of |top-k(arm) & top-k(control)| / k (0: nothing shared, 1: the
        same set).
    """
    if not np.array_equal(result.user_ids, control.user_ids):
        raise ValueError(f"{result.name!r} and {control.name!r} cover different users; evaluate both on one EvalData")
    a, b = result.topk[:, :k], control.topk[:, :k]
    shared = [np.intersect1d(x[x >= 0], y[y >= 0]).size for x, y in zip(a, b)]
    return float(np.mean(shared) / k)


# --------------------------------------------------------------------------------------
# Guardrails: what the lists look like, whatever their accuracy
# --------------------------------------------------------------------------------------


def genre_matrix(movies: pd.DataFrame, item_ids) -> tuple[np.ndarray, list[str]]:
    """The genres of a movies frame as a 0/1 matrix in catalogue column order.

    Args:
        movies: a movies frame with a ``genres`` column of lists
            (:func:`llmrec_lib.data.load_movielens`).
        item_ids: the catalogue's item ids, in column order.

    Returns:
        ((n_items, n_genres) 0/1 matrix, the genre names).
    """
    g = movies.set_index("item_id")["genres"].reindex(np.asarray(item_ids))
    g = g.apply(lambda x: x if isinstance(x, (list, tuple, np.ndarray)) else [])
    names = sorted({x for row in g for x in row})
    col = {x: j for j, x in enumerate(names)}
    out = np.zeros((len(g), len(names)), dtype=np.int8)
    for i, row in enumerate(g):
        for x in row:
            out[i, col[x]] = 1
    return out, names


def guardrails(results: Mapping[str, E.EvalResult], item_genres, k: int = 50, *, n_boot: int = 1000,
               seed: int = 0) -> pd.DataFrame:
    """Per arm, from its top-``k`` lists alone:

    - ``coverage@k``: share of the catalogue recommended to at least one user
      (:func:`metrics.coverage`);
    - ``novelty@k``: mean over users of the mean self-information -log2 p(i) of their items,
      p(i) the add-one smoothed share of training interactions (:func:`metrics.novelty`);
    - ``genre entropy@k``: mean over users of the Shannon entropy (bits) of the list's genre
      mix (:func:`metrics.genre_entropy`). MovieLens lists a movie's genres alphabetically, so
      there is no "primary" genre to count; the entropy uses all of them, each item's weight
      split evenly.

    Per-user guardrails come with a 95% bootstrap interval (``lo`` / ``hi`` columns).

    Args:
        results: arm name -> its EvalResult.
        item_genres: (n_items, n_genres) 0/1 matrix (:func:`genre_matrix`).
        k: the list length.
        n_boot: resamples.
        seed: the resampling seed.

    Returns:
        A DataFrame, one row per arm.
    """
    rows = []
    for name, res in results.items():
        n_items = len(res.item_counts)
        row = {"arm": name, f"coverage@{k}": M.coverage(res.topk, n_items, k)}
        for col, values in ((f"novelty@{k}", M.novelty(res.topk, res.item_counts, k)),
                            (f"genre entropy@{k}", M.genre_entropy(res.topk, item_genres, k))):
            ci = M.bootstrap_ci(values, n_boot=n_boot, seed=seed, nan_policy="omit")
            row |= {col: ci.mean, f"{col} lo": ci.lo, f"{col} hi": ci.hi}
        rows.append(row)
    return pd.DataFrame(rows).set_index("arm")


# --------------------------------------------------------------------------------------
# Team-draft interleaving, replayed offline
# --------------------------------------------------------------------------------------


def team_draft(a: Sequence[int], b: Sequence[int], k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Team-draft interleaving (Radlinski, Kurup & Joachims 2008) of two ranked lists.

    The team with fewer picks so far picks next (a coin flip when tied); it adds its highest
    ranked item not already in the list. Stops early when both lists run out.

    Args:
        a: the first ranked list (item ids or column indices); negative entries are empty slots
            and skipped.
        b: the second ranked list, likewise.
        k: the interleaved list's length.
        rng: the coin flips' generator.

    Returns:
        (the interleaved top-``k``, per slot the team that contributed it: 0 = a, 1 = b).
    """
    lists = ([int(x) for x in a if x >= 0], [int(x) for x in b if x >= 0])
    ptr = [0, 0]
    picks = [0, 0]
    seen: set[int] = set()
    items, team = [], []
    while len(items) < k:
        for t in (0, 1):  # skip what the other team already placed
            while ptr[t] < len(lists[t]) and lists[t][ptr[t]] in seen:
                ptr[t] += 1
        left = [ptr[t] < len(lists[t]) for t in (0, 1)]
        if not any(left):
            break
        if picks[0] != picks[1]:
            t = 0 if picks[0] < picks[1] else 1
        else:
            t = int(rng.random() < 0.5)
        if not left[t]:
            t = 1 - t
        item = lists[t][ptr[t]]
        seen.add(item)
        items.append(item)
        team.append(t)
        picks[t] += 1
        ptr[t] += 1
    return np.asarray(items, dtype=np.int64), np.asarray(team, dtype=np.int8)


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided sign test (binomial, p = 1/2) of ``wins`` against ``losses``.

    Args:
        wins: users who preferred one arm (ties are left out before calling).
        losses: users who preferred the other.

    Returns:
        The p-value; 1.0 when there is nothing to test.
    """
    n = int(wins) + int(losses)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1))
    return float(min(1.0, 2 * tail / 2 ** n))


@dataclass
class Interleaving:
    """Outcome of an interleaving replay: per user +1 (clicks favoured arm a), -1 (b), 0 (tie,
    including no click); shares of users preferring each arm; the mean preference
    ``delta`` = share a - share b with a bootstrap interval; the sign test's p-value."""

    n: int
    share_a: float
    share_b: float
    share_ties: float
    delta: float
    lo: float
    hi: float
    p_sign: float
    outcome: np.ndarray = field(repr=False)


def interleave(topk_a, topk_b, targets: Sequence, k: int = 50, *, seed: int = 0, n_boot: int = 1000,
               alpha: float = 0.05) -> Interleaving:
    """Replay team-draft interleaving of two arms for every user.

    A target in the interleaved top-``k`` is a click credited to the team that placed it; a
    user prefers the arm with more clicks. Seeded: the same ``seed`` draws the same coin flips.

    Args:
        topk_a: (n_users, depth) ranked lists of arm a.
        topk_b: (n_users, depth) ranked lists of arm b, the same users in the same order.
        targets: each user's held-out items.
        k: the interleaved list's length.
        seed: the coin flips' seed.
        n_boot: resamples of the preference's interval.
        alpha: the interval is at level 1 - alpha.

    Returns:
        An :class:`Interleaving`: shares of users preferring each arm, the mean preference
        with its interval, and the sign test's p-value.
    """
    a = np.asarray(topk_a)
    b = np.asarray(topk_b)
    if a.shape[0] != b.shape[0] or a.shape[0] != len(targets):
        raise ValueError("topk_a, topk_b and targets must hold the same users")
    rng = np.random.default_rng(seed)
    outcome = np.zeros(a.shape[0], dtype=np.int8)
    for u in range(a.shape[0]):
        items, team = team_draft(a[u], b[u], k, rng)
        clicked = np.isin(items, np.asarray(targets[u]))
        ca, cb = int((clicked & (team == 0)).sum()), int((clicked & (team == 1)).sum())
        outcome[u] = np.sign(ca - cb)
    n = len(outcome)
    wins, losses = int((outcome > 0).sum()), int((outcome < 0).sum())
    ci = M.bootstrap_ci(outcome.astype(np.float64), n_boot=n_boot, alpha=alpha, seed=seed)
    return Interleaving(n=n, share_a=wins / n, share_b=losses / n, share_ties=(n - wins - losses) / n,
                        delta=ci.mean, lo=ci.lo, hi=ci.hi, p_sign=sign_test(wins, losses), outcome=outcome)


def interleave_results(res_a: E.EvalResult, res_b: E.EvalResult, data: E.EvalData, k: int = 50, *,
                       seed: int = 0, n_boot: int = 1000) -> Interleaving:
    """:func:`interleave` of two evaluated arms on ``data``'s users and targets (matched by id).

    Args:
        res_a: arm a's EvalResult.
        res_b: arm b's EvalResult.
        data: the evaluated users and their targets.
        k: the interleaved list's length.
        seed: the coin flips' seed.
        n_boot: resamples of the preference's interval.

    Returns:
        An :class:`Interleaving`.
    """
    rows_a = pd.Index(res_a.user_ids).get_indexer(data.user_ids)
    rows_b = pd.Index(res_b.user_ids).get_indexer(data.user_ids)
    if (rows_a < 0).any() or (rows_b < 0).any():
        raise ValueError("both arms must have lists for every user of data")
    return interleave(res_a.topk[rows_a], res_b.topk[rows_b], data.targets, k, seed=seed, n_boot=n_boot)


def load_rankings(paths: Mapping[str, str | Path], data: E.EvalData, ks=(10, 50, 100)) -> dict[str, E.EvalResult]:
    """Evaluate stored top-K lists (:func:`evaluate.save_ranking`) as arms on ``data``.

    Args:
        paths: arm name -> its ``.npz`` file.
        data: the users and targets to measure on.
        ks: the list lengths measured (at most the stored K).

    Returns:
        Arm name -> its EvalResult.
    """
    out = {}
    for name, path in paths.items():
        ranking = E.StoredRanking(path, data.item_ids)
        if ranking.depth < max(ks):
            raise ValueError(f"{path} stores top-{ranking.depth} lists; Recall@{max(ks)} needs at least "
                             f"{max(ks)}: evaluate that system with ks including {max(ks)} before saving")
        out[name] = E.evaluate(ranking, data, ks=ks, name=name)
    return out



# --------------------------------------------------------------------------------------------
# Claims about named arms, on data where some arms are missing
# --------------------------------------------------------------------------------------------


class NotOnThisData(LookupError):
    """An input a claim needs was not produced on this data (a skipped arm or chapter)."""


def need(value, what: str):
    """``value``, or :class:`NotOnThisData` saying ``what`` is missing when it is None.

    Args:
        value: anything.
        what: what is missing, for the message.

    Returns:
        ``value``, when it is not None.
    """
    if value is None:
        raise NotOnThisData(f"{what} is not on this data")
    return value


def check_arms(claims, present, arms: Sequence[str], claim: str, holds, *, detail=None,
               pinned: bool = True):
    """Check ``claim`` about the named ``arms``, or record it as not tested when one of them is
    not present (an arm dropped on this data).

    Args:
        claims: the chapter's :class:`config.Claims`.
        present: the arms this data has.
        arms: the arms the claim is about.
        claim: the claim's text.
        holds: a callable returning whether it holds, called only when every arm is present.
        detail: a callable returning the detail, likewise (or None).
        pinned: whether the claim is pinned to the reference numbers.

    Returns:
        The check's result, or None when skipped (skipping raises on the reference).
    """
    absent = [a for a in arms if a not in present]
    if absent:
        claims.skip(claim, f"arm not in this readout: {', '.join(absent)}", pinned=pinned)
        return None
    return claims.check(claim, holds(), pinned=pinned, detail=detail() if detail else "")


_LEDGER_GAPS = (NotOnThisData, KeyError, IndexError, StopIteration, TypeError)


def ledger_row(claims, design: str, claim: str, build) -> tuple[str, str, str, str]:
    """One row of a claim ledger: ``(design, claim, evidence, verdict)`` with ``build() ->
    (evidence, verdict)``. When an input is missing on this data (:class:`NotOnThisData`, a
    missing key or arm, or a None where a number was expected), the row says "not tested on
    this data" and the claim is recorded with :meth:`config.Claims.skip`; on the reference
    release the error is raised, since every input exists there.

    Args:
        claims: the chapter's :class:`config.Claims`.
        design: the row's design (what was compared).
        claim: the claim's text.
        build: a callable returning (evidence, verdict).

    Returns:
        (design, claim, evidence, verdict).
    """
    try:
        evidence, verdict = build()
    except _LEDGER_GAPS as err:
        if claims.reference:
            raise
        why = str(err) if isinstance(err, NotOnThisData) else (
            f"an input was skipped on this data ({type(err).__name__}: {err})")
        claims.skip(f"ledger: {claim}", why)
        return design, claim, f"not available: {why}", "not tested on this data"
    return design, claim, evidence, verdict
