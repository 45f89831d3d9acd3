"""The Dask clusters the operator offers the web app; a web user picks one by name, never types an address.

The operator names them when starting the app, ``batchlab app --cluster NAME=ADDRESS`` (repeatable),
which reaches the app as ``BATCHLAB_CLUSTERS="NAME=ADDRESS NAME=ADDRESS"`` in its environment (the
variable can also be set directly, e.g. in a container). ADDRESS is what ``--cluster`` takes
(:func:`core.executors.check_cluster`: ``local``, ``tcp://HOST:PORT`` or ``tls://HOST:PORT``). With
none configured, the pages offer only the local process pool.
"""
from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable

from batchlab.core.executors import check_cluster
from batchlab.core.sweep import SweepError

log = logging.getLogger("batchlab.webapp")
ENV = "BATCHLAB_CLUSTERS"
LOCAL_POOL = "local process pool"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}")


def parse(entries: Iterable[str]) -> dict[str, str]:
    """NAME -> ADDRESS from ``NAME=ADDRESS`` entries; SweepError (one line) naming a bad entry."""
    out: dict[str, str] = {}
    for entry in entries:
        name, sep, address = entry.strip().partition("=")
        name = name.strip()
        if not sep or not NAME_RE.fullmatch(name) or name == LOCAL_POOL:
            raise SweepError(f"--cluster {entry!r}: expected NAME=ADDRESS, NAME 1-40 letters, digits and . _ - "
                             "(e.g. gpu-farm=tls://scheduler:8786)")
        if name in out:
            raise SweepError(f"--cluster {name}: named twice")
        address = check_cluster(address.strip())
        if address is None:
            raise SweepError(f"--cluster {name}: no address given")
        out[name] = address
    return out


def to_env(clusters: dict[str, str]) -> str:
    """The :data:`ENV` value that :func:`configured` reads back as ``clusters``."""
    return " ".join(f"{name}={address}" for name, address in clusters.items())


def configured() -> dict[str, str]:
    """The operator's clusters (from :data:`ENV`); an invalid setting is logged and offers none."""
    try:
        return parse(os.environ.get(ENV, "").split())
    except SweepError as exc:
        log.warning("%s is not used: %s", ENV, exc)
        return {}


def address(name: str | None) -> str | None:
    """The address of the configured cluster ``name`` (None: the local process pool)."""
    if name is None or name == LOCAL_POOL:
        return None
    found = configured().get(name)
    if found is None:
        raise SweepError("cluster: choose the local process pool or a cluster this app offers")
    return found
