"""Where snapshots may live: a rule about storage paths and clusters (no I/O here)."""

from __future__ import annotations

import re

_URI = re.compile(r"^[a-z][a-z0-9+.-]*://")


def is_uri(path: str) -> bool:
    """True for ``s3://…``, ``gs://…``, ``file://…`` and other URIs; False for plain paths."""
    return bool(_URI.match(path))


class SharedStorageError(ValueError):
    """A node-local storage path on a multi-node cluster; the message names both fixes."""


def check_shared_storage(path: str, alive_nodes: int, declared_shared: bool = False) -> None:
    """Refuse a node-local storage path on a multi-node cluster, where other nodes cannot read snapshots.

    A plain path works on one machine, or on several when it is a shared mount (NFS) that the
    user vouches for with ``declared_shared``. URIs (S3, GCS) are reachable from every node.

    Raises:
        SharedStorageError: naming the path, the node count and the two fixes.
    """
    if alive_nodes <= 1 or declared_shared or (is_uri(path) and not path.startswith("file://")):
        return
    raise SharedStorageError(
        f"storage path {path!r} is local, but the Ray cluster has {alive_nodes} nodes: a snapshot written on one node "
        "cannot be restored on another. Use shared storage (--storage s3://bucket/path, gs://…, or an NFS mount) and, "
        "for a shared mount, say so (shared_storage=True / --shared-storage)"
    )
