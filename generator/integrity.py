"""Run-time integrity: the generated files a run uses must be the ones schemagen.sum lists.

A generated migration edited by hand runs whatever the edit says (a DELETE, say) with the
authority of a reviewed change; an edited validation file can wave a broken state through.
So before anything runs, ``upgrade``/``downgrade``/``verify`` (and plain ``alembic``, through
env.py and :func:`generator.runtime.run_change`) compare every file they use with its hash in
the sum and refuse a mismatch, unless the operator overrides it with a reason, which is
logged: ``--allow-modified REASON`` or ``SCHEMAGEN_ALLOW_MODIFIED=REASON``.

A revision without the generated header and not in the sum is the operator's own
(hand-written) and is run as it is: it never claimed to be generated.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from generator.files import SUM_FILE, h1, is_generated, sum_entries

log = logging.getLogger("schemagen")
ENV_VAR = "SCHEMAGEN_ALLOW_MODIFIED"
OPTION = "--allow-modified"
LABEL = "generated_migrations"


@dataclass(frozen=True)
class Problem:
    path: str  # relative to generated_migrations/
    what: str

    def __str__(self) -> str:
        return f"{LABEL}/{self.path} {self.what}"


class ModifiedFiles(RuntimeError):
    """Generated files differ from schemagen.sum (or the sum itself is missing or edited)."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        lines = [f"refusing to run: {p}" for p in self.problems]
        lines.append(
            "nothing was run; restore the files with `schemagen generate` (from the specs), or "
            f"run them as they are with {OPTION} REASON (alembic: {ENV_VAR}=REASON), "
            "which is logged"
        )
        super().__init__("\n".join(lines))


def override(attributes: Mapping[str, object] | None = None) -> str | None:
    """The operator's reason to run modified files: the CLI option, else the env var."""
    reason = (attributes or {}).get("allow_modified") or os.environ.get(ENV_VAR, "")
    return str(reason).strip() or None


def read_sum(out_dir: Path) -> dict[str, str]:
    """``{path: hash}`` of the sum file; a missing, unreadable or edited sum is a refusal."""
    try:
        text = (out_dir / SUM_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModifiedFiles([Problem(SUM_FILE, "is missing")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModifiedFiles([Problem(SUM_FILE, f"cannot be read ({exc})")]) from None
    entries = sum_entries(text)
    if entries is None:
        raise ModifiedFiles(
            [Problem(SUM_FILE, "was edited: its first line is not the hash of the others")]
        )
    return entries


def check(
    out_dir: Path, paths: Iterable[str], reason: str | None, listed: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The texts of ``paths`` (relative to ``out_dir``) once each matches the sum.

    A mismatch raises :class:`ModifiedFiles`, or, with a ``reason``, is logged as a warning
    and the file is used as it is. Callers run the returned text, never a second read.
    """
    listed = read_sum(out_dir) if listed is None else listed
    texts: dict[str, str] = {}
    problems: list[Problem] = []
    for path in dict.fromkeys(paths):
        try:
            text = (out_dir / path).read_text(encoding="utf-8")
        except FileNotFoundError:
            if path in listed:
                problems.append(Problem(path, f"is listed in {SUM_FILE} but missing"))
            continue  # an unlisted file that is absent: nothing will run it
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(path, f"cannot be read ({exc})"))
            continue
        texts[path] = text
        if path in listed:
            if h1(text) != listed[path]:
                problems.append(Problem(path, f"differs from its hash in {SUM_FILE}"))
        elif is_generated(text):
            problems.append(Problem(path, f"has the generated header but is not in {SUM_FILE}"))
    if problems and reason is None:
        raise ModifiedFiles(problems)
    for problem in problems:
        log.warning("%s; running it anyway: %s %s", problem, OPTION, reason)
    return texts


_VALIDATION = re.compile(r"^validation/(?P<dialect>[^/]+)/[^/]+\.(?:sql|json)$")


def preflight(out_dir: Path, dialect: str, reason: str | None) -> None:
    """Check every file a run may use before the first change runs, so nothing half-runs.

    That is every migration script (Alembic imports all of them, in range or not) and every
    validation file of ``dialect``; a hand-written revision is not checked.
    """
    listed = read_sum(out_dir)
    on_disk = [p.relative_to(out_dir).as_posix() for p in (out_dir / "versions").glob("*.py")]
    on_disk += [
        p.relative_to(out_dir).as_posix()
        for pattern in ("*.json", "*.sql")
        for p in (out_dir / "validation" / dialect).glob(pattern)
    ]
    wanted = [
        p
        for p in listed
        if p.startswith("versions/")
        or ((m := _VALIDATION.match(p)) is not None and m["dialect"] == dialect)
    ]
    check(out_dir, sorted({*on_disk, *wanted}), reason, listed)


def validation_files(dialect: str, change: str, phases: tuple[str, ...]) -> list[str]:
    """A change's validation files of these phases: the .json checks the runtime runs and
    the .sql text of the same checks (reviewers, psql); both must match the sum."""
    stems = [f"validation/{dialect}/{change}.{phase}" for phase in phases]
    return [path for stem in stems for path in (f"{stem}.json", f"{stem}.sql")]


def for_change(
    script_file: str | Path, dialect: str, change: str, reason: str | None
) -> dict[str, str]:
    """The verified texts of one change's script and validation files (``validation/...``).

    A hand-written script (no generated header, not in the sum) that calls the runtime has
    hand-written validation files too (the runtime runs the ``.json`` one: an object with a
    ``checks`` list, see runtime.load_checks): those are the operator's, and are not checked.
    """
    out_dir = Path(script_file).resolve().parent.parent
    listed = read_sum(out_dir)
    script = f"versions/{Path(script_file).name}"
    checked = check(out_dir, [script], reason, listed)
    handwritten = script not in listed and not is_generated(checked.get(script, ""))
    validation = validation_files(dialect, change, ("pre", "post"))
    if handwritten:
        return {}
    return check(out_dir, validation, reason, listed)
