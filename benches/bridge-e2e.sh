#!/usr/bin/env bash
# End-to-end throughput of the WSGI bridge: isapi-host serving the hello app of
# examples/hello through isapi_wsgi (simple handler, then threadpool handler), next to the
# same host serving the Rust test extension's /hello (no Python at all), measured in the
# same run with the same client:
#   wrk -t2 -c64 -d${DURATION}s on loopback, access log off.
# The difference is what Python and the bridge cost per request over HTTP.
#
#   benches/bridge-e2e.sh              # DURATION=10 by default
#
# Needs: wrk (.ci/setup installs it).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
duration="${DURATION:-10}"
tmp="$(mktemp -d)"
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# shellcheck source=benches/common.sh
source "$root/benches/common.sh"

echo "building (release)..." >&2
cargo build --release --quiet --lib --bin isapi-host --example test_extension

run() { # $1 = extension, rest = host options; prints requests/second for /hello
  local extension="$1"; shift
  local port; port="$(free_port)"
  "$root/target/release/isapi-host" --listen "127.0.0.1:$port" --access-log off "$@" "$extension" 2>"$tmp/host.log" &
  pid=$!
  wait_port "$port"
  local body; body="$(curl -s "http://127.0.0.1:$port/hello")"
  case "$body" in Hello,\ [wW]orld!) ;; *) echo "the host answered '$body'" >&2; cat "$tmp/host.log" >&2; exit 1;; esac
  wrk -t2 -c64 -d1s "http://127.0.0.1:$port/hello" >/dev/null
  wrk -t2 -c64 -d"${duration}s" "http://127.0.0.1:$port/hello" | rps
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  pid=""
}

# The threadpool variant: the same app, 8 workers and a queue that holds all 64 clients (the
# default queue, 4 x threads, would answer some of them 503, which is not throughput).
pool_ini="$tmp/threadpool.ini"
sed "s|^path *=.*|path = $root/examples/hello|" "$root/examples/hello/isapi_wsgi.ini" > "$pool_ini"
printf 'handler = threadpool\nthreads = 8\nqueue = 64\n' >> "$pool_ini"

native_rps="$(run "$root/target/release/examples/libtest_extension.so")"
bridge_rps="$(run "$root/target/release/libisapi_wsgi.so" --config "$root/examples/hello/isapi_wsgi.ini")"
pool_rps="$(run "$root/target/release/libisapi_wsgi.so" --config "$pool_ini")"

printf '%-52s %12s req/s\n' "isapi-host + Rust test extension /hello" "$native_rps"
printf '%-52s %12s req/s\n' "isapi-host + isapi_wsgi + Python hello (simple)" "$bridge_rps"
printf '%-52s %12s req/s\n' "isapi-host + isapi_wsgi + Python hello (threadpool)" "$pool_rps"
python3 -c "n, b = $native_rps, $bridge_rps; print('Python and the bridge add %.1f us per request (simple handler, at this concurrency)' % (1e6 / b - 1e6 / n))"
