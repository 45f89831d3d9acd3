"""Automatic prefix caching, as vLLM 0.33's block pool keeps it (compiled; the continuous kernel calls it).

A full KV block is named by a hash chain over the tokens up to its end: block ``j`` (ending at token
``e = (j + 1) B``) of a request whose keys describe its first ``kcov`` tokens is named
``mix(chain[e - 1 of its keys], e)`` when ``e <= kcov``, else ``mix(mix(OWN, uid), j)``, its own.
Blocks of two requests whose tokens agree up to there have one name, and a request admitted finds the longest run
of its first blocks already cached on its GPU (a *hit*: those tokens skip their prefill). A block is
cached as soon as the tokens that fill it are scheduled. When no request holds a cached block any more
it stays cached but free; the free blocks form one queue: blocks holding no name first, then cached
blocks from the least recently freed. Taking a free block takes the queue's head and, if it is cached,
evicts it (its name is forgotten); a hit on a free cached block takes it out of the queue.

Only cached blocks need an identity here. The blocks holding no name (a request's partial last block,
or a block taken and not yet filled) are counted, not named: any two are alike. A request's table
holds the ids of its first ``nc`` blocks (cached, in order), then ``nb - nc`` unnamed ones.

State per GPU: ``pool[gi, field, block]`` (a row per block, the last the queue's sentinel), the names
cached (``names[gi]``: an open-addressing hash table, name -> the first block cached under that name,
later duplicates following in ``DUP``; a GPU holds at most a name a block, so the table stays at most a
quarter full), and each request's table.

Speed: every array handed to a compiled call costs an atomic reference count in and out, which per
block would cost more than the work; so the loops over a request's blocks do their probing, naming and
queue updates in place, calling only :func:`mix` (numbers in, a number out).
"""
from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.typed import List

REF, NAME, PREV, NEXT, DUP, IDS = range(6)   # pool[gi, field, block]; IDS: a stack of unused ids
KEY, FIRST = 0, 1                            # names[gi, field, slot]: a name (0: empty slot), its first block
# req[p, field] (p: queue position): blocks in its table, how many of them cached; tokens it found cached;
# where its keys start in the chain, tokens they describe; its index in the workload; its latest admission
REQUEST_FIELDS = ("nb", "nc", "hit", "k0", "kcov", "uid", "adm")
NB, NC, HIT, K0, KCOV, UID, ADM = range(len(REQUEST_FIELDS))
OWN = 0x5EED_0F_0B10C5                       # salt of the names of a request's own blocks


@njit(cache=True)
def mix(a, b):
    """A 64-bit hash of two integers (splitmix64's finaliser), never 0 (0 means "no name")."""
    z = np.uint64(a) + np.uint64(b) * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    h = np.int64(z)
    return h if h != 0 else 1


@njit(cache=True)
def key_chains(offsets, keys):
    """Each request's chain of its keys: ``chain[i]`` names the tokens up to the end of key ``i``."""
    chain = np.empty(len(keys), np.int64)
    for q in range(len(offsets) - 1):
        h = 0
        for i in range(offsets[q], offsets[q + 1]):
            h = mix(h, keys[i])
            chain[i] = h
    return chain


@njit(cache=True)
def empty_tables(n):
    """``n`` empty block tables (a request's is made when it is first admitted)."""
    tables = List.empty_list(types.int64[:])
    none = np.empty(0, np.int64)
    for _ in range(n):
        tables.append(none)
    return tables


def empty_ids():
    """An empty list of request positions (typed, as the kernel takes it)."""
    return List.empty_list(types.int64)


def new_pool(gpus: int, blocks: int) -> np.ndarray:
    """The block pools of ``gpus`` GPUs of ``blocks`` blocks each, nothing cached."""
    pool = np.zeros((gpus, 6, blocks + 1), np.int64)
    pool[:, PREV, blocks] = pool[:, NEXT, blocks] = blocks    # empty queue of cached free blocks
    pool[:, DUP, :] = -1
    pool[:, IDS, :blocks] = np.arange(blocks)[::-1]
    return pool


def new_names(gpus: int, blocks: int) -> np.ndarray:
    """The GPUs' empty tables of cached names, each at least four times as large as the names it can hold."""
    size = 1 << max(4, int(4 * (blocks + 1) - 1).bit_length())
    return np.zeros((gpus, 2, size), np.int64)


# ------------------------------------------------------------ the pool
@njit(cache=True)
def lookup(pool, s, req, chain, names, table, gi, p, tokens):
    """(blocks hit, how many of them no request holds): the longest run of ``p``'s first blocks cached
    on GPU ``gi``, at most ``(tokens - 1) // B`` (its last token is always computed: vLLM's hit cap);
    their ids go to ``table`` (for :func:`touch`)."""
    hits = free = 0
    B, kb, k0, kcov, own = s.B, s.kb, req[p, K0], req[p, KCOV], mix(OWN, req[p, UID])
    mask = names.shape[2] - 1
    for j in range((tokens - 1) // B):
        end = (j + 1) * B
        name = mix(chain[k0 + (end - 1) // kb], end) if end <= kcov else mix(own, j)
        i = name & mask
        while names[gi, KEY, i] != name and names[gi, KEY, i] != 0:
            i = (i + 1) & mask
        if names[gi, KEY, i] == 0:
            break
        b = names[gi, FIRST, i]
        table[j] = b
        hits += 1
        if pool[gi, REF, b] == 0:
            free += 1
    return hits, free


@njit(cache=True, inline="always")
def take_free(pool, names, g, gi, count, end):
    """Take ``count`` free blocks on GPU ``gi`` (record ``g``): unnamed ones first, then cached ones from
    the least recently freed, each evicted: its name leaves the table (or the chain of blocks cached
    under it), its id is unused again."""
    taken = min(count, g.nu)
    g.nu -= taken
    mask = names.shape[2] - 1
    for _ in range(count - taken):
        b = pool[gi, NEXT, end]                      # the queue's head
        nxt = pool[gi, NEXT, b]
        pool[gi, NEXT, end] = nxt
        pool[gi, PREV, nxt] = end
        g.ncf -= 1
        name = pool[gi, NAME, b]
        i = name & mask
        while names[gi, KEY, i] != name:
            i = (i + 1) & mask
        first = names[gi, FIRST, i]
        if first != b:                               # a later duplicate: out of the chain
            while pool[gi, DUP, first] != b:
                first = pool[gi, DUP, first]
            pool[gi, DUP, first] = pool[gi, DUP, b]
        elif pool[gi, DUP, b] >= 0:                  # the first of several: the next one stands for the name
            names[gi, FIRST, i] = pool[gi, DUP, b]
        else:                                        # the name goes: empty slot i, moving back the entries
            j = i                                    # after it that would no longer be found
            while True:
                j = (j + 1) & mask
                key = names[gi, KEY, j]
                if key == 0:
                    break
                home = key & mask
                if (j > i and (home <= i or home > j)) or (j < i and home <= i and home > j):
                    names[gi, KEY, i] = key
                    names[gi, FIRST, i] = names[gi, FIRST, j]
                    i = j
            names[gi, KEY, i] = 0
        pool[gi, DUP, b] = -1
        pool[gi, NAME, b] = 0
        pool[gi, IDS, g.nid] = b
        g.nid += 1


@njit(cache=True, inline="always")
def touch(pool, req, table, g, gi, p, hits):
    """Request ``p`` takes its first ``hits`` blocks, found by :func:`lookup` (their ids in ``table``),
    from GPU ``gi``'s cache; those no request held leave the free queue."""
    for j in range(hits):
        b = table[j]
        if pool[gi, REF, b] == 0:
            prev, nxt = pool[gi, PREV, b], pool[gi, NEXT, b]
            pool[gi, NEXT, prev] = nxt
            pool[gi, PREV, nxt] = prev
            g.ncf -= 1
        pool[gi, REF, b] += 1
    req[p, NB] = req[p, NC] = hits


@njit(cache=True, inline="always")
def fill(pool, s, req, chain, names, table, g, gi, p, tokens):
    """Request ``p`` has slots for ``tokens`` tokens (its new blocks taken already): cache the blocks
    they fill, each a new id held by ``p``, after any block cached under its name."""
    B = s.B
    req[p, NB] = -(-tokens // B)
    full = tokens // B
    if full <= req[p, NC]:
        return
    kb, k0, kcov, own = s.kb, req[p, K0], req[p, KCOV], mix(OWN, req[p, UID])
    mask = names.shape[2] - 1
    for j in range(req[p, NC], full):
        end = (j + 1) * B
        name = mix(chain[k0 + (end - 1) // kb], end) if end <= kcov else mix(own, j)
        g.nid -= 1
        b = pool[gi, IDS, g.nid]
        pool[gi, NAME, b] = name
        pool[gi, REF, b] = 1
        table[j] = b
        i = name & mask
        while names[gi, KEY, i] != name and names[gi, KEY, i] != 0:
            i = (i + 1) & mask
        if names[gi, KEY, i] == 0:
            names[gi, KEY, i] = name
            names[gi, FIRST, i] = b
        else:
            first = names[gi, FIRST, i]
            while pool[gi, DUP, first] >= 0:
                first = pool[gi, DUP, first]
            pool[gi, DUP, first] = b
    req[p, NC] = full


@njit(cache=True, inline="always")
def release(pool, table, req, g, gi, p, end):
    """Free request ``p``'s blocks, its last first (vLLM's order): unnamed ones to the queue's head,
    cached ones no other request holds to its tail. Returns how many blocks are free again."""
    nb, nc = req[p, NB], req[p, NC]
    g.nu += nb - nc
    freed = nb - nc
    for j in range(nc - 1, -1, -1):
        b = table[j]
        pool[gi, REF, b] -= 1
        if pool[gi, REF, b] == 0:
            last = pool[gi, PREV, end]
            pool[gi, NEXT, last] = b
            pool[gi, PREV, b] = last
            pool[gi, NEXT, b] = end
            pool[gi, PREV, end] = b
            g.ncf += 1
            freed += 1
    req[p, NB] = req[p, NC] = 0
    return freed


# ------------------------------------------------------------ what the kernel calls, a call a request's step
@njit(cache=True)
def admit(pool, s, req, chain, names, table, g, gi, p, hits, new, tokens):
    """Request ``p`` is admitted to GPU ``gi``: it takes its ``hits`` blocks found cached (:func:`lookup`)
    and ``new`` free ones, now holding slots for ``tokens`` tokens, and caches those they fill."""
    touch(pool, req, table, g, gi, p, hits)
    take_free(pool, names, g, gi, new, s.K)
    fill(pool, s, req, chain, names, table, g, gi, p, tokens)


@njit(cache=True)
def grow(pool, s, req, chain, names, table, g, gi, p, new, tokens):
    """Request ``p``'s next prompt chunk takes ``new`` free blocks, now holding slots for ``tokens``
    tokens, and caches those they fill."""
    take_free(pool, names, g, gi, new, s.K)
    fill(pool, s, req, chain, names, table, g, gi, p, tokens)


@njit(cache=True)
def leave(pool, s, req, chain, names, table, g, gi, p, tokens):
    """Request ``p`` leaves GPU ``gi`` (done or preempted) holding slots for ``tokens`` tokens: the blocks
    they filled are cached, then all its blocks freed. Returns how many blocks are free again."""
    fill(pool, s, req, chain, names, table, g, gi, p, tokens)
    return release(pool, table, req, g, gi, p, s.K)
