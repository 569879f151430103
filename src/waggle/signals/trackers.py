"""Keyword and concept trackers: find sales topics in chat messages.

A tracker is a concept (``pricing.quote``: 报价, 报个价, quotation, ...) in one
category (pricing, trial, tender, competitor, objection, budget, procurement,
legal, decision_maker). Dictionaries are YAML files a business user edits (see
``dictionaries/default_zh.yaml`` for the documented shape); any number of them
compile into one :class:`TrackerEngine`, and a tracker id may appear in several
files (one per language) to gather its phrases.

How a message is matched:

1. The text is folded (full-width ASCII to half-width, lower case) with every
   offset kept, and one Aho-Corasick pass finds phrases, exclusions, negation
   cues and question cues together.
2. Phrases whose edges are Latin letters or digits must sit on word boundaries
   (``price`` never matches inside ``priceless``); a phrase ending in ``*``
   matches any word it begins (``quot*``: quote, quotes, quotation).
3. Chinese has no spaces, so a short phrase may straddle two real words:
   报价 inside 情报价值 (情报|价值), 试用 inside 尝试用 (尝试|用). For Chinese
   phrases of at most two characters (or any tracker with ``word_check:
   always``) the hit is dropped when jieba segments a word across either of its
   edges. A word that merely *contains* the phrase (报价单, 公开招标) keeps the
   hit; the few compounds that change the meaning (领导力, 决策树) go in the
   tracker's ``exclude`` list. jieba runs without its HMM, so it can only
   produce dictionary words; the engine first looks those words up around the
   hit and segments the clause only when one could cross an edge, which keeps
   jieba off the hot path for most hits.
4. A hit is negated when a negation cue (不需要, 先不用, don't need, ...) sits in
   the same clause before it (or an after-cue such as 就不用了 / not needed
   after it) within the dictionary's window, counted in Chinese characters
   plus Latin words. Exceptions (不用客气, no problem) cancel a cue.
5. A hit is a question when its sentence ends with ``?``, contains a question
   cue (吗, 多少, 是否, what, how much) or an A-not-A form (是不是, 有没有), or
   has a clause that starts with a leading cue (can, could, is, ...) after
   filler words or ends with a final cue (呢). Sentences end at 。！？；, line
   breaks and full stops; commas only end clauses, so in 对方给了个底价，你们能
   不能跟一下 the price is asked about.
6. A tracker with ``speaker: customer`` or ``speaker: rep`` only fires for that
   speaker; when the speaker is unknown (``None``) every tracker fires.

Steps 1 to 6 run in C (``_tracker_native.c``, built by the install) when the
extension is there: the per-message Python overhead was most of the cost. The
C code also holds a copy of jieba's dictionary and repeats jieba's cut
without HMM (its dynamic programme over word frequencies) for step 3. The
Python code below is the reference the C code must agree with, hit for hit,
and the fallback when the extension is missing or ``WAGGLE_TRACKERS_NATIVE=0``
is set.
"""

from __future__ import annotations

import bisect
import functools
import logging
import os
import re
import stat
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Literal

import ahocorasick  # type: ignore[import-not-found]  # ships no type stubs
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
)

from waggle.core.errors import InvalidInput
from waggle.signals.errors import TrackerDictionaryInvalid

try:
    from waggle.signals import _tracker_native
except ImportError as exc:  # a build without a C compiler skips the extension
    _tracker_native = None  # type: ignore[assignment]  # the Python path serves
    _NATIVE_MISSING: str | None = str(exc)
else:
    _NATIVE_MISSING = None

logger = logging.getLogger(__name__)

DEFAULT_DICTIONARIES = ("default_zh.yaml", "default_en.yaml")
DEFAULT_NEGATION_WINDOW = 4
AUTO_WORD_CHECK_MAX_LENGTH = 2
NATIVE_SWITCH = "WAGGLE_TRACKERS_NATIVE"  # "0": always the pure-Python matcher

_HAN = re.compile(r"[\u3400-\u9fff]")
_ALL_HAN = re.compile(r"[\u3400-\u9fff]+")
_GAP_UNITS = re.compile(r"[\u3400-\u9fff]|[0-9a-z\u00c0-\u024f]+")
_CLAUSE_BREAK = re.compile(
    r"[,。!?;\n\r…~～、]+|\.+(?=\s|$)|(?<=[\u3400-\u9fff])\s+(?=[\u3400-\u9fff])"
)
# Sentences end at these; a question mark or cue makes its whole sentence a
# question (对方给了个底价，你们能不能跟一下), while negation stays in its clause.
_SENTENCE_BREAK = re.compile(r"[。!?;\n\r…]+|\.+(?=\s|$)")
_A_NOT_A = re.compile(r"([\u3400-\u9fff])[不没]\1")
_LATIN_WORD = re.compile(r"[0-9a-z\u00c0-\u024f']+")
_FOLDABLE = re.compile("[\uff01-\uff5e\u3000\u2019\uff61]")
_FOLD = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {
    0x3000: 0x20,  # ideographic space
    0x2019: 0x27,  # right single quotation mark, typed for apostrophes
    0xFF61: 0x2E,  # halfwidth ideographic full stop
}


class Speaker(StrEnum):
    """Who wrote a message: the sales representative or the customer."""

    REP = "rep"
    CUSTOMER = "customer"


@dataclass(frozen=True, slots=True)
class TrackerHit:
    """One tracker phrase found in a message; offsets index the original text."""

    tracker_id: str
    category: str
    phrase: str
    matched: str
    start: int
    end: int
    is_negated: bool
    is_question: bool


@dataclass(frozen=True)
class TrackerInfo:
    """What a compiled tracker is, for listings and rule editors."""

    id: str
    category: str
    speaker: Speaker | None
    labels: dict[str, str]
    phrase_count: int


# --------------------------------------------------------------------------
# Dictionary files


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NegationSpec(_Spec):
    """Negation cues; ``window`` counts Chinese characters plus Latin words."""

    window: int | None = Field(default=None, ge=0, le=20)
    before: list[str] = []
    after: list[str] = []
    exceptions: list[str] = []


class QuestionSpec(_Spec):
    """Question cues: anywhere in the clause, leading it, or ending it."""

    cues: list[str] = []
    leading: list[str] = []
    fillers: list[str] = []
    final: list[str] = []
    exceptions: list[str] = []


class TrackerSpec(_Spec):
    """One tracker as written in a dictionary file."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
    category: str
    label: dict[str, str] = {}
    speaker: Literal["any", "rep", "customer"] = "any"
    phrases: dict[str, list[str]]
    exclude: list[str] = []
    negation: NegationSpec = NegationSpec()
    word_check: Literal["auto", "always", "never"] = "auto"

    @field_validator("phrases", mode="before")
    @classmethod
    def _synonym_lists(cls, value: Any) -> Any:
        # ``多少钱:`` with no synonyms reads as null in YAML.
        if isinstance(value, dict):
            return {
                key: ([] if items is None else items) for key, items in value.items()
            }
        return value


class TrackerDictionary(_Spec):
    """A whole dictionary file: categories, cues and trackers."""

    language: str
    categories: dict[str, dict[str, str]] = {}
    negation: NegationSpec = NegationSpec()
    question: QuestionSpec = QuestionSpec()
    trackers: list[TrackerSpec] = []
    _source: str = PrivateAttr(default="<dictionary>")

    @property
    def source(self) -> str:
        """The file (or name) the dictionary was read from, for error messages."""
        return self._source


class _DictionaryLoader(yaml.SafeLoader):
    """SafeLoader that reads every plain scalar as a string (an empty one as null).

    YAML 1.1 turns a bare ``no``, ``yes``, ``on`` or ``off`` into a boolean, ``360``
    into a number, ``1:30`` into 90 and ``2024-06-01`` into a date; in lists of
    phrases and cues those are words (a negation cue ``no``, a competitor called
    ``360``), and business users should not have to quote them. Numeric settings
    such as ``window: 6`` still validate: the schema converts the text.
    An empty value stays null so that ``多少钱:`` with no synonyms is allowed.
    """


_DictionaryLoader.yaml_implicit_resolvers = {
    "": [("tag:yaml.org,2002:null", re.compile(r"^$"))]
}


def load_dictionary(
    source: Path | Traversable, *, name: str | None = None
) -> TrackerDictionary:
    """Read and validate one YAML dictionary file.

    Raises:
        TrackerDictionaryInvalid: the file is not YAML or not in the documented shape.
    """
    label = name or source.name
    try:
        text = source.read_text(encoding="utf-8")
        # A SafeLoader subclass: constructs plain data only.
        data = yaml.load(text, Loader=_DictionaryLoader)  # noqa: S506
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise TrackerDictionaryInvalid(
            f"tracker dictionary {label}: cannot be read as UTF-8 YAML ({exc})",
            file=label,
        ) from exc
    return parse_dictionary(data, name=label)


def parse_dictionary(data: Any, *, name: str = "<dictionary>") -> TrackerDictionary:
    """Validate an already-parsed dictionary (a mapping as YAML gives it).

    Raises:
        TrackerDictionaryInvalid: ``data`` is not in the documented shape.
    """
    try:
        dictionary = TrackerDictionary.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = _describe_location(data, first["loc"])
        raise TrackerDictionaryInvalid(
            f"tracker dictionary {name}: {where}: {first['msg']}",
            file=name,
            location=[str(part) for part in first["loc"]],
        ) from exc
    dictionary._source = name
    return dictionary


def _describe_location(data: Any, location: tuple[int | str, ...]) -> str:
    parts = [str(part) for part in location]
    if (
        len(location) >= 2
        and location[0] == "trackers"
        and isinstance(location[1], int)
    ):
        try:
            tracker_id = data["trackers"][location[1]]["id"]
            parts[1] = f"{location[1]} ({tracker_id})"
        except (KeyError, IndexError, TypeError):
            pass
    return "field " + ".".join(parts) if parts else "the file"


def default_dictionaries() -> list[TrackerDictionary]:
    """Load the shipped Chinese and English B2B sales dictionaries."""
    folder = resources.files("waggle.signals") / "dictionaries"
    return [load_dictionary(folder / name) for name in DEFAULT_DICTIONARIES]


@functools.cache
def default_engine() -> TrackerEngine:
    """Return the engine compiled from the shipped dictionaries (built once)."""
    return compile_trackers(default_dictionaries())


# --------------------------------------------------------------------------
# Compilation

# Cue kinds; _tracker_native.c numbers them alike (KIND_EXCLUDE ...).
_EXCLUDE = 1
_NEGATE_BEFORE = 2
_NEGATE_AFTER = 3
_NEGATION_EXCEPTION = 4
_QUESTION = 5
_QUESTION_LEADING = 6
_QUESTION_FINAL = 7
_QUESTION_EXCEPTION = 8


@dataclass(frozen=True, slots=True)
class _Tracker:
    id: str
    category: str
    speaker: Speaker | None


@dataclass(frozen=True, slots=True)
class _PhraseEntry:
    tracker: _Tracker
    phrase: str  # the canonical phrase reported in hits
    word_check: bool


@dataclass(frozen=True, slots=True)
class _CueEntry:
    kind: int
    tracker: _Tracker | None = None  # None: the cue serves every tracker
    window: int = 0


@dataclass(slots=True)
class _Key:
    length: int
    left_boundary: bool
    right_boundary: bool
    extends_word: bool
    phrases: list[_PhraseEntry] = field(default_factory=list)
    cues: list[_CueEntry] = field(default_factory=list)


@dataclass
class _TrackerDraft:
    tracker: _Tracker
    labels: dict[str, str]
    phrase_count: int = 0


def compile_trackers(
    dictionaries: Sequence[TrackerDictionary], *, native: bool | None = None
) -> TrackerEngine:
    """Compile dictionaries into one engine.

    ``native`` picks the matcher: the C one (``True``), the pure-Python one
    (``False``), or by default the C one unless it is not built or
    ``WAGGLE_TRACKERS_NATIVE=0``. Both give the same hits.

    Raises:
        TrackerDictionaryInvalid: a tracker names an undeclared category, a
            tracker id is reused with another category or speaker, or a phrase
            is empty.
        ImportError: ``native=True`` and the extension is not built.
    """
    builder = _Builder()
    for dictionary in dictionaries:
        builder.add_categories(dictionary)
    for dictionary in dictionaries:
        builder.add_dictionary(dictionary)
    return builder.build(native=_wants_native(native))


def _wants_native(native: bool | None) -> bool:
    if native is None:
        if os.environ.get(NATIVE_SWITCH) == "0":
            logger.debug(
                "native tracker matcher switched off", extra={"env": NATIVE_SWITCH}
            )
            return False
        if _tracker_native is None:
            _log_native_missing()
            return False
        return True
    if native and _tracker_native is None:
        raise ImportError(
            f"waggle.signals._tracker_native is not built: {_NATIVE_MISSING}"
        )
    return native


@functools.cache
def _log_native_missing() -> None:
    logger.info(
        "native tracker matcher not built; using the Python matcher",
        extra={"reason": _NATIVE_MISSING},
    )


class _Builder:
    def __init__(self) -> None:
        self.keys: dict[str, _Key] = {}
        self.categories: dict[str, dict[str, str]] = {}
        self.trackers: dict[str, _TrackerDraft] = {}
        self.fillers: set[str] = set()
        self.phrases: set[str] = set()

    def add_categories(self, dictionary: TrackerDictionary) -> None:
        for category, labels in dictionary.categories.items():
            self.categories.setdefault(category, {}).update(labels)

    def add_dictionary(self, dictionary: TrackerDictionary) -> None:
        window = dictionary.negation.window
        window = DEFAULT_NEGATION_WINDOW if window is None else window
        self._add_negation(dictionary.negation, None, window)
        self._add_questions(dictionary.question)
        for spec in dictionary.trackers:
            draft = self._tracker(spec, dictionary.source)
            tracker_window = (
                window if spec.negation.window is None else spec.negation.window
            )
            self._add_negation(spec.negation, draft.tracker, tracker_window)
            for text in spec.exclude:
                self._add(text, _CueEntry(_EXCLUDE, draft.tracker), spec.id)
            self._add_phrases(spec, draft)

    def _tracker(self, spec: TrackerSpec, source: str) -> _TrackerDraft:
        if spec.category not in self.categories:
            raise TrackerDictionaryInvalid(
                f"tracker dictionary {source}: tracker {spec.id} names category "
                f"{spec.category!r}, which is not declared; expected one of "
                f"{sorted(self.categories)}",
                tracker_id=spec.id,
            )
        speaker = None if spec.speaker == "any" else Speaker(spec.speaker)
        draft = self.trackers.get(spec.id)
        if draft is None:
            tracker = _Tracker(spec.id, spec.category, speaker)
            draft = self.trackers[spec.id] = _TrackerDraft(tracker, dict(spec.label))
        elif (draft.tracker.category, draft.tracker.speaker) != (
            spec.category,
            speaker,
        ):
            raise TrackerDictionaryInvalid(
                f"tracker dictionary {source}: tracker {spec.id} has another category "
                "or speaker than the same tracker in another dictionary; expected "
                "them to agree",
                tracker_id=spec.id,
            )
        else:
            draft.labels.update(spec.label)
        return draft

    def _add_phrases(self, spec: TrackerSpec, draft: _TrackerDraft) -> None:
        for canonical, synonyms in spec.phrases.items():
            for text in (canonical, *synonyms):
                word_check = _needs_word_check(text, spec.word_check)
                entry = _PhraseEntry(draft.tracker, canonical.strip(), word_check)
                self.phrases.add(self._add(text, entry, spec.id))
                draft.phrase_count += 1

    def _add_negation(
        self, spec: NegationSpec, tracker: _Tracker | None, window: int
    ) -> None:
        owner = tracker.id if tracker else "negation"
        for text in spec.before:
            self._add(text, _CueEntry(_NEGATE_BEFORE, tracker, window), owner)
        for text in spec.after:
            self._add(text, _CueEntry(_NEGATE_AFTER, tracker, window), owner)
        for text in spec.exceptions:
            self._add(text, _CueEntry(_NEGATION_EXCEPTION, tracker), owner)

    def _add_questions(self, spec: QuestionSpec) -> None:
        for kind, texts in (
            (_QUESTION, spec.cues),
            (_QUESTION_LEADING, spec.leading),
            (_QUESTION_FINAL, spec.final),
            (_QUESTION_EXCEPTION, spec.exceptions),
        ):
            for text in texts:
                self._add(text, _CueEntry(kind), "question")
        self.fillers.update(fold(word).strip() for word in spec.fillers)

    def _add(self, text: str, entry: _PhraseEntry | _CueEntry, owner: str) -> str:
        folded = fold(text).strip()
        extends_word = folded.endswith("*")
        folded = folded.rstrip("*").strip()
        if not folded:
            raise TrackerDictionaryInvalid(
                f"tracker dictionary ({owner}): an empty phrase or cue; expected text",
                tracker_id=owner,
            )
        key = self.keys.get(folded)
        if key is None:
            key = self.keys[folded] = _Key(
                length=len(folded),
                left_boundary=_is_word_char(folded[0]),
                right_boundary=_is_word_char(folded[-1]),
                extends_word=extends_word and _is_word_char(folded[-1]),
            )
        if isinstance(entry, _PhraseEntry):
            key.phrases.append(entry)
        else:
            key.cues.append(entry)
        return folded

    def build(self, *, native: bool) -> TrackerEngine:
        if native:
            phrase_automaton = cue_automaton = None
            native_engine = self._native_engine()
        else:
            # Two automata: most messages hold no phrase, and for them the pass
            # over the phrases alone is all the work; cues are looked for only
            # after a hit.
            phrase_automaton = _automaton(
                (text, key) for text, key in self.keys.items() if key.phrases
            )
            cue_automaton = _automaton(
                (text, key) for text, key in self.keys.items() if key.cues
            )
            native_engine = None
        infos = tuple(
            TrackerInfo(
                draft.tracker.id,
                draft.tracker.category,
                draft.tracker.speaker,
                draft.labels,
                draft.phrase_count,
            )
            for draft in self.trackers.values()
        )
        return TrackerEngine(
            phrase_automaton,
            cue_automaton,
            categories=self.categories,
            trackers=infos,
            fillers=frozenset(self.fillers),
            phrases=tuple(sorted(self.phrases)),
            native=native_engine,
        )

    def _native_engine(self) -> _tracker_native.Engine:
        """Flatten the trackers, keys and entries into the C engine's tables."""
        index = {tracker_id: i for i, tracker_id in enumerate(self.trackers)}
        trackers = [
            (tracker.id, tracker.category, _SPEAKER_CODES[tracker.speaker])
            for tracker in (draft.tracker for draft in self.trackers.values())
        ]
        phrases: list[tuple[int, str, bool]] = []
        cues: list[tuple[int, int, int]] = []
        keys = []
        for text, key in self.keys.items():
            phrase_ids = tuple(range(len(phrases), len(phrases) + len(key.phrases)))
            cue_ids = tuple(range(len(cues), len(cues) + len(key.cues)))
            phrases.extend(
                (index[entry.tracker.id], entry.phrase, entry.word_check)
                for entry in key.phrases
            )
            cues.extend(
                (cue.kind, index[cue.tracker.id] if cue.tracker else -1, cue.window)
                for cue in key.cues
            )
            boundaries = (key.left_boundary, key.right_boundary, key.extends_word)
            keys.append((text, *boundaries, phrase_ids, cue_ids))
        return _tracker_native.Engine(
            keys,
            trackers,
            phrases,
            cues,
            sorted(self.fillers),
            TrackerHit,
            (Speaker.REP, Speaker.CUSTOMER),
            _native_words,
        )


def _automaton(keys: Iterable[tuple[str, _Key]]) -> Any:
    automaton = ahocorasick.Automaton()
    for text, key in keys:
        automaton.add_word(text, key)
    if len(automaton):
        automaton.make_automaton()
    return automaton


def _needs_word_check(text: str, setting: str) -> bool:
    if setting == "never":
        return False
    if setting == "always":
        return bool(_HAN.search(text))
    stripped = text.strip()
    return (
        bool(_ALL_HAN.fullmatch(stripped))
        and len(stripped) <= AUTO_WORD_CHECK_MAX_LENGTH
    )


# --------------------------------------------------------------------------
# Matching


def fold(text: str) -> str:
    """Return ``text`` with full-width ASCII made half-width and lower-cased.

    Offsets are kept: the result has the same length and every character sits
    where it was (a character whose lower case is longer stays as it is).
    """
    lowered = text.lower()
    if text.isascii():
        return lowered
    if len(lowered) != len(text):
        lowered = "".join(c.lower() if len(c.lower()) == 1 else c for c in text)
    # translate() costs more than the whole automaton pass; most text needs none.
    return lowered.translate(_FOLD) if _FOLDABLE.search(lowered) else lowered


def _is_word_char(char: str) -> bool:
    # Latin letters and digits only: a Han character next to an English word
    # is a boundary (可以做POC吗).
    return char < "\u0250" and char.isalnum()


@dataclass(slots=True)
class _PhraseHit:
    start: int
    end: int
    entry: _PhraseEntry


@dataclass(slots=True)
class _CueHit:
    start: int
    end: int
    entry: _CueEntry


class TrackerEngine:
    """Compiled trackers; :meth:`match` is safe to call from many threads."""

    def __init__(
        self,
        phrase_automaton: Any,
        cue_automaton: Any,
        *,
        categories: dict[str, dict[str, str]],
        trackers: tuple[TrackerInfo, ...],
        fillers: frozenset[str],
        phrases: tuple[str, ...],
        native: _tracker_native.Engine | None = None,
    ):
        self._phrases = phrase_automaton
        self._cues = cue_automaton
        self.categories = categories
        self.trackers = trackers
        self.phrases = phrases
        self._fillers = fillers
        self._native = native

    @property
    def is_native(self) -> bool:
        """Whether :meth:`match` runs in C rather than in Python."""
        return self._native is not None

    def match(
        self, text: str, *, speaker: Speaker | str | None = None
    ) -> list[TrackerHit]:
        """Return the tracker hits in ``text``, ordered by position.

        Raises:
            InvalidInput: ``speaker`` is not ``rep``, ``customer`` or ``None``.
        """
        who = _SPEAKERS[speaker] if speaker in _SPEAKERS else _speaker(speaker)
        if self._native is not None:
            return self._native.match(text, who)
        folded = fold(text)
        phrases = self._phrase_hits(folded, who)
        if not phrases:
            return []
        cues = [
            _CueHit(start, end, cue)
            for start, end, key in _found(self._cues, folded)
            for cue in key.cues
        ]
        return _Resolver(text, folded, cues, self._fillers).resolve(phrases)

    def _phrase_hits(self, folded: str, who: Speaker | None) -> list[_PhraseHit]:
        return [
            _PhraseHit(start, end, entry)
            for start, end, key in _found(self._phrases, folded)
            for entry in key.phrases
            if who is None or entry.tracker.speaker in (None, who)
        ]

    def warm_up(self) -> None:
        """Load jieba's dictionary now rather than on the first Chinese hit."""
        if self._native is not None:
            _native_words()
        else:
            _segmenter()


def _found(automaton: Any, folded: str) -> list[tuple[int, int, _Key]]:
    """Return (start, end, key) of each match that sits on its word boundaries.

    A list, not a generator: this runs for every message, most of which
    match nothing.
    """
    if automaton.kind != ahocorasick.AHOCORASICK:
        return []
    found: list[tuple[int, int, _Key]] = []
    length = len(folded)
    for last, key in automaton.iter(folded):
        start = last + 1 - key.length
        end = last + 1
        if key.left_boundary and start and _is_word_char(folded[start - 1]):
            continue
        if key.extends_word:
            while end < length and _is_word_char(folded[end]):
                end += 1
        elif key.right_boundary and end < length and _is_word_char(folded[end]):
            continue
        found.append((start, end, key))
    return found


_SPEAKER_CODES = {None: 0, Speaker.REP: 1, Speaker.CUSTOMER: 2}
_SPEAKERS: dict[Speaker | str | None, Speaker | None] = {
    None: None,
    **{value: Speaker(value) for value in Speaker},
    **{member: member for member in Speaker},
}


def _speaker(speaker: Speaker | str | None) -> Speaker | None:
    if speaker is None or isinstance(speaker, Speaker):
        return speaker
    try:
        return Speaker(speaker)
    except ValueError:
        raise InvalidInput(
            f"tracker match: speaker {speaker!r} is unknown; expected 'rep', "
            "'customer' or none",
            code="invalid_speaker",
        ) from None


class _Resolver:
    """The per-message work done only when some phrase was found."""

    def __init__(
        self, text: str, folded: str, cues: list[_CueHit], fillers: frozenset[str]
    ):
        self.text = text
        self.folded = folded
        self.fillers = fillers
        self.breaks = [match.span() for match in _CLAUSE_BREAK.finditer(folded)]
        self.break_starts = [start for start, _ in self.breaks]
        self.sentences = [match.span() for match in _SENTENCE_BREAK.finditer(folded)]
        self.sentence_starts = [start for start, _ in self.sentences]
        self.questions_by_sentence: dict[int, bool] = {}
        by_kind: dict[int, list[_CueHit]] = {}
        for cue in cues:
            by_kind.setdefault(cue.entry.kind, []).append(cue)
        self.exclusions = by_kind.get(_EXCLUDE, [])
        negation_exceptions = by_kind.get(_NEGATION_EXCEPTION, [])
        question_exceptions = by_kind.get(_QUESTION_EXCEPTION, [])
        self.before = _uncovered(by_kind.get(_NEGATE_BEFORE, []), negation_exceptions)
        self.after = _uncovered(by_kind.get(_NEGATE_AFTER, []), negation_exceptions)
        self.questions = _uncovered(by_kind.get(_QUESTION, []), question_exceptions)
        self.leading = by_kind.get(_QUESTION_LEADING, [])
        self.final = by_kind.get(_QUESTION_FINAL, [])

    def resolve(self, phrases: list[_PhraseHit]) -> list[TrackerHit]:
        kept = _longest_per_tracker([found for found in phrases if self._stands(found)])
        return [self._hit(found) for found in kept]

    def _stands(self, found: _PhraseHit) -> bool:
        tracker = found.entry.tracker
        for exclusion in self.exclusions:
            if (
                exclusion.entry.tracker is tracker
                and exclusion.start <= found.start
                and found.end <= exclusion.end
            ):
                return False
        if found.entry.word_check:
            clause_start, clause_end, _ = self._clause(found.start)
            return not _segmenter().splits_word(
                self.folded, found.start, found.end, clause_start, clause_end
            )
        return True

    def _hit(self, found: _PhraseHit) -> TrackerHit:
        entry = found.entry
        tracker = entry.tracker
        clause_start, clause_end, _ = self._clause(found.start)
        return TrackerHit(
            tracker_id=tracker.id,
            category=tracker.category,
            phrase=entry.phrase,
            matched=self.text[found.start : found.end],
            start=found.start,
            end=found.end,
            is_negated=self._is_negated(found, clause_start, clause_end),
            is_question=self._is_question(found.start),
        )

    def _clause(self, position: int) -> tuple[int, int, str]:
        index = bisect.bisect_right(self.break_starts, position)
        start = self.breaks[index - 1][1] if index else 0
        if index < len(self.breaks):
            end, terminator_end = self.breaks[index]
            return start, end, self.folded[end:terminator_end]
        return start, len(self.folded), ""

    def _is_negated(
        self, found: _PhraseHit, clause_start: int, clause_end: int
    ) -> bool:
        tracker = found.entry.tracker
        for cue in self.before:
            if (
                clause_start <= cue.start
                and cue.end <= found.start
                and cue.entry.tracker in (None, tracker)
                and _distance(self.folded[cue.end : found.start]) <= cue.entry.window
            ):
                return True
        for cue in self.after:
            if (
                found.end <= cue.start
                and cue.end <= clause_end
                and cue.entry.tracker in (None, tracker)
                and _distance(self.folded[found.end : cue.start]) <= cue.entry.window
            ):
                return True
        return False

    def _sentence(self, position: int) -> tuple[int, int, str]:
        index = bisect.bisect_right(self.sentence_starts, position)
        start = self.sentences[index - 1][1] if index else 0
        if index < len(self.sentences):
            end, terminator_end = self.sentences[index]
            return start, end, self.folded[end:terminator_end]
        return start, len(self.folded), ""

    def _is_question(self, position: int) -> bool:
        start, end, terminator = self._sentence(position)
        known = self.questions_by_sentence.get(start)
        if known is None:
            known = self._asks(start, end, terminator)
            self.questions_by_sentence[start] = known
        return known

    def _asks(self, start: int, end: int, terminator: str) -> bool:
        if "?" in terminator:
            return True
        if any(start <= cue.start and cue.end <= end for cue in self.questions):
            return True
        if _A_NOT_A.search(self.folded, start, end):
            return True
        for cue in self.leading:
            if start <= cue.start < end:
                clause_start, _, _ = self._clause(cue.start)
                if self._only_fillers(self.folded[clause_start : cue.start]):
                    return True
        for cue in self.final:
            if start <= cue.start and cue.end <= end:
                _, clause_end, _ = self._clause(cue.start)
                if not self.folded[cue.end : clause_end].strip():
                    return True
        return False

    def _only_fillers(self, prefix: str) -> bool:
        return all(
            word in self.fillers for word in _LATIN_WORD.findall(prefix)
        ) and not _HAN.search(prefix)


def _uncovered(cues: list[_CueHit], exceptions: list[_CueHit]) -> list[_CueHit]:
    if not exceptions:
        return cues
    return [
        cue
        for cue in cues
        if not any(
            exception.start <= cue.start
            and cue.end <= exception.end
            and exception.entry.tracker in (None, cue.entry.tracker)
            for exception in exceptions
        )
    ]


def _longest_per_tracker(found: list[_PhraseHit]) -> list[_PhraseHit]:
    # Leftmost-longest within a tracker: 报价单 and 报价 in one place are one hit.
    found.sort(key=lambda item: (item.start, item.start - item.end))
    kept: list[_PhraseHit] = []
    reach: dict[str, int] = {}
    for item in found:
        tracker_id = item.entry.tracker.id
        if item.start < reach.get(tracker_id, -1):
            continue
        kept.append(item)
        reach[tracker_id] = item.end
    return kept


def _distance(gap: str) -> int:
    return len(_GAP_UNITS.findall(gap))


# --------------------------------------------------------------------------
# jieba, loaded once, lazily and quietly


class _Segmenter:
    """jieba without HMM, plus the dictionary look-up that usually avoids it."""

    def __init__(self, tokenizer: Any):
        self._tokenizer = tokenizer
        self._frequencies: dict[str, int] = tokenizer.FREQ
        self._native_index: _tracker_native.WordIndex | None = None
        self._native_lock = threading.Lock()
        # The longest dictionary word ending (starting) with each character
        # bounds how far before (after) a hit a crossing word can begin (end).
        self._longest_ending: dict[str, int] = {}
        self._longest_starting: dict[str, int] = {}
        for word, count in self._frequencies.items():
            if count and len(word) > 1:
                size = len(word)
                if size > self._longest_ending.get(word[-1], 0):
                    self._longest_ending[word[-1]] = size
                if size > self._longest_starting.get(word[0], 0):
                    self._longest_starting[word[0]] = size

    def splits_word(
        self, text: str, start: int, end: int, clause_start: int, clause_end: int
    ) -> bool:
        """Whether jieba segments a word across the start or the end of a hit."""
        if not self._could_cross(text, start, end, clause_start, clause_end):
            return False
        return self.cuts_across(text, start, end, clause_start, clause_end)

    def cuts_across(
        self, text: str, start: int, end: int, clause_start: int, clause_end: int
    ) -> bool:
        """Whether jieba's cut of the clause puts a word across an edge of the hit."""
        position = clause_start
        for word in self._tokenizer.cut(text[clause_start:clause_end], HMM=False):
            word_start, position = position, position + len(word)
            if (
                word_start < start < position < end
                or start < word_start < end < position
            ):
                return True
        return False

    def _could_cross(
        self, text: str, start: int, end: int, clause_start: int, clause_end: int
    ) -> bool:
        frequencies = self._frequencies
        for inner in range(start + 1, end):
            reach = self._longest_ending.get(text[inner - 1], 0)
            for outer in range(max(clause_start, inner - reach), start):
                if frequencies.get(text[outer:inner]):
                    return True
            reach = self._longest_starting.get(text[inner], 0)
            for outer in range(end + 1, min(clause_end, inner + reach) + 1):
                if frequencies.get(text[inner:outer]):
                    return True
        return False

    def native_index(self) -> _tracker_native.WordIndex:
        """jieba's dictionary for the C matcher, copied on first use (~20 MB)."""
        if self._native_index is None:
            with self._native_lock:
                if self._native_index is None:
                    self._native_index = _tracker_native.WordIndex(
                        self._frequencies, self._tokenizer.total
                    )
        return self._native_index


_SEGMENTER: _Segmenter | None = None
_SEGMENTER_LOCK = threading.Lock()


def _segmenter() -> _Segmenter:
    global _SEGMENTER
    if _SEGMENTER is None:
        with _SEGMENTER_LOCK:
            if _SEGMENTER is None:
                _SEGMENTER = _Segmenter(_load_jieba())
    return _SEGMENTER


def _native_words() -> _tracker_native.WordIndex:
    return _segmenter().native_index()


def _load_jieba() -> Any:
    """Build a private jieba tokenizer from the dictionary inside the package.

    jieba logs its progress to stderr at DEBUG through its own handler; that
    logger is silenced for the duration and restored. The prefix-dictionary
    cache goes to a directory only this user can write, never the shared /tmp.
    """
    import jieba  # type: ignore[import-untyped]  # ships no type stubs

    jieba_logger = logging.getLogger("jieba")
    previous = jieba_logger.level
    jieba_logger.setLevel(logging.CRITICAL + 1)
    try:
        tokenizer = jieba.Tokenizer()
        tokenizer.tmp_dir = str(_private_cache_dir())
        tokenizer.initialize()
    finally:
        jieba_logger.setLevel(previous)
    logger.debug("jieba dictionary loaded", extra={"words": len(tokenizer.FREQ)})
    return tokenizer


def _private_cache_dir() -> Path:
    path = Path(tempfile.gettempdir()) / f"waggle-jieba-{os.getuid()}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        info = path.lstat()
        if (
            stat.S_ISDIR(info.st_mode)
            and info.st_uid == os.getuid()
            and not info.st_mode & 0o077
        ):
            return path
    except OSError:
        pass
    return Path(tempfile.mkdtemp(prefix="waggle-jieba-"))
