"""The SLURM executor through submitit: one SLURM job per pipeline job, with partition / GPU /
time options. `cluster: local` runs submitit's local executor (tests, a workstation)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from harness.errors import UserError
from harness.pipeline.executors import run_in_subprocess
from harness.pipeline.jobs import Job


class SlurmOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    partition: str | None = Field(None, description="SLURM partition.")
    timeout_min: int = Field(24 * 60, ge=1, description="Wall-clock limit per job, minutes.")
    gpus_per_node: int | None = Field(None, ge=0, description="GPUs per job (default: the job's own need).")
    cpus_per_task: int = Field(8, ge=1, description="CPUs per job.")
    folder: str = Field("slurm-logs", description="Where submitit keeps logs (relative to the results dir).")
    cluster: str | None = Field(None, description="submitit cluster: None = auto (slurm), 'local' for tests.")


class SlurmExecutor:
    description: ClassVar[str] = "One SLURM job per pipeline job through submitit (pip install 'atax[slurm]')."
    Options: ClassVar[type[BaseModel]] = SlurmOptions

    def __init__(self, options: SlurmOptions | None = None, results_dir: Path | None = None) -> None:
        self.options = options or SlurmOptions()
        try:
            import submitit
        except ImportError:
            raise UserError("executor: submitit is not installed; pip install 'atax[slurm]'") from None
        folder = Path(results_dir or ".") / self.options.folder
        self._executor = submitit.AutoExecutor(folder=str(folder), cluster=self.options.cluster)
        self._jobs: dict[Any, Any] = {}

    def submit(self, job: Job) -> Any:
        params: dict[str, Any] = {"timeout_min": self.options.timeout_min, "cpus_per_task": self.options.cpus_per_task}
        gpus = self.options.gpus_per_node if self.options.gpus_per_node is not None else job.gpus
        if self.options.cluster != "local":
            params["gpus_per_node"] = gpus
            if self.options.partition:
                params["slurm_partition"] = self.options.partition
        self._executor.update_parameters(**params)
        handle = self._executor.submit(run_in_subprocess, job.to_json())
        self._jobs[handle.job_id] = handle
        return handle.job_id

    def wait(self, handles: list[Any]) -> list[tuple[Any, bool, str | None]]:
        while True:
            finished = [h for h in handles if self._jobs[h].done()]
            if finished:
                out = []
                for h in finished:
                    try:
                        ok, error = self._jobs[h].result()
                    except Exception as exc:  # the scheduler killed it, the node died, ...
                        ok, error = False, f"{type(exc).__name__}: {exc}"
                    out.append((h, ok, error))
                return out
            time.sleep(0.5)

    def close(self) -> None:
        pass
