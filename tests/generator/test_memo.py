"""generator.memo.by_identity: once per object, by identity, never for an equal other one."""

from __future__ import annotations

from generator import memo


def test_computed_once_per_object_and_bounded() -> None:
    calls: list[list[int]] = []

    def compute(key: list[int]) -> int:
        calls.append(key)
        return sum(key)

    store: dict[int, tuple[list[int], int]] = {}
    a, b = [1, 2], [1, 2]  # equal, not the same object
    assert memo.by_identity(store, a, compute) == 3
    assert memo.by_identity(store, a, compute) == 3
    assert calls == [a]  # a second call found it
    a.append(4)  # the entry is the object's: what it holds now is not recomputed
    assert memo.by_identity(store, a, compute) == 3
    assert memo.by_identity(store, b, compute) == 3
    assert len(calls) == 2 and calls[1] is b
    kept = [[n] for n in range(5000)]
    for key in kept:
        memo.by_identity(store, key, compute)
    assert len(store) <= 4096
