from tests.support.web import purge_job  # noqa: F401  (fixture)
