# Shared by the bench scripts (sourced, not run): find a free loopback port, wait for a
# server to answer on it, read wrk's requests/second.

# Prints a free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_port PORT [PATH] [SECONDS]: polls http://127.0.0.1:PORT/PATH every 0.05 s until
# something answers (any status), for at most SECONDS (default 10); exits 1 if nothing does.
wait_port() {
  local port="$1" path="${2:-}" seconds="${3:-10}"
  for _ in $(seq 1 $((seconds * 20))); do
    if curl -s -o /dev/null "http://127.0.0.1:$port/$path"; then return 0; fi
    sleep 0.05
  done
  echo "nothing listens on port $port" >&2; exit 1
}

# Reads wrk's report on stdin, prints its requests/second. A run with any non-2xx/3xx
# response or socket error is not a throughput figure (a 503 is answered fast): it prints
# wrk's report on stderr and fails.
rps() {
  awk '
    { report = report $0 "\n" }
    /Requests\/sec/ { rate = $2 }
    /Non-2xx or 3xx responses|Socket errors/ { bad = 1 }
    END {
      if (bad || rate == "") { printf "wrk saw errors; not a throughput figure:\n%s", report > "/dev/stderr"; exit 1 }
      print rate
    }'
}
