import httpx

from tests.conftest import TestUser


async def test_health_answers(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


async def test_ready_reports_components(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/health/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["components"]["db"] == "ok"
    assert set(body["components"]) >= {"db", "bus", "broker"}


async def test_unknown_route_is_json_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/nope")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found.", "code": "not_found"}


async def test_a_body_over_the_request_limit_is_413_before_the_route_reads_it(
    client: httpx.AsyncClient,
) -> None:
    huge = b"x" * (10 * 1024 * 1024 + 1)  # SHOAL_MAX_REQUEST_BYTES defaults to 10 MiB
    response = await client.post(
        "/api/projects", content=huge, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


async def test_malformed_json_is_a_readable_422(client: httpx.AsyncClient, user: TestUser) -> None:
    response = await client.post(
        "/api/projects",
        content=b"{not json",
        headers={**user.headers, "content-type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["detail"] == "The request body is not valid JSON."
    assert response.json()["code"] == "validation_error"
