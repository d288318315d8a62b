"""The page benchmark's copying of packages (services/bench/pages.py: clone_packages) on a real
PostgreSQL, and its reading of the console's menu: copies get ids of their own that still refer
to each other, counters and sequences are left to their defaults, and rows that would start work
are not copied."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from services.bench.pages import clone_packages, menu_of, target_of


@pytest.fixture
async def scratch(handlers_database):
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(handlers_database)
    await conn.execute(f"CREATE SCHEMA {schema}")
    await conn.execute(
        f"""CREATE TABLE {schema}.packages (package_id uuid PRIMARY KEY, zone text, requested_at timestamptz,
                                            seq bigserial);
            CREATE TABLE {schema}.answers (answer_id uuid PRIMARY KEY,
                                           package_id uuid REFERENCES {schema}.packages, status text);"""
    )
    yield conn, schema
    await conn.execute(f"DROP SCHEMA {schema} CASCADE")
    await conn.close()


async def test_copies_have_ids_of_their_own_that_refer_to_each_other(scratch):
    conn, schema = scratch
    package = uuid.uuid4()
    await conn.execute(
        f"INSERT INTO {schema}.packages (package_id, zone, requested_at) VALUES ($1, 'a', now())", package
    )
    await conn.execute(
        f"INSERT INTO {schema}.answers VALUES ($1, $2, 'bid'), ($3, $2, 'declined')",
        uuid.uuid4(),
        package,
        uuid.uuid4(),
    )
    added = await clone_packages(conn, 3, schemas=(schema,))
    assert added == {f"{schema}.answers": 6, f"{schema}.packages": 3}
    packages = await conn.fetch(f"SELECT package_id, seq FROM {schema}.packages")
    assert len({p["package_id"] for p in packages}) == 4
    assert len({p["seq"] for p in packages}) == 4, "a sequence column is left to its default"
    orphans = await conn.fetchval(
        f"SELECT count(*) FROM {schema}.answers a WHERE NOT EXISTS "
        f"(SELECT 1 FROM {schema}.packages p WHERE p.package_id = a.package_id)"
    )
    assert orphans == 0, "every copied answer belongs to a copied package"
    per_package = await conn.fetch(f"SELECT package_id, count(*) AS n FROM {schema}.answers GROUP BY 1")
    assert sorted(r["n"] for r in per_package) == [2, 2, 2, 2]


def test_the_menu_is_read_from_the_service_navigation_once_each():
    page = """<a href="/">Home care</a><nav aria-label="Menu" class="x"><ul>
              <li><a href="/board">Board</a></li><li><a href="/ops/kpis">KPIs</a></li>
              <li><a href="/board">Board again</a></li><li><a href="/sign-out">Sign out</a></li></ul></nav>
              <a href="/elsewhere">not the menu</a>"""
    assert menu_of(page) == ["/board", "/ops/kpis"]
    assert target_of("/ops/kpis") == 500 and target_of("/board") == 300
