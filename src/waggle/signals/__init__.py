"""Signals owns behaviour capture: platform callbacks, connectors and trackers.

So far it holds the callback cryptography of WeCom, DingTalk and Feishu
(:mod:`waggle.signals.crypto`) and the keyword and concept trackers with their
default Chinese and English dictionaries (:mod:`waggle.signals.trackers`).
Connectors, normalisation into behaviour events, matching and quarantine come
next (issue #3).
"""

from waggle.signals.errors import (
    BadSignature,
    CallbackConfigInvalid,
    CallbackRejected,
    DecryptionFailed,
    MalformedPayload,
    ReceiverMismatch,
    ReplayedRequest,
    StaleTimestamp,
    TrackerDictionaryInvalid,
)
from waggle.signals.trackers import (
    Speaker,
    TrackerEngine,
    TrackerHit,
    compile_trackers,
    default_engine,
    load_dictionary,
)

__all__ = [
    "BadSignature",
    "CallbackConfigInvalid",
    "CallbackRejected",
    "DecryptionFailed",
    "MalformedPayload",
    "ReceiverMismatch",
    "ReplayedRequest",
    "Speaker",
    "StaleTimestamp",
    "TrackerDictionaryInvalid",
    "TrackerEngine",
    "TrackerHit",
    "compile_trackers",
    "default_engine",
    "load_dictionary",
]
