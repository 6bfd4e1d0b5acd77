"""Dispersal: split instruction data into K disjoint clusters (DTM's 'disperse' step).

- random: a seeded permutation cut into K parts whose sizes differ by at most one.
- kmeans: scikit-learn k-means (seeded) on L2-normalised embeddings of the instruction, the
  response, or both (the paper's I / R / I+R).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from harness.atomic import write_text_atomic
from harness.data.records import InstructionRecord
from harness.errors import UserError

Strategy = Literal["random", "kmeans"]


def random_clusters(n: int, k: int, seed: int) -> list[int]:
    """Cluster id per sample: a seeded permutation dealt into K near-equal parts."""
    if k < 1 or k > n:
        raise UserError(f"k: must be between 1 and the number of samples ({n}); got {k}")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    labels = [0] * n
    for position, index in enumerate(order):
        labels[index] = position * k // n  # contiguous slices of the permutation: sizes differ by <= 1
    return labels


def kmeans_clusters(embeddings: np.ndarray, k: int, seed: int, source: str = "the data") -> list[int]:
    from sklearn.cluster import KMeans

    if k < 1 or k > len(embeddings):
        raise UserError(f"k: must be between 1 and the number of samples ({len(embeddings)}); got {k}")
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    unit = embeddings / np.clip(norms, 1e-12, None)
    labels = KMeans(n_clusters=k, random_state=seed, n_init=10).fit_predict(unit).tolist()
    sizes = np.bincount(labels, minlength=k)
    if (sizes == 0).any():
        empty = [int(i) for i in np.flatnonzero(sizes == 0)]
        raise UserError(f"k-means with k={k} on {source} left cluster(s) {empty} empty; "
                        "choose a smaller k or use dispersal: random")
    return [int(x) for x in labels]


def disperse(records: Sequence[InstructionRecord], k: int, strategy: Strategy, seed: int, *,
             encode: str = "instruction", embed_model: str | None = None, embedding: str = "sentence",
             base_model: str | None = None, source: str = "the data") -> list[int]:
    if strategy == "random":
        return random_clusters(len(records), k, seed)
    from dtm_method.embeddings import MINILM, base_model_embeddings, sentence_embeddings, texts_to_encode

    texts = texts_to_encode(records, encode)  # type: ignore[arg-type]
    if embedding == "base_model":
        if base_model is None:
            raise UserError("embedding: base_model needs the experiment's base model")
        vectors = base_model_embeddings(texts, base_model)
    else:
        vectors = sentence_embeddings(texts, embed_model or MINILM)
    return kmeans_clusters(vectors, k, seed, source)


def write_assignments(path: Path, labels: Sequence[int]) -> None:
    """One JSON line per sample: its index in the data and its cluster."""
    write_text_atomic(Path(path), "".join(json.dumps({"index": i, "cluster": c}) + "\n" for i, c in enumerate(labels)))
