"""The native tracker matcher: the same hits as the pure-Python reference, always.

``_tracker_native.c`` repeats ``TrackerEngine.match`` (folding, the automaton
pass, word boundaries, exclusions, negation, questions, clause and sentence
breaks, speakers, the longest hit per tracker) and jieba's cut without HMM.
These tests compare it with the Python code on the labelled set and on
generated text, and check that the extension is really the one in use here.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from waggle.signals import _tracker_native, trackers
from waggle.signals.trackers import (
    NATIVE_SWITCH,
    Speaker,
    TrackerEngine,
    TrackerHit,
    compile_trackers,
    default_dictionaries,
    default_engine,
    fold,
)

HERE = Path(__file__).resolve().parent
SPEAKERS = (None, "rep", "customer")


@pytest.fixture(scope="module")
def native() -> TrackerEngine:
    return compile_trackers(default_dictionaries(), native=True)


@pytest.fixture(scope="module")
def python() -> TrackerEngine:
    return compile_trackers(default_dictionaries(), native=False)


def labelled_messages() -> list[dict[str, Any]]:
    text = (HERE / "labelled_messages.yaml").read_text(encoding="utf-8")
    messages: list[dict[str, Any]] = yaml.safe_load(text)["messages"]
    return messages


def every_match(engine: TrackerEngine, texts: list[str]) -> list[list[TrackerHit]]:
    return [
        engine.match(text, speaker=speaker) for text in texts for speaker in SPEAKERS
    ]


# ------------------------------------------------------------ loaded here


def test_the_extension_is_built_and_used_by_default(monkeypatch):
    """Here the C matcher is built, and compile_trackers picks it by default."""
    monkeypatch.delenv(NATIVE_SWITCH, raising=False)

    engine = compile_trackers(default_dictionaries())

    assert engine.is_native
    assert default_engine().is_native
    assert Path(_tracker_native.__file__).suffix in {".so", ".pyd"}


def test_the_switch_forces_the_python_matcher(monkeypatch, native):
    """WAGGLE_TRACKERS_NATIVE=0 compiles the Python matcher, with the same hits."""
    monkeypatch.setenv(NATIVE_SWITCH, "0")
    texts = [message["text"] for message in labelled_messages()[:50]]

    engine = compile_trackers(default_dictionaries())

    assert not engine.is_native
    assert every_match(engine, texts) == every_match(native, texts)


MISSING_EXTENSION = """
import logging, sys
sys.modules["waggle.signals._tracker_native"] = None  # the import now fails
logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                    format="LOG %(name)s %(levelname)s: %(message)s")
from waggle.signals import trackers
engines = [trackers.compile_trackers(trackers.default_dictionaries()) for _ in "ab"]
print([engine.is_native for engine in engines])
print([(hit.tracker_id, hit.is_question) for hit in engines[0].match("能报个价吗")])
try:
    trackers.compile_trackers(trackers.default_dictionaries(), native=True)
except ImportError:
    print("native=True refused")
"""


def test_a_missing_extension_falls_back_to_python_with_one_info_line():
    """Without the extension engines use Python, saying so once at INFO."""
    environment = {
        key: value for key, value in os.environ.items() if key != NATIVE_SWITCH
    }

    run = subprocess.run(
        [sys.executable, "-c", MISSING_EXTENSION],
        capture_output=True,
        text=True,
        check=True,
        env=environment,
    )

    lines = [
        line
        for line in run.stdout.splitlines()
        if not line.startswith("LOG ")
        or line.startswith("LOG waggle.signals.trackers ")
    ]
    assert lines == [
        "LOG waggle.signals.trackers INFO: native tracker matcher not built; "
        "using the Python matcher",
        "[False, False]",
        "[('pricing.quote', True)]",
        "native=True refused",
    ]


# ------------------------------------------------------------- agreement


def test_both_matchers_agree_on_every_labelled_message(native, python):
    """Every labelled message, as its speaker, rep, customer and unknown."""
    messages = labelled_messages()
    cases = [
        (message["text"], speaker)
        for message in messages
        for speaker in {message["speaker"], *SPEAKERS}
    ]

    found = [native.match(text, speaker=speaker) for text, speaker in cases]
    expected = [python.match(text, speaker=speaker) for text, speaker in cases]

    assert sum(map(len, expected)) > 400
    assert found == expected


def _dictionary_words() -> dict[str, list[str]]:
    """The shipped dictionaries' phrases, cues, fillers and exclusions, by role."""
    words: dict[str, set[str]] = {
        role: set() for role in ("phrase", "before", "after", "cue", "other")
    }
    for dictionary in default_dictionaries():
        for spec in (dictionary.negation, *(t.negation for t in dictionary.trackers)):
            words["before"].update(spec.before)
            words["after"].update(spec.after)
            words["other"].update(spec.exceptions)
        question = dictionary.question
        words["cue"].update(question.cues, question.leading, question.final)
        words["other"].update(question.fillers, question.exceptions)
        for tracker in dictionary.trackers:
            words["other"].update(tracker.exclude)
            for canonical, synonyms in tracker.phrases.items():
                words["phrase"].update([canonical, *synonyms])
    return {role: sorted(w.rstrip("*") for w in texts) for role, texts in words.items()}


WORDS = _dictionary_words()
PUNCTUATION = [*"，。！？,.?!…~～、；;:： \n\r\t\u3000’'-", "...", "\r\n", "｡", "  "]
FULL_WIDTH = [chr(code) for code in range(0xFF01, 0xFF5F)]
ODD_CASES = ["Σ", "ΟΔΟΣ", "İ", "ß", "ﬁ", "Ａ", "é", "ǅ", "ɐ", "Ⅻ", "²", "٣"]
GAPS = ["", " ", "我们", "the", "a ", "先", "1", "，"]
COMMON_HAN = (
    "的一是在了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发"
    "年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如"
    "水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然"
    "前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但"
    "质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题程展五果"
)


def _shouted(word: str) -> str:
    return word.upper()


def _full_width(word: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in word)


word = st.sampled_from(sorted({w for texts in WORDS.values() for w in texts}))
phrase = st.sampled_from(WORDS["phrase"])
# Cue, gap, phrase (and the reverse): negation needs them close, in one clause.
negated = st.one_of(
    st.tuples(st.sampled_from(WORDS["before"]), st.sampled_from(GAPS), phrase),
    st.tuples(phrase, st.sampled_from(GAPS), st.sampled_from(WORDS["after"])),
    st.tuples(st.sampled_from(WORDS["cue"]), st.sampled_from(GAPS), phrase),
).map("".join)
# Common characters around a phrase: jieba words that may straddle its edges.
neighbour = st.text(alphabet=COMMON_HAN, min_size=1, max_size=2)
surrounded = st.tuples(neighbour, phrase, neighbour).map("".join)
fragment = st.one_of(
    word,
    word.map(_shouted),
    word.map(_full_width),
    negated,
    surrounded,
    st.sampled_from(["情报价值", "尝试用", "我尝试用了一下", "劳动合同", "领导力"]),
    st.sampled_from(PUNCTUATION),
    st.sampled_from(FULL_WIDTH),
    st.sampled_from(ODD_CASES),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzQXZ'", min_size=1, max_size=7),
    st.text(alphabet="0123456789", min_size=1, max_size=4),
    st.text(
        alphabet=st.characters(min_codepoint=0x3400, max_codepoint=0x9FFF),
        min_size=1,
        max_size=3,
    ),
    st.sampled_from(["不", "没", "是不是", "有没有", "好不好", "呢", "吗"]),
)
messages = st.lists(fragment, max_size=14).map("".join)


@settings(max_examples=600, deadline=None)
@given(messages, st.sampled_from(SPEAKERS))
def test_both_matchers_agree_on_generated_messages(native, python, text, speaker):
    """Phrases, cues, fillers, punctuation and odd characters: the same hits."""
    found = native.match(text, speaker=speaker)

    expected = python.match(text, speaker=speaker)

    assert found == expected


CUSTOM = """\
language: mixed
categories:
  a: {en: A}
  b: {en: B}
negation:
  window: 0
  before: [no, 不]
  after: [免了]
  exceptions: [no way]
question:
  cues: [吗]
  leading: [can, "is it"]
  fillers: [so, hey]
  final: [呢, "eh"]
  exceptions: [吗啡]
trackers:
  - id: a.one
    category: a
    speaker: rep
    word_check: always
    phrases:
      "价格表": [价, "pr*", "c++", "x y"]
    exclude: [价值, "pro"]
    negation: {window: 2, before: [别], after: [no thanks], exceptions: [别急]}
  - id: a.two
    category: a
    speaker: customer
    word_check: never
    phrases:
      价: [价格, "price list"]
  - id: b.one
    category: b
    phrases:
      "...": [",", 。价, "Ｘ"]
"""


@pytest.fixture(scope="module")
def custom(tmp_path_factory) -> tuple[TrackerEngine, TrackerEngine]:
    path = tmp_path_factory.mktemp("custom") / "custom.yaml"
    path.write_text(CUSTOM, encoding="utf-8")
    dictionary = trackers.load_dictionary(path)
    return tuple(compile_trackers([dictionary], native=flag) for flag in (True, False))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(
                [
                    "价",
                    "价格",
                    "格表",
                    "值",
                    "pr",
                    "pro",
                    "c++",
                    "x y",
                    "...",
                    ",",
                    "。",
                    "no",
                    "no way",
                    "不",
                    "别",
                    "别急",
                    "免了",
                    "no thanks",
                    "吗",
                    "吗啡",
                    "can",
                    "is it",
                    "so",
                    "hey",
                    "呢",
                    "eh",
                    "ｘ",
                    "X",
                    " ",
                    "?",
                    "\n",
                    "price list",
                    "定价",
                    "，",
                ]
            ),
            fragment,
        ),
        max_size=12,
    ).map("".join),
    st.sampled_from(SPEAKERS),
)
def test_both_matchers_agree_on_a_custom_dictionary(custom, text, speaker):
    """Zero windows, always-checked phrases, odd keys and speakers: the same hits."""
    native, python = custom

    found = native.match(text, speaker=speaker)

    assert found == python.match(text, speaker=speaker)


def test_an_engine_without_keys_finds_nothing():
    """A dictionary with no trackers compiles to an engine that matches nothing."""
    empty = trackers.parse_dictionary({"language": "en"}, name="empty")

    engine = compile_trackers([empty], native=True)

    assert engine.match("price?") == []


# ---------------------------------------------------------------- pieces


def test_fold_agrees_on_every_code_point():
    """Each code point, in runs of 64 neighbours, folds as trackers.fold does."""
    blocks = [
        "".join(map(chr, range(start, min(start + 64, 0x110000))))
        for start in range(0, 0x110000, 64)
    ]

    folded = [_tracker_native.fold(block) for block in blocks]

    assert folded == [fold(block) for block in blocks]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from([*ODD_CASES, "a", "A", " ", "'", "̀", "."])).map("".join)
)
def test_fold_agrees_on_sigma_and_long_lower_cases(text):
    """Final sigma and İ (whose lower case is two characters) fold the same."""
    assert _tracker_native.fold(text) == fold(text)


@pytest.fixture(scope="module")
def segmenter() -> Any:
    return trackers._segmenter()


jieba_text = st.lists(
    st.one_of(
        fragment,
        st.sampled_from(["情报价值", "尝试用", "报价单", "c++", "a.b", "100%", "x-y"]),
    ),
    max_size=10,
).map(lambda parts: fold("".join(parts)))


@settings(max_examples=400, deadline=None)
@given(jieba_text)
def test_native_cut_agrees_with_jieba(segmenter, text):
    """The C cut gives jieba's words (no HMM) for any folded text."""
    words = segmenter.native_index().cut(text)

    assert words == list(segmenter._tokenizer.cut(text, HMM=False))


def test_native_cut_agrees_with_jieba_on_the_labelled_set(segmenter):
    """Every labelled message, folded, is cut into jieba's words."""
    texts = [fold(message["text"]) for message in labelled_messages()]

    words = [segmenter.native_index().cut(text) for text in texts]

    assert words == [list(segmenter._tokenizer.cut(text, HMM=False)) for text in texts]


@settings(max_examples=400, deadline=None)
@given(jieba_text, st.data())
def test_native_word_check_agrees_with_the_segmenter(segmenter, text, data):
    """splits_word gives the Python answer for any span of any clause."""
    clause_start = data.draw(st.integers(0, len(text)))
    clause_end = data.draw(st.integers(clause_start, len(text)))
    start = data.draw(st.integers(clause_start, clause_end))
    end = data.draw(st.integers(start, clause_end))
    arguments = (text, start, end, clause_start, clause_end)

    found = segmenter.native_index().splits_word(*arguments)

    assert found == segmenter.splits_word(*arguments)


# ------------------------------------------------------------------ hits


def test_native_hits_are_ordinary_tracker_hits(native, python):
    """Native hits are frozen TrackerHit dataclasses equal to the Python ones."""
    text = "不需要试用，但是请报个价？"

    hits = native.match(text)

    assert hits == python.match(text)
    assert {hash(hit) for hit in hits} == {hash(hit) for hit in python.match(text)}
    assert all(type(hit) is TrackerHit for hit in hits)
    assert dataclasses.asdict(hits[0])["tracker_id"] == "trial.request"
    assert dataclasses.replace(hits[0], start=1).start == 1
    assert repr(hits[1]).startswith("TrackerHit(tracker_id='pricing.quote'")
    with pytest.raises(dataclasses.FrozenInstanceError):
        hits[0].start = 3  # type: ignore[misc]


@dataclasses.dataclass(frozen=True, slots=True)
class _CheckedHit:
    tracker_id: str
    category: str
    phrase: str
    matched: str
    start: int
    end: int
    is_negated: bool
    is_question: bool

    def __post_init__(self) -> None:
        raise AssertionError("never built without its checks")


def test_the_engine_refuses_a_hit_type_whose_init_it_would_skip():
    """A hit class with a __post_init__ (or other fields) is refused at compile."""
    speakers = (Speaker.REP, Speaker.CUSTOMER)

    with pytest.raises(TypeError, match="eight-field TrackerHit"):
        _tracker_native.Engine([], [], [], [], [], _CheckedHit, speakers, list)


def test_speakers_are_resolved_before_the_native_call(native):
    """Speaker members, their values and None work; other values are refused."""
    text = "报价已发"

    by_value = native.match(text, speaker="rep")
    by_member = native.match(text, speaker=Speaker.REP)

    assert by_value == by_member
    assert {hit.tracker_id for hit in by_value} == {
        "pricing.quote_sent",
        "pricing.quote",
    }
    with pytest.raises(trackers.InvalidInput):
        native.match(text, speaker="boss")


def test_long_messages_use_heap_buffers_and_agree(native, python):
    """A message far past the stack buffers (chars, hits, breaks) still agrees."""
    text = "请问报价多少？我们不需要试用。Could you send the quote, please?\n" * 80

    found = native.match(text, speaker="customer")

    assert len(found) > 100
    assert found == python.match(text, speaker="customer")


def test_one_engine_serves_many_threads(native):
    """Four threads matching the labelled set at once get the sequential hits."""
    texts = [message["text"] for message in labelled_messages()]
    expected = every_match(native, texts)
    results: list[list[list[TrackerHit]]] = []

    def work() -> None:
        results.append(every_match(native, texts))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results == [expected] * 4
