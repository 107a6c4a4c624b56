/** A push-driven AsyncIterable, for request streams sent one message at a time. */
export class AsyncQueue<T> implements AsyncIterable<T> {
  private readonly items: T[] = [];
  private wake: (() => void) | undefined;
  private closed = false;

  push(item: T): void {
    if (this.closed) throw new Error("push after close");
    this.items.push(item);
    this.wakeUp();
  }

  close(): void {
    this.closed = true;
    this.wakeUp();
  }

  private wakeUp(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T> {
    try {
      for (;;) {
        if (this.items.length > 0) {
          yield this.items.shift() as T;
        } else if (this.closed) {
          return;
        } else {
          await new Promise<void>((resolve) => (this.wake = resolve));
        }
      }
    } finally {
      this.closed = true;
    }
  }
}
