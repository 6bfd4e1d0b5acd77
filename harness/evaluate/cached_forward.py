"""Forward passes of a causal LM over rows that continue cached key/values, with padding anywhere.

The shared-prefix scorer and the batched generator both run rows whose cached past has holes
(right padding of a row's shorter suffix sits between its prefix and what follows). Every
position therefore carries an explicit attention-mask bit and a logical position id, so a row's
tokens see exactly the keys (and RoPE positions) they would see in an unpadded run. Rows never
contain a query with nothing to attend to (that would put NaNs into the cache, and 0 * NaN
poisons the rows that mask it), which is why callers keep every padded row non-empty.

Only transformers' plain `DynamicCache` (every layer a `DynamicLayer`) is handled; anything else
(sliding windows, linear attention, custom caches) makes `supports_cache` false and the caller
falls back to the plain path.
"""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from transformers.cache_utils import DynamicCache, DynamicLayer

from harness.evaluate.grouped_attention import grouped_sdpa
from harness.evaluate.shared_prefix import SharedPrefix, attending_to


@dataclass
class RowCache:
    """Cached keys/values of a batch of rows, their attention-mask bits and next logical positions."""

    cache: DynamicCache | None  # None: nothing cached yet (length 0)
    mask: torch.Tensor  # [rows, length] long, 1 where a cached position is real
    next_position: torch.Tensor  # [rows] long: logical position of each row's next token
    shared: SharedPrefix | None = None  # keys/values every row continues, before its own (one copy)

    @property
    def rows(self) -> int:
        return int(self.mask.shape[0])

    @property
    def length(self) -> int:
        return int(self.mask.shape[1])

    def select(self, index: torch.Tensor, spare: int = 0) -> RowCache:
        """These rows (repeats allowed), as new tensors: the source stays usable. With `spare`, the
        keys/values get room for that many more positions, appended in place (`GrowingLayer`)."""
        cache = None
        if self.cache is not None:
            cache = _cache_from_layers([(layer.keys.index_select(0, index), layer.values.index_select(0, index))
                                        for layer in self.cache.layers], spare)
        return RowCache(cache, self.mask.index_select(0, index), self.next_position.index_select(0, index),
                        self.shared)

    def keep_first(self, length: int) -> RowCache:
        """The first `length` positions (the rest dropped; growing layers write there next)."""
        if self.cache is not None:
            for layer in self.cache.layers:
                layer.keys, layer.values = layer.keys[..., :length, :], layer.values[..., :length, :]
        return RowCache(self.cache, self.mask[:, :length], self.next_position, self.shared)


def concat_rows(first: RowCache, second: RowCache, spare: int = 0) -> RowCache:
    """Both batches as one: the shorter one's cache padded at its end (zeros, masked)."""
    length = max(first.length, second.length)
    parts = [part for part in (first, second) if part.rows]
    assert len({id(part.shared) for part in parts}) <= 1, "rows of one batch continue one shared prefix"
    if len(parts) == 1:
        part = parts[0]
        return part.select(torch.arange(part.rows, device=part.mask.device), spare) if spare else part
    masks = [F.pad(part.mask, (0, length - part.length)) for part in parts]
    layered = [part for part in parts if part.cache is not None]
    cache = None
    if layered:
        template = layered[0].cache.layers  # type: ignore[union-attr]
        cache_layers = []
        for i, layer in enumerate(template):
            keys, values = [], []
            for part in parts:
                if part.cache is None:
                    shape = (part.rows, *layer.keys.shape[1:2], length, layer.keys.shape[-1])
                    keys.append(layer.keys.new_zeros(shape))
                    values.append(layer.values.new_zeros((*shape[:3], layer.values.shape[-1])))
                    continue
                own = part.cache.layers[i]
                keys.append(F.pad(own.keys, (0, 0, 0, length - part.length)))
                values.append(F.pad(own.values, (0, 0, 0, length - part.length)))
            cache_layers.append((torch.cat(keys), torch.cat(values)))
        cache = _cache_from_layers(cache_layers, spare)
    return RowCache(cache, torch.cat(masks), torch.cat([part.next_position for part in parts]), parts[0].shared)


def empty_rows(rows: int, device: torch.device, shared: SharedPrefix | None = None) -> RowCache:
    """Rows with nothing of their own cached yet (after `shared`'s positions, when given)."""
    start = shared.length if shared is not None else 0
    return RowCache(None, torch.zeros(rows, 0, dtype=torch.long, device=device),
                    torch.full((rows,), start, dtype=torch.long, device=device), shared)


def _cache_from_layers(layers: Sequence[tuple[torch.Tensor, torch.Tensor]], spare: int = 0) -> DynamicCache:
    cache = DynamicCache()
    for keys, values in layers:
        layer = GrowingLayer(spare) if spare else DynamicLayer()
        layer.lazy_initialization(keys, values)
        if spare:
            layer.update(keys, values)
        else:
            layer.keys, layer.values = keys, values
        cache.layers.append(layer)
    return cache


class GrowingLayer(DynamicLayer):
    """A cache layer whose keys/values are the front of larger buffers: a decode step writes its
    positions in place instead of copying the whole cache (`torch.cat`) as `DynamicLayer` does."""

    def __init__(self, spare: int) -> None:
        super().__init__()
        self.spare = spare
        self._keys: torch.Tensor | None = None
        self._values: torch.Tensor | None = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        length = self.get_seq_length()
        needed = length + key_states.shape[-2]
        if self._keys is None or needed > self._keys.shape[-2]:
            self._reserve(needed + self.spare, length, key_states, value_states)
        assert self._keys is not None and self._values is not None
        self._keys[..., length:needed, :] = key_states
        self._values[..., length:needed, :] = value_states
        self.keys, self.values = self._keys[..., :needed, :], self._values[..., :needed, :]
        return self.keys, self.values

    def _reserve(self, capacity: int, length: int, new_keys: torch.Tensor, new_values: torch.Tensor) -> None:
        self._keys = new_keys.new_empty((*new_keys.shape[:-2], capacity, new_keys.shape[-1]))
        self._values = new_values.new_empty((*new_values.shape[:-2], capacity, new_values.shape[-1]))
        if length:
            assert self.keys is not None and self.values is not None
            self._keys[..., :length, :] = self.keys[..., :length, :]
            self._values[..., :length, :] = self.values[..., :length, :]


def pad_right(sequences: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids [rows, longest] and their mask, each row's tokens first."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, tokens in enumerate(sequences):
        ids[row, :len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        mask[row, :len(tokens)] = 1
    return ids.to(device), mask.to(device)


class CachedForward:
    """One model's forward over (past rows, new right-padded tokens), timing each call for the batch tuner."""

    def __init__(self, model: Any, device: torch.device, autocast_dtype: torch.dtype | None = None,
                 pad_id: int = 0) -> None:
        self.model = model
        self.device = device
        self.autocast_dtype = autocast_dtype
        self.pad_id = pad_id
        inner = model.get_base_model() if hasattr(model, "get_base_model") else model
        self._keeps_logits = "logits_to_keep" in inspect.signature(inner.forward).parameters

    def __call__(self, past: RowCache, tokens: Sequence[Sequence[int]],
                 logits: bool = True) -> tuple[torch.Tensor | None, RowCache]:
        """Run `tokens` (one list per row of `past`, none empty) after `past`.

        Returns logits [rows, longest, vocab] (None when `logits` is false) and the rows' cache
        extended by the new positions (padding included, masked).
        """
        ids, new_mask = pad_right(tokens, self.pad_id, self.device)
        mask = torch.cat([past.mask, new_mask], dim=1)
        positions = past.next_position[:, None] + torch.arange(ids.shape[1], device=self.device)[None, :]
        kwargs: dict[str, Any] = {}
        if not logits and self._keeps_logits:
            kwargs["logits_to_keep"] = 1
        cache = past.cache if past.cache is not None else DynamicCache()
        with self.running(), attending_to(past.shared):
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                             past_key_values=cache, use_cache=True, **kwargs)
        if past.shared is not None and past.shared.reads != len(past.shared.keys):
            raise RuntimeError(f"the model attended to the shared prefix in {past.shared.reads} of "
                               f"{len(past.shared.keys)} layers")
        lengths = new_mask.sum(dim=1)
        extended = RowCache(out.past_key_values, mask, past.next_position + lengths, past.shared)
        return (out.logits if logits else None), extended

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the model computes in (its autocast dtype, else its weights')."""
        return self.autocast_dtype or next(self.model.parameters()).dtype

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """How the engines run the model: no gradients, its autocast, grouped-query attention in place."""
        with torch.no_grad(), self.autocast(), grouped_sdpa():
            yield

    def autocast(self) -> Any:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def clock(self) -> float:
        """CPU seconds of this process on CPU (what a shared machine is billed in), wall time on a GPU."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return time.perf_counter()
        return time.process_time()


def attention_window(config: Any) -> int | None:
    """The fewest earlier tokens a query attends to in some layer (sliding-window or chunked attention);
    None where every layer attends to the whole sequence.

    transformers applies a window only to the masks it builds itself, counting cache slots, not logical
    positions; the engines pass their own masks and leave padding holes in the cache, so a sequence longer
    than the window would be scored as if the window were not there (silently different numbers).
    """
    if hasattr(config, "get_text_config"):
        config = config.get_text_config()
    layer_types = getattr(config, "layer_types", None)
    if layer_types and all(kind == "full_attention" for kind in layer_types):
        return None  # a window size set but unused (Qwen2 without use_sliding_window)
    sizes = (getattr(config, "sliding_window", None), getattr(config, "attention_chunk_size", None))
    windows = [w for w in sizes if isinstance(w, int) and w > 0]
    return min(windows) if windows else None


def supports_cache(cache: Any) -> bool:
    """Whether a forward's returned cache is one `RowCache` can select rows of."""
    return isinstance(cache, DynamicCache) and all(type(layer) in (DynamicLayer, GrowingLayer)
                                                   for layer in cache.layers)


class BatchTuner:
    """Padded tokens per forward, chosen by measured throughput (no probing passes).

    Starts at `start` and doubles while a budget's measured tokens per second beats the previous
    one's by 5 %, up to `limit`; the answers do not depend on it, only the speed.
    """

    def __init__(self, start: int = 512, limit: int = 8192, trials: int = 3) -> None:
        self.budget = start
        self.limit = limit
        self._trials = trials
        self._tokens = 0
        self._seconds = 0.0
        self._calls = 0
        self._previous_rate = 0.0
        self.settled = False

    def observe(self, tokens: int, seconds: float) -> None:
        if self.settled:
            return
        self._tokens += tokens
        self._seconds += max(seconds, 1e-9)
        self._calls += 1
        if self._calls < self._trials:
            return
        rate = self._tokens / self._seconds
        if rate < self._previous_rate * 1.05 and self._previous_rate > 0:
            self.budget //= 2
            self.settled = True
        elif self.budget * 2 > self.limit:
            self.settled = True
        else:
            self._previous_rate = rate
            self.budget *= 2
        self._tokens, self._seconds, self._calls = 0, 0.0, 0
