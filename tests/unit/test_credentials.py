"""Gatehouse's own secrets never become an upstream's credential."""

from pathlib import Path

import pytest

from gatehouse.core.errors import GatehouseError
from gatehouse.engines.credentials import resolve_credential
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
