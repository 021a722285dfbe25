"""Failed tasks as operators see them: the Failed tasks admin page (retry, discard),
the commands, and the services and selectors behind both. The engine records each
failed attempt and decides retry or dead (``jobs.engine.failing``)."""
