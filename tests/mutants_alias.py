"""For mutmut (``make mutate``): its copy of the sources, mutants/, holds the packages as top-level
folders (core/, store/, ...). mutmut names each mutant by its file's module path (``core.bins``), so
the copy is imported under those names, and ``batchlab.<name>`` is made the very same module: the
tests, which import ``batchlab.core.bins``, run the mutated code and report it under mutmut's name."""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

PACKAGES = ("core", "store", "workloads", "calibration", "webapp", "cli")


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``batchlab.X...`` (X one of :data:`PACKAGES`) as the copy's module ``X...``."""

    def find_spec(self, name, path=None, target=None):
        parts = name.split(".")
        if len(parts) > 1 and parts[0] == "batchlab" and parts[1] in PACKAGES:
            return importlib.util.spec_from_loader(name, self)
        return None

    def create_module(self, spec):
        return importlib.import_module(spec.name.removeprefix("batchlab."))

    def exec_module(self, module):
        pass  # the module ran when it was imported under its own name


def import_the_copy_as_batchlab(copy: str) -> None:
    sys.path.insert(0, copy)
    sys.meta_path.insert(0, _Alias())
