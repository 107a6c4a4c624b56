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

export const html = (script: string) =>
  `<!doctype html><html><head><meta charset="utf-8"><title>weir client test</title></head><body><script type="module" src="${script}"></script></body></html>`;

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

async function startWeir(origins: string[]): Promise<ServerUnderTest> {
  const server = await startServer({
    name: "weir demo",
    command: weirBin(),
    args: ["demo", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", ...origins.flatMap((o) => ["--allow-origin", o])],
  });
  let admin: string | undefined;
  for (let i = 0; i < 50 && admin === undefined; i++) {
    admin = /admin on (http:\/\/\S+)/.exec(server.output())?.[1];
    if (admin === undefined) await new Promise((r) => setTimeout(r, 100));
  }
  return {
    server,
    isWeir: true,
    async cancellations() {
      if (admin === undefined) throw new Error(`weir printed no admin address:\n${server.output()}`);
      const text = await (await fetch(`${admin}/metrics`)).text();
      let sum = 0;
      for (const line of text.split("\n")) {
        const m = /^weir_call_cancellations_total(?:\{[^}]*\})?\s+(\S+)/.exec(line);
        if (m?.[1] !== undefined) sum += Number(m[1]);
      }
      return sum;
    },
  };
}

/** The interop targets (INTEROP_TARGETS, WEIR_BIN, WEIR_REQUIRE), weir with its admin listener. */
export function clientTargets(): ClientTarget[] {
  return selectedTargets().map((t: Target): ClientTarget => {
    const isWeir = t.name === weirTarget().name;
    const base = { name: t.name, skip: t.skip, unavailable: t.unavailable, isWeir };
    if (!isWeir) return { ...base, start: async (o) => ({ server: await referenceTarget.start(o), isWeir: false }) };
    return { ...base, start: startWeir };
  });
}
