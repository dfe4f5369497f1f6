/**
 * routes/server/http1.ts: request heads and body framing read strictly (what a proxy could read
 * another way is refused), response heads and chunks written as RFC 9112 has them.
 */
import { deepStrictEqual as assertEquals, throws } from "node:assert/strict";
import {
  bodyFraming,
  chunk,
  errorResponse,
  headEnd,
  parseHead,
  ProtocolError,
  responseHead,
  wantsKeepAlive,
} from "../../../routes/server/http1.ts";

const bytes = (s: string) => new TextEncoder().encode(s);
const head = (s: string) => parseHead(bytes(s));
const text = (b: Uint8Array) => new TextDecoder().decode(b);

Deno.test("parseHead() reads the request line and fields, names lowercased and values trimmed", () => {
  const h = head(
    "POST /v1/completions?x=1 HTTP/1.1\r\nHost: a:8080\r\nContent-Type:  application/json \r\nX-A: 1\r\nx-a: 2",
  );
  assertEquals([h.method, h.target, h.minor], ["POST", "/v1/completions?x=1", 1]);
  assertEquals(h.fields, [["host", "a:8080"], ["content-type", "application/json"], ["x-a", "1"], [
    "x-a",
    "2",
  ]]);
  assertEquals(head("GET / HTTP/1.0").minor, 0);
  assertEquals(headEnd(bytes("GET / HTTP/1.1\r\nA: b\r\n\r\nrest")), 20);
  assertEquals(headEnd(bytes("GET / HTTP/1.1\r\nA: b\r\n")), -1);
});

Deno.test("parseHead() refuses malformed lines, folding, bare LF, controls and other versions", () => {
  const cases: [string, number, RegExp][] = [
    ["GET /", 400, /request line/],
    ["GET  / HTTP/1.1", 400, /request line/],
    ["G(T / HTTP/1.1", 400, /method/],
    ["GET / HTTP/2.0", 505, /HTTP\/2\.0/],
    ["GET / HTTP/1.2", 505, /not supported/],
    ["GET /\x01 HTTP/1.1", 400, /target/],
    ["GET / HTTP/1.1\r\nA: b\r\n c", 400, /folding/],
    ["GET / HTTP/1.1\nA: b", 400, /bare CR or LF/],
    ["GET / HTTP/1.1\r\nA: b\rc", 400, /bare CR or LF/],
    ["GET / HTTP/1.1\r\nA b: c", 400, /field name/],
    ["GET / HTTP/1.1\r\n: c", 400, /field name/],
    ["GET / HTTP/1.1\r\nA: b\x00c", 400, /control character in header field A/],
    [`GET / HTTP/1.1${"\r\nA: b".repeat(101)}`, 431, /more than 100/],
  ];
  for (const [s, status, re] of cases) {
    throws(
      () => head(s),
      (e: Error) => e instanceof ProtocolError && e.status === status && re.test(e.message),
      s,
    );
  }
});

Deno.test("bodyFraming() takes one Content-Length or chunked, and refuses what could be read two ways", () => {
  assertEquals(bodyFraming(head("GET / HTTP/1.1")), { kind: "none" });
  assertEquals(bodyFraming(head("POST / HTTP/1.1\r\nContent-Length: 0")), { kind: "none" });
  assertEquals(bodyFraming(head("POST / HTTP/1.1\r\nContent-Length: 12")), { kind: "length", length: 12 });
  assertEquals(bodyFraming(head("POST / HTTP/1.1\r\nContent-Length: 12\r\nContent-Length: 12")), {
    kind: "length",
    length: 12,
  });
  assertEquals(bodyFraming(head("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked")), { kind: "chunked" });
  const bad: [string, number][] = [
    ["POST / HTTP/1.1\r\nContent-Length: 12\r\nContent-Length: 13", 400],
    ["POST / HTTP/1.1\r\nContent-Length: 12, 13", 400],
    ["POST / HTTP/1.1\r\nContent-Length: -1", 400],
    ["POST / HTTP/1.1\r\nContent-Length: 0x10", 400],
    ["POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked", 400],
    ["POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked", 501],
    ["POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked", 501],
    ["POST / HTTP/1.0\r\nTransfer-Encoding: chunked", 400],
  ];
  for (const [s, status] of bad) {
    throws(() => bodyFraming(head(s)), (e: Error) => e instanceof ProtocolError && e.status === status, s);
  }
});

Deno.test("wantsKeepAlive() follows the version default and the Connection field", () => {
  assertEquals(wantsKeepAlive(head("GET / HTTP/1.1")), true);
  assertEquals(wantsKeepAlive(head("GET / HTTP/1.1\r\nConnection: upgrade, Close")), false);
  assertEquals(wantsKeepAlive(head("GET / HTTP/1.0")), false);
  assertEquals(wantsKeepAlive(head("GET / HTTP/1.0\r\nConnection: keep-alive")), true);
});

Deno.test("responseHead(), chunk() and errorResponse() write the wire format", () => {
  assertEquals(text(responseHead(200, [["a", "b"]])), "HTTP/1.1 200 OK\r\na: b\r\n\r\n");
  assertEquals(text(chunk(bytes("hello world, 26 bytes long"))), "1a\r\nhello world, 26 bytes long\r\n");
  const r = text(errorResponse(503, "busy", "too_many_connections", { "retry-after": "1" }));
  const [h, body] = r.split("\r\n\r\n");
  assertEquals(h.split("\r\n")[0], "HTTP/1.1 503 Service Unavailable");
  for (const f of ["connection: close", "retry-after: 1", `content-length: ${body.length}`]) {
    assertEquals(h.includes(f), true, f);
  }
  assertEquals(JSON.parse(body).error, {
    message: "busy",
    type: "server_error",
    param: null,
    code: "too_many_connections",
  });
});
