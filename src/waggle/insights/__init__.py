"""Insights own the health indices and win models of opportunities.

So far: behaviour features as of an instant (:mod:`waggle.insights.features`),
the explainable naive-Bayes champion win model with its stage-default
fallback (:mod:`waggle.insights.champion`), worded explanations in zh-CN and
en (:mod:`waggle.insights.explain`), the 0-100 health index with its
calibration check (:mod:`waggle.insights.health`) and the model registry
tables (:mod:`waggle.insights.models`). Renewal models, forecasts and
champion/challenger reports come later.
"""

from waggle.insights.champion import HistoryRule, NaiveBayes, train
from waggle.insights.features import Features, compute_features, feature_levels
from waggle.insights.health import (
    full_rescore_job,
    health_index,
    on_events,
    rescore_opportunity,
)
from waggle.insights.service import (
    OpportunityInsight,
    TrainingReport,
    add_closed_deal,
    explain_opportunity,
    score_opportunities,
    train_champion,
)

__all__ = [
    "Features",
    "HistoryRule",
    "NaiveBayes",
    "OpportunityInsight",
    "TrainingReport",
    "add_closed_deal",
    "compute_features",
    "explain_opportunity",
    "feature_levels",
    "full_rescore_job",
    "health_index",
    "on_events",
    "rescore_opportunity",
    "score_opportunities",
    "train",
    "train_champion",
]
