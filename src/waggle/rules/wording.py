"""Rules in plain words, zh-CN and en: previews and the reasons of firings.

A preview reads a rule back to its author before it is saved ("当客户在 7 天内
3 次提出异议时 → 通知负责人 (站内信)"); an explanation tells the person alerted
why ("fired because: customer objection on 03-01, 03-03 and 03-05").
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from waggle.rules.language import EventFilter, Rule, format_duration

if TYPE_CHECKING:
    from waggle.rules.engine import Fact

ZONE = ZoneInfo("Asia/Shanghai")
EVENT_TYPES: dict[str, tuple[str, str]] = {
    "chat_message": ("聊天消息", "chat message"),
    "tracker_hit": ("关键词命中", "tracker hit"),
    "call": ("通话", "call"),
    "email_sent": ("发出邮件", "e-mail sent"),
    "email_received": ("收到邮件", "e-mail received"),
    "meeting_held": ("会议", "meeting"),
    "meeting_minutes": ("会议纪要", "meeting minutes"),
    "field_visit": ("拜访", "field visit"),
    "material_opened": ("打开资料", "material opened"),
    "quote_sent": ("发送报价", "quote sent"),
    "trial_started": ("开始试用", "trial started"),
    "stage_change": ("阶段变更", "stage change"),
    "crm_field_update": ("字段更新", "field update"),
    "task_completed": ("完成任务", "task completed"),
    "service_ticket": ("服务工单", "service ticket"),
    "activity_logged": ("跟进记录", "logged activity"),
}
CATEGORIES: dict[str, tuple[str, str]] = {
    "pricing": ("价格", "pricing"),
    "trial": ("试用", "trial"),
    "tender": ("招标", "tender"),
    "competitor": ("竞品", "competitor"),
    "objection": ("异议", "objection"),
    "budget": ("预算", "budget"),
    "procurement": ("采购", "procurement"),
    "legal": ("法务", "legal"),
    "decision_maker": ("决策人", "decision maker"),
}
SPEAKERS = {"customer": ("客户", "customer"), "rep": ("销售", "rep")}
RECIPIENTS = {"owner": ("负责人", "the owner"), "manager": ("经理", "the manager")}
CHANNELS = {
    "inapp": ("站内信", "in-app"),
    "wecom": ("企业微信", "WeCom"),
    "wecom_robot": ("企业微信群机器人", "WeCom group robot"),
    "dingtalk": ("钉钉", "DingTalk"),
    "feishu": ("飞书", "Feishu"),
    "email": ("邮件", "e-mail"),
}
UNITS_ZH = {"m": "分钟", "h": "小时", "d": "天", "w": "周"}
UNITS_EN = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def describe_filter(spec: EventFilter) -> tuple[str, str]:
    """Name the events a filter selects, in zh-CN and en."""
    who_zh, who_en = SPEAKERS.get(spec.speaker or "", ("", ""))
    if spec.category is not None:
        zh, en = CATEGORIES.get(spec.category, (spec.category, spec.category))
        kind_zh = "提出异议" if spec.category == "objection" else f"提到{zh}"
        kind_en = f"{en} mention" if spec.category != "objection" else "objection"
    else:
        names = [EVENT_TYPES.get(kind, (kind, kind)) for kind in spec.type] or [
            ("任意事件", "any event")
        ]
        kind_zh = "或".join(name[0] for name in names)
        kind_en = " or ".join(name[1] for name in names)
    conditions = _conditions(spec.where)
    zh = f"{who_zh}{kind_zh}{conditions[0]}"
    en = " ".join(part for part in (who_en, kind_en) if part) + conditions[1]
    return zh, en


def _conditions(where: dict[str, Any]) -> tuple[str, str]:
    if not where:
        return "", ""
    parts = [f"{path} {_test_text(test)}" for path, test in where.items()]
    return f" ({'，'.join(parts)})", f" ({', '.join(parts)})"


def _test_text(test: Any) -> str:
    if not isinstance(test, dict):
        return f"= {test}"
    return ", ".join(f"{name} {value}" for name, value in test.items())


def _duration(value: dt.timedelta) -> tuple[str, str]:
    text = format_duration(value)
    number, unit = text[:-1], text[-1]
    if unit not in UNITS_ZH:
        return f"{text} 秒", f"{text} seconds"
    return f"{number} {UNITS_ZH[unit]}", f"{number} {UNITS_EN[unit]}"


def preview(rule: Rule) -> dict[str, str]:
    """Read ``rule`` back in plain words, condition then actions."""
    zh, en = _when(rule)
    actions = [_action(action) for action in rule.then]
    then_zh = "；".join(a[0] for a in actions) or "仅记录"
    then_en = "; ".join(a[1] for a in actions) or "record only"
    return {"zh-CN": f"当{zh}时 → {then_zh}", "en": f"When {en} → {then_en}"}


def _when(rule: Rule) -> tuple[str, str]:
    kind, pattern = rule.when.kind, rule.when.pattern
    if kind == "match":
        zh, en = describe_filter(pattern)
        return f"出现{zh}", f"a {en} happens"
    if kind == "count":
        return _count(pattern)
    if kind == "consecutive":
        zh, en = describe_filter(pattern.of)
        condition = _conditions(pattern.all)
        return (
            f"连续 {pattern.times} 次{zh}都满足{condition[0]}",
            f"{pattern.times} {en} in a row all have{condition[1]}",
        )
    if kind == "absence":
        return _absence(pattern)
    if kind == "sequence":
        steps = [describe_filter(step) for step in pattern.steps]
        window = _duration(pattern.within)
        return (
            f"{window[0]}内依次出现{'、然后'.join(s[0] for s in steps)}",
            f"{', then '.join(s[1] for s in steps)} happen within {window[1]}",
        )
    zh, en = describe_filter(pattern.of)
    window = _duration(pattern.within)
    direction = ("下降", "drops") if pattern.drop_by is not None else ("上升", "rises")
    amount = pattern.drop_by if pattern.drop_by is not None else pattern.rise_by
    return (
        f"{window[0]}内{zh}的 {pattern.field} {direction[0]} {amount:g}",
        f"{pattern.field} of {en} {direction[1]} by {amount:g} within {window[1]}",
    )


def _count(pattern: Any) -> tuple[str, str]:
    zh, en = describe_filter(pattern.of)
    window = _duration(pattern.within) if pattern.within else ("全部时间", "all time")
    measure_zh, measure_en = "次数", "count"
    if pattern.distinct:
        measure_zh, measure_en = (
            f"不同的 {pattern.distinct} 数",
            f"distinct {pattern.distinct}",
        )
    if pattern.sum:
        measure_zh, measure_en = f"{pattern.sum} 合计", f"sum of {pattern.sum}"
    bounds_zh, bounds_en = [], []
    if pattern.at_least is not None:
        bounds_zh.append(f"至少 {pattern.at_least:g}")
        bounds_en.append(f"at least {pattern.at_least:g}")
    if pattern.at_most is not None:
        bounds_zh.append(f"至多 {pattern.at_most:g}")
        bounds_en.append(f"at most {pattern.at_most:g}")
    check_zh = check_en = ""
    if pattern.on is not None:
        on = describe_filter(pattern.on)
        check_zh, check_en = f"（在{on[0]}时检查）", f" (checked at each {on[1]})"
    return (
        f"{window[0]}内{zh}的{measure_zh}{'、'.join(bounds_zh)}{check_zh}",
        f"the {measure_en} of {en} within {window[1]} is {' and '.join(bounds_en)}"
        f"{check_en}",
    )


def _absence(pattern: Any) -> tuple[str, str]:
    after = describe_filter(pattern.after)
    expect = describe_filter(pattern.expect)
    window = _duration(pattern.within)
    if pattern.business_hours:
        hours = f"{pattern.within.total_seconds() / 3600:g}"
        window = (f"{hours} 个工作小时", f"{hours} business hours")
    return (
        f"{after[0]}之后{window[0]}内没有{expect[0]}",
        f"no {expect[1]} follows a {after[1]} within {window[1]}",
    )


def _action(action: Any) -> tuple[str, str]:
    kind = action.kind
    body = getattr(action, kind)
    if kind in ("notify", "escalate"):
        who = RECIPIENTS.get(body.to, (body.to, body.to))
        channel = CHANNELS.get(body.channel, (body.channel, body.channel))
        verb = ("通知", "notify") if kind == "notify" else ("升级给", "escalate to")
        return (
            f"{verb[0]}{who[0]}（{channel[0]}）",
            f"{verb[1]} {who[1]} ({channel[1]})",
        )
    if kind == "recommend":
        return "推荐相似客户的案例资料", "recommend a similar customer's material"
    if kind == "create_task":
        due = _duration(body.due_in)
        return (
            f"创建任务“{body.title.get('zh-CN', '')}”，{due[0]}内完成",
            f'create the task "{body.title.get("en", "")}" due in {due[1]}',
        )
    if kind == "set_field":
        return f"把 {body.field} 设为 {body.value}", f"set {body.field} to {body.value}"
    return f"调用 {body.url}", f"call {body.url}"


def explain(rule: Rule, facts: list[Fact]) -> dict[str, str]:
    """Say why ``rule`` fired, naming the dates of the events that caused it."""
    zh, en = _when(rule)
    dates = [
        fact.occurred_at.astimezone(ZONE).strftime("%m-%d %H:%M") for fact in facts
    ]
    listed_en = ", ".join(dates[:-1]) + (f" and {dates[-1]}" if len(dates) > 1 else "")
    if len(dates) == 1:
        listed_en = dates[0]
    return {
        "zh-CN": f"触发原因：{zh}（{'、'.join(dates) or '—'}）",
        "en": f"fired because: {en} ({listed_en or '—'})",
    }


__all__ = ["describe_filter", "explain", "preview"]
