"""The one ``tls:`` block of every kind that speaks TLS (tcp, http, json, sip).

``TlsOptions`` is the block (ca_file, cert_file, key_file, server_name,
insecure_skip_verify, min_version), checked the same way for each kind;
``ssl_context(opts)`` returns the ``ssl.SSLContext`` tcp, http and json use.  sip's
TLS runs inside pjsip, which takes the same block's files and settings (see
probes/sip_accounts.py) instead of a Python context.  Contexts are shared between probes with
the same options (loading a CA store costs milliseconds and hundreds of
kilobytes, too much to repeat for each of a thousand probes) and rebuilt when a
certificate, key or CA file changes on disk, so renewed files are used without
a reload.
"""

from __future__ import annotations

import os
import ssl
import threading
from collections import OrderedDict
from dataclasses import dataclass

from .secret_files import regular_file_problem


@dataclass
class TlsOptions:
    """``tls:`` block: how the client verifies the server and proves itself.

    Options:
        ca_file: PEM bundle of CAs trusted instead of the system store.
        server_name (default the target's host): the name sent in SNI and checked in the certificate.
        insecure_skip_verify: accept any certificate (the expiry is still exported).
        cert_file: client certificate (PEM), for servers that ask for one; may hold the key too.
        key_file: the client certificate's key (PEM, unencrypted), when not in cert_file.
        min_version (default the system's, TLS 1.2 on current systems): the lowest TLS
            version accepted, "1.2" or "1.3".
    """

    ca_file: str = ""  # PEM bundle trusted instead of the system store
    server_name: str = ""  # name sent in SNI and checked in the certificate
    insecure_skip_verify: bool = False
    cert_file: str = ""  # client certificate (PEM); may hold the key too
    key_file: str = ""
    min_version: str = ""  # "1.2" or "1.3" (YAML may give the number 1.2: read as text)

    def check(self) -> list[tuple[str, str]]:
        if self.min_version and self.min_version not in MIN_VERSIONS:
            return [("min_version", f"must be \"1.2\" or \"1.3\", not {self.min_version!r}")]
        problems = [
            (key, message)
            for key in ("ca_file", "cert_file", "key_file")
            if (message := unreadable(getattr(self, key)))
        ]
        if self.key_file and not self.cert_file:
            problems.append(("key_file", "needs cert_file (the client certificate) as well"))
        if problems:
            return problems
        # Load each file on its own so a bad one is named, not just "TLS failed".
        try:
            ctx = ssl.create_default_context(cafile=self.ca_file or None)
        except (ssl.SSLError, OSError, ValueError) as exc:
            return [("ca_file", f"holds no usable CA certificate: {ssl_reason(exc)}")]
        if self.cert_file:
            try:
                ctx.load_cert_chain(self.cert_file, self.key_file or None)
            except (ssl.SSLError, OSError, ValueError) as exc:
                key = "key_file" if self.key_file else "cert_file"
                return [(key, f"cannot load the client certificate and key: {ssl_reason(exc)}")]
        return []


MIN_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def unreadable(path: str) -> str:
    """Why ``path`` cannot be read (empty when it can, or when no path is set)."""
    if not path:
        return ""
    return regular_file_problem(path, 16 << 20)  # a CA bundle may be large, never a FIFO


def build_ssl_context(opts: TlsOptions) -> ssl.SSLContext:
    """A fresh client context for ``opts`` (raises ssl.SSLError or OSError on bad files)."""
    ctx = ssl.create_default_context(cafile=opts.ca_file or None)
    if not opts.ca_file and not ctx.cert_store_stats()["x509_ca"]:
        _load_certifi(ctx)
    if opts.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if opts.cert_file:
        ctx.load_cert_chain(opts.cert_file, opts.key_file or None)
    if opts.min_version:
        ctx.minimum_version = MIN_VERSIONS[opts.min_version]
    return ctx


def _load_certifi(ctx: ssl.SSLContext) -> None:
    """A system without a CA store (a bare container) trusts requests' bundle instead."""
    try:
        import certifi
    except ImportError:
        return
    ctx.load_verify_locations(certifi.where())


_CACHE_SIZE = 128
_cache: OrderedDict[tuple[object, ...], tuple[tuple[float, ...], ssl.SSLContext]] = OrderedDict()
_cache_lock = threading.Lock()
# Contexts of blocks that name no file, by the block's values: nothing on disk can change under them.
_plain: dict[tuple[object, ...], ssl.SSLContext] = {}


def _stamp(opts: TlsOptions) -> tuple[float, ...]:
    out = []
    for path in (opts.ca_file, opts.cert_file, opts.key_file):
        try:
            out.append(os.stat(path).st_mtime if path else 0.0)
        except OSError:
            out.append(-1.0)
    return tuple(out)


def ssl_context(opts: TlsOptions) -> ssl.SSLContext:
    """The shared context for ``opts``, rebuilt when one of its files changed.

    Callers must not change the returned context; it serves every probe with
    the same options.  A block that names no file costs no stat per call.
    """
    key = (opts.ca_file, opts.cert_file, opts.key_file, opts.insecure_skip_verify, opts.min_version)
    if not (opts.ca_file or opts.cert_file or opts.key_file):
        plain = _plain.get(key)
        if plain is None:
            plain = _plain[key] = build_ssl_context(opts)
        return plain
    stamp = _stamp(opts)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None and hit[0] == stamp:
            _cache.move_to_end(key)
            return hit[1]
    ctx = build_ssl_context(opts)
    with _cache_lock:
        _cache[key] = (stamp, ctx)
        _cache.move_to_end(key)
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return ctx


def ssl_reason(exc: BaseException) -> str:
    """A short human reason for an ssl error (no OpenSSL source positions)."""
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        if exc.reason == "PEM_LIB" or "PEM lib" in str(exc):
            return "not PEM data"
        if exc.reason:
            return str(exc.reason).lower().replace("_", " ")
    return getattr(exc, "strerror", None) or str(exc)
