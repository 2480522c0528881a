"""The model of a whole change file: its id, description and operations (the union the
operation registry derives), and the JSON Schema editors validate against."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Union

from pydantic import Field, StringConstraints
from pydantic.types import StrictStr

from generator import ops
from generator.ops.base import OperationSpec
from generator.spec import Acknowledgements, Identifier, Spec

if TYPE_CHECKING:
    Operation = OperationSpec
else:  # one member per registered operation, told apart by `op`
    Operation = Annotated[Union[ops.specs()], Field(discriminator="op")]  # noqa: UP007

OP_NAMES = ops.op_names()

Duration = Annotated[StrictStr, StringConstraints(pattern=r"^[1-9][0-9]{0,6}(ms|s|min|h)$")]


class PostgresqlSettings(Spec):
    """Timeouts set before the change's DDL on PostgreSQL (``SET lock_timeout = ...``)."""

    lock_timeout: Duration = Field(
        default="5s", description="how long a DDL statement may wait for its lock, then fail"
    )
    statement_timeout: Duration = Field(
        default="30min", description="how long any statement of the change may run"
    )


# An Alembic revision id as alembic_version can hold it (VARCHAR(32)): hash ids and others.
RevisionId = Annotated[StrictStr, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,32}$")]


class ChangeSpec(Spec):
    """One file under ``changes/``: ``NNNN_<id>.yaml``."""

    id: Identifier
    after: RevisionId | None = Field(
        default=None,
        description=(
            "the baseline (change 0000) only: the revision of an existing Alembic history it "
            "continues (its down_revision). The tables it declares are what that history "
            "built: its upgrade checks them and creates nothing, its downgrade drops nothing"
        ),
    )
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
