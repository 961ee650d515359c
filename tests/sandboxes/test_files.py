"""The files API (DESIGN.md §4, sandbox files) on the scripted provider, both DB backends."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import TestUser
from tests.sandboxes.conftest import new_sandbox, upload

LIMIT = 1024


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"sandbox_upload_max_bytes": LIMIT}


async def _list(
    client: httpx.AsyncClient, user: TestUser, sandbox_id: str, path: str | None = None
) -> httpx.Response:
    params = {} if path is None else {"path": path}
    return await client.get(
        f"/api/sandboxes/{sandbox_id}/files", params=params, headers=user.headers
    )


async def _content(
    client: httpx.AsyncClient,
    user: TestUser | None,
    sandbox_id: str,
    path: str | None,
    **params: str,
) -> httpx.Response:
    query = {**params, **({} if path is None else {"path": path})}
    return await client.get(
        f"/api/sandboxes/{sandbox_id}/files/content",
        params=query,
        headers=user.headers if user else {},
    )


async def _delete(
    client: httpx.AsyncClient, user: TestUser, sandbox_id: str, path: str | None
) -> httpx.Response:
    params = {} if path is None else {"path": path}
    return await client.delete(
        f"/api/sandboxes/{sandbox_id}/files", params=params, headers=user.headers
    )


async def test_upload_list_and_read(client: httpx.AsyncClient, user: TestUser) -> None:
    _, sandbox_id = await new_sandbox(client, user)
    empty = await _list(client, user, sandbox_id)
    assert empty.status_code == 200, empty.text
    assert empty.json() == {"files": []}

    created = await upload(client, user, sandbox_id, "docs/readme.txt", b"hello")
    assert created.status_code == 201, created.text
    assert created.json() == {"path": "/workspace/docs/readme.txt", "size": 5}
    created = await upload(client, user, sandbox_id, "/workspace/top.json", b'{"a": 1}')
    assert created.json() == {"path": "/workspace/top.json", "size": 8}

    root = (await _list(client, user, sandbox_id)).json()["files"]
    assert {(f["name"], f["path"], f["is_dir"]) for f in root} == {
        ("docs", "/workspace/docs", True),
        ("top.json", "/workspace/top.json", False),
    }
    for entry in root:
        assert set(entry) == {"name", "path", "is_dir", "size", "mod_time"}
        assert datetime.fromisoformat(entry["mod_time"]).utcoffset() is not None
    # the same directory however it is named; answers are always absolute
    for form in ("docs", "/workspace/docs", "./docs", "docs/", "/workspace/x/../docs"):
        listing = await _list(client, user, sandbox_id, form)
        assert listing.status_code == 200, (form, listing.text)
        assert listing.json()["files"] == [
            {
                "name": "readme.txt",
                "path": "/workspace/docs/readme.txt",
                "is_dir": False,
                "size": 5,
                "mod_time": listing.json()["files"][0]["mod_time"],
            }
        ]
    for form in ("/workspace", "/workspace/", ".", ""):
        assert (await _list(client, user, sandbox_id, form)).json()["files"] == root

    for form in ("docs/readme.txt", "/workspace/docs/readme.txt"):
        content = await _content(client, user, sandbox_id, form)
        assert content.status_code == 200, content.text
        assert content.content == b"hello"
        assert content.headers["content-type"].startswith("text/plain")
    as_json = await _content(client, user, sandbox_id, "top.json")
    assert as_json.headers["content-type"].startswith("application/json")
    assert as_json.json() == {"a": 1}


async def test_content_types_and_binary_bytes(client: httpx.AsyncClient, user: TestUser) -> None:
    _, sandbox_id = await new_sandbox(client, user)
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    blob = bytes(range(255, -1, -1))
    await upload(client, user, sandbox_id, "pic.png", png)
    await upload(client, user, sandbox_id, "data.unknownext", blob)
    image = await _content(client, user, sandbox_id, "pic.png")
    assert image.headers["content-type"] == "image/png"
    assert image.content == png
    other = await _content(client, user, sandbox_id, "data.unknownext")
    assert other.headers["content-type"] == "application/octet-stream"
    assert other.content == blob
    # never rendered as an active page of the API's origin
    assert image.headers["x-content-type-options"] == "nosniff"


async def test_upload_overwrites_and_creates_parents(
    client: httpx.AsyncClient, user: TestUser
) -> None:
    _, sandbox_id = await new_sandbox(client, user)
    await upload(client, user, sandbox_id, "a/b/c/file.txt", b"first version")
    second = await upload(client, user, sandbox_id, "a/b/c/file.txt", b"v2")
    assert second.status_code == 201
    assert second.json() == {"path": "/workspace/a/b/c/file.txt", "size": 2}
    assert (await _content(client, user, sandbox_id, "a/b/c/file.txt")).content == b"v2"
    for parent, child in (("a", "b"), ("a/b", "c")):
        entries = (await _list(client, user, sandbox_id, parent)).json()["files"]
        assert [(e["name"], e["is_dir"]) for e in entries] == [(child, True)]
    empty = await upload(client, user, sandbox_id, "empty.txt", b"")
    assert empty.status_code == 201 and empty.json()["size"] == 0
    assert (await _content(client, user, sandbox_id, "empty.txt")).content == b""


async def test_delete_file_and_directory(client: httpx.AsyncClient, user: TestUser) -> None:
    _, sandbox_id = await new_sandbox(client, user)
    await upload(client, user, sandbox_id, "keep.txt", b"k")
    await upload(client, user, sandbox_id, "gone.txt", b"g")
    await upload(client, user, sandbox_id, "tree/one.txt", b"1")
    await upload(client, user, sandbox_id, "tree/sub/two.txt", b"2")

    deleted = await _delete(client, user, sandbox_id, "/workspace/gone.txt")
    assert deleted.status_code == 204 and deleted.content == b""
    missing = await _content(client, user, sandbox_id, "gone.txt")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"

    assert (await _delete(client, user, sandbox_id, "tree")).status_code == 204
    for path in ("tree/one.txt", "tree/sub/two.txt"):
        assert (await _content(client, user, sandbox_id, path)).status_code == 404
    assert (await _list(client, user, sandbox_id, "tree")).status_code == 404
    names = [f["name"] for f in (await _list(client, user, sandbox_id)).json()["files"]]
    assert names == ["keep.txt"]
    # deleting again: it is gone
    again = await _delete(client, user, sandbox_id, "gone.txt")
    assert again.status_code == 404 and again.json()["code"] == "not_found"


@pytest.mark.parametrize(
    "path",
    ["..", "../x", "../../etc/passwd", "/etc/passwd", "/workspace/../etc/passwd", "a/../../x",
     "/", "/workspacex/y"],
)  # fmt: skip
async def test_paths_outside_the_workspace_are_refused(
    client: httpx.AsyncClient, user: TestUser, path: str
) -> None:
    _, sandbox_id = await new_sandbox(client, user)
    answers = [
        await _list(client, user, sandbox_id, path),
        await _content(client, user, sandbox_id, path),
        await upload(client, user, sandbox_id, path, b"x"),
        await _delete(client, user, sandbox_id, path),
    ]
    for response in answers:
        assert response.status_code == 400, (response.request.method, response.text)
        assert response.json()["code"] == "path_outside_workspace"


async def test_token_query_parameter_on_content(client: httpx.AsyncClient, user: TestUser) -> None:
    _, sandbox_id = await new_sandbox(client, user)
    await upload(client, user, sandbox_id, "report.txt", b"for the browser")
    with_jwt = await _content(client, None, sandbox_id, "report.txt", token=user.token)
    assert with_jwt.status_code == 200, with_jwt.text
    assert with_jwt.content == b"for the browser"
    # without it the private sandbox does not exist
    assert (await _content(client, None, sandbox_id, "report.txt")).status_code == 404

    key = await client.post("/api/api-keys", json={"name": "k"}, headers=user.headers)
    assert key.status_code == 201, key.text
    secret = key.json()["secret"]
    # an API key works as a header …
    header = await client.get(
        f"/api/sandboxes/{sandbox_id}/files/content",
        params={"path": "report.txt"},
        headers={"X-API-Key": secret},
    )
    assert header.status_code == 200
    # … but never in a URL (it would end up in logs and browser history)
    in_query = await _content(client, None, sandbox_id, "report.txt", token=secret)
    assert in_query.status_code == 401 and in_query.json()["code"] == "unauthorized"
    bad = await _content(client, None, sandbox_id, "report.txt", token="not.a.jwt")
    assert bad.status_code == 401


async def test_uploads_over_the_limit_are_413(client: httpx.AsyncClient, user: TestUser) -> None:
    _, sandbox_id = await new_sandbox(client, user)
    exact = await upload(client, user, sandbox_id, "exact.bin", b"x" * LIMIT)
    assert exact.status_code == 201 and exact.json()["size"] == LIMIT
    # just over the file limit (caught by the route) and far over it (caught before parsing)
    for size in (LIMIT + 1, 512 * 1024):
        response = await upload(client, user, sandbox_id, "big.bin", b"y" * size)
        assert response.status_code == 413, (size, response.text)
        assert response.json()["code"] == "payload_too_large"
    assert (await _content(client, user, sandbox_id, "big.bin")).status_code == 404
    # a too-large overwrite keeps the old file
    assert (
        await upload(client, user, sandbox_id, "exact.bin", b"z" * (LIMIT + 1))
    ).status_code == 413
    assert (await _content(client, user, sandbox_id, "exact.bin")).content == b"x" * LIMIT


async def test_odd_input_is_a_clear_4xx(client: httpx.AsyncClient, user: TestUser) -> None:
    _, sandbox_id = await new_sandbox(client, user)
    await upload(client, user, sandbox_id, "dir/file.txt", b"f")
    base = f"/api/sandboxes/{sandbox_id}/files"
    cases: list[tuple[httpx.Response, set[int]]] = [
        (await _content(client, user, sandbox_id, None), {400}),
        (await _content(client, user, sandbox_id, ""), {400}),
        (await _content(client, user, sandbox_id, "   "), {400}),
        (await _content(client, user, sandbox_id, "dir"), {400}),  # a directory
        (await _content(client, user, sandbox_id, "/workspace"), {400}),
        (await _content(client, user, sandbox_id, "nope.txt"), {404}),
        (await _content(client, user, sandbox_id, "a\x00b"), {400}),
        (await _content(client, user, sandbox_id, "x" * 5000), {422}),
        (await _list(client, user, sandbox_id, "missing-dir"), {404}),
        (await _list(client, user, sandbox_id, "dir/file.txt"), {400, 404}),  # not a directory
        (await _delete(client, user, sandbox_id, None), {400}),
        (await _delete(client, user, sandbox_id, ""), {400}),
        (await _delete(client, user, sandbox_id, "/workspace"), {400}),  # never the workspace
        (await _delete(client, user, sandbox_id, "."), {400}),
        (await upload(client, user, sandbox_id, "   ", b"x"), {400}),
        (await upload(client, user, sandbox_id, "dir", b"x"), {400}),  # is a directory
        (await upload(client, user, sandbox_id, "/workspace", b"x"), {400}),
        (await upload(client, user, sandbox_id, "dir/file.txt/sub", b"x"), {400}),
        (
            await client.post(
                base, data={"path": ""}, files={"file": ("a", b"x")}, headers=user.headers
            ),
            {422},
        ),
        (await client.post(base, data={"path": "a.txt"}, headers=user.headers), {422}),
        (await client.post(base, files={"file": ("a", b"x")}, headers=user.headers), {422}),
        (await client.post(base, json={"path": "a.txt"}, headers=user.headers), {422}),
    ]
    for response, expected in cases:
        assert response.status_code in expected, (response.request.url, response.text)
        body = response.json()
        assert isinstance(body["detail"], str) and body["code"]
    # the workspace survived all of that
    assert (await _content(client, user, sandbox_id, "dir/file.txt")).content == b"f"


async def test_files_work_again_after_the_provider_lost_the_sandbox(
    app: FastAPI, client: httpx.AsyncClient, user: TestUser
) -> None:
    _, sandbox_id = await new_sandbox(client, user)
    await upload(client, user, sandbox_id, "old.txt", b"old")
    manager = app.state.sandboxes
    await manager.provider.delete(await manager.ensure_created(uuid.UUID(sandbox_id)))
    listing = await _list(client, user, sandbox_id)
    assert listing.status_code == 200, listing.text
    assert listing.json() == {"files": []}  # a new, empty workspace — not "sandbox not found"
    assert (await upload(client, user, sandbox_id, "new.txt", b"new")).status_code == 201
    assert (await _content(client, user, sandbox_id, "new.txt")).content == b"new"
