"""Engine layer: the event loop and the seeded random streams. Imports nothing above it."""

from disco.engine.loop import EventLoop, Handle
from disco.engine.streams import RandomStreams

__all__ = ["EventLoop", "Handle", "RandomStreams"]
