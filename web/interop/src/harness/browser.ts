// Browser side of the harness: bundles the test page with esbuild, serves it
// from its own origin, and drives headless Chromium through playwright-core
// (system Chromium; playwright never downloads a browser here).

import { existsSync } from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { resolve } from "node:path";
import { build } from "esbuild";
import { type Browser, chromium } from "playwright-core";
import { PACKAGE_DIR } from "./targets.js";

export async function bundlePage(): Promise<string> {
  const result = await build({
    entryPoints: [resolve(PACKAGE_DIR, "browser/page.ts")],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    write: false,
    logLevel: "silent",
  });
  const file = result.outputFiles[0];
  if (file === undefined) throw new Error("esbuild produced no output");
  return file.text;
}

const PAGE_HTML = `<!doctype html>
<html><head><meta charset="utf-8"><title>weir interop page</title></head>
<body><script type="module" src="/page.js"></script></body></html>
`;

export interface PageServer {
  /** e.g. http://127.0.0.1:40123 - the page origin, to allow on the gRPC server. */
  readonly origin: string;
  close(): Promise<void>;
}

/** A static server for the test page, on a port of its own (so another origin). */
export async function startPageServer(script: string): Promise<PageServer> {
  const server = http.createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    if (req.method !== "GET") {
      res.writeHead(405).end();
    } else if (path === "/" || path === "/index.html") {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(PAGE_HTML);
    } else if (path === "/page.js") {
      res.writeHead(200, { "content-type": "text/javascript; charset=utf-8" }).end(script);
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((ok, fail) => {
    server.once("error", fail);
    server.listen(0, "127.0.0.1", ok);
  });
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((ok) => {
        server.closeAllConnections();
        server.close(() => ok());
      }),
  };
}

export function chromiumPath(): string {
  const candidates = [process.env.CHROMIUM_PATH, "/usr/bin/chromium", "/usr/bin/chromium-browser"].filter(
    (p): p is string => p !== undefined && p !== "",
  );
  const found = candidates.find((p) => existsSync(p));
  if (found === undefined) {
    throw new Error(`no Chromium found (tried ${candidates.join(", ")}); run scripts/ensure-chromium or set CHROMIUM_PATH`);
  }
  return found;
}

export function launchChromium(): Promise<Browser> {
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
    ],
    timeout: 30_000,
  });
}
