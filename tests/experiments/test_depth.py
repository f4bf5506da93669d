"""The depth sweep, tiny: one benchmark run per depth, side by side, with receptive fields from Eq. 8."""

import json

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from img2vid.experiments.config import ExperimentConfig
from img2vid.experiments.depth import run_depth_sweep

TINY = dict(per_class=2, width=4, T=3, epochs=1, batch_size=8, seeds=2, erf_images=2, workers=1, test_limit=20,
            arms=("baseline", "baseline-xT", "dilated", "replica"))


def test_a_sweep_runs_each_depth_and_reads_them_side_by_side(tmp_path, one_thread):
    summary = run_depth_sweep(ExperimentConfig(**TINY), [1, 2], tmp_path, progress=False, log=lambda _: None)
    for name in ("sweep.json", "accuracy_vs_depth.png", "difference_vs_depth.png", "depth-1/results.json",
                 "depth-2/results.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    rows = {(row["depth"], row["arm"]): row for row in summary["rows"]}
    assert len(rows) == 8
    # Eq. 8 by hand (tests/experiments/test_networks.py): depth 1 sees 7 px, dilated 11; depth 2: 13 and 19.
    assert [rows[(d, a)]["theoretical_rf"][0] for d in (1, 2) for a in ("baseline", "dilated")] == [7, 11, 13, 19]
    # Each row is its depth's own run: the paired differences recomputed from that run's per-seed numbers.
    run = json.loads((tmp_path / "depth-1" / "results.json").read_text())
    assert run["config"]["depth"] == 1 and run["data"]["test_reads"] == 1
    per_seed = run["per_seed"]
    diffs = [a - b for a, b in zip(per_seed["replica"]["test"], per_seed["baseline-xT"]["test"])]
    assert rows[(1, "replica")]["diff_vs_baseline_xT_mean"] == pytest.approx(sum(diffs) / 2)
    assert rows[(1, "dilated")]["diff_vs_baseline_xT_mean"] is None
    assert json.loads((tmp_path / "sweep.json").read_text())["depths"] == [1, 2]


def test_bad_sweeps(tmp_path):
    for depths in ([], [0], [2, 2]):
        with pytest.raises(ValueError, match="depths must be distinct values among"):
            run_depth_sweep(ExperimentConfig(**TINY), depths, tmp_path)
    with pytest.raises(ValueError, match="small ResNet"):
        run_depth_sweep(ExperimentConfig(**{**TINY, "network": "resnet18"}), [1], tmp_path)
