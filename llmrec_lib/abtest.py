"""An offline A/B readout: every system an arm of one experiment, lifts over a control.

Every arm is measured on the same users, targets and catalogue (:mod:`llmrec_lib.evaluate`),
so arms can be compared **user by user**: the lift of an arm over the control is the mean of
per-user differences, with a paired bootstrap interval and p-value
(:func:`llmrec_lib.metrics.paired_bootstrap`). Comparing many arms with one control inflates
the chance that one "wins" by luck; :func:`holm` adjusts the p-values (Holm, 1979), which
controls the family-wise error rate without assuming the tests are independent.

Segments re-measure the same top-K lists on a subset of users or targets
(:meth:`EvalResult.segment`): cold-start targets, short- and long-history users, popular and
tail targets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from llmrec_lib import evaluate as E

__all__ = ["holm", "readout", "segment_masks", "segment_table", "load_rankings"]


def holm(p_values) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (same order as given), each in [0, 1].

    Reject hypothesis i at level alpha when its adjusted p-value is <= alpha.
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


def readout(results: Mapping[str, E.EvalResult], control: str, metric: str = "recall@50", *,
            n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """One row per arm: mean, 95% interval, absolute and relative lift over ``control`` with a
    paired bootstrap interval, raw and Holm-adjusted p-values. The control's row has no lift.
    """
    if control not in results:
        raise KeyError(f"control {control!r} is not one of the arms {sorted(results)}")
    base = results[control]
    base_mean = base.mean(metric)
    rows = []
    for name, res in results.items():
        s = res.summary(n_boot=n_boot, alpha=alpha, seed=seed).loc[metric]
        row = {"arm": name, metric: s["mean"], "lo": s["lo"], "hi": s["hi"], "users": int(s["n"])}
        if name != control:
            p = res.compare(base, metric, n_boot=n_boot, alpha=alpha, seed=seed)
            row |= {"lift": p.mean_diff, "lift lo": p.lo, "lift hi": p.hi,
                    "relative lift": p.mean_diff / base_mean if base_mean else np.nan,
                    "relative lo": p.lo / base_mean if base_mean else np.nan,
                    "relative hi": p.hi / base_mean if base_mean else np.nan, "p": p.p_value}
        rows.append(row)
    table = pd.DataFrame(rows).set_index("arm")
    tested = table["p"].notna()
    table["p (Holm)"] = np.nan
    table.loc[tested, "p (Holm)"] = holm(table.loc[tested, "p"].to_numpy())
    table["verdict"] = np.where(~tested, "control",
                                np.where(table["p (Holm)"] > alpha, "no detectable difference",
                                         np.where(table["lift"] > 0, "better", "worse")))
    return table


def segment_masks(data: E.EvalData, train: pd.DataFrame, *, popular_share: float = 0.2) -> dict[str, dict]:
    """The book's standard segments as arguments for :meth:`EvalResult.segment`.

    - ``cold targets``: targets nobody rated in training;
    - ``short history`` / ``long history``: users at or below / above the median number of
      history ratings;
    - ``popular targets`` / ``tail targets``: targets among / outside the ``popular_share`` most
      rated items in training (by count), which hold most of the interactions.
    """
    counts = train.groupby("item_id").size().reindex(data.item_ids, fill_value=0).to_numpy()
    n_top = max(1, int(round(popular_share * (counts > 0).sum())))
    top_cols = np.argsort(-counts, kind="stable")[:n_top]
    is_pop = np.zeros(len(counts), dtype=bool)
    is_pop[top_cols] = True
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
    """Mean and 95% interval of ``metric`` per (arm, segment), with the segment's user count."""
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


def load_rankings(paths: Mapping[str, str | Path], data: E.EvalData, ks=(10, 50, 100)) -> dict[str, E.EvalResult]:
    """Evaluate stored top-K lists (:func:`evaluate.save_ranking`) as arms on ``data``."""
    out = {}
    for name, path in paths.items():
        ranking = E.StoredRanking(path, data.item_ids)
        if ranking.depth < max(ks):
            raise ValueError(f"{path} stores top-{ranking.depth} lists; Recall@{max(ks)} needs at least "
                             f"{max(ks)}: evaluate that system with ks including {max(ks)} before saving")
        out[name] = E.evaluate(ranking, data, ks=ks, name=name)
    return out

