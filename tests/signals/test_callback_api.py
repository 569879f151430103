"""The callback endpoint over HTTP: WeCom's published sample end to end."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import select

from tests.signals.vectors import VECTORS
from waggle.core.db import transaction
from waggle.signals.models import BehaviourEvent
from waggle.signals.service import create_source

URL = "/api/v1/signals/callbacks/wecom-corp"


def wecom_vectors() -> dict[str, Any]:
    path = VECTORS / "wecom-callback-crypto" / "vectors.json"
    vectors: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return vectors


def configure(sessions, org) -> dict[str, Any]:
    vectors = wecom_vectors()
    with transaction(sessions) as session:
        create_source(
            session,
            org.actors["admin"],
            name="wecom-corp",
            connector="wecom_callback",
            config=vectors["config"],
        )
    return vectors


def at(fixed_clock, seconds: str) -> None:
    fixed_clock.current = dt.datetime.fromtimestamp(int(seconds), dt.UTC)


def signed(case: dict[str, Any], *names: str) -> dict[str, str]:
    return {
        name: case[name] for name in ("msg_signature", "timestamp", "nonce", *names)
    }


def test_the_url_check_is_answered_with_the_decrypted_echostr(
    client, sessions, org, fixed_clock
):
    """GET with WeCom's published values answers the plaintext echostr."""
    case = configure(sessions, org)["verify_url"]
    at(fixed_clock, case["timestamp"])

    response = client.get(URL, params=signed(case, "echostr"))

    assert (response.status_code, response.text) == (200, "1288432023552776189")


def test_a_posted_message_is_ingested_once_even_when_retried(
    client, sessions, org, fixed_clock
):
    """The published sample message becomes one chat event; a retry adds none."""
    case = configure(sessions, org)["decrypt_xml_message"]
    at(fixed_clock, case["timestamp"])
    body = case["post_body"].encode("utf-8")

    first = client.post(URL, params=signed(case), content=body)
    retry = client.post(URL, params=signed(case), content=body)

    assert (first.status_code, retry.status_code) == (200, 200)
    with sessions() as session:
        events = session.scalars(select(BehaviourEvent)).all()
    assert [(e.source, e.sender_ref, e.text) for e in events] == [
        ("wecom_callback", "wecom:ChenJiaShun", "你好")
    ]


def test_a_bad_signature_is_refused_and_nothing_is_stored(
    client, sessions, org, fixed_clock
):
    """A changed signature answers 422 with the stable code; no event is kept."""
    case = configure(sessions, org)["decrypt_xml_message"]
    at(fixed_clock, case["timestamp"])
    query = signed(case) | {"msg_signature": "0" * 40}

    response = client.post(URL, params=query, content=case["post_body"].encode())

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "bad_signature"
    with sessions() as session:
        assert session.scalars(select(BehaviourEvent)).all() == []


def test_an_unknown_source_is_not_found(client):
    """A callback to a source nobody configured answers 404."""
    response = client.post("/api/v1/signals/callbacks/nobody", content=b"<xml/>")

    assert response.status_code == 404
