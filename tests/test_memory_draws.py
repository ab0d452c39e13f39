"""``guest_behaviour._draws`` must take exactly what ``rng.integers(0, high, size=k)`` takes
from the stream (the guest's frees are drawn with it; results are compared bit for bit)."""

import numpy as np

from disco.engine.streams import RandomStreams
from disco.vmm.guest_behaviour import _draws


def test_draws_match_array_draws_and_leave_the_stream_in_step():
    picks = np.random.default_rng(7)
    for seed in range(20):
        a = RandomStreams(seed).get("memory/3")
        b = RandomStreams(seed).get("memory/3")
        for _ in range(200):
            high = int(picks.choice([1, 2, 3, 7, 100, 5000, 2**31 - 1, 2**32, 2**32 + 5, 2**40]))
            k = int(picks.choice([0, 0, 1, 1, 1, 2, 5]))
            assert _draws(a, high, k) == b.integers(0, high, size=k).tolist()
        assert a.bit_generator.state == b.bit_generator.state
