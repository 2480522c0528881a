"""A project's naming convention for the constraints the generator names, and its soft-delete
column (lint rule SG109). The defaults are the ones this repository has always used; a project
sets its own in its configuration (generator.config)."""

from __future__ import annotations

import string
from dataclasses import dataclass

# Which placeholders each name template may use.
PLACEHOLDERS = {
    "primary_key": ("table",),
    "foreign_key": ("table", "column", "referred_table"),
    "unique": ("table", "column"),
    "range_check": ("table", "column"),
    # PostgreSQL: the domain holding a decimal->float column to the decimal's range, one per
    # bound set (digits: the decimal's integer digits, precision - scale)
    "range_domain": ("digits",),
}


@dataclass(frozen=True)
class Conventions:
    primary_key: str = "pk_{table}"
    foreign_key: str = "fk_{table}_{column}_{referred_table}"
    unique: str = "uq_{table}_{column}"
    range_check: str = "ck_{table}_{column}_range"
    range_domain: str = "float_within_1e{digits}"
    # None: the project has no soft-delete column and SG109 never fires.
    soft_delete_column: str | None = "deleted_at"

    def pk_name(self, table: str) -> str:
        return self.primary_key.format(table=table)

    def fk_name(self, table: str, column: str, referred_table: str) -> str:
        return self.foreign_key.format(table=table, column=column, referred_table=referred_table)

    def uq_name(self, table: str, column: str) -> str:
        return self.unique.format(table=table, column=column)

    def range_check_name(self, table: str, column: str) -> str:
        return self.range_check.format(table=table, column=column)

    def range_domain_name(self, digits: int) -> str:
        """PostgreSQL: the domain (double precision, -10^digits < VALUE < 10^digits) a
        decimal->float column with a range check takes; its CHECK is ``<domain>_check``."""
        return self.range_domain.format(digits=digits)


def template_problem(key: str, template: str) -> str | None:
    """Why ``template`` cannot name constraints of kind ``key`` (None when it can)."""
    allowed = PLACEHOLDERS[key]
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        return f"not a valid name template: {exc}"
    unknown = sorted({f for f in fields if f not in allowed})
    if unknown:
        return (
            f"unknown placeholder {{{unknown[0]}}} "
            f"(allowed: {', '.join('{' + a + '}' for a in allowed)})"
        )
    if key == "range_domain":
        if "digits" not in fields:
            return "must contain {digits}: two bound sets would otherwise get the same name"
        return None
    if "table" not in fields:
        return "must contain {table}: two tables would otherwise get the same name"
    if key != "primary_key" and "column" not in fields:
        return "must contain {column}: two columns would otherwise get the same name"
    return None


DEFAULT = Conventions()
