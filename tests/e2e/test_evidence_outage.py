"""Evidence under an unlucky operator's day, through real gateways on a real PostgreSQL server:
the store stopped for 8 s under load through two replicas, a replica SIGKILLed mid-load, and a
worker cut off from the store for longer than its staleness bound (issue 15)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from gatehouse.identity import service
from gatehouse.store.db import Database
from gatehouse.store.models import DecisionRecord

from gateway_support import ACTOR, Deployment, mock_route_policy, wait_until_accepted
from helpers import start_gateway
from postgres import PostgresServer

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def store() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this module's own: its tests stop and start it."""
    server = PostgresServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def home(tmp_path_factory, store, mock, shared_models_dir) -> Deployment:
    deployment = Deployment(tmp_path_factory.mktemp("outage") / "home", mock_route_policy(mock.url, "ok"),
                            shared_models_dir, database_url=store.create_database())
    deployment.identity("load-app")
    return deployment


def replica_env(home: Deployment, name: str, **extra: str) -> dict[str, str]:
    """Another machine's gateway on the same store: its own home (and spool), the shared secrets."""
    other = home.home.parent / name
    if not other.exists():
        other.mkdir()
        shutil.copy(home.home / "policy.yaml", other / "policy.yaml")
        (other / "models").symlink_to((home.home / "models").resolve(), target_is_directory=True)
    return {**home.env, "GATEHOUSE_HOME": str(other),
            "GATEHOUSE_AUDIT_SIGNING_KEY": str(home.home / "audit-signing-key"), **extra}


class Load:
    """Client threads sending chat completions round-robin to the replicas; every answer's
    request id is kept (an answered request is one that came back with an id)."""

    def __init__(self, urls: list[str], key: str, threads: int = 4) -> None:
        self.urls, self.key = urls, key
        self.answered: list[str] = []
        self.statuses: dict[int, int] = {}
        self.failures = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(threads)]

    def _run(self, n: int) -> None:
        body = {"model": "chat", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}
        with httpx.Client(timeout=10, headers={"authorization": f"Bearer {self.key}"}) as client:
            turn = n
            while not self._stop.is_set():
                url = self.urls[turn % len(self.urls)]
                turn += 1
                try:
                    response = client.post(f"{url}/v1/chat/completions", json=body)
                except httpx.HTTPError:
                    self.failures += 1  # a replica being killed: no answer, so no record owed
                    time.sleep(0.01)
                    continue
                self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
                if "x-gatehouse-request-id" in response.headers:
                    self.answered.append(response.headers["x-gatehouse-request-id"])

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def records_of(db: Database, ids: list[str]) -> tuple[int, int]:
    """How many of ``ids`` the store holds, and how many rows it has for them in all."""
    with db.read() as session:
        found = 0
        for start in range(0, len(ids), 1000):
            chunk = ids[start:start + 1000]
            found += session.execute(select(func.count()).select_from(DecisionRecord)
                                     .where(DecisionRecord.request_id.in_(chunk))).scalar_one()
        return found, session.execute(select(func.count()).select_from(DecisionRecord)).scalar_one()


def wait_for_records(db: Database, ids: list[str], timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while True:
        found, _ = records_of(db, ids)
        if found == len(ids) or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def test_the_store_stopped_for_8_s_under_load_through_two_replicas_loses_no_record(home, store, logs):
    key = home.key("load-app")
    first = start_gateway(home.env, logs, name="replica-a")
    second = start_gateway(replica_env(home, "replica-b"), logs, name="replica-b")
    try:
        for gateway in (first, second):
            wait_until_accepted(gateway, key)
        before = records_of(home.db, [])[1]
        with Load([first.url, second.url], key) as load:
            time.sleep(2)
            store.pause()
            try:
                time.sleep(8)
                during = len(load.answered)
                health = httpx.get(f"{first.url}/healthz").json()
                admin = httpx.get(f"{first.url}/admin/people", timeout=30,
                                  headers={"authorization": f"Bearer {home.admin_key}"})
            finally:
                store.resume()
            time.sleep(2)
        answered = load.answered
        assert load.statuses.get(200, 0) == len(answered) and during > 50  # it kept serving through the outage
        assert not health["evidence"]["store_reachable"] and health["evidence"]["spool_bytes"] > 0
        assert admin.status_code == 503 and admin.json()["error"]["code"] == "store_unavailable"  # not a 500
        assert wait_for_records(home.db, answered) == len(answered)
        found, total = records_of(home.db, answered)
        assert found == len(answered) and total - before == len(answered)  # exactly one each, none extra
        assert httpx.get(f"{first.url}/healthz").json()["evidence"]["spool_bytes"] == 0
    finally:
        first.stop()
        second.stop()


def test_a_replica_sigkilled_mid_load_loses_no_record_of_what_it_answered(home, logs):
    key = home.key("load-app")
    victim_env = replica_env(home, "replica-c")
    victim = start_gateway(victim_env, logs, name="replica-c")
    other = start_gateway(replica_env(home, "replica-d"), logs, name="replica-d")
    try:
        for gateway in (victim, other):
            wait_until_accepted(gateway, key)
        before = records_of(home.db, [])[1]
        with Load([victim.url, other.url], key) as load:
            time.sleep(3)
            os.killpg(victim.process.pid, signal.SIGKILL)  # no shutdown: whatever the spool holds is all there is
            victim.process.wait()
            time.sleep(1)
        spooled = list((Path(victim_env["GATEHOUSE_HOME"]) / "spool").glob("*/*.spool"))  # one folder per installation
        assert spooled, "the killed replica left nothing in its spool: this test would prove nothing"
        restarted = start_gateway(victim_env, logs, name="replica-c-again")  # claims the dead worker's segments
        try:
            assert wait_for_records(home.db, load.answered) == len(load.answered)
            found, total = records_of(home.db, load.answered)
            # every answer has its record; a request the kill cut off mid-answer may have one too
            assert found == len(load.answered) and 0 <= total - before - len(load.answered) <= 4
        finally:
            restarted.stop()
    finally:
        victim.stop()
        other.stop()


class Cuttable:
    """A TCP proxy between a gateway and the store that a test can cut (a network partition:
    the store is up for everyone else) and restore."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.cut_off = threading.Event()
        self._links: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            client, _ = self.server.accept()
            if self.cut_off.is_set():
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self._links += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        self.cut_off.set()
        for link in self._links:
            try:
                link.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._links.clear()

    def restore(self) -> None:
        self.cut_off.clear()


def test_past_the_staleness_bound_a_worker_refuses_and_revocations_made_meanwhile_hold_when_it_is_back(
        home, store, logs):
    proxy = Cuttable(store.port)
    url = home.env["GATEHOUSE_DATABASE_URL"].replace(f":{store.port}/", f":{proxy.port}/")
    env = replica_env(home, "replica-e", GATEHOUSE_DATABASE_URL=url, GATEHOUSE_MAX_STALENESS="2")
    kept, revoked = home.key("load-app"), home.key("load-app")
    gateway = start_gateway(env, logs, name="replica-e")
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}

    def ask(key: str) -> httpx.Response:
        return httpx.post(f"{gateway.url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"},
                          timeout=10)

    try:
        for key in (kept, revoked):
            wait_until_accepted(gateway, key)
        proxy.cut()
        assert ask(revoked).status_code == 200  # within the bound: it serves what it last saw
        revoked_id = revoked.split("_")[1]
        service.revoke_key(home.db, ACTOR, revoked_id)  # through the store directly: it is up for everyone else
        time.sleep(3)
        refused = ask(revoked)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "control_plane_unreachable"
        assert ask(kept).status_code == 503
        assert httpx.get(f"{gateway.url}/v1/models", headers={"authorization": f"Bearer {kept}"}).status_code == 503
        health = httpx.get(f"{gateway.url}/healthz")
        assert health.status_code == 503 and health.json()["status"] == "control_plane_unreachable"
        proxy.restore()
        deadline = time.monotonic() + 20
        while ask(kept).status_code != 200:
            assert time.monotonic() < deadline, "the worker never came back after the partition"
            time.sleep(0.2)
        after = ask(revoked)
        assert after.status_code == 401 and after.json()["error"]["code"] == "revoked_api_key"
        assert httpx.get(f"{gateway.url}/healthz").json()["status"] == "ok"
    finally:
        proxy.restore()
        gateway.stop()


def test_at_the_spool_s_bound_refuse_mode_answers_nothing_it_cannot_record_and_recovers(home, store, logs):
    key = home.key("load-app")
    env = replica_env(home, "replica-f", GATEHOUSE_SPOOL_MAX_BYTES="20000", GATEHOUSE_MAX_STALENESS="120")
    gateway = start_gateway(env, logs, name="replica-f")
    body = {"model": "chat", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}
    answered: list[str] = []
    try:
        wait_until_accepted(gateway, key)
        store.pause()
        try:
            with httpx.Client(timeout=10, headers={"authorization": f"Bearer {key}"}) as client:
                for _ in range(200):
                    response = client.post(f"{gateway.url}/v1/chat/completions", json=body)
                    if response.status_code == 503:
                        refusal = response.json()["error"]
                        break
                    assert response.status_code == 200
                    answered.append(response.headers["x-gatehouse-request-id"])
                else:
                    raise AssertionError("the spool never reached its bound")
                health = client.get(f"{gateway.url}/healthz")
        finally:
            store.resume()
        assert refusal["code"] == "evidence_unavailable" and "x-gatehouse-request-id" in response.headers
        assert health.status_code == 503 and health.json()["status"] == "evidence_unavailable"
        assert 10 < len(answered) < 200
        assert wait_for_records(home.db, answered) == len(answered)  # everything answered was kept
        deadline = time.monotonic() + 20
        while httpx.get(f"{gateway.url}/healthz").status_code != 200:
            assert time.monotonic() < deadline, "the gateway never drained its spool"
            time.sleep(0.2)
        again = httpx.post(f"{gateway.url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"})
        assert again.status_code == 200
    finally:
        gateway.stop()
