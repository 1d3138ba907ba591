#!/usr/bin/env bash
# Domain pre-training on real data: continue MiniLM's masked-LM training for one epoch over the
# unlabelled Reddit comments (../shared/data/corpus, 54,263 lines; 5% held out), print held-out
# perplexity before and after, then fine-tune SST-2 (the first N training sentences, 1 epoch) from
# the pre-trained checkpoint and from plain MiniLM, same settings, and print both dev accuracies.
#   bash bench/pretrain_bench.sh [SST2_TRAIN_LINES, default 8000]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
LINES="${1:-8000}"
D="$(cd .. && pwd)/shared/data"
export BERTQ_HOME="$(mktemp -d /tmp/bertq-pretrain-XXXX)" HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error
export BERTQ_ALLOWED_ROOTS="$D:$BERTQ_HOME"
head -n "$((LINES + 1))" "$D/sst2/train.tsv" > "$BERTQ_HOME/sst2-train.tsv"
"$PYTHON" -m bertq.cli worker --queues cpu --concurrency 1 > "$BERTQ_HOME/worker.log" 2>&1 &
worker=$!
trap 'kill -TERM $worker 2>/dev/null; wait $worker 2>/dev/null || true' EXIT
bertq() { "$PYTHON" -m bertq.cli "$@"; }
field() { "$PYTHON" -c 'import json,sys; v=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }
start=$(date +%s)
pre=$(bertq submit pretrain --model minilm --corpus "$D/corpus/goemotions_reddit_comments.tsv" \
  --text-column text --epochs 1 --max-length 64 --batch-size 32 --queue cpu --json | field 'v["id"]')
bertq wait "$pre" > /dev/null
echo "pretrain wall: $(( $(date +%s) - start )) s"
bertq show "$pre" --json | field '{k: round(x, 3) for k, x in v["metrics"].items() if "perplexity" in k}'
for model in "$pre" minilm; do
  start=$(date +%s)
  ft=$(bertq submit finetune --model "$model" --task sst2 --train "$BERTQ_HOME/sst2-train.tsv" \
    --eval "$D/sst2/dev.tsv" --epochs 1 --max-length 64 --no-evaluate --queue cpu --json | field 'v["id"]')
  bertq wait "$ft" > /dev/null || true
  echo "SST-2 fine-tune from $model ($LINES sentences, 1 epoch): wall $(( $(date +%s) - start )) s," \
    "$(bertq show "$ft" --json | field '{"status": v["status"], "eval_accuracy": v["metrics"].get("eval_accuracy")}')"
done
