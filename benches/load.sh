#!/usr/bin/env bash
# Load run: the isapi_wsgi library in `isapi-host --strict`, serving tests/apps/threadpool_app.py
# /hello, under wrk (64 connections for a fixed time, DURATION seconds), once per handler.
# For each it reports: requests answered (wrk's count), errors (non-2xx responses and socket errors, from wrk),
# contract violations (from the host's --strict report at shutdown), and the host's resident
# memory (VmRSS from /proc/PID/status, sampled every second during the run) so one can see
# that it levels off.
#
#   benches/load.sh                                  # 15 s per handler, 64 connections, debug build
#   DURATION=60 PROFILE=release benches/load.sh
#   HANDLERS=threadpool THREADS=8 QUEUE=64 benches/load.sh
#
# Needs: wrk, curl, python3 (the build machine's; the library finds it as the tests do).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
duration="${DURATION:-15}"
connections="${CONNECTIONS:-64}"
handlers="${HANDLERS:-simple threadpool}"
threads="${THREADS:-8}"
# At least one waiting slot per connection: this run measures leaks and errors, not
# back-pressure (tests/threadpool_host.rs covers the 503s).
queue="${QUEUE:-$connections}"
profile="${PROFILE:-debug}"
tmp="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

# shellcheck source=benches/common.sh
source "$root/benches/common.sh"
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || true; }

echo "building ($profile)..." >&2
if [ "$profile" = release ]; then
  cargo build --release --quiet --lib --bin isapi-host
else
  cargo build --quiet --lib --bin isapi-host
fi
host="$root/target/$profile/isapi-host"
library="$root/target/$profile/libisapi_wsgi.so"


for handler in $handlers; do
  cat > "$tmp/$handler.ini" <<INI
[python]
path = $root/tests/apps
[wsgi]
app = threadpool_app:application
handler = $handler
threads = $threads
queue = $queue
log = $tmp/$handler.log
INI
  port="$(free_port)"
  "$host" --strict --access-log off --listen "127.0.0.1:$port" --config "$tmp/$handler.ini" \
    "$library" > "$tmp/$handler.out" 2>&1 &
  pid=$!
  pids+=("$pid")
  wait_port "$port" hello 20
  ( while kill -0 "$pid" 2>/dev/null; do rss_kib "$pid"; sleep 1; done ) > "$tmp/$handler.rss" &
  sampler=$!
  wrk -t2 -c"$connections" -d"${duration}s" "http://127.0.0.1:$port/hello" > "$tmp/$handler.wrk" 2>&1
  sleep 1
  kill -TERM "$pid"
  wait "$pid" && status=0 || status=$?
  wait "$sampler" 2>/dev/null || true

  answered="$(awk '/requests in/ {print $1}' "$tmp/$handler.wrk")"
  non2xx="$(awk '/Non-2xx/ {print $NF}' "$tmp/$handler.wrk")"
  socket="$(awk -F'[ ,]+' '/Socket errors/ {print $4+$6+$8+$10}' "$tmp/$handler.wrk")"
  rate="$(awk '/Requests\/sec/ {print $2}' "$tmp/$handler.wrk")"
  violations="$(sed -n 's/.*stopped; \([0-9]*\) contract violation(s).*/\1/p' "$tmp/$handler.out")"
  samples="$(tr '\n' ' ' < "$tmp/$handler.rss")"
  echo "== handler = $handler (threads = $threads, queue = $queue; $connections connections for $duration s; $profile build)"
  echo "requests answered:   ${answered:-?} (${rate:-?} per second)"
  echo "errors:              non-2xx ${non2xx:-0}, socket errors ${socket:-0}"
  echo "contract violations: ${violations:-? (no report: the host did not stop cleanly)}; host exit status $status"
  echo "VmRSS (KiB), every second: $samples"
  python3 - "$tmp/$handler.rss" <<'PY'
import sys
samples = [int(x) for x in open(sys.argv[1]).read().split() if x.isdigit()]
if len(samples) >= 4:
    half = len(samples) // 2
    first, second = samples[:half], samples[half:]
    print("VmRSS: start %d KiB, end of first half %d KiB, max %d KiB, growth in the second half %d KiB"
          % (samples[0], first[-1], max(samples), second[-1] - second[0]))
PY
  grep -h "CONTRACT VIOLATION" "$tmp/$handler.out" | head -5 || true
done
