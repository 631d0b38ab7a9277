"""Plan time at scale, on a real PostgreSQL server.

100,000 identities (300 teams, three environments, tier and region labels), a policy with
500 aliases and 2,000 grants (team, team & environment, label and single-identity subjects),
and two proposed versions: a large change (50 grants changed, 10 added, 10 removed, 20 aliases
rerouted) and a typical one (one grant added).

For each it times `gatehouse policy plan VERSION` end to end through the command line — the
Typer app, signed in with an admin key, its request, the admin API, the plan, the answer and
the table it prints — run in this process, against

- the store on this machine (``GATEHOUSE_URL=local``: the command serves the admin API in its
  own process, migrations checked first, as every local command does), and
- a running control plane (the same admin API served over HTTP by uvicorn, as `gatehouse serve`
  does): the first plan of a version, the one after it, and with ``--json``;

then the service call alone (``planning.plan_version``) and, for comparison, reading every
identity and handing all of them to ``plan``, which must give the same access diff. Each line
gives the wall time and this process's CPU time: on a shared machine the first includes waiting
for a core, the second does not (the database server's CPU is in neither). Running in one
process, later commands find what earlier ones kept (a version's validated document); a real
command starts a new interpreter, whose start and imports the last line times.

    .venv/bin/python scripts/policy_plan_scale.py [IDENTITIES]
"""

import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import uvicorn
from sqlalchemy import insert
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from gatehouse.app.control import create_control_app
from gatehouse.cli.main import app as cli_app
from gatehouse.core.config import Settings
from gatehouse.identity import bootstrap
from gatehouse.identity.view import identity_views
from gatehouse.policy import change_control, planning
from gatehouse.policy.loader import LoadedPolicy, load_policy_text
from gatehouse.policy.plan import plan
from gatehouse.store.db import Database, bump_revision
from gatehouse.store.models import Identity, Person, RoleAssignment

from helpers import free_port  # noqa: E402
from postgres import PostgresServer  # noqa: E402

TEAMS = [f"team-{i}" for i in range(300)]
ENVIRONMENTS = ["dev", "staging", "prod"]
TIERS, REGIONS = ["gold", "silver", "bronze"], ["eu", "us", "apac"]
CLASSES = ["public", "internal", "confidential", "restricted"]
ALIASES = [f"model-{i}" for i in range(500)]
DEPLOYMENTS = [f"dep-{i}" for i in range(50)]
OWNERS = 1000
FIRST_OWNER = 2  # person 1 is the bootstrapped identity-admin who runs the commands


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
        session.execute(insert(Person), [{"id": i + FIRST_OWNER, "email": f"owner{i}@example.com", "team": TEAMS[i % 300],
                                          "status": "active", "created_at": now, "revision": revision}
                                         for i in range(OWNERS)])
    for start in range(0, identities, 10_000):
        rows = [{"id": n + 1, "name": f"svc-{n}", "owner_id": n % OWNERS + FIRST_OWNER, "team": rng.choice(TEAMS),
                 "environment": rng.choice(ENVIRONMENTS), "labels": {"tier": rng.choice(TIERS), "region": rng.choice(REGIONS)},
                 "status": "active", "data_clearance": "internal", "created_at": now, "created_by": "scale", "revision": 1}
                for n in range(start, min(start + 10_000, identities))]
        with db.write() as session:
            session.execute(insert(Identity), rows)


def timed(label: str, work):  # type: ignore[no-untyped-def]
    """Run a step; print its wall time and this process's CPU time (on a shared machine the
    first waits for the CPU, the second does not; the database server's CPU is in neither)."""
    started, cpu = time.perf_counter(), time.process_time()
    result = work()
    print(f"{label}: {time.perf_counter() - started:.3f} s (CPU {time.process_time() - cpu:.3f} s)")
    return result


def cli_plan(*args: str) -> str:
    """`gatehouse policy plan ARGS`, as typed, in this process."""
    result = CliRunner().invoke(cli_app, ["policy", "plan", *args])
    if result.exit_code != 0:
        raise RuntimeError(f"gatehouse policy plan {' '.join(args)} failed:\n{result.output[-2000:]}")
    return result.output


class ControlPlane:
    """The admin API over HTTP on a free port, in a thread of this process."""

    def __init__(self, settings: Settings) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(create_control_app(settings), host="127.0.0.1", port=self.port,
                                                    log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def measure(db: Database, settings: Settings, label: str, before: LoadedPolicy, candidate: LoadedPolicy) -> None:
    ref = candidate.version
    print(f"\n{label}:")
    os.environ["GATEHOUSE_URL"] = "local"
    timed("  gatehouse policy plan VERSION, store on this machine (local)", lambda: cli_plan(ref))
    control = ControlPlane(settings)
    try:
        os.environ["GATEHOUSE_URL"] = f"http://127.0.0.1:{control.port}"
        timed("  gatehouse policy plan VERSION, running control plane, first", lambda: cli_plan(ref))
        timed("  gatehouse policy plan VERSION, running control plane, again", lambda: cli_plan(ref))
        timed("  gatehouse policy plan VERSION --json, running control plane", lambda: cli_plan(ref, "--json"))
    finally:
        control.stop()
    planned = timed("  planning.plan_version (the service call alone)", lambda: planning.plan_version(db, ref))
    views = timed("  for comparison: read every identity (identity_views)", lambda: identity_views(db))
    full = timed("  for comparison: plan() handed every identity",
                 lambda: plan(before.document, candidate.document, views))
    if full.access != planned.plan.access:
        raise SystemExit("the plan over the identities the change reaches differs from the diff over all")
    print(f"  {planned.identities:,} identities, {len(planned.plan.access):,} access changes "
          f"({len(planned.plan.gained):,} gains, {len(planned.plan.lost):,} losses), "
          f"{len(planned.plan.rules):,} rule changes, {len(planned.plan.routes)} route changes; "
          f"{len(planned.widening_ids):,} widenings to acknowledge")


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
    small = load_policy_text(policy_text([*grants, grant(random.Random(99), "one-more", identities)], routes))
    print(f"policy: {len(ALIASES)} aliases, {len(before.document.grants):,} grants, {len(DEPLOYMENTS)} deployments; "
          f"{len(before.text) / 1e3:.0f} kB of YAML")

    server = PostgresServer()
    home = Path(tempfile.mkdtemp(prefix="gatehouse-plan-scale-"))
    try:
        url = server.create_database()
        os.environ.update({"GATEHOUSE_HOME": str(home), "GATEHOUSE_DATABASE_URL": url})
        settings = Settings.from_env()
        db = Database(url)
        db.upgrade()
        root = bootstrap.bootstrap(db, "local:scale", "root@example.com", pepper=settings.pepper(), ttl=timedelta(hours=4))
        timed(f"populate {identities:,} identities", lambda: populate(db, identities))
        with db.write() as session:
            session.add(RoleAssignment(person_id=FIRST_OWNER, role="policy-admin", granted_by="scale",
                                       granted_at=datetime.now(UTC)))
        change_control.activate_served_file(db, "local:scale", before, "scale")
        change_control.propose(db, "person:owner0@example.com", after, "scale test")
        change_control.propose(db, "person:owner0@example.com", small, "one grant more")
        os.environ["GATEHOUSE_ADMIN_KEY"] = root.admin_key

        for label, candidate in (("large change", after), ("one grant added", small)):
            measure(db, settings, label, before, candidate)
        db.dispose()
    finally:
        server.stop()
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import gatehouse.cli.main"], check=True)
    print(f"\nnot counted above: starting the interpreter and importing the command line: "
          f"{time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
