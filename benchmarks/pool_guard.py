"""What surviving a migration costs a pooled asyncpg application, per checkout and query.

Three configurations, run in alternating rounds in one process against one database:
  plain     SQLAlchemy's default prepared-statement cache (fails once per connection after
            an ALTER ... TYPE)
  guard     the same cache plus marketdata.schema_guard (one alembic_version read per checkout)
  nocache   prepared_statement_cache_size=0 (every statement prepared again; never stale)
Each round checks out a connection and runs one catalogue-style query, N times.

    python -m benchmarks.pool_guard --url postgresql://postgres@127.0.0.1/bench [--n 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from generator import db, migrate
from marketdata import demo
from marketdata.db import create_app_engine

QUERY = sa.text(
    "SELECT id, price, bid, ask FROM market_data WHERE instrument_id = :i "
    "ORDER BY timestamp DESC LIMIT 10"
)


async def run(engine: AsyncEngine, n: int) -> float:
    started = time.perf_counter()
    for i in range(n):
        async with engine.connect() as conn:
            (await conn.execute(QUERY, {"i": i % 6 + 1})).all()
    return (time.perf_counter() - started) / n * 1e6  # µs per checkout + query


async def main_async(url: str, n: int, rounds: int) -> dict[str, list[float]]:
    async_url = sa.make_url(url).set(drivername="postgresql+asyncpg")
    engines = {
        "plain": create_app_engine(async_url, pool_size=4, schema_guard=False),
        "guard": create_app_engine(async_url, pool_size=4),
        "nocache": create_app_engine(
            async_url.update_query_dict({"prepared_statement_cache_size": "0"}),
            pool_size=4,
            schema_guard=False,
        ),
    }
    results: dict[str, list[float]] = {k: [] for k in engines}
    for engine in engines.values():  # warm up each pool
        await run(engine, 50)
    for _ in range(rounds):
        for name, engine in engines.items():
            results[name].append(await run(engine, n))
    for engine in engines.values():
        await engine.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1/bench")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    url = db.resolve_url(args.url)
    migrations = Path(__file__).resolve().parents[1] / "generated_migrations"
    migrate.downgrade(migrations, url, "base")
    migrate.upgrade(migrations, url, "0000")
    engine = db.make_engine(url)
    with engine.begin() as conn:
        demo.seed(conn, ticks=20000, alerts=1000)
    engine.dispose()
    migrate.upgrade(migrations, url, "head")
    results = asyncio.run(main_async(args.url, args.n, args.rounds))
    base = statistics.median(results["plain"])
    print(f"{'config':8} {'median µs/op':>13} {'vs plain':>9}   rounds={args.rounds} n={args.n}")
    for name, values in results.items():
        med = statistics.median(values)
        print(f"{name:8} {med:13.1f} {med / base:9.2f}x")


if __name__ == "__main__":
    main()
