// A throwaway self-signed certificate for 127.0.0.1 and localhost (ECDSA P-256,
// valid one day), made with openssl at test time for the TLS listener suites.

import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface TestCert {
  /** PEM files, for the gateway config. */
  readonly certPath: string;
  readonly keyPath: string;
  /** The certificate PEM (self-signed, so also the CA to trust). */
  readonly certPem: string;
  cleanup(): void;
}

/** Why a certificate cannot be made here (no openssl), or undefined. */
export function certUnavailable(): string | undefined {
  const r = spawnSync("openssl", ["version"], { encoding: "utf8", timeout: 10_000 });
  return r.status === 0 ? undefined : `openssl is not available (${r.error?.message ?? `exit ${r.status}`})`;
}

export function selfSignedCert(): TestCert {
  const dir = mkdtempSync(join(tmpdir(), "weir-tls-"));
  const certPath = join(dir, "cert.pem");
  const keyPath = join(dir, "key.pem");
  const r = spawnSync(
    "openssl",
    [
      "req", "-x509",
      "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
      "-nodes", "-days", "1",
      "-subj", "/CN=localhost",
      "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
      "-keyout", keyPath, "-out", certPath,
    ],
    { encoding: "utf8", timeout: 30_000 },
  );
  if (r.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`openssl req failed (${r.error?.message ?? `exit ${r.status}`}):\n${r.stderr}`);
  }
  return { certPath, keyPath, certPem: readFileSync(certPath, "utf8"), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
