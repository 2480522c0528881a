"""Keep database passwords out of every line the tool prints or logs."""

from __future__ import annotations

import logging
import re
from urllib.parse import quote_plus, unquote

from sqlalchemy.engine import URL

MASK = "***"
_secrets: set[str] = set()


def register_url_text(text: str) -> None:
    """Remember the password of a URL string even if it cannot be parsed."""
    m = re.match(r"^[^:/]+://[^:/@]*:(?P<pw>[^@]*)@", text)
    if m and m["pw"]:
        _add(m["pw"])


def register_url(url: URL) -> None:
    if url.password:
        _add(str(url.password))


def _add(secret: str) -> None:
    for form in {secret, unquote(secret), quote_plus(secret), quote_plus(unquote(secret))}:
        if form:
            _secrets.add(form)


def redact(text: str) -> str:
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def safe_url(url: URL) -> str:
    return url.render_as_string(hide_password=True)


class RedactingFilter(logging.Filter):
    """Rewrites a record's message with every known password masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _secrets:
            record.msg = redact(record.getMessage())
            record.args = None
        return True
