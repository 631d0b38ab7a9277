"""The ``gatehouse`` command line: serve the gateway and govern who may call it."""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from pathlib import Path

import typer

from gatehouse import __version__
from gatehouse.audit import checkpoints
from gatehouse.cli import audit, bench, findings, identities, incidents, keys, people, policy, reviews
from gatehouse.cli.client import LOCAL, ApiFailure, ControlPlane, Profile, control_plane, http_client, profile_path, write_profile
from gatehouse.cli.common import (
    console,
    database_shown,
    err_console,
    handles_errors,
    local_actor,
    open_db,
    print_json,
    safe,
    settings,
)
from gatehouse.core.config import Settings
from gatehouse.core.errors import GatehouseError
from gatehouse.core.webhook import notify
from gatehouse.engines.model_files import ensure_builtin_model
from gatehouse.identity.bootstrap import RECOVERY_THRESHOLD, Appointment, bootstrap, is_bootstrapped, recovery_event
from gatehouse.identity.bootstrap import recover as recover_admin
from gatehouse.policy import change_control, versions
from gatehouse.policy.compiled import CompiledPolicy
from gatehouse.policy.loader import PolicyError, load_policy
from gatehouse.policy.starter import STARTER_POLICY
from gatehouse.runtime import spool
from gatehouse.store.db import Database

app = typer.Typer(
    help="Gatehouse: a governed, OpenAI-compatible gateway for in-house LLM inference.",
    no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
)
app.add_typer(people.app, name="person")
app.add_typer(identities.app, name="identity")
app.add_typer(keys.app, name="key")
app.add_typer(policy.app, name="policy")
app.add_typer(audit.app, name="audit")
app.add_typer(bench.app, name="bench")
app.add_typer(reviews.app, name="review")
app.add_typer(incidents.app, name="incident")
app.command("findings")(findings.findings)
app.command("inventory")(findings.inventory)


def _version(value: bool) -> None:
    if value:
        console.print(f"gatehouse {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    pass


def _initialise(config: Settings, quiet: bool = False) -> None:
    config.home.mkdir(parents=True, exist_ok=True)
    config.pepper()
    checkpoints.ensure_signing_key(config)
    db = open_db()
    if not config.policy_path.exists():
        config.policy_path.parent.mkdir(parents=True, exist_ok=True)
        config.policy_path.write_text(STARTER_POLICY)
        if not quiet:
            console.print(f"wrote starter policy {safe(config.policy_path)}")
    db.dispose()

    model = ensure_builtin_model(config.models_dir)
    if not quiet:
        console.print(f"database ready: {database_shown(config.database_url)}", highlight=False)
        console.print(f"embedded model ready: {model}")


AdminOption = typer.Option(None, "--admin", help="E-mail of the installation's first identity-admin (once, ever).")


@app.command()
@handles_errors
def init(
    admin: str = AdminOption,
    team: str = typer.Option(None, "--team", help="The first identity-admin's team."),
    save_profile: bool = typer.Option(None, "--save-profile/--no-save-profile",
                                      help="Keep the first admin key in $GATEHOUSE_HOME/profile.json (0600) so this "
                                           "shell is signed in. Default: only for the local SQLite store."),
) -> None:
    """Create $GATEHOUSE_HOME: database (migrated), server pepper, starter policy, embedded model;
    with --admin, appoint the installation's first identity-admin (possible once per installation)."""
    config = settings()
    _initialise(config)
    console.print(f"[green]initialised[/] {safe(config.home)}")
    if admin is None:
        console.print("next: [cyan]gatehouse init --admin you@example.com[/] (once per installation), "
                      "or [cyan]gatehouse login[/] with the admin key someone issued you", highlight=False)
        return
    local_store = config.database_url.startswith("sqlite")
    appointment = bootstrap(open_db(), local_actor(), admin, pepper=config.pepper(), ttl=config.max_key_ttl, team=team)
    _hand_over(config, appointment, local_store if save_profile is None else save_profile, "first identity-admin")
    console.print("next: [cyan]gatehouse whoami[/], then [cyan]gatehouse person add alice@example.com --team platform[/]",
                  highlight=False)


def _hand_over(config: Settings, appointment: Appointment, save: bool, what: str) -> None:
    """Print (or keep) the admin key, and print the recovery codes: both shown only now."""
    if save:
        path = write_profile(config, Profile(LOCAL, appointment.admin_key))
        console.print(f"{what} [bold]{safe(appointment.email)}[/]: admin key {appointment.key_id} saved to {safe(path)} (0600); "
                      "this shell is signed in as them", highlight=False)
    else:
        err_console.print(f"{what} [bold]{safe(appointment.email)}[/]: admin key {appointment.key_id}, shown only now "
                          "(sign in with `gatehouse login`):", highlight=False)
        print(appointment.admin_key)
    err_console.print(f"[bold yellow]recovery codes[/] — give each to a different person; any {RECOVERY_THRESHOLD} "
                      f"of these {len(appointment.recovery_codes)} together appoint an identity-admin when none is "
                      "left (`gatehouse recover`). Shown only now:", highlight=False)
    for code in appointment.recovery_codes:
        print(code)


@app.command()
@handles_errors
def recover(
    admin: str = typer.Option(..., "--admin", help="E-mail of the person to appoint identity-admin."),
    code: list[str] = typer.Option(None, "--code", help="A recovery code (repeat; or one per line on standard input)."),
) -> None:
    """Appoint an identity-admin when none is left, with recovery codes made at init (several
    people together). Loud: audited, and announced through the notification webhook."""
    config = settings()
    codes = list(code or []) or [line.strip() for line in sys.stdin.read().splitlines() if line.strip()]
    actor = local_actor()
    appointment = recover_admin(open_db(), actor, codes, admin, pepper=config.pepper(), ttl=config.max_key_ttl)
    delivery = notify(config.notify_webhook, recovery_event(appointment, actor))
    err_console.print(f"[bold red]RECOVERY[/]: {safe(appointment.email)} is identity-admin; recorded in the audit log; "
                      f"webhook: {safe(delivery)}", highlight=False)
    _hand_over(config, appointment, False, "recovered identity-admin")


@app.command()
@handles_errors
def login(
    url: str = typer.Option(LOCAL, "--url", help="The gateway's base URL (e.g. https://gatehouse.internal:8080), or "
                                                 "'local' for this machine's store."),
    key_stdin: bool = typer.Option(False, "--key-stdin", help="Read the admin key from standard input."),
    print_key: bool = typer.Option(False, "--print-key", help="Print your own key instead of keeping it in the "
                                                            "profile (for GATEHOUSE_ADMIN_KEY in scripts)."),
) -> None:
    """Sign in with your admin key: kept in $GATEHOUSE_HOME/profile.json (0600) for later commands.
    A key someone else issued you (an enrolment key) is exchanged, once, for one of your own."""
    config = settings()
    key = sys.stdin.readline().strip() if key_stdin else typer.prompt("admin key", hide_input=True).strip()
    plane = ControlPlane(http_client(config, url.rstrip("/"), key))
    me = plane.get("/admin/whoami")
    if me.get("enrolment"):  # issued by someone else: exchanged, once, for a key only this shell sees
        own = plane.post("/admin/admin-keys/redeem")
        err_console.print(f"exchanged the enrolment key {safe(me['key_id'])} for your own admin key {safe(own['key_id'])} "
                          f"(expires {safe(own['expires_at'])})", highlight=False)
        key = own["key"]
    if print_key:
        print(key)
        return
    path = write_profile(config, Profile(url.rstrip("/"), key))
    console.print(f"signed in as [bold]{safe(me['email'])}[/] ({safe(', '.join(me['roles']) or 'no roles')}); profile {safe(path)}",
                  highlight=False)


@app.command()
@handles_errors
def logout() -> None:
    """Forget the saved admin key (revoke it with `gatehouse person revoke-admin-key` if it may have leaked)."""
    path = profile_path(settings())
    path.unlink(missing_ok=True)
    console.print(f"signed out ({safe(path)} removed)", highlight=False)


@app.command()
@handles_errors
def whoami(json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Who the control plane says you are: the person your admin key belongs to, and their roles."""
    me = control_plane().get("/admin/whoami")
    if json:
        print_json(me)
    else:
        console.print(f"{safe(me['email'])} ({safe(', '.join(me['roles']) or 'no roles')}), admin key {safe(me['key_id'])}",
                      highlight=False)


def _serve(config: Settings, host: str, port: int, workers: int, log_level: str) -> None:
    import uvicorn

    from gatehouse.app.server import TimedHttpProtocol  # lazy: uvicorn's protocol; only `serve` needs it
    from gatehouse.engines.build import build_engines, engine_problems  # lazy: loads llama.cpp; only `serve` needs it

    config.pepper()  # created here, once, rather than raced for by the workers
    spool.prepare(config.spool_path)  # private, or one clear line here rather than in every worker
    open_db().dispose()
    db = Database(config.database_url)
    change_control.expire_break_glass(db)
    try:
        loaded = load_policy(config.policy_path)
    except PolicyError as exc:
        if versions.active_policy(db) is None:
            raise  # nothing else to serve: the file's problems are the answer
        err_console.print(f"[bold yellow]warning:[/] {safe(exc.source)} is not a valid policy ({len(exc.problems)} problem(s); "
                          "`gatehouse policy validate`); serving the active version from the store", highlight=False)
        loaded = None
    outcome = change_control.activate_served_file(db, local_actor(), loaded, str(config.policy_path)) if loaded else "invalid"
    current = versions.active_policy(db)
    db.dispose()
    if current is None:  # only when the file is invalid and nothing was ever active, which raised above
        raise GatehouseError("no policy version is active")
    active, activation = current
    if outcome == "activated" and loaded is not None:
        err_console.print(f"policy {safe(loaded.version)} is now active (recorded in the audit log)")
    elif outcome == "differs" and loaded is not None:
        err_console.print(
            f"[bold yellow]warning:[/] {safe(config.policy_path)} ({safe(loaded.short_version)}) is not the active policy and is "
            f"not enforced; serving the active version {safe(active.short_version)}. Changes go through "
            f"`gatehouse policy propose {safe(config.policy_path)} -m WHY`, approval by another person, then "
            "`gatehouse policy apply`.", highlight=False)
    if activation.kind == "break-glass":
        err_console.print(f"[bold red]break-glass policy {safe(active.short_version)} in force until {safe(activation.expires_at)}[/]",
                          highlight=False)
    # Fail here, with one clear line, rather than in every worker: an embedded model that cannot
    # be found. A deployment whose credential is missing or invalid is served as unavailable (its
    # route falls back past it): said here, once.
    engines, _ = build_engines(active.document.deployments, config)
    for problem in engine_problems(engines).values():
        err_console.print(f"[bold yellow]warning:[/] {safe(problem)}", highlight=False)
    CompiledPolicy(active).prepare(config.home)  # and the injection classifiers it names

    # Workers are separate processes: they read the same settings from the environment.
    os.environ["GATEHOUSE_HOME"] = str(config.home)
    os.environ["GATEHOUSE_DATABASE_URL"] = config.database_url
    os.environ["GATEHOUSE_POLICY"] = str(config.policy_path)
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from gatehouse.telemetry.exposition import prepare_multiprocess  # lazy: before prometheus_client loads

        prepare_multiprocess(config.home / "run" / f"metrics-{port}")  # /metrics adds up every worker
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("httpx", "httpcore"):  # they log every request's full URL at INFO: a webhook's credentials
        logging.getLogger(chatty).setLevel(logging.WARNING)
    # header and body read timeouts (GATEHOUSE_HEADER_TIMEOUT, GATEHOUSE_BODY_TIMEOUT): 408, never a held connection
    uvicorn.run("gatehouse.app:create_app", factory=True, host=host, port=port, workers=workers,
                log_level=log_level, timeout_graceful_shutdown=30, access_log=False, server_header=False,
                timeout_worker_healthcheck=WORKER_HEALTHCHECK, http=TimedHttpProtocol)


# Seconds a worker may take to answer the supervisor's ping, starting up included (importing,
# loading the model). uvicorn's 5 s kills and respawns workers that start slowly on a busy or
# small machine, over and over; a hung worker is replaced after this long instead.
WORKER_HEALTHCHECK = 60


HostOption = typer.Option("127.0.0.1", "--host", help="Address to listen on.")
PortOption = typer.Option(8080, "--port", help="Port to listen on.", min=1, max=65535)
WorkersOption = typer.Option(1, "--workers", help="Worker processes (each loads the embedded model).", min=1)
LogOption = typer.Option("info", "--log-level", help="debug, info, warning or error.")


@app.command()
@handles_errors
def serve(
    policy_file: Path = typer.Option(None, "--policy", help="Policy file (default: $GATEHOUSE_HOME/policy.yaml)."),
    host: str = HostOption,
    port: int = PortOption,
    workers: int = WorkersOption,
    log_level: str = LogOption,
) -> None:
    """Serve the OpenAI-compatible API (/v1/chat/completions, /v1/completions, /v1/models, …)."""
    config = settings()
    if policy_file is not None:
        config = dataclasses.replace(config, policy_path=policy_file.resolve())
    _serve(config, host, port, workers, log_level)


DEMO_OWNER = "demo-owner@example.com"
DEMO_ADMIN = "demo-admin@example.com"
DEMO_IDENTITY = "demo-app"


@app.command()
@handles_errors
def demo(host: str = HostOption, port: int = PortOption, workers: int = WorkersOption,
         log_level: str = LogOption) -> None:
    """Set up a demo person, identity and key, print how to call it, and serve."""

    config = settings()
    _initialise(config, quiet=True)
    with open_db().read() as session:
        fresh = not is_bootstrapped(session)
    if fresh:  # a single developer's machine: the demo's admin is signed in through the profile
        appointment = bootstrap(open_db(), local_actor(), DEMO_ADMIN, pepper=config.pepper(), ttl=config.max_key_ttl)
        write_profile(config, Profile(LOCAL, appointment.admin_key))
    plane = control_plane()
    for path, body in (("/admin/people", {"email": DEMO_OWNER, "team": "demo", "name": "Demo Owner"}),
                       ("/admin/identities", {"name": DEMO_IDENTITY, "owner": DEMO_OWNER, "environment": "dev",
                                              "purpose": "the make demo walkthrough"})):
        try:
            plane.post(path, body)
        except ApiFailure as exc:
            if exc.code != "conflict":
                raise
    if plane.get(f"/admin/identities/{DEMO_IDENTITY}")["status"] != "active":
        raise GatehouseError(f"identity {DEMO_IDENTITY} is not active; resume it or remove {config.home}")
    issued = plane.post(f"/admin/identities/{DEMO_IDENTITY}/keys", {"ttl": "7d"})
    credential_id, key = issued["key_id"], issued["key"]
    base = f"http://{host}:{port}/v1"
    console.rule("[bold]Gatehouse demo")
    console.print(f"identity [bold]{DEMO_IDENTITY}[/] (owner {DEMO_OWNER}), key id {credential_id}, expires in 7 days")
    console.print(f"\n[bold]API key[/] (shown once):\n{key}\n", highlight=False, soft_wrap=True)
    console.print("[bold]curl[/]", highlight=False)
    console.print(
        f"curl -s {base}/chat/completions -H 'Authorization: Bearer {key}' "
        "-H 'Content-Type: application/json' "
        "-d '{\"model\": \"chat-small\", \"messages\": [{\"role\": \"user\", \"content\": \"Say hello\"}], "
        "\"max_tokens\": 32}'\n", highlight=False, markup=False, soft_wrap=True)
    console.print("[bold]OpenAI SDK[/] (pip install openai)", highlight=False)
    console.print(
        "from openai import OpenAI\n"
        f"client = OpenAI(base_url=\"{base}\", api_key=\"{key}\")\n"
        "print(client.models.list())\n"
        "reply = client.chat.completions.create(model=\"chat-small\", max_tokens=32,\n"
        "    messages=[{\"role\": \"user\", \"content\": \"Say hello\"}])\n"
        "print(reply.choices[0].message.content)\n", highlight=False, markup=False, soft_wrap=True)
    console.print(f"serving on http://{host}:{port} — Ctrl-C to stop", highlight=False)
    console.rule()
    _serve(config, host, port, workers, log_level)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
