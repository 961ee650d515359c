"""Real processes for the end-to-end tests: ``shoal serve`` / ``shoal worker`` subprocesses,
a private ``redis-server``, a TCP proxy in front of RabbitMQ and a prompt-routed fake LLM.

Everything here is synchronous (fixtures are module-scoped; tests run on their own event
loops) except the small async API helpers at the bottom, which every test uses with an
``httpx.AsyncClient`` talking to the serve processes over real sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from shoal.llm.fake_server import FakeLLMServer, FakeToolCall, FakeTurn, RecordedRequest
from shoal.llm.fake_sse import check_tool_ordering, render_turn_json
from shoal.streaming.sse import SSEParser

ROOT = Path(__file__).resolve().parents[2]
SHOAL = ROOT / ".venv" / "bin" / "shoal"
# The run queue's name is fixed (shoal.runs), so any other `shoal worker` on the same vhost
# (a benchmark, someone's manual run) would take this suite's wake-ups: a vhost of its own when
# the broker has one (`rabbitmqctl add_vhost shoal_e2e` + permissions), else the default one.
RABBITMQ_URLS = (
    [os.environ["SHOAL_TEST_RABBITMQ_URL"]]
    if os.environ.get("SHOAL_TEST_RABBITMQ_URL")
    else ["amqp://guest:guest@127.0.0.1:5672/shoal_e2e", "amqp://guest:guest@127.0.0.1:5672/%2F"]
)
RUN_QUEUE = "shoal.runs"
TERMINAL = ("completed", "failed", "stopped")
_PASSTHROUGH_PREFIXES = ("SHOAL_", "OPENAI_", "ANTHROPIC_", "GEMINI_", "LITELLM_", "SUPABASE_")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


# pika logs every step of every connection at INFO; the tails skip those lines.
_NOISE = re.compile(
    r'"event": "(Pika version|Socket connected|Streaming transport|AMQP|Connection workflow|'
    r"Created (channel|new queue)|Closing (channel|connection|transport)|Received <Channel|"
    r"Aborting transport|_AsyncTransportBase|Deactivating transport|Stack terminated|"
    r"User-initiated close|TCP Connection attempt|protocol.eof|Transport indicated|"
    r"Socket failed to connect|Socket EOF|Error in _create_connection|connection_lost|"
    r"Unexpected connection close|BlockingConnection.close)"
)


# Access-log lines of successful requests drown what matters (warnings, errors, run ends).
_OK = re.compile(r'"status": [123]\d\d, "duration_ms"')


def tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    kept = [
        line[:600] for line in text.splitlines() if not _NOISE.search(line) and not _OK.search(line)
    ]
    return "\n".join(kept[-lines:])


# -- processes ---------------------------------------------------------------------------------


@dataclass
class Proc:
    """A subprocess whose output goes to a log file; stopped with SIGTERM, then SIGKILL."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        log = self.log_path.open("ab")
        try:
            self.popen = subprocess.Popen(
                self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
            )
        finally:
            log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive:
            assert self.popen is not None
            self.popen.send_signal(signum)

    def wait(self, timeout: float) -> int | None:
        if self.popen is None:
            return None
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def tail(self, lines: int = 60) -> str:
        return tail(self.log_path, lines)


def stop_all(procs: list[Proc], *, grace: float = 10.0) -> None:
    """SIGTERM every live process, wait up to ``grace`` seconds in total, SIGKILL the rest."""
    live = [p for p in procs if p.alive]
    for proc in live:
        with contextlib.suppress(OSError):
            proc.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in live:
        proc.wait(max(0.1, deadline - time.monotonic()))
    for proc in live:
        if proc.alive:
            with contextlib.suppress(OSError):
                proc.signal(signal.SIGKILL)
            proc.wait(5)


class PrivateRedis:
    """A throw-away ``redis-server`` on a free port (no persistence) that a test may restart."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.dir),
        ]
        self.proc = Proc("redis", argv, dict(os.environ), self.dir / "redis.log").start()
        deadline = time.monotonic() + 10
        while not port_open(self.port):
            if not self.proc.alive or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start:\n{self.proc.tail()}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None:
            stop_all([self.proc], grace=5)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


class TcpProxy:
    """An asyncio TCP proxy on 127.0.0.1 (its own thread and loop) that can be cut: closing the
    listener and aborting every open connection, as a broker outage looks to a client."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.WriteTransport] = set()
        self.ever_opened = False
        self._thread.start()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    @property
    def is_open(self) -> bool:
        return self._server is not None

    def open(self) -> None:
        if self._server is None:
            self._call(self._open())
            self.ever_opened = True

    def cut(self) -> None:
        self._call(self._cut())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._call(self._shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    async def _shutdown(self) -> None:
        await self._cut()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _open(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for transport in list(self._transports):
            transport.abort()
        self._transports.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        if self._server is None:  # cut while connecting
            writer.transport.abort()
            up_writer.transport.abort()
            return
        pair = (writer.transport, up_writer.transport)
        self._transports.update(pair)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                dst.transport.abort()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            for transport in pair:
                self._transports.discard(transport)


def _connect(url: str) -> Any:
    import pika

    params = pika.URLParameters(url)
    params.connection_attempts = 1
    params.socket_timeout = params.blocked_connection_timeout = 3
    return pika.BlockingConnection(params)


def pick_rabbitmq() -> str:
    """The first of ``RABBITMQ_URLS`` that accepts us (raises the last error otherwise)."""
    error: Exception | None = None
    for url in RABBITMQ_URLS:
        try:
            _connect(url).close()
            return url
        except Exception as exc:
            error = exc
    assert error is not None
    raise error


def purge_run_queue(url: str) -> None:
    """Empty ``shoal.runs`` (left-over wake-ups of other sessions would wake nothing here, but
    they would make a worker look busy)."""
    import pika

    connection = _connect(url)
    try:
        channel = connection.channel()
        try:
            channel.queue_purge(RUN_QUEUE)
        except pika.exceptions.ChannelClosedByBroker as exc:  # no queue yet: nothing to purge
            if exc.reply_code != 404:
                raise
    finally:
        with contextlib.suppress(Exception):
            connection.close()


def queue_state(url: str) -> tuple[int, int]:
    """``(messages ready, consumers)`` of ``shoal.runs`` (zeros when it does not exist yet)."""
    import pika

    connection = _connect(url)
    try:
        channel = connection.channel()
        try:
            declared = channel.queue_declare(RUN_QUEUE, passive=True)
        except pika.exceptions.ChannelClosedByBroker:
            return 0, 0
        return int(declared.method.message_count), int(declared.method.consumer_count)
    finally:
        with contextlib.suppress(Exception):
            connection.close()


def queue_consumers(url: str) -> int:
    return queue_state(url)[1]


# -- the fake LLM ------------------------------------------------------------------------------


def prompt_of(messages: object) -> str:
    """The run's prompt: the first user message's text."""
    for message in messages if isinstance(messages, list) else []:
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            return str(content)
    return ""


def routed_turn(messages: list[dict[str, Any]]) -> FakeTurn:
    """The answer for this request, chosen by the run's prompt (so concurrent runs of many
    processes can share one fake provider):

    - ``loop <n>`` — first a native ``expand_message`` call (a non-terminating built-in tool),
      then, once its result is in the prompt, the text ``done <n>``;
    - ``slow <count> <delay>`` — ``count`` words, ``delay`` seconds apart;
    - ``stall <seconds>`` — ``partial `` then silence for ``seconds``;
    - ``script <n>`` — ``create_file`` of ``hello_<n>.py``, then ``execute_command`` running it,
      then ``ran <n>`` (the project's sandbox, in whichever worker holds the run);
    - anything else — ``echo <prompt>`` at once.
    """
    words = prompt_of(messages).split()
    head = words[0] if words else ""
    if head == "script":
        done = sum(1 for m in messages if m.get("role") == "tool")
        name = f"hello_{words[1]}.py"
        if done == 0:
            source = f"print('hello', {int(words[1])})\n"
            call = FakeToolCall("create_file", {"file_path": name, "file_contents": source})
            return FakeTurn(tool_calls=[call])
        if done == 1:
            return FakeTurn(
                tool_calls=[FakeToolCall("execute_command", {"command": f"python3 {name}"})]
            )
        return FakeTurn(text=f"ran {words[1]}")
    if head == "loop":
        if messages and messages[-1].get("role") == "tool":
            return FakeTurn(text=f"done {words[1]}")
        call = FakeToolCall("expand_message", {"message_id": f"missing-{words[1]}"})
        return FakeTurn(text="checking", tool_calls=[call])
    if head == "slow":
        count, delay = int(words[1]), float(words[2])
        return FakeTurn(text=[f"w{i} " for i in range(count)], chunk_delay=delay)
    if head == "stall":
        return FakeTurn(text=["partial ", "never sent"], stall_after_first_chunk=float(words[1]))
    return FakeTurn(text=f"echo {' '.join(words)}")


class RoutedLLM(FakeLLMServer):
    """The package's fake OpenAI-compatible server, answering by prompt instead of a queue."""

    def records_for(self, prompt: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.records if prompt_of(r.body.get("messages")) == prompt]

    async def _answer(
        self, payload: dict[str, Any], record: RecordedRequest, receive: Any, send: Any
    ) -> None:
        problem = check_tool_ordering(payload.get("messages"))
        if problem is not None:
            await self._reject(send, record, 400, problem)
            return
        turn = routed_turn(list(payload.get("messages") or []))
        model = str(payload.get("model", "fake-model"))
        if not payload.get("stream"):
            body = json.dumps(render_turn_json(turn, model)).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body, "more_body": False})
            record.completed = True
            return
        await self._stream(turn, payload, model, record, receive, send)


# -- a cluster of serve + worker processes ----------------------------------------------------


def signing_key_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@dataclass
class User:
    email: str
    token: str
    id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Cluster:
    """N ``shoal serve`` and M ``shoal worker`` processes sharing one database, broker and
    Redis. ``serves`` are base URLs; ``workers`` the worker processes."""

    name: str
    workdir: Path
    database_url: str
    redis_url: str
    broker_url: str
    llm_url: str
    broker_admin_url: str
    overrides: Mapping[str, str] = field(default_factory=dict)
    serve_procs: list[Proc] = field(default_factory=list)
    serves: list[str] = field(default_factory=list)
    workers: list[Proc] = field(default_factory=list)
    user: User | None = None
    _expected_dead: set[str] = field(default_factory=set)

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_PASSTHROUGH_PREFIXES)}
        env.update(
            {
                "PYTHONUNBUFFERED": "1",
                "NO_COLOR": "1",
                "SHOAL_DATA_DIR": str(self.workdir / "data"),
                "SHOAL_DATABASE_URL": self.database_url,
                "SHOAL_BROKER_URL": self.broker_url,
                "SHOAL_REDIS_URL": self.redis_url,
                "SHOAL_AUTH_SIGNING_KEY": self._signing_key,
                "SHOAL_LOGIN_RATE_LIMIT": "1000",
                # 12 heartbeats per lease: on a busy 2-core CI box an event loop can be late by
                # seconds (a lost lease fails the run: worker_lost)
                "SHOAL_RUN_LEASE_SECONDS": "6",
                "SHOAL_RUN_HEARTBEAT_SECONDS": "0.5",
                "SHOAL_SWEEPER_INTERVAL_SECONDS": "0.5",
                "SHOAL_REQUEUE_SECONDS": "1",
                "SHOAL_DRAIN_TIMEOUT_SECONDS": "2",
                "SHOAL_MAX_ACTIVE_RUNS_PER_ACCOUNT": "200",
                "SHOAL_DEFAULT_MODEL": "openai/fake-model",
                "SHOAL_LLM_MAX_RETRIES": "0",
                # sandboxes: a uid range of this test process's own (see tests/sandbox)
                "SHOAL_SANDBOX_UID_BASE": str(250_000 + (os.getpid() % 400) * 100),
                "OPENAI_API_BASE": f"{self.llm_url}/v1",
                "OPENAI_API_KEY": "sk-test",
                "LITELLM_OFFLINE_MODE": "true",
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            }
        )
        env.update(self.overrides)
        env.update(extra or {})
        return env

    def __post_init__(self) -> None:
        self._signing_key = signing_key_pem()
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)

    def _log(self, name: str) -> Path:
        return self.workdir / "logs" / f"{name}.log"

    def add_serve(self) -> Proc:
        port = free_port()
        name = f"serve{len(self.serve_procs)}"
        proc = Proc(
            name, [str(SHOAL), "serve", "--port", str(port)], self.env(), self._log(name)
        ).start()
        self.serve_procs.append(proc)
        self.serves.append(f"http://127.0.0.1:{port}")
        return proc

    def add_worker(self, overrides: Mapping[str, str] | None = None) -> Proc:
        name = f"worker{len(self.workers)}"
        proc = Proc(name, [str(SHOAL), "worker"], self.env(overrides), self._log(name)).start()
        self.workers.append(proc)
        return proc

    @property
    def procs(self) -> list[Proc]:
        return [*self.serve_procs, *self.workers]

    def live_workers(self) -> list[Proc]:
        return [w for w in self.workers if w.alive]

    def worker_by_id(self, worker_id: str) -> Proc:
        """The process behind a run's ``worker_id`` (``worker-<host>-<pid>-<hex>``)."""
        pid = int(worker_id.rsplit("-", 2)[-2])
        for proc in self.workers:
            if proc.popen is not None and proc.pid == pid:
                return proc
        raise LookupError(f"no worker process with pid {pid} ({worker_id})")

    def check_alive(self) -> None:
        for proc in self.procs:
            code = None if proc.popen is None else proc.popen.poll()
            if code is not None and proc.name not in self._expected_dead:
                raise RuntimeError(f"{proc.name} exited with {code}:\n{proc.tail()}")

    def expect_dead(self, proc: Proc) -> None:
        self._expected_dead.add(proc.name)

    def retire(self, proc: Proc, signum: int = signal.SIGTERM, *, timeout: float = 60.0) -> int:
        """Signal a process that is meant to end, and wait for its exit code. (A worker that
        is still importing LiteLLM in the background exits only once that import is done.)"""
        self.expect_dead(proc)
        proc.signal(signum)
        code = proc.wait(timeout)
        assert code is not None, f"{proc.name} did not exit {timeout}s after {signum}"
        return code

    def wait_ready(self, *, timeout: float = 120.0, workers_alive: int | None = None) -> None:
        """Every serve answers ``/api/health/ready`` 200 and sees the live workers' heartbeats."""
        expected = len(self.live_workers()) if workers_alive is None else workers_alive
        deadline = time.monotonic() + timeout
        pending = list(self.serves)
        last: Any = None
        with httpx.Client(timeout=5) as http:
            while pending:
                self.check_alive()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"cluster {self.name} not ready: {last}\n{self.tails()}")
                base = pending[0]
                try:
                    response = http.get(f"{base}/api/health/ready")
                    last = (base, response.status_code, response.text)
                    body = response.json()
                    if (
                        response.status_code == 200
                        and body["components"].get("workers_alive", 0) >= expected
                    ):
                        pending.pop(0)
                        continue
                except (httpx.HTTPError, ValueError) as exc:
                    last = (base, repr(exc))
                time.sleep(0.2)

    def wait_consumers(self, count: int | None = None, *, timeout: float = 30.0) -> None:
        """RabbitMQ shows ``count`` consumers on the run queue (default: the live workers), so a
        wake-up reaches every worker and none is starved by a late start."""
        expected = len(self.live_workers()) if count is None else count
        deadline = time.monotonic() + timeout
        seen = -1
        while True:
            self.check_alive()
            seen = queue_consumers(self.broker_admin_url)
            if seen >= expected:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{seen} consumers on {RUN_QUEUE}, expected {expected}")
            time.sleep(0.2)

    def signup(self) -> User:
        email = f"e2e-{uuid.uuid4().hex[:10]}@example.com"
        with httpx.Client(timeout=30) as http:
            response = http.post(
                f"{self.serves[0]}/auth/v1/signup",
                json={"email": email, "password": "correct horse battery staple"},
            )
        assert response.status_code == 200, response.text
        body = response.json()
        self.user = User(email=email, token=body["access_token"], id=body["user"]["id"])
        return self.user

    def stop(self) -> None:
        stop_all(self.procs, grace=15)

    def tails(self, lines: int = 40) -> str:
        return "\n".join(
            f"----- {proc.name} (pid {proc.popen.pid if proc.popen else '-'}, "
            f"exit {proc.popen.poll() if proc.popen else '-'}) -----\n{proc.tail(lines)}"
            for proc in self.procs
        )


# -- Postgres ----------------------------------------------------------------------------------


class Database:
    """Direct reads of the run tables (what the API does not show: ``worker_id``, raw rows)."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.url)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    async def run(self, run_id: str) -> asyncpg.Record:
        rows = await self.fetch("SELECT * FROM agent_runs WHERE id = $1", uuid.UUID(run_id))
        assert rows, f"no run {run_id}"
        return rows[0]

    async def events(self, run_id: str) -> list[dict[str, Any]]:
        rows = await self.fetch(
            "SELECT seq, type, data FROM run_events WHERE run_id = $1 ORDER BY seq",
            uuid.UUID(run_id),
        )
        return [
            {
                "seq": r["seq"],
                "type": r["type"],
                "data": json.loads(r["data"]) if isinstance(r["data"], str) else r["data"],
            }
            for r in rows
        ]

    async def active_runs(self) -> list[asyncpg.Record]:
        return await self.fetch(
            "SELECT id, status, worker_id FROM agent_runs WHERE status IN ('queued', 'running')"
        )


# -- API helpers (async) -----------------------------------------------------------------------


async def new_thread(http: httpx.AsyncClient, base: str, user: User) -> str:
    response = await http.post(f"{base}/api/threads", json={"name": "e2e"}, headers=user.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["thread_id"])


async def start_run(
    http: httpx.AsyncClient, base: str, user: User, thread_id: str, prompt: str
) -> str:
    response = await http.post(
        f"{base}/api/threads/{thread_id}/agent/start",
        json={"prompt": prompt},
        headers=user.headers,
    )
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"
    return str(response.json()["agent_run_id"])


async def get_run(http: httpx.AsyncClient, base: str, user: User, run_id: str) -> dict[str, Any]:
    response = await http.get(f"{base}/api/agent-run/{run_id}", headers=user.headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def wait_run(
    http: httpx.AsyncClient,
    base: str,
    user: User,
    run_id: str,
    statuses: tuple[str, ...] = TERMINAL,
    *,
    timeout: float = 20.0,
    interval: float = 0.05,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run = await get_run(http, base, user, run_id)
        if run["status"] in statuses:
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} never reached {statuses} in {timeout}s: {run}")
        await asyncio.sleep(interval)


async def messages(
    http: httpx.AsyncClient, base: str, user: User, thread_id: str
) -> list[dict[str, Any]]:
    response = await http.get(
        f"{base}/api/threads/{thread_id}/messages", params={"limit": 200}, headers=user.headers
    )
    assert response.status_code == 200, response.text
    return list(response.json()["messages"])


@dataclass
class StreamRead:
    status: int
    events: list[dict[str, Any]]
    ids: list[str | None]
    closed_by_server: bool


async def read_stream(
    http: httpx.AsyncClient,
    base: str,
    user: User,
    run_id: str,
    *,
    last_event_id: int | None = None,
    until_seq: int | None = None,
    until: Callable[[dict[str, Any]], bool] | None = None,
    timeout: float = 30.0,
) -> StreamRead:
    """Read a run's SSE stream until the server closes it (or hang up right after the event
    with ``until_seq``, or the first one ``until`` accepts)."""
    headers = dict(user.headers)
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    events: list[dict[str, Any]] = []
    ids: list[str | None] = []
    parser = SSEParser()
    async with (
        asyncio.timeout(timeout),
        http.stream(
            "GET", f"{base}/api/agent-run/{run_id}/stream", headers=headers, timeout=timeout
        ) as response,
    ):
        if response.status_code != 200:
            await response.aread()
            return StreamRead(response.status_code, [], [], True)
        async for chunk in response.aiter_bytes():
            for event in parser.feed(chunk):
                events.append(event.data)
                ids.append(event.id)
                if (until_seq is not None and event.data["seq"] >= until_seq) or (
                    until is not None and until(event.data)
                ):
                    return StreamRead(200, events, ids, False)
    return StreamRead(200, events, ids, True)


def comparable(events: list[dict[str, Any]]) -> list[tuple[int, str, str]]:
    """``(seq, type, data)`` of wire or stored events, for equality checks."""
    return [(e["seq"], e["type"], json.dumps(e["data"], sort_keys=True)) for e in events]


def assert_gapless(events: list[dict[str, Any]], *, first: int = 1) -> None:
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(first, first + len(seqs))), seqs
