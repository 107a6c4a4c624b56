"""The suite's runner: every test is an async function, and they all run concurrently.

    python run.py [SUBSTRING ...]   # run the tests whose names contain any SUBSTRING

Tests share one backend and gateway (env.gw) unless they need their own (servers.pair).
Exit status 0 when nothing failed. The last line is 'N passed, N failed, N skipped'.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import servers  # noqa: E402
from common import TESTS, Skip  # noqa: E402

MODULES = ["test_session", "test_calls", "test_errors", "test_cancel", "test_close"]
TEST_TIMEOUT = 45.0
CONCURRENCY = int(os.environ.get("WEIR_CONFORMANCE_JOBS", "16"))


class Env:
    """What tests share: the backend (`weir demo`), the gateway in front of it (`weir serve`),
    and a `weir demo` serving WebTransport itself."""

    async def start(self):
        self.backend = await servers.demo("backend")
        self.gw, self.demo_wt = await asyncio.gather(
            servers.gateway("gateway", self.backend), servers.demo("demo-wt", webtransport=True))
        return self


def _test_frames(e: BaseException) -> list[str]:
    """The traceback lines in the suite's test modules: where an assertion failed."""
    tb = traceback.extract_tb(e.__traceback__)
    return traceback.format_list([f for f in tb if os.path.basename(f.filename).startswith(("test_", "common"))])


async def run_one(fn, env, sem):
    async with sem:
        started = time.monotonic()
        try:
            await asyncio.wait_for(fn(env), TEST_TIMEOUT)
            outcome, detail = "PASS", ""
        except Skip as e:
            outcome, detail = "SKIP", str(e)
        except Exception as e:  # noqa: BLE001 - a test's failure, whatever it is
            outcome = "FAIL"
            detail = "".join(traceback.format_exception(e)) if not isinstance(e, AssertionError) \
                else f"{e}\n" + "".join(_test_frames(e))
        elapsed = time.monotonic() - started
        line = f"{outcome} {fn.__name__} ({elapsed:.1f} s)"
        print(line + (f"\n    {detail.strip()}".replace("\n", "\n    ") if detail else ""), flush=True)
        return fn.__name__, outcome


async def main(filters: list[str]) -> int:
    for name in MODULES:
        importlib.import_module(name)
    tests = [t for t in TESTS if not filters or any(f in t.__name__ for f in filters)]
    started = time.monotonic()
    try:
        env = await Env().start()
        sem = asyncio.Semaphore(CONCURRENCY)
        results = await asyncio.gather(*(run_one(t, env, sem) for t in tests))
    finally:
        await servers.stop_all()
    counts = {o: sum(1 for _, o2 in results if o2 == o) for o in ("PASS", "FAIL", "SKIP")}
    print(f"\n{len(tests)} tests in {time.monotonic() - started:.1f} s; server logs in {servers.LOG_DIR}")
    failed = sorted(n for n, o in results if o == "FAIL")
    if failed:
        print("failed: " + " ".join(failed))
    print(f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped")
    return 1 if counts["FAIL"] or not tests else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
