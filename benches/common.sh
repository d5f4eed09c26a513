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

# Reads wrk's report on stdin, prints its requests/second.
rps() { awk '/Requests\/sec/ {print $2}'; }
