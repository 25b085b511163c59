#!/usr/bin/env bash
# ON THE GPU MACHINE, after ../shared/gpu's install and make_dummy_model.py (see benchmarks/README.md):
# 64 synthetic pages through `ocrdesk convert --local`, then `ocrdesk serve` + `convert --server`,
# each page 1,000 output tokens (ignore_eos), timing figures as JSON into $OUT.
set -uo pipefail
export PYTHONPATH=/tmp/site:$PWD VLLM_USE_FLASHINFER_SAMPLER=0
OUT=${OUT:-/tmp/e2e}; mkdir -p "$OUT"
PAGES=${PAGES:-64}
printf '#!/bin/sh\nexec python3 -m vllm.entrypoints.cli.main "$@"\n' > /tmp/vllm && chmod +x /tmp/vllm
python3 benchmarks/gpu/make_pages.py /tmp/pages "$PAGES" || exit 1
SERVER_FLAGS=(--model /tmp/dsocr --vllm /tmp/vllm --vllm-arg=--load-format --vllm-arg=dummy
  --attention-backend TRITON_ATTN --max-num-batched-tokens 16384 --gpu-memory-utilization 0.9)
JOB=(--max-tokens 1000 --request-field ignore_eos=true --concurrency "${CONC:-64}" -q)
SERVER_FLAGS+=(${SERVE_EXTRA:-})
t0=$(date +%s.%N)
[ "${LOCAL:-1}" = 1 ] && python3 -m engine.cli convert /tmp/pages -o /tmp/out_local --local "${SERVER_FLAGS[@]}" "${JOB[@]}" \
  --stats "$OUT/local.json" 2> "$OUT/local.err"; echo "local rc=$? wall=$(python3 -c "import time; print(round(time.time() - $t0, 1))")"
cat "$OUT/local.json"; tail -3 "$OUT/local.err"
python3 -m engine.cli serve "${SERVER_FLAGS[@]}" > "$OUT/serve.out" 2> "$OUT/serve.err" &
SPID=$!
for _ in $(seq 400); do
  grep -q "api key:" "$OUT/serve.out" 2>/dev/null && break
  kill -0 $SPID 2>/dev/null || { echo "serve exited"; tail -20 "$OUT/serve.err"; exit 1; }
  sleep 1
done
URL=$(awk '/url:/{print $2}' "$OUT/serve.out"); KEY=$(awk '/api key:/{print $3}' "$OUT/serve.out")
echo "serve: $URL"
for fmt in ${FORMATS:-png jpeg}; do
  python3 -m engine.cli convert /tmp/pages -o /tmp/out_$fmt --server "$URL" --api-key "$KEY" \
    --image-format $fmt "${JOB[@]}" --stats "$OUT/server_$fmt.json" 2> "$OUT/server_$fmt.err"
  echo "server $fmt rc=$?"; cat "$OUT/server_$fmt.json"
done
# one page alone: the single-page latency the first finished page is compared with
mkdir -p /tmp/one && cp /tmp/pages/page000.png /tmp/one/
python3 -m engine.cli convert /tmp/one -o /tmp/out_one --server "$URL" --api-key "$KEY" "${JOB[@]}" \
  --stats "$OUT/single.json" 2>/dev/null; echo single; cat "$OUT/single.json"
kill -TERM $SPID; wait $SPID
grep -E "GPU|vllm|Version" "$OUT/serve.err" | head -5
