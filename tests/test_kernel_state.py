"""Records for compiled code (core.kernel_state): one reference to the members themselves, read by attribute."""
from __future__ import annotations

import numpy as np
import pytest
from numba import njit
from numba.core.errors import TypingError

from batchlab.core.kernel_state import state

Pair = state("TestPair", "counts log")
Named = state("TestNamed", ("a", "b"))


@njit
def _bump(rec, i):
    rec.counts[i] += 1
    rec.log.append(i)


@njit
def _run(counts, steps):
    log = [0]
    log.pop()
    rec = Pair(counts, log)
    for i in steps:
        _bump(rec, i)            # a call hands the record on: the same array and list
    return len(rec.log), rec.log[-1]


@njit
def _sum_named(a, b):
    rec = Named(a, b)
    return rec.a.sum() + rec.b


@njit
def _unknown(counts):
    return Pair(counts, [1]).missing


def test_a_record_holds_its_members_themselves_not_copies():
    counts = np.zeros(3, np.int64)
    assert _run(counts, np.array([2, 0, 2])) == (3, 2)
    assert counts.tolist() == [1, 0, 2]


def test_fields_may_be_named_by_a_sequence_and_plain_numbers_are_members_too():
    assert _sum_named(np.arange(4.0), 5) == 11.0


def test_reading_a_field_the_record_lacks_is_a_typing_error():
    with pytest.raises(TypingError, match="missing"):
        _unknown(np.zeros(1, np.int64))
