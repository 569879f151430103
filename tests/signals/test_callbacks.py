"""Callback endpoints end to end: verify, decrypt, answer, and hand on records.

Requests are built with the platforms' published example values
(/work/shared/vectors) where they exist, otherwise encrypted and signed with
the crypto classes themselves. Time comes from ``fixed_clock``.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from tests.signals.vectors import VECTORS
from waggle.core import clock
from waggle.signals.callbacks import (
    callback_crypto_from_config,
    handle_dingtalk,
    handle_feishu,
    handle_wecom,
)
from waggle.signals.connectors import build_connector
from waggle.signals.crypto import (
    DingTalkCallbackCrypto,
    FeishuEventCrypto,
    WeComCallbackCrypto,
)
from waggle.signals.errors import (
    BadSignature,
    CallbackConfigInvalid,
    CallbackRejected,
    MalformedPayload,
    StaleTimestamp,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "chat"
DINGTALK_KEY = "o1w0aum42yaptlz8alnhwikjd3jenzt9cb9wmzptgus"


def load(folder: str) -> dict[str, Any]:
    path = VECTORS / folder / "vectors.json"
    vectors: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return vectors


def at(fixed_clock: clock.FixedClock, seconds: float) -> None:
    fixed_clock.current = dt.datetime.fromtimestamp(seconds, dt.UTC)


def wecom_crypto(vectors: dict[str, Any]) -> WeComCallbackCrypto:
    crypto = callback_crypto_from_config("wecom", vectors["config"])
    assert isinstance(crypto, WeComCallbackCrypto)
    return crypto


def now_seconds() -> str:
    return str(int(clock.now().timestamp()))


# --------------------------------------------------------------------- WeCom


def test_wecom_url_check_answers_the_decrypted_echostr(fixed_clock):
    """GET with the published echostr is answered with its plaintext."""
    vectors = load("wecom-callback-crypto")
    case = vectors["verify_url"]
    at(fixed_clock, int(case["timestamp"]))

    outcome = handle_wecom(
        wecom_crypto(vectors),
        method="GET",
        query={key: case[key] for key in ("msg_signature", "timestamp", "nonce")}
        | {"echostr": case["echostr"]},
        body=b"",
    )

    assert (outcome.status, outcome.reply) == (200, b"1288432023552776189")
    assert outcome.records == []
    assert outcome.admitted == ("1476416373", "47744683")


def test_wecom_post_of_the_published_sample_yields_a_record_for_the_connector(
    fixed_clock,
):
    """The sample POST decrypts to a record that wecom_callback reads as 你好."""
    vectors = load("wecom-callback-crypto")
    case = vectors["decrypt_xml_message"]
    at(fixed_clock, int(case["timestamp"]))

    outcome = handle_wecom(
        wecom_crypto(vectors),
        method="POST",
        query={key: case[key] for key in ("msg_signature", "timestamp", "nonce")},
        body=case["post_body"].encode("utf-8"),
    )
    (draft,) = build_connector(outcome.connector).parse(outcome.records[0])

    assert (outcome.status, outcome.reply, outcome.connector) == (
        200,
        b"",
        "wecom_callback",
    )
    assert outcome.records[0].payload.decode("utf-8") == case["expected_plaintext"]
    assert (draft.sender, draft.text) == ("wecom:ChenJiaShun", "你好")


def test_wecom_post_of_a_contact_event_round_trips_chinese_intact(fixed_clock):
    """An event encrypted with the crypto class arrives byte for byte."""
    vectors = load("wecom-callback-crypto")
    crypto = wecom_crypto(vectors)
    plaintext = (
        (FIXTURES / "wecom_callback_add_contact.xml")
        .read_bytes()
        .replace(b"expo2024", "展会渠道".encode())
    )
    encrypted = crypto.encrypt(plaintext)
    timestamp, nonce = now_seconds(), "n-contact"
    signature = crypto.sign(timestamp=timestamp, nonce=nonce, encrypt=encrypted)
    body = f"<xml><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>".encode()

    outcome = handle_wecom(
        crypto,
        method="POST",
        query={"msg_signature": signature, "timestamp": timestamp, "nonce": nonce},
        body=body,
    )
    (draft,) = build_connector("wecom_callback").parse(outcome.records[0])

    assert outcome.records[0].payload == plaintext
    assert draft.attributes["state"] == "展会渠道"


def test_wecom_refuses_a_bad_signature(fixed_clock):
    """A changed msg_signature raises BadSignature and yields nothing."""
    vectors = load("wecom-callback-crypto")
    case = vectors["decrypt_xml_message"]
    at(fixed_clock, int(case["timestamp"]))

    with pytest.raises(BadSignature):
        handle_wecom(
            wecom_crypto(vectors),
            method="POST",
            query={
                "msg_signature": "0" * 40,
                "timestamp": case["timestamp"],
                "nonce": case["nonce"],
            },
            body=case["post_body"].encode("utf-8"),
        )


def test_wecom_retry_of_an_admitted_post_is_answered_as_a_duplicate(fixed_clock):
    """WeCom's retry of a delivered message gets success and no second record."""
    vectors = load("wecom-callback-crypto")
    case = vectors["decrypt_xml_message"]
    at(fixed_clock, int(case["timestamp"]))
    crypto = wecom_crypto(vectors)
    request = {
        "method": "POST",
        "query": {key: case[key] for key in ("msg_signature", "timestamp", "nonce")},
        "body": case["post_body"].encode("utf-8"),
    }
    handle_wecom(crypto, **request)

    retry = handle_wecom(crypto, **request)

    assert (retry.status, retry.records, retry.is_duplicate) == (200, [], True)
    assert retry.admitted is None


def test_wecom_released_request_is_admitted_again(fixed_clock):
    """After the route releases a request it could not store, the retry gets in."""
    vectors = load("wecom-callback-crypto")
    case = vectors["decrypt_xml_message"]
    at(fixed_clock, int(case["timestamp"]))
    crypto = wecom_crypto(vectors)
    request = {
        "method": "POST",
        "query": {key: case[key] for key in ("msg_signature", "timestamp", "nonce")},
        "body": case["post_body"].encode("utf-8"),
    }
    first = handle_wecom(crypto, **request)
    assert first.admitted is not None
    timestamp, nonce = first.admitted
    crypto.replay_guard.release(timestamp=timestamp, nonce=nonce)

    retry = handle_wecom(crypto, **request)

    assert (len(retry.records), retry.is_duplicate) == (1, False)


def test_wecom_stale_request_is_refused_not_taken_for_a_duplicate(fixed_clock):
    """A timestamp ten minutes old raises StaleTimestamp."""
    vectors = load("wecom-callback-crypto")
    case = vectors["decrypt_xml_message"]
    at(fixed_clock, int(case["timestamp"]) + 600)

    with pytest.raises(StaleTimestamp):
        handle_wecom(
            wecom_crypto(vectors),
            method="POST",
            query={key: case[key] for key in ("msg_signature", "timestamp", "nonce")},
            body=case["post_body"].encode("utf-8"),
        )


@pytest.mark.parametrize("missing", ["msg_signature", "timestamp", "nonce", "echostr"])
def test_wecom_url_check_missing_a_query_parameter_is_malformed(missing):
    """Each signed query parameter is required; the error names it."""
    vectors = load("wecom-callback-crypto")
    case = vectors["verify_url"]
    query = {
        key: case[key] for key in ("msg_signature", "timestamp", "nonce", "echostr")
    }
    del query[missing]

    with pytest.raises(MalformedPayload) as caught:
        handle_wecom(wecom_crypto(vectors), method="GET", query=query, body=b"")

    assert f"query parameter {missing!r} is missing" in caught.value.message


def test_wecom_refuses_other_methods():
    """Only GET and POST reach a WeCom callback."""
    vectors = load("wecom-callback-crypto")

    with pytest.raises(CallbackRejected) as caught:
        handle_wecom(wecom_crypto(vectors), method="PUT", query={}, body=b"")

    assert caught.value.code == "method_not_allowed"


# ------------------------------------------------------------------ DingTalk


def dingtalk_request(
    crypto: DingTalkCallbackCrypto, plaintext: bytes, *, nonce: str = "n-ding"
) -> dict[str, Any]:
    encrypted = crypto.encrypt(plaintext)
    timestamp = str(int(clock.now().timestamp() * 1000))
    signature = crypto.sign(timestamp=timestamp, nonce=nonce, encrypt=encrypted)
    return {
        "method": "POST",
        "query": {"signature": signature, "timestamp": timestamp, "nonce": nonce},
        "body": json.dumps({"encrypt": encrypted}).encode(),
    }


def dingtalk_crypto() -> DingTalkCallbackCrypto:
    crypto = callback_crypto_from_config(
        "dingtalk",
        {"token": "tokenxxxx", "aes_key": DINGTALK_KEY, "app_key": "dingxxxxxx"},
    )
    assert isinstance(crypto, DingTalkCallbackCrypto)
    return crypto


def test_dingtalk_published_check_url_is_answered_with_encrypted_success(
    fixed_clock,
):
    """The official check_url vector gets the encrypted success and no record."""
    vector = load("dingtalk-callback-crypto")["vectors"][1]
    at(fixed_clock, int(vector["timestamp"]) / 1000)
    crypto = callback_crypto_from_config(
        "dingtalk",
        {
            "token": vector["token"],
            "encoding_aes_key": vector["aes_key"],
            "corp_id": vector["owner_key"],
        },
    )
    assert isinstance(crypto, DingTalkCallbackCrypto)

    outcome = handle_dingtalk(
        crypto,
        method="POST",
        query={
            "msg_signature": vector["signature"],
            "timestamp": vector["timestamp"],
            "nonce": vector["nonce"],
        },
        body=json.dumps({"encrypt": vector["encrypt"]}).encode(),
    )
    reply = json.loads(outcome.reply)

    assert (outcome.status, outcome.records) == (200, [])
    assert sorted(reply) == ["encrypt", "msg_signature", "nonce", "timeStamp"]
    assert crypto.decrypt(reply["encrypt"]) == b"success"
    assert reply["msg_signature"] == crypto.sign(
        timestamp=reply["timeStamp"], nonce=reply["nonce"], encrypt=reply["encrypt"]
    )


def test_dingtalk_robot_message_event_yields_a_record_read_as_a_chat(fixed_clock):
    """A pushed robot message decrypts to a record that parses to a chat draft."""
    crypto = dingtalk_crypto()
    plaintext = (FIXTURES / "dingtalk_messages.jsonl").read_bytes().splitlines()[0]

    outcome = handle_dingtalk(crypto, **dingtalk_request(crypto, plaintext))
    (draft,) = build_connector(outcome.connector).parse(outcome.records[0])

    assert outcome.connector == "dingtalk_callback"
    assert outcome.records[0].payload == plaintext
    assert draft.text == "客户说预算下个季度才批"
    assert crypto.decrypt(json.loads(outcome.reply)["encrypt"]) == b"success"


def test_dingtalk_refuses_a_signature_made_with_another_token(fixed_clock):
    """A request signed with a different token raises BadSignature."""
    crypto = dingtalk_crypto()
    other = DingTalkCallbackCrypto(
        token="another", aes_key=DINGTALK_KEY, owner_key="dingxxxxxx"
    )

    with pytest.raises(BadSignature):
        handle_dingtalk(crypto, **dingtalk_request(other, b'{"EventType":"x"}'))


def test_dingtalk_body_without_encrypt_is_malformed(fixed_clock):
    """A body that is not {"encrypt": ...} is refused before any crypto."""
    query = {"signature": "s", "timestamp": "1", "nonce": "n"}

    with pytest.raises(MalformedPayload) as caught:
        handle_dingtalk(dingtalk_crypto(), method="POST", query=query, body=b"[]")

    assert "body field 'encrypt' is missing" in caught.value.message


# -------------------------------------------------------------------- Feishu


def feishu_request(
    crypto: FeishuEventCrypto, event: bytes, *, signed: bool = True
) -> dict[str, Any]:
    body = json.dumps({"encrypt": crypto.encrypt(event)}).encode()
    timestamp, nonce = now_seconds(), "n-feishu"
    headers = {"X-Lark-Request-Timestamp": timestamp, "X-Lark-Request-Nonce": nonce}
    if signed:
        headers["X-Lark-Signature"] = crypto.sign(
            body, timestamp=timestamp, nonce=nonce
        )
    return {"method": "POST", "headers": headers, "body": body}


def feishu_crypto(token: str | None = "rvaYgkND1GOiu5MM0E1rncYC6PLtF7JV") -> Any:
    config = {"encrypt_key": "test key"}
    if token is not None:
        config["verification_token"] = token
    return callback_crypto_from_config("feishu", config)


def test_feishu_published_vector_decrypts_with_the_configured_key():
    """The key built from settings decrypts the doc's example to hello world."""
    vector = load("feishu-event-crypto")["vectors"][0]

    crypto = feishu_crypto()

    assert crypto.decrypt(vector["encrypt"]) == b"hello world"


def test_feishu_url_verification_is_answered_with_the_challenge(fixed_clock):
    """The unsigned URL check gets {"challenge": ...} and yields no record."""
    crypto = feishu_crypto(token="xxxxxx")
    event = (FIXTURES / "feishu_url_verification.json").read_bytes()

    outcome = handle_feishu(crypto, **feishu_request(crypto, event, signed=False))

    assert json.loads(outcome.reply) == {"challenge": "ajls384kdjx98XX"}
    assert (outcome.records, outcome.admitted) == ([], None)


def test_feishu_signed_message_event_yields_its_verbatim_plaintext(fixed_clock):
    """A signed im.message.receive_v1 gives the record feishu_events parses."""
    crypto = feishu_crypto()
    event = (FIXTURES / "feishu_event_text.json").read_bytes()

    outcome = handle_feishu(crypto, **feishu_request(crypto, event))
    (draft,) = build_connector(outcome.connector).parse(outcome.records[0])

    assert outcome.reply == b'{"msg":"success"}'
    assert outcome.records[0].payload == event
    assert draft.text == "@李经理 这个价格我们需要再内部讨论一下"


def test_feishu_headers_are_matched_case_insensitively(fixed_clock):
    """Lower-case header names (as some servers pass them) work the same."""
    crypto = feishu_crypto()
    request = feishu_request(crypto, (FIXTURES / "feishu_event_post.json").read_bytes())
    request["headers"] = {
        key.lower(): value for key, value in request["headers"].items()
    }

    outcome = handle_feishu(crypto, **request)

    assert len(outcome.records) == 1


def test_feishu_unsigned_event_is_refused(fixed_clock):
    """Without X-Lark-Signature only the URL check is accepted."""
    crypto = feishu_crypto()
    event = (FIXTURES / "feishu_event_text.json").read_bytes()

    with pytest.raises(BadSignature):
        handle_feishu(crypto, **feishu_request(crypto, event, signed=False))


def test_feishu_tampered_body_fails_the_signature(fixed_clock):
    """Changing the body after signing raises BadSignature."""
    crypto = feishu_crypto()
    request = feishu_request(crypto, (FIXTURES / "feishu_event_text.json").read_bytes())
    other = feishu_request(crypto, b'{"schema":"2.0","header":{"token":"x"}}')
    request["body"] = other["body"]

    with pytest.raises(BadSignature):
        handle_feishu(crypto, **request)


def test_feishu_event_with_a_wrong_verification_token_is_refused(fixed_clock):
    """A correctly signed event for another app's token is refused."""
    crypto = feishu_crypto(token="a-different-token")
    event = (FIXTURES / "feishu_event_text.json").read_bytes()

    with pytest.raises(BadSignature) as caught:
        handle_feishu(crypto, **feishu_request(crypto, event))

    assert caught.value.code == "bad_token"


def test_feishu_signed_request_with_an_empty_nonce_is_malformed(fixed_clock):
    """An empty nonce is refused as malformed, never taken for a duplicate."""
    crypto = feishu_crypto()
    request = feishu_request(crypto, (FIXTURES / "feishu_event_text.json").read_bytes())
    request["headers"]["X-Lark-Request-Nonce"] = ""

    with pytest.raises(MalformedPayload):
        handle_feishu(crypto, **request)


# -------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("platform", "config", "message"),
    [
        ("wecom", {"token": "t", "receive_id": "ww1"}, "'encoding_aes_key' is missing"),
        (
            "wecom",
            {"token": "", "encoding_aes_key": "a" * 43, "receive_id": "ww1"},
            "'token' is not a non-empty string",
        ),
        (
            "wecom",
            {"token": "t", "encoding_aes_key": "short", "receive_id": "ww1"},
            "the AES key is 5 characters",
        ),
        (
            "dingtalk",
            {"token": "t", "aes_key": DINGTALK_KEY},
            "'owner_key' or 'app_key' or 'corp_id' or 'suite_key' is missing",
        ),
        ("feishu", {}, "'encrypt_key' is missing"),
        (
            "feishu",
            {"encrypt_key": "k", "verification_token": 5},
            "'verification_token' is not a non-empty string",
        ),
        ("slack", {}, "platform 'slack' is unknown"),
    ],
)
def test_config_loader_names_the_unusable_setting(platform, config, message):
    """Missing, empty or malformed settings raise CallbackConfigInvalid naming them."""
    with pytest.raises(CallbackConfigInvalid) as caught:
        callback_crypto_from_config(platform, config)

    assert message in caught.value.message


def test_config_loader_accepts_an_empty_wecom_receive_id():
    """智能机器人 callbacks use ReceiveId "": allowed, and it round-trips."""
    crypto = callback_crypto_from_config(
        "wecom",
        {"token": "t", "encoding_aes_key": "a" * 43, "receive_id": ""},
    )
    assert isinstance(crypto, WeComCallbackCrypto)

    opened = crypto.decrypt(crypto.encrypt(b"ping"))

    assert opened == b"ping"
