"""Soft-deleted rows are left out of every ORM query unless a query asks for them.

A ``do_orm_execute`` listener on :class:`~sqlalchemy.orm.Session` (so on every session,
sync or async, including those of :func:`marketdata.get_db_session`) adds
``with_loader_criteria(SoftDeleteMixin, deleted_at IS NULL)`` to each ORM SELECT: entity
queries, column queries, ``Session.get``, joins, and relationship loads (lazy, selectin,
joined, subquery), whichever object they start from.

Opting in: ``execution_options(include_deleted=True)`` on a statement (or passed to
``Session.execute``, ``Session.get``, ``Session.scalars``) includes soft-deleted rows, for
that statement and for the relationship loads of the objects it loads, later lazy loads
included (the opt-in stays with those objects while the session holds them).
``INCLUDE_DELETED`` names the option; ``select(...).options(IncludeDeleted())`` is the
same opt-in as a statement option.

Not filtered, on purpose:

* loads of the columns of an object already held (``Session.refresh``, expired or deferred
  attributes): the object exists, its state is read as it is (refreshing a relationship
  attribute is a relationship load, and is filtered);
* ORM-enabled ``update()`` / ``delete()`` and Core statements on tables (``text()``,
  ``Table.select()``): they are not entity queries; :mod:`marketdata.queries` filters its
  own;
* objects already in the session: ``Session.get`` of a row soft-deleted in this session
  returns it from the identity map, and a collection loaded before the mark keeps it until
  it is expired or refreshed.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, event
from sqlalchemy.orm import ORMExecuteState, Session, with_loader_criteria
from sqlalchemy.orm.interfaces import UserDefinedOption

from marketdata.mixins import SoftDeleteMixin

INCLUDE_DELETED = "include_deleted"


class IncludeDeleted(UserDefinedOption):
    """Statement option that carries the opt-in on to relationship loads.

    It is attached to a statement executed with ``include_deleted=True`` and propagates to
    the loaders of the objects that statement loads, so their collections include
    soft-deleted rows as well. ``select(...).options(IncludeDeleted())`` works too.
    """

    propagate_to_loaders = True


def _live_only(cls: type[SoftDeleteMixin]) -> ColumnElement[bool]:
    return cls.deleted_at.is_(None)


def includes_deleted(state: ORMExecuteState) -> bool:
    """Whether the statement being executed asked for soft-deleted rows."""
    if state.execution_options.get(INCLUDE_DELETED, False):
        return True
    return any(isinstance(opt, IncludeDeleted) for opt in state.user_defined_options)


@event.listens_for(Session, "do_orm_execute")
def _hide_soft_deleted(state: ORMExecuteState) -> None:
    if not state.is_select or state.is_column_load:
        return
    if includes_deleted(state):
        if not state.is_relationship_load:
            state.statement = state.statement.options(IncludeDeleted())
        return
    state.statement = state.statement.options(
        with_loader_criteria(
            SoftDeleteMixin,
            _live_only,
            include_aliases=True,
        )
    )
