"""Registries (duplicates, lazy entries, entry points) and the small CLI commands."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import PLUGIN_DIST, run_atax

from harness.errors import UserError
from harness.registry import Registry


def test_duplicate_name_raises():
    reg = Registry("thing", "atax.tests.none")
    reg.register("a", "json:dumps")
    with pytest.raises(UserError, match="thing 'a' is registered twice: by code and by code"):
        reg.register("a", "json:loads")


def test_lazy_entry_is_imported_on_first_get_only():
    reg = Registry("thing", "atax.tests.none")
    reg.register("mod", "tests_lazy_target_that_does_not_exist:obj")
    assert reg.names() == ["mod"]  # listing names does not import
    with pytest.raises(UserError, match="thing 'mod' .* cannot be loaded: No module named"):
        reg.get("mod")
    reg.register("dumps", "json:dumps")
    assert reg.get("dumps") is json.dumps


def test_unknown_name_lists_known_ones():
    reg = Registry("thing", "atax.tests.none")
    reg.register("b", "json:dumps")
    with pytest.raises(UserError, match="unknown thing 'zz'; known: b"):
        reg.get("zz")


def test_entry_points_are_found(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGIN_DIST))
    reg = Registry("method", "atax.methods")
    assert {"vanilla", "toy_soup"} <= set(reg.names())
    described = {row["name"]: row["description"] for row in reg.describe()}
    assert described["toy_soup"] == "Test plug-in: k runs on all data, the first checkpoint kept."


def test_same_entry_point_seen_twice_is_not_a_clash(monkeypatch, tmp_path):
    # An editable install can expose one distribution through two metadata directories.
    copy = tmp_path / "atax_dummy_plugin-0.1.dist-info"
    copy.mkdir()
    for name in ("METADATA", "entry_points.txt"):
        (copy / name).write_text((PLUGIN_DIST / "atax_dummy_plugin-0.1.dist-info" / name).read_text())
    monkeypatch.syspath_prepend(str(PLUGIN_DIST))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "toy_soup" in Registry("method", "atax.methods").names()


def test_two_plugins_claiming_one_name_clash(monkeypatch, tmp_path):
    other = tmp_path / "other_plugin-0.2.dist-info"
    other.mkdir()
    (other / "METADATA").write_text("Metadata-Version: 2.1\nName: other-plugin\nVersion: 0.2\n")
    (other / "entry_points.txt").write_text("[atax.methods]\ntoy_soup = other_plugin:Soup\n")
    monkeypatch.syspath_prepend(str(PLUGIN_DIST))
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UserError, match="method 'toy_soup' is registered twice: by .* and by .*uninstall one"):
        Registry("method", "atax.methods").names()


def test_methods_json_lists_vanilla_and_the_plugin():
    plain = run_atax("methods", "--json")
    assert plain.returncode == 0, plain.stderr
    rows = json.loads(plain.stdout)
    assert {"name": "vanilla", "description": "Plain supervised fine-tuning (LoRA) on all instruction data."} in rows
    assert all(set(row) == {"name", "description"} for row in rows)
    with_plugin = json.loads(run_atax("methods", "--json", extra_pythonpath=PLUGIN_DIST).stdout)
    assert [r["name"] for r in with_plugin] == sorted(r["name"] for r in with_plugin)
    assert {"vanilla", "toy_soup"} <= {r["name"] for r in with_plugin}


def test_help_and_listing_do_not_import_torch():
    code = (
        "import sys\nfrom harness.cli import main\n"
        "for argv in (['atax', '--help'], ['atax', 'methods', '--json'], ['atax', 'suites']):\n"
        "    sys.argv = argv\n"
        "    try:\n        main()\n    except SystemExit:\n        pass\n"
        "print('torch imported' if 'torch' in sys.modules else 'torch not imported', file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stderr.strip().endswith("torch not imported"), result.stderr


def test_init_writes_an_example_that_checks(tmp_path):
    out = tmp_path / "exp.yaml"
    assert run_atax("init", "--out", str(out)).returncode == 0
    check = run_atax("config", "check", str(out))
    assert check.returncode == 0, check.stderr
    again = run_atax("init", "--out", str(out))
    assert again.returncode == 2
    assert again.stderr == f"error: {out}: already exists; pass --force to overwrite or choose another --out\n"
    assert run_atax("init", "--out", str(out), "--force").returncode == 0


def test_doctor_reports_as_json(tmp_path):
    result = run_atax("doctor", "--json", "--results", str(tmp_path / "res"))
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    assert checks["torch"]["status"] == "ok"
    assert checks["offline mode"]["detail"].startswith("on")  # the tests run with HF_HUB_OFFLINE=1
    assert checks["results dir"]["status"] == "ok"
    assert not (tmp_path / "res").exists()  # the probe creates nothing
    assert checks["cuda"]["status"] in ("ok", "warn")
    assert result.returncode == (1 if any(c["status"] == "fail" for c in checks.values()) else 0)


def test_doctor_flags_an_unwritable_results_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")  # a file where a directory should be: nobody, root included, can write in it
    result = run_atax("doctor", "--json", "--results", str(blocker / "res"))
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    assert checks["results dir"]["status"] == "fail"
    assert result.returncode == 1


def test_python_dash_m_harness_is_the_cli():
    result = subprocess.run([sys.executable, "-m", "harness", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "alignment-tax" in result.stdout
