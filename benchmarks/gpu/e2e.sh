#!/usr/bin/env bash
# ON THE GPU MACHINE, after ../shared/gpu's install and make_dummy_model.py (see benchmarks/README.md):
# the same 64 synthetic pages (1,000 output tokens each, ignore_eos) through each path, timing
# figures as JSON into $OUT. STEPS picks the paths (each fits one 10-minute device call):
#   raw    bench_offline.py's LLM.generate, 64 pages and 1 page (the physical limit)
#   local  `ocrdesk convert --local` (starts and stops its own server; LOCAL_WINDOW sets its
#          --first-window, "none" by default)
#   serve  `ocrdesk serve`, then `convert --server` for each first window in WINDOWS
#          ("none" = all pages at once) and one page alone
set -uo pipefail
export PYTHONPATH=/tmp/site:$PWD VLLM_USE_FLASHINFER_SAMPLER=0
OUT=${OUT:-/tmp/e2e}; mkdir -p "$OUT"
PAGES=${PAGES:-64}
STEPS=${STEPS:-raw local serve}
WINDOWS=${WINDOWS:-none 4}
printf '#!/bin/sh\nexec python3 -m vllm.entrypoints.cli.main "$@"\n' > /tmp/vllm && chmod +x /tmp/vllm
[ -d /tmp/pages ] || python3 benchmarks/gpu/make_pages.py /tmp/pages "$PAGES" || exit 1
mkdir -p /tmp/one && cp /tmp/pages/page000.png /tmp/one/
SERVER_FLAGS=(--model /tmp/dsocr --vllm /tmp/vllm --vllm-arg=--load-format --vllm-arg=dummy
  --attention-backend TRITON_ATTN --max-num-batched-tokens 16384 --gpu-memory-utilization 0.9)
JOB=(--max-tokens 1000 --request-field ignore_eos=true --concurrency "${CONC:-64}" -q)
SERVER_FLAGS+=(${SERVE_EXTRA:-})
secs() { python3 -c "import time; print(round(time.time() - $1, 1))"; }

for step in $STEPS; do
  t0=$(date +%s.%N)
  case $step in
  raw)
    python3 .gpu/tools/bench_offline.py --model /tmp/dsocr --batch "$PAGES" --max-tokens 1000 \
      > "$OUT/raw.out" 2> "$OUT/raw.err"; echo "raw rc=$? wall=$(secs "$t0")"; tail -15 "$OUT/raw.out"
    ;;
  local)
    lw=(); [ "${LOCAL_WINDOW:-none}" = none ] || lw=(--first-window "$LOCAL_WINDOW")
    python3 -m ocrdesk convert /tmp/pages -o /tmp/out_local --local "${SERVER_FLAGS[@]}" "${JOB[@]}" "${lw[@]}" \
      --stats "$OUT/local.json" 2> "$OUT/local.err"; echo "local rc=$? wall=$(secs "$t0")"
    cat "$OUT/local.json"; tail -3 "$OUT/local.err"
    ;;
  serve)
    python3 -m ocrdesk serve "${SERVER_FLAGS[@]}" > "$OUT/serve.out" 2> "$OUT/serve.err" &
    SPID=$!
    for _ in $(seq 400); do
      grep -q "api key:" "$OUT/serve.out" 2>/dev/null && break
      kill -0 $SPID 2>/dev/null || { echo "serve exited"; tail -20 "$OUT/serve.err"; exit 1; }
      sleep 1
    done
    URL=$(awk '/url:/{print $2}' "$OUT/serve.out"); KEY=$(awk '/api key:/{print $3}' "$OUT/serve.out")
    echo "serve: $URL ready after $(secs "$t0") s"
    # warm-up: one page, so no variant pays the first requests' compilation
    python3 -m ocrdesk convert /tmp/one -o /tmp/out_warm --server "$URL" --api-key "$KEY" "${JOB[@]}" 2>/dev/null
    python3 -m ocrdesk convert /tmp/one -o /tmp/out_one --server "$URL" --api-key "$KEY" "${JOB[@]}" \
      --stats "$OUT/single.json" 2>/dev/null; echo single; cat "$OUT/single.json"
    for w in $WINDOWS; do
      flag=(); [ "$w" = none ] || flag=(--first-window "$w")
      n=$((${n:-0} + 1))
      python3 -m ocrdesk convert /tmp/pages -o "/tmp/out_w$w.$n" --server "$URL" --api-key "$KEY" \
        "${JOB[@]}" "${flag[@]}" --stats "$OUT/server_w$w.$n.json" 2> "$OUT/server_w$w.$n.err"
      echo "server first-window=$w rc=$?"; cat "$OUT/server_w$w.$n.json"
    done
    python3 -m ocrdesk convert /tmp/one -o /tmp/out_one2 --server "$URL" --api-key "$KEY" "${JOB[@]}" \
      --stats "$OUT/single2.json" 2>/dev/null; echo single again; cat "$OUT/single2.json"
    kill -TERM $SPID; wait $SPID
    grep -E "GPU|vllm|Version" "$OUT/serve.err" | head -5
    ;;
  esac
done
