"""Closed forms of queueing theory the simulator is checked against (mean sojourn times, in seconds)."""
from __future__ import annotations

import math


def erlang_c(c: int, a: float) -> float:
    """P(wait > 0) in M/M/c with offered load a = lambda / mu < c."""
    head = sum(a ** k / math.factorial(k) for k in range(c))
    tail = a ** c / math.factorial(c) * c / (c - a)
    return tail / (head + tail)


def mm1_sojourn(lam: float, mu: float) -> float:
    """M/M/1: E[T] = 1 / (mu - lambda)."""
    return 1.0 / (mu - lam)


def mmc_sojourn(c: int, lam: float, mu: float) -> float:
    """M/M/c (one shared FCFS queue): E[T] = C(c, a) / (c mu - lambda) + 1 / mu."""
    return erlang_c(c, lam / mu) / (c * mu - lam) + 1.0 / mu


def gim1_sigma(laplace, mu: float) -> float:
    """GI/M/1: the root sigma in (0, 1) of sigma = A*(mu (1 - sigma)), A* the interarrival time's
    Laplace transform (fixed-point iteration, which converges from 0 when the load is below 1)."""
    sigma = 0.0
    for _ in range(10_000):
        nxt = laplace(mu * (1.0 - sigma))
        if abs(nxt - sigma) < 1e-15:
            break
        sigma = nxt
    return sigma


def ekm1_sojourn(k: int, lam: float, mu: float) -> float:
    """E_k/M/1: Erlang-k interarrival times of rate lambda in all (k phases of rate k lambda each);
    as GI/M/1, E[T] = 1 / (mu (1 - sigma)), sigma = (k lambda / (k lambda + mu (1 - sigma)))^k."""
    sigma = gim1_sigma(lambda s: (k * lam / (k * lam + s)) ** k, mu)
    return 1.0 / (mu * (1.0 - sigma))
