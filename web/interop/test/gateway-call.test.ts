// `weir call` through `weir serve` in front of a grpc-js upstream that offers
// server reflection (@grpc/reflection): the schema comes from the upstream,
// not from weir's built-in grpc.testing descriptors.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { gatewayAvailability, type GatewayStack, startStack } from "../src/harness/gateway.js";

const CASE_TIMEOUT = { timeout: 30_000 };

const availability = gatewayAvailability();
if (availability.skip !== undefined) console.log(`skipping weir call suite: ${availability.skip}`);
const skip = availability.skip ?? false;

interface CallResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `weir call URL ...args` to the end. */
async function weirCall(url: string, args: readonly string[]): Promise<CallResult> {
  try {
    const { stdout, stderr } = await promisify(execFile)(availability.bin, ["call", url, ...args], { timeout: 20_000 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code?: unknown; stdout?: string; stderr?: string };
    if (typeof err.code !== "number") throw e;
    return { code: err.code, stdout: err.stdout ?? "", stderr: err.stderr ?? "" };
  }
}

function show(r: CallResult): string {
  return `exit ${r.code}\n--- stdout ---\n${r.stdout}--- stderr ---\n${r.stderr}`;
}

describe("weir call through weir serve, schema by server reflection of a grpc-js upstream", { skip }, () => {
  if (availability.unavailable !== undefined) {
    test("weir binary", () => assert.fail(availability.unavailable));
    return;
  }
  let stack: GatewayStack;
  before(async () => {
    stack = await startStack("grpcjs");
  });
  after(async () => {
    await stack?.stop();
  });

  for (const transport of [[], ["--http1"], ["--http1", "--text"]]) {
    test(`unary, JSON in and out ${transport.join(" ") || "(HTTP/2)"}`, CASE_TIMEOUT, async () => {
      const r = await weirCall(stack.gateway.url, [
        "grpc.testing.TestService/UnaryCall",
        "-d",
        '{"responseSize": 3}',
        "-v",
        ...transport,
      ]);
      assert.equal(r.code, 0, show(r));
      const reply = JSON.parse(r.stdout) as { payload?: { body?: string } };
      assert.equal(reply.payload?.body, "AAAA", show(r));
      assert.match(r.stderr, /schema: server reflection \(grpc\.reflection\.v1\.ServerReflection, \d+ files\)/, show(r));
    });
  }

  test("server streaming", CASE_TIMEOUT, async () => {
    const r = await weirCall(stack.gateway.url, [
      "grpc.testing.TestService/StreamingOutputCall",
      "-d",
      '{"responseParameters": [{"size": 1}, {"size": 2}]}',
    ]);
    assert.equal(r.code, 0, show(r));
    assert.deepEqual(
      r.stdout.trim().split("\n").map((line) => JSON.parse(line) as unknown),
      [{ payload: { body: "AA==" } }, { payload: { body: "AAA=" } }],
      show(r),
    );
  });

  test("--no-reflection: the built-in schema", CASE_TIMEOUT, async () => {
    const r = await weirCall(stack.gateway.url, ["grpc.testing.TestService/EmptyCall", "-d", "{}", "-v", "--no-reflection"]);
    assert.equal(r.code, 0, show(r));
    assert.equal(r.stdout, "{}\n", show(r));
    assert.match(r.stderr, /schema: built-in grpc\.testing \(--no-reflection\)/, show(r));
  });

  test("a service the upstream does not know is a clear error", CASE_TIMEOUT, async () => {
    const r = await weirCall(stack.gateway.url, ["pkg.Nope/Get", "-d", "{}"]);
    assert.equal(r.code, 1, show(r));
    assert.match(r.stderr, /does not know pkg\.Nope/, show(r));
    assert.match(r.stderr, /pass --descriptor-set or --proto, or --raw/, show(r));
  });
});
