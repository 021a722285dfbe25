"""compose.yaml: every app service waits for what it needs, its stop grace fits the jobs,
and docs/worker.md quotes it right."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml
from django.conf import settings

from jobs.engine.registry import all_jobs

BASE_DIR = Path(__file__).resolve().parents[2]


def services() -> dict:
    return yaml.safe_load((BASE_DIR / "compose.yaml").read_text())["services"]


def test_web_and_worker_wait_for_the_database_the_bucket_and_migrate() -> None:
    for name in ("web", "worker"):
        depends = services()[name]["depends_on"]
        assert depends == {
            "db": {"condition": "service_healthy"},
            "createbucket": {"condition": "service_completed_successfully"},
            "migrate": {"condition": "service_completed_successfully"},
        }, name
    assert set(services()["migrate"]["depends_on"]) == {"db", "createbucket"}


def test_the_worker_snippet_in_docs_matches_compose() -> None:
    text = (BASE_DIR / "docs/worker.md").read_text()
    [snippet] = re.findall(r"```yaml\n(worker:\n.*?)```", text, flags=re.S)
    documented = yaml.safe_load(snippet)["worker"]
    worker = services()["worker"]
    assert documented == {key: worker[key] for key in documented}
    assert {"command", "stop_signal", "stop_grace_period"} <= set(documented)


# A stop may cut this job short: hourly, idempotent, and handed out again when the node
# restarts (README, "Graceful shutdown"). Every other job must fit in the grace.
CUT_AT_SHUTDOWN = {"files.orphan_cleanup"}
SHUTDOWN_MARGIN_SECONDS = 60


def test_the_stop_grace_is_the_longest_job_not_allowed_to_be_cut_plus_a_margin() -> None:
    project = [
        spec
        for spec in all_jobs()
        if spec.func.__module__.split(".")[0] in ("config", "files", "jobs", "tablos")
    ]
    timeouts = {spec.name: spec.timeout or settings.Q_CLUSTER["timeout"] for spec in project}
    assert set(timeouts) >= CUT_AT_SHUTDOWN
    longest = max(t for name, t in timeouts.items() if name not in CUT_AT_SHUTDOWN)
    grace = int(services()["worker"]["stop_grace_period"].removesuffix("s"))
    assert grace == longest + SHUTDOWN_MARGIN_SECONDS
    # The jobs listed as cut really outlast the grace (or they need no listing).
    assert all(timeouts[name] > grace for name in CUT_AT_SHUTDOWN)
    for doc in ("README.md", "docs/worker.md"):
        stops = re.findall(r"TimeoutStopSec=(\d+)", (BASE_DIR / doc).read_text())
        assert stops == [str(grace)], doc


def test_the_image_runs_the_python_the_code_is_checked_for() -> None:
    """Dockerfile's default, the version compose builds with and mypy's target agree."""
    dockerfile = (BASE_DIR / "Dockerfile").read_text()
    [default] = re.findall(r"^ARG PYTHON_VERSION=(\S+)$", dockerfile, re.MULTILINE)
    assert "FROM python:${PYTHON_VERSION}-slim" in dockerfile
    built = {name: s["build"]["args"]["PYTHON_VERSION"] for name, s in services().items()
             if "build" in s}  # fmt: skip
    assert set(built) == {"migrate", "web", "worker"}
    pyproject = tomllib.loads((BASE_DIR / "pyproject.toml").read_text())
    assert set(built.values()) == {default} == {pyproject["tool"]["mypy"]["python_version"]}
