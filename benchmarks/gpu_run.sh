#!/usr/bin/env bash
# The GPU figures of docs/performance.md in one command, about 9 minutes on an H200:
#
#     KERAS_BACKEND=torch bash benchmarks/gpu_run.sh [OUT_DIR] [STEP ...]
#
# Steps (default: all, in this order): sampler, end_to_end, quality, live. Each writes
# OUT_DIR/<step>.log (JSON lines where the benchmark has them) and is cut at its time limit,
# so one slow step never costs the others. Runs from the repository root without installing
# genaug (PYTHONPATH), under KERAS_BACKEND=torch, with TensorFlow absent; needs torch with
# CUDA, diffusers, transformers, safetensors, keras, pillow, imagehash, scipy, scikit-learn,
# click and pyyaml. Nothing is downloaded: the generators are built or trained here.
# SMOKE=1 runs the same steps on the CPU with a tiny UNet and few images (a check of this
# script, not a measurement).
set -u
OUT=${1:-gpu-bench}
shift $(( $# > 0 ? 1 : 0 ))
STEPS=${*:-sampler end_to_end quality live}
PY=${PYTHON:-python3}
export KERAS_BACKEND=torch PYTHONUNBUFFERED=1
export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
if [ "${SMOKE:-0}" = 1 ]; then
    DEVICE=cpu MODEL=tiny BATCH=16 IMAGES=64 FIT_S=20 PER_CLASS=8 RUNTIMES=eager SCALE=4
    LIVE="--model-size tiny --sampling-steps 2 --epoch-size 256 --model-width 8"
else
    DEVICE=cuda MODEL=base BATCH=512 IMAGES=5000 FIT_S=60 PER_CLASS=200 RUNTIMES=cuda-graph SCALE=1
    LIVE=""
fi

"$PY" - <<'EOF' || exit 1
import importlib, os, sys
missing = [m for m in ("torch", "diffusers", "transformers", "safetensors", "keras", "PIL",
                       "imagehash", "scipy", "sklearn", "click", "yaml")
           if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"missing packages: {', '.join(missing)}")
import torch
if not torch.cuda.is_available() and os.environ.get("SMOKE") != "1":
    sys.exit("no CUDA device")
device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
print(f"torch {torch.__version__}, {device}, python {sys.version.split()[0]}")
EOF
DIGITS=$("$PY" -c "from genaug.data._embedded import digits_longtail; print(digits_longtail()[0])")

run() {  # run NAME SECONDS ARGS...: one step, its output in OUT/NAME.log
    local name=$1 limit=$2
    shift 2
    echo "== $name (at most $limit s): $*"
    local start=$SECONDS
    timeout $((limit * SCALE)) "$PY" "$@" > "$OUT/$name.log" 2>&1
    local status=$?
    grep -v "Warning\|warn(" "$OUT/$name.log" | tail -n 12
    echo "== $name: exit $status after $((SECONDS - start)) s"
}

for step in $STEPS; do
    case $step in
    sampler)  # the sampler alone per runtime: base UNet, 25 DDIM steps, no guidance, batch 512
        local_runtimes=$([ "$DEVICE" = cuda ] && echo eager,cuda-graph,compile || echo eager)
        run sampler 170 benchmarks/generation_throughput.py --device $DEVICE --model-size $MODEL \
            --batch-size $BATCH --images $((IMAGES / 5 * 2)) --runtimes $local_runtimes --json ;;
    end_to_end)  # the whole generate run against the sampler alone: dpm++, 20 steps, guidance 2
        run end_to_end 100 benchmarks/generation_throughput.py --device $DEVICE --end-to-end \
            --model-size $MODEL --channels 1 --sampler dpm++ --steps 20 --guidance-scale 2 \
            --batch-size $BATCH --images $IMAGES --runtimes $RUNTIMES --json ;;
    quality)  # fewer solver steps against KID/FID: a generator fitted on the digits for 60 s
        run fit 100 -c "from genaug.generation import fit_generator as f; print(f('$DIGITS', \
out_dir='$OUT/generator', resolution=32, model_size='$MODEL', max_steps=None, \
max_seconds=$FIT_S, batch_size=256, hflip=False, device='$DEVICE', progress=False).describe())"
        run quality 110 benchmarks/generation_throughput.py --device $DEVICE --quality \
            --generator "$OUT/generator" --data-dir "$DIGITS" --guidance-scale 2 \
            --batch-size $BATCH --runtimes $RUNTIMES --quality-per-class $PER_CLASS --json ;;
    live)  # step time fed by the live producer (thread, the default, and process) vs a cache
        run live 130 benchmarks/live_step_time.py --device $DEVICE --repeats 1 $LIVE \
            --json "$OUT/live.json" ;;
    *) echo "unknown step $step (sampler, end_to_end, quality, live)"; exit 2 ;;
    esac
done
