"""The HTTP side of the WeCom, DingTalk and Feishu callback endpoints, framework-free.

An API route passes the request's method, query (or headers) and raw body to
``handle_wecom``, ``handle_dingtalk`` or ``handle_feishu`` and sends back the
outcome's ``status``, ``content_type`` and ``reply``; the outcome's
``records`` (the decrypted inner messages, verbatim) go to the connector the
outcome names. What each platform is answered:

- WeCom: the URL check (GET) with the decrypted ``echostr``; a message (POST)
  with an empty 200 body, which WeCom documents as "received, no passive
  reply". Records go to ``wecom_callback``.
- DingTalk: every POST, the ``check_url`` registration test included, with the
  encrypted ``success`` JSON (anything else makes DingTalk retry). URL checks
  give no record; everything else goes to ``dingtalk_callback``.
- Feishu: ``url_verification`` with ``{"challenge": ...}`` in plaintext; an
  event with ``{"msg": "success"}``. Records go to ``feishu_events``.

A request that fails a check raises the :class:`CallbackRejected` kind the
crypto classes raise (bad signature, stale timestamp, decryption...). A
correctly signed request whose timestamp and nonce were already admitted is a
platform retry of a delivery that got in: it is answered as success with no
records and ``is_duplicate`` set. When storing an outcome's records fails, the
route should call ``crypto.replay_guard.release(timestamp=..., nonce=...)``
with the outcome's ``admitted`` pair so that the platform's retry is admitted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from waggle.signals.crypto import (
    DingTalkCallbackCrypto,
    FeishuEventCrypto,
    ReplayGuard,
    WeComCallbackCrypto,
)
from waggle.signals.errors import (
    CallbackConfigInvalid,
    CallbackRejected,
    MalformedPayload,
    ReplayedRequest,
    StaleTimestamp,
)
from waggle.signals.events import RawRecord

TEXT = "text/plain; charset=utf-8"
JSON = "application/json; charset=utf-8"
DINGTALK_URL_CHECKS = frozenset(
    {"check_url", "check_create_suite_url", "check_update_suite_url"}
)
FEISHU_SUCCESS = b'{"msg":"success"}'

CallbackCrypto = WeComCallbackCrypto | DingTalkCallbackCrypto | FeishuEventCrypto


@dataclass(frozen=True)
class CallbackOutcome:
    """What to answer a platform callback with, and what it delivered.

    ``admitted`` is the (timestamp, nonce) pair the replay guard remembered,
    ``None`` for duplicates and unsigned URL checks.
    """

    status: int
    content_type: str
    reply: bytes
    connector: str
    records: list[RawRecord] = field(default_factory=list)
    admitted: tuple[str, str] | None = None
    is_duplicate: bool = False


def handle_wecom(
    crypto: WeComCallbackCrypto,
    *,
    method: str,
    query: Mapping[str, str],
    body: bytes,
) -> CallbackOutcome:
    """Answer a WeCom callback: the GET URL check or a POSTed message.

    ``query`` values must already be URL-decoded (as web frameworks give them).

    Raises:
        MalformedPayload: a query parameter or the ciphertext is missing.
        BadSignature: ``msg_signature`` does not match.
        ReplayedRequest: the timestamp is stale (a URL check seen before, too).
        DecryptionFailed: the ciphertext does not decrypt for this app.
        CallbackRejected: the method is neither GET nor POST.
    """
    platform = "WeCom"
    if method.upper() != "GET":
        _require_post(method, platform=platform, allow_get=True)
    signature, timestamp, nonce = _signed_query(
        query, ("msg_signature", "timestamp", "nonce"), platform=platform
    )
    if method.upper() == "GET":
        (echostr,) = _signed_query(query, ("echostr",), platform=platform)
        answer = crypto.verify_url(
            msg_signature=signature, timestamp=timestamp, nonce=nonce, echostr=echostr
        )
        return CallbackOutcome(
            200, TEXT, answer.encode("utf-8"), "wecom_callback", [], (timestamp, nonce)
        )
    try:
        plaintext = crypto.decrypt_message(
            body, msg_signature=signature, timestamp=timestamp, nonce=nonce
        )
    except ReplayedRequest as exc:
        return _duplicate_or_raise(exc, 200, TEXT, b"", "wecom_callback")
    record = RawRecord(plaintext, _locator(platform, timestamp, nonce))
    return CallbackOutcome(
        200, TEXT, b"", "wecom_callback", [record], (timestamp, nonce)
    )


def handle_dingtalk(
    crypto: DingTalkCallbackCrypto,
    *,
    method: str,
    query: Mapping[str, str],
    body: bytes,
) -> CallbackOutcome:
    """Answer a DingTalk event-subscription POST with the encrypted ``success``.

    The signature comes as ``signature`` (older SDKs: ``msg_signature``).

    Raises:
        MalformedPayload: a query parameter or the ``encrypt`` field is missing.
        BadSignature: the signature does not match.
        ReplayedRequest: the timestamp is stale.
        DecryptionFailed: the ciphertext does not decrypt for this app.
        CallbackRejected: the method is not POST.
    """
    platform = "DingTalk"
    _require_post(method, platform=platform)
    merged = dict(query)
    if not merged.get("signature") and merged.get("msg_signature"):
        merged["signature"] = merged["msg_signature"]
    signature, timestamp, nonce = _signed_query(
        merged, ("signature", "timestamp", "nonce"), platform=platform
    )
    encrypted = _envelope_ciphertext(body, platform=platform)
    success = crypto.success_reply().to_json().encode("utf-8")
    try:
        plaintext = crypto.decrypt_event(
            encrypted, signature=signature, timestamp=timestamp, nonce=nonce
        )
    except ReplayedRequest as exc:
        return _duplicate_or_raise(exc, 200, JSON, success, "dingtalk_callback")

    records = (
        []
        if _is_url_check(plaintext)
        else [RawRecord(plaintext, _locator(platform, timestamp, nonce))]
    )
    return CallbackOutcome(
        200, JSON, success, "dingtalk_callback", records, (timestamp, nonce)
    )


def handle_feishu(
    crypto: FeishuEventCrypto,
    *,
    method: str,
    headers: Mapping[str, str],
    body: bytes,
) -> CallbackOutcome:
    """Answer a Feishu event POST: the challenge of a URL check, else success.

    Header names are matched case-insensitively (``X-Lark-Signature``,
    ``X-Lark-Request-Timestamp``, ``X-Lark-Request-Nonce``).

    Raises:
        MalformedPayload: the body is not an encrypted JSON event.
        BadSignature: wrong or missing signature, or wrong Verification Token.
        ReplayedRequest: the timestamp is stale.
        DecryptionFailed: the ciphertext does not decrypt with this key.
        CallbackRejected: the method is not POST.
    """
    platform = "Feishu"
    _require_post(method, platform=platform)
    lowered = {key.lower(): value for key, value in headers.items()}
    timestamp = lowered.get("x-lark-request-timestamp", "")
    nonce = lowered.get("x-lark-request-nonce", "")
    signature = lowered.get("x-lark-signature")
    if signature is not None:
        # An empty nonce would read as a replay below; refuse it as malformed.
        _signed_query(
            lowered,
            ("x-lark-request-timestamp", "x-lark-request-nonce"),
            platform=platform,
        )
    try:
        event = crypto.open_event(
            body, timestamp=timestamp, nonce=nonce, signature=signature
        )
    except ReplayedRequest as exc:
        return _duplicate_or_raise(exc, 200, JSON, FEISHU_SUCCESS, "feishu_events")

    admitted = (timestamp, nonce) if signature is not None else None
    if event.is_url_verification:
        reply = json.dumps(event.challenge_response()).encode("utf-8")
        return CallbackOutcome(200, JSON, reply, "feishu_events", [], admitted)
    # open_event checked the envelope; decrypt again for the verbatim plaintext.
    plaintext = crypto.decrypt(json.loads(body)["encrypt"])
    record = RawRecord(plaintext, _locator(platform, timestamp, nonce))
    return CallbackOutcome(
        200, JSON, FEISHU_SUCCESS, "feishu_events", [record], admitted
    )


def callback_crypto_from_config(
    platform: str,
    config: Mapping[str, Any],
    *,
    replay_guard: ReplayGuard | None = None,
) -> CallbackCrypto:
    """Build the callback crypto of ``platform`` (wecom, dingtalk, feishu).

    Settings per platform (aliases in brackets):

    - wecom: ``token``, ``encoding_aes_key``, ``receive_id`` [``corp_id``];
      the receive id may be empty (智能机器人 callbacks).
    - dingtalk: ``token``, ``aes_key`` [``encoding_aes_key``], ``owner_key``
      [``app_key``, ``corp_id``, ``suite_key``].
    - feishu: ``encrypt_key``, optional ``verification_token``.

    Raises:
        CallbackConfigInvalid: unknown platform, or a setting is missing, not
            a string, or unusable (the message names it).
    """
    if platform == "wecom":
        return WeComCallbackCrypto(
            token=_setting(config, platform, "token"),
            encoding_aes_key=_setting(config, platform, "encoding_aes_key"),
            receive_id=_setting(config, platform, "receive_id", "corp_id", empty=True),
            replay_guard=replay_guard,
        )
    if platform == "dingtalk":
        return DingTalkCallbackCrypto(
            token=_setting(config, platform, "token"),
            aes_key=_setting(config, platform, "aes_key", "encoding_aes_key"),
            owner_key=_setting(
                config, platform, "owner_key", "app_key", "corp_id", "suite_key"
            ),
            replay_guard=replay_guard,
        )
    if platform == "feishu":
        token = config.get("verification_token")
        if token is not None and (not isinstance(token, str) or not token):
            raise _bad_setting(platform, "verification_token", "a non-empty string")
        return FeishuEventCrypto(
            encrypt_key=_setting(config, platform, "encrypt_key"),
            verification_token=token,
            replay_guard=replay_guard,
        )
    raise CallbackConfigInvalid(
        f"callback settings: platform {platform!r} is unknown; expected wecom, "
        "dingtalk or feishu",
        platform=platform,
    )


def _setting(
    config: Mapping[str, Any],
    platform: str,
    key: str,
    *aliases: str,
    empty: bool = False,
) -> str:
    for name in (key, *aliases):
        if name in config:
            value = config[name]
            if not isinstance(value, str) or (not value and not empty):
                raise _bad_setting(platform, name, "a non-empty string")
            return value
    names = " or ".join(repr(name) for name in (key, *aliases))
    raise CallbackConfigInvalid(
        f"{platform} callback settings: {names} is missing; expected the value "
        "shown in the platform's console",
        platform=platform,
        field=key,
    )


def _bad_setting(platform: str, key: str, expected: str) -> CallbackConfigInvalid:
    return CallbackConfigInvalid(
        f"{platform} callback settings: {key!r} is not {expected}",
        platform=platform,
        field=key,
    )


def _signed_query(
    query: Mapping[str, str], names: tuple[str, ...], *, platform: str
) -> tuple[str, ...]:
    values = []
    for name in names:
        value = query.get(name)
        if not isinstance(value, str) or not value:
            raise MalformedPayload(
                f"{platform} callback: query parameter {name!r} is missing; "
                "expected it on every request the platform signs",
                platform=platform,
                field=name,
            )
        values.append(value)
    return tuple(values)


def _require_post(method: str, *, platform: str, allow_get: bool = False) -> None:
    if method.upper() != "POST":
        allowed = "GET or POST" if allow_get else "POST"
        raise CallbackRejected(
            f"{platform} callback: method {method!r} is not accepted; "
            f"expected {allowed}",
            code="method_not_allowed",
            platform=platform,
        )


def _envelope_ciphertext(body: bytes, *, platform: str) -> str:
    try:
        envelope = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise MalformedPayload(
            f"{platform} callback: the request body is not JSON; expected "
            '{"encrypt": ...}',
            platform=platform,
        ) from exc
    encrypted = envelope.get("encrypt") if isinstance(envelope, dict) else None
    if not isinstance(encrypted, str) or not encrypted:
        raise MalformedPayload(
            f"{platform} callback: body field 'encrypt' is missing or empty; "
            "expected the base64 ciphertext",
            platform=platform,
        )
    return encrypted


def _is_url_check(plaintext: bytes) -> bool:
    try:
        event = json.loads(plaintext)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        # Not JSON: leave it to the connector, which quarantines it with a reason.
        return False
    return isinstance(event, dict) and event.get("EventType") in DINGTALK_URL_CHECKS


def _duplicate_or_raise(
    error: ReplayedRequest,
    status: int,
    content_type: str,
    reply: bytes,
    connector: str,
) -> CallbackOutcome:
    # A stale timestamp is no retry of an admitted delivery: refuse it.
    if isinstance(error, StaleTimestamp):
        raise error
    return CallbackOutcome(status, content_type, reply, connector, is_duplicate=True)


def _locator(platform: str, timestamp: str, nonce: str) -> str:
    return f"{platform} callback timestamp {timestamp} nonce {nonce}"


__all__ = [
    "CallbackCrypto",
    "CallbackOutcome",
    "callback_crypto_from_config",
    "handle_dingtalk",
    "handle_feishu",
    "handle_wecom",
]
