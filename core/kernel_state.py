"""Records of arrays and lists for compiled code, each handed to a call by one reference.

Numba hands a tuple to a compiled call member by member, and counts every array or
list in it in and out of the call with an atomic reference count; in the continuous
kernel that bookkeeping took more time than the simulation (docs/benchmarks.md). A
record made by :func:`state` is one reference however many members it holds, and
compiled code reads its members by attribute, as it reads a named tuple's.
"""
from __future__ import annotations

from numba.core import types
from numba.experimental import structref


class StateType(types.StructRef):
    """The compiled type of a :func:`state` record (literal members are typed as their plain type)."""

    def preprocess_fields(self, fields):
        return tuple((name, types.unliteral(t)) for name, t in fields)


def state(name: str, fields) -> type:
    """A record type named ``name`` with ``fields`` (names, or one string of them space separated):
    compiled code builds one by calling it with the members in order, and reads them by attribute."""
    kind = structref.register(type(f"{name}Type", (StateType,), {"__module__": __name__}))
    globals()[kind.__name__] = kind   # numba's cache finds a type again by its module and name
    proxy = type(name, (structref.StructRefProxy,), {"__module__": __name__, "__doc__": f"Fields: {fields}."})
    structref.define_proxy(proxy, kind, fields.split() if isinstance(fields, str) else list(fields))
    return proxy
