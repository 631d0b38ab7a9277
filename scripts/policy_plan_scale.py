"""Plan time at scale, on a real PostgreSQL server.

100,000 identities (300 teams, three environments, tier and region labels), a policy with
500 aliases and 2,000 grants (team, team & environment, label and single-identity subjects),
and a proposed version that changes 50 grants, adds 10, removes 10 and reroutes 20 aliases.
Times `policy plan` end to end (reading the inventory and both versions from the store) and
the diff computation alone, and prints the plan's size.

    .venv/bin/python scripts/policy_plan_scale.py [IDENTITIES]
"""

import random
import sys
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from timing import timed  # noqa: E402

from gatehouse.identity.view import identity_views
from gatehouse.policy import change_control, planning
from gatehouse.policy.loader import load_policy_text
from gatehouse.policy.plan import plan
from gatehouse.store.db import Database, bump_revision
from gatehouse.store.models import Identity, Person, RoleAssignment

from postgres import PostgresServer  # noqa: E402

TEAMS = [f"team-{i}" for i in range(300)]
ENVIRONMENTS = ["dev", "staging", "prod"]
TIERS, REGIONS = ["gold", "silver", "bronze"], ["eu", "us", "apac"]
CLASSES = ["public", "internal", "confidential", "restricted"]
ALIASES = [f"model-{i}" for i in range(500)]
DEPLOYMENTS = [f"dep-{i}" for i in range(50)]


def subject(rng: random.Random, identities: int) -> str:
    kind = rng.random()
    if kind < 0.6:
        return f"{{team: {rng.choice(TEAMS)}}}"
    if kind < 0.8:
        return f"{{team: {rng.choice(TEAMS)}, environment: {rng.choice(ENVIRONMENTS)}}}"
    if kind < 0.95:
        return f"{{labels: {{tier: {rng.choice(TIERS)}, region: {rng.choice(REGIONS)}}}}}"
    return f"{{identity: svc-{rng.randrange(identities)}}}"


def grant(rng: random.Random, name: str, identities: int) -> str:
    subjects = ", ".join(subject(rng, identities) for _ in range(rng.randint(1, 2)))
    return (f"  - {{name: {name}, subjects: [{subjects}], aliases: [{', '.join(rng.sample(ALIASES, rng.randint(1, 5)))}], "
            f"max_data_class: {rng.choice(CLASSES[:3])}}}")


def policy_text(grants: list[str], routes: dict[str, list[str]]) -> str:
    deployments = "\n".join(f"  {d}: {{engine: openai, url: 'http://127.0.0.1:9/{d}/v1', model: m, location: on-prem}}"
                            for d in DEPLOYMENTS)
    aliases = "\n".join(f"  {a}: {{route: [{', '.join(routes[a])}]}}" for a in ALIASES)
    return f"version: 1\ndeployments:\n{deployments}\naliases:\n{aliases}\ngrants:\n" + "\n".join(grants) + "\n"


def populate(db: Database, identities: int) -> None:
    now = datetime.now(UTC)
    rng = random.Random(1)
    with db.write() as session:
        revision = bump_revision(session)
        session.execute(insert(Person), [{"id": i + 1, "email": f"owner{i}@example.com", "team": TEAMS[i % 300],
                                          "status": "active", "created_at": now, "revision": revision}
                                         for i in range(1000)])
    for start in range(0, identities, 10_000):
        rows = [{"id": n + 1, "name": f"svc-{n}", "owner_id": n % 1000 + 1, "team": rng.choice(TEAMS),
                 "environment": rng.choice(ENVIRONMENTS), "labels": {"tier": rng.choice(TIERS), "region": rng.choice(REGIONS)},
                 "status": "active", "data_clearance": "internal", "created_at": now, "created_by": "scale", "revision": 1}
                for n in range(start, min(start + 10_000, identities))]
        with db.write() as session:
            session.execute(insert(Identity), rows)


def main(identities: int) -> None:
    rng = random.Random(7)
    grants = [grant(rng, f"g{i}", identities) for i in range(2000)]
    routes = {a: rng.sample(DEPLOYMENTS, rng.randint(1, 3)) for a in ALIASES}
    before = load_policy_text(policy_text(grants, routes))
    changed = list(grants)
    for i in rng.sample(range(2000), 50):
        changed[i] = grant(rng, f"g{i}", identities)
    for i in sorted(rng.sample(range(2000), 10), reverse=True):
        del changed[i]
    changed += [grant(rng, f"new{i}", identities) for i in range(10)]
    rerouted = dict(routes) | {a: rng.sample(DEPLOYMENTS, rng.randint(1, 3)) for a in rng.sample(ALIASES, 20)}
    after = load_policy_text(policy_text(changed, rerouted))
    print(f"policy: {len(ALIASES)} aliases, {len(before.document.grants):,} grants, {len(DEPLOYMENTS)} deployments; "
          f"{len(before.text) / 1e3:.0f} kB of YAML")

    server = PostgresServer()
    try:
        db = Database(server.create_database())
        db.upgrade()
        timed(f"populate {identities:,} identities", lambda: populate(db, identities))
        with db.write() as session:
            session.add(RoleAssignment(person_id=1, role="policy-admin", granted_by="scale", granted_at=datetime.now(UTC)))
        change_control.activate_served_file(db, "local:scale", before, "scale")
        change_control.propose(db, "person:owner0@example.com", after, "scale test")
        views = timed("read the inventory (identity_views)", lambda: identity_views(db))
        result = timed("compute the diff (plan) over the inventory", lambda: plan(before.document, after.document, views))
        planned = timed("gatehouse policy plan VERSION (end to end)", lambda: planning.plan_version(db, after.version))
        gained, lost = len(result.gained), len(result.lost)
        print(f"  {len(views):,} identities × {len(ALIASES)} aliases: {gained:,} access gains, {lost:,} losses, "
              f"{len(result.rules):,} rule changes, {len(result.flows):,} flow changes, {len(result.routes)} route changes; "
              f"{len(planned.widening_ids):,} widenings to acknowledge")
        small = load_policy_text(policy_text([*grants, grant(random.Random(99), "one-more", identities)], routes))
        change_control.propose(db, "person:owner0@example.com", small, "one grant more")
        typical = timed("gatehouse policy plan VERSION, one grant added (end to end)",
                        lambda: planning.plan_version(db, small.version))
        print(f"  {len(typical.plan.gained):,} access gains, {len(typical.widening_ids)} widening(s)")
        db.dispose()
    finally:
        server.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
