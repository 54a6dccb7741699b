# Copyright: (c) 2026, dataplatform.dask contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The acceptor side of SPNEGO (RFC 4559) on the system's MIT GSSAPI library, through ctypes.

No Python GSSAPI binding ships as a manylinux wheel (python-gssapi and pykerberos compile
against libkrb5), so the gateway calls libgssapi_krb5.so.2 itself: one
gss_accept_sec_context per request, with the keytab named by KRB5_KTNAME.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

OM_uint32 = ctypes.c_uint32
GSS_S_COMPLETE = 0
GSS_S_CONTINUE_NEEDED = 1
GSS_C_GSS_CODE = 1
GSS_C_MECH_CODE = 2


class GSSError(Exception):
    """A token the acceptor refused (or no usable keytab)."""


class _Buffer(ctypes.Structure):
    _fields_ = [("length", ctypes.c_size_t), ("value", ctypes.c_void_p)]


@functools.cache
def _gss():
    name = ctypes.util.find_library("gssapi_krb5") or "libgssapi_krb5.so.2"
    lib = ctypes.CDLL(name)
    vp = ctypes.c_void_p
    pu = ctypes.POINTER(OM_uint32)
    pb = ctypes.POINTER(_Buffer)
    lib.gss_accept_sec_context.argtypes = [
        pu,
        ctypes.POINTER(vp),
        vp,
        pb,
        vp,
        ctypes.POINTER(vp),
        ctypes.POINTER(vp),
        pb,
        pu,
        pu,
        ctypes.POINTER(vp),
    ]
    lib.gss_display_name.argtypes = [pu, vp, pb, ctypes.POINTER(vp)]
    lib.gss_display_status.argtypes = [pu, OM_uint32, ctypes.c_int, vp, pu, pb]
    lib.gss_release_buffer.argtypes = [pu, pb]
    lib.gss_release_name.argtypes = [pu, ctypes.POINTER(vp)]
    lib.gss_release_cred.argtypes = [pu, ctypes.POINTER(vp)]
    lib.gss_delete_sec_context.argtypes = [pu, ctypes.POINTER(vp), pb]
    for f in (
        "gss_accept_sec_context",
        "gss_display_name",
        "gss_display_status",
        "gss_release_buffer",
        "gss_release_name",
        "gss_release_cred",
        "gss_delete_sec_context",
    ):
        getattr(lib, f).restype = OM_uint32
    return lib


def _status_text(lib, code, kind):
    minor = OM_uint32(0)
    ctx = OM_uint32(0)
    out = []
    while True:
        buf = _Buffer()
        lib.gss_display_status(ctypes.byref(minor), code, kind, None, ctypes.byref(ctx), ctypes.byref(buf))
        if buf.length:
            out.append(ctypes.string_at(buf.value, buf.length).decode("utf-8", "replace"))
        lib.gss_release_buffer(ctypes.byref(minor), ctypes.byref(buf))
        if not ctx.value:
            break
    return "; ".join(out)


def accept(token: bytes) -> tuple[str, bytes]:
    """Accept one SPNEGO/Kerberos token: (client principal, output token for the response)."""
    if not token:
        raise GSSError("empty token")
    lib = _gss()
    minor = OM_uint32(0)
    ctx = ctypes.c_void_p(None)
    src = ctypes.c_void_p(None)
    mech = ctypes.c_void_p(None)
    deleg = ctypes.c_void_p(None)
    flags = OM_uint32(0)
    trec = OM_uint32(0)
    raw = ctypes.create_string_buffer(token, len(token))
    inbuf = _Buffer(len(token), ctypes.cast(raw, ctypes.c_void_p))
    outbuf = _Buffer()
    major = lib.gss_accept_sec_context(
        ctypes.byref(minor),
        ctypes.byref(ctx),
        None,
        ctypes.byref(inbuf),
        None,
        ctypes.byref(src),
        ctypes.byref(mech),
        ctypes.byref(outbuf),
        ctypes.byref(flags),
        ctypes.byref(trec),
        ctypes.byref(deleg),
    )
    try:
        if major != GSS_S_COMPLETE:
            if major == GSS_S_CONTINUE_NEEDED:
                raise GSSError("multi-round SPNEGO is not supported")
            raise GSSError(
                f"{_status_text(lib, major, GSS_C_GSS_CODE)} ({_status_text(lib, minor.value, GSS_C_MECH_CODE)})"
            )
        out = ctypes.string_at(outbuf.value, outbuf.length) if outbuf.length else b""
        name = _Buffer()
        lib.gss_display_name(ctypes.byref(minor), src, ctypes.byref(name), None)
        principal = ctypes.string_at(name.value, name.length).decode("utf-8")
        lib.gss_release_buffer(ctypes.byref(minor), ctypes.byref(name))
        return principal, out
    finally:
        lib.gss_release_buffer(ctypes.byref(minor), ctypes.byref(outbuf))
        if src.value is not None:
            lib.gss_release_name(ctypes.byref(minor), ctypes.byref(src))
        if deleg.value is not None:
            lib.gss_release_cred(ctypes.byref(minor), ctypes.byref(deleg))
        if ctx.value is not None:
            lib.gss_delete_sec_context(ctypes.byref(minor), ctypes.byref(ctx), None)


class _OID(ctypes.Structure):
    _fields_ = [("length", OM_uint32), ("elements", ctypes.c_void_p)]


_SPNEGO_OID_BYTES = ctypes.create_string_buffer(b"\x2b\x06\x01\x05\x05\x02", 6)


def initiate(host: str) -> bytes:
    """The initiator's first SPNEGO token for ``HTTP@<host>`` from the caller's credential cache."""
    lib = _gss()
    vp = ctypes.c_void_p
    pu = ctypes.POINTER(OM_uint32)
    pb = ctypes.POINTER(_Buffer)
    lib.gss_import_name.argtypes = [pu, pb, vp, ctypes.POINTER(vp)]
    lib.gss_import_name.restype = OM_uint32
    lib.gss_init_sec_context.argtypes = [
        pu,
        vp,
        ctypes.POINTER(vp),
        vp,
        vp,
        OM_uint32,
        OM_uint32,
        vp,
        pb,
        ctypes.POINTER(vp),
        pb,
        pu,
        pu,
    ]
    lib.gss_init_sec_context.restype = OM_uint32
    minor = OM_uint32(0)
    service = f"HTTP@{host}".encode()
    raw = ctypes.create_string_buffer(service, len(service))
    namebuf = _Buffer(len(service), ctypes.cast(raw, ctypes.c_void_p))
    nt_hostbased = ctypes.c_void_p.in_dll(lib, "GSS_C_NT_HOSTBASED_SERVICE")
    target = ctypes.c_void_p(None)
    major = lib.gss_import_name(ctypes.byref(minor), ctypes.byref(namebuf), nt_hostbased, ctypes.byref(target))
    if major != GSS_S_COMPLETE:
        raise GSSError(f"import name {service.decode()}: {_status_text(lib, major, GSS_C_GSS_CODE)}")
    spnego = _OID(6, ctypes.cast(_SPNEGO_OID_BYTES, ctypes.c_void_p))
    ctx = ctypes.c_void_p(None)
    out = _Buffer()
    flags = OM_uint32(0)
    trec = OM_uint32(0)
    try:
        major = lib.gss_init_sec_context(
            ctypes.byref(minor),
            None,
            ctypes.byref(ctx),
            target,
            ctypes.byref(spnego),
            0,
            0,
            None,
            None,
            None,
            ctypes.byref(out),
            ctypes.byref(flags),
            ctypes.byref(trec),
        )
        if major not in (GSS_S_COMPLETE, GSS_S_CONTINUE_NEEDED):
            raise GSSError(
                f"{_status_text(lib, major, GSS_C_GSS_CODE)} ({_status_text(lib, minor.value, GSS_C_MECH_CODE)})"
            )
        return ctypes.string_at(out.value, out.length)
    finally:
        lib.gss_release_buffer(ctypes.byref(minor), ctypes.byref(out))
        if ctx.value is not None:
            lib.gss_delete_sec_context(ctypes.byref(minor), ctypes.byref(ctx), None)
        lib.gss_release_name(ctypes.byref(minor), ctypes.byref(target))
