#!/usr/bin/env bash
# ON THE GPU MACHINE, after ../shared/gpu's install and make_dummy_model.py (see benchmarks/README.md):
# issue 18's goals in one lease, one STEP per device call (each fits in 10 minutes):
#   served  `ocrdesk serve` at its defaults, then the same pages through `convert --server` at the
#           DEFAULTS (no --concurrency) and at each fixed count of FIXED, alternated for ROUNDS
#           rounds in one server's life (auto_concurrency.sh with --retry none), one page alone
#   local   `convert --local` at its DEFAULTS (it starts and stops its own vLLM), files written,
#           then at each fixed count of LOCAL_FIXED (a fresh vLLM each)
#   raw     the recipe's raw LLM.generate at batch RAW_BATCH with its NGramPerReqLogitsProcessor
# `--retry none` everywhere: the dummy model's noise is flagged on every page and would be retried
# (results/gpu-ngram-processor.md); a real model's pages are not. Figures as JSON into $OUT.
#   STEP (served)  PAGES (192)  FIXED ("64 128 256")  ROUNDS (2)  LOCAL_FIXED ("")  RAW_BATCH (256)
set -uo pipefail
export PYTHONPATH=/tmp/site:$PWD VLLM_USE_FLASHINFER_SAMPLER=0
OUT=${OUT:-/tmp/goals}; mkdir -p "$OUT"
STEP=${STEP:-served}
PAGES=${PAGES:-192}
printf '#!/bin/sh\nexec python3 -m vllm.entrypoints.cli.main "$@"\n' > /tmp/vllm && chmod +x /tmp/vllm
[ -d /tmp/pages ] || python3 benchmarks/gpu/make_pages.py /tmp/pages "$PAGES" || exit 1
SERVER_FLAGS=(--model "${MODEL:-/tmp/dsocr}" --vllm /tmp/vllm --vllm-arg=--load-format --vllm-arg=dummy
  --attention-backend TRITON_ATTN --max-num-batched-tokens 16384 --gpu-memory-utilization 0.9)
JOB=(--max-tokens 1000 --request-field ignore_eos=true -q --retry none)
t0=$(date +%s)
case $STEP in
served)
  JOB_EXTRA="--retry none" FIXED=${FIXED:-64 128 256} ROUNDS=${ROUNDS:-2} OUT=$OUT \
    bash benchmarks/gpu/auto_concurrency.sh
  ;;
local)
  for c in auto ${LOCAL_FIXED:-}; do
    flags=(); [ "$c" = auto ] || flags=(--concurrency "$c")
    python3 -m ocrdesk convert /tmp/pages -o "/tmp/out_local_$c" --local "${SERVER_FLAGS[@]}" "${JOB[@]}" \
      "${flags[@]}" --stats "$OUT/local_$c.json" 2> "$OUT/local_$c.err"
    echo "local $c rc=$? wall=$(( $(date +%s) - t0 )) s"
    python3 -c "import json; s=json.load(open('$OUT/local_$c.json')); print({k: s.get(k) for k in ('pages_per_second', 'first_page_seconds', 'seconds', 'in_flight_limits')})"
    tail -3 "$OUT/local_$c.err"
  done
  ;;
raw)
  python3 .gpu/tools/bench_offline.py --model /tmp/dsocr --batch "${RAW_BATCH:-256}" --max-tokens 1000 \
    --skip-single --out "$OUT" > "$OUT/raw.out" 2> "$OUT/raw.err"
  echo "raw rc=$? wall=$(( $(date +%s) - t0 )) s"; tail -12 "$OUT/raw.out"
  ;;
esac
