"""The champion/challenger comparison report on a time-based holdout.

Closed deals are split by close date at a cut-off: the models learn from the
deals closed before it, seen with nothing after it (features and norms as of
the cut-off, :func:`~waggle.insights.champion.training_rows`), and are judged
on the deals closed from the cut-off up to ``until``. Both models are fitted
on the same training deals: the champion's method (naive Bayes) and the
challenger (LightGBM), so the figures compare methods, not training windows.

The figures (:func:`compare`): AUC, Brier score, expected calibration error
and the reliability curve (tenths of predicted probability), lift in the top
10% and 20% (win rate of the deals ranked highest over the overall win rate),
the same per segment (industry, region, pipeline) and the features that
weigh most in the holdout's explanations (mean share of absolute log-odds
terms). :func:`render_html` draws them as one self-contained HTML page with
inline SVG charts: no script, no external file.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from waggle.core.clock import as_utc
from waggle.core.errors import InvalidInput
from waggle.crm.models import Account, Opportunity, OpportunityStatus, Pipeline
from waggle.identity.models import Region
from waggle.insights.challenger import BoostingSettings, Challenger, train_challenger
from waggle.insights.champion import (
    MODEL_FEATURES,
    WON,
    NaiveBayes,
    Prediction,
    TrainingRow,
    train,
    training_rows,
)
from waggle.insights.explain import feature_name
from waggle.insights.health import calibration_report

HOLDOUT_SHARE = 0.2
LIFT_SHARES = (0.1, 0.2)
SEGMENTS = ("industry", "region", "pipeline")
SEGMENT_VALUES = 12
TOP_FEATURES = 8
UNKNOWN = "-"
MODELS = ("champion", "challenger")

Pair = tuple[float, bool]


# --------------------------------------------------------------------------
# The split


def time_split(
    rows: Sequence[TrainingRow], cutoff: dt.datetime
) -> tuple[list[TrainingRow], list[TrainingRow]]:
    """Split closed deals at ``cutoff``: closed before it train, the rest test."""
    cutoff = as_utc(cutoff)
    return (
        [row for row in rows if row.closed_at < cutoff],
        [row for row in rows if row.closed_at >= cutoff],
    )


def default_cutoff(closed_at: Sequence[dt.datetime]) -> dt.datetime:
    """Return the close date that leaves the newest 20% of deals for the holdout.

    Raises:
        InvalidInput: fewer than two closed deals.
    """
    ordered = sorted(as_utc(value) for value in closed_at)
    if len(ordered) < 2:
        raise InvalidInput(
            f"report history: {len(ordered)} closed deals; expected at least 2"
        )
    index = min(len(ordered) - 1, max(1, int(len(ordered) * (1 - HOLDOUT_SHARE))))
    return ordered[index]


def load_history(
    session: Session,
    *,
    cutoff: dt.datetime,
    until: dt.datetime,
    window_days: int,
    visible: Any = None,
) -> tuple[list[TrainingRow], list[TrainingRow]]:
    """Return the training deals (before ``cutoff``) and holdout deals.

    Training deals are seen as of the cut-off, so nothing that happened after
    it (a later event, a later close, a norm moved by later deals) reaches
    the models. Holdout deals are those closed in ``[cutoff, until)``, each
    seen just before it closed.
    """
    cutoff, until = as_utc(cutoff), as_utc(until)
    if until <= cutoff:
        raise InvalidInput(f"report: until {until} must come after cutoff {cutoff}")
    training = training_rows(
        session, cutoff=cutoff, window_days=window_days, visible=visible
    )
    span = math.ceil((until - cutoff).total_seconds() / 86_400) + 1
    later = training_rows(session, cutoff=until, window_days=span, visible=visible)
    return training, [row for row in later if row.closed_at >= cutoff]


def closed_dates(
    session: Session, *, until: dt.datetime, window_days: int, visible: Any = None
) -> list[dt.datetime]:
    """Return the close dates of the deals won or lost in the window to ``until``."""
    since = as_utc(until) - dt.timedelta(days=window_days)
    query = select(Opportunity.closed_at).where(
        Opportunity.closed_at < until,
        Opportunity.closed_at >= since,
        Opportunity.status.in_([OpportunityStatus.WON, OpportunityStatus.LOST]),
    )
    if visible is not None:
        query = query.where(visible)
    return [as_utc(value) for value in session.scalars(query) if value is not None]


def segments_of(session: Session, ids: Sequence[int]) -> dict[int, dict[str, str]]:
    """Return each opportunity's industry, region (its account's) and pipeline."""
    found: dict[int, dict[str, str]] = {}
    for start in range(0, len(ids), 900):
        rows = session.execute(
            select(Opportunity.id, Account.industry, Region.name, Pipeline.name)
            .join(Account, Account.id == Opportunity.account_id)
            .outerjoin(Region, Region.id == Account.region_id)
            .join(Pipeline, Pipeline.id == Opportunity.pipeline_id)
            .where(Opportunity.id.in_(list(ids[start : start + 900])))
        )
        for opportunity_id, industry, region, pipeline in rows:
            found[opportunity_id] = {
                "industry": industry or UNKNOWN,
                "region": region or UNKNOWN,
                "pipeline": pipeline or UNKNOWN,
            }
    return found


# --------------------------------------------------------------------------
# Figures


def auc(pairs: Sequence[Pair]) -> float | None:
    """Return the area under the ROC curve (ties count half); ``None`` if one class.

    It is the chance that a random won deal is ranked above a random lost one.
    """
    won = sum(1 for _, is_won in pairs if is_won)
    lost = len(pairs) - won
    if not won or not lost:
        return None
    ranks = _average_ranks([probability for probability, _ in pairs])
    won_ranks = sum(
        rank for rank, (_, is_won) in zip(ranks, pairs, strict=True) if is_won
    )
    return (won_ranks - won * (won + 1) / 2) / (won * lost)


def _average_ranks(values: Sequence[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda index: values[index])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            ranks[order[position]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def lift(pairs: Sequence[Pair], share: float) -> float | None:
    """Return the win rate of the top ``share`` of deals over the overall win rate.

    The top is the ``ceil(share * n)`` highest predictions; equal predictions
    keep their order. ``None`` when nothing was won.
    """
    won = sum(1 for _, is_won in pairs if is_won)
    if not pairs or not won:
        return None
    size = max(1, math.ceil(share * len(pairs) - 1e-9))
    ranked = sorted(range(len(pairs)), key=lambda index: -pairs[index][0])
    top_won = sum(1 for index in ranked[:size] if pairs[index][1])
    return (top_won / size) / (won / len(pairs))


def metrics(pairs: Sequence[Pair]) -> dict[str, Any]:
    """Return AUC, Brier score, calibration and lift of (P(win), was won) pairs."""
    calibration = calibration_report(pairs).as_dict()
    return {
        "count": len(pairs),
        "won": sum(1 for _, is_won in pairs if is_won),
        "auc": auc(pairs),
        "brier": calibration["brier_score"] if pairs else None,
        "expected_calibration_error": calibration["expected_calibration_error"],
        "calibration": calibration["bins"],
        "lift": {
            f"top_{round(share * 100)}": lift(pairs, share) for share in LIFT_SHARES
        },
    }


def top_factors(
    predictions: Sequence[Prediction], *, top: int = TOP_FEATURES
) -> list[dict[str, Any]]:
    """Rank features by their mean share of each prediction's absolute terms."""
    shares: dict[str, float] = defaultdict(float)
    for prediction in predictions:
        total = sum(abs(term.weight) for term in prediction.terms)
        for term in prediction.terms:
            if total:
                shares[term.feature] += abs(term.weight) / total
    count = len(predictions) or 1
    ranked = sorted(shares.items(), key=lambda item: (-item[1], item[0]))
    return [
        {"feature": name, "name": feature_name(name), "share": share / count}
        for name, share in ranked[:top]
    ]


def segment_figures(
    holdout: Sequence[TrainingRow],
    segments: Mapping[int, Mapping[str, str]],
    probabilities: Mapping[str, Sequence[float]],
) -> dict[str, list[dict[str, Any]]]:
    """Return, per segment dimension and value, both models' AUC and Brier."""
    found: dict[str, list[dict[str, Any]]] = {}
    for dimension in SEGMENTS:
        groups: dict[str, list[int]] = defaultdict(list)
        for index, row in enumerate(holdout):
            value = segments.get(row.opportunity_id, {}).get(dimension, UNKNOWN)
            groups[value].append(index)
        ranked = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
        found[dimension] = [
            _segment(value, members, holdout, probabilities)
            for value, members in ranked[:SEGMENT_VALUES]
        ]
    return found


def _segment(
    value: str,
    members: Sequence[int],
    holdout: Sequence[TrainingRow],
    probabilities: Mapping[str, Sequence[float]],
) -> dict[str, Any]:
    outcomes = [holdout[index].outcome == WON for index in members]
    figures: dict[str, Any] = {"value": value, "count": len(members)}
    figures["won"] = sum(outcomes)
    for model in MODELS:
        pairs = [
            (probabilities[model][index], outcome)
            for index, outcome in zip(members, outcomes, strict=True)
        ]
        figures[model] = {
            "auc": auc(pairs),
            "brier": calibration_report(pairs).brier_score,
        }
    return figures


# --------------------------------------------------------------------------
# The comparison


@dataclass(frozen=True)
class Comparison:
    """Both models fitted on the training deals, and the holdout's figures."""

    champion: NaiveBayes
    challenger: Challenger
    figures: dict[str, Any]


def compare(
    training: Sequence[TrainingRow],
    holdout: Sequence[TrainingRow],
    *,
    segments: Mapping[int, Mapping[str, str]] | None = None,
    settings: BoostingSettings | None = None,
    features: Sequence[str] = MODEL_FEATURES,
) -> Comparison:
    """Fit both models on ``training`` and measure them on ``holdout``.

    Raises:
        InvalidInput: no holdout deals, or training deals of one outcome only.
    """
    if not holdout:
        raise InvalidInput("report holdout: no deal closed after the cut-off")
    pairs = [(row.levels, row.outcome) for row in training]
    champion = train(pairs, features=features)
    challenger = train_challenger(pairs, features=features, settings=settings)
    levels = [row.levels for row in holdout]
    predictions = {
        "champion": [champion.predict(item) for item in levels],
        "challenger": challenger.predict_many(levels),
    }
    probabilities = {
        model: [item.probability for item in found]
        for model, found in predictions.items()
    }
    outcomes = [row.outcome == WON for row in holdout]
    figures = {
        "split": _split_facts(training, holdout),
        "models": {
            model: {
                **metrics(list(zip(probabilities[model], outcomes, strict=True))),
                "top_factors": top_factors(predictions[model]),
            }
            for model in MODELS
        },
        "segments": segment_figures(holdout, segments or {}, probabilities),
    }
    return Comparison(champion, challenger, figures)


def _split_facts(
    training: Sequence[TrainingRow], holdout: Sequence[TrainingRow]
) -> dict[str, Any]:
    return {
        "training": len(training),
        "training_won": sum(1 for row in training if row.outcome == WON),
        "training_last_closed_at": _instant(max(r.closed_at for r in training)),
        "holdout": len(holdout),
        "holdout_won": sum(1 for row in holdout if row.outcome == WON),
        "holdout_first_closed_at": _instant(min(r.closed_at for r in holdout)),
    }


def _instant(value: dt.datetime) -> str:
    return as_utc(value).isoformat()


# --------------------------------------------------------------------------
# HTML

COLOURS = {"champion": "#2f6db5", "challenger": "#d9822b"}
LABELS = {
    "champion": "冠军模型（朴素贝叶斯） / champion (naive Bayes)",
    "challenger": "挑战者模型（LightGBM） / challenger (LightGBM)",
}
_STYLE = """
body{font-family:system-ui,"PingFang SC","Microsoft YaHei",sans-serif;margin:2em;
color:#222;max-width:1000px}
table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}
.legend span{display:inline-block;margin-right:1.5em}
.chip{display:inline-block;width:12px;height:12px;margin-right:4px}
svg text{font-size:11px}
"""


def render_html(figures: Mapping[str, Any]) -> str:
    """Return the report as one self-contained HTML page (inline SVG, no script)."""
    meta = figures.get("meta", {})
    version = _e(meta.get("version", ""))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="zh-CN"><head><meta charset="utf-8">',
        f"<title>{version} 模型对比报告 / model report</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>模型对比报告 / Champion vs challenger: {version}</h1>",
        _meta_block(meta, figures["split"]),
        _legend(),
        "<h2>总体指标 / Headline figures</h2>",
        _headline_table(figures["models"]),
        "<h2>校准曲线 / Calibration curve</h2>",
        _calibration_svg(figures["models"]),
        "<h2>提升度 / Lift</h2>",
        _lift_svg(figures["models"]),
        "<h2>最重要的因素 / Most important factors</h2>",
        *(_factor_svg(model, figures["models"][model]) for model in MODELS),
        "<h2>分群结果 / Results per segment</h2>",
        *(
            _segment_table(dimension, figures["segments"].get(dimension, []))
            for dimension in SEGMENTS
        ),
        "</body></html>",
    ]
    return "\n".join(parts)


def _e(value: object) -> str:
    return html.escape(str(value))


def _number(value: object, digits: int = 3) -> str:
    return "-" if value is None else f"{float(str(value)):.{digits}f}"


def _meta_block(meta: Mapping[str, Any], split: Mapping[str, Any]) -> str:
    rows = [
        ("截止时间 / cut-off", meta.get("cutoff", "")),
        ("留出期截至 / holdout until", meta.get("until", "")),
        ("对比的冠军版本 / champion version", meta.get("champion_version", "")),
        ("训练商机（赢单） / training deals (won)", _pair(split, "training")),
        ("留出商机（赢单） / holdout deals (won)", _pair(split, "holdout")),
        ("训练最后成交 / last training close", split["training_last_closed_at"]),
        ("留出最早成交 / first holdout close", split["holdout_first_closed_at"]),
    ]
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _pair(split: Mapping[str, Any], key: str) -> str:
    return f"{split[key]} ({split[f'{key}_won']})"


def _legend() -> str:
    spans = "".join(
        f'<span><i class="chip" style="background:{COLOURS[m]}"></i>'
        f"{_e(LABELS[m])}</span>"
        for m in MODELS
    )
    return f'<p class="legend">{spans}</p>'


def _headline_table(models: Mapping[str, Any]) -> str:
    header = "".join(f"<th>{_e(LABELS[m])}</th>" for m in MODELS)
    names = [
        ("AUC", "auc"),
        ("Brier", "brier"),
        ("校准误差 / calibration error", "expected_calibration_error"),
    ]
    rows = [
        f"<tr><td>{_e(label)}</td>"
        + "".join(f"<td>{_number(models[m][key])}</td>" for m in MODELS)
        + "</tr>"
        for label, key in names
    ]
    for key in models["champion"]["lift"]:
        percent = key.removeprefix("top_")
        rows.append(
            f"<tr><td>前{percent}%提升度 / lift top {percent}%</td>"
            + "".join(f"<td>{_number(models[m]['lift'][key], 2)}</td>" for m in MODELS)
            + "</tr>"
        )
    return f"<table><tr><th></th>{header}</tr>{''.join(rows)}</table>"


def _calibration_svg(models: Mapping[str, Any]) -> str:
    size, pad = 320, 40
    inner = size - 2 * pad

    def x(value: float) -> float:
        return pad + value * inner

    def y(value: float) -> float:
        return size - pad - value * inner

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" '
        f'viewBox="0 0 {size} {size}" role="img" aria-label="calibration curve">',
        f'<rect x="{pad}" y="{pad}" width="{inner}" height="{inner}" fill="none" '
        'stroke="#999"/>',
        f'<line x1="{x(0)}" y1="{y(0)}" x2="{x(1)}" y2="{y(1)}" stroke="#bbb" '
        'stroke-dasharray="4 3"/>',
    ]
    for tick in (0.0, 0.5, 1.0):
        parts.append(
            f'<text x="{x(tick)}" y="{size - pad + 14}" text-anchor="middle">'
            f"{tick:.1f}</text>"
            f'<text x="{pad - 6}" y="{y(tick) + 4}" text-anchor="end">{tick:.1f}</text>'
        )
    parts.append(
        f'<text x="{size / 2}" y="{size - 6}" text-anchor="middle">'
        "预测概率 / predicted</text>"
        f'<text x="12" y="{size / 2}" transform="rotate(-90 12 {size / 2})" '
        'text-anchor="middle">实际赢单率 / observed</text>'
    )
    for model in MODELS:
        points = [
            (x(b["mean_predicted"]), y(b["observed_rate"]))
            for b in models[model]["calibration"]
        ]
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
        parts.append(
            f'<polyline points="{path}" fill="none" stroke="{COLOURS[model]}" '
            'stroke-width="2"/>'
        )
        parts.extend(
            f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{COLOURS[model]}"/>'
            for px, py in points
        )
    parts.append("</svg>")
    return "".join(parts)


def _lift_svg(models: Mapping[str, Any]) -> str:
    keys = list(models["champion"]["lift"])
    values = [models[m]["lift"][k] or 0.0 for k in keys for m in MODELS]
    top = max([1.0, *values])
    width, height, pad, bar = 360, 220, 30, 40
    scale = (height - 2 * pad) / top
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="lift">',
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - 10}" '
        f'y2="{height - pad}" stroke="#999"/>',
    ]
    baseline = height - pad - scale
    parts.append(
        f'<line x1="{pad}" y1="{baseline:.1f}" x2="{width - 10}" y2="{baseline:.1f}" '
        'stroke="#bbb" stroke-dasharray="4 3"/>'
    )
    for group, key in enumerate(keys):
        left = pad + 20 + group * (2 * bar + 60)
        for offset, model in enumerate(MODELS):
            value = models[model]["lift"][key] or 0.0
            bar_height = value * scale
            bar_x = left + offset * (bar + 4)
            bar_y = height - pad - bar_height
            parts.append(
                f'<rect x="{bar_x}" y="{bar_y:.1f}" width="{bar}" '
                f'height="{bar_height:.1f}" fill="{COLOURS[model]}"/>'
                f'<text x="{bar_x + bar / 2}" y="{bar_y - 4:.1f}" '
                f'text-anchor="middle">{value:.2f}</text>'
            )
        percent = key.removeprefix("top_")
        parts.append(
            f'<text x="{left + bar}" y="{height - pad + 16}" text-anchor="middle">'
            f"前{percent}% / top {percent}%</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _factor_svg(model: str, figures: Mapping[str, Any]) -> str:
    factors = figures["top_factors"]
    row, label_width, bar_width = 22, 300, 220
    height = row * len(factors) + 10
    width = label_width + bar_width + 60
    parts = [
        f"<h3>{_e(LABELS[model])}</h3>",
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="factors">',
    ]
    for index, factor in enumerate(factors):
        top = 5 + index * row
        length = factor["share"] * bar_width
        name = f"{factor['name']['zh-CN']} / {factor['name']['en']}"
        parts.append(
            f'<text x="{label_width - 6}" y="{top + 14}" text-anchor="end">'
            f"{_e(name)}</text>"
            f'<rect x="{label_width}" y="{top + 3}" width="{length:.1f}" height="14" '
            f'fill="{COLOURS[model]}"/>'
            f'<text x="{label_width + length + 4:.1f}" y="{top + 14}">'
            f"{factor['share']:.0%}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


SEGMENT_LABELS = {
    "industry": "行业 / industry",
    "region": "区域 / region",
    "pipeline": "销售流程 / pipeline",
}


def _segment_table(dimension: str, rows: Sequence[Mapping[str, Any]]) -> str:
    header = (
        f"<tr><th>{_e(SEGMENT_LABELS[dimension])}</th><th>商机 / deals</th>"
        "<th>赢单 / won</th>"
        + "".join(
            f"<th>{_e(m)} AUC</th><th>{_e(m)} Brier</th>" for m in ("冠军", "挑战者")
        )
        + "</tr>"
    )
    body = "".join(
        f"<tr><td>{_e(item['value'])}</td><td>{item['count']}</td>"
        f"<td>{item['won']}</td>"
        + "".join(
            f"<td>{_number(item[m]['auc'])}</td><td>{_number(item[m]['brier'])}</td>"
            for m in MODELS
        )
        + "</tr>"
        for item in rows
    )
    return f"<table>{header}{body}</table>"


__all__ = [
    "Comparison",
    "auc",
    "closed_dates",
    "compare",
    "default_cutoff",
    "lift",
    "load_history",
    "metrics",
    "render_html",
    "segment_figures",
    "segments_of",
    "time_split",
    "top_factors",
]
