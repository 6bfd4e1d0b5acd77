"""Small made-up benchmark data in each hub dataset's own schema, laid out for `--data-dir`.

Every question, passage and program here is invented (seeded), so nothing third-party is copied
into the repository; the shapes (columns, types, answer encodings) are the hub datasets'.
"""

from __future__ import annotations

from pathlib import Path

from suites.knowledge.benchmarks import BENCHMARKS, DATASETS
from suites.knowledge.toy_data import gsm8k_rows, humaneval_rows, mbpp_rows, write_fixture_data  # noqa: F401


def stock_prompt(name: str, data_dir: Path, subset: str = "") -> tuple[str, str]:
    """(task, first prompt) as lm-eval's own installed config renders it on the data in `data_dir`.

    Only the data source is pointed at the local files here, by hand, independent of the suite's
    config generator; everything else is lm-eval's YAML as shipped.
    """
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks._yaml_loader import load_yaml

    from suites.knowledge.derive import lm_eval_tasks_dir

    bench = BENCHMARKS[name]
    dataset = DATASETS[bench.dataset]
    subset = subset or (dataset.subsets[0] if dataset.subsets else "")
    stock = bench.subtask_stock.format(subset) if subset else bench.stock
    config = load_yaml(lm_eval_tasks_dir() / stock, resolve_func=True)
    files = {split: str(data_dir / dataset.name / subset / f"{split}.jsonl") for split in dataset.splits}
    config.update(dataset_path="json", dataset_name=None, dataset_kwargs={"data_files": files})
    for key in ("training_split", "validation_split"):
        if config.get(key) not in files:
            config[key] = None
    if name == "mmlu":
        config["num_fewshot"] = 5  # the paper's protocol; lm-eval's users pass --num_fewshot 5
    task = ConfigurableTask(config=config)
    task.set_fewshot_seed(1234)
    task.build_all_requests(limit=1)
    return task.config.task, task.instances[0].arguments[0]
