"""The peer benchmark's pure helpers (benchmarks/peers/report.py): no peer installed."""

from __future__ import annotations

import math

import pytest

from benchmarks.peers.report import (
    FIGURES,
    drain_schedule,
    format_ratio,
    format_value,
    ms,
    pct,
    ratio,
    render_table,
    spread,
)


def test_pct_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert pct(values, 50) == 50
    assert pct(values, 99) == 99
    assert pct(values, 100) == 100
    assert pct([3.0, 1.0, 2.0], 50) == 2
    assert pct([7.0], 99) == 7


def test_pct_counts_never_run_tasks_as_infinite():
    values = [0.01] * 98 + [float("inf")] * 2
    assert pct(values, 50) == 0.01
    assert pct(values, 99) == float("inf")
    assert ms(pct(values, 99)) is None


def test_pct_of_nothing_is_nan():
    assert math.isnan(pct([], 50))


def test_ms_rounds_to_the_microsecond():
    assert ms(0.0012345) == 1.234
    assert ms(float("nan")) is None


def test_spread_of_rounds():
    assert spread([300.0, 100.0, 200.0]) == {"min": 100.0, "median": 200.0, "max": 300.0}
    assert spread([]) is None


def test_drain_schedule_interleaves_rounds_across_peers():
    assert drain_schedule(["tablo", "pgqueuer", "celery"], 2) == [
        (1, "tablo"),
        (1, "pgqueuer"),
        (1, "celery"),
        (2, "tablo"),
        (2, "pgqueuer"),
        (2, "celery"),
    ]
    assert drain_schedule(["tablo"], 0) == []


def test_ratio_is_peer_over_tablo_and_skips_what_is_not_a_number():
    assert ratio(4000.0, 1000.0) == 4.0
    assert ratio(0.5, 2.0) == 0.25
    assert ratio(None, 1.0) is None  # the peer never started the task
    assert ratio(1.0, 0) is None
    assert ratio("never", 1.0) is None
    assert ratio(True, 1.0) is None
    assert ratio(float("nan"), 1.0) is None


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, ""), (0.4812, "0.48x"), (3.456, "3.46x"), (47.25, "47.2x"), (1234.0, "1,234x")],
)
def test_format_ratio(value, text):
    assert format_ratio(value) == text


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (0.871, "ms", "0.87 ms"),
        (17.82, "ms", "17.8 ms"),
        (1308.4, "/s", "1,308/s"),
        (None, "ms", "never"),
        (None, "/s", "-"),
        (12000, "", "12,000"),
        (0, "", "0"),
    ],
)
def test_format_value(value, unit, text):
    assert format_value(value, unit) == text


def results():
    return {
        "tablo": {
            "label": "Tablo",
            "figures": {
                "enqueue_p50_ms": 1.0,
                "drain_median_per_s": 1000.0,
                "sustained_p99_ms": 200.0,
                "drain_tasks": 20000,
                "drain_rounds": 3,
            },
            "errors": {},
        },
        "pgqueuer": {
            "label": "pgqueuer 1.6.0",
            "figures": {
                "enqueue_p50_ms": 0.5,
                "drain_median_per_s": 4000.0,
                "sustained_p99_ms": None,
                "drain_tasks": 20000,
                "drain_rounds": 3,
            },
            "errors": {"pickup": "RuntimeError: pickup task 3 did not start within 10 s"},
        },
        "celery": {"label": "Celery+Redis", "figures": {}, "errors": {"install": "no wheel"}},
    }


def rows_of(table: str) -> dict[str, list[str]]:
    """The table's rows by figure label, cells split on the two-space column gap."""
    out = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.split("  ") if c.strip()]
        if cells:
            out[cells[0]] = cells[1:]
    return out


def test_table_puts_each_peer_next_to_tablo_with_the_ratio():
    table = render_table(results(), ["tablo", "pgqueuer", "celery"], header=["machine: 2 cores"])
    lines = table.splitlines()
    assert lines[0] == "machine: 2 cores"
    assert lines[1].split()[:2] == ["figure", "Tablo"]
    assert lines[1].split("  ")[-1].strip() == "Celery+Redis"
    rows = rows_of(table)
    assert rows["enqueue one, p50 v"][:2] == ["1.00 ms", "0.50 ms (0.50x)"]
    assert rows["drain median ^"][:2] == ["1,000/s", "4,000/s (4.00x)"]
    # A task that never started: "never", and no ratio.
    assert rows["offered: p99 to start v"][:2] == ["200 ms", "never"]
    assert rows["drain tasks x rounds"][:2] == ["20,000 x 3", "20,000 x 3"]
    assert "(n.nnx) = the peer's figure / Tablo's, in every row" in table


def test_table_reports_a_failed_phase_or_peer_in_place_of_its_figures():
    rows = rows_of(render_table(results(), ["tablo", "pgqueuer", "celery"], max_error=20))
    pickup = rows["idle pickup p50 v"]
    assert pickup[0] == "-"  # Tablo: not measured in this fixture, and no error
    assert pickup[1] == "failed: RuntimeError: pic..."
    # An install failure stands for every figure of that peer.
    labels = {f.label + (" ^" if f.higher_is_better else " v") for f in FIGURES}
    assert {row[2] for label, row in rows.items() if label in labels} == {"failed: no wheel"}


def test_table_without_tablo_has_no_ratios():
    rows = rows_of(render_table(results(), ["pgqueuer"]))
    assert rows["enqueue one, p50 v"] == ["0.50 ms"]
