"""A run's training, validation and test loaders from its splits, in one call."""

from __future__ import annotations

from typing import NamedTuple

from genaug.exceptions import ConfigError
from genaug.loaders._options import SamplingOptions
from genaug.loaders._pydataset import BalancedBatchGenerator
from genaug.loaders._sampler import build_sampler

LOADERS = ("auto", "tfdata", "pydataset")


class Loaders(NamedTuple):
    """The training loader and the evaluation loaders (None where the split is empty)."""

    train: object
    validation: object
    test: object


def choose_loader(loader: str = "auto", *, live: bool = False,
                  redraws_pool: bool = False) -> str:
    """``"tfdata"`` or ``"pydataset"``: ``loader`` resolved against the Keras backend.

    ``"auto"`` takes the ``tf.data`` pipeline under the TensorFlow backend, the
    ``PyDataset`` otherwise. A live source feeds the ``PyDataset`` only; a pool redrawn mid-fit
    (``redraws_pool``: an :class:`~genaug.loaders.AdaptAfterWarmup` selection under a
    ``pool_cap``) reaches files beyond those a ``tf.data`` pipeline listed when it was built.
    """
    import keras

    if loader not in LOADERS:
        raise ConfigError(f"loader must be one of {', '.join(LOADERS)}, got {loader!r}")
    if loader == "pydataset" or live:
        return "pydataset"
    available = keras.backend.backend() == "tensorflow"
    if loader == "tfdata" and not available:
        raise ConfigError("--loader tfdata needs the TensorFlow Keras backend")
    if loader == "tfdata" and redraws_pool:
        raise ConfigError("--synthetic-select after the warm-up with --synthetic-pool-cap "
                          "needs --loader pydataset")
    return "tfdata" if available and not redraws_pool else "pydataset"


def build_loaders(splits, options: SamplingOptions, *, image_size, color_mode: str,
                  loader: str = "auto", cache="auto", augment=None, synthetic_cache=None,
                  live_source=None, redraws_pool: bool = False) -> Loaders:
    """Training, validation and test loaders over ``splits`` (a
    :class:`~genaug.data.DatasetSplits`), each from :func:`~genaug.loaders.build_sampler`.

    The training loader samples with ``options``, mixes in ``synthetic_cache`` (images
    derived from the validation and test images left out) or ``live_source``, and applies
    ``augment``; the evaluation loaders read every real image once, in order. ``loader`` as
    :func:`choose_loader`; ``cache``, ``image_size`` and ``color_mode`` as the loaders take
    them.
    """
    train_sampler = build_sampler(
        splits.train, options, synthetic_cache=synthetic_cache,
        held_out_ids=splits.held_out_ids(),
        live_classes=live_source.live_classes if live_source is not None else ())
    evaluation = options.evaluation(shuffle=False)
    decoding = dict(image_size=image_size, color_mode=color_mode, cache=cache)
    if choose_loader(loader, live=live_source is not None,
                     redraws_pool=redraws_pool) == "tfdata":
        from genaug.loaders._tfdata import make_tf_dataset

        def make(sampler, **extra):
            return make_tf_dataset(sampler, **decoding, **extra)
        train = make(train_sampler, augment=augment)
    else:
        def make(sampler, **extra):
            return BalancedBatchGenerator.from_sampler(sampler, **decoding, **extra)
        train = make(train_sampler, augment=augment, live_source=live_source)
    validation, test = (make(build_sampler(part, evaluation)) if part is not None else None
                        for part in (splits.validation, splits.test))
    return Loaders(train, validation, test)
