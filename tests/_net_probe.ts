/**
 * Test helper, run with the serve task's permissions: binds a server the way main.ts does
 * ({@linkcode listenThenRevokeNet}), then tries every other use of the network and prints what each
 * attempt threw, as one JSON line: `{"port":N,"fetch":"NotCapable",...}`. Argument: a URL to reach.
 */
import { listenThenRevokeNet } from "../main.ts";

const target = new URL(Deno.args[0]);
const server = await listenThenRevokeNet(
  { hostname: "127.0.0.1", port: 0, headerTimeout: 10, idleTimeout: 10, bodyTimeout: 10, maxConnections: 10 },
  () => new Response("still serving"),
);
const outcome = async (f: () => Promise<unknown>) => {
  try {
    await f();
    return "allowed";
  } catch (e) {
    return (e as Error).name;
  }
};
const worker = () =>
  new Promise<string>((resolve) => {
    const src = `fetch(${
      JSON.stringify(target.href)
    }).then(() => postMessage("allowed"), (e) => postMessage(e.name))`;
    const w = new Worker(`data:text/javascript,${encodeURIComponent(src)}`, { type: "module" });
    w.onmessage = (e) => {
      w.terminate();
      resolve(e.data);
    };
  });
const result = {
  port: server.addr.port,
  fetch: await outcome(() => fetch(target).then((r) => r.text())),
  connect: await outcome(async () =>
    (await Deno.connect({ hostname: target.hostname, port: +target.port })).close()
  ),
  listen: await outcome(() =>
    Promise.resolve().then(() => Deno.listen({ hostname: "127.0.0.1", port: 0 }).close())
  ),
  serveAgain: await outcome(() =>
    Deno.serve({ port: 0, onListen: () => {} }, () => new Response()).shutdown()
  ),
  worker: await worker(),
};
console.log(JSON.stringify(result));
// Serve until the test has made its request (it closes stdin when done).
await Deno.stdin.readable.pipeTo(new WritableStream());
await server.shutdown();
