"""Win models: champion against challenger, and how fast training and scoring run.

Prints:

- on the demo company (built into a scratch SQLite file): AUC and Brier score
  of the champion (naive Bayes) and the challenger (LightGBM) on the
  time-based holdout, through the same service the API calls, and the time
  to rescore every open deal with each model as champion;
- on synthetic history (levels drawn from a known model, close dates spread
  over 24 months): training of both models and the whole comparison report
  (split, both fits, holdout scoring with explanations, figures, HTML) for
  100,000 historical opportunities;
- scoring throughput for 100,000 opportunities: probabilities alone and
  with the TreeSHAP explanation.

Environment: ``WAGGLE_BENCH_INSIGHTS_SCALE`` (demo scale, default 1.0),
``WAGGLE_BENCH_INSIGHTS_ROWS`` (synthetic history, default 100000),
``WAGGLE_BENCH_INSIGHTS_DB_ROWS`` (closed deals stored in SQLite and run
through the service end to end, features read from the database; default
100000, 0 to skip).
Figures only; nothing here fails on a time.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import random
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from waggle.core.actor import Actor, system_actor
from waggle.core.clock import now
from waggle.core.db import make_engine, make_session_factory, transaction
from waggle.core.migrate import upgrade
from waggle.crm.models import Account, Opportunity, PipelineStage
from waggle.crm.pipelines import ensure_default_pipeline
from waggle.demo.builder import build_demo_company
from waggle.governance.chain import ensure_chain_head
from waggle.insights.challenger import BoostingSettings, Challenger, train_challenger
from waggle.insights.champion import (
    MODEL_FEATURES,
    HistoryRule,
    NaiveBayes,
    TrainingRow,
    closed_counts,
    train,
)
from waggle.insights.features import LEVELS
from waggle.insights.report import compare, render_html, time_split
from waggle.insights.service import (
    decide_promotion,
    request_promotion,
    score_opportunities,
    train_challenger_version,
    train_champion,
)
from waggle.signals.models import BehaviourEvent

SCALE = float(os.environ.get("WAGGLE_BENCH_INSIGHTS_SCALE", "1.0"))
ROWS = int(os.environ.get("WAGGLE_BENCH_INSIGHTS_ROWS", "100000"))
DB_ROWS = int(os.environ.get("WAGGLE_BENCH_INSIGHTS_DB_ROWS", "100000"))
ACTOR = system_actor("bench-insights")
DIRECTOR = Actor(user_id=None, username="bench-director", roles=frozenset({"director"}))
SEED = 20261204
# The bench's own, smaller history rule when the demo holds fewer closed deals.
DEMO_RULE_FLOOR = 30


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        demo_company(Path(folder))
    synthetic_history()
    if DB_ROWS:
        with tempfile.TemporaryDirectory() as folder:
            stored_history(Path(folder))


# --------------------------------------------------------------------------
# The demo company


def demo_company(folder: Path) -> None:
    url = f"sqlite:///{folder / 'demo.db'}"
    upgrade(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    try:
        started = time.perf_counter()
        with transaction(sessions) as session:
            ensure_chain_head(session)
            ensure_default_pipeline(session, ACTOR)
            build_demo_company(session, ACTOR, seed=SEED, scale=SCALE)
        print(f"demo company (scale {SCALE}) built in {_since(started)}")
        with transaction(sessions) as session:
            _compare_on_demo(session)
    finally:
        engine.dispose()


def _compare_on_demo(session: Session) -> None:
    current = now()
    won, lost = closed_counts(session, cutoff=current, rule=HistoryRule())
    rule = HistoryRule()
    if not rule.is_met(won, lost):
        floor = min(DEMO_RULE_FLOOR, won, lost)
        rule = HistoryRule(min_won=floor, min_lost=floor)
    print(
        f"demo closed deals in 24 months: {won} won, {lost} lost; "
        f"rule {rule.min_won}/{rule.min_lost}"
    )
    started = time.perf_counter()
    train_champion(session, ACTOR, current, rule=rule)
    print(f"champion trained in {_since(started)}")
    started = time.perf_counter()
    run = train_challenger_version(session, ACTOR, until=current, rule=rule)
    print(f"challenger trained with its report in {_since(started)}")
    figures: dict[str, Any] = dict(run.report.figures)
    split = figures["split"]
    print(
        f"time-based holdout from {figures['meta']['cutoff']}: "
        f"training {split['training']} ({split['training_won']} won), "
        f"holdout {split['holdout']} ({split['holdout_won']} won)"
    )
    for model in ("champion", "challenger"):
        _print_model(model, figures["models"][model])
    _rescore_twice(session, run.version.id)


def _rescore_twice(session: Session, challenger_id: int) -> None:
    started = time.perf_counter()
    stored = score_opportunities(session, ACTOR)
    print(f"rescore all open deals, naive Bayes: {len(stored)} in {_since(started)}")
    request_promotion(session, ACTOR, challenger_id)
    decide_promotion(session, DIRECTOR, challenger_id)
    started = time.perf_counter()
    stored = score_opportunities(session, ACTOR)
    print(f"rescore all open deals, LightGBM: {len(stored)} in {_since(started)}")


def _print_model(model: str, figures: dict[str, Any]) -> None:
    lift = figures["lift"]
    print(
        f"  {model:<10} AUC {_figure(figures['auc'])}  Brier "
        f"{_figure(figures['brier'])}  ECE "
        f"{_figure(figures['expected_calibration_error'])}  lift@10% "
        f"{_figure(lift['top_10'], 2)}  lift@20% {_figure(lift['top_20'], 2)}"
    )


def _figure(value: object, digits: int = 3) -> str:
    return "-" if value is None else f"{float(str(value)):.{digits}f}"


# --------------------------------------------------------------------------
# Synthetic history


def synthetic_history() -> None:
    rng = random.Random(SEED)
    started = time.perf_counter()
    rows = _synthetic_rows(rng, ROWS)
    print(f"\nsynthetic history: {ROWS} closed deals generated in {_since(started)}")
    cutoff = rows[int(len(rows) * 0.8)].closed_at
    training, holdout = time_split(rows, cutoff)
    pairs = [(row.levels, row.outcome) for row in training]

    started = time.perf_counter()
    champion = train(pairs)
    print(f"naive Bayes trained on {len(training)} in {_since(started)}")
    started = time.perf_counter()
    challenger = train_challenger(pairs, settings=BoostingSettings())
    print(f"LightGBM trained on {len(training)} in {_since(started)}")

    started = time.perf_counter()
    comparison = compare(training, holdout, settings=BoostingSettings())
    page = render_html({"meta": {"version": "bench"}, **comparison.figures})
    print(
        f"whole report (both fits, {len(holdout)} holdout explained, figures, "
        f"HTML {len(page) // 1024} KiB) in {_since(started)}"
    )
    for model in ("champion", "challenger"):
        _print_model(model, comparison.figures["models"][model])
    _throughput(champion, challenger, [row.levels for row in rows[:100_000]])


def _throughput(
    champion: NaiveBayes, challenger: Challenger, levels: list[dict[str, str]]
) -> None:
    count = len(levels)
    started = time.perf_counter()
    for item in levels:
        champion.predict(item)
    print(f"scoring {count}: naive Bayes with terms {_rate(count, started)}")
    started = time.perf_counter()
    challenger.probabilities(levels)
    print(f"scoring {count}: LightGBM probabilities {_rate(count, started)}")
    started = time.perf_counter()
    challenger.predict_many(levels)
    print(f"scoring {count}: LightGBM with TreeSHAP {_rate(count, started)}")


def _synthetic_rows(rng: random.Random, count: int) -> list[TrainingRow]:
    """Levels drawn per deal; P(win) from a logistic model with an interaction."""
    start = dt.datetime(2024, 12, 1, tzinfo=dt.UTC)
    span = dt.timedelta(days=730).total_seconds()
    weights = {
        name: {level: rng.gauss(0, 0.5) for level in LEVELS[name]}
        for name in MODEL_FEATURES
        if LEVELS[name]
    }
    sources = ["展会", "官网", "referral", "电话营销", "渠道"]
    rows = []
    for index in range(count):
        levels = {
            name: rng.choice(LEVELS[name]) for name in MODEL_FEATURES if LEVELS[name]
        }
        levels["source"] = rng.choice(sources)
        log_odds = -0.8 + sum(weights[n][levels[n]] for n in weights)
        if levels["decision_maker"] == "yes" and levels["meetings"] != "none":
            log_odds += 1.2  # an interaction naive Bayes cannot represent
        is_won = rng.random() < 1 / (1 + math.exp(-log_odds))
        closed_at = start + dt.timedelta(seconds=span * index / count)
        rows.append(TrainingRow(index, closed_at, "won" if is_won else "lost", levels))
    return rows


# --------------------------------------------------------------------------
# Stored history: the service end to end, features read from the database


def stored_history(folder: Path) -> None:
    url = f"sqlite:///{folder / 'history.db'}"
    upgrade(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    try:
        with transaction(sessions) as session:
            ensure_default_pipeline(session, ACTOR)
            started = time.perf_counter()
            events = _insert_history(session, random.Random(SEED), DB_ROWS)
            print(
                f"\nstored history: {DB_ROWS} closed deals and {events} events "
                f"inserted in {_since(started)}"
            )
        with transaction(sessions) as session:
            started = time.perf_counter()
            run = train_challenger_version(session, ACTOR, until=HISTORY_END)
            figures: dict[str, Any] = dict(run.report.figures)
            print(
                f"challenger with its report from the database "
                f"({figures['split']['training']} training, "
                f"{figures['split']['holdout']} holdout) "
                f"in {_since(started)}"
            )
            for model in ("champion", "challenger"):
                _print_model(model, figures["models"][model])
    finally:
        engine.dispose()


HISTORY_END = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def _insert_history(session: Session, rng: random.Random, count: int) -> int:
    """Closed deals over 24 months; a meeting before 60% of wins, 20% of losses."""
    pipeline = session.scalars(select(PipelineStage).order_by(PipelineStage.id)).all()
    won = next(stage for stage in pipeline if stage.is_won)
    lost = next(stage for stage in pipeline if stage.is_lost)
    session.execute(
        insert(Account),
        [
            {
                "id": 1,
                "external_id": "A-1",
                "name": "历史客户",
                "normalized_name": "历史",
            }
        ],
    )
    span = dt.timedelta(days=720).total_seconds()
    start = HISTORY_END - dt.timedelta(days=725)
    deals, events = [], []
    for index in range(count):
        closed_at = start + dt.timedelta(seconds=span * index / count)
        is_won = rng.random() < 0.3
        stage = won if is_won else lost
        deals.append(
            {
                "id": index + 1,
                "external_id": f"H-{index}",
                "name": f"历史商机{index}",
                "account_id": 1,
                "pipeline_id": stage.pipeline_id,
                "stage_id": stage.id,
                "amount": Decimal(rng.choice([50_000, 300_000, 1_000_000])),
                "status": "won" if is_won else "lost",
                "source": rng.choice(["展会", "官网", "referral"]),
                "created_at": closed_at - dt.timedelta(days=60),
                "stage_entered_at": closed_at,
                "closed_at": closed_at,
            }
        )
        if rng.random() < (0.6 if is_won else 0.2):
            events.append(_meeting(index, closed_at))
    for part in range(0, count, 10_000):
        session.execute(insert(Opportunity), deals[part : part + 10_000])
    for part in range(0, len(events), 10_000):
        session.execute(insert(BehaviourEvent), events[part : part + 10_000])
    return len(events)


def _meeting(index: int, closed_at: dt.datetime) -> dict[str, Any]:
    return {
        "source": "bench",
        "source_id": f"m-{index}",
        "event_type": "meeting_held",
        "channel": "meeting",
        "occurred_at": closed_at - dt.timedelta(days=2),
        "opportunity_id": index + 1,
        "account_id": 1,
        "attributes": {},
        "recipient_refs": [],
        "match_status": "matched",
    }


def _since(started: float) -> str:
    return f"{time.perf_counter() - started:.2f} s"


def _rate(count: int, started: float) -> str:
    elapsed = time.perf_counter() - started
    return f"{elapsed:.2f} s ({count / elapsed:,.0f} per second)"


if __name__ == "__main__":
    main()
