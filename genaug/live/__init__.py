"""Live synthetic images: a generator producing while ``model.fit`` trains.

``LiveSource`` schedules the producer and serves fresh images to ``BalancedBatchGenerator``
through a bounded per-class buffer; a ``GenerationWorker`` generates, gates and persists each
job (a ``LiveJob`` of labels and seeds; its accepted images come back as one ``LiveBatch``),
in the training process or in a child process of its own (``SubprocessWorker``);
``start_live_source`` builds the whole of it for ``genaug train``.
"""

from genaug.live._buffer import FreshBuffer
from genaug.live._factory import (
    build_worker,
    check_live_generator,
    share_gpu_with_torch,
    start_live_source,
)
from genaug.live._process import RemoteTraceback, SubprocessWorker
from genaug.live._source import LiveSource
from genaug.live._worker import GenerationWorker, LiveBatch, LiveJob

__all__ = ["FreshBuffer", "GenerationWorker", "LiveBatch", "LiveJob", "LiveSource",
           "RemoteTraceback", "SubprocessWorker", "build_worker", "check_live_generator",
           "share_gpu_with_torch",
           "start_live_source"]
