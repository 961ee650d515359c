"""Daytona specifics the conformance suite does not cover: what reaches the API, how its errors
read, the fake's own strictness, and ``build_provider``. The real SDK talks to FakeDaytona."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from shoal.config import Settings
from shoal.errors import BadRequest
from shoal.sandbox import (
    SandboxError,
    SandboxNotFound,
    SandboxNotRunning,
    SandboxSpec,
    SandboxUnavailable,
    build_provider,
)
from shoal.sandbox.base import FileNotFoundInSandbox
from shoal.sandbox.daytona import DaytonaOptions, DaytonaProvider
from shoal.sandbox.daytona_fake import FakeDaytona
from shoal.sandbox.daytona_wire import StreamDemux, unwrap_command, wrap_command
from tests.sandbox.conftest import daytona_provider, scripted_sandbox


@pytest.fixture
def fake() -> Iterator[FakeDaytona]:
    with FakeDaytona(scripted_sandbox()) as server:
        yield server


@pytest.fixture
async def provider(fake: FakeDaytona) -> AsyncIterator[DaytonaProvider]:
    made = daytona_provider(fake)
    yield made
    await made.aclose()


def _creates(fake: FakeDaytona) -> list[dict[str, Any]]:
    return [
        body for method, path, body in fake.requests if (method, path) == ("POST", "/api/sandbox")
    ]


# -- the fake is strict ------------------------------------------------------------------------


async def test_the_fake_rejects_bodies_the_sdk_models_reject(fake: FakeDaytona) -> None:
    auth = {"Authorization": f"Bearer {fake.api_key}"}
    async with httpx.AsyncClient(base_url=fake.url, headers=auth) as client:
        bad = await client.post("/api/sandbox", json={"autoStopInterval": "soon"})
        assert bad.status_code == 400
        assert "CreateSandbox" in bad.json()["message"]
        assert (await client.post("/api/sandbox", json=[1, 2])).status_code == 400
        assert (await client.post("/api/sandbox", content=b"{nope")).status_code == 400
        good = await client.post("/api/sandbox", json={"name": "ok1", "labels": {"a": "b"}})
        assert good.status_code == 200
        sandbox_id = good.json()["id"]
        session = f"/toolbox/{sandbox_id}/process/session"
        assert (await client.post(session, json={"sessionId": "s"})).status_code == 201
        missing_command = await client.post(session + "/s/exec", json={"runAsync": True})
        assert missing_command.status_code == 400
        assert "SessionExecuteRequest" in missing_command.json()["message"]
    assert fake.sandboxes[sandbox_id].sessions["s"].commands == []
    unauthenticated = httpx.get(f"{fake.api_url}/sandbox/ok1")
    assert unauthenticated.status_code == 401


async def test_preview_links_need_their_token(provider: DaytonaProvider) -> None:
    info = await provider.create(SandboxSpec())
    await provider.start_session(info.sandbox_id, "web", "python3 -m http.server 8001")
    link = await provider.preview_link(info.sandbox_id, 8001)
    assert link is not None
    assert set(link.headers) == {"x-daytona-preview-token"}
    async with httpx.AsyncClient(timeout=5) as client:
        assert (await client.get(link.url + "/")).status_code == 401
        answer = await client.get(link.url + "/", headers=dict(link.headers))
    assert answer.status_code == 200
    assert "Directory listing" in answer.text
    with pytest.raises(SandboxError, match="preview link"):
        await provider.open_port(info.sandbox_id, 8001)


# -- what reaches Daytona ----------------------------------------------------------------------


async def test_spec_reaches_the_create_request(
    fake: FakeDaytona, provider: DaytonaProvider
) -> None:
    spec = SandboxSpec(
        network="open",
        env={"GREETING": "hi"},
        labels={"project": "p-1", "account": "a-1"},
        auto_stop_minutes=7,
    )
    info = await provider.create(spec, sandbox_id="proj-1")
    assert (info.sandbox_id, info.network, info.provider) == ("proj-1", "open", "daytona")
    assert info.labels == {"project": "p-1", "account": "a-1"}
    [body] = _creates(fake)
    assert body["name"] == "proj-1"
    assert body["env"] == {"GREETING": "hi"}
    assert body["labels"]["project"] == "p-1"
    assert body["labels"]["account"] == "a-1"
    assert body["autoStopInterval"] == 7
    assert body["networkBlockAll"] is False
    assert (await provider.exec("proj-1", "echo $GREETING")).stdout == "hi\n"
    # the same id again is the same sandbox, not a second one
    assert (await provider.create(spec, sandbox_id="proj-1")).sandbox_id == "proj-1"
    assert len(_creates(fake)) == 1


async def test_defaults_snapshot_and_image(fake: FakeDaytona) -> None:
    snap = daytona_provider(fake, snapshot="shoal-base", auto_stop_minutes=9)
    image = daytona_provider(fake, image="python:3.12-slim")
    try:
        await snap.create(SandboxSpec(), sandbox_id="from-snapshot")
        await image.create(SandboxSpec(), sandbox_id="from-image")
        await snap.create(SandboxSpec(image="node:22"), sandbox_id="spec-image")
    finally:
        await snap.aclose()
        await image.aclose()
    by_name = {body["name"]: body for body in _creates(fake)}
    assert by_name["from-snapshot"]["snapshot"] == "shoal-base"
    assert by_name["from-snapshot"]["autoStopInterval"] == 9
    assert by_name["from-snapshot"]["networkBlockAll"] is True
    assert "FROM python:3.12-slim" in by_name["from-image"]["buildInfo"]["dockerfileContent"]
    assert by_name["from-image"]["autoStopInterval"] == 15
    assert "FROM node:22" in by_name["spec-image"]["buildInfo"]["dockerfileContent"]


async def test_exec_sends_cwd_and_env_inside_the_command(
    fake: FakeDaytona, provider: DaytonaProvider
) -> None:
    info = await provider.create(SandboxSpec())
    await provider.write_file(info.sandbox_id, "a b/keep", b"")
    result = await provider.exec(info.sandbox_id, "pwd", cwd="a b", env={"X": "it's"})
    assert result.stdout == "/workspace/a b\n"
    [line] = [body["command"] for _m, path, body in fake.requests if path.endswith("/exec")]
    assert unwrap_command(line) == ("pwd", "/workspace/a b", {"X": "it's"})
    with pytest.raises(BadRequest):
        await provider.exec(info.sandbox_id, "true", env={"BAD NAME": "x"})


# -- errors read as shoal errors ---------------------------------------------------------------


async def test_sdk_errors_map_to_shoal_errors(provider: DaytonaProvider) -> None:
    with pytest.raises(SandboxNotFound):
        await provider.get("no-such-sandbox")  # the API's 404
    info = await provider.create(SandboxSpec())
    with pytest.raises(FileNotFoundInSandbox):
        await provider.read_file(info.sandbox_id, "missing.txt")
    with pytest.raises(FileNotFoundInSandbox):
        await provider.list_files(info.sandbox_id, "no-dir")
    with pytest.raises(FileNotFoundInSandbox):
        await provider.delete_file(info.sandbox_id, "missing.txt")
    await provider.stop(info.sandbox_id)
    with pytest.raises(SandboxNotRunning):
        await provider.preview_link(info.sandbox_id, 8000)
    # file operations start a stopped sandbox on demand (Daytona's toolbox needs it running)
    await provider.write_file(info.sandbox_id, "f.txt", b"x")
    assert (await provider.get(info.sandbox_id)).state == "started"


async def test_bad_credentials_and_unreachable_api_are_unavailable(fake: FakeDaytona) -> None:
    wrong_key = DaytonaProvider(DaytonaOptions(api_key="wrong", api_url=fake.api_url))
    unreachable = DaytonaProvider(DaytonaOptions(api_key="k", api_url="http://127.0.0.1:9/api"))
    try:
        with pytest.raises(SandboxUnavailable, match="DAYTONA_API_KEY"):
            await wrong_key.get("any")
        with pytest.raises(SandboxUnavailable, match="DAYTONA_API_URL"):
            await unreachable.get("any")
    finally:
        await wrong_key.aclose()
        await unreachable.aclose()
    with pytest.raises(SandboxUnavailable, match="DAYTONA_API_KEY"):
        await DaytonaProvider().get("any")


# -- configuration -----------------------------------------------------------------------------


async def test_build_provider_picks_daytona_from_settings(fake: FakeDaytona) -> None:
    settings = Settings(
        sandbox_provider="daytona",
        daytona_api_key=fake.api_key,
        daytona_api_url=fake.api_url,
        daytona_target="eu",
        daytona_snapshot="shoal-snap",
        sandbox_auto_stop_minutes=5,
    )
    made = build_provider(settings)
    assert isinstance(made, DaytonaProvider)
    try:
        await made.create(SandboxSpec(), sandbox_id="via-settings")
    finally:
        await made.aclose()
    [body] = _creates(fake)
    assert (body["snapshot"], body["target"], body["autoStopInterval"]) == ("shoal-snap", "eu", 5)


# -- the wire helpers --------------------------------------------------------------------------


def test_wrapped_commands_round_trip() -> None:
    for command, cwd, env in [
        ("echo 'quoted' \"twice\" $HOME; exit 3", "/workspace", {}),
        ("cat x", "/workspace/with space", {"A": "1", "B": "two words", "C": ""}),
    ]:
        assert unwrap_command(wrap_command(command, cwd, env)) == (command, cwd, env)
    assert unwrap_command("ls -la") is None


def test_stream_demux_splits_markers_across_chunks() -> None:
    demux = StreamDemux()
    assert demux.feed(b"\x01\x01\x01a\n") == [("stdout", "a\n")]  # delivered at once
    assert demux.feed(b"b\x02") == [("stdout", "b")]  # a possible marker start is held
    assert demux.feed(b"\x02\x02err\xc3") == [("stderr", "err")]  # and so is half a character
    assert demux.feed(b"\xa9\x01\x01\x01out") == [("stderr", "é"), ("stdout", "out")]
    assert demux.flush() == []
