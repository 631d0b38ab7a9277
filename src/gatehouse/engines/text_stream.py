"""Turn generated token bytes into text that is safe to send: whole UTF-8 characters only,
and nothing that might turn out to be the start of a stop sequence."""

from __future__ import annotations

import codecs
from collections.abc import Sequence


class TextStream:
    def __init__(self, stop: Sequence[str] = ()) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stop = tuple(s for s in stop if s)
        self._text = ""
        self._sent = 0
        self.stopped = False

    @property
    def text(self) -> str:
        return self._text

    def feed(self, piece: bytes) -> str:
        """Add a token's bytes; return the text that can be sent now."""
        if self.stopped:
            return ""
        self._text += self._decoder.decode(piece)
        if self._stop:
            window = max(len(s) for s in self._stop)
            start = max(0, self._sent - window + 1)
            hits = [i for i in (self._text.find(s, start) for s in self._stop) if i != -1]
            if hits:
                cut = min(hits)
                self._text = self._text[:cut]
                self.stopped = True
                return self._release(cut)
            return self._release(len(self._text) - self._held_back())
        return self._release(len(self._text))

    def finish(self) -> str:
        """The end of generation: release whatever was held back."""
        if not self.stopped:
            self._text += self._decoder.decode(b"", final=True)
        return self._release(len(self._text))

    def _held_back(self) -> int:
        """Length of the longest tail of the text that begins some stop sequence."""
        longest = 0
        for stop in self._stop:
            for size in range(min(len(stop) - 1, len(self._text)), longest, -1):
                if self._text.endswith(stop[:size]):
                    longest = size
                    break
        return longest

    def _release(self, upto: int) -> str:
        if upto <= self._sent:
            return ""
        out = self._text[self._sent:upto]
        self._sent = upto
        return out
