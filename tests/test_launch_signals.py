"""`batchlab app` passes stop signals to streamlit and ends with it (webapp.launch.serve): what
`docker stop` and a terminal's Ctrl-C rely on."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# A stand-in server: says it is ready, records the signal it gets, then exits 0 (or ignores SIGTERM).
CHILD = """
import signal, sys, time
from pathlib import Path
out = Path(sys.argv[1])
def stop(signum, frame):
    (out / "got").write_text(str(signum))
    sys.exit(0)
signal.signal(signal.SIGINT, stop)
signal.signal(signal.SIGHUP, stop)
signal.signal(signal.SIGTERM, signal.SIG_IGN if sys.argv[2] == "ignore" else stop)
(out / "pid").write_text(str(__import__("os").getpid()))
while True:
    time.sleep(0.1)
"""
DRIVER = "import os, sys\nfrom webapp.launch import serve\nsys.exit(serve({cmd!r}, dict(os.environ), {grace}))"


def gone(pid: int) -> bool:
    """Whether no live process has ``pid`` (a zombie counts as gone: it runs nothing)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state == "Z"


def wait_for(check, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"{what} within {timeout} s")


def start_driver(tmp_path: Path, mode: str, grace: float) -> tuple[subprocess.Popen, int]:
    cmd = [sys.executable, "-c", CHILD, str(tmp_path), mode]
    driver = subprocess.Popen([sys.executable, "-c", DRIVER.format(cmd=cmd, grace=grace)], cwd=REPO,
                              stdin=subprocess.DEVNULL)
    pid_file = tmp_path / "pid"
    child = int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), 60, "the child starts"))
    return driver, child


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_stop_signal_is_passed_to_the_server_and_both_end(tmp_path, sig):
    driver, child = start_driver(tmp_path, "stop", grace=30)
    assert os.getpgid(child) == child != os.getpgid(driver.pid)  # its own group: a terminal's ^C goes via serve
    os.kill(driver.pid, sig)
    assert driver.wait(timeout=10) == 0  # a requested stop is a clean exit
    assert gone(child)
    assert int((tmp_path / "got").read_text()) == sig


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_a_server_that_ignores_the_stop_is_killed_after_the_grace_period(tmp_path):
    driver, child = start_driver(tmp_path, "ignore", grace=1)
    os.kill(driver.pid, signal.SIGTERM)
    assert driver.wait(timeout=15) == 128 + signal.SIGKILL
    assert gone(child) and not (tmp_path / "got").exists()


def test_a_server_that_ends_by_itself_gives_its_exit_code(tmp_path):
    from batchlab.webapp.launch import serve

    assert serve([sys.executable, "-c", "raise SystemExit(3)"], dict(os.environ)) == 3
    assert serve([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"],
                 dict(os.environ)) == 128 + signal.SIGTERM  # no stop was asked: a signal ended it
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the handlers are put back


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_batchlab_app_ends_on_sigterm_with_streamlit_gone(tmp_path):
    port = free_port()
    env = {**os.environ, "BATCHLAB_HOME": str(tmp_path)}
    app = subprocess.Popen([sys.executable, "-m", "batchlab", "app", "--port", str(port)], cwd=REPO, env=env,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def healthy():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_for(healthy, 120, "the app answers its health check")
        children = Path(f"/proc/{app.pid}/task/{app.pid}/children").read_text().split()
        servers = [int(p) for p in children if b"streamlit" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert len(servers) == 1, children
        app.send_signal(signal.SIGTERM)
        assert app.wait(timeout=120) == 0   # ended by the signal, cleanly (a hang guard, not a measured time)
        assert gone(servers[0])
        assert not healthy()
    finally:
        if app.poll() is None:
            app.kill()
