"""The job the runtime benchmark enqueues (registered on import)."""

from jobs.engine.registry import job


@job("bench.noop")
def noop(value: str) -> str:
    return value
