/**
 * routes/server/: the HTTP/1.1 server over raw sockets. Slowloris, silent and idle connections are
 * closed after their timeouts; a body that is late, short or malformed is answered 408 / 400; the
 * connection cap answers 503 with Retry-After; keep-alive, pipelining, chunked bodies,
 * Expect: 100-continue and HTTP/1.0 work; a stream is written as it is produced; a client that
 * goes away (or stops reading) aborts its request's signal; shutdown closes idle connections.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { HttpServer, type ServeOptions } from "../../../routes/server/server.ts";
import { BodyError } from "../../../routes/server/http1.ts";
import { createApp } from "../../../routes/app.ts";
import { harness, type Json } from "../_harness.ts";

const enc = new TextEncoder(), dec = new TextDecoder();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const BASE: ServeOptions = {
  hostname: "127.0.0.1",
  port: 0,
  headerTimeout: 0.4,
  idleTimeout: 0.4,
  bodyTimeout: 0.4,
  maxConnections: 50,
};

/** A handler that echoes the method, path and body, after reading the whole body. */
async function echo(req: Request): Promise<Response> {
  let body = new Uint8Array(0);
  try {
    if (req.body) body = new Uint8Array(await req.arrayBuffer());
  } catch (e) {
    if (!(e instanceof BodyError)) throw e;
    return Response.json({ error: e.message }, { status: e.status });
  }
  const url = new URL(req.url);
  return Response.json({
    method: req.method,
    path: url.pathname,
    host: url.host,
    length: body.length,
    text: dec.decode(body),
  });
}

async function withServer(
  options: Partial<ServeOptions>,
  handler: (req: Request) => Response | Promise<Response>,
  fn: (server: HttpServer) => Promise<void>,
) {
  const server = HttpServer.listen({ ...BASE, ...options }, handler);
  try {
    await fn(server);
  } finally {
    await server.shutdown(1000);
  }
}

const connect = (server: HttpServer) => Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
const send = async (conn: Deno.Conn, s: string | Uint8Array) => {
  const b = typeof s === "string" ? enc.encode(s) : s;
  for (let at = 0; at < b.length;) at += await conn.write(b.subarray(at));
};

/** Everything the server sends until it closes (or `ms` passes); and when it closed. */
async function untilClosed(conn: Deno.Conn, ms = 5000): Promise<{ text: string; closedMs: number }> {
  const t0 = performance.now(), buf = new Uint8Array(65536);
  let text = "";
  const timer = setTimeout(() => conn.close(), ms);
  try {
    for (;;) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) break;
      text += dec.decode(buf.subarray(0, n));
    }
  } finally {
    clearTimeout(timer);
  }
  const closedMs = performance.now() - t0;
  if (closedMs >= ms) throw new Error(`still open after ${ms} ms: ${text}`);
  try {
    conn.close();
  } catch { /* closed */ }
  return { text, closedMs };
}

/** Bytes read past the last response, per connection (pipelined responses arrive together). */
const leftover = new WeakMap<Deno.Conn, Uint8Array>();

/** One response with a Content-Length body from `conn` (leaving the connection open). */
async function response(conn: Deno.Conn): Promise<{ status: number; head: string; body: string }> {
  let bytes = leftover.get(conn) ?? new Uint8Array(0);
  const buf = new Uint8Array(65536);
  for (;;) {
    const end = dec.decode(bytes).indexOf("\r\n\r\n");
    if (end >= 0) {
      const head = dec.decode(bytes.subarray(0, end));
      const len = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? -1);
      const body = bytes.subarray(end + 4);
      if (len >= 0 && body.length >= len) {
        leftover.set(conn, body.slice(len));
        return { status: Number(head.split(" ")[1]), head, body: dec.decode(body.subarray(0, len)) };
      }
    }
    const n = await conn.read(buf);
    if (n === null) throw new Error(`closed mid-response: ${dec.decode(bytes)}`);
    const grown = new Uint8Array(bytes.length + n);
    grown.set(bytes);
    grown.set(buf.subarray(0, n), bytes.length);
    bytes = grown;
  }
}

const REQ = "GET /x HTTP/1.1\r\nHost: h\r\n\r\n";

Deno.test("a connection that sends nothing is closed at the header timeout", async () => {
  await withServer({}, echo, async (server) => {
    const { text, closedMs } = await untilClosed(await connect(server));
    assertEquals(text, "");
    assert(closedMs > 300 && closedMs < 2000, `${closedMs} ms`);
  });
});

Deno.test("slowloris: a head sent a byte at a time gets 408 at the header timeout and is closed", async () => {
  await withServer({}, echo, async (server) => {
    const conn = await connect(server);
    const closed = untilClosed(conn);
    const trickle = (async () => {
      for (const ch of "GET /x HTTP/1.1\r\nHost: h\r\nX-Slow: " + "a".repeat(100)) {
        await sleep(20);
        if (await send(conn, ch).then(() => false, () => true)) return;
      }
    })();
    const { text, closedMs } = await closed;
    await trickle;
    assert(text.startsWith("HTTP/1.1 408 Request Timeout\r\n"), text);
    assert(/"code":"request_timeout"/.test(text));
    assert(closedMs > 300 && closedMs < 2000, `${closedMs} ms`);
  });
});

Deno.test("a kept-alive connection serves requests, then closes at the idle timeout", async () => {
  await withServer({ idleTimeout: 0.6 }, echo, async (server) => {
    const conn = await connect(server);
    await send(conn, REQ);
    const a = await response(conn);
    assertEquals([a.status, JSON.parse(a.body).path, JSON.parse(a.body).host], [200, "/x", "h"]);
    assert(!/connection: close/i.test(a.head));
    await sleep(300); // within the idle timeout: the connection still serves
    await send(conn, "POST /y HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc");
    assertEquals(JSON.parse((await response(conn)).body), {
      method: "POST",
      path: "/y",
      host: "h",
      length: 3,
      text: "abc",
    });
    const { text, closedMs } = await untilClosed(conn);
    assertEquals(text, "");
    assert(closedMs > 500 && closedMs < 2500, `${closedMs} ms`);
  });
});

Deno.test("pipelined requests are answered in order, and chunked bodies are read", async () => {
  await withServer({}, echo, async (server) => {
    const conn = await connect(server);
    await send(
      conn,
      "POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n" +
        "\r\nGET /b HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    assertEquals(JSON.parse((await response(conn)).body).text, "hello world");
    const b = await response(conn);
    assertEquals(JSON.parse(b.body).path, "/b");
    assert(/connection: close/i.test(b.head));
    assertEquals((await untilClosed(conn)).text, "");
  });
});

Deno.test("Expect: 100-continue gets 100 Continue before the body; HTTP/1.0 gets a closed connection", async () => {
  await withServer({}, echo, async (server) => {
    const conn = await connect(server);
    await send(conn, "POST /c HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n");
    const buf = new Uint8Array(100);
    const n = await conn.read(buf);
    assertEquals(dec.decode(buf.subarray(0, n!)), "HTTP/1.1 100 Continue\r\n\r\n");
    await send(conn, "ok");
    assertEquals(JSON.parse((await response(conn)).body).text, "ok");
    conn.close();
    const old = await connect(server);
    await send(old, "GET /d HTTP/1.0\r\n\r\n");
    const { text } = await untilClosed(old);
    assert(text.startsWith("HTTP/1.1 200 OK\r\n") && /"path":"\/d"/.test(text), text);
  });
});

Deno.test("a body that stops arriving gets 408 at the body timeout", async () => {
  await withServer({}, echo, async (server) => {
    const conn = await connect(server);
    await send(conn, "POST /e HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n0123456789");
    const { text, closedMs } = await untilClosed(conn);
    assert(text.startsWith("HTTP/1.1 408 Request Timeout\r\n") && /connection: close/.test(text), text);
    assert(text.includes("did not arrive within 0.4 s"), text);
    assert(closedMs > 300 && closedMs < 2500, `${closedMs} ms`);
  });
});

Deno.test("malformed requests get 400 / 505 / 501 and the connection closes", async () => {
  await withServer({}, echo, async (server) => {
    for (
      const [req, status] of [
        ["GET / HTTP/1.1\r\nHost: h\r\nBad Field: x\r\n\r\n", 400],
        ["GET / HTTP/2.0\r\n\r\n", 505],
        ["POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501],
        ["POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc", 400],
        ["GET * HTTP/1.1\r\n\r\n", 400],
        [`GET / HTTP/1.1\r\nX: ${"a".repeat(20_000)}\r\n\r\n`, 431],
      ] as const
    ) {
      const conn = await connect(server);
      await send(conn, req);
      const { text } = await untilClosed(conn);
      assertEquals(Number(text.split(" ")[1]), status, req.slice(0, 60));
      assert(/"code":"bad_request"/.test(text), text);
    }
  });
});

Deno.test("over the connection cap a new connection gets 503 with Retry-After; it serves again below it", async () => {
  await withServer({ maxConnections: 2, headerTimeout: 5 }, echo, async (server) => {
    const held = [await connect(server), await connect(server)];
    await sleep(100);
    const third = await connect(server);
    await send(third, REQ);
    const { text } = await untilClosed(third);
    assert(text.startsWith("HTTP/1.1 503 Service Unavailable\r\n"), text);
    assert(/retry-after: 1\r\n/i.test(text) && /"code":"too_many_connections"/.test(text), text);
    assertEquals(server.stats.refused, 1);
    held[0].close();
    await sleep(100);
    const next = await connect(server);
    await send(next, REQ);
    assertEquals((await response(next)).status, 200);
    next.close();
    held[1].close();
  });
});

Deno.test("a stream is written as produced, chunked; a client that leaves aborts the request signal", async () => {
  let release = () => {};
  const gate = new Promise<void>((r) => (release = r));
  let aborted: Promise<void> = Promise.resolve();
  let cancelled = false;
  const handler = (req: Request) => {
    aborted = new Promise((r) => req.signal.addEventListener("abort", () => r()));
    let n = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(c) {
        if (n++ === 1) await gate;
        c.enqueue(enc.encode(`data: ${n}\n\n`));
      },
      cancel() {
        cancelled = true;
      },
    }, { highWaterMark: 0 });
    return new Response(body, { headers: { "content-type": "text/event-stream" } });
  };
  await withServer({}, handler, async (server) => {
    const conn = await connect(server);
    await send(conn, REQ);
    const buf = new Uint8Array(4096);
    let text = "";
    while (!text.includes("data: 1\n\n")) text += dec.decode(buf.subarray(0, (await conn.read(buf))!));
    assert(/transfer-encoding: chunked/i.test(text) && !text.includes("data: 2"), text);
    release();
    while (!text.includes("data: 2\n\n")) text += dec.decode(buf.subarray(0, (await conn.read(buf))!));
    conn.close();
    await Promise.race([aborted, sleep(2000).then(() => Promise.reject(new Error("signal not aborted")))]);
    await sleep(50);
    assert(cancelled, "the response body was cancelled");
  });
});

Deno.test("a client that stops reading a stream is closed at the body timeout, aborting its signal", async () => {
  let aborted = false;
  const block = new Uint8Array(64 * 1024).fill(97);
  const handler = (req: Request) => {
    req.signal.addEventListener("abort", () => (aborted = true));
    return new Response(
      new ReadableStream<Uint8Array>({ pull: (c) => c.enqueue(block) }, { highWaterMark: 0 }),
      { headers: { "content-type": "text/event-stream" } },
    );
  };
  await withServer({ bodyTimeout: 0.5 }, handler, async (server) => {
    const conn = await connect(server);
    await send(conn, REQ);
    for (let i = 0; i < 100 && !aborted; i++) await sleep(100); // never read
    assert(aborted, "the stalled connection was closed and its request aborted");
    assertEquals(server.stats.open, 0);
    conn.close();
  });
});

Deno.test("shutdown closes idle connections at once and lets a busy one finish with Connection: close", async () => {
  let release = () => {};
  const gate = new Promise<void>((r) => (release = r));
  const handler = async (req: Request) => {
    if (new URL(req.url).pathname === "/slow") await gate;
    return new Response("done");
  };
  const server = HttpServer.listen({ ...BASE, idleTimeout: 30, headerTimeout: 30 }, handler);
  const idle = await connect(server);
  await send(idle, REQ);
  await response(idle);
  const busy = await connect(server);
  await send(busy, "GET /slow HTTP/1.1\r\nHost: h\r\n\r\n");
  await sleep(50);
  const down = server.shutdown(5000);
  assertEquals((await untilClosed(idle, 1000)).text, "");
  release();
  const { text } = await untilClosed(busy, 2000);
  assert(text.startsWith("HTTP/1.1 200") && /connection: close/i.test(text) && text.endsWith("done"), text);
  await down;
  await server.finished;
  await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port }).then(
    (c) => {
      c.close();
      throw new Error("still accepting");
    },
    () => {},
  );
});

Deno.test("with the app: a short, malformed or cut request body is a 400 logged at warn, never a 500", async () => {
  const h = await harness();
  const app = createApp(h.state, {
    log: (level, fields) => h.logs.push({ level, ...fields }),
    metrics: h.metrics,
  });
  const server = HttpServer.listen({ ...BASE, bodyTimeout: 5 }, app.fetch);
  const post = (framing: string, body: string) =>
    `POST /v1/completions HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n${framing}\r\n\r\n${body}`;
  try {
    // Content-Length 100, a 16-byte body, then a half-close: the client still reads the answer
    const conn = await connect(server);
    await send(conn, post("Content-Length: 100", '{"prompt":"hi!",'));
    await conn.closeWrite();
    const { text } = await untilClosed(conn);
    assert(text.startsWith("HTTP/1.1 400 Bad Request\r\n"), text);
    const err = JSON.parse(text.slice(text.indexOf("\r\n\r\n") + 4)).error as Json;
    assertEquals([err.type, err.code], ["invalid_request_error", "invalid_body"]);
    assert(/ended early: 16 of 100 bytes arrived/.test(err.message), err.message);

    const chunked = await connect(server);
    await send(chunked, post("Transfer-Encoding: chunked", "zz\r\n{}\r\n0\r\n\r\n"));
    const bad = await untilClosed(chunked);
    assert(bad.text.startsWith("HTTP/1.1 400") && /Malformed chunked body/.test(bad.text), bad.text);

    const cut = await connect(server); // the client drops mid-upload: nobody to answer
    await send(cut, post("Content-Length: 1000", '{"prompt":'));
    await sleep(50);
    cut.close();
    await sleep(300);
    const lines = h.logs.filter((l) => l.msg === "request" && l.route === "/v1/completions");
    assertEquals(lines.map((l) => [l.level, l.status]), [["warn", 400], ["warn", 400], ["warn", 400]]);
    assert(!h.metrics.render(h.state).includes('status="500"'));
  } finally {
    await server.shutdown(1000);
    await h.close();
  }
});
