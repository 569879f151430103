"""Callback cryptography of WeCom, DingTalk and Feishu/Lark.

Each platform class verifies a request (signature, then replay guard), decrypts
it and builds the answer the platform expects. Connectors own the HTTP side:
they pass in the query parameters, headers and raw body, and send back what
these classes return. Nothing here touches the database or the network.
"""

from waggle.signals.crypto.dingtalk import DingTalkCallbackCrypto, DingTalkReply
from waggle.signals.crypto.feishu import FeishuEvent, FeishuEventCrypto
from waggle.signals.crypto.replay import (
    DEFAULT_WINDOW,
    MemoryNonceStore,
    NonceStore,
    ReplayGuard,
)
from waggle.signals.crypto.wecom import (
    WeComCallbackCrypto,
    WeComReply,
    extract_encrypt,
    parse_json_message,
    parse_xml_message,
)

__all__ = [
    "DEFAULT_WINDOW",
    "DingTalkCallbackCrypto",
    "DingTalkReply",
    "FeishuEvent",
    "FeishuEventCrypto",
    "MemoryNonceStore",
    "NonceStore",
    "ReplayGuard",
    "WeComCallbackCrypto",
    "WeComReply",
    "extract_encrypt",
    "parse_json_message",
    "parse_xml_message",
]
