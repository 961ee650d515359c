import time, asyncio
import pytest
from tests.runs.conftest import *

@pytest.fixture
def settings_overrides():
    return {"max_active_runs_per_account": 1}

@pytest.mark.parametrize("variant", ["plain429", "initiate429", "none"])
async def test_dbg(client, user, app, variant):
    a, _ = await new_thread(client, user)
    b, _ = await new_thread(client, user)
    first = await start_run(client, user, a, "stall")
    await wait_run(client, user, first, ("running",))
    if variant == "plain429":
        r = await client.post(f"/api/threads/{b}/agent/start", json={"prompt": "hi"}, headers=user.headers)
        assert r.status_code == 429
    if variant == "initiate429":
        r = await client.post("/api/agent/initiate", files={"prompt": (None, "x")}, headers=user.headers)
        assert r.status_code == 429
    await client.post(f"/api/agent-run/{first}/stop", headers=user.headers)
    await wait_run(client, user, first)
    t = time.monotonic()
    host = app.state.run_host
    await host.stop()
    print("host.stop", time.monotonic() - t)
    t = time.monotonic()
    await app.state.engine.dispose()
    print("dispose", time.monotonic() - t)
    import faulthandler, sys; faulthandler.dump_traceback_later(6, exit=False, file=sys.__stderr__)
