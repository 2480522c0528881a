"""The loader settles each change's state (resolve.Resolver.settled_schema): a table that comes
back to an earlier value is the earlier object, so the caches of rendering find it by
identity; never one that is only ``==`` to it."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from benchmarks import gencheck
from generator import resolve
from generator.coltypes import parse_type
from generator.load import load_changes
from generator.state import Column, Schema, Table


def _history(root: Path, n: int) -> list[Path]:
    """The gencheck suite's synthetic history of ``n`` changes (its specs only)."""
    changes = root / "changes"
    changes.mkdir()
    shutil.copyfile(gencheck.BASELINE, changes / "0000_baseline.yaml")
    for number in range(1, n):
        ident, text = gencheck._change(number)
        (changes / f"{number:04d}_{ident}.yaml").write_text(text, encoding="utf-8")
    return sorted(changes.iterdir())


def test_a_table_that_comes_back_is_the_earlier_object(tmp_path: Path) -> None:
    _history(tmp_path, 9)
    changes = load_changes(tmp_path / "changes", display_base=tmp_path)
    after = [c.after for c in changes]
    # 0001 builds an index on market_data, 0002 drops it
    assert after[1].table("market_data") is not after[0].table("market_data")
    assert after[2].table("market_data") is after[0].table("market_data")
    # 0004 swaps a key of market_data, 0008 swaps it back (a new key object, equal)
    assert after[4].table("market_data") != after[3].table("market_data")
    assert after[8].table("market_data") is after[3].table("market_data")
    # 0007 widens a column of alert_logs, 0008 narrows it again
    assert after[7].table("alert_logs") != after[6].table("alert_logs")
    assert after[8].table("alert_logs") is after[6].table("alert_logs")
    for change in changes[1:]:  # a change starts where the one before it ended
        assert change.before is changes[change.number - 1].after


def test_equal_is_not_enough_a_default_of_1_is_not_one_of_true() -> None:
    resolver = resolve.Resolver(Schema())
    one = Column("flag", parse_type("integer"), True, default=1)
    true = dataclasses.replace(one, default=True)
    assert one == true  # as Python compares them; they render differently
    (settled_one,) = resolver._settle((one,))
    (settled_true,) = resolver._settle((true,))
    assert settled_one is one and settled_true is true
    assert resolver._settle((dataclasses.replace(one),)) == (one,)
    assert resolver._settle((dataclasses.replace(one),))[0] is one


def test_the_parts_of_a_table_are_all_its_fields() -> None:
    """resolve._parts keys a table by each of its fields: a field added to state.Table must
    be added there (else two tables that differ in it would be taken for one)."""
    assert [f.name for f in dataclasses.fields(Table)] == [
        "name",
        "columns",
        "indexes",
        "foreign_keys",
        "uniques",
        "checks",
        "pk_constraint",
        "aside",
    ]
    column = Column("id", parse_type("bigint"), False, primary_key=True)
    base = Table("t", (column,))
    others = [
        dataclasses.replace(base, name="u"),
        dataclasses.replace(base, columns=(dataclasses.replace(column),)),
        dataclasses.replace(base, pk_constraint="pk_other"),
        dataclasses.replace(base, aside=((0, column),)),
    ]
    keys = {resolve._parts(t) for t in (base, *others)}
    assert len(keys) == 1 + len(others)
