// Browser figures of the weir benchmark harness: one server stream of many small messages,
// decoded in headless Chromium by each client library, against weir's gRPC-Web layer (and,
// for the WebTransport transport, the same TestService over WebTransport in the same process).
//
//   node --import tsx src/browser.ts [--quick|--full] --server <weir-bench binary>
//     [--only weir-fetch,weir-xhr,...]   contenders to run (default: all)
//     [--reps N]                         repetitions after the warm-up (default 5, quick 1)
//     [--count N]                        messages per stream (default 100000, quick 2000)
//     [--baseline DIR]                   also run weir's transports built from another copy of
//                                        web/client/src (e.g. a checkout of main), interleaved
//     [--profile]                        then one run per contender under Chromium's CPU
//                                        profiler; prints where the time goes (self time)
//     [--decode]                         instead: decode only, a response body held in memory
//                                        (fetch-based clients: weir-fetch, connect-web)
//
// Starts `weir-bench serve weir-layer` with its WebTransport listener (stopped at the end),
// serves the bundled page from another origin, and prints a Markdown table on stdout.
// Chromium runs with --enable-precise-memory-info so performance.memory is exact.

import { type ChildProcess, spawn } from "node:child_process";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { dirname, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { build } from "esbuild";
import { type Browser, type CDPSession, chromium } from "playwright-core";
import type { Contender, Decoder, Result, Target } from "../browser/page.js";
import { chromiumPath } from "../../interop/src/harness/browser.js";
import { type CpuProfile, summarize } from "./profile.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    quick: { type: "boolean" },
    full: { type: "boolean" },
    server: { type: "string" },
    only: { type: "string" },
    reps: { type: "string" },
    count: { type: "string" },
    baseline: { type: "string" },
    profile: { type: "boolean" },
    decode: { type: "boolean" },
  },
});
const quick = values.quick === true;
const COUNT = values.count !== undefined ? Number(values.count) : quick ? 2_000 : 100_000;
const SIZE = 10;
const REPS = values.reps !== undefined ? Number(values.reps) : quick ? 1 : 5;
const ALL: Contender[] = ["grpc-web-text", "connect-web", "weir-fetch", "weir-xhr", "weir-webtransport"];
const WEIR: Contender[] = ["weir-fetch", "weir-xhr", "weir-webtransport"];
const DECODERS: Decoder[] = ["connect-web", "weir-fetch"];

/** One column of the table: a contender, on the page built from this tree or the baseline's. */
interface Entry {
  contender: Contender;
  baseline: boolean;
}
const label = (e: Entry) => (e.baseline ? `${e.contender} (baseline)` : e.contender);

const MODES: Record<Contender, string> = {
  "grpc-web-text": "grpc-web (official), text, XHR",
  "connect-web": "@connectrpc/connect-web, binary, fetch",
  "weir-fetch": "@weir/client fetch, binary",
  "weir-xhr": "@weir/client XHR, binary",
  "weir-webtransport": "@weir/client WebTransport (HTTP/3)",
};

interface Server {
  child: ChildProcess;
  target: Target;
  /** Why the server offers no WebTransport, if it does not. */
  noWebTransport?: string;
}

/** `weir-bench serve weir-layer` announces its WebTransport listener before `listening on`. */
const WT_LINE = /^webtransport (https:\/\/\S+) ([0-9a-f,]+)$/;

async function startServer(binary: string): Promise<Server> {
  const child = spawn(binary, ["serve", "weir-layer"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const lines = createInterface({ input: child.stdout! });
  let webtransport: Target["webtransport"];
  return new Promise<Server>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error("server did not start within 30 s")), 30_000);
    lines.on("line", (line) => {
      const wt = WT_LINE.exec(line.trim());
      if (wt !== null) {
        webtransport = { url: wt[1] as string, sha256: (wt[2] as string).split(",") };
      }
      const at = line.indexOf("listening on ");
      if (at >= 0) {
        clearTimeout(timer);
        const baseUrl = line.slice(at + "listening on ".length).trim();
        ok(
          webtransport !== undefined
            ? { child, target: { baseUrl, webtransport } }
            : { child, target: { baseUrl }, noWebTransport: "the weir-bench server announced no WebTransport listener" },
        );
      }
    });
    child.once("exit", () => fail(new Error("server exited before listening")));
  });
}

async function bundlePage(clientSrc?: string): Promise<string> {
  const bundle = await build({
    entryPoints: [resolve(HERE, "../browser/page.ts")],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    write: false,
    logLevel: "silent",
    // @weir/client from its sources (this workspace's, or the baseline's), not from a build of
    // them in client/dist: the figures are for the code as it is. The baseline's sources
    // import the same packages, from this workspace.
    alias: { "@weir/client": resolve(clientSrc ?? resolve(HERE, "../../client/src"), "index.ts") },
    ...(clientSrc !== undefined ? { nodePaths: [resolve(HERE, "../../node_modules")] } : {}),
  });
  return bundle.outputFiles[0]?.text ?? "";
}

async function startPages(baseline: string | undefined): Promise<{ origin: string; scripts: Map<string, string>; close(): void }> {
  const scripts = new Map<string, string>([["/page.js", await bundlePage()]]);
  if (baseline !== undefined) scripts.set("/baseline.js", await bundlePage(baseline));
  const server = http.createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    const script = scripts.get(path);
    if (script !== undefined) res.writeHead(200, { "content-type": "text/javascript" }).end(script);
    else {
      const src = path === "/baseline" ? "/baseline.js" : "/page.js";
      res
        .writeHead(200, { "content-type": "text/html" })
        .end(`<!doctype html><html><head><meta charset="utf-8"><title>weir bench</title></head><body><script type="module" src="${src}"></script></body></html>`);
    }
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    scripts,
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

/** CPU seconds so far of each of the browser's processes, by pid, with the process type. */
async function cpuTimes(cdp: CDPSession): Promise<Map<number, { type: string; cpu: number }>> {
  const { processInfo } = (await cdp.send("SystemInfo.getProcessInfo" as never)) as { processInfo: { type: string; id: number; cpuTime: number }[] };
  return new Map(processInfo.map((p) => [p.id, { type: p.type, cpu: p.cpuTime }]));
}

/** CPU milliseconds spent between two readings: by renderers, and by all processes. */
function cpuSpent(before: Map<number, { type: string; cpu: number }>, after: Map<number, { type: string; cpu: number }>) {
  let renderer = 0;
  let all = 0;
  for (const [pid, p] of after) {
    const d = (p.cpu - (before.get(pid)?.cpu ?? 0)) * 1000;
    all += d;
    if (p.type === "renderer") renderer += d;
  }
  return { renderer, all };
}

/** What a run cost in CPU time (the browser's processes, 10 ms resolution): not inflated by waits for other processes' CPU. */
interface Cpu {
  renderer: number;
  all: number;
}

/** One run of `entry` in a fresh browser context; with `profile`, under the CPU profiler. */
async function runOnce(
  browser: Browser,
  system: CDPSession,
  origin: string,
  entry: Entry,
  target: Target,
  count: number,
  profile = false,
): Promise<{ result: Result; cpu: Cpu; profile?: CpuProfile }> {
  const context = await browser.newContext();
  try {
    const tab = await context.newPage();
    await tab.goto(`${origin}/${entry.baseline ? "baseline" : ""}`, { timeout: 15_000 });
    await tab.waitForFunction(() => typeof window.bench !== "undefined", undefined, { timeout: 15_000 });
    await tab.evaluate(() => (globalThis as { gc?: () => void }).gc?.());
    const cdp = profile ? await context.newCDPSession(tab) : undefined;
    if (cdp !== undefined) {
      await cdp.send("Profiler.enable");
      await cdp.send("Profiler.setSamplingInterval", { interval: 100 });
      await cdp.send("Profiler.start");
    }
    const before = await cpuTimes(system);
    const result = await tab.evaluate(([c, t, n, size]) => window.bench.run(c, t, n, size), [entry.contender, target, count, SIZE] as const);
    const cpu = cpuSpent(before, await cpuTimes(system));
    if (cdp === undefined) return { result, cpu };
    const { profile: p } = await cdp.send("Profiler.stop");
    return { result, cpu, profile: p as CpuProfile };
  } finally {
    await context.close();
  }
}

/**
 * Decode only: each repetition opens a page per entry (taking turns) and decodes the in-memory
 * body ROUNDS times; the first round of a page warms up. Prints the table.
 */
async function decodeOnly(browser: Browser, origin: string, scripts: Map<string, string>, entries: Entry[]): Promise<void> {
  const ROUNDS = 6;
  const times = new Map<string, number[]>();
  for (let rep = 0; rep < Math.max(1, REPS); rep++) {
    for (const entry of rep % 2 === 0 ? entries : [...entries].reverse()) {
      const context = await browser.newContext();
      try {
        const tab = await context.newPage();
        await tab.goto(`${origin}/${entry.baseline ? "baseline" : ""}`, { timeout: 15_000 });
        await tab.waitForFunction(() => typeof window.bench !== "undefined", undefined, { timeout: 15_000 });
        const ms = await tab.evaluate(([c, n, size, rounds]) => window.bench.decode(c, n, size, rounds), [entry.contender as Decoder, COUNT, SIZE, ROUNDS] as const);
        times.set(label(entry), [...(times.get(label(entry)) ?? []), ...ms.slice(1)]);
      } finally {
        await context.close();
      }
    }
  }
  const profiles: string[] = [];
  if (values.profile === true) {
    for (const entry of entries) {
      const context = await browser.newContext();
      try {
        const tab = await context.newPage();
        await tab.goto(`${origin}/${entry.baseline ? "baseline" : ""}`, { timeout: 15_000 });
        await tab.waitForFunction(() => typeof window.bench !== "undefined", undefined, { timeout: 15_000 });
        const args = [entry.contender as Decoder, COUNT, SIZE, 1] as const;
        await tab.evaluate(([c, n, size, rounds]) => window.bench.decode(c, n, size, rounds), args);
        const cdp = await context.newCDPSession(tab);
        await cdp.send("Profiler.enable");
        await cdp.send("Profiler.setSamplingInterval", { interval: 100 });
        await cdp.send("Profiler.start");
        const [ms] = await tab.evaluate(([c, n, size, rounds]) => window.bench.decode(c, n, size, rounds), args);
        const { profile } = await cdp.send("Profiler.stop");
        const script = scripts.get(entry.baseline ? "/baseline.js" : "/page.js") ?? "";
        profiles.push(`#### ${label(entry)}, decode only (${(ms ?? Number.NaN).toFixed(0)} ms under the profiler)\n\n${summarize(profile as CpuProfile, script)}`);
      } finally {
        await context.close();
      }
    }
  }
  const lines = [
    `Decode only: a response body of ${COUNT} messages of ${SIZE} bytes held in memory, handed to the client by a \`fetch\` that answers from it in 64 KiB chunks (no server, no network, no request encoding); ${Math.max(1, REPS)} pages per client, taking turns, ${ROUNDS - 1} timed rounds each after a warm-up round.`,
    "",
    "| client | rounds | median ms | min ms | ± (max−min over median) |",
    "|---|---:|---:|---:|---:|",
  ];
  for (const entry of entries) {
    const t = times.get(label(entry)) ?? [];
    lines.push(`| ${label(entry)} | ${t.length} | ${median(t).toFixed(0)} | ${Math.min(...t).toFixed(0)} | ${spread(t).toFixed(0)}% |`);
  }
  if (profiles.length > 0) lines.push("", "### CPU profiles (self time)", "", ...profiles);
  console.log(lines.join("\n"));
}

async function main(): Promise<void> {
  const binary = values.server;
  if (binary === undefined) throw new Error("--server <weir-bench binary> is required");
  let executablePath: string;
  try {
    executablePath = chromiumPath();
  } catch (e) {
    console.log(`SKIPPED: ${(e as Error).message}\n`);
    return;
  }
  const launch = (args: string[]) =>
    chromium.launch({ executablePath, args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", ...args], timeout: 30_000 });
  const contenders = values.only !== undefined ? (values.only.split(",") as Contender[]) : ALL;
  for (const c of contenders) if (!ALL.includes(c)) throw new Error(`unknown contender ${c} (${ALL.join(", ")})`);
  const entries: Entry[] = contenders.map((contender) => ({ contender, baseline: false }));
  if (values.baseline !== undefined) {
    for (const contender of contenders) if (WEIR.includes(contender)) entries.push({ contender, baseline: true });
  }

  if (values.decode === true) {
    const decoders = entries.filter((e) => (DECODERS as Contender[]).includes(e.contender));
    const pages = await startPages(values.baseline);
    const browser = await launch([]);
    try {
      await decodeOnly(browser, pages.origin, pages.scripts, decoders);
    } finally {
      await browser.close();
      pages.close();
    }
    return;
  }

  const server = await startServer(binary);
  const pages = await startPages(values.baseline);
  // No --disable-quic: WebTransport runs over QUIC.
  const browser = await launch(["--enable-precise-memory-info", "--js-flags=--expose-gc"]);
  const runnable = (e: Entry) => e.contender !== "weir-webtransport" || server.noWebTransport === undefined;
  const system = await browser.newBrowserCDPSession();
  const results = new Map<string, (Result & { cpu: Cpu })[]>();
  const failures = new Map<string, string>();
  const profiles: string[] = [];
  try {
    // Repetition 0 warms up; the contenders take turns within each repetition.
    for (let rep = 0; rep <= REPS; rep++) {
      // Every other repetition in reverse order, so no contender always runs right after another.
      for (const entry of rep % 2 === 0 ? entries : [...entries].reverse()) {
        if (!runnable(entry)) continue;
        const count = rep === 0 ? Math.max(1, COUNT / 10) : COUNT;
        const { result, cpu } = await runOnce(browser, system, pages.origin, entry, server.target, count);
        if (!result.ok) {
          failures.set(label(entry), result.error ?? `${result.messages} of ${count} messages`);
          continue;
        }
        if (rep > 0) results.set(label(entry), [...(results.get(label(entry)) ?? []), { ...result, cpu }]);
      }
    }
    if (values.profile === true) {
      for (const entry of entries) {
        if (!runnable(entry)) continue;
        const { result, profile } = await runOnce(browser, system, pages.origin, entry, server.target, COUNT, true);
        if (profile === undefined) continue;
        const script = pages.scripts.get(entry.baseline ? "/baseline.js" : "/page.js") ?? "";
        profiles.push(`#### ${label(entry)} (${result.ms.toFixed(0)} ms under the profiler)\n\n${summarize(profile, script)}`);
      }
    }
  } finally {
    await browser.close();
    pages.close();
    server.child.kill("SIGTERM");
  }

  const reference = median((results.get("grpc-web-text") ?? []).map((r) => r.ms));
  const lines = [
    `One server stream of ${COUNT} messages of ${SIZE} bytes (StreamingOutputCall) from weir's gRPC-Web layer (HTTP/1.1, loopback) — for WebTransport, from the same TestService over weir's WebTransport listener in the same process (HTTP/3, loopback; the session is opened within the timed call) — decoded in headless Chromium (${chromiumPath}); median of ${REPS} runs after a warm-up, a fresh browser context per run. Heap: \`performance.memory.usedJSHeapSize\` (precise), peak sampled every 1000 messages, minus the value before the call.`,
    "",
    "",
    "CPU: CPU time of the browser's renderer processes during the call (the page's JavaScript, decoding included), and of all its processes (network service, browser, renderer), from `SystemInfo.getProcessInfo` (10 ms resolution); medians. Unlike the time, CPU time does not grow while the page waits for a core that another process holds.",
    "",
    "| client | mode | time ms | ± | messages/s | renderer CPU ms | ± | all processes CPU ms | heap peak growth MiB | heap after MiB | × grpc-web time |",
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ];
  for (const entry of entries) {
    const name = label(entry);
    const rs = results.get(name) ?? [];
    if (!runnable(entry)) {
      lines.push(`| ${name} | ${MODES[entry.contender]} | not measured: ${server.noWebTransport} | | | | | | | | |`);
      continue;
    }
    if (rs.length === 0) {
      lines.push(`| ${name} | ${MODES[entry.contender]} | failed: ${(failures.get(name) ?? "no result").replaceAll("|", "/")} | | | | | | | | |`);
      continue;
    }
    const ms = median(rs.map((r) => r.ms));
    lines.push(
      `| ${name} | ${MODES[entry.contender]} | ${ms.toFixed(0)} | ${spread(rs.map((r) => r.ms)).toFixed(0)}% | ${((COUNT / ms) * 1000).toFixed(0)} | ${median(rs.map((r) => r.cpu.renderer)).toFixed(0)} | ${spread(rs.map((r) => r.cpu.renderer)).toFixed(0)}% | ${median(rs.map((r) => r.cpu.all)).toFixed(0)} | ${mib(median(rs.map((r) => r.heapPeak - r.heapBefore)))} | ${mib(median(rs.map((r) => r.heapAfter)))} | ${Number.isNaN(reference) ? "" : (ms / reference).toFixed(2)} |`,
    );
  }
  if (failures.size > 0) lines.push("", `Failures: ${[...failures].map(([k, v]) => `${k}: ${v}`).join("; ")}`);
  if (profiles.length > 0) lines.push("", "### CPU profiles (self time)", "", ...profiles);
  console.log(lines.join("\n"));
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
