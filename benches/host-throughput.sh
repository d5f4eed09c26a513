#!/usr/bin/env bash
# Throughput of isapi-host serving the Rust test extension's 13-byte /hello, next to nginx
# answering the same 13 bytes, measured in the same run with the same client:
#   wrk -t2 -c64 -d${DURATION}s on loopback, ROUNDS interleaved rounds, medians.
# Prints requests/second for each, its ratio to nginx, and the host's CPU time per request
# (utime + stime of the process over the run / requests: steadier than req/s on a shared
# machine).
#
#   benches/host-throughput.sh                  # DURATION=10 ROUNDS=3 by default
#   DURATION=5 ROUNDS=5 THREADS=8 benches/host-throughput.sh
#   BASELINE=/tmp/old benches/host-throughput.sh  # also an older build (log off and on): /tmp/old/isapi-host
#                                                 # with /tmp/old/libtest_extension.so
#
# Needs: nginx (Debian package; run as root or with a writable temp dir), wrk.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
duration="${DURATION:-10}"
rounds="${ROUNDS:-3}"
threads="${THREADS:-}"
baseline="${BASELINE:-}"
tmp="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# shellcheck source=benches/common.sh
source "$root/benches/common.sh"

echo "building (release)..." >&2
cargo build --release --quiet --bin isapi-host --example test_extension
ext="$root/target/release/examples/libtest_extension.so"

# --- nginx: a fixed 13-byte body ---------------------------------------------------
nginx_port="$(free_port)"
mkdir -p "$tmp/nginx/logs"
cat > "$tmp/nginx/nginx.conf" <<CONF
worker_processes 2;
daemon off;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/logs/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $tmp/nginx/body;
  proxy_temp_path $tmp/nginx/proxy;
  fastcgi_temp_path $tmp/nginx/fastcgi;
  uwsgi_temp_path $tmp/nginx/uwsgi;
  scgi_temp_path $tmp/nginx/scgi;
  server {
    listen 127.0.0.1:$nginx_port;
    location / { default_type text/plain; return 200 "Hello, world!"; }
  }
}
CONF

# cpu_ticks PID...: utime + stime of the processes, in clock ticks.
cpu_ticks() {
  local total=0 pid
  for pid in "$@"; do total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat"))); done
  echo "$total"
}

# measure LABEL PORT PID...: a warm-up, then one run; appends "label rps us-per-request".
measure() {
  local label="$1" port="$2"; shift 2
  local body; body="$(curl -s "http://127.0.0.1:$port/hello")"
  [ "$body" = "Hello, world!" ] || { echo "$label answered '$body'" >&2; exit 1; }
  wrk -t2 -c64 -d1s "http://127.0.0.1:$port/hello" >/dev/null
  local before after report
  before="$(cpu_ticks "$@")"
  report="$(wrk -t2 -c64 -d"${duration}s" "http://127.0.0.1:$port/hello")"
  after="$(cpu_ticks "$@")"
  local rate requests
  rate="$(echo "$report" | rps)"
  requests="$(echo "$report" | awk '/requests in/ {print $1}')"
  python3 -c "print('$label', $rate, ($after - $before) / $(getconf CLK_TCK) * 1e6 / $requests)" >> "$tmp/results"
}

run_nginx() {
  nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" &
  pids=($!)
  wait_port "$nginx_port"
  # The workers are the master's children.
  measure "nginx (fixed 13-byte body)" "$nginx_port" $(pgrep -P "${pids[0]}")
  kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true; pids=()
}

run_host() { # $1 = label, $2 = host binary, $3 = extension, rest = extra host options
  local label="$1" host="$2" extension="$3"; shift 3
  local port; port="$(free_port)"
  "$host" --listen "127.0.0.1:$port" ${threads:+--threads "$threads"} "$@" "$extension" 2>"$tmp/host.log" &
  local pid=$!
  pids=("$pid")
  wait_port "$port"
  measure "$label" "$port" "$pid"
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  pids=()
}

host="$root/target/release/isapi-host"
for _ in $(seq "$rounds"); do
  run_nginx
  run_host "isapi-host + test extension /hello" "$host" "$ext" --access-log off
  run_host "isapi-host, access log on" "$host" "$ext" --access-log "$tmp/access.log"
  if [ -n "$baseline" ]; then
    run_host "baseline ($baseline)" "$baseline/isapi-host" "$baseline/libtest_extension.so" --access-log off
    run_host "baseline, access log on" "$baseline/isapi-host" "$baseline/libtest_extension.so" --access-log "$tmp/access.log"
  fi
done

python3 - "$tmp/results" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    label, rate, cpu = line.rsplit(" ", 2)
    runs.setdefault(label, []).append((float(rate), float(cpu)))
nginx = statistics.median(r for r, _ in runs["nginx (fixed 13-byte body)"])
print(f"{'':44s} {'req/s':>10s} {'x nginx':>8s} {'CPU us/req':>11s}   (medians of {len(next(iter(runs.values())))} rounds)")
for label, values in runs.items():
    rate = statistics.median(r for r, _ in values)
    cpu = statistics.median(c for _, c in values)
    print(f"{label[:44]:44s} {rate:10.0f} {rate / nginx:8.2f} {cpu:11.2f}")
PY
