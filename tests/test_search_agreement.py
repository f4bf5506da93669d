"""benchmarks/search_agreement.py: agreement and the search-level interval, checked by hand."""

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "search_agreement.py"
spec = importlib.util.spec_from_file_location("search_agreement", SCRIPT)
search_agreement = importlib.util.module_from_spec(spec)
spec.loader.exec_module(search_agreement)


def _run(seed, genotype, argmax, val, threads=1):
    margins = [{"edge": 0, "op": "identity", "within_noise": True}, {"edge": 1, "op": "rotate", "within_noise": False}]
    return {"search": {"seed": seed, "genotype": genotype, "argmax": argmax, "network_val_accuracy": 0.7,
                       "baseline_val_accuracy": 0.75, "selection_val_drop": 0.01, "margins": margins,
                       "search_s": 100.0, "time_ratio": 8.0},
            "val_accuracy": val, "candidates": {"baseline": None, "perturbation": genotype, "arg-max": argmax},
            "config": {"image_size": 28, "epochs": 40}, "machine": {"torch_threads": threads}}


def test_agreement_and_search_level_interval(tmp_path):
    runs = [
        _run(0, "translate_x:0.05,rotate:5", "identity,identity",
             {"baseline": [0.70, 0.72], "perturbation": [0.72, 0.74], "arg-max": [0.70, 0.73]}),  # +2 points
        _run(1, "translate_x:0.05,scale:1.05", "identity,identity",
             {"baseline": [0.70, 0.72], "perturbation": [0.74, 0.76], "arg-max": [0.70, 0.73]}),  # +4 points
    ]
    text = search_agreement.render(runs, ["a.json", "b.json"])
    # Edge 0 agrees (translate_x both times), edge 1 splits: shares 100 % and 50 %, mean 75 %.
    assert "averages 75% (e0 translate_x 100%, e1 " in text
    assert "all identical" in text  # the arg-max genotypes
    # The unit is the search: differences +2 and +4 points, mean +3, std sqrt(2), t(0.975, 1) = 12.706.
    half = 12.7062 * math.sqrt(2) / math.sqrt(2)
    assert f"+3.0 [{3 - half:+.1f}, {3 + half:+.1f}] | 2 searches | no difference resolved |" in text
    # Mean over all four runs of the perturbation arm: 74; the search means 73 and 75, std 1.4.
    assert "| perturbation | 74.0 ± 1.6 | 1.4 |" in text
    # Both searches chose the same arg-max genotype: the interval is over its two training seeds,
    # differences 0 and +1 points: mean +0.5, std 0.707, half-width 12.706 * 0.707 / sqrt(2) = 6.35.
    assert "| arg-max | 71.5 ± 1.7 | 0.0 | +0.5 [-5.9, +6.9] | 2 training seeds (one genotype) |" in text


def test_command_line(tmp_path):
    paths = []
    for seed in (0, 1):
        path = tmp_path / f"s{seed}.json"
        path.write_text(json.dumps(_run(seed, "rotate:5", "identity", {"baseline": [0.5], "random": [0.6]})))
        paths.append(str(path))
    out = subprocess.run([sys.executable, str(SCRIPT), *paths], capture_output=True, text=True, check=True).stdout
    assert "| random | 60.0 ± 0.0 | 0.0 | +10.0 [+10.0, +10.0] | 2 searches | better |" in out


def test_runs_of_different_experiments_are_refused(tmp_path):
    one = _run(0, "rotate:5", "identity", {"baseline": [0.5], "random": [0.6]})
    other = _run(1, "rotate:5", "identity", {"baseline": [0.5], "random": [0.6]}, threads=2)
    other["config"]["epochs"] = 20
    paths = []
    for i, run in enumerate((one, other)):
        paths.append(tmp_path / f"s{i}.json")
        paths[-1].write_text(json.dumps(run))
    result = subprocess.run([sys.executable, str(SCRIPT), *map(str, paths)], capture_output=True, text=True)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "configurations differ in epochs" in result.stderr
    with pytest.raises(ValueError, match=r"not a file written by examples/das_search\.py"):
        search_agreement.render([{"search": {}}], ["x.json"])
