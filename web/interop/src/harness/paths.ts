// Where things are: the package, the repository, the weir binary.

import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
/** web/interop */
export const PACKAGE_DIR = resolve(here, "../..");
/** Repository root (web/interop/../..). */
export const REPO_ROOT = resolve(PACKAGE_DIR, "../..");

/** `$WEIR_BIN`, by default `<repo>/target/debug/weir`. */
export function weirBinary(): string {
  return process.env.WEIR_BIN !== undefined && process.env.WEIR_BIN !== ""
    ? resolve(process.env.WEIR_BIN)
    : resolve(REPO_ROOT, "target/debug/weir");
}

export function truthy(v: string | undefined): boolean {
  return v !== undefined && v !== "" && v !== "0" && v.toLowerCase() !== "false";
}
