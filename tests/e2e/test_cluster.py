"""Runs through real processes: two ``shoal serve`` replicas and two ``shoal worker`` processes
on Postgres, RabbitMQ (behind a cuttable TCP proxy) and a private Redis, with the fake
OpenAI-compatible provider reached through LiteLLM.

One cluster serves the whole module (process start-up dominates the cost), so the tests run in
file order: the broker test comes first because the cluster starts with the broker cut; the
destructive tests (``kill -9``, SIGTERM, replacing the workers) come last. Each test still
checks its own preconditions and would set them up itself when run alone.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from tests.e2e.conftest import ClusterFactory
from tests.e2e.harness import (
    Cluster,
    Database,
    PrivateRedis,
    RoutedLLM,
    StreamRead,
    TcpProxy,
    assert_gapless,
    comparable,
    get_run,
    messages,
    new_thread,
    read_stream,
    start_run,
    wait_run,
)

pytestmark = [pytest.mark.services, pytest.mark.timeout(240)]

# The first run of a worker process imports LiteLLM (seconds of CPU on a busy machine).
FIRST_RUN_TIMEOUT = 90.0


@pytest.fixture(scope="module")
def proxy(rabbitmq: str) -> Iterator[TcpProxy]:
    parts = urlsplit(rabbitmq)
    server = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5672)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def started(rabbitmq: str, proxy: TcpProxy, make_cluster: ClusterFactory) -> Cluster:
    """The cluster, started while the broker is unreachable (the proxy is not open yet)."""
    parts = urlsplit(rabbitmq)
    netloc = f"{parts.username}:{parts.password}@127.0.0.1:{proxy.port}"
    return make_cluster(
        serves=2,
        workers=2,
        broker_url=urlunsplit(parts._replace(netloc=netloc)),
        wait_consumers=False,
        name="e2e",
    )


@pytest.fixture
def cluster(started: Cluster, proxy: TcpProxy) -> Cluster:
    """The cluster with the broker reachable and every live worker consuming."""
    proxy.open()
    if started.live_workers():
        started.wait_consumers()
    return started


async def _statuses(
    http: httpx.AsyncClient, cluster: Cluster, run_ids: list[str]
) -> dict[str, str]:
    assert cluster.user is not None
    runs = await asyncio.gather(
        *(get_run(http, cluster.serves[0], cluster.user, r) for r in run_ids)
    )
    return {str(run["id"]): str(run["status"]) for run in runs}


async def _start_runs(
    http: httpx.AsyncClient, cluster: Cluster, prompts: list[str], *, offset: int = 0
) -> list[tuple[str, str]]:
    """Start one run per prompt, each on a new thread, alternating replicas: (thread, run)."""
    assert cluster.user is not None
    out = []
    for index, prompt in enumerate(prompts, start=offset):
        base = cluster.serves[index % len(cluster.serves)]
        thread_id = await new_thread(http, base, cluster.user)
        out.append((thread_id, await start_run(http, base, cluster.user, thread_id, prompt)))
    return out


# -- 4. broker unavailable ------------------------------------------------------------------------


async def test_runs_are_accepted_while_the_broker_is_down_and_start_when_it_is_back(
    started: Cluster, proxy: TcpProxy, http: httpx.AsyncClient
) -> None:
    user = started.user
    assert user is not None
    ready = (await http.get(f"{started.serves[0]}/api/health/ready")).json()
    phases = ["down from the start"] if not proxy.ever_opened else []
    phases.append("cut while running")
    for phase in phases:
        if phase == "cut while running":
            proxy.open()
            started.wait_consumers()
            proxy.cut()
        else:
            assert ready["components"]["broker"] == "unavailable", ready
        runs = await _start_runs(http, started, [f"echo broker {phase} {i}" for i in range(4)])
        run_ids = [run_id for _, run_id in runs]
        # Longer than the requeue interval: the sweeper's re-wake fails too; nothing is lost.
        await asyncio.sleep(2.0)
        assert set((await _statuses(http, started, run_ids)).values()) == {"queued"}, phase
        proxy.open()
        reopened = time.monotonic()
        for run_id in run_ids:
            run = await wait_run(
                http, started.serves[1], user, run_id, timeout=FIRST_RUN_TIMEOUT, interval=0.1
            )
            assert run["status"] == "completed", (phase, run)
        print(f"{phase}: all {len(run_ids)} runs done {time.monotonic() - reopened:.1f}s later")


# -- 1. many runs across replicas and workers -----------------------------------------------------


async def test_twenty_runs_over_two_replicas_and_two_workers(
    cluster: Cluster, http: httpx.AsyncClient, db: Database
) -> None:
    user = cluster.user
    assert user is not None
    assert len(cluster.live_workers()) == 2
    count = 20
    prompts = [f"loop {i}" for i in range(count)]

    async def one(index: int) -> tuple[str, str, StreamRead]:
        accepting = cluster.serves[index % 2]
        other = cluster.serves[(index + 1) % 2]
        thread_id = await new_thread(http, accepting, user)
        run_id = await start_run(http, accepting, user, thread_id, prompts[index])
        stream = await read_stream(http, other, user, run_id, timeout=FIRST_RUN_TIMEOUT)
        assert stream.status == 200 and stream.closed_by_server
        return thread_id, run_id, stream

    results = await asyncio.gather(*(one(i) for i in range(count)))

    worker_ids = set()
    for index, (thread_id, run_id, stream) in enumerate(results):
        events = stream.events
        assert_gapless(events)
        assert stream.ids == [str(e["seq"]) for e in events]  # SSE id is the seq
        last = events[-1]
        assert last["type"] == "run_status"
        assert last["data"]["status"] == "completed", last
        stored = await db.events(run_id)
        assert comparable(stored) == comparable(events)
        kinds = [e["type"] for e in events]
        for kind in ("tool_call", "tool_started", "tool_result", "text_delta", "message"):
            assert kind in kinds, (kind, kinds)
        history = await messages(http, cluster.serves[index % 2], user, thread_id)
        assert [m["type"] for m in history] == ["user", "assistant", "tool", "assistant"]
        assert history[0]["content"]["content"] == f"loop {index}"
        assert history[1]["content"]["tool_calls"][0]["function"]["name"] == "expand_message"
        assert history[2]["content"]["name"] == "expand_message"
        assert history[3]["content"]["content"] == f"done {index}"
        assert all(m["agent_run_id"] == run_id for m in history)
        row = await db.run(run_id)
        assert row["status"] == "completed" and row["finish_reason"] == "stop"
        assert row["last_event_seq"] == len(events)
        worker_ids.add(row["worker_id"])
    holders = {cluster.worker_by_id(w).name for w in worker_ids}
    assert holders == {w.name for w in cluster.live_workers()}, worker_ids


# -- sandboxes across processes --------------------------------------------------------------


async def test_a_run_uses_its_project_sandbox_and_another_replica_serves_the_files(
    cluster: Cluster, http: httpx.AsyncClient
) -> None:
    """The worker that holds the run starts the project's (local bubblewrap) sandbox; the
    tools write and run a script; an API replica that never saw the run lists and downloads
    the file through the files API."""
    user = cluster.user
    assert user is not None
    accepting, other = cluster.serves
    thread_id = await new_thread(http, accepting, user)
    run_id = await start_run(http, accepting, user, thread_id, "script 7")
    stream = await read_stream(http, other, user, run_id, timeout=FIRST_RUN_TIMEOUT)
    last = stream.events[-1]
    assert last["data"]["status"] == "completed", (last, cluster.tails())
    results = [e["data"] for e in stream.events if e["type"] == "tool_result"]
    assert [r["name"] for r in results] == ["create_file", "execute_command"]
    assert results[1]["success"] and "hello 7" in results[1]["output"], results
    live = "".join(e["data"]["text"] for e in stream.events if e["type"] == "tool_output_delta")
    assert "hello 7" in live

    thread = (await http.get(f"{other}/api/threads/{thread_id}", headers=user.headers)).json()
    sandbox = await http.get(
        f"{other}/api/projects/{thread['project_id']}/sandbox", headers=user.headers
    )
    assert sandbox.status_code == 200 and sandbox.json()["state"] == "started", sandbox.text
    files = f"{other}/api/sandboxes/{sandbox.json()['sandbox_id']}/files"
    listing = await http.get(files, headers=user.headers)
    assert "/workspace/hello_7.py" in [f["path"] for f in listing.json()["files"]]
    content = await http.get(
        f"{files}/content", params={"path": "hello_7.py"}, headers=user.headers
    )
    assert content.text == "print('hello', 7)\n"


# -- 2. resumable streams -------------------------------------------------------------------------


async def _resume_checks(
    http: httpx.AsyncClient, cluster: Cluster, db: Database, run_id: str, k: int
) -> None:
    """After the run finished: resuming at ``k`` replays exactly k+1…end; at the end → 204."""
    assert cluster.user is not None
    stored = await db.events(run_id)
    for base in cluster.serves:
        again = await read_stream(http, base, cluster.user, run_id, last_event_id=k)
        assert again.status == 200
        assert comparable(again.events) == comparable(stored[k:])
        assert again.ids == [str(e["seq"]) for e in stored[k:]]
    done = await read_stream(
        http, cluster.serves[0], cluster.user, run_id, last_event_id=len(stored)
    )
    assert done.status == 204


async def test_a_stream_resumes_after_last_event_id_live_and_after_the_run(
    cluster: Cluster, http: httpx.AsyncClient, db: Database
) -> None:
    user = cluster.user
    assert user is not None
    a, b = cluster.serves
    thread_id = await new_thread(http, a, user)
    run_id = await start_run(http, a, user, thread_id, "slow 30 0.1 resume")
    first = await read_stream(http, b, user, run_id, until_seq=6, timeout=FIRST_RUN_TIMEOUT)
    k = first.events[-1]["seq"]
    assert k == 6 and not first.closed_by_server
    assert_gapless(first.events)
    assert (await get_run(http, a, user, run_id))["status"] == "running"  # still live

    rest = await read_stream(http, a, user, run_id, last_event_id=k)
    assert rest.closed_by_server
    assert_gapless(rest.events, first=k + 1)
    assert rest.events[-1]["data"]["status"] == "completed"
    assert sum(e["type"] == "text_delta" for e in rest.events) >= 20  # it followed live text
    stored = await db.events(run_id)
    assert comparable(first.events + rest.events) == comparable(stored)

    await _resume_checks(http, cluster, db, run_id, k)


async def test_streams_resume_across_a_redis_restart(
    cluster: Cluster, http: httpx.AsyncClient, db: Database, private_redis: PrivateRedis
) -> None:
    user = cluster.user
    assert user is not None
    a, b = cluster.serves
    assert private_redis.url == cluster.redis_url
    thread_id = await new_thread(http, a, user)
    run_id = await start_run(http, a, user, thread_id, "slow 50 0.1 redis")
    # One subscriber stays connected through the restart; another hangs up before it.
    whole = asyncio.create_task(read_stream(http, b, user, run_id, timeout=60))
    first = await read_stream(http, a, user, run_id, until_seq=6, timeout=FIRST_RUN_TIMEOUT)
    k = first.events[-1]["seq"]

    await asyncio.to_thread(private_redis.restart)
    assert (await get_run(http, a, user, run_id))["status"] == "running"

    rest = await read_stream(http, b, user, run_id, last_event_id=k, timeout=60)
    assert rest.closed_by_server
    assert_gapless(rest.events, first=k + 1)
    assert rest.events[-1]["data"]["status"] == "completed", rest.events[-1]
    stored = await db.events(run_id)
    assert comparable(first.events + rest.events) == comparable(stored)

    through = await whole
    assert through.closed_by_server
    assert comparable(through.events) == comparable(stored)

    await _resume_checks(http, cluster, db, run_id, k)
    # The restarted Redis carries new runs' live events again.
    thread_id = await new_thread(http, b, user)
    after = await start_run(http, b, user, thread_id, "loop after-restart")
    stream = await read_stream(http, a, user, after, timeout=30)
    assert stream.events[-1]["data"]["status"] == "completed"
    assert comparable(stream.events) == comparable(await db.events(after))


# -- 5. stop ---------------------------------------------------------------------------------------


async def test_stop_ends_a_stalled_llm_call_within_two_seconds(
    cluster: Cluster, http: httpx.AsyncClient, fake_llm: RoutedLLM
) -> None:
    user = cluster.user
    assert user is not None
    a, b = cluster.serves
    prompt = "stall 60 stop"
    thread_id = await new_thread(http, a, user)
    run_id = await start_run(http, a, user, thread_id, prompt)
    reader = asyncio.create_task(read_stream(http, b, user, run_id, timeout=60))
    # Wait until the provider's first chunk is in the run's event log (the run is mid-call).
    first = await read_stream(
        http, a, user, run_id, until=lambda e: e["type"] == "text_delta", timeout=FIRST_RUN_TIMEOUT
    )
    assert first.events[-1]["data"]["text"] == "partial "

    requested = time.monotonic()
    response = await http.post(f"{b}/api/agent-run/{run_id}/stop", headers=user.headers)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "running" and response.json()["stop_requested_at"]
    run = await wait_run(http, a, user, run_id, timeout=15, interval=0.02)
    elapsed = time.monotonic() - requested
    assert run["status"] == "stopped", run
    # The promise is 2 s (measured in `make bench`); on a loaded CI machine the test allows
    # slack but still fails if the stop waited for the 60 s stall or a lease to lapse.
    print(f"stop took {elapsed:.2f}s")
    assert elapsed <= 6.0, f"stopped {elapsed:.2f}s after the request"

    stream = await reader
    assert stream.events[-1]["data"]["status"] == "stopped"
    assert_gapless(stream.events)
    history = await messages(http, b, user, thread_id)
    assistant = [m for m in history if m["type"] == "assistant"]
    assert assistant and assistant[-1]["content"]["content"] == "partial "
    assert assistant[-1]["metadata"].get("interrupted") is True

    deadline = time.monotonic() + 10
    while not any(r.client_disconnected for r in fake_llm.records_for(prompt)):
        assert time.monotonic() < deadline, "the fake provider never saw the client hang up"
        await asyncio.sleep(0.05)
    again = await http.post(f"{a}/api/agent-run/{run_id}/stop", headers=user.headers)
    assert again.status_code == 200 and again.json()["status"] == "stopped"


# -- 3. kill -9 ------------------------------------------------------------------------------------


async def _running_on(db: Database, run_id: str, timeout: float = FIRST_RUN_TIMEOUT) -> str:
    deadline = time.monotonic() + timeout
    while True:
        row = await db.run(run_id)
        if row["status"] == "running" and row["worker_id"]:
            return str(row["worker_id"])
        assert row["status"] == "queued", dict(row)
        assert time.monotonic() < deadline, f"run {run_id} never started"
        await asyncio.sleep(0.05)


async def _ensure_workers(cluster: Cluster, count: int) -> None:
    while len(cluster.live_workers()) < count:
        cluster.add_worker()
    await asyncio.to_thread(cluster.wait_ready)
    await asyncio.to_thread(cluster.wait_consumers)


async def _wait_no_active_runs(db: Database, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while active := await db.active_runs():
        assert time.monotonic() < deadline, [dict(r) for r in active]
        await asyncio.sleep(0.1)


async def test_a_killed_worker_s_run_fails_as_worker_lost_and_the_rest_complete(
    cluster: Cluster, http: httpx.AsyncClient, db: Database
) -> None:
    user = cluster.user
    assert user is not None
    await _ensure_workers(cluster, 2)
    [(_, stalled)] = await _start_runs(http, cluster, ["stall 60 kill"])
    victim = cluster.worker_by_id(await _running_on(db, stalled))
    # Keep starting short runs until the other worker holds one in flight too.
    others: list[str] = []
    for attempt in range(8):
        [(_, run_id)] = await _start_runs(
            http, cluster, [f"slow 16 0.25 kill {attempt}"], offset=attempt
        )
        others.append(run_id)
        if cluster.worker_by_id(await _running_on(db, run_id)) is not victim:
            break
    else:
        pytest.fail("every run went to one worker")

    cluster.retire(victim, signal.SIGKILL)
    killed = time.monotonic()
    later = [r for _, r in await _start_runs(http, cluster, [f"loop k{i}" for i in range(4)])]
    lost = await wait_run(http, cluster.serves[1], user, stalled, timeout=30, interval=0.1)
    detected = time.monotonic() - killed
    assert lost["status"] == "failed" and lost["error"]["code"] == "worker_lost", lost
    # The lease (6 s) lapses, then the survivor's sweeper (every 0.5 s) takes the run away
    # (a generous bound: it fails if no sweeper ever looked).
    assert detected < 20, f"worker_lost only {detected:.1f}s after the kill"

    for run_id in [*others, *later]:
        run = await wait_run(http, cluster.serves[0], user, run_id, timeout=30, interval=0.1)
        row = await db.run(run_id)
        if row["worker_id"] and cluster.worker_by_id(row["worker_id"]) is victim:
            assert run["status"] == "failed", run
            assert run["error"]["code"] == "worker_lost", run
        else:
            assert run["status"] == "completed", run
    print(f"worker_lost {detected:.1f}s after the kill (lease 6s)")
    await _wait_no_active_runs(db)


# -- 6. SIGTERM drain ------------------------------------------------------------------------------


async def test_sigterm_drains_a_worker_and_fails_what_outlives_the_drain(
    cluster: Cluster, http: httpx.AsyncClient, db: Database
) -> None:
    user = cluster.user
    assert user is not None
    await _ensure_workers(cluster, 1)
    [(_, stalled)] = await _start_runs(http, cluster, ["stall 60 drain"])
    holder = cluster.worker_by_id(await _running_on(db, stalled))
    [(_, quick)] = await _start_runs(http, cluster, ["slow 8 0.1 drain"])
    await _running_on(db, quick)

    signalled = time.monotonic()
    code = await asyncio.to_thread(cluster.retire, holder, signal.SIGTERM)
    exited = time.monotonic() - signalled
    assert code == 0, holder.tail()

    run = await get_run(http, cluster.serves[0], user, stalled)
    assert run["status"] == "failed", run
    assert run["error"]["code"] == "worker_shutdown", run
    done = await wait_run(http, cluster.serves[0], user, quick, timeout=10)
    assert done["status"] == "completed", done  # finished within the drain (2 s)
    print(f"worker exited {exited:.1f}s after SIGTERM")
    history = await messages(http, cluster.serves[1], user, run["thread_id"])
    assert [m["content"]["content"] for m in history if m["type"] == "assistant"] == ["partial "]


# -- 7. woken, not polled --------------------------------------------------------------------------


async def test_runs_start_at_once_without_the_sweeper(
    cluster: Cluster, http: httpx.AsyncClient, db: Database
) -> None:
    """With the sweeper and re-wake at an hour, only the broker's wake-up can start a run."""
    user = cluster.user
    assert user is not None
    for worker in cluster.live_workers():
        await asyncio.to_thread(cluster.retire, worker, signal.SIGTERM)
    cluster.add_worker({"SHOAL_SWEEPER_INTERVAL_SECONDS": "3600", "SHOAL_REQUEUE_SECONDS": "3600"})
    await asyncio.to_thread(cluster.wait_ready)
    await asyncio.to_thread(cluster.wait_consumers)
    latencies = []
    run_ids = []
    for index in range(5):
        [(_, run_id)] = await _start_runs(http, cluster, [f"echo woken {index}"], offset=index)
        accepted = time.monotonic()
        await wait_run(
            http,
            cluster.serves[(index + 1) % 2],
            user,
            run_id,
            ("running", "completed", "failed", "stopped"),
            timeout=10,
            interval=0.02,
        )
        latencies.append(time.monotonic() - accepted)
        run_ids.append(run_id)
    assert max(latencies) < 2.0, latencies
    for run_id in run_ids:
        run = await wait_run(http, cluster.serves[0], user, run_id, timeout=FIRST_RUN_TIMEOUT)
        assert run["status"] == "completed", run
    print("queued → running:", ", ".join(f"{x:.2f}s" for x in latencies))
