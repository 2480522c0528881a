"""Keep database passwords out of every line the tool prints, logs or writes.

A URL's password is registered as soon as the URL is read (``generator.db.resolve_url``),
in every spelling it may reach an output in: as typed, percent-decoded, percent-encoded the
ways SQLAlchemy and urllib encode it, and escaped for JSON. ``redact`` then masks each of
them in any text, whatever produced it (our messages, driver errors, tracebacks).
"""

from __future__ import annotations

import json
import logging
import re
from urllib.parse import quote, quote_plus, unquote, unquote_plus

from sqlalchemy.engine import URL, make_url

MASK = "***"
# Query or connection-string keys whose value is a secret (libpq's names).
SECRET_KEYS = ("password", "sslpassword")
_secrets: set[str] = set()

_USERINFO = re.compile(r"^[A-Za-z][\w+.-]*://(?P<user>[^:/@?]*):(?P<rest>.*)$", re.S)
# libpq key=value connection strings (also inside a query value such as host=... or dsn=...):
# a value is single-quoted with backslash escapes, or runs to whitespace or '&'. Malformed
# strings are read generously, since libpq quotes their pieces in its errors: an unclosed
# quote runs to the end, and bare words up to the next ``key=`` all count as the password.
_KEYWORD = re.compile(
    r"(?i)\b(?:" + "|".join(SECRET_KEYS) + r")\s*=\s*"
    r"(?:'(?P<quoted>(?:\\.|[^'\\])*)(?:'|$)|(?P<bare>[^\s&']+(?:\s+(?![\w.]+\s*=)[^\s&']+)*))"
)


def userinfo_password(text: str) -> str | None:
    """The password of ``scheme://user:password@host/...`` as typed, unencoded ``@`` included.

    The password ends at the last ``@`` before the query (the way urllib splits a netloc),
    so ``u:Hunter@2Secret@host`` is ``Hunter@2Secret``, not ``Hunter`` with a host of
    ``2Secret@host``.
    """
    m = _USERINFO.match(text)
    if not m:
        return None
    rest = m["rest"]
    first_at = rest.find("@")
    if first_at < 0:
        return None
    query = rest.find("?", first_at)
    end = rest.rfind("@", 0, len(rest) if query < 0 else query)
    return rest[:end]


def register_url_text(text: str) -> None:
    """Remember every password written in a URL or connection string, even one that cannot
    be parsed: the userinfo password and each ``password=`` value, encoded or not."""
    pw = userinfo_password(text)
    if pw:
        _add(pw)
    for form in {text, unquote(text), unquote_plus(text)}:
        for m in _KEYWORD.finditer(form):
            value = m["bare"] if m["quoted"] is None else re.sub(r"\\(.)", r"\1", m["quoted"])
            if value:
                _add(value)
                _add(m["quoted"] or value)
                for word in value.split() if m["bare"] else ():
                    _add(word)


def register_url(url: URL) -> None:
    if url.password:
        _add(str(url.password))
    for key, values in url.query.items():
        for value in (values,) if isinstance(values, str) else values:
            if key.lower() in SECRET_KEYS and value:
                _add(value)
            register_url_text(value)  # a libpq string inside a value: host=..., conninfo=...


def _add(secret: str) -> None:
    forms = {secret}
    for base in (secret, unquote(secret), unquote_plus(secret)):
        forms |= {base, quote(base, safe=""), quote_plus(base), quote(base)}
        # SQLAlchemy's own encoding (render_as_string), which differs from urllib's
        rendered = URL.create("x", username="u", password=base).render_as_string(False)
        forms.add(rendered[len("x://u:") : -1])
    for form in list(forms):
        forms.add(json.dumps(form)[1:-1])  # a password inside a JSON string
        forms.add(json.dumps(form, ensure_ascii=False)[1:-1])
    _secrets.update(f for f in forms if f)


def redact(text: str) -> str:
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def safe_url(url: URL) -> str:
    """The URL to show: password masked, secret query values masked."""
    query = {k: MASK if k.lower() in SECRET_KEYS else v for k, v in url.query.items()}
    shown = url.set(query=query).render_as_string(hide_password=True)
    return redact(shown).replace(quote_plus(MASK), MASK)


def safe_url_text(text: str) -> str:
    """:func:`safe_url` of a URL string; a string that does not parse is masked as well as
    what it says allows."""
    register_url_text(text)
    try:
        url = make_url(text)
    except Exception:  # ArgumentError and friends: fall back to the registered forms
        return redact(text)
    register_url(url)
    return safe_url(url)


class RedactingFilter(logging.Filter):
    """Rewrites a record's message with every known password masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _secrets:
            record.msg = redact(record.getMessage())
            record.args = None
        return True


class RedactingFormatter(logging.Formatter):
    """Masks the whole formatted record, traceback included, after ``inner`` formats it."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return redact(self.inner.format(record))
