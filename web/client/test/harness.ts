// Test harness of @weir/client: bundles browser entry points, serves them from
// an origin of their own, starts the servers under test (connect-node
// reference, `weir demo` with its admin listener) and headless Chromium.

import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { type Browser, chromium } from "playwright-core";
import { chromiumPath } from "../../interop/src/harness/browser.js";
import type { RunningServer } from "../../interop/src/harness/server-process.js";
import { startServer } from "../../interop/src/harness/server-process.js";
import { referenceTarget, selectedTargets, type Target, weirTarget } from "../../interop/src/harness/targets.js";

export const CLIENT_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "..");

export async function bundle(entry: string, minify = false): Promise<string> {
  const result = await build({
    entryPoints: [resolve(CLIENT_DIR, entry)],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    minify,
    write: false,
    logLevel: "silent",
  });
  const file = result.outputFiles[0];
  if (file === undefined) throw new Error("esbuild produced no output");
  return file.text;
}

export interface StaticServer {
  readonly origin: string;
  close(): Promise<void>;
}

/** Serves fixed files (path → [content type, body]) on a port of its own. */
export async function serveFiles(files: Record<string, [string, string]>, host = "127.0.0.1"): Promise<StaticServer> {
  const server = http.createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    const f = files[path];
    if (req.method !== "GET" || f === undefined) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "content-type": f[0], "cache-control": "no-store" }).end(f[1]);
  });
  await new Promise<void>((ok, fail) => {
    server.once("error", fail);
    server.listen(0, host, ok);
  });
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://${host === "127.0.0.1" ? "127.0.0.1" : host}:${port}`,
    close: () =>
      new Promise<void>((ok) => {
        server.closeAllConnections();
        server.close(() => ok());
      }),
  };
}

/**
 * Runs before the page's module, in every engine: records uncaught errors and
 * unhandled rejections in `window.weirPageErrors` (read by EnginePage.errors;
 * WebKit's driver reports neither), and with `?no-webtransport` in the URL
 * removes `WebTransport`, as a browser without it.
 */
export const PRELUDE = `window.weirPageErrors = [];
addEventListener("error", (e) => weirPageErrors.push("error: " + (e.error && e.error.stack || e.message)));
addEventListener("unhandledrejection", (e) => weirPageErrors.push("unhandledrejection: " + (e.reason && e.reason.stack || e.reason)));
if (new URLSearchParams(location.search).has("no-webtransport")) delete window.WebTransport;`;

export const html = (script: string) =>
  `<!doctype html><html><head><meta charset="utf-8"><title>weir client test</title><script>${PRELUDE}</script></head><body><script type="module" src="${script}"></script></body></html>`;

/** Headless Chromium; `extraArgs` are added to the command line (e.g. --ignore-certificate-errors). */
export function launch(extraArgs: readonly string[] = []): Promise<Browser> {
  return chromium.launch({
    executablePath: chromiumPath(),
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--enable-precise-memory-info",
      "--js-flags=--expose-gc",
      ...extraArgs,
    ],
    timeout: 30_000,
  });
}

export interface ServerUnderTest {
  readonly server: RunningServer;
  readonly isWeir: boolean;
  /** Sum of weir_call_cancellations_total from the admin endpoint (weir only). */
  cancellations?(): Promise<number>;
}

export interface ClientTarget {
  readonly name: string;
  readonly skip?: string;
  readonly unavailable?: string;
  readonly isWeir: boolean;
  start(origins: string[]): Promise<ServerUnderTest>;
}

function weirBin(): string {
  return process.env.WEIR_BIN !== undefined && process.env.WEIR_BIN !== ""
    ? resolve(process.env.WEIR_BIN)
    : resolve(CLIENT_DIR, "../../target/debug/weir");
}

export interface WeirDemoOptions {
  /** Default 127.0.0.1:0. */
  listen?: string;
  /** Start the WebTransport listener on this UDP address (e.g. 127.0.0.1:0). */
  webtransport?: string;
}

export interface WeirUnderTest extends ServerUnderTest {
  /** The session URL weir printed (`webtransport on ...`), with --webtransport-listen. */
  readonly webtransportUrl?: string;
  /** The admin listener's base URL. */
  readonly admin?: string;
}

const WEBTRANSPORT_LINE = /webtransport on (https:\/\/\S+)/;

async function startWeir(origins: string[]): Promise<ServerUnderTest> {
  return startWeirDemo(origins);
}

/** `weir demo` with its admin listener (and optionally WebTransport), allowing `origins`. */
export async function startWeirDemo(origins: string[], opts: WeirDemoOptions = {}): Promise<WeirUnderTest> {
  const wt = opts.webtransport !== undefined ? ["--webtransport-listen", opts.webtransport] : [];
  const server = await startServer({
    name: "weir demo",
    command: weirBin(),
    args: ["demo", "--listen", opts.listen ?? "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", ...wt, ...origins.flatMap((o) => ["--allow-origin", o])],
  });
  const webtransportUrl = wt.length > 0 ? WEBTRANSPORT_LINE.exec(server.output())?.[1] : undefined;
  let admin: string | undefined;
  for (let i = 0; i < 50 && admin === undefined; i++) {
    admin = /admin on (http:\/\/\S+)/.exec(server.output())?.[1];
    if (admin === undefined) await new Promise((r) => setTimeout(r, 100));
  }
  return {
    server,
    isWeir: true,
    webtransportUrl,
    admin,
    async cancellations() {
      if (admin === undefined) throw new Error(`weir printed no admin address:\n${server.output()}`);
      return cancellationsAt(admin);
    },
  };
}

/** Sum of weir_call_cancellations_total on an admin listener. */
export async function cancellationsAt(admin: string): Promise<number> {
  const text = await (await fetch(`${admin}/metrics`)).text();
  let sum = 0;
  for (const line of text.split("\n")) {
    const m = /^weir_call_cancellations_total(?:\{[^}]*\})?\s+(\S+)/.exec(line);
    if (m?.[1] !== undefined) sum += Number(m[1]);
  }
  return sum;
}

/** A port that is free now on 127.0.0.1 (TCP, or UDP with `udp`). */
export async function freePort(udp = false): Promise<number> {
  if (udp) {
    const dgram = await import("node:dgram");
    const sock = dgram.createSocket("udp4");
    await new Promise<void>((ok) => sock.bind(0, "127.0.0.1", ok));
    const { port } = sock.address();
    await new Promise<void>((ok) => sock.close(() => ok()));
    return port;
  }
  const srv = http.createServer();
  await new Promise<void>((ok) => srv.listen(0, "127.0.0.1", ok));
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((ok) => srv.close(() => ok()));
  return port;
}

/**
 * The servers the client suites run against, of the interop targets (INTEROP_TARGETS,
 * WEIR_BIN, WEIR_REQUIRE): `weir demo` (with its admin listener) and connect-node's reference
 * server. The `weir serve` targets are left to web/interop's suites, which check what reaches
 * their upstreams; here they used to start the reference server again under the gateway's
 * names, which only repeated it.
 */
export function clientTargets(): ClientTarget[] {
  return selectedTargets()
    .filter((t: Target) => t.name === weirTarget().name || t.name === referenceTarget.name)
    .map((t: Target): ClientTarget => {
      const isWeir = t.name === weirTarget().name;
      const base = { name: t.name, skip: t.skip, unavailable: t.unavailable, isWeir };
      if (!isWeir) return { ...base, start: async (o) => ({ server: await referenceTarget.start(o), isWeir: false }) };
      return { ...base, start: startWeir };
    });
}
