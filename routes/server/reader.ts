/**
 * The read side of one connection: bytes queued as they arrive, at most one read in flight (a read
 * that outlives a timeout is joined by the next caller, never duplicated), and waits bounded by a
 * deadline.
 *
 * @module
 */

/** A wait on the client ran past its deadline. */
export class ReadTimeout extends Error {
  override name = "ReadTimeout";
}

const READ_SIZE = 16 * 1024;

/** Buffered reads from a connection. */
export class ConnReader {
  readonly #conn: Deno.Conn;
  #chunks: Uint8Array[] = [];
  #length = 0;
  #pending: Promise<Uint8Array | null> | null = null;
  #eof = false;

  constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }

  /** Bytes queued and not yet taken. */
  get buffered(): number {
    return this.#length;
  }

  /** Whether the client has closed its side (no more bytes will come). */
  get eof(): boolean {
    return this.#eof;
  }

  /** Whether a read is in flight. */
  get reading(): boolean {
    return this.#pending !== null;
  }

  /**
   * Waits for more bytes (queued) until `deadline` (a `performance.now()` time; Infinity: none).
   * Resolves false at the end of the stream; throws {@linkcode ReadTimeout} at the deadline and
   * the connection's error when it fails.
   */
  async fill(deadline = Infinity): Promise<boolean> {
    if (this.#eof) return false;
    return await this.#await(deadline);
  }

  async #await(deadline: number): Promise<boolean> {
    const read = this.#current();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const wait = deadline === Infinity ? read : Promise.race([
      read,
      new Promise<"timeout">((
        resolve,
      ) => (timer = setTimeout(() => resolve("timeout"), deadline - performance.now()))),
    ]);
    try {
      const r = await wait;
      if (r === "timeout") throw new ReadTimeout("the client sent nothing in time");
      return r !== null;
    } finally {
      clearTimeout(timer);
    }
  }

  /** The read in flight (started if none): resolves with the bytes queued, or null at the end. */
  #current(): Promise<Uint8Array | null> {
    if (this.#pending) return this.#pending;
    const buf = new Uint8Array(READ_SIZE);
    this.#pending = this.#conn.read(buf).then((n) => {
      this.#pending = null;
      if (n === null) {
        this.#eof = true;
        return null;
      }
      const got = n < 1024 ? buf.slice(0, n) : buf.subarray(0, n);
      this.#chunks.push(got);
      this.#length += n;
      return got;
    }, (e) => {
      this.#pending = null;
      this.#eof = true;
      throw e;
    });
    return this.#pending;
  }

  /** Starts a read if none is in flight and returns it (for watching a connection while idle). */
  watch(): Promise<Uint8Array | null> {
    return this.#current();
  }

  /** Up to `n` queued bytes from the front (a view; copy what you keep past the next fill). */
  take(n: number): Uint8Array {
    const first = this.#chunks[0];
    if (!first) return new Uint8Array(0);
    if (first.length <= n) {
      this.#chunks.shift();
      this.#length -= first.length;
      return first;
    }
    this.#chunks[0] = first.subarray(n);
    this.#length -= n;
    return first.subarray(0, n);
  }

  /** The first `max` queued bytes (or all of them) as one array, without taking them. */
  peek(max = this.#length): Uint8Array {
    const n = Math.min(max, this.#length);
    if (this.#chunks.length && this.#chunks[0].length >= n) return this.#chunks[0].subarray(0, n);
    const out = new Uint8Array(this.#length);
    let at = 0;
    for (const c of this.#chunks) {
      out.set(c, at);
      at += c.length;
    }
    this.#chunks = [out];
    return out.subarray(0, n);
  }

  /** Drops `n` queued bytes. */
  skip(n: number): void {
    while (n > 0 && this.#chunks.length) n -= this.take(n).length;
  }
}
