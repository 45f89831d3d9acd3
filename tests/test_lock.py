"""requirements.lock (what the Docker image installs) against pyproject.toml, .ci/lock.py, and the
Dockerfile's use of them."""
from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]


def _load_lock_tool():
    """.ci/lock.py, the script ``make lock`` runs (CI tooling, not part of the package)."""
    spec = importlib.util.spec_from_file_location("lock_tool", REPO / ".ci" / "lock.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_lock = _load_lock_tool()
LockError, lock_text, pins = _lock.LockError, _lock.lock_text, _lock.pins
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
IMAGE_EXTRAS = ("web", "postgres", "dask")


def locked() -> dict[str, str]:
    out = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version and " " not in line, f"not a name==version pin: {line!r}"
            out[canonicalize_name(name)] = version
    return out


def test_the_lock_pins_every_requirement_of_the_image_within_its_range():
    pinned = locked()
    wanted = PROJECT["dependencies"] + [r for e in IMAGE_EXTRAS for r in PROJECT["optional-dependencies"][e]]
    for text in wanted:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in pinned, f"{req.name} is required but not in requirements.lock: run make lock"
        assert req.specifier.contains(pinned[name], prereleases=True), f"{name}=={pinned[name]} is not {req}"
    assert "batchlab" not in pinned and "torch" not in pinned
    header = (REPO / "requirements.lock").read_text().splitlines()[0]
    assert re.search(r"Python 3\.11\.\d+, linux x86_64", header), f"not resolved as the image's platform: {header}"


def report(*packages: tuple[str, str]) -> dict:
    return {"version": "1", "environment": {"python_full_version": "3.11.7", "sys_platform": "linux",
                                            "platform_machine": "x86_64"},
            "install": [{"metadata": {"name": n, "version": v}} for n, v in packages]}


def test_pins_leave_the_project_out_and_sort_by_name():
    rep = report(("batchlab", "0.1.0"), ("SQLAlchemy", "2.1.9"), ("altair", "6.3.0"), ("typing_extensions", "4.16"))
    assert pins(rep) == ["altair==6.3.0", "SQLAlchemy==2.1.9", "typing_extensions==4.16"]
    text = lock_text(rep)
    assert "Python 3.11.7, linux x86_64" in text.splitlines()[0] and text.endswith("typing_extensions==4.16\n")


@pytest.mark.parametrize("bad, words", [
    ({"install": []}, "not a pip installation report"),
    (report(("batchlab", "0.1.0")), "installs nothing besides the project"),
    (report(("numpy", "")), "no name or version"),
])
def test_a_report_that_cannot_be_a_lock_is_refused(bad, words):
    with pytest.raises(LockError, match=words):
        pins(bad)


def test_the_image_installs_the_lock_under_tini_and_calibrates_into_its_volume():
    text = (REPO / "Dockerfile").read_text()
    assert "RUN pip install -r requirements.lock" in text and "pip install --no-deps -e ." in text
    assert "requirements.txt" not in text
    entrypoints = re.findall(r"^ENTRYPOINT (.+)$", text, re.M)
    assert entrypoints and all(json.loads(e)[:2] == ["/usr/bin/tini", "--"] for e in entrypoints)
    assert "install -y --no-install-recommends tini" in text
    calibrate = text.split("AS calibrate", 1)[1].split("\nFROM ", 1)[0]
    assert "WORKDIR /data" in calibrate and "USER batchlab" in calibrate
    assert "chown batchlab:batchlab /data" in text
    for source in re.findall(r"^COPY (.+) \S+$", text, re.M):
        for path in source.split():
            assert (REPO / path).exists(), f"the Dockerfile copies {path}, which is missing"
    ignored = (REPO / ".dockerignore").read_text().split()
    assert "requirements.lock" not in ignored and "pyproject.toml" not in ignored


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_lock_resolves_to_itself(tmp_path):
    """pip resolves requirements.lock (with dependencies) to exactly the pinned set: nothing missing."""
    out = tmp_path / "report.json"
    subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "-q", "--report",
                    str(out), "-r", str(REPO / "requirements.lock")], check=True, timeout=580)
    resolved = {canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"]
                for i in json.loads(out.read_text())["install"]}
    assert resolved == locked()
