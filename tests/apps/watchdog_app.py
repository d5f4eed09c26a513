"""The app for tests/watchdog_host.rs: slow requests, a busy one, and one that holds the GIL."""
import ctypes
import sys
import time


def snooze(seconds):
    time.sleep(seconds)  # the line the slow-request log must show


def spin(seconds):
    """Busy in Python bytecode: the interpreter hands the GIL over every switch interval."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def hold_gil(seconds):
    """Blocks in C *with the GIL held*, as a C extension that forgets to release it does:
    ctypes.PyDLL calls foreign functions without releasing the GIL (ctypes.CDLL releases it).
    Unlike a long regex or a big-integer computation, this holds it for a known time on
    any machine, loaded or not."""
    if sys.platform == "win32":
        ctypes.PyDLL("kernel32").Sleep(int(seconds * 1000))
    else:
        ctypes.PyDLL(None).sleep(int(seconds))  # libc's sleep(3)


ACTIONS = {"sleep": snooze, "spin": spin, "hold-gil": hold_gil}


def app(environ, start_response):
    parts = environ["PATH_INFO"].strip("/").split("/")
    if len(parts) == 2 and parts[0] in ACTIONS:
        ACTIONS[parts[0]](float(parts[1]))
    body = ("done: %s" % environ["PATH_INFO"]).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
