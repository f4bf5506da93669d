"""The whole run, tiny: protocol order (test split read once, after all training), pairing, files, fields."""

import csv
import json
import shutil
import subprocess

import pytest
import torch

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from img2vid import Genotype
from img2vid.experiments import benchmark, config, training
from img2vid.experiments.arms import ARMS
from img2vid.experiments.config import ExperimentConfig, preset
from img2vid.experiments.report import summarize, verdict

TINY = dict(per_class=2, width=4, T=3, epochs=1, batch_size=8, seeds=2, nodes=1, warmup_epochs=1, search_epochs=1,
            fine_tune_epochs=0, recalibrate_images=8, erf_images=2, workers=1, test_limit=40)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Run every arm, recording the order of events: each training run (with its model's first weights
    and the batches it sees) and the test split's read."""
    events, starts = [], []
    real_train, real_load = training.train, config.load_task

    def recording_train(model, x, y, recipe, seed, **kwargs):
        events.append("train")
        weights = {k: v.detach().clone() for k, v in model.state_dict().items()
                   if k in ("conv1.weight", "fc.weight")}
        starts.append((seed, weights, torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))))
        return real_train(model, x, y, recipe, seed, **kwargs)

    def recording_load(*args, **kwargs):
        task = real_load(*args, **kwargs)
        load = task.load_test
        task.load_test = lambda: (events.append("test"), load())[1]
        return task

    patch = pytest.MonkeyPatch()
    patch.setattr(benchmark, "train", recording_train)
    patch.setattr(config, "load_task", recording_load)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("bench")
    lines = []
    try:
        result = benchmark.run_benchmark(ExperimentConfig(**TINY), out, progress=False, log=lines.append)
    finally:
        patch.undo()
        torch.set_num_threads(threads)
    return result, out, events, starts, lines


def test_the_test_split_is_read_once_after_all_training(tiny_run):
    result, _, events, _, _ = tiny_run
    assert events.count("test") == 1 and result["data"]["test_reads"] == 1
    assert events.index("test") == len(events) - 1  # after every training run, the search's included
    assert events.count("train") == 2 * len(ARMS)  # every arm on every seed (the search trains inside its module)


def test_arms_share_initialisation_and_data_order_per_seed(tiny_run):
    _, _, _, starts, _ = tiny_run
    assert len(starts) == 2 * len(ARMS)
    by_seed = {}
    for seed, weights, order in starts:
        by_seed.setdefault(seed, []).append((weights, order))
    for runs in by_seed.values():
        first_weights, first_order = runs[0]
        enlarged = 0
        for weights, order in runs[1:]:
            assert torch.equal(weights["fc.weight"], first_weights["fc.weight"]) and torch.equal(order, first_order)
            if weights["conv1.weight"].shape[-1] == 5:  # large-kernel: its 5x5 kernels are its own
                enlarged += 1
            else:
                assert torch.equal(weights["conv1.weight"], first_weights["conv1.weight"])
        assert enlarged == 1
    assert not torch.equal(by_seed[0][0][0]["conv1.weight"], by_seed[1][0][0]["conv1.weight"])


def test_results_files_and_stable_names(tiny_run):
    _, out, _, _, lines = tiny_run
    for name in ("results.json", "results.csv", "per_seed.csv", "genotype.json", "arms.png", "clips.png",
                 "receptive_fields.png"):
        assert (out / name).stat().st_size > 0, name
    saved = json.loads((out / "results.json").read_text())
    assert [row["arm"] for row in saved["table"]] == list(ARMS)
    for row in saved["table"]:
        for key in ("arm", "test_acc_mean", "test_acc_std", "diff_vs_baseline_mean", "diff_vs_baseline_ci95",
                    "wins_vs_baseline", "seeds", "wall_s"):
            assert key in row
        assert 0.0 <= row["test_acc_mean"] <= 1.0 and row["seeds"] == 2 and len(row["diff_vs_baseline_ci95"]) == 2
    for key in ("search", "config", "machine", "per_seed"):
        assert key in saved
    for key in ("network_val_accuracy", "baseline_val_accuracy", "selection_val_drop", "margins", "time_ratio",
                "genotype", "argmax"):
        assert key in saved["search"]
    # The table is the per-seed accuracies summarised: recompute the das row's difference from them.
    per_seed = saved["per_seed"]
    diffs = [a - b for a, b in zip(per_seed["das"]["test"], per_seed["baseline"]["test"])]
    das = next(row for row in saved["table"] if row["arm"] == "das")
    assert das["diff_vs_baseline_mean"] == pytest.approx(sum(diffs) / 2)
    assert Genotype.from_json((out / "genotype.json").read_text()) == Genotype.parse(saved["search"]["genotype"])
    with open(out / "per_seed.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 2 * len(ARMS)
    # The random arm has the searched genotype's number of moves.
    searched = Genotype.parse(saved["genotypes"]["das"][0])
    random = Genotype.parse(saved["genotypes"]["random"][0])
    assert sum(n != "identity" for n, _ in random) == sum(n != "identity" for n, _ in searched)
    assert any("Against the baseline" in line for line in lines)


def test_worker_processes_give_the_numbers_of_a_run_here(tiny_run, tmp_path):
    """Every job seeds itself: two workers at one thread each give what one process at one thread gave."""
    result, *_ = tiny_run
    parallel = benchmark.run_benchmark(ExperimentConfig(**{**TINY, "workers": 2}), tmp_path, progress=False,
                                       log=lambda _: None)
    assert parallel["machine"]["workers"] == 2 and parallel["machine"]["threads_per_worker"] == 1
    for arm in ARMS:
        for field in ("test", "val", "train", "genotype", "rf"):
            assert parallel["per_seed"][arm][field] == result["per_seed"][arm][field], (arm, field)
    assert parallel["search"]["genotype"] == result["search"]["genotype"]


def test_receptive_fields_and_equal_compute_in_the_results(tiny_run):
    _, out, *_ = tiny_run
    saved = json.loads((out / "results.json").read_text())
    rf = {row["arm"]: row for row in saved["receptive_fields"]}
    assert list(rf) == list(ARMS)
    # Eq. 8 read from each arm's network (the small ResNet at depth 2: 13; dilated last block: 19; 5x5: 25).
    assert rf["baseline"]["theoretical_rf"] == [13, 13] == rf["das"]["theoretical_rf"]
    assert rf["dilated"]["theoretical_rf"] == [19, 19] and rf["large-kernel"]["theoretical_rf"] == [25, 25]
    for row in rf.values():
        for view in ("frame", "clip"):
            assert 0 <= row[f"{view}_r50_mean"] <= row[f"{view}_r90_mean"] and row[f"{view}_anisotropy_mean"] >= 1
    # A 2D arm's two views are one map; the per-seed numbers are what the row summarises.
    per_seed = saved["per_seed"]
    for measured in per_seed["baseline"]["rf"]:
        assert measured["frame"] == measured["clip"]
    r90 = [m["clip"]["r90"] for m in per_seed["das"]["rf"]]
    assert rf["das"]["clip_r90_mean"] == pytest.approx(sum(r90) / 2)
    # Video arms are compared with baseline-xT too; 2D arms are not.
    rows = {row["arm"]: row for row in saved["table"]}
    matched = [a - b for a, b in zip(per_seed["das"]["test"], per_seed["baseline-xT"]["test"])]
    assert rows["das"]["diff_vs_baseline_xT_mean"] == pytest.approx(sum(matched) / 2)
    assert rows["dilated"]["diff_vs_baseline_xT_mean"] is None and rows["baseline"]["verdict_vs_baseline_xT"] is None
    assert "At equal compute, against baseline-xT: augment:" in saved["verdict"]


def test_several_search_seeds_report_their_agreement(tmp_path, one_thread):
    config = ExperimentConfig(**{**TINY, "arms": ("baseline", "das"), "search_seeds": 2})
    result = benchmark.run_benchmark(config, tmp_path, progress=False, log=lambda _: None)
    search = result["search"]
    assert len(search["searches"]) == 2 and {s["seed"] for s in search["searches"]} == {0, 1}
    agreement = search["agreement"]
    assert len(agreement["per_edge"]) == 1 and agreement["per_edge"][0]["share"] in (0.5, 1.0)
    assert len(agreement["corner_motion_px"]) == 2
    # Training seed s retrains the genotype of search s mod 2.
    assert result["per_seed"]["das"]["genotype"] == [s["genotype"] for s in search["searches"]]


def test_the_fit_is_read_on_every_training_image_or_on_as_many_as_the_validation_split_holds():
    assert torch.equal(benchmark._fit_sample(20, 20, seed=3), torch.arange(20))
    assert torch.equal(benchmark._fit_sample(5, 20, seed=3), torch.arange(5))
    drawn = benchmark._fit_sample(1000, 30, seed=3)
    assert len(drawn) == len(set(drawn.tolist())) == 30 and 0 <= int(drawn.min()) and int(drawn.max()) < 1000
    assert torch.equal(drawn, benchmark._fit_sample(1000, 30, seed=3))  # the seed's own draw
    assert not torch.equal(drawn, benchmark._fit_sample(1000, 30, seed=4))


def test_evaluations_run_in_batches_of_the_training_batch_size(tmp_path, monkeypatch, one_thread):
    sizes = []
    real = benchmark.evaluate

    def recording(model, x, y, batch_size=256):
        sizes.append((len(y), batch_size))
        return real(model, x, y, batch_size)

    monkeypatch.setattr(benchmark, "evaluate", recording)
    run = ExperimentConfig(**{**TINY, "per_class": 3, "val_per_class": 2, "seeds": 1, "arms": ("baseline",),
                              "batch_size": 4})
    benchmark.run_benchmark(run, tmp_path / "out", progress=False, log=lambda line: None)
    # train (30 images) is read on 20 of them, as many as validation; then validation; then the test split
    assert sizes == [(20, 4), (20, 4), (40, 4)]


def test_agreement_by_hand():
    out = benchmark.agreement(["translate_x:0.1,identity", "translate_x:0.1,rotate:5", "scale:1.05,rotate:5"], 20)
    assert [e["share"] for e in out["per_edge"]] == pytest.approx([2 / 3, 2 / 3])
    assert out["per_edge"][0]["most_common"] == "translate_x"
    # translate_x:0.1 at 20 px moves every pixel 2 px right; the identity step moves nothing.
    assert out["corner_motion_px"][0] == pytest.approx(2.0)
    assert not out["identical"]


def test_config_and_presets():
    assert preset("fashion-mnist").per_class >= 50 and preset("digits").seeds >= 5
    quick = preset("fashion-mnist", quick=True)
    assert quick.epochs < preset("fashion-mnist").epochs
    assert preset("digits", seeds=7, epochs=None).seeds == 7
    with pytest.raises(ValueError, match="seeds"):
        ExperimentConfig(seeds=0)
    with pytest.raises(ValueError, match="integer"):
        ExperimentConfig(epochs=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown magnitudes"):
        ExperimentConfig(magnitudes="huge")
    with pytest.raises(ValueError, match="unknown op"):
        ExperimentConfig(fixed="wobble:3")
    with pytest.raises(ValueError, match="cpu, cuda"):
        benchmark.run_benchmark(ExperimentConfig(**TINY), "unused", device="tpu")


# --------------------------------------------------------------------------------------------------
# The output folder: never half old, half new
# --------------------------------------------------------------------------------------------------

FAST = {**TINY, "arms": ("baseline",), "seeds": 1}


def _previous_run(folder):
    """A folder as a previous run left it (a few of its files, recognisable contents)."""
    folder.mkdir()
    files = {"results.json": '{"run": "previous"}\n', "genotype.json": '"previous"\n', "results.csv": "previous\n"}
    for name, text in files.items():
        (folder / name).write_text(text)
    return files


def test_an_interrupted_run_leaves_the_previous_folder_as_it_was(tmp_path, monkeypatch, one_thread):
    out = tmp_path / "out"
    files = _previous_run(out)

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    # Late in the run: genotype.json and clips.png are already written by then.
    monkeypatch.setattr(benchmark, "save_chart", ctrl_c)
    lines = []
    with pytest.raises(KeyboardInterrupt):
        benchmark.run_benchmark(ExperimentConfig(**FAST), out, progress=False, log=lines.append)
    assert {p.name: p.read_text() for p in out.iterdir()} == files
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # the partial folder beside it is gone
    assert any("left as it was" in line for line in lines)


def test_a_complete_rerun_replaces_the_previous_files_whole_and_says_so(tmp_path, one_thread):
    from img2vid.experiments.report import OUTPUT_FILES

    out = tmp_path / "out"
    _previous_run(out)
    lines = []
    result = benchmark.run_benchmark(ExperimentConfig(**FAST), out, progress=False, log=lines.append)
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES)
    assert json.loads((out / "results.json").read_text())["table"] == json.loads(json.dumps(result["table"]))
    assert Genotype.from_json((out / "genotype.json").read_text()) == Genotype("identity")
    replaced = [line for line in lines if line.startswith("replaced the previous run in")]
    assert len(replaced) == 1 and replaced[0].endswith("genotype.json, results.csv, results.json")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_folder_holding_other_files_is_refused_before_any_work(tmp_path, monkeypatch):
    (tmp_path / "notes.txt").write_text("mine")
    monkeypatch.setattr(config, "load_task", lambda *args, **kwargs: pytest.fail("the run started"))
    with pytest.raises(ValueError, match=r"holds files a run does not write \(notes\.txt\)"):
        benchmark.run_benchmark(ExperimentConfig(**TINY), tmp_path, progress=False, log=lambda _: None)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    with pytest.raises(ValueError, match="is a file"):
        benchmark.run_benchmark(ExperimentConfig(**TINY), tmp_path / "notes.txt", progress=False, log=lambda _: None)


# --------------------------------------------------------------------------------------------------
# What results.json says about the run
# --------------------------------------------------------------------------------------------------


def _git_commit(folder):
    git = ["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "first"], check=True)
    return subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_the_commit_recorded_is_img2vids_own_never_the_users_repository(tmp_path, monkeypatch):
    import img2vid

    # img2vid installed into a virtual environment inside the user's own repository.
    user = tmp_path / "user"
    package = user / "venv" / "lib" / "python3.11" / "site-packages" / "img2vid"
    (package / "experiments").mkdir(parents=True)
    (user / "pyproject.toml").write_text('[project]\nname = "my-app"\n')
    _git_commit(user)
    monkeypatch.setattr(benchmark, "__file__", str(package / "experiments" / "benchmark.py"))
    info = benchmark.machine(torch.device("cpu"))
    assert info["commit"] is None and info["img2vid"] == img2vid.__version__
    # Even where the folder above the package names itself img2vid, it must be the git top level.
    (package.parent / "pyproject.toml").write_text('[project]\nname = "img2vid"\n')
    assert benchmark.machine(torch.device("cpu"))["commit"] is None
    # img2vid's own checkout: its commit.
    checkout = tmp_path / "checkout"
    (checkout / "img2vid" / "experiments").mkdir(parents=True)
    (checkout / "img2vid" / "__init__.py").write_text("")
    (checkout / "pyproject.toml").write_text('[project]\nname = "img2vid"\n')
    head = _git_commit(checkout)
    monkeypatch.setattr(benchmark, "__file__", str(checkout / "img2vid" / "experiments" / "benchmark.py"))
    commit = benchmark.machine(torch.device("cpu"))["commit"]
    assert len(commit) >= 7 and head.startswith(commit)
    (checkout / "img2vid" / "__init__.py").write_text("# changed\n")
    assert benchmark.machine(torch.device("cpu"))["commit"] == commit + "-dirty"


def test_the_machine_record_names_the_cpu_and_its_widest_vector_extension(tmp_path):
    intel = tmp_path / "intel"
    intel.write_text("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz\n"
                     "flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw\n\nprocessor\t: 1\n"
                     "model name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz\n")
    assert benchmark.cpu_model(intel) == "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz (AVX-512)"
    amd = tmp_path / "amd"
    amd.write_text("model name\t: AMD EPYC\nflags\t\t: fpu sse2 avx fma avx2\n")
    assert benchmark.cpu_model(amd) == "AMD EPYC (AVX2)"
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd evtstrm crc32\nCPU part\t: 0xd0c\n")
    assert benchmark.cpu_model(arm) == "NEON"
    assert benchmark.cpu_model(tmp_path / "missing") is None
    assert "cpu" in benchmark.machine(torch.device("cpu"))


def _rows(baseline, das):
    per_seed = {arm: {"test": test, "val": test, "train": test, "wall_s": [1.0] * len(test),
                      "genotype": [""] * len(test)} for arm, test in (("baseline", baseline), ("das", das))}
    return summarize(per_seed, ["baseline", "das"])


def test_the_verdict_with_one_seed_and_with_several():
    one = verdict(_rows([0.50], [0.52]))
    assert one == ("Against the baseline, on one seed (no interval; two or more seeds give paired 95 % intervals), "
                   "test-accuracy difference: das: +2.0 points.")
    # Two seeds, unchanged: differences 2 and 4 points, t(0.975, 1) = 12.706, half width 12.706 * 1.414 / 1.414.
    two = verdict(_rows([0.50, 0.60], [0.52, 0.64]))
    assert two == ("Against the baseline, paired over 2 seeds (95 % Student-t interval of the test-accuracy "
                   "difference): das: no difference resolved ([-9.7, +15.7] points).")
