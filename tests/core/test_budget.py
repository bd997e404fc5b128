"""Batch size at constant wall time; snapshot storage on clusters."""

from __future__ import annotations

import pytest

from tunekit.core.budget import epochs_for_budget, scaled_lr
from tunekit.core.storage import check_shared_storage, is_uri


def test_epochs_fill_the_budget() -> None:
    # 0.01 s per step, 50 steps and 0.5 s of evaluation per epoch: 60 s holds 60 epochs
    assert epochs_for_budget(60.0, 0.01, 50, 0.5) == 60
    # a larger batch: fewer, costlier steps per epoch → more epochs in the same time (Fig. 6 caption)
    assert epochs_for_budget(60.0, 0.016, 25, 0.5) > epochs_for_budget(60.0, 0.01, 50, 0.5)
    # never less than one epoch
    assert epochs_for_budget(0.1, 1.0, 100) == 1


@pytest.mark.parametrize(("args", "match"), [((0.0, 0.1, 10), "time_budget_s"), ((10.0, 0.0, 10), "seconds_per_step")])
def test_bad_budget_arguments_are_named(args: tuple[float, float, int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        epochs_for_budget(*args)


def test_lr_scales_with_the_batch() -> None:
    assert scaled_lr(0.8, 128, 512) == pytest.approx(3.2)
    assert scaled_lr(0.8, 128, 512, "sqrt") == pytest.approx(1.6)
    assert scaled_lr(0.8, 128, 512, "none") == 0.8


def test_local_path_on_a_multi_node_cluster_is_refused() -> None:
    with pytest.raises(ValueError, match="shared storage"):
        check_shared_storage("/tmp/runs", alive_nodes=2)
    with pytest.raises(ValueError, match="2 nodes"):
        check_shared_storage("file:///tmp/runs", alive_nodes=2)


@pytest.mark.parametrize(
    ("path", "nodes", "shared"),
    [("/tmp/runs", 1, False), ("s3://bucket/runs", 4, False), ("gs://b/r", 2, False), ("/mnt/nfs/runs", 3, True)],
)
def test_reachable_storage_is_accepted(path: str, nodes: int, shared: bool) -> None:
    check_shared_storage(path, nodes, shared)


def test_is_uri() -> None:
    assert is_uri("s3://b/k")
    assert not is_uri("/tmp/x")
