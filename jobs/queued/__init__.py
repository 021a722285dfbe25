"""The admin's "Queued tasks" page: what the project broker holds (queued, running, retrying)."""
