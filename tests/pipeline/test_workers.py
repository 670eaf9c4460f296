"""Worker processes inside a stage: same results for any worker count, failures surface."""

from __future__ import annotations

import os

import pytest
import torch

from iusdiff.pipeline.workers import WORKERS_ENV, map_items, stage_workers


def seeded_draw(seed: int) -> tuple[int, list[float]]:
    torch.manual_seed(seed)
    return os.getpid(), torch.randn(3).tolist()


def fail_on_two(item: int) -> int:
    if item == 2:
        raise ValueError("item 2 is bad")
    return item


def test_results_do_not_depend_on_the_worker_count():
    serial = map_items(seeded_draw, [0, 1, 2, 3], 1)
    parallel = map_items(seeded_draw, [0, 1, 2, 3], 2)
    assert [draw for _, draw in serial] == [draw for _, draw in parallel]
    assert {pid for pid, _ in serial} == {os.getpid()}
    assert os.getpid() not in {pid for pid, _ in parallel}


def test_a_failing_item_raises_in_the_caller():
    with pytest.raises(ValueError, match="item 2 is bad"):
        map_items(fail_on_two, [1, 2, 3], 2)


def test_stage_workers_reads_the_runner_grant():
    assert stage_workers(environ={}) == 1
    assert stage_workers(environ={WORKERS_ENV: "2"}) == 2
    assert stage_workers("cuda", environ={WORKERS_ENV: "2"}) == 1
    with pytest.raises(ValueError, match="IUSDIFF_WORKERS='0'"):
        stage_workers(environ={WORKERS_ENV: "0"})
