"""Experiment behind `create_app_engine(multirow_inserts=True)`: SQLAlchemy Core inserts of
20,000 rows (1,000 per execute) on asyncpg with and without insertmanyvalues for statements
without RETURNING, into tables with and without six range CHECKs. Medians of 4 rounds.

    python -m benchmarks.experiments.multirow_inserts
"""

import asyncio
import random
import statistics
import time
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

COLS = ["price", "bid", "ask", "open_price", "high_price", "low_price"]
md = sa.MetaData()


def tbl(name: str, checks: bool) -> sa.Table:
    return sa.Table(
        name,
        md,
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("instrument_id", sa.Integer, nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        *(sa.Column(c, sa.Float) for c in COLS),
        sa.Column("volume", sa.BigInteger),
        *(
            (
                sa.CheckConstraint(f"{c} > -100000000 AND {c} < 100000000", name=f"ck_{name}_{c}")
                for c in COLS
            )
            if checks
            else ()
        ),
    )


T = {"none": tbl("imv_none", False), "six": tbl("imv_six", True)}


async def main() -> None:
    res = {}
    for flag in (False, True):
        e = create_async_engine("postgresql+asyncpg://postgres@127.0.0.1:5432/test")
        e.sync_engine.dialect.use_insertmanyvalues_wo_returning = flag
        async with e.begin() as c:
            await c.run_sync(md.drop_all)
            await c.run_sync(md.create_all)
        now = datetime.now(UTC)
        rows = [
            dict(
                instrument_id=i % 6 + 1,
                timestamp=now,
                volume=100,
                **{c: random.uniform(1, 5000) for c in COLS},
            )
            for i in range(20000)
        ]
        for m, t in T.items():
            ts = []
            for _r in range(5):
                async with e.begin() as c:
                    await c.execute(sa.text(f"TRUNCATE {t.name}"))
                async with e.connect() as c:
                    t0 = time.perf_counter()
                    for b in range(0, 20000, 1000):
                        await c.execute(sa.insert(t), rows[b : b + 1000])
                        await c.commit()
                    ts.append(time.perf_counter() - t0)
            res[(flag, m)] = 20000 / statistics.median(ts[1:])
        async with e.begin() as c:
            await c.run_sync(md.drop_all)
        await e.dispose()
    for k, v in res.items():
        print(k, f"{v:.0f} rows/s")


asyncio.run(main())
