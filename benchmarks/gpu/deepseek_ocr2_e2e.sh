#!/usr/bin/env bash
# ON THE GPU MACHINE, after ../shared/gpu install, make_dummy_model2.py /tmp/dsocr2 and make_pages.py /tmp/pages:
# DeepSeek-OCR-2 end to end: ocrdesk serve, doctor against it, convert in both tasks (issue 18 item 6).
set -uo pipefail
export PYTHONPATH=/tmp/site:$PWD VLLM_USE_FLASHINFER_SAMPLER=0
printf '#!/bin/sh\nexec python3 -m vllm.entrypoints.cli.main "$@"\n' > /tmp/vllm && chmod +x /tmp/vllm
mkdir -p /tmp/few && cp /tmp/pages/page00[0-7].png /tmp/few/
t0=$(date +%s)
python3 -m ocrdesk serve --model /tmp/dsocr2 --vllm /tmp/vllm --vllm-arg=--load-format --vllm-arg=dummy \
  --attention-backend TRITON_ATTN --max-num-batched-tokens 16384 --gpu-memory-utilization 0.9 > $OUT/serve2.out 2> $OUT/serve2.err &
SPID=$!
for _ in $(seq 400); do grep -q "api key:" $OUT/serve2.out 2>/dev/null && break; kill -0 $SPID 2>/dev/null || { echo exited; tail -30 $OUT/serve2.err; exit 1; }; sleep 1; done
echo "ready after $(( $(date +%s) - t0 )) s"
URL=$(awk '/url:/{print $2}' $OUT/serve2.out); export OCRDESK_API_KEY=$(awk '/api key:/{print $3}' $OUT/serve2.out)
python3 -m ocrdesk doctor --server "$URL" > $OUT/doctor2.txt 2>&1; echo "doctor rc=$?"; grep -iE "family|model|ocr-2|serve" $OUT/doctor2.txt | head -8
for task in markdown ocr; do
python3 -m ocrdesk convert /tmp/few -o /tmp/out2_$task --server "$URL" --task $task --max-tokens 400 --request-field ignore_eos=true --retry none --formats json,md --stats $OUT/ocr2.$task.json 2> $OUT/convert2.$task.err; echo "convert $task rc=$?"
python3 - $task <<'PY'
import json, glob, sys
task = sys.argv[1]
files = sorted(glob.glob(f"/tmp/out2_{task}/*/*.json"))
d = json.load(open(files[0]))
print(task, "model:", d.get("model"), "task:", d.get("task"), "docs:", len(files))
p = d["pages"][0]
print(" page", p["width"], "x", p["height"], p["status"], "finish", p["finish_reason"], "blocks", len(p["blocks"]), "boxed", sum(1 for b in p["blocks"] if b["box"]), "raw chars", len(p["raw"]))
print(" raw head:", repr(p["raw"][:160]))
PY
done
grep -E "prompt|ocr2|OCR2|Deepseek" $OUT/serve2.err | head -5
ls -t ${XDG_STATE_HOME:-$HOME/.local/state}/ocrdesk/logs/vllm-*.log | head -1 | xargs grep -E "architecture|Resolved|DeepseekOCR2|non-default" | head -5
kill -TERM $SPID; wait $SPID
