#!/usr/bin/env bash
# Instructions per request of the whole server process, counted by callgrind (repeatable on
# a shared machine, where timings move by +-30%): isapi-host serving the Rust test
# extension's /hello and the hello app through isapi_wsgi (with the simple handler, and with
# the combining one, the default), and bjoern serving the same app,
# each answering N keep-alive GET /hello from one client, one after the other.
#
#   bash benches/instructions.sh               # N=2000
#   N=5000 THREADS=1 WARMUP=5000 bash benches/instructions.sh
#
# How: a profiling build (symbols kept, line tables) into target/prof; each server runs
# under `valgrind --tool=callgrind`; after WARMUP warm-up requests (5000: more than the
# host's 4 096 request slots, so that what is counted is the steady state, in which each
# ended request lets go of what its slot kept of the slot's previous request; with fewer,
# nothing is ever let go of) the counters are zeroed (callgrind_control -z), N requests
# are sent, the counters dumped (-d); the figure is the
# dump's total over N. It counts the server's user-space instructions only: the kernel's
# share (the socket calls) is not in it. The client (Python, below) sends the request wrk
# sends (`Host` only) and reads each response to its Content-Length.
# `ANNOTATE=1` also prints each server's top 30 functions by their own instructions per
# request (benches/callgrind_self.py: callgrind_annotate books everything on `clone` in a
# dump taken after zeroing).
# Needs valgrind (Debian package, installed when missing) and, for bjoern, the bench venv of
# benches/compare.sh (skipped when absent).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
n="${N:-2000}"
threads="${THREADS:-1}"
warmup="${WARMUP:-5000}"
prof="$root/target/prof/release"
# shellcheck source=benches/common.sh
source "$root/benches/common.sh"
if ! command -v valgrind >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends valgrind >/dev/null
fi
tmp="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"' EXIT

# cargo does not copy a binary it thinks is fresh when another checkout built into the same
# target directory: touch the crate roots so that this checkout's code is what is measured.
touch src/lib.rs src/bin/isapi-host/main.rs examples/test-extension/lib.rs
CARGO_PROFILE_RELEASE_STRIP=none CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
  cargo build --quiet --release --target-dir target/prof --bin isapi-host --lib --example test_extension

cat > "$tmp/client.py" <<'EOF'
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
deadline = time.monotonic() + 60
while True:
    try:
        s = socket.create_connection(("127.0.0.1", port))
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.1)
request = b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n"
pending = b""
for _ in range(n):
    s.sendall(request)
    while True:
        head, blank, rest = pending.partition(b"\r\n\r\n")
        if blank:
            lines = head.split(b"\r\n")[1:]
            length = int(next(v for k, _, v in (l.partition(b":") for l in lines)
                              if k.strip().lower() == b"content-length"))
            if len(rest) >= length:
                if not lines or not head.startswith(b"HTTP/1.1 200"):
                    sys.exit("not a 200: %r" % head)
                pending = rest[length:]
                break
        data = s.recv(65536)
        if not data:
            sys.exit("the server closed the connection")
        pending += data
EOF
for handler in simple combining; do
  cat > "$tmp/hello-$handler.ini" <<EOF
[python]
path = $root/examples/hello
[wsgi]
app = hello:application
handler = $handler
EOF
done

# count LABEL COMMAND...: runs COMMAND (a server on $port) under callgrind, prints the figure.
count() {
  local label="$1"; shift
  local out="$tmp/$label.callgrind"
  valgrind --tool=callgrind --callgrind-out-file="$out" "$@" > "$tmp/$label.log" 2>&1 &
  local pid=$!
  python3 "$tmp/client.py" "$port" "$warmup"
  callgrind_control -z "$pid" >/dev/null 2>&1
  python3 "$tmp/client.py" "$port" "$n"
  callgrind_control -d "$pid" >/dev/null 2>&1
  kill "$pid"; wait "$pid" 2>/dev/null || true
  local total
  total="$(callgrind_annotate "$out.1" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }')"
  printf '%-58s %8d instructions per request\n' "$label" $((total / n))
  if [ -n "${ANNOTATE:-}" ]; then python3 "$root/benches/callgrind_self.py" "$out.1" "$n" 30; fi
}

port="$(free_port)"
count "isapi-host --threads $threads + Rust test extension" \
  "$prof/isapi-host" --listen "127.0.0.1:$port" --access-log off --threads "$threads" \
  "$prof/examples/libtest_extension.so"
for handler in simple combining; do
  port="$(free_port)"
  count "isapi-host --threads $threads + isapi_wsgi ($handler), hello" \
    "$prof/isapi-host" --listen "127.0.0.1:$port" --access-log off --threads "$threads" \
    --config "$tmp/hello-$handler.ini" "$prof/libisapi_wsgi.so"
done
if [ -x target/bench-venv/bin/python ]; then
  port="$(free_port)"
  export PYTHONPATH="$root/examples/hello"
  count "bjoern (1 process), hello" \
    target/bench-venv/bin/python benches/apps/bjoern_serve.py hello:application 127.0.0.1 "$port"
else
  echo "bjoern: no target/bench-venv (run benches/compare.sh once to make it); skipped"
fi
