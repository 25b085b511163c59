#!/usr/bin/env bash
# ON THE GPU MACHINE, after ../shared/gpu's install, make_dummy_model.py and make_pages.py (see
# benchmarks/README.md): `ocrdesk serve`, then the same pages through `convert --server` at the
# DEFAULTS (no --concurrency: the in-flight count found from the server's /metrics) and at fixed
# counts, alternated, in one server's life, so the ratios compare like with like. Figures as JSON
# into $OUT, a summary table on stdout.
#   PAGES (default 192)  FIXED (default "64 256")  ROUNDS (default 2)  JOB_EXTRA (more convert flags)  WARM_RUN (1)
set -uo pipefail
export PYTHONPATH=/tmp/site:$PWD VLLM_USE_FLASHINFER_SAMPLER=0
OUT=${OUT:-/tmp/auto}; mkdir -p "$OUT"
PAGES=${PAGES:-192}
FIXED=${FIXED:-64 256}
ROUNDS=${ROUNDS:-2}
printf '#!/bin/sh\nexec python3 -m vllm.entrypoints.cli.main "$@"\n' > /tmp/vllm && chmod +x /tmp/vllm
[ -d /tmp/pages ] || python3 benchmarks/gpu/make_pages.py /tmp/pages "$PAGES" || exit 1
mkdir -p /tmp/one && cp /tmp/pages/page000.png /tmp/one/
SERVER_FLAGS=(--model "${MODEL:-/tmp/dsocr}" --vllm /tmp/vllm --vllm-arg=--load-format --vllm-arg=dummy
  --attention-backend TRITON_ATTN --max-num-batched-tokens 16384 --gpu-memory-utilization 0.9)
SERVER_FLAGS+=(${SERVE_EXTRA:-})
JOB=(--max-tokens 1000 --request-field ignore_eos=true -q ${JOB_EXTRA:-})
secs() { python3 -c "import time; print(round(time.time() - $1, 1))"; }
t0=$(date +%s.%N)
python3 -m ocrdesk serve "${SERVER_FLAGS[@]}" > "$OUT/serve.out" 2> "$OUT/serve.err" &
SPID=$!
for _ in $(seq 500); do
  grep -q "api key:" "$OUT/serve.out" 2>/dev/null && break
  kill -0 $SPID 2>/dev/null || { echo "serve exited"; tail -30 "$OUT/serve.err"; exit 1; }
  sleep 1
done
URL=$(awk '/url:/{print $2}' "$OUT/serve.out"); export OCRDESK_API_KEY=$(awk '/api key:/{print $3}' "$OUT/serve.out")
echo "serve: $URL ready after $(secs "$t0") s"
python3 -m ocrdesk convert /tmp/one -o /tmp/out_warm --server "$URL" "${JOB[@]}" 2>/dev/null
python3 -m ocrdesk convert /tmp/one -o /tmp/out_one --server "$URL" "${JOB[@]}" --stats "$OUT/single.json" 2>/dev/null
# One run of all pages at 256, not counted: the first large batches compile kernels for their
# shapes (vLLM logs "Triton kernel JIT compilation during inference"), which cost whichever
# variant ran first (auto.1 5.91 against auto.2 7.17 pages/s on the H200, 2026-12-04).
[ "${WARM_RUN:-1}" = 1 ] && python3 -m ocrdesk convert /tmp/pages -o /tmp/out_warm_all --server "$URL" "${JOB[@]}" --concurrency 256 2>/dev/null
run() {  # name, extra flags...
  local name=$1; shift
  python3 -m ocrdesk convert /tmp/pages -o "/tmp/out_$name" --server "$URL" "${JOB[@]}" "$@" \
    --stats "$OUT/$name.json" 2> "$OUT/$name.err"
  echo "$name rc=$? $(python3 -c "import json,sys; s=json.load(open('$OUT/$name.json')); print(s['pages_per_second'], 'pages/s, first', s['first_page_seconds'], 's, limits', s.get('in_flight_limits'))")"
}
for r in $(seq "$ROUNDS"); do
  run "auto.$r"
  for c in $FIXED; do run "c$c.$r" --concurrency "$c"; done
done
python3 - "$OUT" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
rows = {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json"))}
best = max(v["pages_per_second"] or 0 for k, v in rows.items() if k.startswith("c"))
print("| run | pages/s | of best fixed | first page s | in-flight limits |")
print("| --- | --- | --- | --- | --- |")
for k, v in rows.items():
    pps = v["pages_per_second"] or 0
    lim = v.get("in_flight_limits") or []
    print(f"| {k} | {pps:.2f} | {pps / best:.2f} | {v['first_page_seconds']} | {lim[:3]}..{max(lim) if lim else ''} |")
PY
kill -TERM $SPID; wait $SPID
