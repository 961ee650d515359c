"""`shoal users create` and `shoal api-keys create` (typer's CliRunner)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from shoal.cli import app as cli
from shoal.config import Settings

runner = CliRunner()


def _env(data_dir: Path, database_url: str | None = None) -> dict[str, str]:
    env = {"SHOAL_DATA_DIR": str(data_dir), "SHOAL_AUTH_MODE": "builtin"}
    env["SHOAL_DATABASE_URL"] = database_url or f"sqlite:///{data_dir / 'shoal.db'}"
    return env


def _email() -> str:
    return f"cli-{uuid.uuid4().hex[:8]}@example.com"


def test_users_create_on_a_fresh_data_dir_migrates_and_refuses_duplicates(tmp_path: Path) -> None:
    env = _env(tmp_path / "fresh")
    email = _email()
    result = runner.invoke(
        cli, ["users", "create", "--email", email, "--password", "s3cret-pw"], env=env
    )
    assert result.exit_code == 0, result.output
    assert "created user" in result.output and email in result.output
    assert (tmp_path / "fresh" / "shoal.db").exists()
    again = runner.invoke(
        cli, ["users", "create", "--email", email.upper(), "--password", "s3cret-pw"], env=env
    )
    assert again.exit_code == 1
    assert "already exists" in again.output
    assert "Traceback" not in again.output


def test_users_create_prompts_for_a_hidden_password(tmp_path: Path) -> None:
    env = _env(tmp_path)
    result = runner.invoke(
        cli, ["users", "create", "--email", _email()], input="typed-pw\ntyped-pw\n", env=env
    )
    assert result.exit_code == 0, result.output
    assert "Password" in result.output
    assert "typed-pw" not in result.output  # hidden


def test_users_create_explains_a_weak_password(tmp_path: Path) -> None:
    result = runner.invoke(
        cli, ["users", "create", "--email", _email(), "--password", "abc"], env=_env(tmp_path)
    )
    assert result.exit_code == 1
    assert "at least 6 characters" in result.output


def test_api_keys_create_explains_unknown_user_and_account(tmp_path: Path) -> None:
    env = _env(tmp_path)
    unknown = runner.invoke(cli, ["api-keys", "create", "--email", "ghost@example.com"], env=env)
    assert unknown.exit_code == 1 and "no user" in unknown.output
    email = _email()
    assert (
        runner.invoke(
            cli, ["users", "create", "--email", email, "--password", "pw-pw-pw"], env=env
        ).exit_code
        == 0
    )
    foreign = runner.invoke(
        cli, ["api-keys", "create", "--email", email, "--account-id", str(uuid.uuid4())], env=env
    )
    assert foreign.exit_code == 1 and "not a member" in foreign.output
    bad = runner.invoke(cli, ["api-keys", "create", "--email", email, "--account-id", "x"], env=env)
    assert bad.exit_code == 1 and "not an account id" in bad.output


async def test_cli_user_signs_in_and_cli_key_works(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    env = _env(settings.data_dir, settings.effective_database_url)
    email = _email()
    created = await asyncio.to_thread(
        runner.invoke,
        cli,
        ["users", "create", "--email", email, "--password", "from-the-cli"],
        env=env,
    )
    assert created.exit_code == 0, created.output
    signed_in = await client.post(
        "/auth/v1/token",
        params={"grant_type": "password"},
        json={"email": email, "password": "from-the-cli"},
    )
    assert signed_in.status_code == 200, signed_in.text
    user_id = signed_in.json()["user"]["id"]

    made = await asyncio.to_thread(
        runner.invoke, cli, ["api-keys", "create", "--email", email, "--name", "ops"], env=env
    )
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip().splitlines()[-1]
    assert secret.startswith("shoal_sk_")
    assert "not shown again" in made.output
    response = await client.get("/api/accounts", headers={"X-API-Key": secret})
    assert response.status_code == 200
    assert [a["account_id"] for a in response.json()["accounts"]] == [user_id]
    keys = await client.get(
        "/api/api-keys", headers={"Authorization": f"Bearer {signed_in.json()['access_token']}"}
    )
    assert [k["name"] for k in keys.json()["api_keys"]] == ["ops"]


@pytest.mark.parametrize("role", ["member"])
async def test_cli_key_for_a_team_needs_an_owner(
    client: httpx.AsyncClient, settings: Settings, role: str
) -> None:
    env = _env(settings.data_dir, settings.effective_database_url)
    owner, member = _email(), _email()
    for email in (owner, member):
        result = await asyncio.to_thread(
            runner.invoke,
            cli,
            ["users", "create", "--email", email, "--password", "pw-pw-pw"],
            env=env,
        )
        assert result.exit_code == 0, result.output
    tokens = {}
    for email in (owner, member):
        response = await client.post(
            "/auth/v1/token",
            params={"grant_type": "password"},
            json={"email": email, "password": "pw-pw-pw"},
        )
        tokens[email] = response.json()
    headers = {"Authorization": f"Bearer {tokens[owner]['access_token']}"}
    team = (await client.post("/api/accounts", json={"name": "T"}, headers=headers)).json()[
        "account_id"
    ]
    added = await client.post(
        f"/api/accounts/{team}/members",
        json={"user_id": tokens[member]["user"]["id"], "role": role},
        headers=headers,
    )
    assert added.status_code == 201
    refused = await asyncio.to_thread(
        runner.invoke, cli, ["api-keys", "create", "--email", member, "--account-id", team], env=env
    )
    assert refused.exit_code == 1 and "Only owners" in refused.output
    allowed = await asyncio.to_thread(
        runner.invoke, cli, ["api-keys", "create", "--email", owner, "--account-id", team], env=env
    )
    assert allowed.exit_code == 0, allowed.output
