/**
 * A single-consumer async queue: `push` never blocks, iteration waits for the next item, `close`
 * ends it and `fail` makes the consumer throw.
 */
export class AsyncQueue<T> implements AsyncIterable<T> {
  #items: T[] = [];
  #waiter: (() => void) | null = null;
  #done = false;
  #error: unknown = undefined;
  #failed = false;

  push(item: T): void {
    if (this.#done) return;
    this.#items.push(item);
    this.#wake();
  }

  close(): void {
    this.#done = true;
    this.#wake();
  }

  fail(error: unknown): void {
    if (this.#done) return;
    this.#failed = true;
    this.#error = error;
    this.#done = true;
    this.#wake();
  }

  get closed(): boolean {
    return this.#done;
  }

  #wake(): void {
    const w = this.#waiter;
    this.#waiter = null;
    w?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (;;) {
      if (this.#items.length) {
        yield this.#items.shift()!;
        continue;
      }
      if (this.#done) {
        if (this.#failed) throw this.#error;
        return;
      }
      await new Promise<void>((resolve) => (this.#waiter = resolve));
    }
  }
}
