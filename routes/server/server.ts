/**
 * The HTTP/1.1 server the process listens with: an accept loop on `Deno.listen` that survives
 * accept errors (EMFILE when the open-file limit is reached: it waits and accepts again), a cap on
 * open connections (over it, a new connection gets a 503 with `Retry-After` and is closed), and
 * connections with header, idle and body timeouts (./connection.ts).
 *
 * The process cannot read its open-file limit (Deno asks for --allow-all to read /proc/self), so
 * the cap is the configured one until the limit is first reached: then it drops to a little below
 * the connections open at that moment, and later connections over it get the 503.
 *
 * `Deno.serve` has none of these: no header or idle timeout, no connection cap, and an accept error
 * rejects `finished`, which ended the process. `node:http` in Deno 2.9 applies neither
 * `headersTimeout` nor `requestTimeout`, and stops accepting for good after EMFILE.
 *
 * @module
 */
import { Connection, type ConnectionEvent } from "./connection.ts";
import { errorResponse } from "./http1.ts";

/** Settings of {@linkcode HttpServer.listen}. */
export interface ServeOptions {
  readonly hostname: string;
  readonly port: number;
  /** Seconds a connection has to send a whole request head. */
  readonly headerTimeout: number;
  /** Seconds a kept-alive connection may wait for its next request. */
  readonly idleTimeout: number;
  /** Seconds a request body may take to arrive (and a response write may stall). */
  readonly bodyTimeout: number;
  /** Most open connections; more are answered 503 and closed. */
  readonly maxConnections: number;
  /** Warnings (accept errors, refused connections), at most one line per kind per second. */
  readonly warn?: (fields: Record<string, unknown>) => void;
  /** Every connection event and refusal, for metrics. */
  readonly onEvent?: (event: ConnectionEvent | "refused" | "accept_error") => void;
}

/** Counters of {@linkcode HttpServer.stats}. */
export interface HttpServerStats {
  /** Connections open now. */
  readonly open: number;
  readonly maxConnections: number;
  /** Connections answered 503 at the cap. */
  readonly refused: number;
  /** accept() failures survived (EMFILE, ...). */
  readonly acceptErrors: number;
}

/** Connections the cap leaves free below the count at which the open-file limit was reached. */
const FD_MARGIN = 8;

/** How long a refused connection's 503 may take to go out before it is dropped. */
const REFUSE_MS = 500;
/** Refused connections being answered at once; beyond that they are closed at once. */
const REFUSING_MAX = 64;

/** A listening server; see the module doc. */
export class HttpServer {
  readonly addr: Deno.NetAddr;
  /** Resolves once the server has shut down and every connection is closed. */
  readonly finished: Promise<void>;
  readonly #listener: Deno.TcpListener;
  readonly #opts: ServeOptions;
  readonly #handler: (request: Request) => Response | Promise<Response>;
  readonly #open = new Set<Connection>();
  #refusing = 0;
  #closing = false;
  #refused = 0;
  #acceptErrors = 0;
  #cap: number;
  readonly #lastWarn = new Map<string, { at: number; suppressed: number }>();

  private constructor(
    listener: Deno.TcpListener,
    options: ServeOptions,
    handler: (request: Request) => Response | Promise<Response>,
  ) {
    this.#listener = listener;
    this.addr = listener.addr as Deno.NetAddr;
    this.#opts = options;
    this.#cap = options.maxConnections;
    this.#handler = handler;
    this.finished = this.#acceptLoop();
  }

  /**
   * Listens on `hostname:port` and serves `handler`. Throws what `Deno.listen` throws (address in
   * use, not permitted).
   *
   * @example
   * ```ts ignore
   * const server = HttpServer.listen({ hostname: "127.0.0.1", port: 8080, headerTimeout: 10,
   *   idleTimeout: 75, bodyTimeout: 30, maxConnections: 1000 }, app.fetch);
   * await server.shutdown();
   * ```
   */
  static listen(
    options: ServeOptions,
    handler: (request: Request) => Response | Promise<Response>,
  ): HttpServer {
    const listener = Deno.listen({ hostname: options.hostname, port: options.port, transport: "tcp" });
    return new HttpServer(listener, options, handler);
  }

  get stats(): HttpServerStats {
    return {
      open: this.#open.size,
      maxConnections: this.#cap,
      refused: this.#refused,
      acceptErrors: this.#acceptErrors,
    };
  }

  /**
   * Stops accepting, closes idle connections, lets each busy one finish its response (which says
   * `Connection: close`) and resolves when all are closed, or after `timeoutMs` (closing the rest).
   */
  async shutdown(timeoutMs = 2000): Promise<void> {
    if (!this.#closing) {
      this.#closing = true;
      try {
        this.#listener.close();
      } catch { /* already closed */ }
    }
    for (const c of this.#open) c.closeIfIdle();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)));
    await Promise.race([this.finished, late]);
    clearTimeout(timer);
  }

  async #acceptLoop(): Promise<void> {
    let backoff = 0;
    while (!this.#closing) {
      let conn: Deno.TcpConn;
      try {
        conn = await this.#listener.accept();
        backoff = 0;
      } catch (e) {
        if (this.#closing) break;
        // EMFILE/ENFILE/ENOBUFS/ECONNABORTED: the listener is fine; wait for descriptors to free up
        this.#acceptErrors++;
        this.#opts.onEvent?.("accept_error");
        if (/too many open files/i.test((e as Error).message)) this.#learnLimit();
        backoff = Math.min(1000, backoff ? backoff * 2 : 10);
        this.#warn("accept", {
          msg: "accept failed; retrying",
          error: (e as Error).message,
          retry_ms: backoff,
        });
        await new Promise((r) => setTimeout(r, backoff));
        continue;
      }
      if (this.#open.size >= this.#cap) {
        this.#refuse(conn);
        continue;
      }
      try {
        conn.setNoDelay(true);
      } catch { /* closed already */ }
      this.#serve(conn);
    }
    while (this.#open.size) await Promise.all([...this.#open].map((c) => c.done));
  }

  #serve(conn: Deno.TcpConn): void {
    const o = this.#opts;
    const c = new Connection(conn, {
      handler: this.#handler,
      headerTimeoutMs: o.headerTimeout * 1000,
      idleTimeoutMs: o.idleTimeout * 1000,
      bodyTimeoutMs: o.bodyTimeout * 1000,
      authority: `${
        this.addr.hostname.includes(":") ? `[${this.addr.hostname}]` : this.addr.hostname
      }:${this.addr.port}`,
      closing: () => this.#closing,
      onEvent: o.onEvent,
    });
    this.#open.add(c);
    c.done.finally(() => this.#open.delete(c));
  }

  /** Answers 503 + Retry-After without reading the request, then closes. */
  #refuse(conn: Deno.TcpConn): void {
    this.#refused++;
    this.#opts.onEvent?.("refused");
    this.#warn("refused", {
      msg: "connection refused: too many open connections",
      open: this.#open.size,
      max_connections: this.#cap,
    });
    if (this.#refusing >= REFUSING_MAX) return void conn.close();
    this.#refusing++;
    const msg = `The server has ${this.#open.size} open connections, its limit; retry shortly`;
    const bytes = errorResponse(503, msg, "too_many_connections", { "retry-after": "1" });
    const timer = setTimeout(() => conn.close(), REFUSE_MS);
    (async () => {
      try {
        for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
        await conn.closeWrite();
        const sink = new Uint8Array(4096);
        while ((await conn.read(sink)) !== null) { /* drop the request: a close with unread input resets */ }
      } catch {
        /* gone or timed out */
      } finally {
        clearTimeout(timer);
        this.#refusing--;
        try {
          conn.close();
        } catch { /* closed by the timer */ }
      }
    })();
  }

  /** The open-file limit was reached with this many connections open: cap a little below. */
  #learnLimit(): void {
    const cap = Math.max(1, this.#open.size - FD_MARGIN);
    if (cap >= this.#cap) return;
    this.#cap = cap;
    this.#opts.warn?.({
      msg:
        "the open-file limit was reached: lowering the connection cap (raise the limit: ulimit -n, LimitNOFILE=)",
      open: this.#open.size,
      max_connections: cap,
    });
  }

  /** Logs at most one line per `kind` per second, with how many were suppressed since. */
  #warn(kind: string, fields: Record<string, unknown>): void {
    if (!this.#opts.warn) return;
    const now = performance.now(), last = this.#lastWarn.get(kind);
    if (last && now - last.at < 1000) {
      last.suppressed++;
      return;
    }
    this.#lastWarn.set(kind, { at: now, suppressed: 0 });
    this.#opts.warn({ ...fields, suppressed: last?.suppressed || undefined });
  }
}
