"""Start the web app: ``launch()`` runs ``streamlit run webapp/app.py`` in a subprocess.

Beside it, a short-lived process compiles the continuous engine (or loads it from numba's cache),
so the first continuous run a user starts does not wait for the compiler.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

APP = Path(__file__).resolve().parent / "app.py"
WARM_UP = [sys.executable, "-c", "from core.continuous_engine import warm_up; warm_up()"]


def command(host: str = "127.0.0.1", port: int = 8501, headless: bool = True) -> list[str]:
    """The ``streamlit run`` command line (telemetry off, no error details shown to users)."""
    return [sys.executable, "-m", "streamlit", "run", str(APP),
            "--server.address", host, "--server.port", str(port),
            "--server.headless", "true" if headless else "false",
            "--browser.gatherUsageStats", "false",
            "--client.showErrorDetails", "none"]


def launch(host: str = "127.0.0.1", port: int = 8501, db_url: str | None = None, headless: bool = True) -> int:
    """Serve the app until interrupted; ``db_url`` becomes BATCHLAB_DB_URL. Returns streamlit's exit code."""
    env = dict(os.environ)
    if db_url:
        env["BATCHLAB_DB_URL"] = db_url
    env.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")
    subprocess.Popen(WARM_UP, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, cwd=Path(__file__).resolve().parents[1])
    try:
        return subprocess.call(command(host, port, headless), env=env)
    except KeyboardInterrupt:
        return 0
