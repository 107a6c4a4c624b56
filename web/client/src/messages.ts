// The response messages of a call as an async iterator over frames that arrive a chunk at a
// time. A chunk usually holds many frames; the messages of the chunk in hand are handed out
// without reading, so a `next()` costs one resolved promise and one decode, instead of the
// awaits an async generator spends on every `yield`.

import { Code, ConnectError } from "@connectrpc/connect";

import type { Frame } from "./frames.js";

/** What a transport supplies: how to read frames, decode them, end and release the call. */
export interface FrameSource<M> {
  /** The frames the next chunk completed (maybe none), or null at the end of the body. */
  read(): Promise<Frame[] | null>;
  /** The message of a frame; undefined for frames that carry none (trailers, heartbeats). */
  decode(frame: Frame): M | undefined;
  /** After the last frame: checks that the call ended well; throws if it did not. */
  end(): void;
  /** Throws if the call was aborted. Checked before every message is handed out. */
  check(): void;
  /** Releases the call. Called once, however the iteration ends. */
  close(): void;
}

const DONE: IteratorReturnResult<undefined> = { done: true, value: undefined };

class FrameMessages<M> implements AsyncIterableIterator<M> {
  private frames: Frame[] = [];
  private at = 0;
  private closed = false;
  /** The step in progress, if it had to wait for a read: later calls wait for it. */
  private pending: Promise<unknown> | undefined;

  constructor(private readonly src: FrameSource<M>) {}

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<M>> {
    if (this.pending !== undefined) {
      // Calls are answered in order, like an async generator's.
      const p = this.pending.then(
        () => this.next(),
        () => this.next(),
      );
      return p;
    }
    return this.step();
  }

  return(): Promise<IteratorResult<M>> {
    this.close();
    return Promise.resolve(DONE);
  }

  throw(e: unknown): Promise<IteratorResult<M>> {
    this.close();
    return Promise.reject(e);
  }

  /** Hands out the next message of the chunk in hand, or reads the next chunk. */
  private step(): Promise<IteratorResult<M>> {
    try {
      for (;;) {
        if (this.closed) return Promise.resolve(DONE);
        while (this.at < this.frames.length) {
          const frame = this.frames[this.at++] as Frame;
          const message = this.src.decode(frame);
          if (message !== undefined) {
            this.src.check();
            return Promise.resolve({ done: false, value: message });
          }
        }
        this.frames = [];
        this.at = 0;
        const read = this.fill();
        const p = read.then(() => {
          this.pending = undefined;
          return this.step();
        });
        this.pending = p;
        return p;
      }
    } catch (e) {
      this.close();
      return Promise.reject(e);
    }
  }

  private async fill(): Promise<void> {
    let frames: Frame[] | null;
    try {
      frames = await this.src.read();
      if (this.closed) return;
      if (frames === null) {
        this.src.end();
        this.close();
        return;
      }
    } catch (e) {
      this.pending = undefined;
      if (this.closed) return;
      this.close();
      throw e;
    }
    this.frames = frames;
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    this.frames = [];
    this.src.close();
  }
}

/** The messages of `src`'s frames, in order. */
export function frameMessages<M>(src: FrameSource<M>): AsyncIterableIterator<M> {
  return new FrameMessages(src);
}

/**
 * Watches a call's signal for its reading loop: `aborted` rejects with the signal's reason once
 * it aborts (to race reads against), and `stopped()` tells whether it has — mirrored by the
 * abort listener (listeners run at once), so that checking it for every message costs no call
 * into the DOM.
 */
export function watchAbort(signal: AbortSignal): { aborted: Promise<never>; stopped: () => boolean } {
  let stopped = signal.aborted;
  const aborted = new Promise<never>((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    signal.addEventListener(
      "abort",
      () => {
        stopped = true;
        reject(signal.reason);
      },
      { once: true },
    );
  });
  aborted.catch(() => {});
  return { aborted, stopped: () => stopped };
}

/**
 * A call's own controller, aborted by the caller's `signal`, by whatever else the transport
 * wires to it, and by `release()` at the end of the call ("call ended", which also unhooks it
 * from the caller's signal).
 */
export function callController(signal: AbortSignal): { ctl: AbortController; release: () => void } {
  const ctl = new AbortController();
  const onAbort = () => ctl.abort(signal.reason);
  if (signal.aborted) onAbort();
  else signal.addEventListener("abort", onAbort, { once: true });
  const release = () => {
    signal.removeEventListener("abort", onAbort);
    if (!ctl.signal.aborted) ctl.abort(new ConnectError("call ended", Code.Canceled));
  };
  return { ctl, release };
}
