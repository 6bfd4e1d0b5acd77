"""The README's "Add your method" example is real: installed as a plug-in distribution it is
listed, validated, planned and trained like a built-in method."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from conftest import run_atax

README = Path(__file__).parent.parent / "README.md"


def example_code() -> str:
    text = README.read_text(encoding="utf-8")
    block = text.split("<!-- example-method -->", 1)[1]
    return re.search(r"```python\n(.*?)```", block, re.S).group(1)


def test_readme_method_example_is_a_working_plugin(tmp_path):
    code = example_code()
    assert len(code.splitlines()) < 50
    package = tmp_path / "my_methods"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "short.py").write_text(code)
    dist = tmp_path / "my_methods-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-methods\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[atax.methods]\nshort = my_methods.short:ShortResponses\n")

    listed = json.loads(run_atax("methods", "--json", extra_pythonpath=tmp_path).stdout)
    assert {"name": "short", "description": "SFT on the samples with the shortest responses."} in listed

    exp = {"name": "readme", "base_model": {"id": "builtin:tiny-llama"},
           "data": {"source": "builtin:toy-instructions", "max_samples": 40},
           "training": {"batch_size": 8, "max_seq_len": 160, "max_steps": 2, "scheduler": {"warmup_steps": 1}},
           "methods": ["vanilla", {"name": "short", "options": {"keep": 0.3}}], "results_dir": "res"}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(exp))
    result = run_atax("train", "--config", str(tmp_path / "exp.yaml"), "--method", "short", "--quiet",
                      extra_pythonpath=tmp_path)
    assert result.returncode == 0, result.stderr
    (manifest,) = [json.loads(p.read_text()) for p in (tmp_path / "res" / "runs").glob("*/checkpoint.json")]
    assert manifest["data"]["n_records"] == 12
    bad = run_atax("config", "check", str(tmp_path / "exp.yaml"), extra_pythonpath=tmp_path)
    assert bad.returncode == 0
    exp["methods"][1]["options"]["keep"] = 0
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(exp))
    bad = run_atax("config", "check", str(tmp_path / "exp.yaml"), extra_pythonpath=tmp_path)
    assert bad.returncode == 2 and "methods[1].options.keep: must be > 0 (got 0)" in bad.stderr


def example_pyproject() -> str:
    block = README.read_text(encoding="utf-8").split("<!-- example-method -->", 1)[1]
    return re.search(r"```toml\n(.*?)```", block, re.S).group(1)


def test_readme_pyproject_is_complete_enough_for_pip(tmp_path):
    """pip builds the README's plug-in project as written, and the installed entry point lists the method."""
    import subprocess
    import sys

    project = tmp_path / "my-methods"
    (project / "my_methods").mkdir(parents=True)
    (project / "pyproject.toml").write_text(example_pyproject())
    (project / "my_methods" / "__init__.py").write_text("")
    (project / "my_methods" / "short.py").write_text(example_code())
    site = tmp_path / "site"
    built = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                            "--no-index", "--target", str(site), str(project)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-2000:]
    listed = json.loads(run_atax("methods", "--json", extra_pythonpath=site).stdout)
    assert any(m["name"] == "short" for m in listed)
