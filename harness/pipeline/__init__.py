"""The experiment as a DAG of content-addressed jobs (jobs.py, steps.py), run by a scheduler
(scheduler.py) on an executor (executors/), one fresh worker process per job (worker.py)."""
