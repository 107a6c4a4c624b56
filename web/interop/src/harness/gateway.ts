// `weir serve` (the gateway) and the native gRPC upstreams it is put in front
// of: the grpc-js server (src/grpcjs-server.ts) and the connect-node reference
// server (src/reference-server.ts, which speaks native gRPC on h2c too).

import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseEvents, type UpstreamEvent } from "../upstream-events.js";
import { PACKAGE_DIR, REPO_ROOT, truthy, weirBinary } from "./paths.js";
import { type RunningServer, startServer } from "./server-process.js";
import type { Target } from "./targets.js";

export type UpstreamKind = "grpcjs" | "connect";

const UPSTREAM_SCRIPT: Record<UpstreamKind, string> = {
  grpcjs: "src/grpcjs-server.ts",
  connect: "src/reference-server.ts",
};

export function startUpstream(kind: UpstreamKind, listen = "127.0.0.1:0"): Promise<RunningServer> {
  return startServer({
    name: `${kind} upstream`,
    command: process.execPath,
    args: ["--import", "tsx", resolve(PACKAGE_DIR, UPSTREAM_SCRIPT[kind]), "--listen", listen],
    cwd: PACKAGE_DIR,
  });
}

/** The events (upstream-events.ts) an upstream printed so far. */
export function upstreamEvents(upstream: RunningServer): UpstreamEvent[] {
  return parseEvents(upstream.output());
}

/** Waits (at most `ms`) for an event the predicate accepts. */
export async function waitForEvent<E extends UpstreamEvent>(
  upstream: RunningServer,
  accept: (e: UpstreamEvent) => e is E,
  ms: number,
  what: string,
): Promise<E> {
  const deadline = Date.now() + ms;
  for (;;) {
    const found = upstreamEvents(upstream).find(accept);
    if (found !== undefined) return found;
    if (Date.now() >= deadline) {
      throw new Error(`${upstream.name}: no ${what} within ${ms} ms; upstream output:\n${upstream.output()}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

// ---- the gateway binary ----------------------------------------------------

export interface GatewayAvailability {
  bin: string;
  /** Set when the gateway suites must be skipped. */
  skip?: string;
  /** Set when WEIR_REQUIRE asks for the gateway but it cannot run. */
  unavailable?: string;
}

let availability: GatewayAvailability | undefined;

/** Whether `$WEIR_BIN serve` exists (checked once with `serve --help`). */
export function gatewayAvailability(): GatewayAvailability {
  if (availability !== undefined) return availability;
  const bin = weirBinary();
  let problem: string | undefined;
  if (!existsSync(bin)) {
    problem = `weir binary not found at ${bin}; build it (cargo build -p weir-gateway) or set WEIR_BIN`;
  } else {
    const r = spawnSync(bin, ["serve", "--help"], { timeout: 10_000, encoding: "utf8" });
    if (r.status !== 0) {
      problem = `${bin} has no working \`serve\` subcommand (\`serve --help\` exited ${r.status ?? r.signal}: ${(r.stderr ?? "").trim().split("\n")[0] ?? ""})`;
    }
  }
  if (problem === undefined) availability = { bin };
  else if (truthy(process.env.WEIR_REQUIRE)) availability = { bin, unavailable: `WEIR_REQUIRE is set but ${problem}` };
  else availability = { bin, skip: `${problem}. Set WEIR_REQUIRE=1 to make this a failure.` };
  return availability;
}

export interface Gateway extends RunningServer {
  /** Base URL of the admin listener, when one was asked for. */
  readonly adminUrl: string | undefined;
  /** The config file it was started with (`config`), which a test may rewrite and reload. */
  readonly configPath: string | undefined;
}

export interface GatewayOptions {
  /** Upstream base URL for `--upstream`. */
  upstream?: string;
  allowOrigins?: readonly string[];
  /** Start an admin listener (`--admin-listen 127.0.0.1:0`). */
  admin?: boolean;
  /** Start from this config file text instead of flags (`--config FILE`). */
  config?: string;
  extraArgs?: readonly string[];
  name?: string;
  /**
   * `--drain-delay` (e.g. "2s"). Default "0s", so that stopping a gateway in a test does not
   * wait for a load balancer that is not there; left out when the config file sets
   * `drain_delay` itself.
   */
  drainDelay?: string;
}

export const ADMIN_LINE = /admin on (http:\/\/[^\s]+)/;

function writeTemp(name: string, text: string): { path: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), "weir-gw-"));
  const path = join(dir, name);
  writeFileSync(path, text);
  return { path, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export async function startGateway(opts: GatewayOptions): Promise<Gateway> {
  const { bin } = gatewayAvailability();
  const args = ["serve"];
  let cleanup = () => {};
  let configPath: string | undefined;
  if (opts.config !== undefined) {
    const file = writeTemp("weir.toml", opts.config);
    cleanup = file.cleanup;
    configPath = file.path;
    args.push("--config", file.path);
  } else {
    args.push("--listen", "127.0.0.1:0");
    if (opts.upstream !== undefined) args.push("--upstream", opts.upstream);
    for (const o of opts.allowOrigins ?? []) args.push("--allow-origin", o);
    if (opts.admin === true) args.push("--admin-listen", "127.0.0.1:0");
  }
  if (opts.drainDelay !== undefined || !/^\s*drain_delay\s*=/m.test(opts.config ?? "")) {
    args.push("--drain-delay", opts.drainDelay ?? "0s");
  }
  args.push(...(opts.extraArgs ?? []));
  let server: RunningServer;
  try {
    server = await startServer({ name: opts.name ?? "weir serve", command: bin, args, cwd: REPO_ROOT });
  } catch (e) {
    cleanup();
    throw e;
  }
  let adminUrl: string | undefined;
  const wantsAdmin = opts.admin === true || (opts.config !== undefined && /^\[admin\]/m.test(opts.config));
  if (wantsAdmin) {
    try {
      adminUrl = (await server.waitForOutput(ADMIN_LINE, 5_000))[1]?.replace(/\/+$/, "");
    } catch (e) {
      await server.stop();
      cleanup();
      throw e;
    }
  }
  return {
    ...server,
    adminUrl,
    configPath,
    stop: async () => {
      await server.stop();
      cleanup();
    },
  };
}

/**
 * A gateway config file (TOML, the schema of `weir.example.toml`) with one
 * listener on a free port, one cluster, `backend`, at `upstream`, and a route
 * to it for each of `services` (default: every service, `*`).
 */
export function gatewayConfig(opts: {
  upstream: string;
  services?: readonly string[];
  admin?: boolean;
  allowOrigins?: readonly string[];
  /**
   * Add a second listener with TLS (ALPN h2 and http/1.1). The cleartext one
   * stays first, so the gateway's `url` is cleartext; see tlsUrl().
   */
  tls?: { cert: string; key: string };
  /** Extra TOML appended verbatim. */
  extra?: string;
}): string {
  const lines = ["version = 1", "", "[[listener]]", 'address = "127.0.0.1:0"'];
  if (opts.tls !== undefined) {
    lines.push("", "[[listener]]", 'address = "127.0.0.1:0"', `tls = { cert = ${JSON.stringify(opts.tls.cert)}, key = ${JSON.stringify(opts.tls.key)} }`);
  }
  if (opts.admin === true) lines.push("", "[admin]", 'address = "127.0.0.1:0"');
  if (opts.allowOrigins !== undefined) lines.push("", "[cors]", `allow_origins = ${JSON.stringify(opts.allowOrigins)}`);
  lines.push("", "[clusters.backend]", `addresses = [${JSON.stringify(opts.upstream)}]`);
  lines.push("", "[routes]", ...(opts.services ?? ["*"]).map((s) => `${JSON.stringify(s)} = "backend"`));
  if (opts.extra !== undefined) lines.push("", opts.extra);
  return `${lines.join("\n")}\n`;
}

/** The https:// base URL of a gateway's TLS listener (gatewayConfig `tls`). */
export async function tlsUrl(gateway: RunningServer, ms = 5_000): Promise<string> {
  const m = await gateway.waitForOutput(/listening on (https:\/\/[^\s]+)/, ms);
  return (m[1] ?? "").replace(/\/+$/, "");
}

/** Gateway plus upstream, stopped together. */
export interface GatewayStack {
  gateway: Gateway;
  upstream: RunningServer;
  stop(): Promise<void>;
}

export async function startStack(kind: UpstreamKind, opts: Omit<GatewayOptions, "upstream"> = {}): Promise<GatewayStack> {
  const upstream = await startUpstream(kind);
  let gateway: Gateway;
  try {
    gateway = await startGateway({ ...opts, upstream: upstream.url });
  } catch (e) {
    await upstream.stop();
    throw e;
  }
  return {
    gateway,
    upstream,
    stop: async () => {
      await gateway.stop();
      await upstream.stop();
    },
  };
}

/** `weir serve --upstream <kind upstream>` as an interop target. */
export function gatewayTarget(kind: UpstreamKind): Target {
  const name = `weir serve + ${kind === "grpcjs" ? "grpc-js" : "connect-node"} upstream`;
  const a = gatewayAvailability();
  if (a.unavailable !== undefined) {
    const unavailable = a.unavailable;
    return { name, unavailable, start: () => Promise.reject(new Error(unavailable)) };
  }
  if (a.skip !== undefined) {
    return { name, skip: a.skip, start: () => Promise.reject(new Error("skipped target started")) };
  }
  return {
    name,
    async start(allowOrigins = []) {
      const stack = await startStack(kind, { allowOrigins });
      const { gateway, upstream } = stack;
      return {
        url: gateway.url,
        name,
        output: () => `--- weir serve ---\n${gateway.output()}\n--- upstream ---\n${upstream.output()}`,
        stop: stack.stop,
        waitForOutput: gateway.waitForOutput,
        kill: gateway.kill,
        running: gateway.running,
      };
    },
  };
}
