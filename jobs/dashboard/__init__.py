"""The operator's view: Jobs -> Overview in the admin (charts, per-job figures, nodes,
queues with pause/resume). Reads only aggregates (``jobs.engine.stats``) and small indexed
queries, so the page stays fast however long the history is."""
