"""Sample sources: real images, the synthetic cache and (in ``genaug.live``) a live generator.

:class:`Source` is what a plan indexes (:class:`RealSource`, :class:`CacheSource`);
:class:`FreshSource` is a stream of new images per class (``genaug.live.LiveSource``).
"""

from genaug.sources._cache_source import CacheSource, as_cache_source
from genaug.sources._protocol import FreshSource, Source
from genaug.sources._real import CHANNEL_MODES, RealSource

__all__ = ["CHANNEL_MODES", "CacheSource", "FreshSource", "RealSource", "Source",
           "as_cache_source"]
