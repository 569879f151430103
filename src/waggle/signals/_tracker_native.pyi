"""Native hot path of :meth:`waggle.signals.trackers.TrackerEngine.match`."""

from collections.abc import Callable, Iterable, Sequence

from waggle.signals.trackers import Speaker, TrackerHit

class WordIndex:
    """jieba's dictionary, for the word check of short Chinese phrases."""

    def __new__(cls, frequencies: dict[str, int], total: int, /) -> WordIndex: ...
    def splits_word(
        self, text: str, start: int, end: int, clause_start: int, clause_end: int, /
    ) -> bool: ...
    def cut(self, text: str, /) -> list[str]: ...

class Engine:
    """Compiled trackers: the native ``TrackerEngine.match``."""

    def __new__(
        cls,
        keys: Sequence[tuple[str, bool, bool, bool, Sequence[int], Sequence[int]]],
        trackers: Sequence[tuple[str, str, int]],
        phrases: Sequence[tuple[int, str, bool]],
        cues: Sequence[tuple[int, int, int]],
        fillers: Iterable[str],
        hit_type: type[TrackerHit],
        speakers: tuple[Speaker, Speaker],
        words: Callable[[], WordIndex],
        /,
    ) -> Engine: ...
    def match(self, text: str, speaker: Speaker | None, /) -> list[TrackerHit]: ...

def fold(text: str, /) -> str: ...
