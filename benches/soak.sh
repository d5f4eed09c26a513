#!/usr/bin/env bash
# Soak: REQUESTS requests (default 1 000 000) per handler through the isapi_wsgi library in
# `isapi-host --strict` (release build), serving tests/apps/testapp.py, from
# benches/soak_client.py's mix: keep-alive and pipelined GETs, POSTed bodies echoed back,
# clients disconnecting mid-body and mid-response, and app exceptions (before the response
# and after its first piece). Not a timed test: it reports, per handler, the requests, the
# client's errors (an unexpected answer, or a socket error nobody provoked), the host's
# contract violations (its --strict report at shutdown), the host's resident memory
# (VmRSS, sampled every second) at the start, middle and end, and the slope of the last
# half by least squares, in KiB per 100 000 requests (flat: close to 0). To tell a leak from
# the allocator's behaviour it also samples, every 5 seconds, the app's /raw/soak-stats
# (after a full collection: sys.getallocatedblocks(), len(gc.get_objects())) and
# the host's open file descriptors and threads from /proc, and prints their start and end
# and the last-half slope of the allocated blocks per 100 000 requests; at the end it
# prints how many requests the host's shutdown found still in flight (0: every exchange
# left the registry).
#
#   benches/soak.sh                          # 1 000 000 per handler, 2 client processes
#   REQUESTS=100000 HANDLERS=simple benches/soak.sh
#   SAMPLES=DIR benches/soak.sh              # keeps each handler's samples in DIR
#
# Needs python3 (3.9+) and the build machine's Python for the bridge (found as the tests find it).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
requests="${REQUESTS:-1000000}"
handlers="${HANDLERS:-simple threadpool}"
procs="${PROCS:-2}"
tmp="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
# shellcheck source=benches/common.sh
source "$root/benches/common.sh"

echo "building (release)..." >&2
cargo build --release --quiet --lib --bin isapi-host
host="$root/target/release/isapi-host"
library="$root/target/release/libisapi_wsgi.so"

printf '%-10s %9s %7s %10s %9s %9s %9s %22s %7s\n' handler requests errors violations \
  "rss start" "rss mid" "rss end" "last-half slope" seconds
for handler in $handlers; do
  cat > "$tmp/$handler.ini" <<INI
[python]
path = $root/tests/apps
[wsgi]
app = testapp:application
handler = $handler
log = $tmp/$handler.log
INI
  port="$(free_port)"
  "$host" --strict --access-log off --listen "127.0.0.1:$port" --config "$tmp/$handler.ini" \
    "$library" > "$tmp/$handler.out" 2>&1 &
  hostpid=$!
  pids+=("$hostpid")
  wait_port "$port" hello 30
  : > "$tmp/$handler.rss"
  ( while kill -0 "$hostpid" 2>/dev/null; do
      awk -v t="$(date +%s.%N)" '/^VmRSS:/ {print t, $2}' "/proc/$hostpid/status" 2>/dev/null || true
      sleep 1
    done >> "$tmp/$handler.rss" ) &
  pids+=("$!")
  : > "$tmp/$handler.stats"
  ( while kill -0 "$hostpid" 2>/dev/null; do
      t="$(date +%s.%N)"
      fds="$(ls "/proc/$hostpid/fd" 2>/dev/null | wc -l)"
      threads="$(awk '/^Threads:/ {print $2}' "/proc/$hostpid/status" 2>/dev/null)"
      python="$(curl -s --max-time 10 "http://127.0.0.1:$port/raw/soak-stats" || true)"
      case "$python" in "{"*) echo "$t $fds ${threads:-0} $python" ;; esac
      sleep 5
    done >> "$tmp/$handler.stats" ) &
  pids+=("$!")
  started=$(date +%s)
  python3 "$root/benches/soak_client.py" 127.0.0.1 "$port" "$requests" "$procs" > "$tmp/$handler.json"
  seconds=$(( $(date +%s) - started ))
  kill -TERM "$hostpid"
  wait "$hostpid" && status=0 || status=$?
  violations="$(sed -n 's/.*stopped; \([0-9]*\) contract violation(s).*/\1/p' "$tmp/$handler.out")"
  cut="$(sed -n 's/.*: \([0-9]*\) request(s) cut off.*/\1/p' "$tmp/$handler.out")"
  python3 - "$tmp/$handler.json" "$tmp/$handler.rss" "$handler" "${violations:-?}" "$seconds" "$status" \
    "$tmp/$handler.stats" "${cut:-0}" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
samples = [tuple(map(float, line.split())) for line in open(sys.argv[2]) if line.strip()]
handler, violations, seconds, status = sys.argv[3], sys.argv[4], float(sys.argv[5]), sys.argv[6]
stats = []
for line in open(sys.argv[7]):
    t, fds, threads, python = line.split(" ", 3)
    stats.append((float(t), int(fds), int(threads), json.loads(python)))
rate = report["requests"] / seconds if seconds else 0


def slope(points, unit):
    """Least-squares slope of the last half of (time, value) points, per 100 000 requests."""
    half = points[len(points) // 2:]
    if len(half) < 2 or not rate:
        return "? (run too short)"
    ts = [t for t, _ in half]
    mt, mv = sum(ts) / len(ts), sum(v for _, v in half) / len(half)
    per_second = sum((t - mt) * (v - mv) for t, v in half) / sum((t - mt) ** 2 for t in ts)
    return f"{per_second / rate * 100000:+.1f} {unit}/100k req"


rss = [kib for _, kib in samples]
mib = lambda kib: f"{kib / 1024:.1f}M"
print(f"{handler:<10} {report['requests']:>9} {report['errors']:>7} {violations:>10} "
      f"{mib(rss[0]):>9} {mib(rss[len(rss) // 2]):>9} {mib(rss[-1]):>9} "
      f"{slope(samples, 'KiB'):>22} {seconds:>7.0f}")
if stats:
    first, mid, last = stats[0], stats[len(stats) // 2], stats[-1]
    blocks = [(t, p["blocks"]) for t, _, _, p in stats]
    print(f"  python (after gc.collect): allocated blocks {first[3]['blocks']} -> "
          f"{mid[3]['blocks']} -> {last[3]['blocks']}, last-half slope "
          f"{slope(blocks, 'blocks')}; gc-tracked objects {first[3]['objects']} -> "
          f"{last[3]['objects']}")
    print(f"  host: open descriptors {first[1]} -> {last[1]}, threads {first[2]} -> {last[2]}; "
          f"requests in flight at the shutdown {sys.argv[8]}")
for error in report["first_errors"]:
    print(f"  error: {error}", file=sys.stderr)
if status != "0":
    print(f"  the host exited with status {status}", file=sys.stderr)
print("  by scenario: " + ", ".join(f"{k} {v}" for k, v in report["by_scenario"].items()), file=sys.stderr)
PY
  if [ "$status" != 0 ]; then tail -20 "$tmp/$handler.out" >&2; fi
  if [ -n "${SAMPLES:-}" ]; then
    mkdir -p "$SAMPLES" && cp "$tmp/$handler.rss" "$tmp/$handler.stats" "$SAMPLES/"
  fi
done
