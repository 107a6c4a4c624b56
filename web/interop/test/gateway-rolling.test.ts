// A rolling restart of three `weir serve` instances behind HAProxy (Debian's
// `haproxy`, HTTP mode, health checks on each instance's admin /healthz, and
// retries OFF), under steady load from connect-node's gRPC-Web client over
// HTTP/1.1 keep-alive, HTTP/1.1 with a connection per call, and h2c.
//
// What it proves (docs/operations.md, "Stopping"): the drain phase lets the load
// balancer see /healthz fail while every listener still accepts, so no unary
// call fails; streams either complete or end with the documented retryable
// UNAVAILABLE. HAProxy is found as HAPROXY_PATH, `haproxy` on PATH or
// /usr/sbin/haproxy (scripts/ensure-haproxy installs it).

import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import * as http from "node:http";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError, createClient, type Client, type Transport } from "@connectrpc/connect";
import { createGrpcWebTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { TestService } from "../src/gen/grpc/testing/test_pb.js";
import { type Gateway, gatewayAvailability, startGateway, startUpstream } from "../src/harness/gateway.js";
import { truthy } from "../src/harness/paths.js";
import type { RunningServer } from "../src/harness/server-process.js";

const INSTANCES = 3;
/** HAProxy's health checks: every CHECK_MS, down after FALL failures, up after RISE. */
const CHECK_MS = 200;
const FALL = 2;
const RISE = 2;
/** Longer than CHECK_MS × FALL plus a check's own time, as docs/operations.md asks. */
const DRAIN = "1500ms";
const GRACE = "4s";
/** Unary callers per client kind. */
const CALLERS = 4;

function findHaproxy(): string | undefined {
  const explicit = process.env.HAPROXY_PATH;
  if (explicit !== undefined && explicit !== "") return existsSync(explicit) ? explicit : undefined;
  const onPath = spawnSync("sh", ["-c", "command -v haproxy"], { encoding: "utf8" });
  if (onPath.status === 0 && onPath.stdout.trim() !== "") return onPath.stdout.trim();
  return existsSync("/usr/sbin/haproxy") ? "/usr/sbin/haproxy" : undefined;
}

const haproxyBin = findHaproxy();
const gateway = gatewayAvailability();
let skip: string | false = gateway.skip ?? false;
if (skip === false && haproxyBin === undefined) {
  const why = "haproxy not found (run scripts/ensure-haproxy or set HAPROXY_PATH)";
  if (truthy(process.env.WEIR_REQUIRE)) throw new Error(`WEIR_REQUIRE is set but ${why}`);
  skip = why;
}
if (skip !== false) console.log(`skipping the rolling-restart suite: ${skip}`);

/** A free TCP port on loopback (bound, then closed; the instances bind it again). */
async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

interface Instance {
  port: number;
  admin: number;
  gateway?: Gateway;
}

function instanceConfig(instance: Instance, upstreams: readonly string[]): string {
  return [
    "version = 1",
    "[[listener]]",
    `address = "127.0.0.1:${instance.port}"`,
    "[admin]",
    `address = "127.0.0.1:${instance.admin}"`,
    "[clusters.backend]",
    `addresses = ${JSON.stringify(upstreams)}`,
    "[routes]",
    '"*" = "backend"',
    "[timeouts]",
    `drain_delay = "${DRAIN}"`,
    `shutdown_grace = "${GRACE}"`,
    "",
  ].join("\n");
}

async function startInstance(instance: Instance, upstreams: readonly string[], n: number): Promise<void> {
  instance.gateway = await startGateway({ config: instanceConfig(instance, upstreams), name: `weir serve #${n}` });
}

/** HAProxy's configuration: one frontend and backend per client kind, retries off. */
function haproxyConfig(ports: { h1: number; close: number; h2c: number }, instances: readonly Instance[], socket: string): string {
  const servers = (proto: string) =>
    instances.map((it, i) => `  server weir${i} 127.0.0.1:${it.port}${proto} check port ${it.admin}`).join("\n");
  const backend = (name: string, proto: string, extra: string[] = []) => [
    `backend ${name}`,
    "  balance roundrobin",
    ...extra,
    "  option httpchk GET /healthz",
    "  http-check expect status 200",
    `  default-server inter ${CHECK_MS}ms fall ${FALL} rise ${RISE}`,
    servers(proto),
    "",
  ];
  return [
    "global",
    `  stats socket ${socket} mode 600 level admin`,
    "  maxconn 4096",
    "defaults",
    "  mode http",
    "  timeout connect 2s",
    "  timeout client 30s",
    "  timeout server 30s",
    // What this test is about: no retry and no redispatch hides a refused request.
    "  retries 0",
    "  retry-on none",
    "  no option redispatch",
    "",
    "frontend fe_h1",
    `  bind 127.0.0.1:${ports.h1}`,
    "  default_backend be_h1",
    "frontend fe_close",
    `  bind 127.0.0.1:${ports.close}`,
    "  option httpclose",
    "  default_backend be_close",
    "frontend fe_h2c",
    `  bind 127.0.0.1:${ports.h2c} proto h2`,
    "  default_backend be_h2c",
    "",
    ...backend("be_h1", ""),
    ...backend("be_close", "", ["  option httpclose"]),
    ...backend("be_h2c", " proto h2"),
  ].join("\n");
}

/** `show stat` on HAProxy's stats socket: status (UP, DOWN, …) by "backend/server". */
function haproxyStatus(socket: string): Promise<Map<string, string>> {
  return new Promise((resolve, reject) => {
    const conn = net.connect(socket);
    let out = "";
    conn.setTimeout(2_000, () => conn.destroy(new Error("stats socket timed out")));
    conn.on("connect", () => conn.write("show stat\n"));
    conn.on("data", (d) => (out += d.toString("utf8")));
    conn.on("error", reject);
    conn.on("close", () => {
      const lines = out.split("\n");
      const header = (lines[0] ?? "").replace(/^# /, "").split(",");
      const status = header.indexOf("status");
      const map = new Map<string, string>();
      for (const line of lines.slice(1)) {
        const f = line.split(",");
        if (f.length < header.length || f[1] === "FRONTEND" || f[1] === "BACKEND") continue;
        map.set(`${f[0]}/${f[1]}`, f[status] ?? "");
      }
      resolve(map);
    });
  });
}

async function waitForStatus(socket: string, server: string, want: string, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  let last = new Map<string, string>();
  while (Date.now() < deadline) {
    last = await haproxyStatus(socket);
    const backends = [...last.entries()].filter(([k]) => k.endsWith(`/${server}`));
    if (backends.length === 3 && backends.every(([, v]) => v.startsWith(want))) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`HAProxy did not see ${server} ${want} within ${ms} ms: ${JSON.stringify([...last])}`);
}

interface Load {
  calls: number;
  failures: string[];
  longestMs: number;
  streams: number;
  streamsUnavailable: number;
  streamFailures: string[];
}

const newLoad = (): Load => ({ calls: 0, failures: [], longestMs: 0, streams: 0, streamsUnavailable: 0, streamFailures: [] });

/** Unary callers and one stream loop on `client` until `stop` is set. */
function runLoad(client: Client<typeof TestService>, load: Load, stop: { done: boolean }): Promise<void>[] {
  const unary = async () => {
    while (!stop.done) {
      const t0 = Date.now();
      try {
        await client.unaryCall({ responseSize: 8 }, { timeoutMs: 10_000 });
        load.calls++;
      } catch (e) {
        const err = ConnectError.from(e);
        load.failures.push(`${Code[err.code]}: ${err.rawMessage}`);
      }
      load.longestMs = Math.max(load.longestMs, Date.now() - t0);
    }
  };
  const streams = async () => {
    while (!stop.done) {
      try {
        let n = 0;
        for await (const _ of client.streamingOutputCall({ responseParameters: Array.from({ length: 10 }, () => ({ size: 8, intervalUs: 100_000 })) })) n++;
        assert.equal(n, 10);
        load.streams++;
      } catch (e) {
        const err = ConnectError.from(e);
        if (err.code === Code.Unavailable) load.streamsUnavailable++;
        else load.streamFailures.push(`${Code[err.code]}: ${err.rawMessage}`);
      }
    }
  };
  return [...Array.from({ length: CALLERS }, unary), streams()];
}

describe("rolling restart of three weir serve instances behind HAProxy, retries off", { skip, timeout: 120_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), "weir-rolling-"));
  const socket = join(dir, "haproxy.sock");
  const upstreams: RunningServer[] = [];
  const instances: Instance[] = [];
  let haproxy: ChildProcess | undefined;
  let haproxyOutput = "";
  const ports = { h1: 0, close: 0, h2c: 0 };

  before(async () => {
    for (let i = 0; i < 2; i++) upstreams.push(await startUpstream("grpcjs"));
    const upstreamUrls = upstreams.map((u) => u.url);
    for (let i = 0; i < INSTANCES; i++) {
      const instance: Instance = { port: await freePort(), admin: await freePort() };
      instances.push(instance);
      await startInstance(instance, upstreamUrls, i);
    }
    ports.h1 = await freePort();
    ports.close = await freePort();
    ports.h2c = await freePort();
    const cfg = join(dir, "haproxy.cfg");
    writeFileSync(cfg, haproxyConfig(ports, instances, socket));
    haproxy = spawn(haproxyBin ?? "haproxy", ["-db", "-f", cfg], { stdio: ["ignore", "pipe", "pipe"] });
    haproxy.stdout?.on("data", (d: Buffer) => (haproxyOutput += d.toString("utf8")));
    haproxy.stderr?.on("data", (d: Buffer) => (haproxyOutput += d.toString("utf8")));
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        for (let i = 0; i < INSTANCES; i++) await waitForStatus(socket, `weir${i}`, "UP", 100);
        break;
      } catch (e) {
        if (haproxy.exitCode !== null || Date.now() > deadline) {
          throw new Error(`HAProxy did not come up: ${e instanceof Error ? e.message : String(e)}\n${haproxyOutput}`);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  });

  after(async () => {
    haproxy?.kill("SIGKILL");
    for (const instance of instances) await instance.gateway?.stop();
    for (const upstream of upstreams) await upstream.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("no unary call fails; streams complete or end UNAVAILABLE", async () => {
    const keepAlive = new http.Agent({ keepAlive: true });
    const noKeepAlive = new http.Agent({ keepAlive: false });
    const sessions = new Http2SessionManager(`http://127.0.0.1:${ports.h2c}`);
    const kinds: { name: string; transport: Transport; load: Load }[] = [
      {
        name: "HTTP/1.1 keep-alive",
        transport: createGrpcWebTransport({ baseUrl: `http://127.0.0.1:${ports.h1}`, httpVersion: "1.1", nodeOptions: { agent: keepAlive } }),
        load: newLoad(),
      },
      {
        name: "HTTP/1.1 close",
        transport: createGrpcWebTransport({ baseUrl: `http://127.0.0.1:${ports.close}`, httpVersion: "1.1", nodeOptions: { agent: noKeepAlive } }),
        load: newLoad(),
      },
      {
        name: "h2c",
        transport: createGrpcWebTransport({ baseUrl: `http://127.0.0.1:${ports.h2c}`, httpVersion: "2", sessionManager: sessions }),
        load: newLoad(),
      },
    ];
    const stop = { done: false };
    const running = kinds.flatMap((k) => runLoad(createClient(TestService, k.transport), k.load, stop));
    const upstreamUrls = upstreams.map((u) => u.url);
    const callsAt: number[][] = [];
    try {
      await new Promise((r) => setTimeout(r, 500));
      for (let i = 0; i < INSTANCES; i++) {
        const instance = instances[i]!;
        const old = instance.gateway!;
        callsAt.push(kinds.map((k) => k.load.calls));
        old.kill("SIGTERM");
        await waitForStatus(socket, `weir${i}`, "DOWN", 5_000);
        const deadline = Date.now() + 15_000;
        while (old.running() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
        assert.equal(old.running(), false, `instance ${i} exited after SIGTERM`);
        await startInstance(instance, upstreamUrls, i);
        await waitForStatus(socket, `weir${i}`, "UP", 5_000);
      }
      await new Promise((r) => setTimeout(r, 300));
    } finally {
      stop.done = true;
      await Promise.all(running);
      sessions.abort();
      keepAlive.destroy();
      noKeepAlive.destroy();
    }

    for (const { name, load } of kinds) {
      console.log(
        `# ${name}: ${load.calls} unary calls, ${load.failures.length} failed, longest ${load.longestMs} ms; ` +
          `${load.streams} streams completed, ${load.streamsUnavailable} ended UNAVAILABLE`,
      );
    }
    for (const { name, load } of kinds) {
      assert.deepEqual(load.failures.slice(0, 5), [], `${name}: failed unary calls (${load.failures.length} in all)`);
      assert.deepEqual(load.streamFailures, [], `${name}: streams that ended other than OK or UNAVAILABLE`);
      assert.ok(load.streams > 0, `${name}: streams completed`);
    }
    // Calls kept flowing across every restart (the load was real, not stalled).
    for (let i = 0; i < INSTANCES; i++) {
      const next = i + 1 < INSTANCES ? callsAt[i + 1]! : kinds.map((k) => k.load.calls);
      kinds.forEach((k, j) => assert.ok(next[j]! - callsAt[i]![j]! > 10, `${k.name}: calls during restart ${i}`));
    }
  });
});
