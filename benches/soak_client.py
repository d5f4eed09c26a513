"""The soak's client (benches/soak.sh runs it): drives REQUESTS requests at a host serving
tests/apps/testapp.py over raw sockets from PROCS processes, in a fixed mix of scenarios,
and prints one JSON object with what it saw.

Scenarios (weights in MIX): keep-alive GETs, pipelined GETs, POSTed bodies echoed back,
clients that disconnect mid-body and mid-response, and requests whose app raises (before
the response: a 500; after its first piece: the body ends early and the connection
closes). Every answer is checked: an unexpected status or body, or a socket error where
none was provoked, is an error.

    python3 benches/soak_client.py HOST PORT REQUESTS PROCS
"""
import json
import multiprocessing
import random
import socket
import sys

HELLO = b"GET /hello HTTP/1.1\r\nHost: soak\r\n\r\n"
MIX = [
    ("keepalive", 40),
    ("pipeline", 30),
    ("body", 14),
    ("cut_body", 4),
    ("cut_response", 4),
    ("exception", 8),
]


class Conn:
    """A connection with a receive buffer and a minimal HTTP/1.1 response reader."""

    def __init__(self, address):
        self.s = socket.create_connection(address, timeout=60)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def _more(self):
        chunk = self.s.recv(262144)
        if not chunk:
            raise EOFError("closed by the host")
        self.buf += chunk

    def response(self):
        """(status, headers dict, body); the body read by Content-Length, else (chunked, or
        unframed) to the close: the app's own chunks stay undecoded."""
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            n = int(headers["content-length"])
            while len(self.buf) < n:
                self._more()
            body, self.buf = self.buf[:n], self.buf[n:]
        else:
            try:
                while True:
                    self._more()
            except EOFError:
                pass
            body, self.buf = self.buf, b""
        return status, headers, body

    def close(self):
        self.s.close()


class Tally:
    def __init__(self):
        self.requests = 0
        self.errors = 0
        self.first_errors = []
        self.by_scenario = {name: 0 for name, _ in MIX}

    def error(self, what):
        self.errors += 1
        if len(self.first_errors) < 5:
            self.first_errors.append(what)


def keepalive(address, t, rng):
    c = Conn(address)
    for _ in range(rng.randint(1, 20)):
        c.send(HELLO)
        status, _, body = c.response()
        t.requests += 1
        if status != 200 or body != b"Hello, World!":
            t.error(f"keepalive: {status} {body[:60]!r}")
    c.close()
    return True


def pipeline(address, t, rng):
    c = Conn(address)
    n = rng.randint(2, 16)
    c.send(HELLO * n)
    for _ in range(n):
        status, _, body = c.response()
        t.requests += 1
        if status != 200 or body != b"Hello, World!":
            t.error(f"pipeline: {status} {body[:60]!r}")
    c.close()
    return True


def body(address, t, rng):
    c = Conn(address)
    for _ in range(rng.randint(1, 5)):
        data = rng.randbytes(rng.choice([1, 100, 4096, 60000, 200000]))
        c.send(b"POST /echo HTTP/1.1\r\nHost: soak\r\nContent-Length: %d\r\n\r\n" % len(data) + data)
        status, _, echoed = c.response()
        t.requests += 1
        if status != 200 or echoed != data:
            t.error(f"body: {status}, {len(echoed)} of {len(data)} bytes")
    c.close()
    return True


def cut_body(address, t, rng):
    c = Conn(address)
    total = rng.choice([10000, 100000, 1000000])
    c.send(b"POST /echo HTTP/1.1\r\nHost: soak\r\nContent-Length: %d\r\n\r\n" % total)
    c.send(b"x" * rng.randint(0, min(total - 1, 70000)))
    c.close()  # mid-body: the host must end the request and carry on
    t.requests += 1
    return True


def cut_response(address, t, rng):
    c = Conn(address)
    c.send(b"GET /big HTTP/1.1\r\nHost: soak\r\n\r\n")
    want = rng.randint(1, 500000)
    while len(c.buf) < want:
        c._more()
    c.close()  # mid-response
    t.requests += 1
    return True


def exception(address, t, rng):
    c = Conn(address)
    if rng.random() < 0.5:
        c.send(b"GET /error HTTP/1.1\r\nHost: soak\r\n\r\n")
        status, _, _ = c.response()
        t.requests += 1
        if status != 500:
            t.error(f"exception before the response: {status}")
    else:
        c.send(b"GET /error-after HTTP/1.1\r\nHost: soak\r\n\r\n")
        status, _, body = c.response()  # no Content-Length: read to the close
        t.requests += 1
        if status != 200 or b"first" not in body:
            t.error(f"exception mid-body: {status} {body[:60]!r}")
    c.close()
    return True


SCENARIOS = {f.__name__: f for f in (keepalive, pipeline, body, cut_body, cut_response, exception)}


def drive(args):
    host, port, share, seed = args
    rng = random.Random(seed)
    names = [name for name, _ in MIX]
    weights = [w for _, w in MIX]
    t = Tally()
    address = (host, port)
    while t.requests < share:
        name = rng.choices(names, weights)[0]
        before = t.requests
        try:
            SCENARIOS[name](address, t, rng)
        except (OSError, EOFError, ValueError, IndexError) as e:
            t.requests += 1
            t.error(f"{name}: {type(e).__name__}: {e}")
        t.by_scenario[name] += t.requests - before
    return t.__dict__


def main():
    host, port, total, procs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    share = (total + procs - 1) // procs
    with multiprocessing.Pool(procs) as pool:
        results = pool.map(drive, [(host, port, share, seed) for seed in range(procs)])
    out = {"requests": 0, "errors": 0, "first_errors": [], "by_scenario": {}}
    for r in results:
        out["requests"] += r["requests"]
        out["errors"] += r["errors"]
        out["first_errors"] += r["first_errors"]
        for name, n in r["by_scenario"].items():
            out["by_scenario"][name] = out["by_scenario"].get(name, 0) + n
    print(json.dumps(out))


if __name__ == "__main__":
    main()
