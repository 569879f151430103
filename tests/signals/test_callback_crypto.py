"""Callback crypto of WeCom, DingTalk and Feishu against their published values.

The vectors live in /work/shared/vectors (``WAGGLE_VECTORS`` overrides the
folder); each folder's SOURCE.md says which official document or SDK sample
published them. Time comes from the ``fixed_clock`` fixture, set to each
vector's own timestamp, never from the wall clock.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from tests.signals.vectors import VECTORS
from waggle.core import clock
from waggle.signals.crypto import (
    DingTalkCallbackCrypto,
    FeishuEventCrypto,
    MemoryNonceStore,
    ReplayGuard,
    WeComCallbackCrypto,
    parse_json_message,
    parse_xml_message,
)
from waggle.signals.errors import (
    BadSignature,
    CallbackConfigInvalid,
    CallbackRejected,
    DecryptionFailed,
    MalformedPayload,
    ReceiverMismatch,
    ReplayedRequest,
    StaleTimestamp,
)


def load(folder: str) -> dict[str, Any]:
    path = VECTORS / folder / "vectors.json"
    return json.loads(path.read_text(encoding="utf-8"))


def at_seconds(fixed_clock: clock.FixedClock, timestamp: str) -> None:
    fixed_clock.current = dt.datetime.fromtimestamp(int(timestamp), dt.UTC)


def at_milliseconds(fixed_clock: clock.FixedClock, timestamp: str) -> None:
    fixed_clock.current = dt.datetime.fromtimestamp(int(timestamp) / 1000, dt.UTC)


def frame_prefix(aes_key: str, encrypt: str) -> bytes:
    """Return the 16 random bytes that open a framed ciphertext (independent code)."""
    key = base64.b64decode(aes_key + "=")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    plain = decryptor.update(base64.b64decode(encrypt)) + decryptor.finalize()
    return plain[:16]


def fixed(value: bytes) -> Callable[[], bytes]:
    return lambda: value


def flip_padding(encrypt: str) -> str:
    """Damage a CBC ciphertext so that its last plaintext byte (the padding) changes."""
    raw = bytearray(base64.b64decode(encrypt))
    raw[-17] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


# --------------------------------------------------------------------- WeCom


@pytest.fixture
def wecom_vectors() -> dict[str, Any]:
    return load("wecom-callback-crypto")


def wecom(vectors: dict[str, Any], **overrides: Any) -> WeComCallbackCrypto:
    config = vectors["config"] | overrides
    return WeComCallbackCrypto(
        token=config["token"],
        encoding_aes_key=config["encoding_aes_key"],
        receive_id=config["receive_id"],
    )


def test_wecom_url_check_answers_the_published_echostr_plaintext(
    wecom_vectors, fixed_clock
):
    """The GET URL check of WeCom's sample decrypts to the documented plaintext."""
    case = wecom_vectors["verify_url"]
    at_seconds(fixed_clock, case["timestamp"])
    crypto = wecom(wecom_vectors)

    answer = crypto.verify_url(
        msg_signature=case["msg_signature"],
        timestamp=case["timestamp"],
        nonce=case["nonce"],
        echostr=case["echostr"],
    )

    assert answer == "1288432023552776189"


@pytest.mark.parametrize("case", ["decrypt_xml_message", "decrypt_json_message"])
def test_wecom_post_bodies_decrypt_to_the_published_plaintext(
    wecom_vectors, fixed_clock, case
):
    """Both POST samples (XML and JSON body) decrypt to what WeCom encrypted."""
    sample = wecom_vectors[case]
    at_seconds(fixed_clock, sample["timestamp"])
    crypto = wecom(wecom_vectors)

    plaintext = crypto.decrypt_message(
        sample["post_body"],
        msg_signature=sample["msg_signature"],
        timestamp=sample["timestamp"],
        nonce=sample["nonce"],
    )

    assert plaintext.decode("utf-8") == sample["expected_plaintext"]


@pytest.mark.parametrize(
    ("case", "field"),
    [
        ("verify_url", "echostr"),
        ("decrypt_xml_message", "encrypt"),
        ("decrypt_json_message", "encrypt"),
    ],
)
def test_wecom_signature_reproduces_the_published_msg_signature(
    wecom_vectors, case, field
):
    """sha1 of sorted token, timestamp, nonce and ciphertext is the signature."""
    sample = wecom_vectors[case]
    crypto = wecom(wecom_vectors)

    signature = crypto.sign(
        timestamp=sample["timestamp"], nonce=sample["nonce"], encrypt=sample[field]
    )

    assert signature == sample["msg_signature"]


def test_wecom_xml_sample_parses_into_its_message_fields(wecom_vectors, fixed_clock):
    """The decrypted XML sample is a text message from ChenJiaShun saying 你好."""
    sample = wecom_vectors["decrypt_xml_message"]
    at_seconds(fixed_clock, sample["timestamp"])
    plaintext = wecom(wecom_vectors).decrypt_message(
        sample["post_body"],
        msg_signature=sample["msg_signature"],
        timestamp=sample["timestamp"],
        nonce=sample["nonce"],
    )

    fields = parse_xml_message(plaintext)

    assert fields["FromUserName"] == "ChenJiaShun"
    assert fields["MsgType"] == "text"
    assert fields["Content"] == "你好"


def test_wecom_json_sample_plaintext_is_refused_as_malformed_json(
    wecom_vectors, fixed_clock
):
    """Tencent's JSON sample encrypted broken JSON; parsing it is a MalformedPayload."""
    sample = wecom_vectors["decrypt_json_message"]
    at_seconds(fixed_clock, sample["timestamp"])
    plaintext = wecom(wecom_vectors).decrypt(sample["encrypt"])

    with pytest.raises(MalformedPayload) as caught:
        parse_json_message(plaintext)

    assert caught.value.code == "malformed_payload"


def test_wecom_encrypt_with_the_sample_prefix_reproduces_the_published_ciphertext(
    wecom_vectors,
):
    """Encrypting the sample with its own random prefix gives WeCom's exact bytes."""
    sample = wecom_vectors["decrypt_xml_message"]
    config = wecom_vectors["config"]
    prefix = frame_prefix(config["encoding_aes_key"], sample["encrypt"])
    crypto = WeComCallbackCrypto(
        token=config["token"],
        encoding_aes_key=config["encoding_aes_key"],
        receive_id=config["receive_id"],
        prefix_source=fixed(prefix),
    )

    encrypted = crypto.encrypt(sample["expected_plaintext"].encode("utf-8"))

    assert encrypted == sample["encrypt"]


def test_wecom_passive_reply_round_trips_through_decrypt_message(
    wecom_vectors, fixed_clock
):
    """A signed XML reply with Chinese text decrypts back to the same bytes."""
    crypto = wecom(wecom_vectors)
    reply = "<xml><Content><![CDATA[报价单已发送，请查收]]></Content></xml>"

    sealed = crypto.encrypt_reply(reply, nonce="1372623149")
    opened = crypto.decrypt_message(
        sealed.to_xml(),
        msg_signature=sealed.msg_signature,
        timestamp=sealed.timestamp,
        nonce=sealed.nonce,
    )

    assert opened.decode("utf-8") == reply
    assert sealed.timestamp == str(int(fixed_clock.current.timestamp()))


def test_wecom_json_reply_carries_the_fields_of_the_json_flavour(wecom_vectors):
    """The JSON reply names its fields encrypt, msgsignature, timestamp and nonce."""
    crypto = wecom(wecom_vectors)

    body = json.loads(
        crypto.encrypt_reply("{}", timestamp="1409659813", nonce="n1").to_json()
    )

    assert sorted(body) == ["encrypt", "msgsignature", "nonce", "timestamp"]
    assert body["msgsignature"] == crypto.sign(
        timestamp="1409659813", nonce="n1", encrypt=body["encrypt"]
    )


def test_wecom_refuses_a_tampered_signature(wecom_vectors, fixed_clock):
    """One changed hex digit of msg_signature is a BadSignature."""
    case = wecom_vectors["verify_url"]
    at_seconds(fixed_clock, case["timestamp"])
    forged = "1" + case["msg_signature"][1:]

    with pytest.raises(BadSignature) as caught:
        wecom(wecom_vectors).verify_url(
            msg_signature=forged,
            timestamp=case["timestamp"],
            nonce=case["nonce"],
            echostr=case["echostr"],
        )

    assert caught.value.code == "bad_signature"


def test_wecom_refuses_a_request_signed_with_another_token(wecom_vectors, fixed_clock):
    """The published request does not verify for an app with a different token."""
    case = wecom_vectors["verify_url"]
    at_seconds(fixed_clock, case["timestamp"])
    crypto = wecom(wecom_vectors, token="another-token")

    with pytest.raises(BadSignature):
        crypto.verify_url(
            msg_signature=case["msg_signature"],
            timestamp=case["timestamp"],
            nonce=case["nonce"],
            echostr=case["echostr"],
        )


def test_wecom_refuses_a_damaged_ciphertext_even_when_signed(
    wecom_vectors, fixed_clock
):
    """A ciphertext damaged in transit but re-signed fails decryption, not silently."""
    case = wecom_vectors["decrypt_xml_message"]
    at_seconds(fixed_clock, case["timestamp"])
    crypto = wecom(wecom_vectors)
    damaged = flip_padding(case["encrypt"])
    body = f"<xml><Encrypt><![CDATA[{damaged}]]></Encrypt></xml>"
    signature = crypto.sign(timestamp=case["timestamp"], nonce="n", encrypt=damaged)

    with pytest.raises(DecryptionFailed) as caught:
        crypto.decrypt_message(
            body, msg_signature=signature, timestamp=case["timestamp"], nonce="n"
        )

    assert caught.value.code == "decrypt_failed"


@pytest.mark.parametrize(
    "ciphertext", ["not base64!", base64.b64encode(b"x" * 20).decode(), ""]
)
def test_wecom_refuses_ciphertext_that_is_not_whole_aes_blocks(
    wecom_vectors, ciphertext
):
    """Text that is not base64 of whole 16-byte blocks is a DecryptionFailed."""
    crypto = wecom(wecom_vectors)

    with pytest.raises(DecryptionFailed):
        crypto.decrypt(ciphertext)


def test_wecom_refuses_a_message_sealed_for_another_corp(wecom_vectors, fixed_clock):
    """The sample decrypts, but an app configured for another CorpID refuses it."""
    case = wecom_vectors["decrypt_xml_message"]
    at_seconds(fixed_clock, case["timestamp"])
    crypto = wecom(wecom_vectors, receive_id="ww0000000000000000")

    with pytest.raises(ReceiverMismatch) as caught:
        crypto.decrypt_message(
            case["post_body"],
            msg_signature=case["msg_signature"],
            timestamp=case["timestamp"],
            nonce=case["nonce"],
        )

    assert caught.value.code == "receiver_mismatch"


def test_wecom_empty_receive_id_serves_smart_robot_callbacks(wecom_vectors):
    """With ReceiveId "" (智能机器人) a frame without receiver round-trips."""
    crypto = wecom(wecom_vectors, receive_id="")

    opened = crypto.decrypt(crypto.encrypt(b'{"msgtype": "text"}'))

    assert opened == b'{"msgtype": "text"}'


@pytest.mark.parametrize(
    "body",
    [
        b"<xml><ToUserName>ww1</ToUserName></xml>",
        b'{"tousername": "ww1"}',
        b"<xml><Encrypt>",
        b'<!DOCTYPE x [<!ENTITY a "b">]><xml><Encrypt>&a;</Encrypt></xml>',
    ],
)
def test_wecom_refuses_bodies_without_a_usable_ciphertext(wecom_vectors, body):
    """Bodies lacking <Encrypt>, broken XML and DOCTYPEs are MalformedPayload."""
    crypto = wecom(wecom_vectors)

    with pytest.raises(MalformedPayload):
        crypto.decrypt_message(body, msg_signature="x", timestamp="1", nonce="n")


@pytest.mark.parametrize(
    "key", ["short", "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhU+"]
)
def test_wecom_refuses_an_aes_key_that_is_not_43_letters_and_digits(key):
    """An EncodingAESKey of the wrong length or alphabet is a configuration error."""
    with pytest.raises(CallbackConfigInvalid):
        WeComCallbackCrypto(token="t", encoding_aes_key=key, receive_id="ww1")


# ------------------------------------------------------------ replay (WeCom)


def test_wecom_refuses_the_same_signed_request_twice(wecom_vectors, fixed_clock):
    """A captured URL check replayed inside the window is a ReplayedRequest."""
    case = wecom_vectors["verify_url"]
    at_seconds(fixed_clock, case["timestamp"])
    crypto = wecom(wecom_vectors)
    request = {
        "msg_signature": case["msg_signature"],
        "timestamp": case["timestamp"],
        "nonce": case["nonce"],
        "echostr": case["echostr"],
    }
    crypto.verify_url(**request)
    fixed_clock.advance(seconds=30)

    with pytest.raises(ReplayedRequest) as caught:
        crypto.verify_url(**request)

    assert caught.value.code == "replayed"


@pytest.mark.parametrize("offset", [-301, 301])
def test_wecom_refuses_a_timestamp_more_than_five_minutes_away(
    wecom_vectors, fixed_clock, offset
):
    """A request 301 s older or newer than Waggle's clock is a StaleTimestamp."""
    case = wecom_vectors["verify_url"]
    at_seconds(fixed_clock, case["timestamp"])
    fixed_clock.advance(seconds=-offset)

    with pytest.raises(StaleTimestamp) as caught:
        wecom(wecom_vectors).verify_url(
            msg_signature=case["msg_signature"],
            timestamp=case["timestamp"],
            nonce=case["nonce"],
            echostr=case["echostr"],
        )

    assert caught.value.code == "stale_timestamp"


def test_wecom_accepts_a_timestamp_exactly_at_the_window_edge(
    wecom_vectors, fixed_clock
):
    """A request exactly 300 s old is still inside the window."""
    case = wecom_vectors["verify_url"]
    at_seconds(fixed_clock, case["timestamp"])
    fixed_clock.advance(seconds=300)

    answer = wecom(wecom_vectors).verify_url(
        msg_signature=case["msg_signature"],
        timestamp=case["timestamp"],
        nonce=case["nonce"],
        echostr=case["echostr"],
    )

    assert answer == "1288432023552776189"


def test_forged_requests_do_not_use_up_a_nonce(wecom_vectors, fixed_clock):
    """A forged request is refused and the genuine one with its nonce passes."""
    case = wecom_vectors["verify_url"]
    at_seconds(fixed_clock, case["timestamp"])
    crypto = wecom(wecom_vectors)
    genuine = {
        "timestamp": case["timestamp"],
        "nonce": case["nonce"],
        "echostr": case["echostr"],
    }
    with pytest.raises(BadSignature):
        crypto.verify_url(msg_signature="0" * 40, **genuine)

    answer = crypto.verify_url(msg_signature=case["msg_signature"], **genuine)

    assert answer == "1288432023552776189"


def test_released_request_is_accepted_again(wecom_vectors, fixed_clock):
    """After release() the platform's retry of a failed request is admitted."""
    case = wecom_vectors["verify_url"]
    at_seconds(fixed_clock, case["timestamp"])
    crypto = wecom(wecom_vectors)
    request = {
        "msg_signature": case["msg_signature"],
        "timestamp": case["timestamp"],
        "nonce": case["nonce"],
        "echostr": case["echostr"],
    }
    crypto.verify_url(**request)

    crypto.replay_guard.release(timestamp=case["timestamp"], nonce=case["nonce"])

    assert crypto.verify_url(**request) == "1288432023552776189"


def test_nonce_store_forgets_keys_once_their_window_has_passed(fixed_clock):
    """Remembered nonces expire with their timestamp, keeping the store small."""
    store = MemoryNonceStore()
    guard = ReplayGuard(platform="WeCom", store=store)
    now = str(int(fixed_clock.current.timestamp()))
    guard.admit(timestamp=now, nonce="a")
    guard.admit(timestamp=now, nonce="b")
    fixed_clock.advance(seconds=301)

    guard.admit(timestamp=str(int(fixed_clock.current.timestamp())), nonce="c")

    assert len(store) == 1


def test_full_nonce_store_forgets_the_key_closest_to_expiry(fixed_clock):
    """A store at capacity evicts the oldest key, so that key may be replayed."""
    store = MemoryNonceStore(max_entries=2)
    guard = ReplayGuard(platform="WeCom", store=store)
    now = int(fixed_clock.current.timestamp())
    guard.admit(timestamp=str(now - 10), nonce="oldest")
    guard.admit(timestamp=str(now), nonce="b")

    guard.admit(timestamp=str(now), nonce="c")
    guard.admit(timestamp=str(now - 10), nonce="oldest")

    assert len(store) == 2


@pytest.mark.parametrize("timestamp", ["", "12ab", "-5", "1" * 17, "１４７６"])
def test_replay_guard_refuses_timestamps_that_are_not_plain_digits(
    fixed_clock, timestamp
):
    """Empty, signed, over-long or full-width timestamps are StaleTimestamp."""
    guard = ReplayGuard(platform="WeCom")

    with pytest.raises(StaleTimestamp):
        guard.admit(timestamp=timestamp, nonce="n")


def test_replay_guard_refuses_an_empty_nonce(fixed_clock):
    """Every platform sends a nonce; a request without one is refused."""
    guard = ReplayGuard(platform="WeCom")

    with pytest.raises(ReplayedRequest):
        guard.admit(timestamp=str(int(fixed_clock.current.timestamp())), nonce="")


# ------------------------------------------------------------------ DingTalk


@pytest.fixture
def dingtalk_vectors() -> list[dict[str, Any]]:
    return load("dingtalk-callback-crypto")["vectors"]


def dingtalk(vector: dict[str, Any], **overrides: Any) -> DingTalkCallbackCrypto:
    values = vector | overrides
    return DingTalkCallbackCrypto(
        token=values["token"], aes_key=values["aes_key"], owner_key=values["owner_key"]
    )


DINGTALK_IDS = [
    "official_doc_isv_debug_example",
    "official_sdk_python3_check_url",
    "official_sdk_go_success_reply",
]


@pytest.mark.parametrize("index", range(3), ids=DINGTALK_IDS)
def test_dingtalk_events_decrypt_to_the_published_plaintext(
    dingtalk_vectors, fixed_clock, index
):
    """Each official DingTalk vector verifies and decrypts to its plaintext."""
    vector = dingtalk_vectors[index]
    at_milliseconds(fixed_clock, vector["timestamp"])

    plaintext = dingtalk(vector).decrypt_event(
        vector["encrypt"],
        signature=vector["signature"],
        timestamp=vector["timestamp"],
        nonce=vector["nonce"],
    )

    assert plaintext.decode("utf-8") == vector["expected_plaintext"]


@pytest.mark.parametrize("index", range(3), ids=DINGTALK_IDS)
def test_dingtalk_encrypt_with_the_vector_prefix_reproduces_its_ciphertext(
    dingtalk_vectors, index
):
    """Encrypting each plaintext with its own prefix gives DingTalk's bytes."""
    vector = dingtalk_vectors[index]
    prefix = frame_prefix(vector["aes_key"], vector["encrypt"])
    crypto = DingTalkCallbackCrypto(
        token=vector["token"],
        aes_key=vector["aes_key"],
        owner_key=vector["owner_key"],
        prefix_source=fixed(prefix),
    )

    encrypted = crypto.encrypt(vector["expected_plaintext"].encode("utf-8"))

    assert encrypted == vector["encrypt"]


def test_dingtalk_doc_example_body_opens_as_the_suite_url_check(
    dingtalk_vectors, fixed_clock
):
    """The documented POST body is the check_create_suite_url event for the suite."""
    vector = dingtalk_vectors[0]
    at_milliseconds(fixed_clock, vector["timestamp"])

    event = dingtalk(vector).open_event(
        vector["post_body"],
        signature=vector["signature"],
        timestamp=vector["timestamp"],
        nonce=vector["nonce"],
    )

    assert event == {
        "EventType": "check_create_suite_url",
        "Random": "LPIdSnlF",
        "TestSuiteKey": "suite4xxxxxxxxxxxxxxx",
    }


def test_dingtalk_success_reply_decrypts_to_success_and_is_signed(dingtalk_vectors):
    """The answer every callback needs is the encrypted word success, signed."""
    vector = dingtalk_vectors[1]
    crypto = dingtalk(vector)

    reply = crypto.success_reply(timestamp="1608001896814", nonce="WL4PK6yA").to_dict()

    assert sorted(reply) == ["encrypt", "msg_signature", "nonce", "timeStamp"]
    assert crypto.decrypt(reply["encrypt"]) == b"success"
    assert reply["msg_signature"] == crypto.sign(
        timestamp="1608001896814", nonce="WL4PK6yA", encrypt=reply["encrypt"]
    )


def test_dingtalk_refuses_a_tampered_signature(dingtalk_vectors, fixed_clock):
    """A signature with one changed digit is a BadSignature."""
    vector = dingtalk_vectors[1]
    at_milliseconds(fixed_clock, vector["timestamp"])

    with pytest.raises(BadSignature):
        dingtalk(vector).decrypt_event(
            vector["encrypt"],
            signature="1" + vector["signature"][1:],
            timestamp=vector["timestamp"],
            nonce=vector["nonce"],
        )


def test_dingtalk_refuses_an_event_for_another_app_key(dingtalk_vectors, fixed_clock):
    """The corp vector decrypts but is refused by an app with another owner key."""
    vector = dingtalk_vectors[1]
    at_milliseconds(fixed_clock, vector["timestamp"])

    with pytest.raises(ReceiverMismatch):
        dingtalk(vector, owner_key="dingotherapp").decrypt_event(
            vector["encrypt"],
            signature=vector["signature"],
            timestamp=vector["timestamp"],
            nonce=vector["nonce"],
        )


def test_dingtalk_refuses_a_damaged_ciphertext_even_when_signed(dingtalk_vectors):
    """A damaged ciphertext with a matching signature still fails to decrypt."""
    vector = dingtalk_vectors[2]
    crypto = dingtalk(vector)
    damaged = flip_padding(vector["encrypt"])

    with pytest.raises(DecryptionFailed):
        crypto.decrypt(damaged)


def test_dingtalk_timestamps_are_milliseconds(dingtalk_vectors, fixed_clock):
    """DingTalk's 13-digit timestamp is fresh at its instant, stale 6 min later."""
    vector = dingtalk_vectors[1]
    at_milliseconds(fixed_clock, vector["timestamp"])
    fixed_clock.advance(minutes=6)

    with pytest.raises(StaleTimestamp):
        dingtalk(vector).decrypt_event(
            vector["encrypt"],
            signature=vector["signature"],
            timestamp=vector["timestamp"],
            nonce=vector["nonce"],
        )


def test_dingtalk_refuses_the_same_event_twice(dingtalk_vectors, fixed_clock):
    """The same signed event replayed a second later is a ReplayedRequest."""
    vector = dingtalk_vectors[0]
    at_milliseconds(fixed_clock, vector["timestamp"])
    crypto = dingtalk(vector)
    request = {
        "signature": vector["signature"],
        "timestamp": vector["timestamp"],
        "nonce": vector["nonce"],
    }
    crypto.decrypt_event(vector["encrypt"], **request)
    fixed_clock.advance(seconds=1)

    with pytest.raises(ReplayedRequest):
        crypto.decrypt_event(vector["encrypt"], **request)


# -------------------------------------------------------------------- Feishu


@pytest.fixture
def feishu_vector() -> dict[str, Any]:
    vector: dict[str, Any] = load("feishu-event-crypto")["vectors"][0]
    return vector


def test_feishu_decrypts_the_documented_example(feishu_vector):
    """The Encrypt Key example of Feishu's docs decrypts to hello world."""
    crypto = FeishuEventCrypto(encrypt_key=feishu_vector["encrypt_key"])

    plaintext = crypto.decrypt(feishu_vector["encrypt"])

    assert plaintext == b"hello world"


def test_feishu_encrypt_with_the_example_iv_reproduces_its_ciphertext(feishu_vector):
    """Encrypting hello world with the example's IV gives the documented bytes."""
    iv = base64.b64decode(feishu_vector["encrypt"])[:16]
    crypto = FeishuEventCrypto(
        encrypt_key=feishu_vector["encrypt_key"], iv_source=fixed(iv)
    )

    encrypted = crypto.encrypt(b"hello world")

    assert encrypted == feishu_vector["encrypt"]


def test_feishu_example_body_is_refused_as_an_event_because_it_is_not_json(
    feishu_vector,
):
    """The example's plaintext is not a JSON event, so opening the body refuses it."""
    crypto = FeishuEventCrypto(encrypt_key=feishu_vector["encrypt_key"])
    body = json.dumps(feishu_vector["as_http_body"]).encode()

    with pytest.raises(MalformedPayload):
        crypto.open_event(body)


def test_feishu_decrypt_with_another_key_fails(feishu_vector):
    """The documented ciphertext does not decrypt under another Encrypt Key."""
    crypto = FeishuEventCrypto(encrypt_key="another key")

    with pytest.raises(DecryptionFailed):
        crypto.decrypt(feishu_vector["encrypt"])


def test_feishu_signature_is_sha256_of_timestamp_nonce_key_and_raw_body():
    """X-Lark-Signature is hex sha256 of timestamp, nonce, Encrypt Key and body."""
    crypto = FeishuEventCrypto(encrypt_key="test key")
    body = b'{"encrypt":"P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk="}'

    signature = crypto.sign(body, timestamp="1700000000", nonce="abc123")

    expected = hashlib.sha256(b"1700000000abc123test key" + body).hexdigest()
    assert signature == expected


FEISHU_KEY = "kDc3RmLu0iUhFgr0e5xzbwWsF1rYLPYv"
FEISHU_TOKEN = "v-token-7Hq"


def feishu_request(
    payload: dict[str, Any], *, timestamp: str, nonce: str = "n-1"
) -> tuple[FeishuEventCrypto, bytes, dict[str, str]]:
    crypto = FeishuEventCrypto(encrypt_key=FEISHU_KEY, verification_token=FEISHU_TOKEN)
    plaintext = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    body = json.dumps({"encrypt": crypto.encrypt(plaintext)}).encode()
    headers = {
        "timestamp": timestamp,
        "nonce": nonce,
        "signature": crypto.sign(body, timestamp=timestamp, nonce=nonce),
    }
    return crypto, body, headers


def message_event(token: str = FEISHU_TOKEN) -> dict[str, Any]:
    return {
        "schema": "2.0",
        "header": {"event_type": "im.message.receive_v1", "token": token},
        "event": {"message": {"content": '{"text":"能报个价吗"}'}},
    }


def test_feishu_signed_event_round_trips_with_chinese_text(fixed_clock):
    """An encrypted, signed schema 2.0 event opens to the same payload."""
    now = str(int(fixed_clock.current.timestamp()))
    crypto, body, headers = feishu_request(message_event(), timestamp=now)

    event = crypto.open_event(body, **headers)

    assert event.payload == message_event()
    assert not event.is_url_verification


def test_feishu_unsigned_url_verification_is_answered_with_its_challenge():
    """The request-URL check comes unsigned and is answered with its challenge."""
    crypto, body, _ = feishu_request(
        {
            "type": "url_verification",
            "challenge": "ajls384kdjx98XX",
            "token": FEISHU_TOKEN,
        },
        timestamp="0",
    )

    event = crypto.open_event(body)

    assert event.challenge_response() == {"challenge": "ajls384kdjx98XX"}


def test_feishu_refuses_an_unsigned_event_other_than_url_verification():
    """Without X-Lark-Signature only the URL check is accepted."""
    crypto, body, _ = feishu_request(message_event(), timestamp="0")

    with pytest.raises(BadSignature):
        crypto.open_event(body)


def test_feishu_refuses_a_body_changed_after_signing(fixed_clock):
    """Changing one byte of the signed body is a BadSignature."""
    now = str(int(fixed_clock.current.timestamp()))
    crypto, body, headers = feishu_request(message_event(), timestamp=now)

    with pytest.raises(BadSignature):
        crypto.open_event(body.replace(b'{"', b'{ "', 1), **headers)


def test_feishu_refuses_an_event_with_another_verification_token(fixed_clock):
    """A correctly signed event naming another app's token is refused as bad_token."""
    now = str(int(fixed_clock.current.timestamp()))
    crypto, body, headers = feishu_request(message_event("other"), timestamp=now)

    with pytest.raises(BadSignature) as caught:
        crypto.open_event(body, **headers)

    assert caught.value.code == "bad_token"


def test_feishu_refuses_a_replayed_event(fixed_clock):
    """The same signed event delivered twice is a ReplayedRequest the second time."""
    now = str(int(fixed_clock.current.timestamp()))
    crypto, body, headers = feishu_request(message_event(), timestamp=now)
    crypto.open_event(body, **headers)

    with pytest.raises(ReplayedRequest):
        crypto.open_event(body, **headers)


def test_feishu_refuses_a_stale_event(fixed_clock):
    """A signed event whose timestamp is ten minutes old is a StaleTimestamp."""
    old = str(int(fixed_clock.current.timestamp()) - 600)
    crypto, body, headers = feishu_request(message_event(), timestamp=old)

    with pytest.raises(StaleTimestamp):
        crypto.open_event(body, **headers)


def test_feishu_refuses_an_empty_encrypt_key():
    """An empty Encrypt Key is a configuration error, not a silent no-op."""
    with pytest.raises(CallbackConfigInvalid):
        FeishuEventCrypto(encrypt_key="")


def test_every_callback_error_shares_one_root():
    """Endpoints answer all rejected callbacks alike by catching CallbackRejected."""
    kinds = [
        BadSignature,
        DecryptionFailed,
        ReceiverMismatch,
        ReplayedRequest,
        StaleTimestamp,
        MalformedPayload,
    ]

    roots = {issubclass(kind, CallbackRejected) for kind in kinds}

    assert roots == {True}
