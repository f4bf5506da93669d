"""Jobs in worker processes or here: results, order, errors, and the automatic worker count."""

import os

import pytest
import torch

from img2vid.experiments import preset
from img2vid.experiments.jobs import Jobs, worker_count


def _threads_and_square(x: int) -> tuple[int, int]:
    return torch.get_num_threads(), x * x


def _fail(x: int) -> int:
    raise ValueError(f"job {x} failed")


def test_inline_jobs_run_highest_priority_first_and_take_new_jobs_while_iterating():
    with Jobs(workers=1, threads=1) as jobs:
        jobs.submit("low", 1.0, _threads_and_square, 2)
        jobs.submit("high", 5.0, _threads_and_square, 3)
        jobs.submit("also low", 1.0, _threads_and_square, 4)  # same priority: in submission order
        seen = []
        for key, (_, value) in jobs.results():
            seen.append((key, value))
            if key == "high":
                jobs.submit("later", 9.0, _threads_and_square, 5)
    assert seen == [("high", 9), ("later", 25), ("low", 4), ("also low", 16)]


def test_worker_processes_run_every_job_at_their_threads_and_raise_a_jobs_error():
    with Jobs(workers=2, threads=1) as jobs:
        for x in range(5):
            jobs.submit(x, float(x), _threads_and_square, x)
        results = dict(jobs.results())
    assert results == {x: (1, x * x) for x in range(5)}
    with pytest.raises(ValueError, match="job 3 failed"), Jobs(workers=2, threads=1) as jobs:
        jobs.submit(3, 1.0, _fail, 3)
        list(jobs.results())


def test_worker_count():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert worker_count(3, cpu, jobs=10) == 3 and worker_count(2, cuda, jobs=10) == 2
    assert worker_count(0, cuda, jobs=10) == 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert worker_count(0, cpu, jobs=10) == min(cores, 10) and worker_count(0, cpu, jobs=1) == 1
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="workers must be an integer >= 0"):
            worker_count(bad, cpu, jobs=1)
    with pytest.raises(ValueError, match="workers >= 1"):
        Jobs(0, 1)


def test_presets_default_to_one_worker_per_core():
    for dataset in ("digits", "fashion-mnist"):
        assert preset(dataset).workers == 0 and preset(dataset, quick=True).workers == 0
    assert preset("digits", workers=1).workers == 1
