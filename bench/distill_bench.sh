#!/usr/bin/env bash
# Distillation on real data, through a real worker, one job at a time (timings are not shared):
#   ner:    a MiniLM CoNLL-2003 teacher (2 epochs), then a 3-layer student cut from it, trained with
#           the cached per-word soft labels (alpha 0.5) and on gold alone (alpha 0), 2 epochs each:
#           entity-F1 retention, and the student step's train time with soft labels / on gold.
#   layers: a MiniLM SST-2 teacher (first N training sentences, 1 epoch), then 3-layer cut students
#           (2 epochs), logit-only KD vs logit + hidden-state + attention losses, 3 seeds each:
#           dev accuracy retention (mean +- std) and student train time.
#   bash bench/distill_bench.sh ner|layers [SST2_TRAIN_LINES, default 8000]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
WHAT="${1:?ner or layers}"
LINES="${2:-8000}"
D="$(cd .. && pwd)/shared/data"
export BERTQ_HOME="$(mktemp -d /tmp/bertq-distill-XXXX)" HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error
export BERTQ_ALLOWED_ROOTS="$D:$BERTQ_HOME"
"$PYTHON" -m bertq.cli worker --queues cpu --concurrency 1 > "$BERTQ_HOME/worker.log" 2>&1 &
worker=$!
trap 'kill -TERM $worker 2>/dev/null; wait $worker 2>/dev/null || true' EXIT
bertq() { "$PYTHON" -m bertq.cli "$@"; }
field() { "$PYTHON" -c 'import json,sys; v=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }
submitted() { bertq "$@" --queue cpu --json | field 'v["id"]'; }
# The student step of a distill pipeline, and the pipeline's summary.
student_of() { bertq show "$1" --json | field '[c["id"] for c in v["children"] if c["kind"] == "student"][0]'; }

if [ "$WHAT" = ner ]; then
  teacher=$(submitted submit finetune --model minilm --task conll2003 --train "$D/conll2003/train.txt" \
    --eval "$D/conll2003/valid.txt" --epochs 2 --no-evaluate)
  bertq wait "$teacher" > /dev/null 2>&1
  echo "teacher job $teacher: $(bertq show "$teacher" --json | field '{k: round(x, 4) for k, x in v["metrics"].items() if k == "eval_entity_f1"} | {"train_s": round(v["result"]["train_runtime_s"])}')"
  for alpha in 0.5 0; do
    pipeline=$(submitted submit distill --teacher "$teacher" --student teacher --student-layers 3 --task conll2003 \
      --epochs 2 --alpha "$alpha")
    bertq wait "$pipeline" > /dev/null 2>&1 || true
    student=$(student_of "$pipeline")
    echo "alpha $alpha: pipeline $pipeline $(bertq show "$pipeline" --json | field 'v["status"], {k: round(x, 4) for k, x in v["metrics"].items()}')" \
      "student $(bertq show "$student" --json | field '{"eval_entity_f1": round(v["metrics"]["eval_entity_f1"], 4), "train_s": round(v["result"]["train_runtime_s"], 1)}')"
  done
  exit 0
fi

head -n "$((LINES + 1))" "$D/sst2/train.tsv" > "$BERTQ_HOME/sst2-train.tsv"
teacher=$(submitted submit finetune --model minilm --task sst2 --train "$BERTQ_HOME/sst2-train.tsv" --eval "$D/sst2/dev.tsv" \
  --epochs 1 --max-length 64 --no-evaluate)
bertq wait "$teacher" > /dev/null 2>&1
echo "teacher job $teacher: $(bertq show "$teacher" --json | field '{"eval_accuracy": round(v["metrics"]["eval_accuracy"], 4), "train_s": round(v["result"]["train_runtime_s"])}')"
for seed in 1 2 3; do
  for losses in "logits" "layers"; do
    extra=()
    [ "$losses" = layers ] && extra=(--hidden-loss-weight 1 --attention-loss-weight 1)
    pipeline=$(submitted submit distill --teacher "$teacher" --student teacher --student-layers 3 --epochs 2 \
      --max-length 64 --seed "$seed" "${extra[@]}")
    bertq wait "$pipeline" > /dev/null 2>&1 || true
    student=$(student_of "$pipeline")
    echo "RESULT $losses seed $seed: $(bertq show "$pipeline" --json | field '{"status": v["status"], "retention": round(v["metrics"].get("retention", float("nan")), 4)}')" \
      "$(bertq show "$student" --json | field '{"eval_accuracy": round(v["metrics"]["eval_accuracy"], 4), "train_s": round(v["result"]["train_runtime_s"], 1)}')"
  done
done
