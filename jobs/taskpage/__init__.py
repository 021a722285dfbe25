"""The task page (one task's whole life) and the task search (jobs.taskpage.admin)."""
