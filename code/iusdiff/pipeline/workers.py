"""Independent work items of one stage (nnU-Net trainings, evaluation folds) in worker processes.

The pipeline runner tells a stage how many processes it may use through ``IUSDIFF_WORKERS``
(its ``--jobs``); the count is kept out of the stage's arguments and fingerprint because the
results must not depend on it: every item seeds itself and pins its own threads, so one worker
or several give byte-identical outputs (tested).
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
from collections.abc import Callable, Sequence
from typing import TypeVar

WORKERS_ENV = "IUSDIFF_WORKERS"

Item = TypeVar("Item")
Result = TypeVar("Result")


def stage_workers(device: str = "cpu", environ: dict[str, str] | None = None) -> int:
    """The process count the runner granted this stage (1 when run by hand, and on a GPU,
    which the items would only contend for)."""
    if device != "cpu":
        return 1
    value = (os.environ if environ is None else environ).get(WORKERS_ENV, "1")
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{WORKERS_ENV}={value!r}: expected a positive integer")
    return int(value)


def map_items(work: Callable[[Item], Result], items: Sequence[Item], workers: int) -> list[Result]:
    """``[work(i) for i in items]``, in ``workers`` fresh processes when more than one.

    Processes are spawned (not forked) so no torch/OpenMP thread state is inherited; ``work``
    must be a module-level function and items and results picklable. The first failure is
    raised after the running items finish.
    """
    if workers <= 1 or len(items) <= 1:
        return [work(item) for item in items]
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(min(workers, len(items)), mp_context=context) as pool:
        return list(pool.map(work, items))
