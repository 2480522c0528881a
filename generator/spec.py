"""Pydantic models of a change file: the YAML an author writes, and nothing dialect-specific."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from generator.coltypes import VOCABULARY, parse_type

IDENTIFIER_PATTERN = r"^[a-z_][a-z0-9_]{0,62}$"
IDENTIFIER_HELP = (
    "lowercase letters, digits and _, starting with a letter or _, at most 63 characters"
)

Identifier = Annotated[str, StringConstraints(pattern=IDENTIFIER_PATTERN)]


def _canonical_type(value: str) -> str:
    return str(parse_type(value))


# The JSON Schema spells the vocabulary as a pattern so an editor flags a typo as it is typed;
# the loader's own check gives the friendlier message.
TYPE_PATTERN = (
    r"^\s*(integer|bigint|float|text|boolean|timestamptz"
    r"|decimal\(\s*\d{1,4}\s*,\s*\d{1,4}\s*\)|varchar\(\s*\d{1,8}\s*\))\s*$"
)
TypeName = Annotated[
    StrictStr,
    AfterValidator(_canonical_type),
    WithJsonSchema({"type": "string", "pattern": TYPE_PATTERN, "description": VOCABULARY}),
]
FkAction = Literal["cascade", "restrict", "no_action", "set_null", "set_default"]
DefaultValue = StrictBool | StrictInt | StrictFloat | StrictStr


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


RuleId = Annotated[StrictStr, StringConstraints(pattern=r"^SG\d{3}$")]
Reason = Annotated[StrictStr, StringConstraints(min_length=1, strip_whitespace=True)]
Acknowledgements = dict[RuleId, Reason]


class _Op(_Spec):
    acknowledge: Acknowledgements = Field(
        default={}, description="lint findings of this operation accepted, with the reason"
    )


class References(_Spec):
    """A single-column foreign key; its name follows the naming convention."""

    table: Identifier
    column: Identifier = "id"
    on_delete: FkAction = "no_action"


class ColumnSpec(_Spec):
    name: Identifier
    type: TypeName
    nullable: bool | None = Field(
        default=None, description="defaults to false for a primary key, true otherwise"
    )
    primary_key: bool = False
    unique: bool = False
    default: DefaultValue | None = Field(
        default=None,
        description="a literal of the column's type; `now` on a timestamptz column",
    )
    references: References | None = None

    @model_validator(mode="after")
    def _pk_not_null(self) -> ColumnSpec:
        if self.primary_key and self.nullable:
            raise ValueError("a primary key column cannot be nullable")
        return self

    @property
    def is_nullable(self) -> bool:
        return (not self.primary_key) if self.nullable is None else self.nullable


# Keywords in either case, spelled out: JSON Schema patterns are ECMA-262 (no inline flags).
_TERM = r"[a-z_][a-z0-9_]{0,62}\s+[iI][sS]\s+(?:[nN][oO][tT]\s+)?[nN][uU][lL][lL]"
WHERE_PATTERN = rf"^\s*{_TERM}(?:\s+[aA][nN][dD]\s+{_TERM})*\s*$"
WHERE_HELP = (
    "a partial index's predicate: `<column> IS NULL` or `<column> IS NOT NULL`, "
    "several joined by AND"
)


def _canonical_where(value: str) -> str:
    """``deleted_at is not null`` -> ``deleted_at IS NOT NULL`` (one space, keywords upper)."""
    terms = re.split(r"\s+and\s+", value.strip(), flags=re.IGNORECASE)
    out = []
    for term in terms:
        column, *words = term.split()
        out.append(" ".join([column, *(w.upper() for w in words)]))
    return " AND ".join(out)


Where = Annotated[
    StrictStr,
    StringConstraints(pattern=WHERE_PATTERN),
    AfterValidator(_canonical_where),
    WithJsonSchema({"type": "string", "pattern": WHERE_PATTERN, "description": WHERE_HELP}),
]


class IndexSpec(_Spec):
    name: Identifier
    columns: Annotated[list[Identifier], Field(min_length=1)]
    unique: bool = False
    where: Where | None = Field(default=None, description=WHERE_HELP)


class CreateTable(_Op):
    """Create a table with its columns, keys and indexes (the baseline uses only this)."""

    op: Literal["create_table"]
    name: Identifier
    columns: Annotated[list[ColumnSpec], Field(min_length=1)]
    indexes: list[IndexSpec] = []


class DropIndex(_Op):
    op: Literal["drop_index"]
    table: Identifier
    name: Identifier
    concurrently: bool = Field(
        default=True, description="PostgreSQL: DROP INDEX CONCURRENTLY (false: in the transaction)"
    )


class CreateIndex(_Op):
    op: Literal["create_index"]
    table: Identifier
    name: Identifier
    columns: Annotated[list[Identifier], Field(min_length=1)]
    unique: bool = False
    where: Where | None = Field(default=None, description=WHERE_HELP)
    concurrently: bool = Field(
        default=True, description="PostgreSQL: CREATE INDEX CONCURRENTLY (false: blocks writes)"
    )


class AlterColumnType(_Op):
    op: Literal["alter_column_type"]
    table: Identifier
    column: Identifier
    from_: TypeName = Field(alias="from")
    to: TypeName
    range_check: bool = Field(
        default=False,
        description=(
            "decimal to float only: add CHECK ck_<table>_<column>_range keeping values finite "
            "and inside the range the decimal allowed"
        ),
    )


class AddColumn(_Op):
    op: Literal["add_column"]
    table: Identifier
    column: ColumnSpec


class SwapFkAction(_Op):
    """Change the ON DELETE action of the foreign key on ``table.column``."""

    op: Literal["swap_fk_action"]
    table: Identifier
    column: Identifier
    from_: FkAction = Field(alias="from")
    to: FkAction


Operation = Annotated[
    CreateTable | DropIndex | CreateIndex | AlterColumnType | AddColumn | SwapFkAction,
    Field(discriminator="op"),
]
OP_NAMES = (
    "create_table",
    "drop_index",
    "create_index",
    "alter_column_type",
    "add_column",
    "swap_fk_action",
)


Duration = Annotated[StrictStr, StringConstraints(pattern=r"^[1-9][0-9]{0,6}(ms|s|min|h)$")]


class PostgresqlSettings(_Spec):
    """Timeouts set before the change's DDL on PostgreSQL (``SET lock_timeout = ...``)."""

    lock_timeout: Duration = Field(
        default="5s", description="how long a DDL statement may wait for its lock, then fail"
    )
    statement_timeout: Duration = Field(
        default="30min", description="how long any statement of the change may run"
    )


class ChangeSpec(_Spec):
    """One file under ``changes/``: ``NNNN_<id>.yaml``."""

    id: Identifier
    description: Annotated[StrictStr, StringConstraints(min_length=1, strip_whitespace=True)]
    operations: Annotated[list[Operation], Field(min_length=1)]
    postgresql: PostgresqlSettings = PostgresqlSettings()
    acknowledge: Acknowledgements = Field(
        default={}, description="lint findings of every operation accepted, with the reason"
    )


def json_schema() -> dict[str, object]:
    """The JSON Schema of a change file, for editors (``schemagen schema``)."""
    schema = ChangeSpec.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "schemagen change spec"
    return schema
