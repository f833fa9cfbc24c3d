"""A run's ``status.json`` from its loaders: every image that entered training, accounted for."""

from __future__ import annotations

from pathlib import Path

from genaug.cache import STATUS_FILE, TrainingStatus
from genaug.io import write_json
from genaug.loaders._sampler import TrainingComposition


def training_status(loader, *, epochs: int, validation=None, test=None, adaptation=None,
                    selection: dict | None = None, skipped_files=None,
                    composition: TrainingComposition | None = None) -> TrainingStatus:
    """The :class:`~genaug.cache.TrainingStatus` of a run that trained ``epochs`` epochs on
    ``loader``: the status ``genaug train`` writes.

    Parameters
    ----------
    loader : BalancedBatchGenerator or tf.data.Dataset
        The training loader (one of genaug's): its sampler plans every epoch again from the
        seed (:meth:`~genaug.loaders.EpochSampler.composition`).
    epochs : int
    validation, test : loader, optional
        The held-out loaders; their real images are counted per class.
    adaptation : AdaptAfterWarmup, optional
        Its selection and allocation are recorded.
    selection : dict, optional
        The report of a selection made before training (:func:`select_synthetic` with a saved
        model), recorded when ``adaptation`` made none.
    skipped_files : sequence of dict, optional
        ``{"path", "reason"}`` of the files left out while indexing; default the loader's
        ``skipped``.
    composition : TrainingComposition, optional
        The sampler's composition over ``epochs`` when already computed.
    """
    sampler = loader.sampler
    comp = composition or sampler.composition(epochs)
    offered = sampler.offered
    if skipped_files is None:
        skipped_files = [{"path": f.path, "reason": f.reason}
                         for f in getattr(loader, "skipped", ())]
    shares = comp.synthetic_shares()
    details = {"image_size": list(loader.image_size), "color_mode": loader.color_mode}
    live = getattr(loader, "live_source", None)
    if live is not None:
        # What the live producer's gates turned away, per class (a class-margin gate says
        # here which classes' images strayed toward others).
        statistics = live.statistics()
        details["live_rejections"] = {key: statistics[key] for key in (
            "generated", "accepted", "rejected_by_gate", "rejected_by_class")}
    for key, report in (("synthetic_selection",
                         getattr(adaptation, "selection", None) or selection),
                        ("synthetic_allocation", getattr(adaptation, "allocation", None))):
        if report is not None:
            details[key] = report
    schedule = sampler.options.schedule
    details.update(
        synthetic_schedule=schedule.to_dict() if schedule is not None else None,
        synthetic_fill={"fill_to": sampler.fill_to, "per_class": sampler.fill_summary()},
        synthetic_label_smoothing=sampler.options.synthetic.label_smoothing)
    used = comp.synthetic_images_used()
    if offered is not None:
        # Which classes the synthetic images reached: a gain on one class can cost others.
        reached = [n for n, count in zip(sampler.class_names, used) if count > 0]
        details["synthetic_coverage"] = {
            "received": sorted(reached),
            "not_received": sorted(set(sampler.class_names) - set(reached))}

    def counts(part):
        return part.sampler.real.counts() if part is not None else None

    return TrainingStatus.from_counts(
        sampler.class_names, original=sampler.real_counts, synthetic=used,
        validation=counts(validation), test=counts(test),
        cache=getattr(offered, "cache", None),
        excluded_for_leakage=getattr(offered, "excluded_leakage", 0),
        share_of_draws=[shares[name]["synthetic_share_of_draws"]
                        for name in sampler.class_names],
        synthetic_cap=sampler.requested_options.synthetic.cap,
        synthetic_pool_cap=sampler.requested_options.synthetic.pool_cap,
        synthetic_only_classes=comp.synthetic_only_classes, seed=sampler.seed,
        skipped_files=skipped_files, details=details)


def write_training_status(path, loader, *, epochs: int, validation=None, test=None,
                          adaptation=None, selection=None, skipped_files=None
                          ) -> TrainingStatus:
    """Write ``status.json`` of a run on ``loader`` to ``path`` (a file, or a folder to hold
    ``status.json``) with one call; see :func:`training_status` for the arguments. The file
    is the one ``genaug train`` writes for the same data, seed and options."""
    status = training_status(loader, epochs=epochs, validation=validation, test=test,
                             adaptation=adaptation, selection=selection,
                             skipped_files=skipped_files)
    path = Path(path)
    write_json(path / STATUS_FILE if path.is_dir() else path, status.to_json())
    return status
