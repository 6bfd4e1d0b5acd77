"""Run the α search of layer_averaging once per input: tokenise the two proxies, score every
candidate vector, keep the result beside the method's checkpoints (a re-run combine reads it back).

Reads only what it is given: held-out instruction records and pre-training text; no benchmark.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from baselines.layer_averaging.blocks import BlockPlan
from baselines.layer_averaging.search import Candidate, ProxyScorer, candidate_vectors, pareto_front
from harness.atomic import write_text_atomic
from harness.checkpoint import Checkpoint
from harness.keys import content_key
from harness.method import CombineContext

SEARCH_VERSION = "1"


@dataclass(frozen=True)
class SearchResult:
    candidates: list[Candidate]
    front: list[Candidate]
    inputs: dict[str, Any]  # what was searched on and how

    def record(self) -> dict[str, Any]:
        return {**self.inputs, "candidates": [c.to_json() for c in self.candidates],
                "front": [c.to_json() for c in self.front]}


def run_search(vanilla: Checkpoint, plan: BlockPlan, validation: Sequence[Any], where: str, options: Any,
               ctx: CombineContext) -> SearchResult:
    from harness.data import fingerprint, tokenize_records, tokenize_text
    from harness.data.corpus import load_corpus
    from harness.modeling import load_tokenizer

    base = vanilla.base_model.as_dict()
    docs = load_corpus(options.corpus, n_docs=options.corpus_docs, seed=0)
    vectors = candidate_vectors(options.alpha_grid, len(plan.blocks), options.budget, ctx.seed)
    inputs = {"blocks": [list(b) for b in plan.blocks], "block_layers": plan.describe(),
              "alpha_grid": list(options.alpha_grid), "budget": options.budget, "n_candidates": len(vectors),
              "validation": {"source": where, "n_records": len(validation), "fingerprint": fingerprint(validation),
                             "template": ctx.template, "max_seq_len": ctx.max_seq_len},
              "knowledge_proxy": {"corpus": options.corpus, "n_docs": len(docs), "fingerprint": fingerprint(docs),
                                  "seq_len": options.corpus_seq_len},
              "instruction_proxy": "mean response-token loss on the held-out records (nats)",
              "knowledge_measure": "mean token loss on the corpus (nats; perplexity = exp)"}
    key = content_key({"run": vanilla.run_key, "inputs": inputs, "vectors": vectors,
                       "version": SEARCH_VERSION})
    cached = ctx.out_dir / "search" / f"{key}.json"
    if cached.is_file():
        candidates = [Candidate.from_json(c) for c in json.loads(cached.read_text(encoding="utf-8"))]
    else:
        tokenizer = load_tokenizer(vanilla.require_base_id(), vanilla.base_model.revision)
        instruction = tokenize_records(list(validation), tokenizer, ctx.template, ctx.max_seq_len).examples  # type: ignore[arg-type]
        text = [tokenize_text(d, tokenizer, options.corpus_seq_len) for d in docs]
        if not instruction:
            raise ValueError(f"layer_averaging: no held-out record fits max_seq_len={ctx.max_seq_len}")
        scorer = ProxyScorer(vanilla.path, base, plan.block_of, instruction, text,
                             max(ctx.max_seq_len, options.corpus_seq_len), tokenizer.pad_token_id)
        candidates = [scorer.score(v) for v in vectors]
        write_text_atomic(cached, json.dumps([c.to_json() for c in candidates], indent=1))
    return SearchResult(candidates, pareto_front(candidates), inputs)
