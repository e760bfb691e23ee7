"""A small, fast renderer of metric families to the Prometheus text and OpenMetrics formats.

Why not ``prometheus_client.generate_latest``: the exporter renders its whole exposition once
per poll and serves those bytes to every scrape, so rendering speed matters only a little, but
``generate_latest`` walks generic objects per sample and re-escapes every label on every call;
here label sets are escaped once when a family is built and joined with plain string
operations (see ``bench/`` for the comparison). The output is checked against
prometheus-client's own parsers and ``promtool check metrics`` in the tests.

>>> family = Family("demo_jobs", "counter", "Jobs seen.", ("status",))
>>> family.add(("ok",), 3, exemplar=(("sync_job_id", "sync_1"), 1.0, 1700000000.5))
>>> print(render([family], openmetrics=False).decode(), end="")
# HELP demo_jobs_total Jobs seen.
# TYPE demo_jobs_total counter
demo_jobs_total{status="ok"} 3
>>> print(render([family], openmetrics=True).decode(), end="")
# HELP demo_jobs Jobs seen.
# TYPE demo_jobs counter
demo_jobs_total{status="ok"} 3 # {sync_job_id="sync_1"} 1.0 1700000000.5
# EOF
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "CONTENT_TYPE_OPENMETRICS",
    "CONTENT_TYPE_TEXT",
    "Family",
    "GzipPrefix",
    "Snapshot",
    "escape_label",
    "render",
]

CONTENT_TYPE_TEXT = "text/plain; version=0.0.4; charset=utf-8"
CONTENT_TYPE_OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"

FamilyType = Literal["counter", "gauge", "histogram", "info"]
Exemplar = tuple[tuple[str, str], float, float]
"""((label name, label value), value, timestamp in seconds)."""


def escape_label(value: str) -> str:
    """Escape a label value: backslash, double quote and newline."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


_PIECES: dict[tuple[str, str], str] = {}
"""Memo of rendered ``name="value"`` pieces: the same few label values recur in every family."""
_PIECES_LIMIT = 200_000


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    """Integers without a decimal point, floats in shortest repr, specials as Prometheus spells."""
    if isinstance(value, int):
        return str(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _format_le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(float(bound))


@dataclass(slots=True)
class Family:
    """One metric family. Samples keep pre-escaped label text so rendering is a join.

    ``name`` is the family name without ``_total`` (counters) or ``_info`` (info metrics).
    """

    name: str
    type: FamilyType
    help: str
    label_names: tuple[str, ...]
    samples: list[tuple[str, str, str, Exemplar | None]] = field(default_factory=list)
    """(suffix, rendered label text ``k="v",…``, rendered value, exemplar)."""

    def _labels(self, values: Sequence[str], extra: str = "") -> str:
        if len(values) != len(self.label_names):
            raise ValueError(f"{self.name}: {len(values)} label values for {self.label_names}")
        pieces = _PIECES
        parts = []
        for key in zip(self.label_names, values):  # noqa: B905 - length checked above
            piece = pieces.get(key)
            if piece is None:
                if len(pieces) > _PIECES_LIMIT:
                    pieces.clear()
                piece = pieces[key] = f'{key[0]}="{escape_label(key[1])}"'
            parts.append(piece)
        text = ",".join(parts)
        if extra:
            text = f"{text},{extra}" if text else extra
        return text

    def add(self, values: Sequence[str], value: float, exemplar: Exemplar | None = None) -> None:
        """Add a counter, gauge or info sample."""
        suffix = {"counter": "_total", "info": "_info"}.get(self.type, "")
        self.samples.append((suffix, self._labels(values), format_value(value), exemplar))

    def add_histogram(
        self,
        values: Sequence[str],
        bounds: Sequence[float],
        bucket_counts: Sequence[int],
        total: float,
    ) -> None:
        """Add one histogram series from per-bucket (non-cumulative) counts; the last is +Inf."""
        cumulative = 0
        for bound, count in zip((*bounds, math.inf), bucket_counts, strict=True):
            cumulative += count
            le = _format_le(bound)
            self.samples.append(
                ("_bucket", self._labels(values, f'le="{le}"'), str(cumulative), None)
            )
        self.samples.append(("_sum", self._labels(values), format_value(total), None))
        self.samples.append(("_count", self._labels(values), str(cumulative), None))


def _exemplar_text(exemplar: Exemplar) -> str:
    (name, value), number, timestamp = exemplar
    return f' # {{{name}="{escape_label(value)}"}} {float(number)!r} {timestamp!r}'


def render(families: Iterable[Family], *, openmetrics: bool) -> bytes:
    """The exposition of *families* in the text format or OpenMetrics (with exemplars)."""
    lines: list[str] = []
    append = lines.append
    for family in families:
        if openmetrics:
            head = family.name
            kind = family.type
        else:
            head = family.name + {"counter": "_total", "info": "_info"}.get(family.type, "")
            kind = "gauge" if family.type == "info" else family.type
        append(f"# HELP {head} {_escape_help(family.help)}")
        append(f"# TYPE {head} {kind}")
        name = family.name
        for suffix, labels, value, exemplar in family.samples:
            sample = f"{name}{suffix}{{{labels}}} {value}" if labels else f"{name}{suffix} {value}"
            if openmetrics and exemplar is not None:
                sample += _exemplar_text(exemplar)
            append(sample)
    if openmetrics:
        append("# EOF")
    lines.append("")
    return "\n".join(lines).encode("utf-8")


_EOF = b"# EOF\n"
_PIECE = 64 * 1024


@dataclass(frozen=True, slots=True)
class GzipPrefix:
    """*data* compressed into an unfinished gzip stream, ready to be continued per scrape."""

    compressed: bytes
    compressor: Any  # zlib.Compress, positioned after a sync flush

    @classmethod
    def of(cls, data: bytes) -> GzipPrefix:
        compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: gzip container
        compressed = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
        return cls(compressed, compressor)

    def parts(self, tail: bytes) -> tuple[bytes, bytes]:
        """The gzip stream of the prefix's data followed by *tail*, as two buffers: the shared
        prefix itself (never copied) and this scrape's end of stream."""
        compressor = self.compressor.copy()
        rest: bytes = compressor.compress(tail) + compressor.flush()
        return self.compressed, rest

    def inflate(self) -> Iterator[bytes]:
        """The data the prefix holds, decompressed in pieces of at most 64 KiB: a plain
        OpenMetrics scrape costs one piece of memory, not a copy of the exposition."""
        inflater = zlib.decompressobj(31)
        view = memoryview(self.compressed)
        for start in range(0, len(view), 16 * 1024):
            piece = inflater.decompress(view[start : start + 16 * 1024], _PIECE)
            while True:
                if piece:
                    yield piece
                if not inflater.unconsumed_tail:
                    break
                piece = inflater.decompress(inflater.unconsumed_tail, _PIECE)
        if rest := inflater.flush():
            yield rest


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One rendering of all families: the bytes every scrape until the next poll is served.

    The bytes are immutable and served as they are, to any number of concurrent scrapes (the
    server writes them in slices, see :class:`exporter.web.server.Chunks`). OpenMetrics is kept
    gzipped only (Prometheus always asks for gzip, and at 15,000 series the plain copy is 3.5 MB
    of a resident set that should stay small); the rare plain request is inflated piece by
    piece as it is sent. The OpenMetrics stream lacks the final ``# EOF`` (the process metrics
    follow it).
    """

    text: bytes
    text_gzip: GzipPrefix
    openmetrics_gzip: GzipPrefix
    openmetrics_length: int
    series: int
    rendered_at: float

    @classmethod
    def from_families(cls, families: Sequence[Family]) -> Snapshot:
        text = render(families, openmetrics=False)
        openmetrics = render(families, openmetrics=True).removesuffix(_EOF)
        return cls(
            text=text,
            text_gzip=GzipPrefix.of(text),
            openmetrics_gzip=GzipPrefix.of(openmetrics),
            openmetrics_length=len(openmetrics),
            series=sum(len(f.samples) for f in families),
            rendered_at=time.time(),
        )

    @classmethod
    def empty(cls) -> Snapshot:
        return cls.from_families([])
