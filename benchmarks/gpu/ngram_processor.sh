#!/usr/bin/env bash
# ON THE GPU MACHINE, after ../shared/gpu's install and make_dummy_model.py (see benchmarks/README.md):
# what the n-gram logits processor costs on the served path. For each processor in PROCESSORS,
# `ocrdesk serve` with OCRDESK_NGRAM_PROCESSOR set to it (batch: OCRDesk's engine/ngram_logits.py,
# the default; recipe: vLLM's NGramPerReqLogitsProcessor; none: no processor), then the same pages
# through `convert --server` at the DEFAULTS (no --concurrency, no tuning flags) ROUNDS times, with
# the GPU's use sampled by nvidia-smi beside each run. Figures as JSON into $OUT, a table on stdout.
#   PROCESSORS (default "recipe batch none")  PAGES (default 192)  ROUNDS (default 2)
#   STEPS (default "tests serve"): tests = tests/engine/test_ngram_logits.py against vLLM's own
#   processor, on the GPU (needs pytest in /tmp/site: EXTRA="pytest iniconfig pluggy" for
#   fetch_wheels.sh); serve = the measurement.
# One server start is 1-2.5 minutes: three processors may not fit one 10-minute call. Then split
# them, in the same lease, in opposite orders: PROCESSORS="recipe batch", then "none batch recipe"
# with ROUNDS=1; the tables of both calls compare (run-to-run spread is up to +-25 %, RESULTS.md).
set -uo pipefail
export PYTHONPATH=/tmp/site:$PWD VLLM_USE_FLASHINFER_SAMPLER=0
OUT=${OUT:-/tmp/ngram}; mkdir -p "$OUT"
PAGES=${PAGES:-192}
ROUNDS=${ROUNDS:-2}
PROCESSORS=${PROCESSORS:-recipe batch none}
STEPS=${STEPS:-tests serve}
printf '#!/bin/sh\nexec python3 -m vllm.entrypoints.cli.main "$@"\n' > /tmp/vllm && chmod +x /tmp/vllm
[ -d /tmp/pages ] || python3 benchmarks/gpu/make_pages.py /tmp/pages "$PAGES" || exit 1
mkdir -p /tmp/one && cp /tmp/pages/page000.png /tmp/one/
SERVER_FLAGS=(--model "${MODEL:-/tmp/dsocr}" --vllm /tmp/vllm --vllm-arg=--load-format --vllm-arg=dummy
  --attention-backend TRITON_ATTN --max-num-batched-tokens 16384 --gpu-memory-utilization 0.9)
SERVER_FLAGS+=(${SERVE_EXTRA:-})
JOB=(--max-tokens 1000 --request-field ignore_eos=true -q)
LOGS=${XDG_STATE_HOME:-$HOME/.local/state}/ocrdesk/logs
secs() { python3 -c "import time; print(round(time.time() - $1, 1))"; }

for step in $STEPS; do
  case $step in
  tests)
    if python3 -c "import pytest" 2>/dev/null; then
      python3 -m pytest -o addopts="" -p no:cacheprovider -q tests/engine/test_ngram_logits.py \
        > "$OUT/tests.out" 2>&1; echo "tests rc=$? $(tail -1 "$OUT/tests.out")"
    else
      echo "tests: no pytest in /tmp/site (EXTRA=\"pytest iniconfig pluggy\" for fetch_wheels.sh)"
    fi
    ;;
  serve)
    for p in $PROCESSORS; do
      t0=$(date +%s.%N)
      OCRDESK_NGRAM_PROCESSOR=$p python3 -m ocrdesk serve "${SERVER_FLAGS[@]}" \
        > "$OUT/serve.$p.out" 2> "$OUT/serve.$p.err" &
      SPID=$!
      for _ in $(seq 500); do
        grep -q "api key:" "$OUT/serve.$p.out" 2>/dev/null && break
        kill -0 $SPID 2>/dev/null || { echo "serve ($p) exited"; tail -30 "$OUT/serve.$p.err"; break; }
        sleep 1
      done
      kill -0 $SPID 2>/dev/null || continue
      URL=$(awk '/url:/{print $2}' "$OUT/serve.$p.out")
      export OCRDESK_API_KEY=$(awk '/api key:/{print $3}' "$OUT/serve.$p.out")
      echo "serve ($p): $URL ready after $(secs "$t0") s"
      python3 -m ocrdesk convert /tmp/one -o "/tmp/out_warm.$p" --server "$URL" "${JOB[@]}" 2>/dev/null
      python3 -m ocrdesk convert /tmp/one -o "/tmp/out_one.$p" --server "$URL" "${JOB[@]}" \
        --stats "$OUT/$p.single.json" 2>/dev/null
      for r in $(seq "$ROUNDS"); do
        name=$p.$r
        nvidia-smi --query-gpu=utilization.gpu,power.draw --format=csv,noheader,nounits -lms 500 \
          > "$OUT/$name.gpu.csv" 2>/dev/null &
        GPID=$!
        python3 -m ocrdesk convert /tmp/pages -o "/tmp/out_$name" --server "$URL" "${JOB[@]}" \
          --stats "$OUT/$name.json" 2> "$OUT/$name.err"
        rc=$?
        kill $GPID 2>/dev/null; wait $GPID 2>/dev/null
        echo "$name rc=$rc $(python3 -c "import json; s=json.load(open('$OUT/$name.json')); print(s['pages_per_second'], 'pages/s')" 2>/dev/null)"
      done
      kill -TERM $SPID; wait $SPID
      log=$(ls -t "$LOGS"/vllm-*.log 2>/dev/null | head -1)
      [ -n "$log" ] && grep -E "logits_processors|logits processor|Model Runner|model runner|PYTHONPATH|Traceback|Error" \
        "$log" | head -40 > "$OUT/$p.vllm.txt"
    done
    ;;
  esac
done

python3 - "$OUT" <<'PY'
import json, pathlib, statistics, sys
out = pathlib.Path(sys.argv[1])
runs = {}
for path in sorted(out.glob("*.*.json")):
    name = path.name[: -len(".json")]
    if name.endswith(".single"):
        continue
    stats = json.loads(path.read_text())
    gpu = out / f"{name}.gpu.csv"
    util, power = [], []
    if gpu.exists():
        for line in gpu.read_text().splitlines():
            try:
                u, w = (float(x) for x in line.split(","))
            except ValueError:
                continue
            util.append(u)
            power.append(w)
    runs[name] = (stats, util, power)
if not runs:
    sys.exit(0)
recipe = [s["pages_per_second"] or 0 for n, (s, _, _) in runs.items() if n.startswith("recipe.")]
base = statistics.mean(recipe) if recipe else None
print("| processor.round | pages/s | of recipe (mean) | first page s | GPU busy % (mean) | W (mean) |")
print("| --- | --- | --- | --- | --- | --- |")
for name, (stats, util, power) in runs.items():
    pps = stats["pages_per_second"] or 0
    ratio = f"{pps / base:.2f}" if base else "-"
    busy = f"{statistics.mean(util):.0f}" if util else "-"
    watts = f"{statistics.mean(power):.0f}" if power else "-"
    print(f"| {name} | {pps:.2f} | {ratio} | {stats.get('first_page_seconds')} | {busy} | {watts} |")
PY
