// Browser figures of the weir benchmark harness: one server stream of many small messages,
// decoded in headless Chromium by each client library, against weir's gRPC-Web layer.
//
//   node --import tsx src/browser.ts [--quick|--full] --server <weir-bench binary>
//
// Starts `weir-bench serve weir-layer` (stopped at the end), serves the bundled page from
// another origin, and prints a Markdown table on stdout. Chromium runs with
// --enable-precise-memory-info so performance.memory is exact.

import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { dirname, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { build } from "esbuild";
import { chromium } from "playwright-core";
import type { Contender, Result } from "../browser/page.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: { quick: { type: "boolean" }, full: { type: "boolean" }, server: { type: "string" } },
});
const quick = values.quick === true;
const COUNT = quick ? 2_000 : 100_000;
const SIZE = 10;
const REPS = quick ? 1 : 5;
const CONTENDERS: Contender[] = ["grpc-web-text", "connect-web", "weir-fetch", "weir-xhr"];

async function startServer(binary: string): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(binary, ["serve", "weir-layer"], { stdio: ["ignore", "pipe", "inherit"] });
  const lines = createInterface({ input: child.stdout! });
  const url = await new Promise<string>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error("server did not start within 30 s")), 30_000);
    lines.on("line", (line) => {
      const at = line.indexOf("listening on ");
      if (at >= 0) {
        clearTimeout(timer);
        ok(line.slice(at + "listening on ".length).trim());
      }
    });
    child.once("exit", () => fail(new Error("server exited before listening")));
  });
  return { child, url };
}

async function startPage(): Promise<{ origin: string; close(): void }> {
  const bundle = await build({
    entryPoints: [resolve(HERE, "../browser/page.ts")],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    write: false,
    logLevel: "silent",
  });
  const script = bundle.outputFiles[0]?.text ?? "";
  const html = `<!doctype html><html><head><meta charset="utf-8"><title>weir bench</title></head><body><script type="module" src="/page.js"></script></body></html>`;
  const server = http.createServer((req, res) => {
    if (req.url === "/page.js") res.writeHead(200, { "content-type": "text/javascript" }).end(script);
    else res.writeHead(200, { "content-type": "text/html" }).end(html);
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
const spread = (xs: number[]) => {
  const m = median(xs);
  return m > 0 ? ((Math.max(...xs) - Math.min(...xs)) / m) * 100 : 0;
};
const mib = (bytes: number) => (bytes / 1024 / 1024).toFixed(1);

async function main(): Promise<void> {
  const binary = values.server;
  if (binary === undefined) throw new Error("--server <weir-bench binary> is required");
  const chromiumPath = [process.env.CHROMIUM_PATH, "/usr/bin/chromium"].find((p) => p !== undefined && existsSync(p));
  if (chromiumPath === undefined) {
    console.log("SKIPPED: no Chromium (run scripts/ensure-chromium or set CHROMIUM_PATH)\n");
    return;
  }
  const server = await startServer(binary);
  const page = await startPage();
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--enable-precise-memory-info", "--js-flags=--expose-gc"],
    timeout: 30_000,
  });
  const results = new Map<Contender, Result[]>();
  const failures: string[] = [];
  try {
    // Repetition 0 warms up; the contenders take turns within each repetition.
    for (let rep = 0; rep <= REPS; rep++) {
      for (const contender of CONTENDERS) {
        const context = await browser.newContext();
        const tab = await context.newPage();
        await tab.goto(`${page.origin}/`, { timeout: 15_000 });
        await tab.waitForFunction(() => typeof window.bench !== "undefined", undefined, { timeout: 15_000 });
        await tab.evaluate(() => (globalThis as { gc?: () => void }).gc?.());
        const count = rep === 0 ? Math.max(1, COUNT / 10) : COUNT;
        const result = await tab.evaluate(([c, url, n, size]) => window.bench.run(c, url, n, size), [contender, server.url, count, SIZE] as const);
        await context.close();
        if (!result.ok) {
          failures.push(`${contender}: ${result.error ?? `${result.messages} of ${count} messages`}`);
          continue;
        }
        if (rep > 0) results.set(contender, [...(results.get(contender) ?? []), result]);
      }
    }
  } finally {
    await browser.close();
    page.close();
    server.child.kill("SIGTERM");
  }
  const reference = median((results.get("grpc-web-text") ?? []).map((r) => r.ms));
  const lines = [
    `One server stream of ${COUNT} messages of ${SIZE} bytes (StreamingOutputCall) from weir's gRPC-Web layer (HTTP/1.1, loopback), decoded in headless Chromium (${chromiumPath}); median of ${REPS} runs after a warm-up, a fresh browser context per run. Heap: \`performance.memory.usedJSHeapSize\` (precise), peak sampled every 1000 messages, minus the value before the call.`,
    "",
    "| client | mode | time ms | ± | messages/s | heap peak growth MiB | heap after MiB | × grpc-web time |",
    "|---|---|---:|---:|---:|---:|---:|---:|",
  ];
  const modes: Record<Contender, string> = {
    "grpc-web-text": "grpc-web (official), text, XHR",
    "connect-web": "@connectrpc/connect-web, binary, fetch",
    "weir-fetch": "@weir/client fetch, binary",
    "weir-xhr": "@weir/client XHR, binary",
  };
  for (const contender of CONTENDERS) {
    const rs = results.get(contender) ?? [];
    if (rs.length === 0) {
      lines.push(`| ${contender} | ${modes[contender]} | failed | | | | | |`);
      continue;
    }
    const ms = median(rs.map((r) => r.ms));
    lines.push(
      `| ${contender} | ${modes[contender]} | ${ms.toFixed(0)} | ${spread(rs.map((r) => r.ms)).toFixed(0)}% | ${((COUNT / ms) * 1000).toFixed(0)} | ${mib(median(rs.map((r) => r.heapPeak - r.heapBefore)))} | ${mib(median(rs.map((r) => r.heapAfter)))} | ${(ms / reference).toFixed(2)} |`,
    );
  }
  lines.push("| WebTransport (@weir/client) | gRPC over WebTransport | not measured: needs the gateway's HTTP/3 listener and certificate hashes | | | | | |");
  if (failures.length > 0) lines.push("", `Failures: ${failures.join("; ")}`);
  console.log(lines.join("\n"));
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
