"""Pure helpers of the peer benchmark: percentiles, the drain order, ratios, the table.

Nothing here imports Django or a peer's package: the orchestrator, every peer's
runner and the tests use it as it is.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

BASELINE = "tablo"


def pct(values: Sequence[float], q: float) -> float:
    """The q-th percentile, nearest rank; ``inf`` stands for a task that never ran."""
    if not values:
        return math.nan
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[index]


def ms(seconds: float) -> float | None:
    """Seconds as milliseconds rounded to the microsecond; None when it never happened."""
    if math.isinf(seconds) or math.isnan(seconds):
        return None
    return round(seconds * 1000, 3)


def spread(values: Sequence[float]) -> dict[str, float] | None:
    """min / median / max of the rounds of one figure (None without a round)."""
    if not values:
        return None
    return {
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
    }


def drain_schedule(peers: Sequence[str], rounds: int) -> list[tuple[int, str]]:
    """The drain runs, interleaved: round 1 of every peer, then round 2 of every peer, ...

    A quiet or busy minute on the shared machine then touches every peer alike
    instead of all the rounds of one.
    """
    return [(round_no, peer) for round_no in range(1, rounds + 1) for peer in peers]


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    unit: str
    higher_is_better: bool
    phase: str  # whose failure leaves this figure empty


FIGURES: tuple[Figure, ...] = (
    Figure("enqueue_p50_ms", "enqueue one, p50", "ms", False, "enqueue"),
    Figure("enqueue_p99_ms", "enqueue one, p99", "ms", False, "enqueue"),
    Figure("pickup_p50_ms", "idle pickup p50", "ms", False, "pickup"),
    Figure("pickup_p99_ms", "idle pickup p99", "ms", False, "pickup"),
    Figure("drain_median_per_s", "drain median", "/s", True, "drain"),
    Figure("drain_min_per_s", "drain min", "/s", True, "drain"),
    Figure("drain_max_per_s", "drain max", "/s", True, "drain"),
    Figure("cpu_per_task_ms", "worker CPU per task", "ms", False, "drain"),
    Figure("pg_cpu_per_task_ms", "PostgreSQL CPU per task", "ms", False, "drain"),
    Figure("sustained_offered_per_s", "offered: achieved rate", "/s", True, "sustained"),
    Figure("sustained_completed_per_s", "offered: completed rate", "/s", True, "sustained"),
    Figure("sustained_p99_ms", "offered: p99 to start", "ms", False, "sustained"),
    Figure("sustained_unfinished", "offered: not started", "", False, "sustained"),
)


LEGEND = [
    "(n.nnx) = the peer's figure / Tablo's, in every row; ^ higher is better, v lower.",
    "enqueue one: one task at a time from the producer, as a view does, no worker running.",
    "idle pickup: enqueue -> task start, queue empty. drain: no-op tasks queued before the",
    "workers start, timed once every worker process has run one; min/median/max of rounds.",
    "worker CPU: user+sys of every worker-side process (/proc) per task, median of rounds.",
    "PostgreSQL CPU: user+sys of the backends connected to the peer's database while it",
    "drains, per task (Celery keeps its queue in Redis: none).",
    "offered: tasks offered on a timetable by producer threads; 'p99 to start' counts a",
    "task not started 15 s after the end as never started ('never' when over 1% are).",
]


def ratio(peer: Any, baseline: Any) -> float | None:
    """peer / Tablo for two numbers; None when either is missing or Tablo's is 0."""
    numbers = (int, float)
    if not isinstance(peer, numbers) or not isinstance(baseline, numbers):
        return None
    if isinstance(peer, bool) or isinstance(baseline, bool) or baseline == 0:
        return None
    if math.isnan(peer) or math.isnan(baseline):
        return None
    return peer / baseline


def format_ratio(value: float | None) -> str:
    if value is None:
        return ""
    if value >= 100:
        return f"{value:,.0f}x"
    if value >= 10:
        return f"{value:.1f}x"
    return f"{value:.2f}x"


def format_value(value: Any, unit: str) -> str:
    """A figure for the table: numbers with a unit, ``None`` as "never"."""
    if value is None:
        return "never" if unit == "ms" else "-"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int) and not unit:
        return f"{value:,}"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".rstrip() if unit != "/s" else f"{text}/s"


def phase_error(result: dict[str, Any], phase: str) -> str | None:
    """Why a figure of ``phase`` is missing: that phase failed, or the peer as a whole."""
    errors = result.get("errors") or {}
    for key in (phase, "install", "setup"):
        if errors.get(key):
            return str(errors[key])
    return None


def shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def render_table(
    results: dict[str, dict[str, Any]],
    peers: Sequence[str],
    *,
    header: Sequence[str] = (),
    max_error: int = 28,
) -> str:
    """One row per figure: Tablo's value, then each peer's value and peer/Tablo.

    ``results[peer]`` holds ``label``, ``figures`` (key -> value) and ``errors``
    (phase -> message, shown in place of the figures that phase would have given;
    ``install`` or ``setup`` stand for every phase).
    """
    base_figures = (results.get(BASELINE, {}).get("figures") or {}) if BASELINE in peers else {}
    columns = ([BASELINE] if BASELINE in peers else []) + [p for p in peers if p != BASELINE]

    titles = ["figure"]
    for peer in columns:
        label = results.get(peer, {}).get("label", peer)
        titles.append(label)
    rows: list[list[str]] = []
    for figure in FIGURES:
        row = [figure.label + (" ^" if figure.higher_is_better else " v")]
        for peer in columns:
            result = results.get(peer, {})
            figures = result.get("figures") or {}
            if figure.key in figures:
                text = format_value(figures[figure.key], figure.unit)
                if peer != BASELINE:
                    r = format_ratio(ratio(figures[figure.key], base_figures.get(figure.key)))
                    text = f"{text} ({r})" if r else text
            else:
                error = phase_error(result, figure.phase)
                text = f"failed: {shorten(error, max_error)}" if error else "-"
            row.append(text)
        rows.append(row)
    row = ["drain tasks x rounds"]
    for peer in columns:
        figures = results.get(peer, {}).get("figures") or {}
        tasks, rounds = figures.get("drain_tasks"), figures.get("drain_rounds")
        row.append(f"{tasks:,} x {rounds}" if tasks and rounds else "-")
    rows.append(row)

    widths = [max(len(r[i]) for r in [titles, *rows]) for i in range(len(titles))]
    lines = list(header)
    for i, row in enumerate([titles, *rows]):
        lines.append(
            "  ".join(
                c.ljust(w) if j == 0 else c.rjust(w)
                for j, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines += LEGEND
    return "\n".join(lines)
