"""`POST /api/agent/initiate` with files: they land in the new project's /workspace before the
run is accepted, and the prompt lists them (DESIGN.md §4)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from shoal.llm.base import ChatModel
from shoal.llm.scripted import ScriptedChatModel
from shoal.sandbox import ScriptedSandbox
from tests.conftest import TestUser

LIMIT = 2048


@pytest.fixture
def chat_model() -> ChatModel:
    return ScriptedChatModel()  # answers "done": the run never touches the sandbox


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"sandbox_upload_max_bytes": LIMIT}


def _form(prompt: str, *files: tuple[str, bytes]) -> list[tuple[str, Any]]:
    return [("prompt", (None, prompt)), *(("files", (name, data)) for name, data in files)]


async def _initiate(
    client: httpx.AsyncClient, user: TestUser, form: list[tuple[str, Any]], key: str | None = None
) -> httpx.Response:
    headers = {**user.headers, **({"Idempotency-Key": key} if key else {})}
    return await client.post("/api/agent/initiate", files=form, headers=headers)


async def _workspace(
    client: httpx.AsyncClient, user: TestUser, project_id: str
) -> dict[str, bytes]:
    """Every file at the top of the project's /workspace, by absolute path."""
    record = await client.get(f"/api/projects/{project_id}/sandbox", headers=user.headers)
    assert record.status_code == 200, record.text
    sandbox_id = record.json()["sandbox_id"]
    listing = await client.get(f"/api/sandboxes/{sandbox_id}/files", headers=user.headers)
    assert listing.status_code == 200, listing.text
    out = {}
    for entry in listing.json()["files"]:
        content = await client.get(
            f"/api/sandboxes/{sandbox_id}/files/content",
            params={"path": entry["path"]},
            headers=user.headers,
        )
        out[entry["path"]] = content.content
    return out


async def _first_user_message(client: httpx.AsyncClient, user: TestUser, thread_id: str) -> str:
    response = await client.get(f"/api/threads/{thread_id}/messages", headers=user.headers)
    assert response.status_code == 200, response.text
    users = [m for m in response.json()["messages"] if m["type"] == "user"]
    assert len(users) == 1
    content = users[0]["content"]["content"]
    assert isinstance(content, str)
    return content


async def _projects(client: httpx.AsyncClient, user: TestUser) -> list[str]:
    response = await client.get("/api/projects", headers=user.headers)
    return [p["project_id"] for p in response.json()["projects"]]


async def test_files_land_in_the_workspace_and_the_prompt(
    client: httpx.AsyncClient, user: TestUser
) -> None:
    response = await _initiate(
        client,
        user,
        _form("summarise these", ("notes.txt", b"first file"), ("data.csv", b"a,b\n1,2\n")),
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert await _workspace(client, user, body["project_id"]) == {
        "/workspace/notes.txt": b"first file",
        "/workspace/data.csv": b"a,b\n1,2\n",
    }
    prompt = await _first_user_message(client, user, body["thread_id"])
    assert prompt.startswith("summarise these")
    assert "[Uploaded File: /workspace/notes.txt]" in prompt
    assert "[Uploaded File: /workspace/data.csv]" in prompt


async def test_path_like_file_names_keep_only_the_base_name(
    client: httpx.AsyncClient, user: TestUser
) -> None:
    response = await _initiate(
        client,
        user,
        _form("look", ("../../x.txt", b"x"), ("..\\..\\win.txt", b"w"), ("/etc/abs.txt", b"a")),
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert await _workspace(client, user, body["project_id"]) == {
        "/workspace/x.txt": b"x",
        "/workspace/win.txt": b"w",
        "/workspace/abs.txt": b"a",
    }
    prompt = await _first_user_message(client, user, body["thread_id"])
    for name in ("x.txt", "win.txt", "abs.txt"):
        assert f"[Uploaded File: /workspace/{name}]" in prompt
    assert ".." not in prompt and "/etc" not in prompt


async def test_initiate_without_files_has_no_listing(
    client: httpx.AsyncClient, user: TestUser
) -> None:
    response = await _initiate(client, user, _form("just talk"))
    assert response.status_code == 202, response.text
    assert await _first_user_message(client, user, response.json()["thread_id"]) == "just talk"


async def test_idempotency_covers_the_files(client: httpx.AsyncClient, user: TestUser) -> None:
    form = _form("build", ("spec.md", b"# spec"), ("logo.svg", b"<svg/>"))
    first = await _initiate(client, user, form, key="files-1")
    assert first.status_code == 202, first.text
    again = await _initiate(client, user, form, key="files-1")
    assert again.status_code == 202
    assert again.json() == first.json()
    assert await _projects(client, user) == [first.json()["project_id"]]

    changed = _form("build", ("spec.md", b"# other spec"), ("logo.svg", b"<svg/>"))
    conflict = await _initiate(client, user, changed, key="files-1")
    assert conflict.status_code == 409, conflict.text
    assert conflict.json()["code"] == "idempotency_conflict"
    fewer = await _initiate(client, user, _form("build", ("spec.md", b"# spec")), key="files-1")
    assert fewer.status_code == 409
    assert await _projects(client, user) == [first.json()["project_id"]]
    # the first request's files are untouched
    assert (await _workspace(client, user, first.json()["project_id"]))[
        "/workspace/spec.md"
    ] == b"# spec"


async def test_bad_uploads_create_nothing(client: httpx.AsyncClient, user: TestUser) -> None:
    too_big = await _initiate(client, user, _form("p", ("big.bin", b"x" * (LIMIT + 1))))
    assert too_big.status_code == 413, too_big.text
    assert too_big.json()["code"] == "payload_too_large"
    far_too_big = await _initiate(client, user, _form("p", ("big.bin", b"x" * 300_000)))
    assert far_too_big.status_code == 413
    for name in ("..", ".", "dir/"):
        nameless = await _initiate(client, user, _form("p", (name, b"x")))
        assert nameless.status_code in (400, 422), (name, nameless.text)
        assert nameless.status_code != 500
    assert await _projects(client, user) == []


async def test_a_refused_start_leaves_no_sandbox_behind(
    app: Any, client: httpx.AsyncClient, user: TestUser
) -> None:
    form = [
        *_form("p", ("a.txt", b"a")),
        ("agent_id", (None, "00000000-0000-4000-8000-000000000000")),
    ]
    refused = await _initiate(client, user, form)
    assert refused.status_code == 404, refused.text
    assert await _projects(client, user) == []
    provider = app.state.sandboxes.provider
    assert isinstance(provider, ScriptedSandbox)
    assert provider._boxes == {}  # created for the upload, deleted with the refusal


async def test_bad_form_fields_are_422_with_the_field_named(
    client: httpx.AsyncClient, user: TestUser
) -> None:
    for field, value, named in (
        ("metadata", "{not json", "metadata"),
        ("metadata", "[1, 2]", "metadata"),
        ("max_iterations", "0", "max_iterations"),
        ("reasoning_effort", "extreme", "reasoning_effort"),
    ):
        form = [*_form("p"), (field, (None, value))]
        response = await _initiate(client, user, form)
        assert response.status_code == 422, (field, value, response.text)
        body = response.json()
        assert body["code"] == "validation_error"
        assert body["detail"].startswith(f"{named}:"), body
        assert body["errors"][0]["loc"][:2] == ["body", named]
    assert await _projects(client, user) == []
