"""Terminal output of the demo: a live frame redrawn in place on a terminal, plain lines
otherwise (CI logs, pipes), and the final summary tables."""

from __future__ import annotations

import math
import shutil
import sys
import time


class Palette:
    """ANSI styles, or nothing with `--no-color` / a non-terminal."""

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def _wrap(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.enabled else text

    def bold(self, text):
        return self._wrap("1", text)

    def dim(self, text):
        return self._wrap("2", text)

    def red(self, text):
        return self._wrap("31", text)

    def green(self, text):
        return self._wrap("32", text)

    def yellow(self, text):
        return self._wrap("33", text)

    def cyan(self, text):
        return self._wrap("36", text)


def _unicode_ok(stream) -> bool:
    return "utf" in (getattr(stream, "encoding", "") or "").lower()


def thousands(n: float) -> str:
    return f"{int(n):,}"


def ms(seconds: float) -> str:
    """Milliseconds, or a dash when there was nothing to measure (NaN)."""
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.1f} ms"


class Terminal:
    """Writes the live frame (in place when interactive) and event lines."""

    EVENT_LINES = 6

    def __init__(self, stream=sys.stdout, color: bool = True):
        self.stream = stream
        self.interactive = stream.isatty()
        self.palette = Palette(color and self.interactive)
        self.full, self.empty = ("█", "░") if _unicode_ok(stream) else ("#", ".")
        self._frame_height = 0
        self._events: list[str] = []
        self._started = time.monotonic()
        self._last_plain = 0.0

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def say(self, text: str):
        """A line outside the live frame (startup, summary)."""
        self.stream.write(text + "\n")
        self.stream.flush()

    def event(self, text: str):
        """Something that happened during the run; kept in the frame's event list."""
        line = f"[{self.elapsed():6.1f} s] {text}"
        if self.interactive:
            self._events.append(line)
            del self._events[: -self.EVENT_LINES]
        else:
            self.say(line)

    def bar_width(self) -> int:
        columns = shutil.get_terminal_size((100, 24)).columns
        # The other columns of a node row take 64 characters.
        return max(6, min(40, columns - 66))

    def bar(self, fraction: float, width: int, paint) -> str:
        filled = int(round(max(0.0, min(1.0, fraction)) * width))
        return paint(self.full * filled) + self.palette.dim(self.empty * (width - filled))

    def frame(self, lines: list[str], plain_summary: str | None = None):
        """Redraw the live frame in place; without a terminal print `plain_summary` every 5 s."""
        if not self.interactive:
            now = time.monotonic()
            if plain_summary and now - self._last_plain >= 5.0:
                self._last_plain = now
                self.say(f"[{self.elapsed():6.1f} s] {plain_summary}")
            return
        body = lines + [""] + [self.palette.dim(e) for e in self._events]
        body += [""] * (self.EVENT_LINES - len(self._events))
        # Auto-wrap off while drawing: a line wider than the terminal is clipped instead of
        # wrapping onto a second row, which would break the cursor-up count of the next redraw.
        out = ["\x1b[?7l"]
        if self._frame_height:
            out.append(f"\x1b[{self._frame_height}F")
        else:
            out.append("\x1b[?25l")  # hide the cursor while redrawing
        for line in body:
            out.append("\x1b[2K" + line + "\n")
        out.append("\x1b[?7h")
        self._frame_height = len(body)
        self.stream.write("".join(out))
        self.stream.flush()

    def close_frame(self):
        """Leave the last frame on screen and give the cursor back."""
        if self.interactive:
            self.stream.write("\x1b[?7h\x1b[?25h")
            self.stream.flush()
        self._frame_height = 0


def table(headers: list[str], rows: list[list[str]], align: str) -> list[str]:
    """A plain text table; `align` has one `l` or `r` per column."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def fmt(cells):
        parts = [c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(cells, widths, align, strict=True)]
        return "  " + "  ".join(parts).rstrip()

    rule = "  " + "  ".join("-" * w for w in widths)
    return [fmt(headers), rule] + [fmt(r) for r in rows]
