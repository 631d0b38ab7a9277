"""Gatehouse's own secrets never become an upstream's credential, whichever way the reference
is spelt: a relative path, a file of Gatehouse's outside its home, a path with a NUL. (Links and
``~`` are tested where a proposal is refused: tests/integration/test_credential_references.py.)"""

from datetime import timedelta
from pathlib import Path

import pytest

from gatehouse.core.config import Settings
from gatehouse.core.errors import GatehouseError
from gatehouse.engines.credentials import CredentialProblem, credential_problem, own_files, resolve_credential
from gatehouse.engines.spec import CredentialRef


def test_own_settings_and_home_files_are_refused(tmp_path: Path, monkeypatch):
    home = tmp_path / "home"
    (home / "credentials").mkdir(parents=True)
    (home / "pepper").write_text("the pepper")
    (home / "credentials" / "vllm").write_text("upstream-secret\n")
    monkeypatch.setenv("GATEHOUSE_PEPPER", "p")
    monkeypatch.setenv("VLLM_KEY", "k")
    with pytest.raises(GatehouseError, match="GATEHOUSE_\\* variables are Gatehouse's own"):
        resolve_credential("d", CredentialRef(env="GATEHOUSE_PEPPER"), home)
    with pytest.raises(GatehouseError, match="files in .* are Gatehouse's own"):
        resolve_credential("d", CredentialRef(file=str(home / "credentials" / ".." / "pepper")), home)
    assert resolve_credential("d", CredentialRef(file=str(home / "credentials" / "vllm")), home) == "upstream-secret"
    assert resolve_credential("d", CredentialRef(env="VLLM_KEY"), home) == "k"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    (home / "credentials").mkdir(parents=True)
    (home / "pepper").write_text("the pepper")
    (home / "audit-signing-key").write_text("the signing key")
    return home


def refused(ref: CredentialRef, home: Path, **kwargs) -> str:
    problem = credential_problem(ref, home, **kwargs)
    assert problem is not None, f"{ref} was accepted"
    return problem


def test_a_relative_path_is_refused_even_where_it_would_miss_the_home(home: Path, monkeypatch):
    monkeypatch.chdir(home)
    for relative in ("pepper", "credentials/vllm", "./x", "$GATEHOUSE_HOME/pepper", "~nosuchuser-gatehouse/x"):
        assert "must be an absolute path" in refused(CredentialRef(file=relative), home)
    assert "must be an absolute path" in refused(CredentialRef(file="pepper"), None)  # at any check, home or not


def test_own_files_outside_the_home_are_refused(home: Path, tmp_path: Path):
    key, spool = tmp_path / "keys" / "audit.key", tmp_path / "spool"
    settings = Settings(home, f"sqlite:///{tmp_path / 'store.db'}", home / "policy.yaml", timedelta(days=1), 1 << 20,
                        audit_key_path=key, spool_dir=spool)
    reserved = own_files(settings)
    for path in (key, spool / "records-1.log", tmp_path / "store.db"):
        assert "it is Gatehouse's own" in refused(CredentialRef(file=str(path)), home, reserved=reserved)
    assert credential_problem(CredentialRef(file=str(tmp_path / "keys" / "vllm")), home, reserved=reserved) is None
    with pytest.raises(CredentialProblem, match="deployment 'd': a credential cannot be read"):
        resolve_credential("d", CredentialRef(file=str(key)), home, reserved=reserved)


def test_a_path_with_a_nul_is_refused_not_a_crash(home: Path):
    assert "NUL" in refused(CredentialRef(file="/run/secrets/x\x00y"), home)
