"""Absolute links for messages, built on PUBLIC_URL: a mail is read far from any request."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app


def public_url(endpoint: str, **values) -> str:
    """The address of an endpoint as people reach the site (PUBLIC_URL), never the request's host."""
    parts = urlsplit(current_app.config["PUBLIC_URL"])
    anchor = values.pop("_anchor", None)
    adapter = current_app.url_map.bind(parts.netloc, script_name=parts.path or "/", url_scheme=parts.scheme)
    url = adapter.build(endpoint, values, force_external=True)
    return f"{url}#{anchor}" if anchor else url
