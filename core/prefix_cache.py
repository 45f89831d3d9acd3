"""Automatic prefix caching, as vLLM 0.33's block pool keeps it (compiled; the continuous kernel calls it).

A full KV block is named by a hash chain over the tokens up to its end (:func:`block_name`): blocks of
two requests whose tokens agree up to there have one name, and a request admitted finds the longest run
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


@njit(cache=True)
def block_name(s, req, chain, p, j):
    """The name of block ``j`` of request ``p``: its tokens' chain where its keys describe them
    (``kcov`` tokens from key ``k0`` on, ``s.kb`` tokens a key), else the request's own."""
    end = (j + 1) * s.B
    if end <= req[p, KCOV]:
        return mix(chain[req[p, K0] + (end - 1) // s.kb], end)
    return mix(mix(OWN, req[p, UID]), j)


# ------------------------------------------------------------ the table of names (linear probing)
@njit(cache=True)
def _find(names, gi, name):
    """The slot holding ``name`` on GPU ``gi``, or -1."""
    mask = names.shape[2] - 1
    i = name & mask
    while True:
        key = names[gi, KEY, i]
        if key == name:
            return i
        if key == 0:
            return -1
        i = (i + 1) & mask


@njit(cache=True)
def _insert(names, gi, name, b):
    mask = names.shape[2] - 1
    i = name & mask
    while names[gi, KEY, i] != 0:
        i = (i + 1) & mask
    names[gi, KEY, i] = name
    names[gi, FIRST, i] = b


@njit(cache=True)
def _delete(names, gi, i):
    """Empty slot ``i``, moving back the entries after it that would no longer be found."""
    mask = names.shape[2] - 1
    j = i
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


# ------------------------------------------------------------ the pool
@njit(cache=True)
def lookup(pool, s, req, chain, names, table, gi, p, tokens):
    """(blocks hit, how many of them no request holds): the longest run of ``p``'s first blocks cached
    on GPU ``gi``, at most ``(tokens - 1) // B`` (its last token is always computed: vLLM's hit cap);
    their ids go to ``table`` (for :func:`touch`)."""
    hits = free = 0
    for j in range((tokens - 1) // s.B):
        i = _find(names, gi, block_name(s, req, chain, p, j))
        if i < 0:
            break
        b = names[gi, FIRST, i]
        table[j] = b
        hits += 1
        if pool[gi, REF, b] == 0:
            free += 1
    return hits, free


@njit(cache=True)
def _queue_remove(pool, gi, b):
    prev, nxt = pool[gi, PREV, b], pool[gi, NEXT, b]
    pool[gi, NEXT, prev] = nxt
    pool[gi, PREV, nxt] = prev


@njit(cache=True)
def _queue_append(pool, gi, b, end):
    last = pool[gi, PREV, end]
    pool[gi, NEXT, last] = b
    pool[gi, PREV, b] = last
    pool[gi, NEXT, b] = end
    pool[gi, PREV, end] = b


@njit(cache=True)
def take_free(pool, names, g, gi, count, end):
    """Take ``count`` free blocks on GPU ``gi`` (record ``g``): unnamed ones first, then cached ones from
    the least recently freed, each evicted."""
    for _ in range(count):
        if g.nu > 0:
            g.nu -= 1
            continue
        b = pool[gi, NEXT, end]
        _queue_remove(pool, gi, b)
        g.ncf -= 1
        _forget(pool, names, g, gi, b)


@njit(cache=True)
def _forget(pool, names, g, gi, b):
    """Block ``b`` loses its name (evicted): out of the table's chain of that name, its id unused."""
    i = _find(names, gi, pool[gi, NAME, b])
    first = names[gi, FIRST, i]
    if first == b:
        nxt = pool[gi, DUP, b]
        if nxt < 0:
            _delete(names, gi, i)
        else:
            names[gi, FIRST, i] = nxt
    else:
        while pool[gi, DUP, first] != b:
            first = pool[gi, DUP, first]
        pool[gi, DUP, first] = pool[gi, DUP, b]
    pool[gi, DUP, b] = -1
    pool[gi, NAME, b] = 0
    pool[gi, IDS, g.nid] = b
    g.nid += 1


@njit(cache=True)
def _cache(pool, names, g, gi, name):
    """A new cached block named ``name`` held by one request (after any block cached under that name)."""
    g.nid -= 1
    b = pool[gi, IDS, g.nid]
    pool[gi, NAME, b] = name
    pool[gi, REF, b] = 1
    i = _find(names, gi, name)
    if i < 0:
        _insert(names, gi, name, b)
    else:
        first = names[gi, FIRST, i]
        while pool[gi, DUP, first] >= 0:
            first = pool[gi, DUP, first]
        pool[gi, DUP, first] = b
    return b


@njit(cache=True)
def touch(pool, req, table, g, gi, p, hits):
    """Request ``p`` takes its first ``hits`` blocks, found by :func:`lookup` (their ids in ``table``),
    from GPU ``gi``'s cache."""
    for j in range(hits):
        b = table[j]
        if pool[gi, REF, b] == 0:
            _queue_remove(pool, gi, b)
            g.ncf -= 1
        pool[gi, REF, b] += 1
    req[p, NB] = req[p, NC] = hits


@njit(cache=True)
def fill(pool, s, req, chain, names, table, g, gi, p, tokens):
    """Request ``p`` has slots for ``tokens`` tokens (its new blocks taken already): name the blocks
    they fill."""
    req[p, NB] = -(-tokens // s.B)
    full = tokens // s.B
    for j in range(req[p, NC], full):
        table[j] = _cache(pool, names, g, gi, block_name(s, req, chain, p, j))
    if full > req[p, NC]:
        req[p, NC] = full


@njit(cache=True)
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
            _queue_append(pool, gi, b, end)
            g.ncf += 1
            freed += 1
    req[p, NB] = req[p, NC] = 0
    return freed
