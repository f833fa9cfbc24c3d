"""The noise prediction of one denoising step, fast: eager, a CUDA graph, or compiled.

At the batch sizes genaug samples (32x32 or 64x64 images, a 25M-parameter UNet) a step is
launch-bound: hundreds of small kernels whose launches cost more than their arithmetic. Two
remedies, both for a fixed input shape:

* a CUDA graph per batch shape (``cuda_graph``): the step's kernels are captured once and
  replayed with one launch (static input buffers are refilled each step);
* ``torch.compile`` in ``"default"`` or ``"reduce-overhead"`` mode (the latter adds CUDA
  graphs), with the compiled kernels kept in a persistent cache directory so a second run
  does not compile again. ``max-autotune`` is refused: it benchmarks hundreds of Triton
  configurations (measured on an H200: still compiling after 200 s).

Batches are padded to a few fixed sizes (powers of two up to the backend's batch size), so
a run captures or compiles a handful of shapes. Each image depends only on its own noise, so
padding rows change nothing, but the shape itself can: kernels chosen per batch shape round
differently, and one pixel of a rare image moves by one level (measured on the CPU: 1 image
in 480 between batches of 4 and 8). ``generate_cache`` therefore runs every batch at one
shape, the backend's batch size (``fixed`` in :meth:`NoisePredictor.padded`). Where a mode
cannot run (capture or compilation fails), the predictor warns once and continues eagerly.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from genaug.exceptions import ConfigError

COMPILE_MODES = ("default", "reduce-overhead")


def compile_cache_dir(directory=None) -> Path:
    """Where compiled kernels persist: ``directory``, else ``$TORCHINDUCTOR_CACHE_DIR`` when
    set, else ``~/.cache/genaug/torch-compile`` (``$XDG_CACHE_HOME`` respected)."""
    if directory is not None:
        return Path(directory).expanduser()
    if os.environ.get("TORCHINDUCTOR_CACHE_DIR"):
        return Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "genaug" / "torch-compile"


def resolve_runtime(device: str, *, cuda_graph, compile) -> tuple[str | None, bool]:
    """Check the options; returns ``(compile mode or None, use CUDA graphs)``.

    ``cuda_graph=None`` means: on for CUDA unless compiling (``reduce-overhead`` brings its
    own graphs)."""
    cuda = str(device).startswith("cuda")
    if compile is True:
        compile = "default"
    if compile in (False, None):
        compile = None
    elif not isinstance(compile, str) or compile not in COMPILE_MODES:
        hint = (" (max-autotune is refused: it benchmarks hundreds of kernel configurations "
                "and did not finish compiling in 200 s on an H200)"
                if isinstance(compile, str) and "autotune" in compile else "")
        raise ConfigError(f"`compile` must be False, True or one of {', '.join(COMPILE_MODES)}, "
                          f"got {compile!r}{hint}")
    if compile == "reduce-overhead" and not cuda:
        raise ConfigError("`compile='reduce-overhead'` adds CUDA graphs and needs a CUDA "
                          "device; use `compile='default'` on the CPU")
    if cuda_graph and not cuda:
        raise ConfigError(f"`cuda_graph=True` needs a CUDA device, not {device}")
    if cuda_graph and compile is not None:
        raise ConfigError("give `cuda_graph` or `compile`, not both (`compile="
                          "'reduce-overhead'` is compiled and graphed)")
    graphs = bool(cuda and compile is None) if cuda_graph is None else bool(cuda_graph)
    return compile, graphs


class NoisePredictor:
    """``eps(x, t)`` of a batch: the UNet with classifier-free guidance.

    Parameters
    ----------
    unet : diffusers ``UNet2DModel`` (on its device, in its dtype)
    guidance_scale : float
        1.0: no guidance (one UNet pass on the batch); otherwise the batch is run with its
        labels and with the "no class" label and the two predictions are combined.
    dtype : torch dtype of the UNet's inputs
    device : str
    cuda_graph : bool
    compile : str or None
        A mode of :data:`COMPILE_MODES`.
    max_batch : int
        The backend's batch size: the largest padded size.
    """

    def __init__(self, unet, *, guidance_scale: float, dtype, device: str, cuda_graph: bool,
                 compile: str | None, max_batch: int, cache_dir=None):
        import torch

        self.unet, self.dtype, self.device = unet, dtype, device
        self.guidance_scale = float(guidance_scale)
        self.memory_format = (torch.channels_last if device.startswith("cuda")
                              else torch.contiguous_format)
        self.max_batch = int(max_batch)
        self.cuda_graph = bool(cuda_graph)
        self.compile_mode = compile
        self._compiled = None
        self._compiled_ran = False
        self._graphs: dict[tuple, tuple] = {}
        self._pool = None
        if compile is not None:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(compile_cache_dir(cache_dir))
            self._compiled = torch.compile(unet, mode=compile, dynamic=False)

    @property
    def runtime(self) -> str:
        """``"eager"``, ``"cuda-graph"``, ``"compile"`` or ``"compile-reduce-overhead"``."""
        if self._compiled is not None:
            return "compile" if self.compile_mode == "default" else "compile-reduce-overhead"
        return "cuda-graph" if self.cuda_graph else "eager"

    @property
    def guided(self) -> bool:
        return self.guidance_scale != 1.0

    def padded(self, n: int, *, fixed: bool = False) -> int:
        """The batch size ``n`` images are run at: ``n`` eagerly, else the next power of two
        (at most the backend's batch size), so only a few shapes are captured or compiled;
        with ``fixed``, always the backend's batch size (one shape: see
        :attr:`GeneratorBackend.fixed_shape`)."""
        if fixed:
            return max(n, self.max_batch)
        if self.runtime == "eager":
            return n
        size = 1
        while size < n:
            size *= 2
        return max(n, min(size, self.max_batch))

    def __call__(self, x, t, labels):
        """The guided noise prediction, float32 like ``x``. ``labels`` already holds the
        "no class" half when guided; ``t`` is a 0-dim device tensor."""
        if self.cuda_graph:
            return self._replay(x, t, labels)
        return self._predict(x, t, labels)

    def _predict(self, x, t, labels):
        import torch

        model_in = torch.cat([x, x]) if self.guided else x
        model_in = model_in.to(self.dtype).contiguous(memory_format=self.memory_format)
        eps = self._unet(model_in, t, labels).float()
        if self.guided:
            cond, uncond = eps.chunk(2)
            eps = uncond + self.guidance_scale * (cond - uncond)
        return eps if self._compiled is None else eps.clone()

    def _unet(self, model_in, t, labels):
        if self._compiled is not None:
            try:
                if self.compile_mode == "reduce-overhead":
                    import torch

                    torch.compiler.cudagraph_mark_step_begin()
                out = self._compiled(model_in, t, class_labels=labels).sample
                self._compiled_ran = True
                return out
            except Exception as error:  # inductor raises many kinds (no compiler, ...)
                if self._compiled_ran:
                    raise
                warnings.warn(f"torch.compile of the UNet failed ({type(error).__name__}: "
                              f"{str(error).splitlines()[0] if str(error) else ''}); "
                              "sampling without it", stacklevel=4)
                self._compiled = None
        return self.unet(model_in, t, class_labels=labels).sample

    # -- CUDA graphs ---------------------------------------------------------------------------
    def _replay(self, x, t, labels):
        key = (tuple(x.shape), tuple(labels.shape))
        entry = self._graphs.get(key)
        if entry is None:
            try:
                entry = self._graphs[key] = self._capture(x, t, labels)
            except Exception as error:  # capture is refused by some ops and drivers
                warnings.warn(f"CUDA graph capture failed ({type(error).__name__}: "
                              f"{str(error).splitlines()[0] if str(error) else ''}); "
                              "sampling without graphs", stacklevel=3)
                self.cuda_graph = False
                return self._predict(x, t, labels)
        static_x, static_t, static_labels, graph, out = entry
        static_x.copy_(x)
        static_t.copy_(t)
        static_labels.copy_(labels)
        graph.replay()
        return out.clone()

    def _capture(self, x, t, labels):
        import torch

        static_x, static_t, static_labels = x.clone(), t.clone(), labels.clone()
        side = torch.cuda.Stream(device=x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):  # warm-up off the capture (cuDNN picks its kernels)
            for _ in range(2):
                self._predict(static_x, static_t, static_labels)
        torch.cuda.current_stream(x.device).wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            out = self._predict(static_x, static_t, static_labels)
        return static_x, static_t, static_labels, graph, out

    def close(self) -> None:
        self._graphs.clear()
        self._compiled = None
        self.unet = None
