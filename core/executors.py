"""Where sweep jobs run: a local process pool, or Dask distributed.

``cluster``: None (a local process pool of ``workers`` processes), ``local`` (a
``distributed.LocalCluster`` of ``workers`` single-threaded worker processes) or
``tcp://HOST:PORT`` (an existing Dask scheduler). Every kind is a plain
``concurrent.futures.Executor``; Dask's is ``Client(...).get_executor()``. Dask
workers must import batchlab (install it on every worker machine).
"""
from __future__ import annotations

from concurrent.futures import Executor
from contextlib import contextmanager
from typing import Iterator

from .sweep import SweepError, default_workers, pool_for

CLUSTER_HELP = ("Where the runs go: omit for a local process pool; 'local' for a Dask LocalCluster "
                "on this machine; tcp://HOST:8786 for a Dask scheduler.")


def check_cluster(cluster: str | None) -> str | None:
    """``cluster`` as given, or SweepError if it names no known kind."""
    if cluster is None or cluster == "":
        return None
    c = cluster.strip()
    if c == "local" or c.startswith(("tcp://", "tls://", "ucx://", "inproc://")):
        return c
    raise SweepError(f"--cluster: expected 'local' or a scheduler address like tcp://HOST:8786, got {cluster!r}")


@contextmanager
def open_executor(cluster: str | None = None, workers: int | None = None) -> Iterator[tuple[Executor, int]]:
    """(executor, worker count) for ``cluster``; everything it started is closed on exit."""
    cluster = check_cluster(cluster)
    if cluster is None:
        n = workers or default_workers()
        with pool_for(None, n) as pool:
            yield pool, n
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise SweepError(f"--cluster needs dask distributed ({exc}); pip install 'dask[distributed]'") from None
    local = None
    try:
        if cluster == "local":
            local = LocalCluster(n_workers=workers or default_workers(), threads_per_worker=1, processes=True,
                                 dashboard_address=None)
            client = Client(local)
        else:
            client = Client(cluster, timeout="10s")
    except OSError as exc:
        if local is not None:
            local.close()
        raise SweepError(f"--cluster {cluster}: cannot connect ({exc})") from None
    try:
        n = sum(client.nthreads().values()) or 1
        yield client.get_executor(pure=False), n
    finally:
        client.close()
        if local is not None:
            local.close()
