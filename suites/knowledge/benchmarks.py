"""The knowledge suite as data: which lm-eval task each benchmark is, its shots, its primary
metric, and the local data layout each one reads with `--data-dir`.

Pure data and cheap to import (the CLI lists the suite without importing lm-eval). Where
lm-eval's task differs from the paper or from bigcode-evaluation-harness, `note` says how.
"""

from __future__ import annotations

from dataclasses import dataclass

MMLU_SUBJECTS: tuple[str, ...] = (
    "abstract_algebra", "anatomy", "astronomy", "business_ethics", "clinical_knowledge", "college_biology",
    "college_chemistry", "college_computer_science", "college_mathematics", "college_medicine",
    "college_physics", "computer_security", "conceptual_physics", "econometrics", "electrical_engineering",
    "elementary_mathematics", "formal_logic", "global_facts", "high_school_biology", "high_school_chemistry",
    "high_school_computer_science", "high_school_european_history", "high_school_geography",
    "high_school_government_and_politics", "high_school_macroeconomics", "high_school_mathematics",
    "high_school_microeconomics", "high_school_physics", "high_school_psychology", "high_school_statistics",
    "high_school_us_history", "high_school_world_history", "human_aging", "human_sexuality",
    "international_law", "jurisprudence", "logical_fallacies", "machine_learning", "management", "marketing",
    "medical_genetics", "miscellaneous", "moral_disputes", "moral_scenarios", "nutrition", "philosophy",
    "prehistory", "professional_accounting", "professional_law", "professional_medicine",
    "professional_psychology", "public_relations", "security_studies", "sociology", "us_foreign_policy",
    "virology", "world_religions",
)
BBH_TASKS: tuple[str, ...] = (
    "boolean_expressions", "causal_judgement", "date_understanding", "disambiguation_qa", "dyck_languages",
    "formal_fallacies", "geometric_shapes", "hyperbaton", "logical_deduction_five_objects",
    "logical_deduction_seven_objects", "logical_deduction_three_objects", "movie_recommendation",
    "multistep_arithmetic_two", "navigate", "object_counting", "penguins_in_a_table",
    "reasoning_about_colored_objects", "ruin_names", "salient_translation_error_detection", "snarks",
    "sports_understanding", "temporal_sequences", "tracking_shuffled_objects_five_objects",
    "tracking_shuffled_objects_seven_objects", "tracking_shuffled_objects_three_objects", "web_of_lies",
    "word_sorting",
)


@dataclass(frozen=True)
class Dataset:
    """A local copy of one hub dataset, in the hub's own schema (column names and types).

    Files: `<data-dir>/<name>/<split>.jsonl` (or `.parquet`); with `subsets`, one directory per
    subset: `<data-dir>/<name>/<subset>/<split>.jsonl`. `columns` maps each column lm-eval reads
    to its JSON type. `hub` and `config` say where `atax data pull` fetches it (config None: the
    subset name is the hub config).
    """

    name: str
    hub: str
    config: str | None
    splits: tuple[str, ...]
    columns: dict[str, type]
    subsets: tuple[str, ...] = ()


DATASETS: dict[str, Dataset] = {d.name: d for d in (
    Dataset("gsm8k", "openai/gsm8k", "main", ("test",), {"question": str, "answer": str}),
    Dataset("mmlu", "cais/mmlu", None, ("test", "dev"),
            {"question": str, "subject": str, "choices": list, "answer": int}, MMLU_SUBJECTS),
    Dataset("bbh", "SaylorTwift/bbh", None, ("test",), {"input": str, "target": str}, BBH_TASKS),
    Dataset("arc_challenge", "allenai/ai2_arc", "ARC-Challenge", ("test",),
            {"id": str, "question": str, "choices": dict, "answerKey": str}),
    Dataset("openbookqa", "allenai/openbookqa", "main", ("test",),
            {"id": str, "question_stem": str, "choices": dict, "answerKey": str}),
    Dataset("race", "EleutherAI/race", "high", ("test",), {"article": str, "problems": str}),
    Dataset("race_middle", "EleutherAI/race", "middle", ("test",), {"article": str, "problems": str}),
    Dataset("truthfulqa", "truthfulqa/truthful_qa", "multiple_choice", ("validation",),
            {"question": str, "mc1_targets": dict, "mc2_targets": dict}),
    Dataset("humaneval", "openai/openai_humaneval", None, ("test",),
            {"task_id": str, "prompt": str, "canonical_solution": str, "test": str, "entry_point": str}),
    Dataset("mbpp", "google-research-datasets/mbpp", "full", ("test",),
            {"task_id": int, "text": str, "code": str, "test_list": list, "test_setup_code": str,
             "challenge_test_list": list}),
)}


@dataclass(frozen=True)
class Benchmark:
    """One benchmark of the suite.

    `stock` is lm-eval's config (path under `lm_eval/tasks/`) the derived task `include:`s; for a
    group, `stock` is the group's YAML and `subtask_stock` the per-subset config pattern.
    `overlay` is a YAML shipped in `suites/knowledge/tasks/` with the keys we replace (the code
    metric, a bigcode-style prompt). `primary` is the stored metric name tables and tests use.
    """

    name: str
    task: str  # lm-eval task (or group) name, also the name of the derived task
    stock: str
    dataset: str
    num_fewshot: int
    primary: str
    output: str  # generate_until or multiple_choice
    subtask_stock: str = ""  # e.g. "mmlu/default/mmlu_{}.yaml"; "{}" is the subset
    subtask_task: str = ""  # e.g. "mmlu_{}"
    code: bool = False
    overlay: str | None = None
    note: str = ""
    hub_config: str | None = None  # replaces the stock config's dataset_name when read from the hub
    # A caveat tables print under the benchmark's column, with another stored metric shown beside the primary.
    table_note: dict[str, str] | None = None
    # Other stored metrics an experiment may make primary (knowledge option primary_metrics), e.g. acc_norm,
    # which small models' reports use for ARC and OpenBookQA.
    alternatives: tuple[str, ...] = ()


BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (
    Benchmark("gsm8k", "gsm8k_cot", "gsm8k/gsm8k-cot.yaml", "gsm8k", 8, "exact_match,strict-match",
              "generate_until",
              note="8-shot chain of thought, greedy, the fixed exemplars of Wei et al.; both of lm-eval's "
                   "filters are stored: strict-match is primary and only accepts 'The answer is N.' as the "
                   "exemplars write it (a correct chain ending 'so the answer is 18.' in lower case scores 0); "
                   "flexible-extract (the last number) is reported beside it.",
              table_note={"text": "strict-match, lm-eval's primary, only accepts 'The answer is N.' (a correct "
                                  "chain ending 'so the answer is 18.' scores 0)",
                          "metric": "exact_match,flexible-extract", "label": "flexible-extract (the last number)"}),
    Benchmark("mmlu", "mmlu", "mmlu/default/_mmlu.yaml", "mmlu", 5, "acc", "multiple_choice",
              subtask_stock="mmlu/default/mmlu_{}.yaml", subtask_task="mmlu_{}",
              note="5-shot from each subject's dev split; the score is the mean over all questions "
                   "(lm-eval's weight_by_size), per-subject scores are kept in the run's meta."),
    Benchmark("bbh", "bbh_cot_fewshot", "bbh/cot_fewshot/_bbh_cot_fewshot.yaml", "bbh", 3, "exact_match",
              "generate_until", subtask_stock="bbh/cot_fewshot/{}.yaml", subtask_task="bbh_cot_fewshot_{}",
              note="3-shot chain of thought, exact match after lm-eval's 'the answer is' filter, mean over "
                   "all 27 tasks' items."),
    Benchmark("arc_challenge", "arc_challenge", "arc/arc_challenge.yaml", "arc_challenge", 0, "acc",
              "multiple_choice", note="0-shot; acc_norm is stored too.", alternatives=("acc_norm",)),
    Benchmark("openbookqa", "openbookqa", "openbookqa/openbookqa.yaml", "openbookqa", 0, "acc",
              "multiple_choice", note="0-shot, question stem only (no fact); acc_norm is stored too.",
              alternatives=("acc_norm",)),
    Benchmark("race", "race", "race/race.yaml", "race", 0, "acc", "multiple_choice",
              note="lm-eval's RACE is the high-school split only (RACE-high; RACE-middle is race_middle) and "
                   "scores one question per article (the last; earlier ones appear answered in the prompt), "
                   "1,045 items rather than RACE-high's 3,498 questions or the 4,934 of high + middle."),
    Benchmark("truthfulqa", "truthfulqa_mc1", "truthfulqa/truthfulqa_mc1.yaml", "truthfulqa", 0, "acc",
              "multiple_choice", note="MC1 (one true answer), with lm-eval's fixed 6-QA preamble."),
    Benchmark("humaneval", "humaneval", "humaneval/humaneval.yaml", "humaneval", 0, "pass@1",
              "generate_until", code=True, overlay="humaneval.yaml",
              note="pass@1 greedy. lm-eval prompts with the problem as is (bigcode strips trailing "
                   "whitespace and newlines) and stops at \\nclass, \\ndef, \\n#, \\nif, \\nprint; the "
                   "metric is replaced by atax's sandboxed pass@k (lm-eval's needs the hub's code_eval)."),
    Benchmark("mbpp", "mbpp", "mbpp/mbpp.yaml", "mbpp", 3, "pass@1", "generate_until", code=True,
              overlay="mbpp.yaml",
              note="lm-eval's MBPP is 3-shot with [BEGIN]/[DONE] (Austin et al.'s prompt, tasks 2-4 as "
                   "shots) on the 500 test tasks; bigcode's is 0-shot with a docstring (mbpp_bigcode). "
                   "lm-eval never runs a task's test_setup_code, so task 367's correct reference fails "
                   "(kept, as lm-eval scores it; mbpp_setup runs the setup code). Metric replaced by atax's "
                   "sandboxed pass@k."),
    Benchmark("mbpp_setup", "mbpp_setup", "mbpp/mbpp.yaml", "mbpp", 3, "pass@1", "generate_until", code=True,
              overlay="mbpp_setup.yaml",
              note="mbpp with each task's test_setup_code run before its tests (MBPP's own protocol; lm-eval "
                   "skips it, failing task 367's reference); not one of the nine."),
    Benchmark("race_middle", "race_middle", "race/race.yaml", "race_middle", 0, "acc", "multiple_choice",
              hub_config="middle",
              note="lm-eval's RACE task on the middle-school set (EleutherAI/race 'middle'), one question per "
                   "article as in race: 362 items (articles) of its 1,436 questions; not one of the nine."),
    Benchmark("humaneval_bigcode", "humaneval_bigcode", "humaneval/humaneval.yaml", "humaneval", 0, "pass@1",
              "generate_until", code=True, overlay="humaneval_bigcode.yaml",
              note="bigcode-evaluation-harness's HumanEval: prompt stripped of trailing whitespace, stop "
                   "sequences \\nclass, \\ndef, \\n#, \\n@, \\nprint, \\nif, \\n```; not one of the nine."),
    Benchmark("mbpp_bigcode", "mbpp_bigcode", "mbpp/mbpp.yaml", "mbpp", 0, "pass@1", "generate_until",
              code=True, overlay="mbpp_bigcode.yaml",
              note="bigcode-evaluation-harness's MBPP: 0-shot, '\"\"\"\\n{text}\\n{first test}\\n\"\"\"\\n' "
                   "prompt, all three tests; not one of the nine."),
)}

# The paper's nine, in its table order.
DEFAULT_BENCHMARKS: tuple[str, ...] = ("gsm8k", "mmlu", "bbh", "arc_challenge", "openbookqa", "race",
                                       "truthfulqa", "humaneval", "mbpp")
