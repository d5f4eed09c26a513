#!/usr/bin/env bash
# Large bodies, measured against each other in the same run on this machine:
#
# 1. Download of one ${SIZE_MIB:-200} MiB file, one client (curl to /dev/null) at a time:
#      file_wrapper  isapi-host + isapi_wsgi, the app returns wsgi.file_wrapper(open(file)):
#                    the server sends the file (HSE_REQ_TRANSMIT_FILE)
#      python loop   the same host and app, the file read and yielded by Python in 64 KiB
#                    blocks (with its Content-Length)
#      nginx         nginx serving the same file from disk with `sendfile on`
#    For each: MB/s (median of ROUNDS, the three interleaved in each round) and the CPU
#    seconds the serving process (all of its threads; nginx: master and workers) spent per
#    download.
# 2. Upload of ${UPLOAD_MIB:-1024} MiB (Content-Length, sent by a Python client from memory)
#    to an app that reads wsgi.input in 64 KiB pieces, with each handler: MB/s and the
#    host's peak resident memory (VmHWM) against its resident memory before the upload.
#
#   bash benches/bodies.sh                 # ROUNDS=5
#   ROUNDS=3 SIZE_MIB=100 bash benches/bodies.sh
#
# Prints a Markdown table. Installs nginx and curl from Debian if missing (as compare.sh).
# The machine may be shared: the figures are only comparable within one run.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
rounds="${ROUNDS:-5}"
size_mib="${SIZE_MIB:-200}"
upload_mib="${UPLOAD_MIB:-1024}"
tmp="$(mktemp -d)"
groups=()
cleanup() {
  local g
  for g in "${groups[@]}"; do kill -TERM -- "-$g" 2>/dev/null || true; done
  sleep 0.2
  for g in "${groups[@]}"; do kill -KILL -- "-$g" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=benches/common.sh
source "$root/benches/common.sh"
log() { echo "bodies: $*" >&2; }

apt_need=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || apt_need+=(nginx)
command -v curl >/dev/null || apt_need+=(curl)
if [ ${#apt_need[@]} -gt 0 ]; then
  log "apt-get install ${apt_need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${apt_need[@]}" >/dev/null
fi
nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"

log "building (release): the library and isapi-host"
cargo build --release --quiet --lib --bin isapi-host
host="$root/target/release/isapi-host"
library="$root/target/release/libisapi_wsgi.so"

file="$tmp/download.bin"
log "writing a $size_mib MiB file"
head -c "$((size_mib * 1048576))" /dev/urandom > "$file"
chmod a+rx "$tmp" && chmod a+r "$file"   # nginx's workers may run as another user
bytes="$(stat -c %s "$file")"
export BODIES_FILE="$file"

# ours HANDLER PORT: isapi-host with the bodies app and that handler, in a session of its
# own; sets `pid` (its process group id).
ours() {
  local ini="$tmp/ours-$1.ini"
  printf '[python]\npath = %s\n[wsgi]\napp = bodies:application\nhandler = %s\nmax_body = 0\n' \
    "$root/benches/apps" "$1" > "$ini"
  setsid "$host" --listen "127.0.0.1:$2" --access-log off --config "$ini" "$library" \
    > "$tmp/ours-$1.log" 2>&1 &
  pid=$!
  groups+=("$pid")
  wait_port "$2" "" 30
}

nginx_up() {
  local d="$tmp/nginx"
  mkdir -p "$d/logs"
  cat > "$d/nginx.conf" <<CONF
worker_processes auto;
daemon off;
pid $d/nginx.pid;
error_log $d/logs/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  client_body_temp_path $d/body;
  proxy_temp_path $d/proxy;
  fastcgi_temp_path $d/fastcgi;
  uwsgi_temp_path $d/uwsgi;
  scgi_temp_path $d/scgi;
  server {
    listen 127.0.0.1:$1;
    location = /file { alias $file; default_type application/octet-stream; }
  }
}
CONF
  setsid "$nginx_bin" -p "$d" -c "$d/nginx.conf" > "$d/out.log" 2>&1 &
  pid=$!
  groups+=("$pid")
  wait_port "$1" "file" 30
}

# cpu PGID: user + system CPU seconds of every process in the group, so far.
cpu() {
  local ticks=0 p t
  for p in $(pgrep -g "$1"); do
    t="$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)"
    ticks=$((ticks + t))
  done
  echo "$ticks $(getconf CLK_TCK)" | awk '{printf "%.3f", $1 / $2}'
}

# download PGID URL: one download to /dev/null; prints "seconds cpu_seconds", after
# checking that every byte came.
download() {
  local before after got
  before="$(cpu "$1")"
  got="$(curl -s -o /dev/null -w '%{size_download} %{time_total}' "$2")"
  after="$(cpu "$1")"
  [ "${got% *}" = "$bytes" ] || { log "$2: ${got% *} of $bytes bytes"; exit 1; }
  echo "${got#* } $(awk -v a="$before" -v b="$after" 'BEGIN {printf "%.3f", b - a}')"
}

# median of the numbers on stdin
median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

port_ours="$(free_port)"; ours simple "$port_ours"; pid_ours="$pid"
port_nginx="$(free_port)"; nginx_up "$port_nginx"; pid_nginx="$pid"
declare -A urls=(
  [file_wrapper]="http://127.0.0.1:$port_ours/wrapper"
  [python]="http://127.0.0.1:$port_ours/python"
  [nginx]="http://127.0.0.1:$port_nginx/file"
)
declare -A pgid=([file_wrapper]="$pid_ours" [python]="$pid_ours" [nginx]="$pid_nginx")
kinds=(file_wrapper python nginx)
for kind in "${kinds[@]}"; do download "${pgid[$kind]}" "${urls[$kind]}" > /dev/null; done  # warm-up, page cache
for round in $(seq 1 "$rounds"); do
  for kind in "${kinds[@]}"; do
    download "${pgid[$kind]}" "${urls[$kind]}" >> "$tmp/$kind.runs"
  done
  log "round $round of $rounds done"
done

mbps() { awk -v b="$bytes" '{print b / 1e6 / $1}' "$tmp/$1.runs" | median; }
cpus() { awk '{print $2}' "$tmp/$1.runs" | median; }
nginx_mbps="$(mbps nginx)"
python_cpu="$(cpus python)"

# upload HANDLER: MB/s, resident MiB before, peak MiB during.
upload() {
  local port; port="$(free_port)"
  ours "$1" "$port"
  local p="$pid"
  curl -s -o /dev/null "http://127.0.0.1:$port/upload" -d warm-up
  local rss; rss="$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status")"
  local seconds
  seconds="$(python3 - "$port" "$upload_mib" <<'PY'
import socket, sys, time
port, mib = int(sys.argv[1]), int(sys.argv[2])
piece = b"u" * 1048576
s = socket.create_connection(("127.0.0.1", port))
started = time.perf_counter()
s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
          b"Content-Length: %d\r\nConnection: close\r\n\r\n" % (mib * 1048576))
for _ in range(mib):
    s.sendall(piece)
answer = b""
while True:
    data = s.recv(65536)
    if not data:
        break
    answer += data
elapsed = time.perf_counter() - started
assert answer.endswith(b"\r\n\r\n%d" % (mib * 1048576)), answer[-200:]
print("%.3f" % elapsed)
PY
)"
  local hwm; hwm="$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status")"
  kill -TERM -- "-$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
  awk -v s="$seconds" -v m="$upload_mib" -v r="$rss" -v h="$hwm" -v handler="$1" 'BEGIN {
    printf "| upload %d MiB, `handler = %s` | %.0f MB/s | resident %.1f MiB before, peak %.1f MiB (+%.1f MiB) |\n",
      m, handler, m * 1048576 / 1e6 / s, r / 1024, h / 1024, (h - r) / 1024 }'
}

load="$(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "$rounds rounds, $size_mib MiB download, $upload_mib MiB upload; load average at the end of the downloads: $load"
echo
echo "| what | throughput | CPU of the serving process |"
echo "|---|---|---|"
for kind in "${kinds[@]}"; do
  m="$(mbps "$kind")"; c="$(cpus "$kind")"
  awk -v k="$kind" -v m="$m" -v c="$c" -v n="$nginx_mbps" -v p="$python_cpu" 'BEGIN {
    label = (k == "file_wrapper") ? "download, `wsgi.file_wrapper`" : (k == "python") ? "download, Python loop (64 KiB reads)" : "download, nginx `sendfile on`"
    printf "| %s | %.0f MB/s (%.2f × nginx) | %.3f s per download (%.2f × the Python loop) |\n", label, m, m / n, c, (p > 0 ? c / p : 0) }'
done
upload simple
upload threadpool
