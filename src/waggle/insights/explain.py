"""Explanations of win probabilities in a fixed vocabulary (zh-CN and en).

Every level of every feature has one sentence in each language
(:data:`VOCABULARY`). A prediction's log-odds terms decide which sentences
are shown: the terms that push most towards winning (positive factors) and
towards losing (negative factors), each with its share of the total absolute
weight of all terms, e.g. ``不利：过去28天触达频率低于头部销售的一半（权重32%）``.
The shares are of the feature terms only; the prior (the base win rate) is
not a factor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from waggle.insights.champion import Term

LOCALES = ("zh-CN", "en")
TOP_FACTORS = 3

_Text = tuple[str, str]  # (zh-CN, en)

VOCABULARY: dict[str, dict[str, _Text]] = {
    "touch_ratio": {
        "none": ("过去28天没有任何触达", "no touches in the last 28 days"),
        "low": (
            "过去28天触达频率低于头部销售的一半",
            "touches in the last 28 days below half of the top reps' norm",
        ),
        "below": (
            "过去28天触达频率低于头部销售水平",
            "touches in the last 28 days below the top reps' norm",
        ),
        "at_norm": (
            "过去28天触达频率达到头部销售水平",
            "touches in the last 28 days at or above the top reps' norm",
        ),
        "unknown": ("暂无头部销售的触达基准", "no top-rep touch norm yet"),
    },
    "recency": {
        "recent": ("最近3天内有互动", "an interaction in the last 3 days"),
        "week": ("最近一周内有互动", "last interaction within a week"),
        "stale": ("超过一周没有互动", "no interaction for over a week"),
        "silent": ("超过三周没有互动", "no interaction for over three weeks"),
        "never": ("没有任何互动记录", "no interaction recorded"),
    },
    "customer_response": {
        "fast": ("客户通常4小时内回复", "the customer usually replies within 4 hours"),
        "day": ("客户通常一天内回复", "the customer usually replies within a day"),
        "slow": ("客户回复通常超过一天", "the customer usually takes over a day"),
        "none": ("客户近90天没有回复过消息", "no customer reply in 90 days"),
    },
    "rep_response": {
        "fast": ("销售通常1小时内回复客户", "the rep usually answers within an hour"),
        "day": ("销售通常8小时内回复客户", "the rep usually answers within 8 hours"),
        "slow": ("销售回复客户通常超过8小时", "the rep usually takes over 8 hours"),
        "none": ("近90天没有待销售回复的客户消息", "no customer message to answer"),
    },
    "contacts": {
        "none": ("近90天没有接触任何联系人", "no contact engaged in 90 days"),
        "single": (
            "近90天只接触了1位联系人（单线联系）",
            "only one contact engaged in 90 days (single-threaded)",
        ),
        "two": ("近90天接触了2位联系人", "two contacts engaged in 90 days"),
        "multi": ("近90天接触了3位及以上联系人", "three or more contacts in 90 days"),
    },
    "decision_maker": {
        "yes": ("决策人近90天参与了沟通", "a decision maker took part in 90 days"),
        "no": ("近90天决策人没有参与", "no decision maker engaged in 90 days"),
    },
    "stage_velocity": {
        "fast": ("当前阶段推进快于赢单常态", "moving faster than won deals did"),
        "on_pace": (
            "当前阶段停留时间与赢单常态相当",
            "time in stage in line with won deals",
        ),
        "slow": ("当前阶段停留时间超过赢单常态", "longer in the stage than won deals"),
        "stalled": (
            "当前阶段停留时间超过赢单常态的两倍",
            "in the stage over twice as long as won deals",
        ),
        "unknown": ("暂无该阶段的赢单时长基准", "no won-deal norm for this stage yet"),
    },
    "objections": {
        "none": ("近90天没有客户异议", "no objections in 90 days"),
        "some": ("近90天出现1-2次客户异议", "one or two objections in 90 days"),
        "many": ("近90天出现3次及以上客户异议", "three or more objections in 90 days"),
    },
    "competitors": {
        "none": ("近90天没有提到竞争对手", "no competitor mentioned in 90 days"),
        "some": ("近90天1-2次提到竞争对手", "competitors mentioned once or twice"),
        "many": (
            "近90天3次及以上提到竞争对手",
            "competitors mentioned three times or more",
        ),
    },
    "pricing": {
        "no": ("近90天尚未讨论价格", "pricing not discussed in 90 days"),
        "yes": ("近90天讨论过价格", "pricing discussed in 90 days"),
    },
    "materials": {
        "none": (
            "客户近90天没有打开资料",
            "the customer opened no material in 90 days",
        ),
        "skimmed": (
            "客户浏览过资料但停留很短",
            "the customer only skimmed the materials",
        ),
        "read": ("客户认真阅读了资料（3分钟以上）", "the customer read the materials"),
    },
    "meetings": {
        "none": ("近90天没有会议", "no meeting in 90 days"),
        "one": ("近90天开过1次会议", "one meeting in 90 days"),
        "several": ("近90天开过2次及以上会议", "two or more meetings in 90 days"),
    },
    "visits": {
        "none": ("近90天没有上门拜访", "no field visit in 90 days"),
        "some": ("近90天有过上门拜访", "a field visit in 90 days"),
    },
    "amount": {
        "small": ("商机金额低于10万元", "deal amount under 100k"),
        "medium": ("商机金额10万至50万元", "deal amount 100k to 500k"),
        "large": ("商机金额50万至200万元", "deal amount 500k to 2M"),
        "very_large": ("商机金额200万元以上", "deal amount over 2M"),
    },
    "forecast_category": {
        "pipeline": ("预测类别：管道", "forecast category: pipeline"),
        "best_case": ("预测类别：最佳情况", "forecast category: best case"),
        "commit": ("预测类别：承诺", "forecast category: commit"),
        "closed": ("预测类别：已成交", "forecast category: closed"),
        "omitted": ("预测类别：排除", "forecast category: omitted"),
    },
}
# Open-vocabulary features: one sentence with the level filled in.
TEMPLATES: dict[str, _Text] = {
    "source": ("商机来源：{level}", "deal source: {level}"),
}
# The name of each feature, for reports that rank features rather than levels.
FEATURE_NAMES: dict[str, _Text] = {
    "touch_ratio": ("触达频率（对比头部销售）", "touch rate against top reps"),
    "recency": ("最近一次互动", "last interaction"),
    "customer_response": ("客户回复速度", "customer response time"),
    "rep_response": ("销售回复速度", "rep response time"),
    "contacts": ("接触的联系人数", "contacts engaged"),
    "decision_maker": ("决策人参与", "decision maker engaged"),
    "stage_velocity": ("阶段推进速度", "stage velocity"),
    "objections": ("客户异议", "objections"),
    "competitors": ("竞争对手提及", "competitor mentions"),
    "pricing": ("价格讨论", "pricing discussed"),
    "materials": ("资料阅读", "materials read"),
    "meetings": ("会议", "meetings"),
    "visits": ("上门拜访", "field visits"),
    "amount": ("商机金额", "deal amount"),
    "source": ("商机来源", "deal source"),
    "forecast_category": ("预测类别", "forecast category"),
}
DIRECTION: dict[str, _Text] = {
    "positive": ("有利", "helps"),
    "negative": ("不利", "hurts"),
}


@dataclass(frozen=True)
class Factor:
    """One feature's contribution, worded, with its share of the total weight."""

    feature: str
    level: str
    weight: float
    share: float
    text: dict[str, str]

    @property
    def direction(self) -> str:
        return "positive" if self.weight > 0 else "negative"

    def line(self, locale: str) -> str:
        """Return the factor as one line, e.g. ``不利：…（权重32%）``."""
        zh, en = DIRECTION[self.direction]
        percent = round(self.share * 100)
        if locale == "zh-CN":
            return f"{zh}：{self.text['zh-CN']}（权重{percent}%）"
        return f"{en}: {self.text['en']} (weight {percent}%)"

    def as_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "level": self.level,
            "weight": self.weight,
            "share": self.share,
            "direction": self.direction,
            "text": dict(self.text),
            "line": {locale: self.line(locale) for locale in LOCALES},
        }


@dataclass(frozen=True)
class Explanation:
    """The strongest factors each way, strongest first."""

    positive: tuple[Factor, ...]
    negative: tuple[Factor, ...]


def factor_text(feature: str, level: str) -> dict[str, str]:
    """Return the zh-CN and en sentence of one feature level.

    A level outside the vocabulary (an old model's, say) is named plainly.
    """
    if feature in TEMPLATES:
        zh, en = TEMPLATES[feature]
        return {"zh-CN": zh.format(level=level), "en": en.format(level=level)}
    zh, en = VOCABULARY.get(feature, {}).get(level, (f"{feature}={level}",) * 2)
    return {"zh-CN": zh, "en": en}


def feature_name(feature: str) -> dict[str, str]:
    """Return the zh-CN and en name of a feature (the identifier when unknown)."""
    zh, en = FEATURE_NAMES.get(feature, (feature, feature))
    return {"zh-CN": zh, "en": en}


def factors(terms: Sequence[Term]) -> list[Factor]:
    """Return every non-zero term as a worded factor with its weight share."""
    total = sum(abs(term.weight) for term in terms)
    return [
        Factor(
            term.feature,
            term.level,
            term.weight,
            abs(term.weight) / total if total else 0.0,
            factor_text(term.feature, term.level),
        )
        for term in terms
        if term.weight != 0
    ]


def explain(terms: Sequence[Term], *, top: int = TOP_FACTORS) -> Explanation:
    """Return the ``top`` positive and ``top`` negative factors of a prediction."""
    worded = factors(terms)
    positive = sorted((f for f in worded if f.weight > 0), key=lambda f: -f.weight)
    negative = sorted((f for f in worded if f.weight < 0), key=lambda f: f.weight)
    return Explanation(tuple(positive[:top]), tuple(negative[:top]))


def explain_stored(
    stored: Sequence[Mapping[str, Any]], *, top: int = TOP_FACTORS
) -> Explanation:
    """Return the explanation of a stored score's terms (feature, level, weight)."""
    terms = [
        Term(str(item["feature"]), str(item["level"]), float(item["weight"]))
        for item in stored
    ]
    return explain(terms, top=top)


__all__ = [
    "DIRECTION",
    "FEATURE_NAMES",
    "LOCALES",
    "TEMPLATES",
    "VOCABULARY",
    "Explanation",
    "Factor",
    "explain",
    "explain_stored",
    "factor_text",
    "factors",
    "feature_name",
]
