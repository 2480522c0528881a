"""ON DELETE RESTRICT, reported as :class:`~marketdata.errors.ParentHasChildren`.

The relationships of the models never delete nor null out children (``passive_deletes=
"all"``): deleting a parent leaves its children to the database, whose foreign keys are
``ON DELETE RESTRICT``. The database alone would answer with an ``IntegrityError`` whose
text depends on the dialect (SQLite's names neither table). So, before each flush, every
parent the flush is about to delete is checked: when a row of a restricting child table
still references it (soft-deleted rows included), or the same flush adds or moves one to
it, the flush stops with ``ParentHasChildren`` naming the parent and the child tables,
before any statement of the flush has run. Children that the same flush deletes, or moves
to another parent, do not count.

The check is a convenience on top of the database, not a replacement: a child inserted by
another transaction between the check and the DELETE is still refused by the foreign key
(as an ``IntegrityError``), and so are Core or bulk deletes, which this hook does not see.
After the error the session still holds the pending delete: roll back (as
:func:`marketdata.get_db_session` does) or expunge the object.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ForeignKeyConstraint, Table, event, inspect, select, tuple_
from sqlalchemy.orm import MANYTOONE, Mapper, Session, UOWTransaction, object_mapper
from sqlalchemy.orm.exc import UnmappedInstanceError

from marketdata.base import Base
from marketdata.errors import ParentHasChildren

# ON DELETE actions under which a referenced parent cannot go while children exist.
_RESTRICTING = {"RESTRICT", "NO ACTION"}


def _restricting_foreign_keys(
    parent: Table,
) -> list[tuple[Mapper[Any], ForeignKeyConstraint]]:
    """(child mapper, foreign key) for each restricting foreign key that targets ``parent``,
    ordered by child table and constraint name."""
    found = []
    for mapper in Base.registry.mappers:
        child_table = mapper.local_table
        if not isinstance(child_table, Table):
            continue
        for constraint in child_table.foreign_key_constraints:
            if constraint.referred_table is not parent:
                continue
            if (constraint.ondelete or "NO ACTION").upper() not in _RESTRICTING:
                continue
            found.append((mapper, constraint))
    return sorted(found, key=lambda pair: (pair[1].table.name, str(pair[1].name)))


def _pending_changes(
    session: Session,
    child: Mapper[Any],
    constraint: ForeignKeyConstraint,
    parent: object,
    parent_values: list[Any],
) -> tuple[list[Any], bool]:
    """What this flush does to the children of ``parent`` through ``constraint``.

    Returns the primary keys of the rows it deletes or moves away (they will not block), and
    whether it adds or moves a child to ``parent`` (which blocks like a stored one).
    """
    columns = [element.parent for element in constraint.elements]
    # The attributes that decide the parent: the foreign-key columns, and the many-to-one
    # relationships over them (the flush copies the latter into the former).
    column_keys = [child.get_property_by_column(c).key for c in columns]
    relationships = [
        rel.key
        for rel in child.relationships
        if rel.direction is MANYTOONE and set(rel.local_columns) & set(columns)
    ]
    leaving, arriving = [], False
    for obj in (*session.deleted, *session.dirty, *session.new):
        try:
            mapper = object_mapper(obj)
        except UnmappedInstanceError:
            continue
        if not mapper.isa(child):
            continue
        if obj in session.deleted:
            leaving.append(mapper.primary_key_from_instance(obj))
            continue
        state = inspect(obj)
        if obj in session.dirty and not any(
            state.attrs[key].history.has_changes() for key in (*column_keys, *relationships)
        ):
            continue  # unchanged reference: the stored row speaks for it
        if obj in session.dirty:
            leaving.append(mapper.primary_key_from_instance(obj))
        changed_relationships = [k for k in relationships if state.attrs[k].history.added]
        if changed_relationships:
            refers = any(getattr(obj, k) is parent for k in changed_relationships)
        else:
            refers = [getattr(obj, k) for k in column_keys] == parent_values
        arriving = arriving or refers
    return leaving, arriving


def _stored_child_exists(
    session: Session, constraint: ForeignKeyConstraint, values: list[Any], leaving: list[Any]
) -> bool:
    """Whether a stored row references the parent, other than those in ``leaving``."""
    key_columns = list(constraint.table.primary_key.columns)
    query = select(*key_columns).where(
        *(
            element.parent == value
            for element, value in zip(constraint.elements, values, strict=True)
        )
    )
    if leaving:
        if len(key_columns) == 1:
            query = query.where(key_columns[0].not_in([key[0] for key in leaving]))
        else:
            query = query.where(tuple_(*key_columns).not_in(leaving))
    # Core on the table: no ORM criteria, so soft-deleted children are seen too.
    return session.connection().execute(query.limit(1)).first() is not None


@event.listens_for(Session, "before_flush")
def _refuse_parents_with_children(
    session: Session, flush_context: UOWTransaction, instances: object
) -> None:
    for parent in list(session.deleted):
        try:
            mapper = object_mapper(parent)
        except UnmappedInstanceError:
            continue
        table = mapper.local_table
        if not isinstance(table, Table) or table.metadata is not Base.metadata:
            continue
        blocking: dict[str, list[str]] = {}
        for child, constraint in _restricting_foreign_keys(table):
            child_table = constraint.table
            values = [
                getattr(parent, mapper.get_property_by_column(element.column).key)
                for element in constraint.elements
            ]
            leaving, arriving = _pending_changes(session, child, constraint, parent, values)
            if arriving or _stored_child_exists(session, constraint, values, leaving):
                blocking.setdefault(child_table.name, []).append(str(constraint.name))
        if blocking:
            key = {
                c.name: getattr(parent, mapper.get_property_by_column(c).key)
                for c in table.primary_key.columns
            }
            raise ParentHasChildren(
                table.name,
                key,
                sorted(blocking),
                sorted(n for names in blocking.values() for n in names),
            )
