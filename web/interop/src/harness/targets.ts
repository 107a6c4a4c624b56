// The servers the suites run against: the connect-node reference server
// (always), `weir demo` (when its binary exists, or when required) and
// `weir serve` in front of a grpc-js or a connect-node upstream (when the
// binary has `serve`, or when required).

import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { gatewayTarget } from "./gateway.js";
import { PACKAGE_DIR, REPO_ROOT, truthy, weirBinary } from "./paths.js";
import { type RunningServer, startServer } from "./server-process.js";

export { PACKAGE_DIR, REPO_ROOT };

export interface Target {
  readonly name: string;
  /** Set when the target must not run; the reason is printed and reported as a skip. */
  readonly skip?: string;
  /** Set when the target is required but cannot run; suites report it as one failed test. */
  readonly unavailable?: string;
  start(allowOrigins?: readonly string[]): Promise<RunningServer>;
}

function allowArgs(origins: readonly string[]): string[] {
  return origins.flatMap((o) => ["--allow-origin", o]);
}

export const referenceTarget: Target = {
  name: "reference (connect-node)",
  start(allowOrigins = []) {
    return startServer({
      name: "reference server",
      command: process.execPath,
      args: ["--import", "tsx", resolve(PACKAGE_DIR, "src/reference-server.ts"), "--listen", "127.0.0.1:0", ...allowArgs(allowOrigins)],
      cwd: PACKAGE_DIR,
    });
  },
};

export function weirTarget(): Target {
  const bin = weirBinary();
  const name = "weir demo";
  if (!existsSync(bin)) {
    if (truthy(process.env.WEIR_REQUIRE)) {
      const unavailable = `WEIR_REQUIRE is set but the weir binary does not exist: ${bin} (build it, or set WEIR_BIN)`;
      return {
        name,
        unavailable,
        start() {
          return Promise.reject(new Error(unavailable));
        },
      };
    }
    return {
      name,
      skip: `weir binary not found at ${bin}; build it (cargo build -p weir-gateway) or set WEIR_BIN. Set WEIR_REQUIRE=1 to make this a failure.`,
      start() {
        return Promise.reject(new Error("skipped target started"));
      },
    };
  }
  return {
    name,
    start(allowOrigins = []) {
      return startServer({
        name,
        command: bin,
        args: ["demo", "--listen", "127.0.0.1:0", ...allowArgs(allowOrigins)],
        cwd: REPO_ROOT,
      });
    },
  };
}

export const ALL_TARGETS = ["reference", "weir", "gateway-grpcjs", "gateway-connect"] as const;

/**
 * Targets selected by INTEROP_TARGETS (comma separated: reference, weir,
 * gateway-grpcjs, gateway-connect; default all).
 */
export function selectedTargets(): Target[] {
  const wanted = (process.env.INTEROP_TARGETS ?? ALL_TARGETS.join(","))
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  const out: Target[] = [];
  for (const w of wanted) {
    if (w === "reference") out.push(referenceTarget);
    else if (w === "weir") out.push(weirTarget());
    else if (w === "gateway-grpcjs") out.push(gatewayTarget("grpcjs"));
    else if (w === "gateway-connect") out.push(gatewayTarget("connect"));
    else throw new Error(`INTEROP_TARGETS: unknown target ${JSON.stringify(w)} (known: ${ALL_TARGETS.join(", ")})`);
  }
  for (const t of out) {
    if (t.skip !== undefined) console.log(`skipping target ${t.name}: ${t.skip}`);
  }
  return out;
}
