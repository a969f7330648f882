"""The decision rule every experiment verdict uses, ``effect(paired_test(a, b), min_effect)``, under
simulation: with two identical arms it fires in at most 5% of runs (VALIDITY.md, rule 5), and a
real effect of a size that matters is found."""

from __future__ import annotations

import random

import pytest

from whylab.verdict import effect, equivalent, paired_test

RUNS = 2000


def _arms(
    rng: random.Random, n: int, shift: float, seed_sd: float, noise_sd: float
) -> tuple[list[float], list[float]]:
    """Per-seed numbers of two arms: a shared per-seed level (the seed's weights and batches, which
    pairing removes), each arm's own noise, and arm a shifted by ``shift``."""
    a, b = [], []
    for _ in range(n):
        level = rng.gauss(3.0, seed_sd)
        a.append(level + shift + rng.gauss(0.0, noise_sd))
        b.append(level + rng.gauss(0.0, noise_sd))
    return a, b


def _firing_rate(n: int, shift: float, min_effect: float, seed: int, seed_sd: float = 0.3) -> float:
    rng = random.Random(seed)
    fired = 0
    for _ in range(RUNS):
        a, b = _arms(rng, n, shift, seed_sd=seed_sd, noise_sd=0.05)
        fired += effect(paired_test(a, b), min_effect) != 0
    return fired / RUNS


@pytest.mark.parametrize("n", [3, 5])
def test_null_false_positive_rate_at_most_five_percent(n: int) -> None:
    # min_effect = 0 is the paired t-test alone: its size must be alpha (5%) up to Monte Carlo error
    # (3 sd of a 5% rate over 2000 runs: 1.5 points); a floor of a size that matters, on the same
    # simulated runs, can only fire less often
    mc = 3 * (0.05 * 0.95 / RUNS) ** 0.5
    plain = _firing_rate(n, 0.0, 0.0, seed=n)
    assert 0.05 - mc <= plain <= 0.05 + mc
    floored = _firing_rate(n, 0.0, 0.02, seed=n)
    assert floored <= plain and floored <= 0.05 + mc


def test_null_rate_does_not_depend_on_the_seed_to_seed_spread() -> None:
    """Pairing: a large per-seed spread shared by both arms does not make identical arms differ."""
    assert _firing_rate(5, 0.0, 0.0, seed=7, seed_sd=3.0) <= 0.05 + 3 * (0.05 * 0.95 / RUNS) ** 0.5


def test_power_finds_a_real_effect() -> None:
    # a shift of 0.15 (three times the 0.02 floor, three times the per-arm noise) over 5 paired
    # seeds: found in most runs, in the right direction, even with a per-seed spread twice as large
    rng = random.Random(11)
    signs = []
    for _ in range(400):
        a, b = _arms(rng, 5, 0.15, seed_sd=0.3, noise_sd=0.05)
        signs.append(effect(paired_test(a, b), 0.02))
    assert signs.count(1) / len(signs) >= 0.9 and signs.count(-1) == 0
    rng = random.Random(12)
    down = [effect(paired_test(*_arms(rng, 5, -0.15, 0.3, 0.05)), 0.02) for _ in range(400)]
    assert down.count(-1) / len(down) >= 0.9


def test_a_clear_but_tiny_effect_is_not_an_effect() -> None:
    """A shift far below the floor is never counted, however clear it is."""
    rng = random.Random(13)
    fired = [effect(paired_test(*_arms(rng, 5, 0.005, 0.3, 0.0005)), 0.02) for _ in range(200)]
    assert not any(fired)
    rng = random.Random(14)
    eq = [equivalent(paired_test(*_arms(rng, 5, 0.0, 0.3, 0.002)), 0.02) for _ in range(200)]
    assert sum(eq) / len(eq) >= 0.9  # identical arms with little noise are shown equivalent
