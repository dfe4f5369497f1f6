/**
 * `deno task pull` end to end, with the task's own permissions, against a local server that behaves
 * like the Hub (tests/engine/model/_fake_hub.ts): a private repository (HF_TOKEN), a redirect to the
 * CDN on another host, a connection dropped mid-file; then the pulled file served through
 * `--model hf:OWNER/REPO/FILE` by the server, which never touches the network or the cache's writes.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { FakeHub, sha256 } from "../engine/model/_fake_hub.ts";
import { tinyModel } from "../_models.ts";
import { serve, waitFor } from "../_serve.ts";

const ROOT = decodeURIComponent(new URL("../../", import.meta.url).pathname);

async function task(args: string[], env: Record<string, string>) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
}

Deno.test("deno task pull fetches a private file through the CDN, resuming a drop; the server serves it as hf:", async () => {
  const bytes = await Deno.readFile(await tinyModel());
  const hub = new FakeHub([{ owner: "acme", repo: "tiny-gguf", file: "model.gguf", bytes, private: true }]);
  const cache = Deno.makeTempDirSync({ prefix: "bn-pull-e2e-" });
  const env = { HF_ENDPOINT: hub.endpoint, HF_TOKEN: hub.token, BN_CACHE: cache };
  try {
    hub.faults = { drops: 1, dropAfter: Math.floor(bytes.length / 3), ignoreRange: false };
    const r = await task(["pull", "acme/tiny-gguf", "model.gguf"], env);
    assertEquals(r.code, 0, r.stderr);
    const path = `${cache}/hf/acme/tiny-gguf/main/model.gguf`;
    assertEquals(r.stdout.trim(), path);
    assertEquals(sha256(await Deno.readFile(path)), sha256(bytes));
    assert(r.stderr.includes("connection lost at"), r.stderr);
    assert(r.stderr.includes(`SHA-256 verified: ${sha256(bytes)}`), r.stderr);
    assert(
      r.stderr.includes("serve it with:\n  deno task serve --model hf:acme/tiny-gguf/model.gguf"),
      r.stderr,
    );
    assertEquals(hub.cdnSeen.map((s) => s.auth), [null, null]);
    assert(hub.cdnSeen[1].range?.startsWith("bytes="), "the second request resumes");
    assert(hub.hubSeen.every((s) => s.auth === `Bearer ${hub.token}`));

    // The server: no network but its socket, read-only; finds the file by its hf: name.
    const child = serve(["--model", "hf:acme/tiny-gguf/model.gguf", "--port", "0", "--threads", "1"], {
      BN_CACHE: cache,
    });
    const stderr = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    const stdout = new Response(child.stdout).text();
    try {
      const banner = await waitFor(stderr, /serving on (http:\/\/127\.0\.0\.1:\d+)/);
      assert(banner.includes(`loading ${path}`), banner);
      const url = banner.match(/serving on (http:\/\/127\.0\.0\.1:\d+)/)![1];
      const res = await fetch(`${url}/v1/chat/completions`, {
        method: "POST",
        body: JSON.stringify({ messages: [{ role: "user", content: "Hi" }], max_tokens: 4 }),
      });
      assertEquals(res.status, 200);
      assertEquals((await res.json()).object, "chat.completion");
    } finally {
      child.kill("SIGTERM");
      await stderr.cancel();
      await child.status;
      await stdout;
    }
  } finally {
    await hub.close();
    Deno.removeSync(cache, { recursive: true });
  }
});

Deno.test("deno task pull exits 1 with the Hub's reason, 2 on bad arguments; serve names the pull to run", async () => {
  const hub = new FakeHub([{
    owner: "acme",
    repo: "tiny-gguf",
    file: "model.gguf",
    bytes: new Uint8Array(10),
  }]);
  const cache = Deno.makeTempDirSync({ prefix: "bn-pull-e2e-" });
  const env = { HF_ENDPOINT: hub.endpoint, BN_CACHE: cache };
  try {
    const missing = await task(["pull", "acme/tiny-gguf", "nope.gguf"], env);
    assertEquals(missing.code, 1);
    assert(
      missing.stderr.includes(`404 Not Found: acme/tiny-gguf has no file "nope.gguf" at revision "main"`),
    );
    const bad = await task(["pull", "not-a-repo", "x.gguf"], env);
    assertEquals(bad.code, 2);
    assert(bad.stderr.includes(`"not-a-repo" is not a repository: expected OWNER/REPO`), bad.stderr);
    const help = await task(["pull", "--help"], env);
    assert(help.code === 0 && help.stdout.includes("Usage: deno task pull [REPO] [FILE]"), help.stdout);

    const out = await serve(["--model", "hf:acme/tiny-gguf/model.gguf", "--port", "0"], { BN_CACHE: cache })
      .output();
    const err = new TextDecoder().decode(out.stderr);
    assertEquals(out.code, 1);
    assert(err.includes(`looked for ${cache}/hf/acme/tiny-gguf/main/model.gguf`), err);
    assert(err.includes("\n  deno task pull acme/tiny-gguf model.gguf"), err);
  } finally {
    await hub.close();
    Deno.removeSync(cache, { recursive: true });
  }
});
