"""Projects and threads through the HTTP API: shapes, CRUD, cascade, pagination, validation."""

from __future__ import annotations

import uuid
from datetime import datetime

import httpx
import pytest

from tests.conftest import TestUser
from tests.threads.conftest import Api

PROJECT_FIELDS = {
    "project_id",
    "account_id",
    "name",
    "description",
    "is_public",
    "sandbox_network",
    "created_at",
    "updated_at",
}
THREAD_FIELDS = {
    "thread_id",
    "project_id",
    "account_id",
    "name",
    "agent_id",
    "metadata",
    "created_at",
    "updated_at",
}


def _time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() is not None and parsed.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    return parsed


# -- projects ------------------------------------------------------------------------------------


async def test_project_crud_round_trip(client: httpx.AsyncClient, user: TestUser) -> None:
    created = await client.post(
        "/api/projects", json={"name": "  Research  ", "description": "notes"}, headers=user.headers
    )
    assert created.status_code == 201
    project = created.json()
    assert set(project) >= PROJECT_FIELDS
    assert project["name"] == "Research"
    assert project["description"] == "notes"
    assert project["account_id"] == str(user.account_id)
    assert project["is_public"] is False
    assert project["sandbox_network"] == "none"
    _time(project["created_at"])
    pid = project["project_id"]

    got = await client.get(f"/api/projects/{pid}", headers=user.headers)
    assert got.status_code == 200
    assert got.json() == project

    listed = await client.get("/api/projects", headers=user.headers)
    assert listed.status_code == 200
    assert listed.json() == {"projects": [project], "next_cursor": None}

    patched = await client.patch(
        f"/api/projects/{pid}",
        json={"name": "Renamed", "description": None, "is_public": True, "sandbox_network": "open"},
        headers=user.headers,
    )
    assert patched.status_code == 200
    body = patched.json()
    assert body["name"] == "Renamed"
    assert body["description"] is None
    assert body["is_public"] is True
    assert body["sandbox_network"] == "open"
    assert body["created_at"] == project["created_at"]
    assert _time(body["updated_at"]) > _time(project["updated_at"])
    assert (await client.get(f"/api/projects/{pid}", headers=user.headers)).json() == body

    # A PATCH changes only what it names.
    partial = await client.patch(
        f"/api/projects/{pid}", json={"name": "Only name"}, headers=user.headers
    )
    assert partial.json()["is_public"] is True
    assert partial.json()["sandbox_network"] == "open"

    deleted = await client.delete(f"/api/projects/{pid}", headers=user.headers)
    assert deleted.status_code == 204
    assert deleted.content == b""
    gone = await client.get(f"/api/projects/{pid}", headers=user.headers)
    assert gone.status_code == 404
    assert gone.json() == {"detail": "Project not found.", "code": "not_found"}
    assert (await client.delete(f"/api/projects/{pid}", headers=user.headers)).status_code == 404
    assert (await client.get("/api/projects", headers=user.headers)).json()["projects"] == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "   "},
        {"name": "x" * 201},
        {"name": "ok", "description": "d" * 10_001},
        {"name": "ok", "sandbox_network": "wide"},
        {"name": "ok", "is_public": "maybe"},
        {"name": "ok", "owner": "someone"},
        {"name": "ok", "account_id": str(uuid.uuid4())},
    ],
)
async def test_project_create_validation(
    client: httpx.AsyncClient, user: TestUser, body: dict[str, object]
) -> None:
    response = await client.post("/api/projects", json=body, headers=user.headers)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    assert isinstance(response.json()["detail"], str)
    assert (await client.get("/api/projects", headers=user.headers)).json()["projects"] == []


async def test_project_name_limits_are_after_strip(
    client: httpx.AsyncClient, user: TestUser
) -> None:
    response = await client.post(
        "/api/projects",
        json={"name": f"  {'x' * 200}  ", "description": "d" * 10_000},
        headers=user.headers,
    )
    assert response.status_code == 201
    assert response.json()["name"] == "x" * 200


@pytest.mark.parametrize(
    "body",
    [
        {"name": None},
        {"is_public": None},
        {"sandbox_network": None},
        {"name": " "},
        {"sandbox_network": "wide"},
        {"project_id": str(uuid.uuid4())},
    ],
)
async def test_project_patch_validation(
    client: httpx.AsyncClient, api: Api, user: TestUser, body: dict[str, object]
) -> None:
    project = await api.project(user, name="Keep", is_public=False)
    response = await client.patch(
        f"/api/projects/{project['project_id']}", json=body, headers=user.headers
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    after = (
        await client.get(f"/api/projects/{project['project_id']}", headers=user.headers)
    ).json()
    assert after == project


async def test_patch_null_error_names_the_field(
    client: httpx.AsyncClient, api: Api, user: TestUser
) -> None:
    project = await api.project(user)
    response = await client.patch(
        f"/api/projects/{project['project_id']}", json={"name": None}, headers=user.headers
    )
    assert response.status_code == 422
    assert "name" in response.json()["detail"]
    assert "null" in response.json()["detail"]


# -- threads -------------------------------------------------------------------------------------


async def test_thread_without_project_creates_one_named_after_it(
    client: httpx.AsyncClient, user: TestUser
) -> None:
    response = await client.post("/api/threads", json={"name": "Trip plan"}, headers=user.headers)
    assert response.status_code == 201
    thread = response.json()
    assert set(thread) >= THREAD_FIELDS
    assert thread["name"] == "Trip plan"
    assert thread["account_id"] == str(user.account_id)
    assert thread["agent_id"] is None
    assert thread["metadata"] == {}
    project = await client.get(f"/api/projects/{thread['project_id']}", headers=user.headers)
    assert project.status_code == 200
    assert project.json()["name"] == "Trip plan"
    assert project.json()["account_id"] == str(user.account_id)

    unnamed = await client.post("/api/threads", json={}, headers=user.headers)
    assert unnamed.status_code == 201
    assert unnamed.json()["name"] is None
    assert unnamed.json()["project_id"] != thread["project_id"]
    second = await client.get(f"/api/projects/{unnamed.json()['project_id']}", headers=user.headers)
    assert second.json()["name"] == "New project"


async def test_thread_crud_round_trip(client: httpx.AsyncClient, api: Api, user: TestUser) -> None:
    project = await api.project(user, name="Home")
    created = await client.post(
        "/api/threads",
        json={"project_id": project["project_id"], "name": "First", "metadata": {"k": [1, 2]}},
        headers=user.headers,
    )
    assert created.status_code == 201
    thread = created.json()
    assert thread["project_id"] == project["project_id"]
    assert thread["metadata"] == {"k": [1, 2]}
    tid = thread["thread_id"]
    # Joining a project creates no other project.
    assert len((await client.get("/api/projects", headers=user.headers)).json()["projects"]) == 1

    got = await client.get(f"/api/threads/{tid}", headers=user.headers)
    assert got.status_code == 200
    assert got.json() == thread

    patched = await client.patch(
        f"/api/threads/{tid}",
        json={"name": "Renamed", "metadata": {"a": True}},
        headers=user.headers,
    )
    assert patched.status_code == 200
    assert patched.json()["name"] == "Renamed"
    assert patched.json()["metadata"] == {"a": True}
    assert _time(patched.json()["updated_at"]) > _time(thread["updated_at"])
    cleared = await client.patch(f"/api/threads/{tid}", json={"name": None}, headers=user.headers)
    assert cleared.json()["name"] is None
    assert cleared.json()["metadata"] == {"a": True}

    listed = await client.get("/api/threads", headers=user.headers)
    assert [t["thread_id"] for t in listed.json()["threads"]] == [tid]

    assert (await client.delete(f"/api/threads/{tid}", headers=user.headers)).status_code == 204
    assert (await client.get(f"/api/threads/{tid}", headers=user.headers)).status_code == 404
    assert (
        await client.get(f"/api/threads/{tid}/messages", headers=user.headers)
    ).status_code == 404
    assert (await client.delete(f"/api/threads/{tid}", headers=user.headers)).status_code == 404
    # The project stays.
    assert (
        await client.get(f"/api/projects/{project['project_id']}", headers=user.headers)
    ).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"metadata": None},
        {"metadata": [1, 2]},
        {"metadata": "text"},
        {"metadata": {"blob": "x" * (64 * 1024)}},
        {"name": ""},
        {"name": "n" * 201},
        {"agent_id": "not-a-uuid"},
        {"project_id": str(uuid.uuid4())},
        {"is_public": True},
    ],
)
async def test_thread_patch_validation(
    client: httpx.AsyncClient, api: Api, user: TestUser, body: dict[str, object]
) -> None:
    thread = await api.thread(user, name="Keep", metadata={"x": 1})
    response = await client.patch(
        f"/api/threads/{thread['thread_id']}", json=body, headers=user.headers
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    assert (
        await client.get(f"/api/threads/{thread['thread_id']}", headers=user.headers)
    ).json() == thread


@pytest.mark.parametrize(
    "body",
    [
        {"metadata": [1]},
        {"metadata": {"blob": "x" * (64 * 1024)}},
        {"name": "   "},
        {"project_id": "nope"},
        {"title": "x"},
    ],
)
async def test_thread_create_validation(
    client: httpx.AsyncClient, user: TestUser, body: dict[str, object]
) -> None:
    response = await client.post("/api/threads", json=body, headers=user.headers)
    assert response.status_code == 422, response.text
    assert (await client.get("/api/projects", headers=user.headers)).json()["projects"] == []


async def test_thread_in_unknown_project_is_404(client: httpx.AsyncClient, user: TestUser) -> None:
    response = await client.post(
        "/api/threads", json={"project_id": str(uuid.uuid4())}, headers=user.headers
    )
    assert response.status_code == 404
    assert (await client.get("/api/projects", headers=user.headers)).json()["projects"] == []


async def test_agent_id_defaults_to_null_and_an_unknown_one_is_never_a_server_error(
    client: httpx.AsyncClient, api: Api, user: TestUser
) -> None:
    thread = await api.thread(user, name="t")
    assert thread["agent_id"] is None
    unknown = str(uuid.uuid4())
    response = await client.patch(
        f"/api/threads/{thread['thread_id']}", json={"agent_id": unknown}, headers=user.headers
    )
    # Until agents are validated, any uuid is stored; where the agents foreign key exists, an
    # unknown agent is "not found" — never a conflict or a server error.
    assert response.status_code in (200, 404), response.text
    if response.status_code == 200:
        assert response.json()["agent_id"] == unknown
    else:
        assert response.json()["code"] == "not_found"
        assert (
            await client.get(f"/api/threads/{thread['thread_id']}", headers=user.headers)
        ).json() == thread
    created = await client.post("/api/threads", json={"agent_id": unknown}, headers=user.headers)
    assert created.status_code in (201, 404), created.text
    if created.status_code == 404:
        # Nothing half-made: the project it would have created is not there either.
        projects = (await client.get("/api/projects", headers=user.headers)).json()["projects"]
        assert [p["project_id"] for p in projects] == [thread["project_id"]]
    reset = await client.patch(
        f"/api/threads/{thread['thread_id']}", json={"agent_id": None}, headers=user.headers
    )
    assert reset.status_code == 200
    assert reset.json()["agent_id"] is None


async def test_threads_filtered_by_project(
    client: httpx.AsyncClient, api: Api, user: TestUser
) -> None:
    a = await api.project(user, name="A")
    b = await api.project(user, name="B")
    in_a = await api.thread(user, project_id=a["project_id"], name="a1")
    in_b = await api.thread(user, project_id=b["project_id"], name="b1")
    only_a = await client.get(
        "/api/threads", params={"project_id": a["project_id"]}, headers=user.headers
    )
    assert only_a.status_code == 200
    assert [t["thread_id"] for t in only_a.json()["threads"]] == [in_a["thread_id"]]
    everything = await client.get("/api/threads", headers=user.headers)
    assert {t["thread_id"] for t in everything.json()["threads"]} == {
        in_a["thread_id"],
        in_b["thread_id"],
    }
    for bad in (str(uuid.uuid4()), "not-an-id"):
        missing = await client.get("/api/threads", params={"project_id": bad}, headers=user.headers)
        assert missing.status_code == 404
        assert missing.json()["code"] == "not_found"


async def test_deleting_a_project_deletes_its_threads_and_messages(
    client: httpx.AsyncClient, api: Api, user: TestUser
) -> None:
    project = await api.project(user, name="Doomed")
    keep = await api.thread(user, name="elsewhere")
    threads = [
        await api.thread(user, project_id=project["project_id"], name=f"t{i}") for i in range(2)
    ]
    for thread in threads:
        await api.message(user, thread["thread_id"], "hello")
    assert (
        await client.delete(f"/api/projects/{project['project_id']}", headers=user.headers)
    ).status_code == 204
    for thread in threads:
        tid = thread["thread_id"]
        assert (await client.get(f"/api/threads/{tid}", headers=user.headers)).status_code == 404
        assert (
            await client.get(f"/api/threads/{tid}/messages", headers=user.headers)
        ).status_code == 404
        posted = await client.post(
            f"/api/threads/{tid}/messages", json={"content": "hi"}, headers=user.headers
        )
        assert posted.status_code == 404
    remaining = (await client.get("/api/threads", headers=user.headers)).json()["threads"]
    assert [t["thread_id"] for t in remaining] == [keep["thread_id"]]
    assert len(await api.messages(user, keep["thread_id"])) == 0


# -- pagination ----------------------------------------------------------------------------------


async def _walk(
    client: httpx.AsyncClient, user: TestUser, path: str, key: str, limit: int
) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        response = await client.get(path, params=params, headers=user.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append([item[key] for item in body[f"{path.rsplit('/', 1)[-1]}"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 10, "pagination does not terminate"


async def test_projects_paginate_newest_first(
    client: httpx.AsyncClient, api: Api, user: TestUser
) -> None:
    ids = [(await api.project(user, name=f"p{i}"))["project_id"] for i in range(5)]
    pages = await _walk(client, user, "/api/projects", "project_id", 2)
    assert [len(page) for page in pages] == [2, 2, 1]
    assert [pid for page in pages for pid in page] == list(reversed(ids))


async def test_threads_paginate_newest_first(
    client: httpx.AsyncClient, api: Api, user: TestUser
) -> None:
    project = await api.project(user)
    ids = [
        (await api.thread(user, project_id=project["project_id"]))["thread_id"] for _ in range(5)
    ]
    pages = await _walk(client, user, "/api/threads", "thread_id", 2)
    assert [len(page) for page in pages] == [2, 2, 1]
    assert [tid for page in pages for tid in page] == list(reversed(ids))


async def test_a_page_boundary_survives_new_inserts(
    client: httpx.AsyncClient, api: Api, user: TestUser
) -> None:
    first_ids = [(await api.project(user, name=f"p{i}"))["project_id"] for i in range(3)]
    page = (await client.get("/api/projects", params={"limit": 2}, headers=user.headers)).json()
    await api.project(user, name="newer")  # appears at the top, not inside the next page
    rest = await client.get(
        "/api/projects", params={"limit": 2, "cursor": page["next_cursor"]}, headers=user.headers
    )
    assert [p["project_id"] for p in rest.json()["projects"]] == [first_ids[0]]
    assert rest.json()["next_cursor"] is None


async def test_exactly_one_full_page_has_no_next_cursor(
    client: httpx.AsyncClient, api: Api, user: TestUser
) -> None:
    for i in range(2):
        await api.project(user, name=f"p{i}")
    body = (await client.get("/api/projects", params={"limit": 2}, headers=user.headers)).json()
    assert len(body["projects"]) == 2
    assert body["next_cursor"] is None


LISTS = ["/api/projects", "/api/threads", "messages"]


async def _list_path(api: Api, user: TestUser, which: str) -> str:
    if which == "messages":
        thread = await api.thread(user)
        return f"/api/threads/{thread['thread_id']}/messages"
    return which


@pytest.mark.parametrize("which", LISTS)
@pytest.mark.parametrize("limit", ["0", "201", "-1", "many"])
async def test_list_limit_out_of_range_is_422(
    client: httpx.AsyncClient, api: Api, user: TestUser, which: str, limit: str
) -> None:
    path = await _list_path(api, user, which)
    response = await client.get(path, params={"limit": limit}, headers=user.headers)
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


@pytest.mark.parametrize("which", LISTS)
@pytest.mark.parametrize("limit", ["1", "200"])
async def test_list_limit_bounds_are_accepted(
    client: httpx.AsyncClient, api: Api, user: TestUser, which: str, limit: str
) -> None:
    path = await _list_path(api, user, which)
    assert (
        await client.get(path, params={"limit": limit}, headers=user.headers)
    ).status_code == 200


@pytest.mark.parametrize("which", LISTS)
@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!!",
        "bm90LWpzb24",  # base64 of "not-json"
        "WyJ0IiwieCIsInkiXQ",  # ["t","x","y"]
        "eyJhIjoxfQ",  # {"a":1}
    ],
)
async def test_bad_cursor_is_400(
    client: httpx.AsyncClient, api: Api, user: TestUser, which: str, cursor: str
) -> None:
    path = await _list_path(api, user, which)
    response = await client.get(path, params={"cursor": cursor}, headers=user.headers)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_cursor"


async def test_a_cursor_of_another_list_kind_is_400(
    client: httpx.AsyncClient, api: Api, user: TestUser
) -> None:
    thread = await api.thread(user, name="t")
    for _ in range(2):
        await api.message(user, thread["thread_id"], "m")
        await api.thread(user)
    message_cursor = (
        await client.get(
            f"/api/threads/{thread['thread_id']}/messages",
            params={"limit": 1},
            headers=user.headers,
        )
    ).json()["next_cursor"]
    time_cursor = (
        await client.get("/api/threads", params={"limit": 1}, headers=user.headers)
    ).json()["next_cursor"]
    assert message_cursor and time_cursor
    wrong = await client.get(
        "/api/threads", params={"cursor": message_cursor}, headers=user.headers
    )
    assert wrong.status_code == 400
    wrong = await client.get(
        f"/api/threads/{thread['thread_id']}/messages",
        params={"cursor": time_cursor},
        headers=user.headers,
    )
    assert wrong.status_code == 400


# -- malformed ids -------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["not-a-uuid", "123", "00000000-0000-0000-0000-00000000000g"])
async def test_malformed_ids_are_404(client: httpx.AsyncClient, user: TestUser, bad: str) -> None:
    calls = [
        ("GET", f"/api/projects/{bad}", None),
        ("PATCH", f"/api/projects/{bad}", {"name": "x"}),
        ("DELETE", f"/api/projects/{bad}", None),
        ("GET", f"/api/threads/{bad}", None),
        ("PATCH", f"/api/threads/{bad}", {"name": "x"}),
        ("DELETE", f"/api/threads/{bad}", None),
        ("GET", f"/api/threads/{bad}/messages", None),
        ("POST", f"/api/threads/{bad}/messages", {"content": "hi"}),
    ]
    for method, path, body in calls:
        response = await client.request(method, path, json=body, headers=user.headers)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["code"] == "not_found"


async def test_openapi_documents_the_routes(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/api/openapi.json")).json()
    paths = spec["paths"]
    for path in (
        "/api/projects",
        "/api/projects/{project_id}",
        "/api/threads",
        "/api/threads/{thread_id}",
        "/api/threads/{thread_id}/messages",
    ):
        assert path in paths
        for operation in paths[path].values():
            assert operation.get("description"), (path, operation.get("operationId"))
    assert {"401", "403", "404"} <= set(paths["/api/threads/{thread_id}"]["patch"]["responses"])
    assert "413" in paths["/api/threads/{thread_id}/messages"]["post"]["responses"]
