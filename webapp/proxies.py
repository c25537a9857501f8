"""Forwarded headers, trusted only from the reverse proxy that sets them.

Werkzeug's ProxyFix believes X-Forwarded-* from whoever connects, so anyone who reaches gunicorn
directly could choose their address (and so dodge the per-address limits) or their host. Here
the connection must come from one of TRUSTED_PROXIES, and only the two headers the documented
nginx sets are read: X-Forwarded-For and X-Forwarded-Proto. From any other peer all forwarded
headers are dropped before the app sees them.
"""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_address

from werkzeug.middleware.proxy_fix import ProxyFix

_FORWARDED = (
    "HTTP_FORWARDED",
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_PROTO",
    "HTTP_X_FORWARDED_HOST",
    "HTTP_X_FORWARDED_PORT",
    "HTTP_X_FORWARDED_PREFIX",
)


class TrustedProxyFix:
    """WSGI middleware: ProxyFix(x_for, x_proto) for requests from a trusted proxy, else none."""

    def __init__(self, app, hops: int, proxies: tuple[IPv4Network | IPv6Network, ...]):
        self.app = app
        self.fixed = ProxyFix(app, x_for=hops, x_proto=hops, x_host=0, x_port=0, x_prefix=0)
        self.proxies = proxies

    def _from_proxy(self, peer: str) -> bool:
        try:
            address = ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self.proxies)

    def __call__(self, environ, start_response):
        if self._from_proxy(environ.get("REMOTE_ADDR", "")):
            for name in ("HTTP_X_FORWARDED_HOST", "HTTP_X_FORWARDED_PORT", "HTTP_X_FORWARDED_PREFIX"):
                environ.pop(name, None)  # nginx here never sets them, so a client did
            return self.fixed(environ, start_response)
        for name in _FORWARDED:
            environ.pop(name, None)
        return self.app(environ, start_response)
