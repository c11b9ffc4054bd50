#!/usr/bin/env bash
# The checks only a GPU can do, as one prepared run (issue 6's GPU figures): a few minutes expected,
# at most 9 (the steps' time limits add up to 540 s, so the check fits a 10-minute job limit):
#   1. the `gpu` tests: the Triton IBNorm kernels against the reference on CUDA (fp32, bf16, a
#      model-sized width), `auto` picking them, bf16-mixed and bf16-pure training with MFU logged;
#   2. bench_norms on CUDA in bf16 and fp32: time against F.layer_norm and achieved bandwidth;
#   3. bench_train at llama-60m in bf16-mixed: tokens/s and MFU, IBNorm-L against RMSNorm;
#   4. a short FSDP launch (one process) in bf16-mixed.
#
#   bash scripts/gpu_check.sh [OUT_DIR]      # default: $OUT, else runs/gpu_check
#
# Uses $PYTHON (default python3) as it is, with this checkout on PYTHONPATH. Wheels in .whl/
# (gitignored) are installed first into a private folder, for a GPU machine without network
# that lacks some of our dependencies; fetched here with
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 \
#       -d .whl datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 transformers==5.24.0
# Every step runs under its own time limit and a failing step does not stop the others; the
# exit status is the number of failed steps. Everything printed goes to OUT_DIR/gpu_check.log,
# the benchmark rows also to bench_norms_{bf16,fp32}.json. bench_train first trains the built-in
# tokenizer (seconds, on the CPU): one trained elsewhere is refused when that machine's
# Python differs, as the built-in corpus is read from the installed Python's sources.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
out=${1:-${OUT:-runs/gpu_check}}
mkdir -p "$out"
py=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
log="$out/gpu_check.log"
: >"$log"
failed=0
if compgen -G ".whl/*.whl" >/dev/null; then
    site=$(mktemp -d)
    if "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .whl/*.whl 2>&1 |
        tee -a "$log"; then
        export PYTHONPATH="$PYTHONPATH:$site"
        echo "installed into $site: $(cd .whl && ls *.whl | tr '\n' ' ')" | tee -a "$log"
    else
        echo "installing .whl/ failed: the steps below run without those wheels" | tee -a "$log"
        failed=$((failed + 1))
    fi
fi

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log it, count a failure
    local name=$1 limit=$2
    shift 2
    echo "=== $name ($(date -u +%FT%TZ), limit ${limit}s): $*" | tee -a "$log"
    local start=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee -a "$log"
    local status=${PIPESTATUS[0]}
    echo "=== $name: exit $status after $((SECONDS - start))s" | tee -a "$log"
    [ "$status" -eq 0 ] || failed=$((failed + 1))
}

step environment 30 bash -c 'nvidia-smi -L && "$0" -c "import torch, triton, transformers, accelerate
print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, torch.cuda.get_device_name(0))
print(\"triton\", triton.__version__, \"transformers\", transformers.__version__, \"accelerate\", accelerate.__version__)"' "$py"
step gpu-tests 150 "$py" -m pytest -q -p no:cacheprovider -m gpu -rs \
    tests/norms/test_triton_ibnorm.py tests/train/test_gpu_training.py
step bench-norms-bf16 90 "$py" scripts/bench_norms.py --device cuda --dtype bfloat16 --json "$out/bench_norms_bf16.json"
step bench-norms-fp32 60 "$py" scripts/bench_norms.py --device cuda --dtype float32 --norms layernorm,rmsnorm,ibnorm \
    --json "$out/bench_norms_fp32.json"
runs=$(mktemp -d)
step bench-train-60m 120 "$py" scripts/bench_train.py --norms rmsnorm ibnorm_l --steps 20 --warmup 5 --rounds 1 \
    --config llama_tiny_rmsnorm.yaml model.preset=llama-60m data.seq_len=256 train.micro_batch_size=64 \
    train.precision=bf16-mixed
step fsdp-bf16 90 "$py" -m accelerate.commands.launch --config_file launch/fsdp.yaml --num_processes 1 \
    scripts/pretrain.py --config llama_tiny_ibnorm_l.yaml "out_dir=$runs" run_name=fsdp train.max_steps=20 \
    train.precision=bf16-mixed train.checkpoint_every=10 train.eval_every=0 "logging.wandb='off'" logging.progress=false
rm -rf "$runs"
echo "gpu_check: $failed step(s) failed; log in $log" | tee -a "$log"
exit "$failed"
