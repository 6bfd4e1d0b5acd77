"""The Ray executor: jobs as Ray tasks placed by their GPU/CPU needs, on an existing cluster
(`address`) or a local Ray instance. Each task still runs the job in a fresh subprocess."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from harness.errors import UserError
from harness.pipeline.executors import run_in_subprocess
from harness.pipeline.jobs import Job


class RayOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str | None = Field(None, description="Ray cluster address (None: start or join a local one).")
    num_cpus: int | None = Field(None, ge=1, description="CPUs for a local Ray instance.")


class RayExecutor:
    description: ClassVar[str] = "Jobs as Ray tasks with num_gpus/num_cpus resources (pip install 'atax[ray]')."
    Options: ClassVar[type[BaseModel]] = RayOptions

    def __init__(self, options: RayOptions | None = None, results_dir: Any = None) -> None:
        options = options or RayOptions()
        try:
            import ray
        except ImportError:
            raise UserError("executor: ray is not installed; pip install 'atax[ray]'") from None
        self._ray = ray
        if not ray.is_initialized():
            ray.init(address=options.address, num_cpus=options.num_cpus, include_dashboard=False,
                     log_to_driver=False, ignore_reinit_error=True)
        self._task = ray.remote(run_in_subprocess)
        self._refs: dict[Any, str] = {}
        # A GPU request on a cluster without GPUs would wait forever: such clusters run jobs on CPUs.
        self._gpus = ray.cluster_resources().get("GPU", 0)

    def submit(self, job: Job) -> Any:
        gpus = job.gpus if self._gpus else 0
        ref = self._task.options(num_gpus=gpus, num_cpus=job.cpus).remote(job.to_json())
        self._refs[ref] = job.key
        return ref

    def wait(self, handles: list[Any]) -> list[tuple[Any, bool, str | None]]:
        done, _ = self._ray.wait(list(handles), num_returns=1)
        out = []
        for ref in done:
            ok, error = self._ray.get(ref)
            out.append((ref, ok, error))
        return out

    def close(self) -> None:
        self._ray.shutdown()
