#!/usr/bin/env bash
# Throughput of isapi-host serving the Rust test extension's 13-byte /hello, next to nginx
# answering the same 13 bytes, measured in the same run with the same client:
#   wrk -t2 -c64 -d${DURATION}s on loopback.
# Prints requests/second for each and the host/nginx ratio.
#
#   benches/host-throughput.sh            # DURATION=10 by default
#   DURATION=30 THREADS=8 benches/host-throughput.sh
#
# Needs: nginx (Debian package; run as root or with a writable temp dir), wrk.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
duration="${DURATION:-10}"
threads="${THREADS:-}"
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
nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" &
pids+=($!)
wait_port "$nginx_port"
body="$(curl -s "http://127.0.0.1:$nginx_port/hello")"
[ "$body" = "Hello, world!" ] || { echo "nginx answered '$body'" >&2; exit 1; }
wrk -t2 -c64 -d1s "http://127.0.0.1:$nginx_port/hello" >/dev/null   # warm-up
nginx_rps="$(wrk -t2 -c64 -d"${duration}s" "http://127.0.0.1:$nginx_port/hello" | rps)"
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true; pids=()

# --- isapi-host + the test extension ---------------------------------------------------
run_host() { # $1 = label, rest = extra host options
  local label="$1"; shift
  local port; port="$(free_port)"
  "$root/target/release/isapi-host" --listen "127.0.0.1:$port" ${threads:+--threads "$threads"} "$@" "$ext" 2>"$tmp/host-$label.log" &
  local pid=$!
  pids+=("$pid")
  wait_port "$port"
  body="$(curl -s "http://127.0.0.1:$port/hello")"
  [ "$body" = "Hello, world!" ] || { echo "isapi-host answered '$body'" >&2; exit 1; }
  wrk -t2 -c64 -d1s "http://127.0.0.1:$port/hello" >/dev/null
  wrk -t2 -c64 -d"${duration}s" "http://127.0.0.1:$port/hello" | rps
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  pids=()
}
host_rps="$(run_host nolog --access-log off)"
host_log_rps="$(run_host log --access-log "$tmp/access.log")"

printf '%-44s %12s req/s\n' "nginx (fixed 13-byte body)" "$nginx_rps"
printf '%-44s %12s req/s\n' "isapi-host + test extension /hello" "$host_rps"
printf '%-44s %12s req/s\n' "isapi-host + test extension, access log on" "$host_log_rps"
python3 -c "print('ratio isapi-host / nginx: %.2f' % ($host_rps / $nginx_rps))"
