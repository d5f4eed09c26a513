"""The identity test's application (Windows, under wine): what the bridge put in the environ
from the request's token, beside what ctypes reads from this process's own token.

`isapi-host --impersonation-token self` hands the extension a duplicate of the host's own
token, so the two must agree: the user's SID (TokenUser) and the names of the groups that
count for access (TokenGroups: enabled, not deny-only, not the logon SID; named with
LookupAccountSidW, or the SID string). /kept calls the `isapi.groups` of an earlier request,
which must raise now that its request is over.
"""
import ctypes
import json
from ctypes import wintypes as w

KEPT = []

advapi = ctypes.WinDLL("advapi32", use_last_error=True)
kernel = ctypes.WinDLL("kernel32", use_last_error=True)
kernel.GetCurrentProcess.restype = w.HANDLE
kernel.LocalFree.argtypes = [ctypes.c_void_p]
advapi.OpenProcessToken.argtypes = [w.HANDLE, w.DWORD, ctypes.POINTER(w.HANDLE)]
advapi.GetTokenInformation.argtypes = [w.HANDLE, ctypes.c_int, ctypes.c_void_p, w.DWORD,
                                       ctypes.POINTER(w.DWORD)]
advapi.ConvertSidToStringSidW.argtypes = [ctypes.c_void_p, ctypes.POINTER(w.LPWSTR)]
advapi.LookupAccountSidW.argtypes = [w.LPCWSTR, ctypes.c_void_p, w.LPWSTR, ctypes.POINTER(w.DWORD),
                                     w.LPWSTR, ctypes.POINTER(w.DWORD), ctypes.POINTER(w.DWORD)]


class SidAndAttributes(ctypes.Structure):
    _fields_ = [("sid", ctypes.c_void_p), ("attributes", w.DWORD)]


def process_token():
    token = w.HANDLE()
    if not advapi.OpenProcessToken(kernel.GetCurrentProcess(), 8, ctypes.byref(token)):  # TOKEN_QUERY
        raise ctypes.WinError(ctypes.get_last_error())
    return token


def information(token, kind):
    needed = w.DWORD()
    advapi.GetTokenInformation(token, kind, None, 0, ctypes.byref(needed))
    buffer = ctypes.create_string_buffer(needed.value)
    if not advapi.GetTokenInformation(token, kind, buffer, needed, ctypes.byref(needed)):
        raise ctypes.WinError(ctypes.get_last_error())
    return buffer


def sid_text(sid):
    text = w.LPWSTR()
    if not advapi.ConvertSidToStringSidW(sid, ctypes.byref(text)):
        raise ctypes.WinError(ctypes.get_last_error())
    value = text.value
    kernel.LocalFree(ctypes.cast(text, ctypes.c_void_p))
    return value


def account(sid):
    name, domain = ctypes.create_unicode_buffer(512), ctypes.create_unicode_buffer(512)
    name_length, domain_length, use = w.DWORD(512), w.DWORD(512), w.DWORD()
    if not advapi.LookupAccountSidW(None, sid, name, ctypes.byref(name_length), domain,
                                    ctypes.byref(domain_length), ctypes.byref(use)):
        return sid_text(sid)
    return domain.value + "\\" + name.value if domain.value else name.value


def own_identity():
    token = process_token()
    try:
        user = SidAndAttributes.from_buffer(information(token, 1))  # TokenUser
        groups_buffer = information(token, 2)  # TokenGroups
        count = ctypes.c_uint32.from_buffer(groups_buffer).value
        groups = (SidAndAttributes * count).from_buffer(groups_buffer, ctypes.sizeof(ctypes.c_void_p))
        names = [account(g.sid) for g in groups
                 if g.attributes & 0x4 and not g.attributes & 0x10
                 and g.attributes & 0xC0000000 != 0xC0000000]
        return sid_text(user.sid), names
    finally:
        kernel.CloseHandle(token)


def application(environ, start_response):
    if environ["PATH_INFO"] == "/kept":
        try:
            KEPT[-1]()
            seen = {"kept": "no error"}
        except Exception as error:
            seen = {"kept": type(error).__name__}
    else:
        groups = environ.get("isapi.groups")
        KEPT.append(groups)
        sid, names = own_identity()
        seen = {
            "user_sid": environ.get("isapi.user_sid"),
            "groups": groups() if groups else None,
            "own_sid": sid,
            "own_groups": names,
        }
    body = json.dumps(seen).encode("utf-8")
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
