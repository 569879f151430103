"""WeCom (企业微信) callback crypto, per the official 加解密方案说明.

- ``msg_signature = sha1(sorted([token, timestamp, nonce, encrypt]) joined)``.
- ``encrypt`` is the framed AES-256-CBC ciphertext described in ``_common``;
  the frame ends with the ReceiveId: the CorpID for an internal app's
  callbacks, the SuiteID for a third-party suite's, an empty string for some
  robot callbacks (see the doc's 附注).
- URL check (GET): verify the signature over ``echostr``, decrypt it, answer
  with the plaintext exactly as decrypted.
- Messages (POST): the body is XML with ``<Encrypt>`` or, for the JSON flavour,
  ``{"encrypt": ...}``; the signature covers that ciphertext.
- Passive replies are encrypted the same way and signed with a fresh
  timestamp and nonce.
- Timestamps are Unix seconds.

Every verifying call checks the signature first, then the replay guard, then
decrypts.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from typing import Any

from waggle.core import clock
from waggle.signals.crypto._common import (
    FramedCipher,
    RandomPrefix,
    check_signature,
    encrypted_field,
    parse_json_object,
    random_text,
    sha1_signature,
)
from waggle.signals.crypto.replay import ReplayGuard
from waggle.signals.errors import DecryptionFailed, MalformedPayload

PLATFORM = "WeCom"
_DECLARATIONS = re.compile(rb"<!(DOCTYPE|ENTITY)", re.IGNORECASE)


@dataclass(frozen=True)
class WeComReply:
    """An encrypted, signed passive reply, ready to render as XML or JSON."""

    encrypt: str
    msg_signature: str
    timestamp: str
    nonce: str

    def to_xml(self) -> str:
        """Render the reply body WeCom expects for XML callbacks."""
        return (
            "<xml>"
            f"<Encrypt><![CDATA[{self.encrypt}]]></Encrypt>"
            f"<MsgSignature><![CDATA[{self.msg_signature}]]></MsgSignature>"
            f"<TimeStamp>{self.timestamp}</TimeStamp>"
            f"<Nonce><![CDATA[{self.nonce}]]></Nonce>"
            "</xml>"
        )

    def to_json(self) -> str:
        """Render the reply body of the JSON flavour (智能机器人 callbacks)."""
        return json.dumps(
            {
                "encrypt": self.encrypt,
                "msgsignature": self.msg_signature,
                "timestamp": self.timestamp,
                "nonce": self.nonce,
            }
        )


class WeComCallbackCrypto:
    """Verify, decrypt and answer the callbacks of one WeCom app."""

    def __init__(
        self,
        *,
        token: str,
        encoding_aes_key: str,
        receive_id: str,
        replay_guard: ReplayGuard | None = None,
        prefix_source: RandomPrefix | None = None,
    ):
        self._token = token
        self._cipher = FramedCipher(
            encoding_aes_key,
            receive_id,
            platform=PLATFORM,
            receiver_field="ReceiveId",
            prefix_source=prefix_source,
        )
        self.replay_guard = replay_guard or ReplayGuard(platform=PLATFORM)

    def verify_url(
        self, *, msg_signature: str, timestamp: str, nonce: str, echostr: str
    ) -> str:
        """Return the plaintext to answer WeCom's URL check with.

        ``echostr`` must already be URL-decoded.

        Raises:
            BadSignature: ``msg_signature`` does not cover these values.
            ReplayedRequest: stale timestamp or a nonce seen before.
            DecryptionFailed: ``echostr`` does not decrypt for this app.
        """
        self._authenticate(msg_signature, timestamp, nonce, echostr)
        plaintext = self._cipher.decrypt(echostr, field="echostr")
        try:
            return plaintext.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecryptionFailed(
                "WeCom callback: decrypted echostr is not UTF-8; expected text",
                platform=PLATFORM,
            ) from exc

    def decrypt_message(
        self, body: bytes | str, *, msg_signature: str, timestamp: str, nonce: str
    ) -> bytes:
        """Return the plaintext message of a POSTed callback (XML or JSON body).

        Raises:
            MalformedPayload: the body carries no ciphertext.
            BadSignature: ``msg_signature`` does not cover these values.
            ReplayedRequest: stale timestamp or a nonce seen before.
            DecryptionFailed: the ciphertext does not decrypt for this app.
        """
        encrypted = extract_encrypt(body)
        self._authenticate(msg_signature, timestamp, nonce, encrypted)
        return self._cipher.decrypt(encrypted)

    def encrypt_reply(
        self,
        reply: bytes | str,
        *,
        timestamp: str | None = None,
        nonce: str | None = None,
    ) -> WeComReply:
        """Encrypt and sign a passive reply; timestamp and nonce default to fresh."""
        message = reply.encode("utf-8") if isinstance(reply, str) else reply
        timestamp = timestamp or str(int(clock.now().timestamp()))
        nonce = nonce or random_text(10)
        encrypted = self._cipher.encrypt(message)
        signature = self.sign(timestamp=timestamp, nonce=nonce, encrypt=encrypted)
        return WeComReply(encrypted, signature, timestamp, nonce)

    def sign(self, *, timestamp: str, nonce: str, encrypt: str) -> str:
        """Return the msg_signature of a ciphertext with this timestamp and nonce."""
        return sha1_signature(self._token, timestamp, nonce, encrypt)

    def encrypt(self, message: bytes) -> str:
        """Return the framed ciphertext of ``message`` (no signature)."""
        return self._cipher.encrypt(message)

    def decrypt(self, encrypt: str | bytes) -> bytes:
        """Return the message inside ``encrypt`` without any signature check.

        Raises:
            DecryptionFailed: the ciphertext is damaged or for another receiver.
        """
        return self._cipher.decrypt(encrypt)

    def _authenticate(
        self, msg_signature: str, timestamp: str, nonce: str, encrypted: str
    ) -> None:
        expected = self.sign(timestamp=timestamp, nonce=nonce, encrypt=encrypted)
        check_signature(
            expected, msg_signature, platform=PLATFORM, field="msg_signature"
        )
        self.replay_guard.admit(timestamp=timestamp, nonce=nonce)


def extract_encrypt(body: bytes | str) -> str:
    """Return the ciphertext of a callback body: XML ``<Encrypt>`` or JSON ``encrypt``.

    Raises:
        MalformedPayload: the body is neither shape or has no ciphertext.
    """
    data = body.encode("utf-8") if isinstance(body, str) else body
    if data.lstrip().startswith(b"{"):
        envelope = parse_json_object(data, platform=PLATFORM, what="the request body")
        return encrypted_field(envelope, "encrypt", platform=PLATFORM)
    fields = parse_xml_message(data, what="the request body")
    encrypted = fields.get("Encrypt", "")
    if not encrypted:
        raise MalformedPayload(
            "WeCom callback: the request body has no <Encrypt> element; "
            "expected the ciphertext there",
            platform=PLATFORM,
        )
    return encrypted


def parse_xml_message(data: bytes, *, what: str = "the message") -> dict[str, str]:
    """Return the child elements of a flat WeCom XML document as text.

    Documents with a DOCTYPE or entity declaration are refused: WeCom never
    sends one, and refusing them rules out entity-expansion attacks.

    Raises:
        MalformedPayload: ``data`` is not a well-formed flat XML document.
    """
    if _DECLARATIONS.search(data):
        raise MalformedPayload(
            f"WeCom callback: {what} declares a DOCTYPE or entity; expected plain XML",
            platform=PLATFORM,
        )
    try:
        # Safe here: declarations are refused above, and expat resolves no
        # external resources.
        root = ElementTree.fromstring(data)  # noqa: S314
    except ElementTree.ParseError as exc:
        raise MalformedPayload(
            f"WeCom callback: {what} is not well-formed XML ({exc}); "
            "expected <xml>...</xml>",
            platform=PLATFORM,
        ) from exc
    return {child.tag: (child.text or "") for child in root}


def parse_json_message(data: bytes) -> dict[str, Any]:
    """Return a decrypted JSON-flavour message as a dict.

    Raises:
        MalformedPayload: the plaintext is not a JSON object.
    """
    return parse_json_object(data, platform=PLATFORM, what="the decrypted message")
