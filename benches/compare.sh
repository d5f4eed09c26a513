#!/usr/bin/env bash
# isapi-host + isapi_wsgi next to the usual Python WSGI servers, on the same two apps, with
# the same client, in the same run.
#
# What it measures
#   Two apps, served the same way by every server:
#     hello  examples/hello/hello.py: a 13-byte body "Hello, World!" with Content-Length
#            (GET /hello);
#     flask  benches/apps/flask_json.py: Flask, one route returning JSON (GET /json).
#   Servers (the `servers` list below; add a line to add a variant):
#     ours      isapi-host + the isapi_wsgi library (cargo build --release): the default
#               configuration (handler combining, default host threads), then variants of the
#               handler and thread counts;
#     peers     granian (its defaults, and --workers 1 --blocking-threads 1), bjoern (one
#               process), waitress (default: 4 threads), gunicorn (1 sync worker; 1 gthread
#               worker with 4 threads), all from PyPI in target/bench-venv;
#     ceilings  nginx answering a fixed 13-byte body (`return 200 "Hello, World!"`, no
#               Python), and isapi-host with the Rust test extension's /hello (no Python: the
#               host's own ceiling; default threads and --threads 1). hello app only.
#   Every server listens on 127.0.0.1 only, without an access log (our host's is on by
#   default: --access-log off here, as the peers have theirs off by default).
#
# How
#   For each server and app: start it, check its answer (body, Content-Length, JSON), warm up
#   (wrk 1 s), then
#     wrk -t2 -c64 -d${DURATION}s --latency URL     requests/s, p50/p99 at 64 connections
#     wrk -t1 -c1  -d${DURATION}s --latency URL     p50/p99 at 1 connection (wrk needs
#                                                  threads <= connections)
#   then read VmRSS and VmHWM from /proc/PID/status of every process of the server (summed over
#   its process group: gunicorn's arbiter + worker, granian's main + worker, nginx's master +
#   workers; shared pages are counted once per process), and stop it (its whole process group).
#   A wrk run with any non-2xx response or socket error is refused (`rps` of
#   benches/common.sh): that round has no figure for that server, and the table says so.
#   A 0.5 s pause follows the warm-up and the 64-connection run: wrk stops with requests in
#   flight, and the server gets to finish them before the next run's clients arrive (a
#   threadpool queue still holds them; without the pause a queue sized for 64 connections
#   answered some new ones 503). Nothing of ours runs in the pauses, so they also sample how
#   busy the machine is with other work; the report gives that per round.
#   The rounds are interleaved: round 1 runs every server once, round 2 every server again
#   (starting one further down the list), ... ROUNDS times; the table gives medians over the
#   rounds, so a burst of load from elsewhere hits one round of one server, not one server.
#
# How to read it
#   This is a 2-core machine shared with other builds; wrk runs on the same 2 cores as the
#   server. Absolute numbers move by +-30% from one run to the next; the ratios inside one run
#   (every server measured with the same client, interleaved) are what holds. "ratio" is the
#   median req/s over the best Python peer's median req/s for the same app. RSS is after the
#   runs (VmRSS) and the peak (VmHWM).
#
#   DURATION=5 ROUNDS=3 bash benches/compare.sh     # the full run (~15 min), from the repo root
#   DURATION=2 ROUNDS=1 ONLY='isapi|nginx' bash benches/compare.sh   # a quick look at some
#
# Writes benches/RESULTS.md and benches/results.png (OUT=dir to write elsewhere).
# Installs what it needs, once: nginx and wrk from Debian (only when missing), and a venv at
# target/bench-venv with granian, bjoern (the bjoern-binary wheel, which bundles libev; else
# libev-dev from Debian and bjoern built by pip), waitress, gunicorn, flask and matplotlib.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
duration="${DURATION:-5}"
rounds="${ROUNDS:-3}"
only="${ONLY:-}"
out="${OUT:-$root/benches}"
venv="$root/target/bench-venv"
py="$venv/bin/python"
host="$root/target/release/isapi-host"
library="$root/target/release/libisapi_wsgi.so"
rust_ext="$root/target/release/examples/libtest_extension.so"
# shellcheck disable=SC2016 # the quotes are part of the text; $only expands
command_line="DURATION=$duration ROUNDS=$rounds${only:+ ONLY='$only'} bash benches/compare.sh"

# shellcheck source=benches/common.sh
source "$root/benches/common.sh"

# The servers, in the order of a round. Fields, separated by '|':
#   label | kind | apps | command-line options | (kind ours only) [wsgi] lines, ',' between
# kind: ours (isapi-host + isapi_wsgi), rustext (isapi-host + the Rust test extension),
# granian, bjoern, waitress, gunicorn, nginx. The label is what the table shows.
# A threadpool variant needs `queue` >= the 64 connections: beyond threads + queue the
# handler answers 503 at once (by design), and a run with a 503 is refused.
servers=(
  "isapi-host (default: combining handler, 4 host threads)|ours|hello flask||"
  "isapi-host combining, --threads 1|ours|hello flask|--threads 1|"
  "isapi-host simple, 4 host threads|ours|hello flask||handler = simple"
  "isapi-host simple, --threads 1|ours|hello flask|--threads 1|handler = simple"
  "isapi-host simple, --threads 2|ours|hello flask|--threads 2|handler = simple"
  "isapi-host threadpool (its defaults: 8 threads, queue 1000)|ours|hello flask||handler = threadpool"
  "isapi-host threadpool threads=1 queue=64|ours|hello flask||handler = threadpool, threads = 1, queue = 64"
  "isapi-host threadpool threads=1 queue=64, --threads 1|ours|hello flask|--threads 1|handler = threadpool, threads = 1, queue = 64"
  "granian (default: 512 blocking threads)|granian|hello flask|"
  "granian --workers 1 --blocking-threads 1|granian|hello flask|--workers 1 --blocking-threads 1"
  "bjoern (1 process)|bjoern|hello flask|"
  "waitress (default: 4 threads)|waitress|hello flask|"
  "gunicorn 1 sync worker|gunicorn|hello flask|--workers 1 --worker-class sync"
  "gunicorn 1 gthread worker, 4 threads|gunicorn|hello flask|--workers 1 --worker-class gthread --threads 4"
  "nginx, fixed body (ceiling)|nginx|hello|"
  "isapi-host + Rust test extension (ceiling)|rustext|hello|"
  "isapi-host + Rust test extension, --threads 1 (ceiling)|rustext|hello|--threads 1"
)

tmp="$(mktemp -d)"
started=()   # process group ids of the servers running now
ever=()      # and of every server this script started
cleanup() {
  local g
  for g in "${started[@]}"; do kill -TERM -- "-$g" 2>/dev/null || true; done
  sleep 0.2
  for g in "${started[@]}"; do kill -KILL -- "-$g" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "compare: $*" >&2; }

# --- peers: installed once, into their own places ---------------------------------------
apt_need=()
command -v wrk >/dev/null || apt_need+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || apt_need+=(nginx)
command -v curl >/dev/null || apt_need+=(curl)
if [ ${#apt_need[@]} -gt 0 ]; then
  log "apt-get install ${apt_need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${apt_need[@]}" >/dev/null
fi
nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"

# The venv comes from the python3 the library embeds (the one it was built with), so the
# Flask app can run in isapi_wsgi with `[python] venv` pointing at it.
if [ ! -x "$py" ]; then
  log "creating $venv"
  python3 -m venv "$venv"
fi
if ! "$py" -c 'import granian, waitress, gunicorn, flask, matplotlib' 2>/dev/null; then
  log "pip install granian waitress gunicorn flask matplotlib (into $venv)"
  "$venv/bin/pip" install -q --disable-pip-version-check granian waitress gunicorn flask matplotlib
fi
bjoern_how="bjoern-binary wheel from PyPI (bundles libev)"
if ! "$py" -c 'import bjoern' 2>/dev/null; then
  log "pip install bjoern-binary (a wheel with libev inside)"
  if ! "$venv/bin/pip" install -q --disable-pip-version-check --only-binary :all: bjoern-binary; then
    log "no bjoern-binary wheel; building bjoern against Debian's libev-dev"
    dpkg -s libev-dev >/dev/null 2>&1 || {
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq && apt-get install -y -qq --no-install-recommends libev-dev gcc >/dev/null
    }
    "$venv/bin/pip" install -q --disable-pip-version-check bjoern || true
  fi
fi
if "$venv/bin/pip" show -q bjoern-binary >/dev/null 2>&1; then
  bjoern_how="bjoern-binary $("$py" -c 'import importlib.metadata as m; print(m.version("bjoern-binary"))') (PyPI wheel, bundles libev)"
elif "$py" -c 'import bjoern' 2>/dev/null; then
  bjoern_how="bjoern $("$py" -c 'import importlib.metadata as m; print(m.version("bjoern"))') (built by pip against Debian libev-dev)"
else
  bjoern_how="not installed (neither the bjoern-binary wheel nor a bjoern build worked): left out"
  log "$bjoern_how"
fi

log "building (release): the library, isapi-host, the test extension"
cargo build --release --quiet --lib --bin isapi-host --example test_extension
# What was built, said now: the sources may change while the benchmark runs.
built="src at $(git -C "$root" log -1 --format=%h -- src Cargo.toml Cargo.lock build.rs)$(git -C "$root" diff --quiet HEAD -- src Cargo.toml Cargo.lock build.rs || echo ' (with uncommitted changes)')"

# --- one server ----------------------------------------------------------------------------
# app_dir / app_target / app_path APP
app_dir() { case "$1" in hello) echo "$root/examples/hello";; flask) echo "$root/benches/apps";; esac; }
app_target() { case "$1" in hello) echo "hello:application";; flask) echo "flask_json:app";; esac; }
app_path() { case "$1" in hello) echo "hello";; flask) echo "json";; esac; }

# start KIND APP PORT OPTIONS WSGI_LINES LOG: starts the server in a session of its own (so
# that its process group is its whole tree), in the background; sets `pid` (= its pgid).
start() {
  local kind="$1" app="$2" port="$3" opts="$4" wsgi="$5" logf="$6"
  local dir; dir="$(app_dir "$app")"
  local target; target="$(app_target "$app")"
  local -a o=()
  [ -n "$opts" ] && read -r -a o <<< "$opts"
  case "$kind" in
    ours)
      local ini="$tmp/ours-$port.ini"
      {
        echo "[python]"
        echo "path = $dir"
        [ "$app" = flask ] && echo "venv = $venv"
        echo "[wsgi]"
        echo "app = $target"
        [ -n "$wsgi" ] && tr ',' '\n' <<< "$wsgi" | sed 's/^ *//'
      } > "$ini"
      setsid "$host" --listen "127.0.0.1:$port" --access-log off "${o[@]}" --config "$ini" "$library" > "$logf" 2>&1 &
      ;;
    rustext)
      setsid "$host" --listen "127.0.0.1:$port" --access-log off "${o[@]}" "$rust_ext" > "$logf" 2>&1 &
      ;;
    granian)
      PYTHONPATH="$dir" setsid "$venv/bin/granian" --interface wsgi --host 127.0.0.1 --port "$port" \
        "${o[@]}" "$target" > "$logf" 2>&1 &
      ;;
    bjoern)
      PYTHONPATH="$dir" setsid "$py" "$root/benches/apps/bjoern_serve.py" "$target" 127.0.0.1 "$port" > "$logf" 2>&1 &
      ;;
    waitress)
      PYTHONPATH="$dir" setsid "$venv/bin/waitress-serve" --listen="127.0.0.1:$port" "${o[@]}" "$target" > "$logf" 2>&1 &
      ;;
    gunicorn)
      PYTHONPATH="$dir" setsid "$venv/bin/gunicorn" --bind "127.0.0.1:$port" "${o[@]}" "$target" > "$logf" 2>&1 &
      ;;
    nginx)
      local d="$tmp/nginx-$port"
      mkdir -p "$d/logs"
      cat > "$d/nginx.conf" <<CONF
worker_processes auto;
daemon off;
pid $d/nginx.pid;
error_log $d/logs/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $d/body;
  proxy_temp_path $d/proxy;
  fastcgi_temp_path $d/fastcgi;
  uwsgi_temp_path $d/uwsgi;
  scgi_temp_path $d/scgi;
  server {
    listen 127.0.0.1:$port;
    location / { default_type text/plain; return 200 "Hello, World!"; }
  }
}
CONF
      setsid "$nginx_bin" -p "$d" -c "$d/nginx.conf" > "$logf" 2>&1 &
      ;;
    *) log "unknown kind $kind"; exit 1;;
  esac
  pid=$!
  started+=("$pid")
  ever+=("$pid")
}

# up PORT PATH: waits (30 s at most) until the server started last answers; fails if it
# does not, or if it died.
up() {
  for _ in $(seq 1 600); do
    curl -s -o /dev/null "http://127.0.0.1:$1/$2" && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

# stop PGID: SIGTERM to the group, SIGKILL after 10 s; then nothing of that group is left.
stop() {
  local g="$1"
  kill -TERM -- "-$g" 2>/dev/null || true
  ( sleep 10; kill -KILL -- "-$g" 2>/dev/null ) &
  local guard=$!
  wait "$g" 2>/dev/null || true
  # Children that outlive the leader (none expected) are killed with it.
  for _ in $(seq 1 40); do pgrep -g "$g" >/dev/null || break; sleep 0.05; done
  kill -KILL -- "-$g" 2>/dev/null || true
  kill "$guard" 2>/dev/null || true
  wait "$guard" 2>/dev/null || true
  local keep=() s
  for s in "${started[@]}"; do [ "$s" = "$g" ] || keep+=("$s"); done
  started=("${keep[@]+"${keep[@]}"}")
}

# memory PGID: "VmRSS VmHWM processes" in KiB, summed over the group's processes.
memory() {
  local rss=0 hwm=0 n=0 p r h
  for p in $(pgrep -g "$1"); do
    r="$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)"
    h="$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)"
    [ -n "$r" ] || continue
    rss=$((rss + r)); hwm=$((hwm + h)); n=$((n + 1))
  done
  echo "$rss $hwm $n"
}

# check KIND APP PORT: the answer is the app's, before anything is measured.
check() {
  local kind="$1" app="$2" port="$3"
  local url
  url="http://127.0.0.1:$port/$(app_path "$app")"
  curl -s -D "$tmp/check.h" -o "$tmp/check.b" "$url" || { log "$kind: no answer at $url"; return 1; }
  "$py" - "$kind" "$app" "$tmp/check.h" "$tmp/check.b" <<'PY'
import json, sys
kind, app, hfile, bfile = sys.argv[1:]
head = open(hfile, "rb").read().decode("latin-1").split("\r\n")
body = open(bfile, "rb").read()
status = head[0]
fields = {}
for line in head[1:]:
    if ":" in line:
        k, v = line.split(":", 1)
        fields[k.strip().lower()] = v.strip()
problems = []
if " 200" not in status:
    problems.append("status %r" % status)
if fields.get("content-length") != str(len(body)):
    problems.append("Content-Length %r for %d bytes" % (fields.get("content-length"), len(body)))
if app == "hello":
    # The Rust test extension's /hello says "Hello, world!" (13 bytes too).
    ok = body == b"Hello, World!" or (kind == "rustext" and body == b"Hello, world!")
    if not ok:
        problems.append("body %r" % body[:200])
else:
    try:
        ok = json.loads(body) == {"message": "Hello, World!"}
    except ValueError:
        ok = False
    if not ok:
        problems.append("body %r" % body[:200])
    if not fields.get("content-type", "").startswith("application/json"):
        problems.append("Content-Type %r" % fields.get("content-type"))
if problems:
    sys.exit("%s/%s: %s" % (kind, app, "; ".join(problems)))
PY
}

# lat_us FILE PCT: wrk's --latency percentile PCT (50, 99) in microseconds.
lat_us() {
  awk -v p="$2%" '$1 == p {
    v = $2; u = v; sub(/^[0-9.]+/, "", u); sub(/[a-z]+$/, "", v)
    f = (u == "us") ? 1 : (u == "ms") ? 1000 : (u == "s") ? 1000000 : (u == "m") ? 60000000 : 0
    printf "%.1f\n", v * f }' "$1"
}

# cpu_sample: "busy idle" jiffies of all cores so far; busy_since SAMPLE: % of all cores busy
# since that sample.
cpu_sample() { awk '/^cpu / { t = 0; for (i = 2; i <= 9; i++) t += $i; print t, $5 + $6 }' /proc/stat; }
busy_since() {
  local t0 i0 t1 i1
  read -r t0 i0 <<< "$1"
  read -r t1 i1 <<< "$(cpu_sample)"
  awk -v dt=$((t1 - t0)) -v di=$((i1 - i0)) 'BEGIN { printf "%.0f\n", (dt > 0) ? 100 * (dt - di) / dt : 0 }'
}

# --- the rounds ------------------------------------------------------------------------------
# The raw figures and the report's other inputs stay in target/bench-compare after the run
# (re-render with: target/bench-venv/bin/python benches/compare_report.py and the files there,
# as the last lines of this script do).
data="$root/target/bench-compare"
rm -rf "$data"; mkdir -p "$data"
raw="$data/raw.tsv"
printf 'round\tapp\tlabel\tkind\trps64\tp50_64\tp99_64\trps1\tp50_1\tp99_1\trss\thwm\tprocs\tother_cpu\tnote\n' > "$raw"
notes="$data/notes.txt"; : > "$notes"
host_msgs="$data/host-messages.tsv"; : > "$host_msgs"
# The lines our host and extension print on every clean start and stop.
# The library's lines start with the process id in brackets.
host_routine='^(\[[0-9]+\] )?isapi_wsgi: (configuration |serving |handler = (threadpool: [0-9]+ worker|combining: queue of )|unloading$|stopping the threadpool: 0 request\(s\) running, 0 queued|no \[python\] home or library: |Python.s logging: the application set up no handler)'
host_routine+='|^isapi-host: stopping: 0 request\(s\) cut off: 0 still in the extension when the wait ended, 0 still writing their response, 0 still arriving'
host_routine+='|^isapi-host: (serving |stopping: no new connections|TerminateExtension\(HSE_TERM_MUST_UNLOAD\) returned TRUE|stopped; 0 contract violation\(s\)$)'
host_routine+='|^test extension: TerminateExtension'

selected=()
for s in "${servers[@]}"; do
  IFS='|' read -r label kind _ _ _ <<< "$s"
  [ -n "$only" ] && ! grep -Eq -- "$only" <<< "$label" && continue
  [ "$kind" = bjoern ] && ! "$py" -c 'import bjoern' 2>/dev/null && continue
  selected+=("$s")
done
n=${#selected[@]}
[ "$n" -gt 0 ] || { log "no server matches ONLY='$only'"; exit 1; }
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
started_at="$(date -u '+%Y-%m-%d %H:%M UTC')"
# Two signs of other work: the load average (on this VM it also counts tasks of other
# sessions that use no CPU) and how busy the cores are over 1 s.
c0="$(cpu_sample)"; sleep 1; busy_before="$(busy_since "$c0")"
if awk '$1 >= 1.0 { exit 1 }' /proc/loadavg && [ "$busy_before" -lt 25 ]; then :; else
  log "warning: the machine is not quiet (load average $load_before, cores $busy_before% busy): expect noisy figures"
fi
log "$n servers x up to 2 apps x $rounds rounds, $duration s per wrk run (load average now: $load_before)"

for round in $(seq 1 "$rounds"); do
  for app in hello flask; do
    for k in $(seq 0 $((n - 1))); do
      s="${selected[$(( (k + round - 1) % n ))]}"
      IFS='|' read -r label kind apps opts wsgi <<< "$s"
      [[ " $apps " == *" $app "* ]] || continue
      port="$(free_port)"
      logf="$tmp/server-$round-$app-$port.log"
      start "$kind" "$app" "$port" "$opts" "$wsgi" "$logf"
      if ! up "$port" "$(app_path "$app")" || ! check "$kind" "$app" "$port"; then
        log "$label ($app) answered wrongly; its log:"; cat "$logf" >&2
        exit 1
      fi
      url="http://127.0.0.1:$port/$(app_path "$app")"
      # A pause after each run: when wrk stops, it closes its connections with requests in
      # flight, which the server still works off (a threadpool queue still holds them).
      # The pauses also tell how busy the machine is with other work (nothing of ours runs).
      wrk -t2 -c64 -d1s "$url" > /dev/null 2>&1 || true
      c0="$(cpu_sample)"; sleep 0.5; other1="$(busy_since "$c0")"
      wrk -t2 -c64 -d"${duration}s" --latency "$url" > "$tmp/w64.txt" 2>&1 || true
      c0="$(cpu_sample)"; sleep 0.5; other2="$(busy_since "$c0")"
      wrk -t1 -c1 -d"${duration}s" --latency "$url" > "$tmp/w1.txt" 2>&1 || true
      other=$(( (other1 + other2) / 2 ))
      read -r rss hwm procs <<< "$(memory "$pid")"
      note=""
      if rps64="$(rps < "$tmp/w64.txt" 2>"$tmp/refused.txt")"; then
        p50_64="$(lat_us "$tmp/w64.txt" 50)"; p99_64="$(lat_us "$tmp/w64.txt" 99)"
      else
        rps64=""; p50_64=""; p99_64=""
        note="64 connections refused: $(grep -E 'Non-2xx|Socket errors' "$tmp/w64.txt" | tr -s ' ' | tr '\n' ' ')"
        { echo "round $round, $app, $label: wrk at 64 connections refused:"; cat "$tmp/w64.txt"; echo; } >> "$notes"
      fi
      if rps1="$(rps < "$tmp/w1.txt" 2>/dev/null)"; then
        p50_1="$(lat_us "$tmp/w1.txt" 50)"; p99_1="$(lat_us "$tmp/w1.txt" 99)"
      else
        rps1=""; p50_1=""; p99_1=""
        note="$note 1 connection refused: $(grep -E 'Non-2xx|Socket errors' "$tmp/w1.txt" | tr -s ' ' | tr '\n' ' ')"
        { echo "round $round, $app, $label: wrk at 1 connection refused:"; cat "$tmp/w1.txt"; echo; } >> "$notes"
      fi
      stop "$pid"
      # What our host and extension printed beyond their start-up and shutdown lines, one
      # line per message with the timestamp cut off (the report counts them).
      if [[ "$kind" == ours || "$kind" == rustext ]]; then
        sed -E 's/^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]+Z //' "$logf" | grep -Ev "$host_routine" |
          awk -v a="$app" -v l="$label" '{ print a "\t" l "\t" $0 }' >> "$host_msgs" || true
      fi
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$app" "$label" "$kind" \
        "$rps64" "$p50_64" "$p99_64" "$rps1" "$p50_1" "$p99_1" "$rss" "$hwm" "$procs" "$other" "$note" >> "$raw"
      log "round $round/$rounds $app: $label: ${rps64:-refused} req/s (64), ${rps1:-refused} req/s (1), RSS $((rss / 1024)) MiB; other work: $other% CPU"
    done
  done
done
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

# Every server was stopped with its process group; make sure.
for s in "${started[@]}"; do stop "$s"; done
left="$(ps -eo pgid=,pid=,args= | awk -v gs=" ${ever[*]} " 'index(gs, " " $1 " ")')"
[ -z "$left" ] || { log "processes left behind: $left"; exit 1; }

# --- the report ---------------------------------------------------------------------------
ver() { "$py" -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$1" 2>/dev/null || echo "not installed"; }
{
  echo "isapi-wsgi	$built ($(grep -m1 '^version' Cargo.toml | cut -d'"' -f2)), $(rustc -V)"
  echo "Python	$("$py" -c 'import sys, platform; print(platform.python_implementation(), sys.version.split()[0])')"
  echo "granian	$(ver granian)"
  echo "bjoern	$bjoern_how"
  echo "waitress	$(ver waitress)"
  echo "gunicorn	$(ver gunicorn)"
  echo "Flask	$(ver flask) (Werkzeug $(ver werkzeug))"
  echo "nginx	$("$nginx_bin" -v 2>&1 | sed 's/^nginx version: //') (Debian)"
  echo "wrk	$(wrk -v 2>&1 | head -1 | sed 's/ Copyright.*//')"
  echo "matplotlib	$(ver matplotlib)"
} > "$data/versions.tsv"
{
  echo "date	$started_at"
  echo "cpu	$(nproc) x $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
  echo "memory	$(awk '/^MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)"
  echo "os	$(. /etc/os-release && echo "$PRETTY_NAME"), Linux $(uname -r)"
  echo "load	$load_before before, $load_after after"
  echo "command	$command_line"
  echo "duration	$duration"
  echo "rounds	$rounds"
} > "$data/machine.tsv"
mkdir -p "$out"
MPLBACKEND=Agg "$py" "$root/benches/compare_report.py" "$raw" "$data/versions.tsv" "$data/machine.tsv" "$notes" "$host_msgs" "$out/RESULTS.md" "$out/results.png"
log "wrote $out/RESULTS.md and $out/results.png"
