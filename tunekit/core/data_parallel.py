"""Data-parallel trials: how a total batch splits across workers, and whether a cluster can hold them.

A preset's ``train.batch_size`` is the paper's total batch: what one optimizer step averages its
gradient over, whatever the number of workers. Each of ``resources.workers`` workers takes an equal,
contiguous share of every total batch (:func:`shard`), so two workers at batch 256 take the same
samples per step as one worker at batch 256 — and, without BatchNorm or with it synchronised,
draw the same loss curve. Every rule here is a pure function of numbers, answered with one line
naming the field and the fix (None: fine).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence


def shard(n: int, rank: int, world: int) -> tuple[int, int]:
    """The ``[start, stop)`` share of ``n`` items that ``rank`` of ``world`` takes: contiguous, in rank order.

    Shares differ by at most one item (the split points are ``n * rank // world``), so a batch
    divisible by ``world`` splits into equal shares, and rank 0 takes the first of them.
    """
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not one of {world} workers")
    return n * rank // world, n * (rank + 1) // world


def per_worker_batch(batch_size: int, workers: int) -> int:
    """Each worker's share of the total ``batch_size``; raises ValueError (one line) when it does not divide."""
    problem = batch_problem(batch_size, workers)
    if problem:
        raise ValueError(problem)
    return batch_size // workers


def batch_problem(batch_size: int, workers: int, field: str = "train.batch_size") -> str | None:
    """Why ``batch_size`` cannot be split evenly across ``workers`` (one line naming ``field``), or None."""
    if workers <= 1 or batch_size % workers == 0:
        return None
    below = batch_size - batch_size % workers
    nearest = f"{below} or {below + workers}" if below else f"{workers}"
    return (
        f"{field}: {batch_size} is not divisible by resources.workers={workers}; it is the total batch, split evenly "
        f"across the workers: give a multiple of {workers} (e.g. {nearest})"
    )


def data_parallel_problem(
    workers: int,
    gpu: float,
    batch_size: int,
    *,
    own_loop: bool = False,
    sync_bn: bool = False,
    batch_candidates: Iterable[int] = (),
    batch_jitter: int = 0,
) -> str | None:
    """The first reason a preset cannot train on ``workers`` data-parallel workers (one line), or None.

    Args:
        workers: ``resources.workers``; 1 is always fine (today's single-process trial).
        gpu: ``resources.gpu``, per worker.
        batch_size: ``train.batch_size``, the total batch.
        own_loop: the preset has ``loop:`` (a user-written loop trains on one worker).
        sync_bn: ``train.sync_bn`` (torch's SyncBatchNorm runs on CUDA only).
        batch_candidates: ``search.batch_size.candidates``, each a total batch.
        batch_jitter: ``search.final.batch_jitter`` (App. A.1's jittered batch sizes).
    """
    if workers <= 1:
        return None
    if own_loop:
        return (
            f"resources.workers: {workers} data-parallel workers need tunekit's own loop; a preset with loop: trains "
            "on one worker: set resources.workers: 1 or remove loop"
        )
    if gpu and (gpu != 1.0):
        return (
            f"resources.gpu: {gpu:g} per worker; a data-parallel worker trains on one whole GPU (ranks cannot share "
            "one, and a second would sit idle): set resources.gpu: 1"
        )
    if sync_bn and not gpu:
        return "train.sync_bn: torch's SyncBatchNorm runs on CUDA only; set resources.gpu: 1 or train.sync_bn: false"
    problem = batch_problem(batch_size, workers)
    if problem:
        return problem
    for candidate in batch_candidates:
        if problem := batch_problem(candidate, workers, "search.batch_size.candidates"):
            return problem
    if batch_jitter:
        return (
            f"search.final.batch_jitter: {batch_jitter} would give the final replicates batch sizes that "
            f"resources.workers={workers} may not divide; set search.final.batch_jitter: 0"
        )
    return None


def workers_that_fit(nodes: Sequence[Mapping[str, float]], cpu: float, gpu: float = 0.0) -> int:
    """How many workers of ``cpu`` CPUs and ``gpu`` GPUs each the ``nodes`` (Ray's per-node resource totals) hold.

    A worker lives on one node, so each node holds ``floor(its CPUs / cpu)`` of them (and as many
    as its GPUs allow).
    """
    total = 0
    for node in nodes:
        fits = math.floor(float(node.get("CPU", 0.0)) / cpu + 1e-9)
        if gpu > 0:
            fits = min(fits, math.floor(float(node.get("GPU", 0.0)) / gpu + 1e-9))
        total += fits
    return total


def trials_at_once(nodes: Sequence[Mapping[str, float]], workers: int, cpu: float, gpu: float = 0.0, most: int = 64) -> int:
    """How many data-parallel trials of ``workers`` workers each can train at once on ``nodes`` (at least 1,
    at most ``most``).

    Tune sees such a trial as almost free (its workers are Ray Train's), so without this limit it
    would start every trial a searcher offers and leave all but a few waiting for workers.
    """
    if workers <= 1:
        return most
    return max(1, min(most, workers_that_fit(nodes, cpu, gpu) // workers))


def cluster_problem(workers: int, cpu: float, gpu: float, nodes: Sequence[Mapping[str, float]]) -> str | None:
    """Why the cluster (``nodes``: each alive node's resource totals) cannot hold ``workers`` workers, or None.

    One line naming ``resources.workers`` (or ``resources.gpu``) and the fix; said before a trial
    starts, since Ray Train would otherwise wait for resources that never come.
    """
    if workers <= 1 or workers_that_fit(nodes, cpu, gpu) >= workers:
        return None
    cpus = sum(float(n.get("CPU", 0.0)) for n in nodes)
    gpus = sum(float(n.get("GPU", 0.0)) for n in nodes)
    where = f"the Ray cluster has {len(nodes)} node{'s' if len(nodes) != 1 else ''} with {cpus:g} CPUs and {gpus:g} GPUs"
    if gpu > 0 and workers * gpu > gpus:
        return f"resources.gpu: {workers} workers of {gpu:g} GPU each need {workers * gpu:g} GPUs, but {where}; lower resources.workers or add GPU nodes"
    return (
        f"resources.workers: {workers} workers of {cpu:g} CPU{'s' if cpu != 1 else ''}"
        f"{f' and {gpu:g} GPU' if gpu else ''} each do not fit: {where} "
        f"(room for {workers_that_fit(nodes, cpu, gpu)}); lower resources.workers or resources.cpu, or add nodes"
    )
