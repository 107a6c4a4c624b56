"""Starting the servers under test: `weir demo` as the backend, `weir serve` as the gateway.

The gateway serves WebTransport and proxies every call to the demo's TestService over
HTTP/2, so what the backend sees (a cancelled call, on its /metrics) is observed in another
process than the one that speaks WebTransport.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import tempfile
from dataclasses import dataclass

WEIR = os.environ.get("WEIR_BIN", "target/debug/weir")
LOG_DIR = os.environ.get("WEIR_CONFORMANCE_LOGS") or tempfile.mkdtemp(prefix="weir-conformance-")

_started: list[asyncio.subprocess.Process] = []


@dataclass
class Addr:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class Weir:
    """A running weir process and the addresses it printed on start-up."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process, lines: list[str]):
        self.name, self.proc, self.lines = name, proc, lines
        text = "\n".join(lines)
        self.http = _addr(r"listening on http://(\S+)", text)
        self.admin = _addr(r"admin on http://(\S+)", text)
        self.wt = _addr(r"webtransport on https://([^/\s]+)", text)
        m = re.search(r"sha-256 ([0-9a-f]{64})", text)
        self.cert_hash = m.group(1) if m else None

    async def metric(self, name: str, **labels: str) -> float:
        """A sample of the admin listener's /metrics (0 when absent)."""
        want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else "")
        for line in (await http_get(self.admin, "/metrics"))[1].splitlines():
            sample, _, value = line.rpartition(" ")
            if sample and _normalize(sample) == want:
                return float(value)
        return 0.0

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


def _normalize(sample: str) -> str:
    """name{b="1",a="2"} with its labels sorted, to compare samples."""
    m = re.fullmatch(r"([^{]+)\{(.*)\}", sample)
    if not m:
        return sample
    labels = sorted(re.findall(r'\w+="(?:[^"\\]|\\.)*"', m.group(2)))
    return m.group(1) + "{" + ",".join(labels) + "}"


def _addr(pattern: str, text: str) -> Addr | None:
    m = re.search(pattern, text)
    if not m:
        return None
    host, _, port = m.group(1).rstrip("/").rpartition(":")
    return Addr(host, int(port))


async def start(name: str, args: list[str], wanted: list[str], timeout: float = 20.0) -> Weir:
    """Start weir with args; wait for start-up lines containing each of `wanted`."""
    log = open(os.path.join(LOG_DIR, f"{name}.log"), "wb")
    proc = await asyncio.create_subprocess_exec(
        WEIR, *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=log,
        env={**os.environ, "WEIR_LOG": os.environ.get("WEIR_LOG", "info")})
    _started.append(proc)
    lines: list[str] = []

    async def read_lines():
        while not all(any(w in line for line in lines) for w in wanted):
            line = await proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{name} ended before printing {wanted}: {lines}; see {log.name}")
            lines.append(line.decode().strip())

    await asyncio.wait_for(read_lines(), timeout)
    # Keep draining stdout so the process never blocks on a full pipe.
    asyncio.get_running_loop().create_task(_drain(proc))
    return Weir(name, proc, lines)


async def _drain(proc):
    while await proc.stdout.readline():
        pass


async def demo(name: str = "demo", webtransport: bool = False) -> Weir:
    args = ["demo", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"]
    wanted = ["listening on", "admin on"]
    if webtransport:
        args += ["--webtransport-listen", "127.0.0.1:0"]
        wanted.append("webtransport on")
    return await start(name, args, wanted)


async def gateway(name: str, upstream: Weir, extra_toml: str = "", timeouts: str = 'drain_delay = "0s"',
                  webtransport: str = "", cors: str = 'allow_origins = ["http://localhost:3000"]') -> Weir:
    """`weir serve` with a WebTransport listener in front of `upstream` (a demo)."""
    config = f"""version = 1
[[listener]]
address = "127.0.0.1:0"
[admin]
address = "127.0.0.1:0"
[webtransport]
address = "127.0.0.1:0"
{webtransport}
[clusters.up]
addresses = ["http://{upstream.http}"]
[routes]
"*" = "up"
[cors]
{cors}
[timeouts]
{timeouts}
{extra_toml}
"""
    path = os.path.join(LOG_DIR, f"{name}.toml")
    with open(path, "w") as f:
        f.write(config)
    return await start(name, ["serve", "--config", path], ["listening on", "admin on", "webtransport on"])


class Pair:
    """A private backend and gateway, for tests that count what the backend saw or stop the
    gateway."""

    def __init__(self, backend: Weir, gw: Weir):
        self.backend, self.gw = backend, gw

    async def cancellations(self, method: str) -> float:
        return await self.backend.metric("weir_call_cancellations_total",
                                         service="grpc.testing.TestService", method=method)

    async def wait_cancellations(self, method: str, at_least: float, timeout: float = 5.0) -> float:
        """Poll the backend's counter (it has no event to await) until it reaches at_least."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            n = await self.cancellations(method)
            if n >= at_least or loop.time() > deadline:
                return n
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        await self.gw.stop()
        await self.backend.stop()


async def pair(name: str, **gateway_args) -> Pair:
    backend = await demo(f"{name}-backend")
    return Pair(backend, await gateway(name, backend, **gateway_args))


async def http_get(addr: Addr, path: str) -> tuple[dict[str, str], str]:
    """A plain HTTP/1.1 GET: (headers, body). Enough for /metrics and the discovery document."""
    reader, writer = await asyncio.open_connection(addr.host, addr.port)
    writer.write(f"GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n".encode())
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    headers[":status"] = str(status)
    if headers.get("transfer-encoding") == "chunked":
        body = _dechunk(body)
    return headers, body.decode()


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size, _, data = data.partition(b"\r\n")
        n = int(size, 16)
        if n == 0:
            break
        out, data = out + data[:n], data[n + 2:]
    return out


async def stop_all() -> None:
    for proc in _started:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
