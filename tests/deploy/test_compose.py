"""compose.yaml: every app service waits for what it needs, and docs/worker.md quotes it right."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

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
