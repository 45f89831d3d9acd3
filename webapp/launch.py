"""Start the web app: ``launch()`` runs ``streamlit run webapp/app.py`` in a subprocess.

The app binds 127.0.0.1 unless told otherwise; any other address serves it to whoever can reach
this machine, with no login, so it takes ``expose=True`` (``batchlab app --expose``) and
:func:`preflight` says what that exposes before anything is served. Dask clusters offered to
the pages are the operator's (``--cluster NAME=ADDRESS``, :mod:`webapp.clusters`).

Beside it, a short-lived process compiles the continuous engine (or loads it from numba's cache),
so the first continuous run a user starts does not wait for the compiler.
"""
from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

from core.sweep import SweepError

from . import clusters as cluster_config

APP = Path(__file__).resolve().parent / "app.py"
WARM_UP = [sys.executable, "-c", "from core.continuous_engine import warm_up; warm_up()"]


class LaunchError(ValueError):
    """The app cannot be started as asked (one line, naming the option)."""


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def preflight(host: str, port: int, expose: bool = False, clusters: dict[str, str] | None = None,
              db_url: str | None = None) -> list[str]:
    """Check where the app is to be served; the lines to print before serving it (none on loopback).
    LaunchError when ``port`` is out of range or ``host`` is not loopback without ``expose``."""
    from store.db import display_url, resolve_url
    from store.errors import StoreError

    if not 1 <= int(port) <= 65535:
        raise LaunchError(f"--port: must be from 1 to 65535, got {port}")
    if is_loopback(host):
        return []
    if not expose:
        raise LaunchError(f"--host {host}: serves the app beyond this machine, to anyone who can reach it, with "
                          "no login; add --expose to confirm (or use --host 127.0.0.1)")
    try:
        store = display_url(resolve_url(db_url)[0])
    except StoreError as exc:
        raise LaunchError(f"--db: {exc}") from None
    offered = ", ".join(f"{name} ({address})" for name, address in (clusters or {}).items())
    return [f"batchlab app is exposed on {host}:{port}: anyone who can reach it, with no login, can",
            "  - run simulations, sweeps, capacity searches and plans on this machine's CPUs",
            "  - read, export and delete every stored run, sweep and calibration grid",
            "  - upload calibration grids (stored) and BurstGPT traces (kept under the data home)",
            f"  - in this store: {store}",
            f"  - on Dask clusters: {offered or 'none (the local process pool only)'}"]


def command(host: str = "127.0.0.1", port: int = 8501, headless: bool = True) -> list[str]:
    """The ``streamlit run`` command line (telemetry off, no error details shown to users, XSRF protection on)."""
    return [sys.executable, "-m", "streamlit", "run", str(APP),
            "--server.address", host, "--server.port", str(port),
            "--server.headless", "true" if headless else "false",
            "--server.enableXsrfProtection", "true",
            "--browser.gatherUsageStats", "false",
            "--client.showErrorDetails", "none"]


def launch(host: str = "127.0.0.1", port: int = 8501, db_url: str | None = None, headless: bool = True,
           expose: bool = False, clusters: dict[str, str] | None = None,
           echo: Callable[[str], None] = print) -> int:
    """Serve the app until interrupted; ``db_url`` becomes BATCHLAB_DB_URL, ``clusters`` (name -> address)
    BATCHLAB_CLUSTERS (default: that variable's own value, checked here). Raises LaunchError (see
    :func:`preflight`); returns streamlit's exit code."""
    if clusters is None:
        try:
            clusters = cluster_config.parse(os.environ.get(cluster_config.ENV, "").split())
        except SweepError as exc:
            raise LaunchError(f"{cluster_config.ENV}: {exc}") from None
    for line in preflight(host, port, expose, clusters, db_url):
        echo(line)
    env = dict(os.environ)
    if db_url:
        env["BATCHLAB_DB_URL"] = db_url
    env[cluster_config.ENV] = cluster_config.to_env(clusters)
    env.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")
    subprocess.Popen(WARM_UP, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, cwd=Path(__file__).resolve().parents[1])
    try:
        return subprocess.call(command(host, port, headless), env=env)
    except KeyboardInterrupt:
        return 0
