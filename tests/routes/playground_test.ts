/**
 * routes/playground.ts through `app.request()`: the page and its files, their headers (a strict
 * Content-Security-Policy on the page), ETag revalidation, the page without an API key while the
 * API needs one, the page while the model loads, no page when it is off, and what the page's files
 * may contain (nothing inline, nothing from elsewhere).
 */
import { deepStrictEqual as assertEquals, ok as assert, rejects } from "node:assert/strict";
import { createApp } from "../../routes/app.ts";
import { loadPlayground, PLAYGROUND_CSP, PLAYGROUND_DIR } from "../../routes/playground.ts";
import { ServerState } from "../../routes/state.ts";

const page = await loadPlayground();
const loading = () => new ServerState(); // no engine: the page must not need one

Deno.test("loadPlayground() reads index.html as / and the other files under /playground/", () => {
  const paths = [...page.assets.keys()].sort();
  for (
    const p of [
      "/",
      "/playground/app.js",
      "/playground/api.js",
      "/playground/stats.js",
      "/playground/style.css",
    ]
  ) {
    assert(paths.includes(p), `${p} in ${paths}`);
  }
  assert(paths.every((p) => p === "/" || /^\/playground\/[\w.-]+$/.test(p)), String(paths));
  assertEquals(page.assets.get("/")!.type, "text/html; charset=utf-8");
  assertEquals(page.assets.get("/playground/app.js")!.type, "text/javascript; charset=utf-8");
});

Deno.test("loadPlayground() names the folder when it or its index.html is missing", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "bn-playground-" });
  try {
    await rejects(
      loadPlayground(new URL(`file://${dir}/nope/`)),
      (e: Error) =>
        e instanceof TypeError && e.message.includes(`${dir}/nope`) && e.message.includes("--no-playground"),
    );
    Deno.writeTextFileSync(`${dir}/app.js`, "");
    await rejects(loadPlayground(new URL(`file://${dir}/`)), /index\.html is missing/);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("GET / answers the page with a strict CSP, no framing, no referrer, no sniffing", async () => {
  const app = createApp(loading(), { playground: page });
  const res = await app.request("/");
  assertEquals(res.status, 200);
  assertEquals(res.headers.get("content-type"), "text/html; charset=utf-8");
  const csp = res.headers.get("content-security-policy")!;
  assertEquals(csp, PLAYGROUND_CSP);
  const directives = new Map(
    csp.split(/;\s*/).map((d) => [d.split(" ")[0], d.split(" ").slice(1).join(" ")]),
  );
  assertEquals(directives.get("default-src"), "'self'");
  for (const d of ["script-src", "style-src", "connect-src"]) assertEquals(directives.get(d), "'self'", d);
  assertEquals([directives.get("object-src"), directives.get("base-uri")], ["'none'", "'none'"]);
  assert(!csp.includes("unsafe-"), csp);
  assertEquals(res.headers.get("x-frame-options"), "DENY");
  assertEquals(res.headers.get("referrer-policy"), "no-referrer");
  assertEquals(res.headers.get("x-content-type-options"), "nosniff");
  const html = await res.text();
  assert(html.includes('data-testid="messages"'));
  const js = await app.request("/playground/app.js");
  assertEquals([js.status, js.headers.get("content-type")], [200, "text/javascript; charset=utf-8"]);
  assertEquals(js.headers.get("x-content-type-options"), "nosniff");
  assertEquals(await js.text(), Deno.readTextFileSync(new URL("app.js", PLAYGROUND_DIR)));
});

Deno.test("the page's files revalidate with their own ETag (304 on a match, 200 otherwise)", async () => {
  const app = createApp(loading(), { playground: page });
  const first = await app.request("/playground/style.css");
  await first.body?.cancel();
  const etag = first.headers.get("etag")!;
  assert(/^"[0-9a-f]{24}"$/.test(etag), etag);
  assertEquals(first.headers.get("cache-control"), "no-cache");
  const again = await app.request("/playground/style.css", { headers: { "If-None-Match": `"x", ${etag}` } });
  assertEquals([again.status, await again.text()], [304, ""]);
  const stale = await app.request("/playground/style.css", { headers: { "If-None-Match": '"0"' } });
  assertEquals(stale.status, 200);
  assert(page.assets.get("/")!.etag !== etag);
});

Deno.test("with API keys the page loads without one, and the API it calls still needs one", async () => {
  const app = createApp(loading(), { playground: page, apiKeys: ["sk-page"] });
  assertEquals((await app.request("/")).status, 200);
  assertEquals((await app.request("/playground/api.js")).status, 200);
  const models = await app.request("/v1/models");
  assertEquals(models.status, 401);
  assertEquals((await models.json()).error.code, "invalid_api_key");
  assertEquals((await app.request("/playground/missing.js")).status, 401);
  const authed = await app.request("/v1/models", { headers: { Authorization: "Bearer sk-page" } });
  assertEquals(authed.status, 503); // the key passes; the model is still loading
});

Deno.test("without the playground (--no-playground) GET / is the JSON 404 of an unknown route", async () => {
  const app = createApp(loading());
  for (const path of ["/", "/playground/app.js"]) {
    const res = await app.request(path);
    assertEquals(res.status, 404);
    assertEquals((await res.json()).error.code, "not_found");
  }
  assertEquals((await createApp(loading(), { playground: page }).request("/playground/nope.js")).status, 404);
});

Deno.test("POST / is a 405, not the page", async () => {
  const app = createApp(loading(), { playground: page });
  const res = await app.request("/", { method: "POST" });
  assertEquals(res.status, 405);
  await res.body?.cancel();
});

Deno.test("the page's files hold no inline script or style and load nothing from elsewhere", () => {
  const text = (name: string) => Deno.readTextFileSync(new URL(name, PLAYGROUND_DIR));
  const html = text("index.html");
  for (const tag of html.matchAll(/<script\b[^>]*>/g)) {
    assert(/\bsrc="playground\/[\w.-]+"/.test(tag[0]), tag[0]);
  }
  assert(!/<style\b|\sstyle=|\son[a-z]+=/i.test(html), "inline style or event handler in index.html");
  for (const ref of html.matchAll(/\b(?:src|href)="([^"]*)"/g)) {
    assert(page.assets.has(`/${ref[1]}`), `index.html refers to ${ref[1]}, which the playground lacks`);
  }
  for (const [path] of page.assets) {
    if (!/\.(js|css|html)$/.test(path) && path !== "/") continue;
    const body = text(path === "/" ? "index.html" : path.slice("/playground/".length));
    assert(!/\b(?:https?:)?\/\/[a-z0-9.-]+\.[a-z]{2,}/i.test(body), `${path} names another host`);
    assert(
      !/\b(innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval)\b/.test(body),
      `${path}: HTML sink`,
    );
    assert(!/localStorage|document\.cookie/.test(body), `${path}: persistent storage`);
  }
  for (const m of text("app.js").matchAll(/from "\.\/([\w.-]+)"/g)) {
    assert(page.assets.has(`/playground/${m[1]}`), m[1]);
  }
});
