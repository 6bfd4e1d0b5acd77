"""Damaged checkpoints: every command that opens one (eval, merge, serve, a resumed training) fails in
one line with exit code 2, naming the file and what to do; content hashes leave out volatile fields,
so identical work hashes identically."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import run_atax
from model_fixtures import job

from harness.checkpoint import MANIFEST, Checkpoint, content_hash, find_complete
from harness.checkpoint_payload import ADAPTER_CONFIG, ADAPTER_WEIGHTS
from harness.errors import UserError
from harness.train.engine import train


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Checkpoint:
    return train(job(tmp_path_factory.mktemp("trained"), "a", max_steps=2))


def damage(checkpoint: Checkpoint, tmp_path: Path, how: str) -> tuple[Path, Path]:
    """A copy of the checkpoint damaged as a careless user or a full disk would; (copy, damaged file)."""
    copy = tmp_path / f"ckpt-{how}"
    shutil.copytree(checkpoint.path, copy)
    if how == "truncated":
        weights = copy / ADAPTER_WEIGHTS
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        return copy, weights
    if how == "garbage_manifest":
        (copy / MANIFEST).write_bytes(b"\x00garbage{{")
        return copy, copy / MANIFEST
    (copy / ADAPTER_CONFIG).unlink()
    return copy, copy / ADAPTER_CONFIG


CASES = ["truncated", "garbage_manifest", "no_adapter_config"]


@pytest.mark.parametrize("how", CASES)
def test_load_refuses_a_damaged_checkpoint_in_one_line(trained: Checkpoint, tmp_path: Path, how: str) -> None:
    copy, damaged = damage(trained, tmp_path, how)
    with pytest.raises(UserError) as caught:
        Checkpoint.load(copy)
    assert str(caught.value).startswith(str(damaged)) and "\n" not in str(caught.value)
    assert "re-create" in str(caught.value) or "delete it" in str(caught.value)
    # A training resumed into the damaged directory redoes it instead of reusing or crashing on it.
    assert find_complete(copy, trained.run_key or "") is None


def test_malformed_manifest_fields_name_the_field(trained: Checkpoint, tmp_path: Path) -> None:
    copy = tmp_path / "ckpt"
    shutil.copytree(trained.path, copy)
    manifest = json.loads((copy / MANIFEST).read_text())
    for field, value, message in (("base_model", "llama", "base_model must be an object"),
                                  ("kind", "weights", "kind must be one of"),
                                  ("merge", {"inputs": []}, "merge.op is missing")):
        (copy / MANIFEST).write_text(json.dumps({**manifest, field: value}))
        with pytest.raises(UserError, match=f"^{copy / MANIFEST}: {message}"):
            Checkpoint.load(copy)


@pytest.mark.parametrize("how", CASES)
def test_atax_eval_of_a_damaged_checkpoint_exits_2_in_one_line(trained: Checkpoint, tmp_path: Path,
                                                                how: str) -> None:
    copy, damaged = damage(trained, tmp_path, how)
    results = tmp_path / "results"
    result = run_atax("eval", str(copy), "--suite", "knowledge", "--benchmarks", "arc_challenge", "--data-dir",
                      "builtin:toy-knowledge", "--limit", "1", "--results", str(results))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(damaged) in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_atax_merge_and_serve_refuse_a_damaged_checkpoint(trained: Checkpoint, tmp_path: Path) -> None:
    truncated, weights = damage(trained, tmp_path, "truncated")
    merged = run_atax("merge", str(trained.path), str(truncated), "--out", str(tmp_path / "merged"))
    assert merged.returncode == 2 and merged.stderr.count("\n") == 1 and str(weights) in merged.stderr
    assert not (tmp_path / "merged").exists()  # nothing half-written
    garbage, manifest = damage(trained, tmp_path, "garbage_manifest")
    served = run_atax("serve", str(garbage), "--port", "1", "--quiet", timeout=60)
    assert served.returncode == 2 and served.stderr.count("\n") == 1 and str(manifest) in served.stderr


def test_identical_trainings_hash_identically(trained: Checkpoint, tmp_path: Path) -> None:
    again = train(job(tmp_path, "a", max_steps=2))  # the same job, trained again elsewhere
    first, second = (json.loads((c.path / MANIFEST).read_text()) for c in (trained, again))
    first["metrics"]["wall_time_s"] = second["metrics"]["wall_time_s"] + 1.0  # times always differ in practice
    (trained.path / MANIFEST).write_text(json.dumps(first, indent=2, sort_keys=True))
    assert (again.path / ADAPTER_WEIGHTS).read_bytes() == (trained.path / ADAPTER_WEIGHTS).read_bytes()
    assert Checkpoint.load(trained.path).content_hash() == again.content_hash()
    weights = again.path / ADAPTER_WEIGHTS
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit of a weight: a different checkpoint
    weights.write_bytes(bytes(data))
    assert content_hash(again.path) != content_hash(trained.path)


def test_train_out_writes_each_variant_of_a_multi_checkpoint_method(tmp_path: Path) -> None:
    exp = {"name": "variants", "base_model": {"id": "builtin:tiny-llama"},
           "data": {"source": "builtin:toy-instructions", "max_samples": 16},
           "training": {"batch_size": 8, "max_seq_len": 128, "max_steps": 1}, "results_dir": "res",
           "methods": [{"name": "scaled_vanilla", "options": {"alphas": [0.5, 1.0]}}]}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(exp))
    out = tmp_path / "out"
    result = run_atax("train", "--config", str(tmp_path / "exp.yaml"), "--method", "scaled_vanilla", "--out",
                      str(out), "--quiet", timeout=300)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["alpha=0.5", "alpha=1"]
    assert [Checkpoint.load(out / name).variant for name in ("alpha=0.5", "alpha=1")] == ["alpha=0.5", "alpha=1"]
    assert f"scaled_vanilla[alpha=0.5] seed 0: {out / 'alpha=0.5'}" in result.stdout
