// Starts a server under test as a child process, waits for its
// `listening on http://...` line, and stops it again. Every wait is bounded,
// and children still alive when the test process exits are killed.

import { type ChildProcess, spawn } from "node:child_process";

const LISTENING = /listening on (http:\/\/[^\s]+)/;
const live = new Set<ChildProcess>();

process.on("exit", () => {
  for (const child of live) child.kill("SIGKILL");
});

export interface RunningServer {
  /** Base URL printed by the server, e.g. http://127.0.0.1:40123 */
  readonly url: string;
  /** Label used in test names and messages. */
  readonly name: string;
  /** Everything the server printed so far (stdout and stderr). */
  output(): string;
  /** SIGTERM, then SIGKILL if it has not exited within a few seconds. */
  stop(): Promise<void>;
  /** Waits (at most `ms`) until the output matches; resolves with the match. */
  waitForOutput(pattern: RegExp, ms: number): Promise<RegExpExecArray>;
  /** Sends a signal now (e.g. SIGKILL to simulate a crash). */
  kill(signal: NodeJS.Signals): void;
  /** Whether the process is still running. */
  running(): boolean;
}

export interface StartOptions {
  name: string;
  command: string;
  args: string[];
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  startTimeoutMs?: number;
}

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (exited(child)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.off("exit", onExit);
      resolve(false);
    }, ms);
    const onExit = () => {
      clearTimeout(timer);
      resolve(true);
    };
    child.once("exit", onExit);
  });
}

export function startServer(opts: StartOptions): Promise<RunningServer> {
  const startTimeoutMs = opts.startTimeoutMs ?? 20_000;
  const child = spawn(opts.command, opts.args, {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  live.add(child);
  child.once("exit", () => live.delete(child));

  let out = "";
  const output = () => out;
  const waiters = new Set<() => void>();
  const waitForOutput = (pattern: RegExp, ms: number) =>
    new Promise<RegExpExecArray>((resolve, reject) => {
      const check = () => {
        const m = pattern.exec(out);
        if (m === null) return false;
        clearTimeout(timer);
        waiters.delete(onChange);
        resolve(m);
        return true;
      };
      const onChange = () => void check();
      const timer = setTimeout(() => {
        waiters.delete(onChange);
        reject(new Error(`${opts.name}: no output matching ${pattern} within ${ms} ms; output:\n${out}`));
      }, ms);
      if (!check()) waiters.add(onChange);
    });
  const append = (chunk: Buffer) => {
    out += chunk.toString("utf8");
    for (const w of [...waiters]) w();
  };
  const kill = (signal: NodeJS.Signals) => {
    if (!exited(child)) child.kill(signal);
  };
  const running = () => !exited(child);
  const stop = async () => {
    if (exited(child)) return;
    child.kill("SIGTERM");
    if (await waitExit(child, 5_000)) return;
    child.kill("SIGKILL");
    await waitExit(child, 5_000);
  };

  return new Promise<RunningServer>((resolve, reject) => {
    let settled = false;
    const fail = (why: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      void stop().finally(() =>
        reject(new Error(`${opts.name}: ${why}\ncommand: ${opts.command} ${opts.args.join(" ")}\noutput:\n${out}`)),
      );
    };
    const timer = setTimeout(() => fail(`no "listening on http://..." line within ${startTimeoutMs} ms`), startTimeoutMs);
    const onText = (chunk: Buffer) => {
      append(chunk);
      if (settled) return;
      const m = LISTENING.exec(out);
      if (m?.[1] !== undefined) {
        settled = true;
        clearTimeout(timer);
        resolve({ url: m[1].replace(/\/+$/, ""), name: opts.name, output, stop, waitForOutput, kill, running });
      }
    };
    child.stdout?.on("data", onText);
    child.stderr?.on("data", append);
    child.once("error", (err) => fail(`could not start: ${err.message}`));
    child.once("exit", (code, signal) => fail(`exited before listening (code ${code}, signal ${signal})`));
  });
}
