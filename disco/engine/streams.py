"""Named random streams derived from one run seed.

Each purpose (``workload``, ``placement``, ``faults`` ...) gets its own ``numpy`` generator,
seeded from ``SeedSequence(seed)`` and a stable hash of the stream's name. Adding a new stream
therefore never shifts the numbers another stream draws, so a new mechanism does not change
the results of the old ones for the same seed.
"""

from __future__ import annotations

import zlib

import numpy as np


class RandomStreams:
    __slots__ = ("seed", "_streams")

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self._streams: dict[str, np.random.Generator] = {}

    def get(self, name: str) -> np.random.Generator:
        stream = self._streams.get(name)
        if stream is None:
            # crc32 is stable across processes (unlike hash()), so Ray workers agree.
            key = zlib.crc32(name.encode())
            stream = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, key])))
            self._streams[name] = stream
        return stream
