import dataclasses
import re

import numpy as np
import pytest

from genaug.exceptions import ConfigError
from genaug.generation import (
    BlurGate,
    FunctionGate,
    GateSpec,
    PHashGate,
    VerifierGate,
    build_gate_chain,
)
from genaug.generation._image_metrics import laplacian_variance


def checkerboard(size=32, cell=4, low=20, high=230):
    yy, xx = np.mgrid[:size, :size]
    board = ((yy // cell + xx // cell) % 2).astype(np.uint8)
    return np.where(board, high, low).astype(np.uint8)[:, :, None]


def smooth(size=32):
    ramp = np.linspace(100, 140, size)
    return np.tile(ramp, (size, 1)).astype(np.uint8)[:, :, None]


def blob(size=32, cx=10, cy=12, radius=7):
    yy, xx = np.mgrid[:size, :size]
    image = 40 + 180 * (np.hypot(xx - cx, yy - cy) < radius) + 1.5 * xx
    return np.clip(image, 0, 255).astype(np.uint8)[:, :, None]


def test_blur_gate_accepts_sharp_and_rejects_flat_images():
    gate = BlurGate(threshold=60)
    sharp, flat = checkerboard(), smooth()
    assert laplacian_variance(sharp) > 1000 > 60 > laplacian_variance(flat)
    assert gate.check(sharp, "a").passed
    result = gate.check(flat, "a")
    assert not result.passed and result.threshold == 60
    rgb = np.repeat(checkerboard(), 3, axis=2)
    assert laplacian_variance(rgb) == pytest.approx(laplacian_variance(checkerboard()))


def test_phash_gate_rejects_near_duplicates_of_accepted_and_real_images():
    real = {"a": [checkerboard(cell=8)]}
    gate = PHashGate(threshold=4, reference_images=lambda c: real.get(c, []))
    assert not gate.check(checkerboard(cell=8), "a").passed  # copy of a real image
    assert gate.check(checkerboard(cell=8), "b").passed  # other class: no reference
    first = blob()
    assert gate.check(first, "a").passed
    gate.register(first, "a")
    noisy = np.clip(first.astype(int) + np.random.default_rng(0).integers(-3, 4, first.shape),
                    0, 255).astype(np.uint8)
    result = gate.check(noisy, "a")
    assert not result.passed and result.score <= 4
    assert gate.check(blob(cx=22, cy=20, radius=5), "a").passed


class _Brightness:
    """A stand-in Keras model: P(class 0) grows with mean brightness."""

    input_shape = (None, 8, 8, 1)
    output_shape = (None, 2)

    def predict(self, x):
        return self(x)

    def __call__(self, x, training=False):
        p = 1 / (1 + np.exp(-(np.asarray(x).mean(axis=(1, 2, 3)) - 128) / 10))
        return np.stack([p, 1 - p], axis=1)


def test_verifier_gate_scores_the_intended_class():
    gate = VerifierGate(_Brightness(), class_names=["bright", "dark"], threshold=0.6)
    light, dark = np.full((16, 16, 1), 220, np.uint8), np.full((16, 16, 3), 30, np.uint8)
    assert gate.check(light, "bright").passed
    assert not gate.check(dark, "bright").passed
    assert gate.check(dark, "dark").score > 0.99
    unknown = gate.check(dark, "new_class")  # a class the classifier never saw
    assert unknown.passed and unknown.score is None and unknown.note == "not applicable"


def test_verifier_gate_loads_a_saved_keras_classifier(tmp_path):
    keras = pytest.importorskip("keras")
    from genaug.classifier import save_classifier

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Rescaling(1 / 255.0),
                              keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(2, activation="softmax")])
    model.layers[-1].set_weights([np.array([[20.0, -20.0]]), np.array([-10.0, 10.0])])
    path = save_classifier(model, tmp_path / "ref.keras", class_names=["bright", "dark"],
                           image_size=(8, 8), color_mode="grayscale")
    chain = build_gate_chain(blur_min=None, phash_max=None, verify_model=path,
                             verify_threshold=0.6)
    # Grey level g gives the logits (+gap/2, -gap/2): softmax is a sigmoid of the gap. At 150
    # neither score is near 0 or 1, where the 6 recorded decimals would hide a wrong one.
    gap = 2 * (20 * 150 / 255 - 10)
    bright, dark = 1 / (1 + np.exp(-gap)), 1 / (1 + np.exp(gap))
    passed, quality = chain.check(np.full((24, 24, 3), 150, np.uint8), "bright")
    assert passed and quality["verifier"]["score"] == pytest.approx(bright, abs=1e-5)
    passed, quality = chain.check(np.full((24, 24, 3), 150, np.uint8), "dark")
    assert not passed and quality["verifier"] == {
        "score": pytest.approx(dark, abs=1e-5), "threshold": 0.6, "passed": False}


def test_chain_records_every_gate_registers_accepted_images_and_takes_user_gates():
    single = FunctionGate("one_object", lambda image, c: float(image.max() > 200),
                          threshold=1.0)
    chain = build_gate_chain(blur_min=60, structure_min=None, phash_max=4,
                             extra_gates=[single])
    assert [g.name for g in chain.gates] == ["blur", "one_object", "phash"]  # stateful last
    passed, quality = chain.check(checkerboard(), "a")
    assert passed and set(quality) == {"blur", "one_object", "phash"}
    assert all(set(q) == {"score", "threshold", "passed"} for q in quality.values())
    passed, quality = chain.check(checkerboard(), "a")  # now a duplicate of an accepted one
    assert not passed and not quality["phash"]["passed"] and quality["blur"]["passed"]
    passed, quality = chain.check(smooth(), "a")
    assert not passed and not quality["blur"]["passed"] and not quality["one_object"]["passed"]
    rates = chain.acceptance_rates()["a"]
    assert rates["checked"] == 3 and rates["accepted"] == 1
    assert rates["by_gate"]["blur"] == pytest.approx(2 / 3, abs=1e-3)


def test_acceptance_collapse_is_said_once_per_class_and_gate():
    chain = build_gate_chain(blur_min=60, phash_max=None)
    for _ in range(25):
        chain.check(smooth(), "rare")
    chain.check(checkerboard(), "common")
    (message,) = chain.new_collapse_messages()
    assert re.search("ACCEPTANCE COLLAPSE: gate 'blur' .* 0 of 25 candidates of class 'rare'",
                     message)
    assert chain.new_collapse_messages() == []


def test_structure_gate_rejects_noise_and_is_in_the_default_chain():
    from genaug.generation import StructureGate

    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (32, 32, 1), dtype=np.uint8)
    ramp = np.tile(np.linspace(0, 255, 32, dtype=np.uint8)[None, :, None], (32, 1, 1))
    gate = StructureGate()
    assert not gate.check(noise, "a").passed and gate.check(ramp, "a").passed
    assert "structure" in [g.name for g in build_gate_chain().gates]


class _SmoothLover:
    """A 2-class "classifier": smooth images get ``real`` probabilities, noise is "common"."""

    input_shape = (None, 32, 32, 1)
    output_shape = (None, 2)

    def __init__(self, real):
        self.real = np.asarray(real, dtype=float)

    def predict(self, x):
        return self(x)

    def __call__(self, x, training=False):
        rough = np.abs(np.diff(np.asarray(x), axis=2)).mean(axis=(1, 2, 3)) > 20
        return np.where(rough[:, None], [0.05, 0.95], self.real)


@pytest.mark.parametrize(("real", "structure_min", "expected"), [
    ([0.9, 0.1], None, "generator does not make this class faithfully"),
    ([0.1, 0.9], None, "also rejects 100% of the class's real images: it has learned"),
    ([0.1, 0.9], 0.5, "structure gate passed only 0% of them too: the generator makes noise"),
])
def test_a_verifier_collapse_names_its_likely_cause(real, structure_min, expected):
    from genaug.generation import VerifierGate

    rng = np.random.default_rng(0)
    verifier = VerifierGate(_SmoothLover(real), class_names=["rare", "common"])
    chain = build_gate_chain(blur_min=None, structure_min=structure_min, phash_max=None,
                             verify_model=verifier, reference_images=lambda c: [smooth()] * 4)
    for _ in range(25):
        chain.check(rng.integers(0, 256, (32, 32, 1), dtype=np.uint8), "rare")
    messages = [chain.collapse_message(item) for item in chain.collapsed()
                if item["gate"] == "verifier"]
    assert len(messages) == 1 and expected in messages[0]


def test_batch_scores_equal_the_one_image_definitions():
    import imagehash
    from PIL import Image
    from scipy import ndimage

    from genaug.generation._image_metrics import (
        laplacian_variances,
        neighbour_correlations,
        phash_batch,
    )

    rng = np.random.default_rng(0)
    for shape in [(16, 16, 1), (24, 20, 3), (32, 32, 4)]:
        images = [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(6)]
        images += [np.clip(np.cumsum(rng.normal(0, 6, shape), axis=0) + 100, 0, 255
                           ).astype(np.uint8) for _ in range(6)]
        for image, bits in zip(images, phash_batch(images)):
            source = image[:, :, 0] if shape[2] == 1 else image[:, :, :3]
            expected = imagehash.phash(Image.fromarray(source)).hash.ravel()
            assert np.array_equal(np.unpackbits(np.array([bits], ">u8").view(np.uint8)),
                                  expected)
        grey = [(i[:, :, :3].mean(axis=2) if shape[2] >= 3 else i[:, :, 0]).astype(float)
                for i in images]
        assert np.array_equal(laplacian_variances(images),
                              [ndimage.laplace(g, mode="reflect").var() for g in grey])
        corr = neighbour_correlations(images)
        for image, value in zip(images, corr):
            x = image.astype(float) / 255
            a = np.concatenate([x[:, :-1].ravel(), x[:-1, :].ravel()])
            b = np.concatenate([x[:, 1:].ravel(), x[1:, :].ravel()])
            assert value == pytest.approx(np.corrcoef(a, b)[0, 1], abs=1e-9)


def test_prepared_batches_give_the_verdicts_of_one_by_one_checks():
    def chain():
        return build_gate_chain(blur_min=60, structure_min=0.5, phash_max=4,
                                reference_images=lambda c: [checkerboard(cell=8)])

    images = [checkerboard(), checkerboard(cell=8), blob(), blob(), smooth(),
              blob(cx=22, cy=20, radius=5)]
    one_by_one = chain()
    expected = [one_by_one.check(image, "a") for image in images]
    batched = chain()
    prepared = batched.prepare(images, ["a"] * len(images))
    got = [batched.finish(image, "a", p) for image, p in zip(images, prepared)]
    assert got == expected
    assert [p for p, _ in got] == [True, False, True, False, False, True]
    assert batched.acceptance_rates() == one_by_one.acceptance_rates()


def test_the_gate_settings_are_one_frozen_value_checked_once():
    spec = GateSpec(blur_min=None, phash_max=2, extra_gates=[FunctionGate("f", lambda i, c: 1.0,
                                                                         threshold=0.5)])
    assert isinstance(spec.extra_gates, tuple) and not spec.uses_models
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.blur_min = 60
    assert [g.name for g in spec.build().gates] == ["structure", "f", "phash"]
    assert ([g.name for g in build_gate_chain(blur_min=None, phash_max=2).gates]
            == ["structure", "phash"])
    with pytest.raises(ConfigError, match="`select_method` must be one of"):
        GateSpec(select_method="nearest")
