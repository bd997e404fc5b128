"""Storage locations as strings: folders, URIs and the paths Ray hands back (no I/O here).

A *location* is what tunekit stores and prints: a local path (``/runs/s``), or a URI with its
scheme and any query string (``s3://bucket/runs/s?endpoint_override=127.0.0.1:9000``). Ray hands
back trial, result and checkpoint paths *without* the scheme (``bucket/runs/s/…``), with the
filesystem beside them; :func:`located` turns one back into a location under the storage it came
from, so a path from Ray never reaches ``open`` or ``shutil`` as if it were local.
"""

from __future__ import annotations

import os
import re

_URI = re.compile(r"^[a-z][a-z0-9+.-]*://")


def is_uri(path: str) -> bool:
    """True for ``s3://…``, ``gs://…``, ``file://…`` and other URIs; False for plain paths."""
    return bool(_URI.match(path))


def is_remote(location: str) -> bool:
    """True for object storage (``s3://…``, ``gs://…``): a URI that is not ``file://``."""
    return is_uri(location) and not location.startswith("file://")


def split_query(location: str) -> tuple[str, str]:
    """``(base, query)``: ``s3://b/runs?scheme=http`` → ``("s3://b/runs", "scheme=http")``; a path has no query."""
    if not is_uri(location) or "?" not in location:
        return location, ""
    base, query = location.split("?", 1)
    return base, query


def join(location: str, *parts: str) -> str:
    """``location/part/…`` for a folder or a URI; a URI's query string stays at the end.

    >>> join("s3://b/runs?scheme=http", "s1", "search.json")
    's3://b/runs/s1/search.json?scheme=http'
    """
    base, query = split_query(location)
    if not is_uri(base):
        return os.path.join(base, *parts)
    out = "/".join([base.rstrip("/"), *(p.strip("/") for p in parts if p)])
    return f"{out}?{query}" if query else out


def name_of(location: str) -> str:
    """The last part of a location (a trial folder's name), query string aside."""
    return split_query(location)[0].rstrip("/").rsplit("/", 1)[-1]


def parent(location: str) -> str:
    """The folder a location is in, query string kept: ``s3://b/runs/s1?x=1`` → ``s3://b/runs?x=1``."""
    base, query = split_query(location)
    if not is_uri(base):
        return os.path.dirname(base.rstrip("/")) or "/"
    head = base.rstrip("/").rsplit("/", 1)[0]
    return f"{head}?{query}" if query else head


def located(anchor: str, path: str) -> str:
    """A path Ray handed back (its scheme stripped: ``bucket/runs/…``) as a location on ``anchor``'s storage.

    ``anchor`` is any location on the same storage (the storage root, a search folder). On object
    storage the path gets the anchor's scheme and query string back; a local path (or one that is
    already a URI) is returned as it is.

    >>> located("s3://b/runs?scheme=http", "b/runs/s1/weight_decay/trial_1/checkpoint_000002")
    's3://b/runs/s1/weight_decay/trial_1/checkpoint_000002?scheme=http'
    """
    if not path or is_uri(path) or not is_remote(anchor):
        return path
    base, query = split_query(anchor)
    scheme = base.split("://", 1)[0]
    out = f"{scheme}://{path.lstrip('/')}"
    return f"{out}?{query}" if query else out


def storage_failure(message: str) -> str:
    """The part of an object-storage client's error a person needs: ``NO_SUCH_BUCKET …: The specified bucket
    does not exist`` from pyarrow's paragraph (request ids, curl codes and retry details left out)."""
    text = message.split("AWS Error ", 1)[-1]
    for cut in (" (Request ID", "; Details:", "\n"):
        text = text.split(cut, 1)[0]
    text = re.sub(r" during \w+ operation", "", text)
    text = re.sub(r"curlCode: \d+, ", "", text)
    return text.strip() or message.strip()


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
