"""benchmarks/peer_bench.py: folding drain rounds, labels, refusing foreign databases."""

from __future__ import annotations

import argparse

import pytest

from benchmarks.peer_bench import database_url, label_for, params_for, summarize
from benchmarks.peers import PEERS


def test_summarize_folds_rounds_into_min_median_max_and_median_cpu():
    result: dict = {"figures": {"enqueue_p50_ms": 1.0}}
    rounds = [
        {"tasks": 20000, "tasks_per_s": 1300.0, "cpu_per_task_ms": 1.1, "pg_cpu_per_task_ms": 0.3},
        {"tasks": 20000, "tasks_per_s": 1100.0, "cpu_per_task_ms": 0.9, "pg_cpu_per_task_ms": 0.1},
        {"tasks": 20000, "tasks_per_s": 1250.0, "cpu_per_task_ms": 1.0, "pg_cpu_per_task_ms": 0.2},
    ]
    summarize(result, rounds)
    assert result["figures"] == {
        "enqueue_p50_ms": 1.0,
        "drain_min_per_s": 1100.0,
        "drain_median_per_s": 1250.0,
        "drain_max_per_s": 1300.0,
        "drain_tasks": 20000,
        "drain_rounds": 3,
        "cpu_per_task_ms": 1.0,
        "pg_cpu_per_task_ms": 0.2,
    }


def test_summarize_without_a_round_adds_no_drain_figure():
    result: dict = {"figures": {}}
    summarize(result, [])
    assert result["figures"] == {}


def test_labels_name_the_measured_version():
    assert label_for(PEERS["pgqueuer"], {"pgqueuer": "1.6.0"}) == "pgqueuer 1.6.0"
    assert label_for(PEERS["stock"], {"django-q2": "1.11.1"}) == "stock django-q2 1.11.1"
    assert label_for(PEERS["tablo"], {"django-q2": "1.11.1"}) == "Tablo"


def test_only_bench17_databases_are_touched():
    assert database_url("postgres://h", "bench17_tablo") == "postgres://h/bench17_tablo"
    with pytest.raises(ValueError, match="refusing"):
        database_url("postgres://h", "tablo")
    assert all(p.database is None or p.database.startswith("bench17_") for p in PEERS.values())


def test_quick_uses_small_numbers():
    names = ("enqueue_samples", "pickup_samples", "drain", "stock_drain", "rounds", "seconds")
    args = argparse.Namespace(quick=True, rate=500.0, producers=4, **dict.fromkeys(names))
    params = params_for(args)
    assert (params["drain"], params["rounds"], params["seconds"]) == (2000, 1, 5.0)
    full = params_for(
        argparse.Namespace(quick=False, rate=500.0, producers=4, **dict.fromkeys(names))
    )
    assert (full["drain"], full["rounds"], full["seconds"]) == (20000, 3, 30.0)
