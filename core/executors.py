"""Where sweep jobs run: a local process pool, or Dask distributed.

``cluster``: None (a local process pool of ``workers`` processes), ``local`` (a
``distributed.LocalCluster`` of ``workers`` single-threaded worker processes),
``tcp://HOST:PORT`` or ``tls://HOST:PORT`` (an existing Dask scheduler). Every kind
is a plain ``concurrent.futures.Executor``; Dask's is ``Client(...).get_executor()``.
Dask workers must import batchlab (install it on every worker machine).

A Dask cluster is trusted: the client unpickles what its workers return, so a
hostile worker runs code here. ``tls://`` uses ``distributed``'s security
settings from dask's configuration (``distributed.comm.tls.ca-file``,
``distributed.comm.tls.client.cert``, ``distributed.comm.tls.client.key``).

``worker_env``: environment variables for the worker processes this module
starts itself (the local pool, a LocalCluster): how a store's password reaches
them without travelling in a task. A remote cluster's workers get theirs from
their own configuration.
"""
from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from urllib.parse import urlsplit

from .extras import MissingExtra, require
from .sweep import SweepError, default_workers, pool_for

CLUSTER_HELP = ("Where the runs go: omit for a local process pool; 'local' for a Dask LocalCluster "
                "on this machine; tcp://HOST:8786 or tls://HOST:8786 for a Dask scheduler.")
SCHEMES = ("tcp", "tls")
CONNECT_TIMEOUT = "10s"


def check_cluster(cluster: str | None) -> str | None:
    """``cluster`` as given (stripped; None when empty), or a one-line SweepError naming ``--cluster``:
    ``local``, or ``tcp://HOST:PORT`` / ``tls://HOST:PORT`` with a host and a port from 1 to 65535.
    Other Dask protocols are refused: ``inproc://`` lives inside one process (a runner cannot reach
    another's), and ``ucx://`` needs UCX, which batchlab neither ships nor tests."""
    if cluster is None or not cluster.strip():
        return None
    c = cluster.strip()
    if c == "local":
        return c
    expected = "expected 'local' or a scheduler address like tcp://HOST:8786 or tls://HOST:8786"
    shown = c if len(c) <= 60 else c[:59] + "…"
    scheme, sep, _ = c.partition("://")
    if not sep:
        raise SweepError(f"--cluster: {expected}, got {shown!r}")
    if scheme not in SCHEMES:
        raise SweepError(f"--cluster {shown}: the {scheme or 'empty'}:// protocol is not supported; {expected}")
    parts = urlsplit(c)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if not parts.hostname or parts.username or parts.password or parts.path not in ("", "/") \
            or parts.query or parts.fragment:
        raise SweepError(f"--cluster {shown}: {expected} (a host name or address, then a port)")
    if port is None or not 1 <= port <= 65535:
        raise SweepError(f"--cluster {shown}: the port must be a number from 1 to 65535 (Dask's default is 8786)")
    return c.rstrip("/")


def _tls_ready() -> bool:
    """Whether dask's configuration gives a client what a tls:// connection needs (a CA file)."""
    from distributed.security import Security

    return Security().tls_ca_file is not None


@contextmanager
def open_executor(cluster: str | None = None, workers: int | None = None,
                  worker_env: dict[str, str] | None = None) -> Iterator[tuple[Executor, int]]:
    """(executor, worker count) for ``cluster``; everything it started is closed on exit.
    ``worker_env`` goes to the processes started here (module doc), never to a remote cluster."""
    cluster = check_cluster(cluster)
    if cluster is None:
        n = workers or default_workers()
        with pool_for(None, n, worker_env) as pool:
            yield pool, n
        return
    try:
        require("dask", f"--cluster {cluster}")
    except MissingExtra as exc:
        raise SweepError(str(exc)) from None
    from distributed import Client, LocalCluster

    if cluster.startswith("tls://") and not _tls_ready():
        raise SweepError(f"--cluster {cluster}: TLS needs a CA file and a client certificate and key in dask's "
                         "configuration (distributed.comm.tls.ca-file, .client.cert, .client.key)")
    local = None
    try:
        if cluster == "local":
            local = LocalCluster(n_workers=workers or default_workers(), threads_per_worker=1, processes=True,
                                 dashboard_address=None, env=dict(worker_env or {}))
            client = Client(local)
        else:
            client = Client(cluster, timeout=CONNECT_TIMEOUT)
    except (OSError, TypeError, ValueError) as exc:  # refused, timed out, a TLS set-up that does not fit
        if local is not None:
            local.close()
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise SweepError(f"--cluster {cluster}: cannot connect ({reason[:200]})") from None
    try:
        n = sum(client.nthreads().values()) or 1
        yield client.get_executor(pure=False), n
    finally:
        client.close()
        if local is not None:
            local.close()
