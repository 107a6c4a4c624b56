// The servers the suites run against: the connect-node reference server
// (always) and `weir demo` (when its binary exists, or when required).

import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { type RunningServer, startServer } from "./server-process.js";

const here = dirname(fileURLToPath(import.meta.url));
/** web/interop */
export const PACKAGE_DIR = resolve(here, "../..");
/** Repository root (web/interop/../..). */
export const REPO_ROOT = resolve(PACKAGE_DIR, "../..");

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

function truthy(v: string | undefined): boolean {
  return v !== undefined && v !== "" && v !== "0" && v.toLowerCase() !== "false";
}

export function weirTarget(): Target {
  const bin = process.env.WEIR_BIN !== undefined && process.env.WEIR_BIN !== ""
    ? resolve(process.env.WEIR_BIN)
    : resolve(REPO_ROOT, "target/debug/weir");
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
      skip: `weir binary not found at ${bin}; build it (cargo build -p weir) or set WEIR_BIN. Set WEIR_REQUIRE=1 to make this a failure.`,
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

/**
 * Targets selected by INTEROP_TARGETS (comma separated: reference, weir;
 * default both).
 */
export function selectedTargets(): Target[] {
  const wanted = (process.env.INTEROP_TARGETS ?? "reference,weir")
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  const out: Target[] = [];
  for (const w of wanted) {
    if (w === "reference") out.push(referenceTarget);
    else if (w === "weir") out.push(weirTarget());
    else throw new Error(`INTEROP_TARGETS: unknown target ${JSON.stringify(w)} (known: reference, weir)`);
  }
  for (const t of out) {
    if (t.skip !== undefined) console.log(`skipping target ${t.name}: ${t.skip}`);
  }
  return out;
}
