"""Peak CPU memory of one call, measured by the kernel, in a fresh process per measurement.

How: the child process runs with ``MALLOC_MMAP_THRESHOLD_`` fixed at 64 KiB, so every tensor buffer is
its own ``mmap`` and goes back to the OS when freed (glibc would otherwise raise the threshold and keep
freed buffers resident). The child builds its inputs, runs the call once to warm up, then resets the
kernel's high-water mark (``/proc/self/clear_refs``), runs the call again, and reports
``VmHWM - VmRSS(before)``: the peak resident memory the call added, including what it returns.

Linux only (it reads ``/proc``). Used by the benchmarks, never by tests.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from collections.abc import Callable


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status")


def measure_here(call: Callable[[], object]) -> int:
    """Bytes of peak resident memory that ``call()`` adds (its result included). Run in a child."""
    call()  # warm-up: lazy initialisation, thread pools, kernel caches
    gc.collect()
    before = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # reset VmHWM to the current RSS
    result = call()
    peak = _status_kib("VmHWM")
    del result
    return (peak - before) * 1024


def measure_in_child(script: str, variant: str, *args: str) -> int:
    """Run ``python script --memory-child variant *args`` in a fresh process; it prints ``{"bytes": n}``."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    out = subprocess.run(
        [sys.executable, script, "--memory-child", variant, *args],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return int(json.loads(out.strip().splitlines()[-1])["bytes"])


def report_child(call: Callable[[], object]) -> None:
    """The child's side of :func:`measure_in_child`."""
    print(json.dumps({"bytes": measure_here(call)}))
