#!/usr/bin/env bash
# The bulk-inference "done when" scenario on the real corpus: 54,263 Reddit comments through a
# classifier in 8 shards on two workers, one worker SIGKILLed once it is seen mid-shard. Prints the
# job, each shard's attempts, and whether the output holds exactly the input's ids, in order.
#
#     bench/infer_killed_worker.sh MODEL      # MODEL: a finetune job id or a classifier folder
#
# Uses the bertq set-up of the environment (BERTQ_HOME, database, Redis) and its own two workers and
# beat; run it with no other worker on the queue. Output goes to $BERTQ_HOME/killed-worker-HHMMSS.
set -u
MODEL=${1:?usage: bench/infer_killed_worker.sh MODEL}
HERE=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BERTQ_BIN:-$HERE/.venv/bin}
B=$BIN/bertq PY=$BIN/python
D=${BERTQ_DATA:-$HERE/../shared/data}
HOME_DIR=$($PY -c 'from bertq.config import load_settings; print(load_settings().home)')
OUT=$HOME_DIR/killed-worker-$(date +%H%M%S)
setsid "$B" worker --name w1@%h > "$OUT.w1.log" 2>&1 & W1=$!
setsid "$B" worker --name w2@%h > "$OUT.w2.log" 2>&1 & W2=$!
setsid "$B" beat --interval 2 > "$OUT.beat.log" 2>&1 & BEAT=$!
trap 'kill -- -$W1 -$W2 -$BEAT 2>/dev/null' EXIT
sleep 8
START=$(date +%s.%N)
JOB=$("$B" submit infer --model "$MODEL" --task classify --input "$D/corpus/goemotions_reddit_comments.tsv" \
      --id-column id --output "$OUT" --shards 8 --precision fp32 --json | $PY -c 'import json,sys; print(json.load(sys.stdin)["id"])')
echo "job $JOB -> $OUT"
$PY - "$JOB" <<'PY'
import sys, time
from sqlalchemy import select
from bertq.config import load_settings
from bertq.db.engine import sessions
from bertq.db.models import Job, ShardRow
job = int(sys.argv[1]); factory = sessions(load_settings())
deadline = time.monotonic() + 600
while time.monotonic() < deadline:
    with factory() as s:
        for shard in s.scalars(select(ShardRow).where(ShardRow.job_id == job)):
            run = s.get(Job, shard.shard_job_id)
            if run and run.status == "RUNNING" and "w1@" in (run.lease_owner or "") and 0 < shard.rows_done < shard.records:
                print(f"w1 mid-shard: job {run.id}, {shard.rows_done}/{shard.records} rows"); sys.exit(0)
    time.sleep(0.1)
sys.exit("w1 was never seen mid-shard")
PY
echo "SIGKILL to w1 at $(date +%T)"; kill -9 -- -$W1
"$B" wait "$JOB" --timeout 1200 > /dev/null; echo "wait exit status $?"
echo "elapsed $($PY -c "print(round($(date +%s.%N) - $START, 1))") s from submit"
"$B" show "$JOB" | head -3
$PY - "$JOB" "$OUT" "$D/corpus/goemotions_reddit_comments.tsv" <<'PY'
import csv, json, pathlib, subprocess, sys
job, out, corpus = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3]
bertq = str(pathlib.Path(sys.executable).with_name("bertq"))
for child in (c["id"] for c in json.loads(subprocess.check_output([bertq, "show", job, "--json"]))["children"]):
    view = json.loads(subprocess.check_output([bertq, "show", str(child), "--json"]))
    print(f"shard job {child}: {view['status']}, attempts on", [a["worker"] for a in view["attempt_history"]])
ids = [json.loads(line)["id"] for part in sorted(out.glob("part-*.jsonl")) for line in part.open()]
with open(corpus, encoding="utf-8") as handle:
    expected = [row["id"] for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)]
print(f"records {len(ids)}, input lines {len(expected)}, ids equal in order: {ids == expected}, _SUCCESS: {(out / '_SUCCESS').exists()}")
PY
