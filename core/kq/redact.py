"""Masking secrets before anything shows a URL, a setting or a driver's message to a person.

Broker and backend URLs carry passwords (``redis://:pw@host``, ``amqp://user:pw@host//``,
``redis://host?password=pw``) and option mappings carry them under names such as ``password``
or ``token``. Logs, error messages, ``kq inspect`` replies, events, the dashboard and reprs end
up in terminals, log stores and bug reports, so every one of those paths shows such values
through this module, and they are all masked the same way. User names, hosts, ports and paths
stay: they are what a person needs to tell which server is meant.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

MASK = "**"

#: Option and query-parameter names whose values are secrets.
_SECRET_NAME = re.compile(
    r"pass(word|wd|phrase)?$|password|pwd$|secret|token|credential|^auth$|^key$"
    r"|(api|access|private|account|sas|signing|encryption)_?key$"
    # Azure Storage: a SAS token's ``sig=`` and a connection string's ``SharedAccessSignature=``
    r"|^sig$|^sharedaccesssignature$",
    re.IGNORECASE,
)
#: Characters that end a URL's authority: a password holding one unescaped is cut there by
#: URL parsers, which then quote the pieces (as a port, path or query) in their errors.
_AUTHORITY_END = re.compile(r"[/?#]")


def is_secret_name(name: str) -> bool:
    """Whether an option or query parameter called ``name`` holds a secret."""
    return bool(_SECRET_NAME.search(name))


def safe_url(url: str | None) -> str:
    """``url`` with its password, and the values of query parameters named like secrets,
    replaced by ``**``; each URL of a ``;`` failover list is masked."""
    if not url:
        return str(url)
    return ";".join(_mask_url(part) for part in url.split(";"))


def _mask_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep:  # one ``Name=value`` of a connection string (Azure's ``AccountKey=...``)
        return _mask_parameter(url)
    # The last "@" ends the user info, so a password holding an unescaped "@" is masked whole.
    userinfo, at, location = rest.rpartition("@")
    if at and ":" in userinfo:
        rest = f"{userinfo.partition(':')[0]}:{MASK}@{location}"
    head, question, query = rest.partition("?")
    if question:
        rest = head + question + "&".join(_mask_parameter(item) for item in query.split("&"))
    return f"{scheme}{sep}{rest}"


def _mask_parameter(item: str) -> str:
    name, equals, value = item.partition("=")
    return f"{name}={MASK}" if equals and value and is_secret_name(unquote(name)) else item


def safe_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of an options mapping (``broker_transport_options``, ...) for showing: values
    under secret names are ``**``, URLs are masked, nested mappings and lists are too."""
    return {
        key: MASK if isinstance(key, str) and is_secret_name(key) and value else _safe_value(value)
        for key, value in options.items()
    }


def _safe_value(value: Any) -> Any:
    if isinstance(value, str):
        return safe_url(value) if "://" in value else value
    if isinstance(value, Mapping):
        return safe_options(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_safe_value(item) for item in value)
    return value


def safe_setting(name: str, value: Any) -> Any:
    """A setting's value for showing: URLs (``*_url``, ``*_backend``, ``*_store`` or anything
    with ``://``) masked, option mappings masked, a setting named like a secret hidden."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if is_secret_name(name):
        return MASK
    if isinstance(value, str) and name.endswith(("_url", "_backend", "_store")):
        return safe_url(value)
    return _safe_value(value)


def scrub(text: str, *urls: str | None) -> str:
    """``text`` (a driver's error message, say) with the passwords of ``urls`` masked (and
    their secret query parameters), percent-encoded or not, and the pieces a URL parser cuts a
    password into when it holds an unescaped ``/``, ``?`` or ``#``."""
    secrets: set[str] = set()
    for url in urls:
        for part in (url or "").split(";"):
            userinfo, at, _ = part.partition("://")[2].rpartition("@")
            password = userinfo.partition(":")[2] if at else ""
            for secret in (password, unquote(password)):
                secrets.add(secret)
                secrets.update(_AUTHORITY_END.split(secret))
            query = part.partition("?")[2] if "://" in part else part  # or Name=value
            for item in query.split("&"):
                name, _, value = item.partition("=")
                if is_secret_name(unquote(name)):
                    secrets.update((value, unquote(value)))
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
