"""Live synthetic images: a generator producing while ``model.fit`` trains.

``LiveSource`` runs a generator backend in a background thread, gates every image, persists
the accepted ones into the synthetic cache and serves them to ``BalancedBatchGenerator``
through a bounded per-class buffer; ``start_live_source`` builds one for ``genaug train``.
"""

from genaug.live._buffer import FreshBuffer
from genaug.live._factory import share_gpu_with_torch, start_live_source
from genaug.live._source import LiveSource

__all__ = ["FreshBuffer", "LiveSource", "share_gpu_with_torch", "start_live_source"]
