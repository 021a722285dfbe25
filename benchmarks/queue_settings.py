"""Settings for benchmarks/queue_bench.py: the project's, or stock django-q2 defaults.

``QUEUE_BENCH_MODE=stock`` gives the ORM broker with django-q2's defaults
(``save_limit`` 250, ``poll`` 0.2, ``bulk`` 1) and Django's ``CONN_MAX_AGE=0``,
served by django-q2's own cluster (benchmarks/stock_qcluster.py; ``manage.py
qcluster`` is this project's engine and never reads ``OrmQ``); ``tablo`` (default)
is config.settings unchanged (results kept), ``tablo-dropped`` the same with
``save_limit`` -1 (no result rows), both served by ``manage.py qcluster``.
Everything else (apps, signal receivers, logging) is the same in both, so the
difference is the queue path.
"""

import os

from config.settings import *  # noqa: F403
from config.settings import DATABASES, Q_CLUSTER

MODE = os.environ.get("QUEUE_BENCH_MODE", "tablo")
if MODE == "tablo-dropped":
    Q_CLUSTER = {**Q_CLUSTER, "save_limit": -1}
if MODE == "stock":
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = False
    Q_CLUSTER = {
        "name": Q_CLUSTER["name"],
        "workers": Q_CLUSTER["workers"],
        "timeout": Q_CLUSTER["timeout"],
        "retry": Q_CLUSTER["retry"],
        "orm": "default",
        "label": Q_CLUSTER["label"],
    }
