#!/usr/bin/env bash
# Data-to-text (E2E) on one GPU: recipes/text_data2text.py runs side by side, one per STEPS:BATCH spec, with
# name and near delexicalised and cleaned training MRs; each is evaluated with the recipe default (euler, one
# sample per held-out MR, 20 NFE) and again with guidance 2 + dpmpp_2m_sde (--model, nothing retrained).
#   bash benchmarks/gpu_text_d2t.sh E2E_FILE OUTDIR STEPS:BATCH [STEPS:BATCH ...]
# A run still training after LIMIT_S seconds (default 400) is stopped by SIGTERM: the recipe checkpoints and
# evaluates what it has (when the signal comes during its evaluation, the script evaluates the saved model).
# OUTDIR/run_*.tgz hold each run's model and metrics (no optimizer state); OUTDIR/summary.txt the table.
# DEVICE=cpu runs the same on a CPU (to check the script: e.g. LIMIT_S=40 ... 20:16); PYTHON picks the interpreter.
set -uo pipefail
cd "$(dirname "$0")/.."
DATA=$1 OUT=$2
shift 2
PY=${PYTHON:-python3}
LIMIT=${LIMIT_S:-400}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
$PY -c "import torch, transformers, tokenizers; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
printf 'modality_options: {guidance: 2.0}\neval: {method: dpmpp_2m_sde}\n' > "$OUT/guided.yaml"

run() {  # STEPS BATCH
  local name="run_$1_b$2" dir="$OUT/run_$1_b$2"
  mkdir -p "$dir"
  printf 'modality_options: {delexicalise: [name, near]}\ntrain: {batch_size: %s, device: %s}\n' "$2" "${DEVICE:-cuda}" > "$dir/train.yaml"
  timeout -s TERM "$LIMIT" $PY recipes/text_data2text.py --data "$DATA" --out "$dir/train" --max-steps "$1" \
    --config "$dir/train.yaml" --quiet > "$dir/log.txt" 2>&1
  [ -f "$dir/train/metrics.json" ] || $PY recipes/text_data2text.py --data "$DATA" --out "$dir/default" \
    --model "$dir/train/model" --quiet >> "$dir/log.txt" 2>&1   # SIGTERM came during the evaluation
  $PY recipes/text_data2text.py --data "$DATA" --out "$dir/guided" --model "$dir/train/model" \
    --config "$OUT/guided.yaml" --quiet >> "$dir/log.txt" 2>&1
  rm -f "$dir/train/model/optimizer.safetensors" "$dir/guided/model" 2>/dev/null
  tar -C "$OUT" -czf "$OUT/$name.tgz" "$name"
}
start=$(date +%s)
for spec in "$@"; do run "${spec%%:*}" "${spec##*:}" & done
wait
echo "all runs done in $(( $(date +%s) - start )) s"
$PY - "$OUT" <<'PYEOF' | tee "$OUT/summary.txt"
import json, pathlib, sys
print("run | steps | train s | SER default | BLEU | SER guided 2 + dpmpp_2m_sde | BLEU | bound | seq/s")
for d in sorted(p for p in pathlib.Path(sys.argv[1]).glob("run_*") if p.is_dir()):
    read = lambda *names: next((json.loads((d / n).read_text()) for n in names if (d / n).exists()), None)
    t, g = read("train/metrics.json", "default/metrics.json"), read("guided/metrics.json")
    logs = (d / "train/log.jsonl").read_text().split("\n") if (d / "train/log.jsonl").exists() else []
    steps = json.loads([x for x in logs if x.strip()][-1])["step"] if any(x.strip() for x in logs) else "-"
    cell = lambda x, k: f"{x[k]:.3f}" if x and x.get(k) is not None else "-"
    steps = (t or {}).get("train_steps") or steps
    print(f"{d.name} | {steps} | {t['train_seconds'] if t else '-'} | {cell(t, 'slot_error_rate')} | {cell(t, 'bleu')} | "
          f"{cell(g, 'slot_error_rate')} | {cell(g, 'bleu')} | {cell(t, 'bound_nats_per_token')} | "
          f"{t['sampling']['seq_per_s'] if t else '-':.1f}")
PYEOF
