"""Data-parallel rules: the total batch split across workers, and whether a cluster holds them."""

from __future__ import annotations

import itertools

import pytest

from tunekit.core.data_parallel import (
    batch_problem,
    cluster_problem,
    data_parallel_problem,
    per_worker_batch,
    shard,
    workers_that_fit,
)


def test_the_shares_of_a_total_batch_are_contiguous_equal_and_cover_it() -> None:
    assert [shard(256, r, 2) for r in range(2)] == [(0, 128), (128, 256)]
    assert [shard(256, r, 4) for r in range(4)] == [(0, 64), (64, 128), (128, 192), (192, 256)]
    # an evaluation split that does not divide: shares differ by one at most, and still cover it
    parts = [shard(10, r, 3) for r in range(3)]
    assert parts[0][0] == 0
    assert parts[-1][1] == 10
    assert all(a[1] == b[0] for a, b in itertools.pairwise(parts))
    assert max(hi - lo for lo, hi in parts) - min(hi - lo for lo, hi in parts) <= 1
    # one worker takes everything
    assert shard(7, 0, 1) == (0, 7)
    with pytest.raises(ValueError, match="rank 2 is not one of 2 workers"):
        shard(8, 2, 2)


def test_each_worker_gets_the_total_batch_over_the_workers() -> None:
    assert per_worker_batch(256, 1) == 256
    assert per_worker_batch(256, 4) == 64
    with pytest.raises(ValueError, match=r"train.batch_size: 100 is not divisible by resources.workers=3"):
        per_worker_batch(100, 3)


def test_a_batch_the_workers_do_not_divide_is_one_line_with_the_fix() -> None:
    assert batch_problem(128, 1) is None
    assert batch_problem(128, 2) is None
    line = batch_problem(100, 3)
    assert line is not None
    assert "\n" not in line
    assert line.startswith("train.batch_size: 100")
    assert "99 or 102" in line  # the multiples on either side
    assert "(e.g. 3)" in str(batch_problem(2, 3))  # no multiple below it


def test_what_a_data_parallel_preset_cannot_ask_for() -> None:
    assert data_parallel_problem(1, 0.5, 99, own_loop=True, sync_bn=True, batch_jitter=12) is None  # one worker: today's trial
    assert data_parallel_problem(2, 0.0, 128) is None
    assert data_parallel_problem(4, 1.0, 256, sync_bn=True, batch_candidates=(128, 512)) is None
    cases = {
        "loop": data_parallel_problem(2, 0.0, 128, own_loop=True),
        "resources.gpu: 0.5": data_parallel_problem(2, 0.5, 128),
        "train.sync_bn": data_parallel_problem(2, 0.0, 128, sync_bn=True),
        "train.batch_size: 129": data_parallel_problem(2, 0.0, 129),
        "search.batch_size.candidates: 100": data_parallel_problem(3, 0.0, 99, batch_candidates=(99, 100)),
        "search.final.batch_jitter": data_parallel_problem(2, 0.0, 128, batch_jitter=12),
    }
    for field, line in cases.items():
        assert line is not None, field
        assert field in line, (field, line)
        assert "\n" not in line


def test_workers_fit_node_by_node() -> None:
    two_nodes = [{"CPU": 1.0}, {"CPU": 1.0}]
    assert workers_that_fit(two_nodes, cpu=1) == 2
    assert workers_that_fit(two_nodes, cpu=2) == 0  # 2 CPUs in all, but no node has 2
    assert workers_that_fit([{"CPU": 16.0, "GPU": 8.0}, {"CPU": 16.0, "GPU": 8.0}], cpu=4, gpu=1) == 8  # CPUs bind first
    assert workers_that_fit([{"CPU": 64.0, "GPU": 8.0}], cpu=4, gpu=1) == 8  # GPUs bind
    assert workers_that_fit([{"CPU": 0.5}], cpu=0.25) == 2


def test_more_workers_than_the_cluster_holds_is_one_line() -> None:
    assert cluster_problem(1, 64, 8, [{"CPU": 2.0}]) is None  # a one-worker trial is Tune's to place
    assert cluster_problem(2, 1, 0, [{"CPU": 2.0}]) is None
    line = cluster_problem(3, 1, 0, [{"CPU": 2.0}])
    assert line is not None
    assert "\n" not in line
    assert line.startswith("resources.workers: 3 workers of 1 CPU each do not fit")
    assert "1 node with 2 CPUs" in line
    assert "room for 2" in line
    gpus = cluster_problem(2, 1, 1, [{"CPU": 8.0}])
    assert gpus is not None
    assert gpus.startswith("resources.gpu: 2 workers of 1 GPU each need 2 GPUs")


def test_a_phase_runs_as_many_data_parallel_trials_at_once_as_the_nodes_hold() -> None:
    from tunekit.core.data_parallel import trials_at_once

    nodes = [{"CPU": 8.0, "GPU": 4.0}, {"CPU": 8.0, "GPU": 4.0}]
    assert trials_at_once(nodes, 1, 1.0, 1.0) == 64  # single-worker trials: Tune's own resource accounting
    assert trials_at_once(nodes, 4, 2.0, 1.0) == 2  # 8 GPUs, 4 per trial
    assert trials_at_once(nodes, 2, 1.0, 1.0) == 4
    assert trials_at_once(nodes, 8, 8.0, 0.0) == 1  # 2 workers fit: never fewer than one trial at a time
    assert trials_at_once([{"CPU": 512.0}], 2, 1.0, most=64) == 64
