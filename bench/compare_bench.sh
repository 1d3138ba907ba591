#!/usr/bin/env bash
# A comparison on real data, through a real worker: `bertq submit compare` of MiniLM and a 3-layer
# student cut from it (layers 0, 2, 4 of all-MiniLM-L6-v2, weights copied), each fine-tuned on the
# first N SST-2 training sentences (2 epochs at lr 1e-4 unless other fine-tune options follow N) with
# 3 seeds and evaluated in fp32 on SST-2 dev;
# then the comparison's summary (mean ± std per model) and the decision report, as a table and as
# HTML (report.html in the run's folder).
#   bash bench/compare_bench.sh [SST2_TRAIN_LINES, default 2000] [fine-tune options, e.g. --epochs 1]
# (1 epoch at the default 5e-5 left the 3-layer student at the majority label on 2,000 sentences.)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
LINES="${1:-2000}"
shift || true
options=("$@")
[ $# -gt 0 ] || options=(--epochs 2 --lr 1e-4)
D="$(cd .. && pwd)/shared/data"
export BERTQ_HOME="$(mktemp -d /tmp/bertq-compare-XXXX)" HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error
export BERTQ_ALLOWED_ROOTS="$D:$BERTQ_HOME"
head -n "$((LINES + 1))" "$D/sst2/train.tsv" > "$BERTQ_HOME/sst2-train.tsv"
"$PYTHON" - "$BERTQ_HOME/minilm-3-layers" <<'PY'
import sys
from transformers import AutoModel, AutoTokenizer
from bertq.models import minilm_folder
from bertq.worker.students import cut_from_teacher
folder = str(minilm_folder())
cut_from_teacher(AutoModel.from_pretrained(folder), [0, 2, 4]).save_pretrained(sys.argv[1])
AutoTokenizer.from_pretrained(folder).save_pretrained(sys.argv[1])
PY
"$PYTHON" -m bertq.cli worker --queues cpu --concurrency 1 > "$BERTQ_HOME/worker.log" 2>&1 &
worker=$!
trap 'kill -TERM $worker 2>/dev/null; wait $worker 2>/dev/null || true' EXIT
bertq() { "$PYTHON" -m bertq.cli "$@"; }
start=$(date +%s)
id=$(bertq submit compare --models "minilm,$BERTQ_HOME/minilm-3-layers" --task sst2 --train "$BERTQ_HOME/sst2-train.tsv" \
  --eval "$D/sst2/dev.tsv" "${options[@]}" --max-length 64 --seeds 3 --precisions fp32 --queue cpu --json \
  | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["id"])')
bertq wait "$id" > /dev/null 2>&1 || true
echo "compare job $id: wall $(( $(date +%s) - start )) s"
bertq show "$id" --json | "$PYTHON" -c '
import json, sys
v = json.load(sys.stdin)
print("status", v["status"])
for row in v["result"]["settings"]:
    std = "n/a" if row["std"] is None else "%.4f" % row["std"]
    values = [round(x, 4) for x in row["values"]]
    print("%s: accuracy %.4f ± %s over %d seeds %s" % (row["model"], row["mean"], std, row["seeds"], values))'
bertq report --task sst2
bertq report --task sst2 --format html --out "$BERTQ_HOME/report.html"
echo "home: $BERTQ_HOME"
