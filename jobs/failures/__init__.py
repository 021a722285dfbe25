"""Failed tasks: the project-wide failure hook, retries with backoff, dead tasks,
and the operators' tools over them (admin page, commands, services)."""
