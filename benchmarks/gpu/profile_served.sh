#!/usr/bin/env bash
# ON THE GPU MACHINE, after ../shared/gpu's install and make_dummy_model.py (see benchmarks/README.md):
# issue 18 item 3, where the served path's time goes. `ocrdesk serve` at its defaults (the batch
# n-gram processor), then `convert --server` at the DEFAULTS over the pages while py-spy samples
# every vLLM process (API servers and the engine core, --nonblocking: the server is not paused) and
# the client, and nvidia-smi the GPU; then the same pages at fixed --concurrency 64 and 256 (the
# defaults' goal is >= 0.95x of the best fixed count in the same lease). Profiles (py-spy raw,
# collapsed stacks) and figures into $OUT; a summary on stdout.
#   PAGES (default 192)  FIXED (default "64 256")  PROFILE_S (default 20)
set -uo pipefail
export PYTHONPATH=/tmp/site:$PWD VLLM_USE_FLASHINFER_SAMPLER=0
OUT=${OUT:-/tmp/profile}; mkdir -p "$OUT"
PAGES=${PAGES:-192}
FIXED=${FIXED:-64 256}
PROFILE_S=${PROFILE_S:-20}
PYSPY=${PYSPY:-/tmp/site/bin/py-spy}
printf '#!/bin/sh\nexec python3 -m vllm.entrypoints.cli.main "$@"\n' > /tmp/vllm && chmod +x /tmp/vllm
[ -d /tmp/pages ] || python3 benchmarks/gpu/make_pages.py /tmp/pages "$PAGES" || exit 1
mkdir -p /tmp/one && cp /tmp/pages/page000.png /tmp/one/
SERVER_FLAGS=(--model "${MODEL:-/tmp/dsocr}" --vllm /tmp/vllm --vllm-arg=--load-format --vllm-arg=dummy
  --attention-backend TRITON_ATTN --max-num-batched-tokens 16384 --gpu-memory-utilization 0.9)
# --retry none: the dummy model's noise is flagged on every page and retried (see
# results/gpu-ngram-processor.md); a real model's pages are not.
JOB=(--max-tokens 1000 --request-field ignore_eos=true -q --retry none)

t0=$(date +%s)
python3 -m ocrdesk serve "${SERVER_FLAGS[@]}" > "$OUT/serve.out" 2> "$OUT/serve.err" &
SPID=$!
for _ in $(seq 500); do
  grep -q "api key:" "$OUT/serve.out" 2>/dev/null && break
  kill -0 $SPID 2>/dev/null || { echo "serve exited"; tail -30 "$OUT/serve.err"; exit 1; }
  sleep 1
done
URL=$(awk '/url:/{print $2}' "$OUT/serve.out")
export OCRDESK_API_KEY=$(awk '/api key:/{print $3}' "$OUT/serve.out")
echo "serve: $URL ready after $(( $(date +%s) - t0 )) s"
python3 -m ocrdesk convert /tmp/one -o /tmp/out_warm --server "$URL" "${JOB[@]}" 2>/dev/null

run() {  # name, extra convert flags...
  local name=$1; shift
  nvidia-smi --query-gpu=utilization.gpu,power.draw --format=csv,noheader,nounits -lms 500 \
    > "$OUT/$name.gpu.csv" 2>/dev/null &
  local gpid=$!
  python3 -m ocrdesk convert /tmp/pages -o "/tmp/out_$name" --server "$URL" "${JOB[@]}" "$@" \
    --stats "$OUT/$name.json" 2> "$OUT/$name.err" &
  local cpid=$!
  local spies=()
  if [ "$name" = defaults ]; then
    sleep 12  # past the first window and the tuner's climb: the steady state
    for pid in $(pgrep -f "vllm.entrypoints|VLLM|EngineCore") "$cpid"; do
      label=$pid; [ "$pid" = "$cpid" ] && label=client
      "$PYSPY" record --nonblocking --threads --pid "$pid" --duration "$PROFILE_S" --rate 50 \
        -f raw -o "$OUT/pyspy.$label.txt" > /dev/null 2>&1 &
      spies+=($!)
    done
    ps -o pid,pcpu,rss,nlwp,args -p "$(pgrep -d, -f 'vllm|ocrdesk')" | cut -c1-160 > "$OUT/ps.txt"
    top -b -H -n 1 -p "$cpid" | head -30 > "$OUT/top.client.txt"
  fi
  wait $cpid; local rc=$?
  [ ${#spies[@]} -gt 0 ] && wait "${spies[@]}"
  kill $gpid 2>/dev/null; wait $gpid 2>/dev/null
  echo "$name rc=$rc $(python3 -c "import json; s=json.load(open('$OUT/$name.json')); print(s['pages_per_second'], 'pages/s')" 2>/dev/null)"
}
run defaults
for c in $FIXED; do run "c$c" --concurrency "$c"; done
kill -TERM $SPID; wait $SPID

python3 - "$OUT" <<'PY'
"""Summary: pages/s, GPU busy, and each profiled process's hottest frames (self and inclusive)."""
import collections, csv, glob, json, os, re, sys
out = sys.argv[1]
for f in sorted(glob.glob(f"{out}/*.json")):
    name = os.path.basename(f)[:-5]
    s = json.load(open(f))
    rows = [r for r in csv.reader(open(f"{out}/{name}.gpu.csv")) if len(r) == 2]
    busy = [float(r[0]) for r in rows if r[0].strip().replace('.', '', 1).isdigit()]
    print(f"{name}: {s.get('pages_per_second')} pages/s, GPU busy {sum(busy)/max(1,len(busy)):.0f} %")
spies = sorted(glob.glob(f"{out}/pyspy.*.txt"), key=os.path.getsize, reverse=True)
for f in spies[:2] + [x for x in spies[2:] if x.endswith("client.txt")]:
    inc, own, total = collections.Counter(), collections.Counter(), 0
    for line in open(f):
        stack, _, n = line.rstrip().rpartition(" ")
        if not n.isdigit():
            continue
        n = int(n); total += n
        frames = [re.sub(r" \(/.*?/(site-packages|lib/python3\.\d+)/", " (", x) for x in stack.split(";")]
        own[frames[-1]] += n
        for x in set(frames):
            inc[x] += n
    print(f"== {os.path.basename(f)}: {total} samples")
    print("  self:", *[f"\n    {v:6d} {k[:140]}" for k, v in own.most_common(15)])
    print("  inclusive:", *[f"\n    {v:6d} {k[:140]}" for k, v in inc.most_common(30)])
PY
