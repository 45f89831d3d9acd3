"""Start the web app: ``launch()`` runs ``streamlit run webapp/app.py`` in a subprocess.

The app binds 127.0.0.1 unless told otherwise; any other address serves it to whoever can reach
this machine, with no login, so it takes ``expose=True`` (``batchlab app --expose``) and
:func:`preflight` says what that exposes before anything is served. Dask clusters offered to
the pages are the operator's (``--cluster NAME=ADDRESS``, :mod:`webapp.clusters`).

Beside it, a short-lived process compiles the continuous engine when numba's cache holds none,
saying so on stderr, so the first continuous run a user starts does not wait for the compiler (a
runner that needs it meanwhile waits for that compile, and its page says it compiles).

Stopping: SIGTERM, SIGINT and SIGHUP sent to this process are passed on to streamlit, which runs in
its own process group (so a terminal's Ctrl-C reaches it once, through here); it then has
:data:`STOP_GRACE_S` seconds to end before it is killed. As a container's process 1 (where the
kernel drops signals a process does not handle) ``docker stop`` therefore ends the app at once.
"""
from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from batchlab.core.extras import MissingExtra, require
from batchlab.core.sweep import SweepError

from . import clusters as cluster_config

APP = Path(__file__).resolve().parent / "app.py"
WARM_UP = [sys.executable, "-c", "import sys; from batchlab.core.continuous_engine import ensure_compiled; "
           "ensure_compiled(lambda text: print('batchlab app:', text, file=sys.stderr, flush=True))"]
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
STOP_GRACE_S = 10.0


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
    from batchlab.store.db import display_url, resolve_url
    from batchlab.store.errors import StoreError

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
    :func:`preflight`, and when the ``web`` extra, or with clusters the ``dask`` extra, is missing);
    returns streamlit's exit code (0 after a stop it was passed, see the module doc)."""
    try:
        require("web", "the web app")
    except MissingExtra as exc:
        raise LaunchError(str(exc)) from None
    if clusters is None:
        try:
            clusters = cluster_config.parse(os.environ.get(cluster_config.ENV, "").split())
        except SweepError as exc:
            raise LaunchError(f"{cluster_config.ENV}: {exc}") from None
    if clusters:
        try:
            require("dask", "offering Dask clusters (--cluster, BATCHLAB_CLUSTERS)")
        except MissingExtra as exc:
            raise LaunchError(str(exc)) from None
    for line in preflight(host, port, expose, clusters, db_url):
        echo(line)
    env = dict(os.environ)
    if db_url:
        env["BATCHLAB_DB_URL"] = db_url
    env[cluster_config.ENV] = cluster_config.to_env(clusters)
    env.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")
    subprocess.Popen(WARM_UP, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     cwd=Path(__file__).resolve().parents[1])  # its notice (if it compiles) goes to our stderr
    return serve(command(host, port, headless), env)


def serve(cmd: list[str], env: dict[str, str], grace_s: float = STOP_GRACE_S) -> int:
    """Run ``cmd`` in its own process group until it ends, passing it :data:`STOP_SIGNALS` (module doc).
    Returns its exit code (128 + N when signal N ended it), 0 when it ended within ``grace_s`` of a
    stop signal passed on."""
    stops: list[tuple[float, int]] = []
    child: subprocess.Popen | None = None

    def forward(signum, _frame):
        stops.append((time.monotonic(), signum))
        if child is not None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in STOP_SIGNALS}
    try:
        child = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, process_group=0)
        if stops:  # a stop that came while it was being started
            child.send_signal(stops[0][1])
        while True:
            try:
                code = child.wait(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                if stops and time.monotonic() - stops[0][0] > grace_s:
                    child.kill()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if child is not None and child.poll() is None:  # left by an exception: never leave the server behind
            child.kill()
            child.wait()
    if stops and code in (0, *(-s for s in STOP_SIGNALS)):
        return 0
    return 128 - code if code < 0 else code
