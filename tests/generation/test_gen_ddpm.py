import json
import os

import numpy as np
import pytest
from _gen_helpers import shape_image

from genaug.exceptions import ConfigError
from genaug.generation import DDPMBackend, GenerationError, GenerationRequest, load_backend
from genaug.generation._ddpm_model import (
    LAMBDA_MIN_CLIPPED,
    build_sampler,
    build_train_scheduler,
    build_unet,
)
from genaug.generation._sanity import check_pixel_statistics, pixel_statistics


def test_fit_generator_saves_a_complete_generator_directory(tiny_generator):
    files = {p.relative_to(tiny_generator).as_posix() for p in tiny_generator.rglob("*")}
    assert {"unet/diffusion_pytorch_model.safetensors", "unet/config.json",
            "scheduler/scheduler_config.json", "class_map.json", "train_config.json",
            "genaug_generator.json", "loss_log.csv"} <= files
    assert json.loads((tiny_generator / "class_map.json").read_text()) == {
        "bar": 0, "disc": 1, "ring": 2}
    config = json.loads((tiny_generator / "train_config.json").read_text())
    assert config["max_steps"] == 3 and config["label_dropout"] == 0.1 and config["hflip"]
    assert config["noise_schedule"].startswith("squaredcos_cap_v2")
    meta = json.loads((tiny_generator / "genaug_generator.json").read_text())
    assert meta["steps"] == 3 and meta["color_mode"] == "grayscale" and meta["null_label"] == 3
    assert set(meta["pixel_stats"]["per_class"]) == {"bar", "disc", "ring"}
    log = (tiny_generator / "loss_log.csv").read_text().splitlines()
    assert log[0] == "step,loss,lr,seconds,images_seen" and len(log) == 4


def test_saved_generator_reloads_offline_and_samples_deterministically(tiny_generator):
    backend = load_backend(tiny_generator, device="cpu", steps=3, pixel_check=False)
    assert isinstance(backend, DDPMBackend) and os.environ["HF_HUB_OFFLINE"] == "1"
    assert backend.class_names == ("bar", "disc", "ring")
    made = backend.generate("ring", 3, seeds=[5, 6, 7])
    assert [m.image.shape for m in made] == [(16, 16, 1)] * 3
    assert all(m.image.dtype == np.uint8 for m in made)
    record = made[0].provenance
    assert record["generator"]["backend"] == "ddpm"
    assert len(record["generator"]["model_hash"]) == 64
    assert (record["seed"], record["steps"], record["guidance_scale"]) == (5, 3, 2.0)
    assert record["source_id"] is None and record["prompt"] is None
    # an image depends on its seed and class only, not on the rest of its batch
    alone = backend.generate_batch([GenerationRequest(class_name="ring", seed=6)])[0]
    assert np.array_equal(alone.image, made[1].image)
    assert not np.array_equal(made[0].image, made[1].image)


def test_variations_of_real_images_record_their_source(tiny_generator):
    backend = load_backend(tiny_generator, sampler="ddim", steps=4, strength=0.5,
                           pixel_check=False)
    source = shape_image("disc", np.random.default_rng(1), size=20)
    made = backend.generate_batch([
        GenerationRequest(class_name="disc", seed=1, source_image=source,
                          source_id="disc/disc_00.png"),
        GenerationRequest(class_name="disc", seed=2)])
    assert made[0].provenance["source_id"] == "disc/disc_00.png"
    assert made[0].provenance["mode"] == "variation" and made[0].provenance["steps"] == 2
    assert made[1].provenance["source_id"] is None and made[1].provenance["mode"] == "class"


def test_pixel_check_refuses_noise_before_anything_is_written(tiny_generator):
    backend = load_backend(tiny_generator, steps=2)  # 3 training steps: it makes noise
    with pytest.raises(GenerationError, match="does not look like the real data"):
        backend.generate("disc", 4, seeds=[1, 2, 3, 4])


def test_pixel_statistics_tell_images_from_saturated_noise():
    rng = np.random.default_rng(0)
    real = np.stack([shape_image("disc", rng) for _ in range(8)])[..., None]
    reference = {"all": pixel_statistics(real), "per_class": {"disc": pixel_statistics(real)}}
    fresh = np.stack([shape_image("disc", rng) for _ in range(8)])[..., None]
    assert check_pixel_statistics(fresh, reference, class_names=["disc"] * 8)["passed"]
    noise = np.where(rng.random(real.shape) < 0.5, 0, 255).astype(np.uint8)
    with pytest.raises(GenerationError, match="noise-like"):
        check_pixel_statistics(noise, reference, class_names=["disc"] * 8)
    with pytest.raises(GenerationError, match="blank output"):
        check_pixel_statistics(np.full_like(real, 60), reference)


def test_model_and_sampler_construction():
    unet = build_unet(num_classes=4, resolution=32, channels=3, model_size="base")
    assert unet.config.num_class_embeds == 5
    assert list(unet.config.block_out_channels) == [64, 128, 256, 256]
    assert unet.config.down_block_types[2] == "AttnDownBlock2D"  # 32 -> 16 -> 8: attention
    assert 20e6 < sum(p.numel() for p in unet.parameters()) < 30e6
    train = build_train_scheduler()
    assert train.config.beta_schedule == "squaredcos_cap_v2"
    dpm = build_sampler(train.config, "dpm++")
    assert dpm.config.algorithm_type == "dpmsolver++"
    assert dpm.config.lambda_min_clipped == LAMBDA_MIN_CLIPPED == -5.1
    assert type(build_sampler(train.config, "ddim")).__name__ == "DDIMScheduler"
    with pytest.raises(ConfigError, match="sampler must be one of"):
        build_sampler(train.config, "euler")
    with pytest.raises(ConfigError, match="does not fit"):
        build_unet(num_classes=2, resolution=12, channels=1, model_size="base")


def test_backend_errors(tiny_generator, tmp_path):
    with pytest.raises(ConfigError, match="generator not found"):
        load_backend(tmp_path / "missing")
    with pytest.raises(ConfigError, match="neither a genaug generator"):
        load_backend(tmp_path)
    with pytest.raises(ConfigError, match="holds a ddpm generator, not sd"):
        load_backend(tiny_generator, kind="sd")
    backend = load_backend(tiny_generator, steps=1, pixel_check=False)
    with pytest.raises(ConfigError, match="unknown to the generator"):
        backend.generate("cube", 1, seeds=[0])
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            load_backend(tiny_generator, device="cuda")


def test_cuda_gets_half_precision_and_cpu_full(monkeypatch):
    import torch

    from genaug.generation._utils import resolve_device, resolve_dtype

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device(None) == resolve_device("auto") == "cuda"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_dtype("cuda") == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert resolve_dtype("cuda") == torch.float16
    assert resolve_dtype("cpu") == torch.float32
    assert resolve_dtype("cuda", "fp32") == torch.float32
    with pytest.raises(ConfigError, match="precision must be one of"):
        resolve_dtype("cpu", "int8")


def test_ctrl_c_during_training_saves_what_was_learned(shapes_dir, tmp_path, monkeypatch):
    from genaug.generation import _train_loop, fit_generator
    from genaug.generation._utils import progress_bar

    class StopAfterTwo:
        def __init__(self, **kwargs):
            self.bar, self.n = progress_bar(enabled=False), 0

        def update(self, n=1):
            self.n += n
            if self.n == 2:
                raise KeyboardInterrupt

        def __getattr__(self, name):
            return getattr(self.bar, name)

    monkeypatch.setattr(_train_loop, "progress_bar", StopAfterTwo)
    result = fit_generator(shapes_dir, out_dir=tmp_path / "g", resolution=16,
                           model_size="tiny", max_steps=50, batch_size=4, hflip=False)
    assert result.interrupted and result.steps == 2 and "(interrupted)" in result.describe()
    meta = json.loads((tmp_path / "g" / "genaug_generator.json").read_text())
    assert meta["interrupted"] and meta["steps"] == 2
    assert load_backend(tmp_path / "g", steps=1, pixel_check=False).generate(
        "bar", 1, seeds=[0])[0].image.shape == (16, 16, 1)


def test_fit_generator_is_deterministic_for_a_seed(shapes_dir, tmp_path):
    from genaug.generation import fit_generator
    from genaug.generation._ddpm_model import load_generator

    def fit(name, seed):
        fit_generator(shapes_dir, out_dir=tmp_path / name, resolution=16, model_size="tiny",
                      max_steps=3, batch_size=8, progress=False, seed=seed)
        return load_generator(tmp_path / name).model_hash

    assert fit("a", 0) == fit("b", 0) != fit("c", 1)


def test_a_diverging_fit_stops_with_a_clear_error(shapes_dir, tmp_path):
    from genaug.generation import fit_generator

    with pytest.raises(ConfigError, match="training diverged before step 2 .*lower "
                                          "`learning_rate`"):
        fit_generator(shapes_dir, out_dir=tmp_path / "g", resolution=16, model_size="tiny",
                      max_steps=4, batch_size=8, progress=False, log_every=2,
                      learning_rate=float("inf"))
    assert not (tmp_path / "g").exists()


def test_fast_sampler_options_are_refused_where_they_cannot_run(tiny_generator):
    with pytest.raises(ConfigError, match="`cuda_graph=True` needs a CUDA device"):
        load_backend(tiny_generator, device="cpu", cuda_graph=True)
    with pytest.raises(ConfigError, match="max-autotune is refused"):
        load_backend(tiny_generator, device="cpu", compile="max-autotune")
    with pytest.raises(ConfigError, match="'reduce-overhead'` adds CUDA graphs and needs"):
        load_backend(tiny_generator, device="cpu", compile="reduce-overhead")
    assert load_backend(tiny_generator, device="cpu", pixel_check=False).runtime == "eager"


def _images(backend, n, first_seed=0):
    return np.stack([m.image for m in backend.generate("ring", n, seeds=list(
        range(first_seed, first_seed + n)))])


def test_compiled_sampling_pads_batches_and_makes_the_eager_images(tiny_generator,
                                                                   monkeypatch, tmp_path):
    import torch

    eager = load_backend(tiny_generator, device="cpu", steps=3, pixel_check=False,
                         batch_size=8)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setattr(torch, "compile", lambda module, **options: module)  # no compiler
    compiled = load_backend(tiny_generator, device="cpu", steps=3, pixel_check=False,
                            batch_size=8, compile=True, compile_cache_dir=tmp_path / "cc")
    assert compiled.runtime == "compile"
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "cc")  # persistent
    assert [compiled.predictor.padded(n) for n in (1, 3, 5, 8)] == [1, 4, 8, 8]
    for n in (3, 5):  # run padded to 4 and 8 rows
        assert np.array_equal(_images(compiled, n), _images(eager, n))


@pytest.mark.slow  # inductor compiles the UNet: about a minute on 2 cores
def test_the_compiled_unet_makes_the_eager_images(tiny_generator, monkeypatch, tmp_path):
    """torch.compile for real (inductor, on the CPU with gcc): the same images as eager, up
    to the rounding of a few pixels that reordered float arithmetic may move."""
    import warnings

    eager = load_backend(tiny_generator, device="cpu", steps=3, pixel_check=False,
                         batch_size=8)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "elsewhere"))
    compiled = load_backend(tiny_generator, device="cpu", steps=3, pixel_check=False,
                            batch_size=8, compile=True, compile_cache_dir=tmp_path / "cc")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="torch.compile of the UNet failed")
        images = _images(compiled, 3).astype(np.int16)
    assert compiled.runtime == "compile"  # no fallback to eager
    assert any(path.is_file() for path in (tmp_path / "cc").rglob("*"))  # inductor's kernels
    assert np.abs(images - _images(eager, 3)).max() <= 2


def test_a_compile_that_fails_falls_back_to_eager_sampling(tiny_generator, monkeypatch):
    import torch

    def broken(module, **options):
        def run(*args, **kwargs):
            raise RuntimeError("no working C++ compiler")
        return run

    eager = load_backend(tiny_generator, device="cpu", steps=2, pixel_check=False)
    monkeypatch.setattr(torch, "compile", broken)
    backend = load_backend(tiny_generator, device="cpu", steps=2, pixel_check=False,
                           compile="default")
    with pytest.warns(UserWarning, match="torch.compile of the UNet failed .*no working C"):
        images = _images(backend, 3)
    assert backend.runtime == "eager" and np.array_equal(images, _images(eager, 3))


def test_fit_options_are_saved_and_v_prediction_is_honoured_when_sampling(shapes_dir,
                                                                           tmp_path):
    from genaug.generation import fit_generator
    from genaug.generation._ddpm_model import load_generator

    out = tmp_path / "v"
    fit_generator(shapes_dir, out_dir=out, resolution=16, model_size="tiny", max_steps=4,
                  batch_size=8, progress=False, log_every=1, prediction_type="v_prediction",
                  snr_gamma=5.0, lr_schedule="cosine", warmup_steps=1)
    meta = json.loads((out / "genaug_generator.json").read_text())
    config = json.loads((out / "train_config.json").read_text())
    for saved in (meta, config):
        assert (saved["prediction_type"], saved["snr_gamma"], saved["lr_schedule"]) == (
            "v_prediction", 5.0, "cosine")
    generator = load_generator(out)
    for sampler in ("dpm++", "ddim"):
        assert build_sampler(generator.train_scheduler_config,
                             sampler).config.prediction_type == "v_prediction"
    # the cosine schedule decays the rate after the warm-up step
    rates = [float(row.split(",")[2]) for row in
             (out / "loss_log.csv").read_text().splitlines()[1:]]
    assert rates[0] == pytest.approx(2e-4) and rates[1] > rates[2] > rates[3] == 0.0
    # the same weights read as a noise predictor make other images: the sampler follows
    # the prediction type saved with the generator
    v_image = load_backend(out, steps=3, pixel_check=False).generate("ring", 1, seeds=[3])
    scheduler_path = out / "scheduler" / "scheduler_config.json"
    scheduler_config = json.loads(scheduler_path.read_text())
    scheduler_path.write_text(json.dumps({**scheduler_config, "prediction_type": "epsilon"}))
    eps_image = load_backend(out, steps=3, pixel_check=False).generate("ring", 1, seeds=[3])
    assert not np.array_equal(v_image[0].image, eps_image[0].image)


def test_default_fit_keeps_epsilon_a_plain_loss_and_a_constant_rate(tiny_generator):
    meta = json.loads((tiny_generator / "genaug_generator.json").read_text())
    assert (meta["prediction_type"], meta["snr_gamma"], meta["lr_schedule"]) == (
        "epsilon", None, "constant")
    rates = [float(row.split(",")[2]) for row in
             (tiny_generator / "loss_log.csv").read_text().splitlines()[1:]]
    assert rates[-1] == pytest.approx(2e-4)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_min_snr_weights_cap_the_nearly_clean_timesteps(prediction_type):
    import torch

    from genaug.generation._ddpm_fit import _FitRun

    run = _FitRun.__new__(_FitRun)
    run.snr_gamma, run.prediction_type = 5.0, prediction_type
    run.scheduler = build_train_scheduler(prediction_type=prediction_type)
    alphas = run.scheduler.alphas_cumprod
    snr = alphas / (1 - alphas)
    t = torch.tensor([0, 999])
    weights = [float(run._weighted_loss(torch.ones(1, 1, 2, 2), t[i:i + 1]))
               for i in range(2)]
    offset = 1 if prediction_type == "v_prediction" else 0
    assert weights[0] == pytest.approx(5.0 / (float(snr[0]) + offset), rel=1e-4)
    assert weights[0] < 1e-2
    assert weights[1] == pytest.approx(float(snr[999]) / (float(snr[999]) + offset), rel=1e-3)


def test_fit_options_are_checked(shapes_dir, tmp_path):
    from genaug.generation import fit_generator

    common = dict(out_dir=tmp_path / "g", max_steps=1, progress=False)
    with pytest.raises(ConfigError, match="`prediction_type` must be one of epsilon, "
                                          "v_prediction"):
        fit_generator(shapes_dir, prediction_type="sample", **common)
    with pytest.raises(ConfigError, match="`snr_gamma` must be positive"):
        fit_generator(shapes_dir, snr_gamma=0.0, **common)
    with pytest.raises(ConfigError, match="`lr_schedule` must be one of constant, cosine"):
        fit_generator(shapes_dir, lr_schedule="linear", **common)
    with pytest.raises(ConfigError, match="prediction type must be one of"):
        build_train_scheduler(prediction_type="sample")
