"""Sample sources: real images, the synthetic cache and (in ``genaug.live``) a live generator."""

from genaug.sources._cache_source import CacheSource
from genaug.sources._real import RealSource

__all__ = ["CacheSource", "RealSource"]
