"""§5.3: the client cancels a call. The server resets the response side with CANCEL (whatever
code the client used: it never echoes one, §5.1), writes no trailer block, and cancels the
backend call, which the backend (a separate `weir demo`) counts on its /metrics.

Each test has its own backend and gateway, so the backend's counter moves only for it.
"""

from __future__ import annotations

import servers
import wt
from common import SVC, expect_reset, session, test

MAPPED_CANCEL = wt.wt_code(wt.CANCEL)


async def cancel_case(name: str, version: int, method: str, requests: list[bytes], end: bool,
                      cancel, started_frames: int = 1) -> None:
    """Start `method`, optionally end the request, wait for `started_frames` response frames
    (the backend is running the call), then `cancel(call)`; check the reset and the backend."""
    p = await servers.pair(name)
    try:
        async with session(p.gw, version) as s:
            before = await p.cancellations(method)
            call = s.call().headers(SVC + method)
            for r in requests:
                call.message(r)
            if end:
                call.end(version)
            await call.wait_frames(started_frames)
            cancel(call)
            expect_reset(await call.response(), MAPPED_CANCEL)
            after = await p.wait_cancellations(method, before + 1)
            assert after == before + 1, f"the backend saw {after - before} cancelled {method} calls"
    finally:
        await p.close()


SLOW_STREAM = wt.streaming_output_request([1] * 100, interval_us=100_000)  # 10 s of messages


@test
async def test_5_3_v1_reset_before_end_cancels(env):
    """§5.3: version 1: a reset of the request side before FIN cancels the call."""
    await cancel_case("v1-reset", 1, "FullDuplexCall", [], False, lambda c: c.reset(MAPPED_CANCEL))


@test
async def test_5_3_v2_reset_after_end_of_request_cancels(env):
    """§5.3: version 2: a reset after the end-of-request frame cancels the call (the point of
    version 2)."""
    await cancel_case("v2-reset", 2, "StreamingOutputCall", [SLOW_STREAM], True,
                      lambda c: c.reset(MAPPED_CANCEL), started_frames=2)


@test
async def test_5_3_v2_reset_with_raw_code_cancels(env):
    """§5.1, §5.3: a reset with a code outside the WebTransport range (raw 0) still cancels;
    the server answers with the mapped CANCEL."""
    await cancel_case("v2-reset-raw", 2, "StreamingOutputCall", [SLOW_STREAM], True,
                      lambda c: c.reset(0), started_frames=2)


@test
async def test_5_3_v1_stop_sending_after_fin_cancels(env):
    """§5.3: STOP_SENDING with any code (here the mapped 7) cancels a call whose request
    ended; the reset carries CANCEL, not 7."""
    await cancel_case("v1-stop", 1, "StreamingOutputCall", [SLOW_STREAM], True,
                      lambda c: c.stop(wt.wt_code(7)), started_frames=2)


@test
async def test_5_3_v2_stop_sending_raw_code_cancels(env):
    """§5.3: STOP_SENDING with a raw 0 cancels; the reset carries the mapped CANCEL."""
    await cancel_case("v2-stop-raw", 2, "FullDuplexCall", [], False, lambda c: c.stop(0))


@test
async def test_5_3_v2_reset_and_stop_sending_cancels(env):
    """§5.3: what a browser sends on abort: a reset and STOP_SENDING, both CANCEL."""
    await cancel_case("v2-both", 2, "FullDuplexCall", [wt.streaming_output_request([1])], False,
                      lambda c: c.reset(MAPPED_CANCEL).stop(MAPPED_CANCEL), started_frames=2)


@test
async def test_5_1_client_codes_never_echoed(env):
    """§5.1: a reset with the mapped 5 and STOP_SENDING with the mapped 9 get CANCEL back."""
    await cancel_case("no-echo", 2, "FullDuplexCall", [], False,
                      lambda c: c.reset(wt.wt_code(5)).stop(wt.wt_code(9)))
