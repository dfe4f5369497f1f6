/**
 * engine/model/download.ts against a local server that answers like the Hugging Face Hub and its
 * CDN (tests/engine/model/_fake_hub.ts): the redirect to another host without the token, the
 * checksum and size from X-Linked-Etag / X-Linked-Size, Range resumes after a dropped connection and
 * after an interrupted run, a wrong checksum, 401/403/404, no network, a full disk.
 */
import { deepStrictEqual as assertEquals, ok as assert, rejects } from "node:assert/strict";
import { pull, PullError, type PullErrorKind } from "../../../engine/model/download.ts";
import { cachedPath, hfRef } from "../../../engine/model/hub.ts";
import { FakeHub, sha256 } from "./_fake_hub.ts";

/** Deterministic bytes (xorshift), so a wrong byte changes the checksum. */
function payload(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13, x >>>= 0, x ^= x >>> 17, x ^= x << 5, x >>>= 0;
    out[i] = x & 255;
  }
  return out;
}

const MODEL = payload(3 << 20, 7);
const OTHER = payload(100_000, 9);
const files = [
  { owner: "acme", repo: "tiny-gguf", file: "model.gguf", bytes: MODEL },
  { owner: "acme", repo: "tiny-gguf", file: "sub/other.gguf", bytes: OTHER, revision: "v2" },
  { owner: "acme", repo: "private", file: "model.gguf", bytes: OTHER, private: true },
  { owner: "acme", repo: "gated", file: "model.gguf", bytes: OTHER, gated: true },
  { owner: "acme", repo: "corrupt", file: "model.gguf", bytes: OTHER, announce: "ab".repeat(32) },
];

async function withHub(fn: (hub: FakeHub, cache: string) => Promise<void>): Promise<void> {
  const hub = new FakeHub(files);
  const cache = Deno.makeTempDirSync({ prefix: "bn-pull-test-" });
  try {
    await fn(hub, cache);
  } finally {
    await hub.close();
    Deno.removeSync(cache, { recursive: true });
  }
}

const isPullError = (kind: PullErrorKind, ...texts: string[]) => (e: Error) => {
  assert(e instanceof PullError, `${e.name}: ${e.message}`);
  assertEquals(e.kind, kind, e.message);
  for (const t of texts) assert(e.message.includes(t), `"${t}" not in: ${e.message}`);
  return true;
};

const model = hfRef("acme", "tiny-gguf", "model.gguf");
const fast = { retryDelayMs: 10, stallMs: 5000 };

Deno.test("pull() follows the Hub's redirect to the CDN host, sending the token to the Hub only", async () => {
  await withHub(async (hub, cache) => {
    const r = await pull({ ref: model, cache, endpoint: hub.endpoint, token: hub.token, ...fast });
    assertEquals(r.path, cachedPath(cache, model));
    assertEquals([r.size, r.sha256, r.verified, r.downloaded, r.resumedFrom], [
      MODEL.length,
      sha256(MODEL),
      true,
      MODEL.length,
      0,
    ]);
    assertEquals(await Deno.readFile(r.path), MODEL);
    assert(!(await exists(`${r.path}.part`)));
    assertEquals(hub.hubSeen.map((s) => [s.method, s.auth]), [["HEAD", `Bearer ${hub.token}`]]);
    assertEquals(hub.cdnSeen.map((s) => [s.method, s.auth, s.range]), [["GET", null, null]]);

    // Again: the cache already holds the verified file, nothing is downloaded.
    const again = await pull({ ref: model, cache, endpoint: hub.endpoint, ...fast });
    assertEquals([again.downloaded, again.sha256], [0, sha256(MODEL)]);
    assertEquals(hub.cdnSeen.length, 1);

    // A cached file that differs from the Hub's (changed upstream, or damaged) is replaced.
    Deno.writeFileSync(r.path, MODEL.slice(0, 1000));
    const lines: string[] = [];
    const fixed = await pull({
      ref: model,
      cache,
      endpoint: hub.endpoint,
      log: (l) => lines.push(l),
      ...fast,
    });
    assertEquals([fixed.downloaded, await Deno.readFile(r.path)], [MODEL.length, MODEL]);
    assert(lines.some((l) => l.includes("downloading it again")), lines.join("\n"));
  });
});

Deno.test("pull() takes revisions and files in folders, each cached apart", async () => {
  await withHub(async (hub, cache) => {
    const ref = hfRef("acme", "tiny-gguf", "sub/other.gguf", "v2");
    const r = await pull({ ref, cache, endpoint: hub.endpoint, ...fast });
    assertEquals(r.path, `${cache}/hf/acme/tiny-gguf/v2/sub/other.gguf`);
    assertEquals(hub.hubSeen[0].path, "/acme/tiny-gguf/resolve/v2/sub/other.gguf");
    assertEquals(await Deno.readFile(r.path), OTHER);
  });
});

Deno.test("a connection dropped mid-file is resumed with Range and the file verifies", async () => {
  await withHub(async (hub, cache) => {
    hub.faults = { drops: 2, dropAfter: 1 << 20, ignoreRange: false };
    const lines: string[] = [];
    const progress: number[] = [];
    const r = await pull({
      ref: model,
      cache,
      endpoint: hub.endpoint,
      log: (l) => lines.push(l),
      onProgress: (p) => progress.push(p.done),
      ...fast,
    });
    assertEquals([r.sha256, r.downloaded], [sha256(MODEL), MODEL.length]);
    assertEquals(await Deno.readFile(r.path), MODEL);
    const ranges = hub.cdnSeen.map((s) => s.range);
    assertEquals(ranges.length, 3);
    assertEquals(ranges[0], null);
    const starts = ranges.slice(1).map((h) => Number(/^bytes=(\d+)-$/.exec(h!)![1]));
    assert(
      starts[0] > 0 && starts[1] > starts[0],
      `each reconnect continues where the last stopped: ${ranges}`,
    );
    assertEquals(lines.filter((l) => l.startsWith("connection lost")).length, 2);
    assertEquals(progress.at(-1), MODEL.length);
    assert(progress.every((d, i) => i === 0 || d >= progress[i - 1]), "progress never goes back");
  });
});

Deno.test("a new run resumes the .part an interrupted run left; a .part that does not verify starts over", async () => {
  await withHub(async (hub, cache) => {
    const path = cachedPath(cache, model);
    Deno.mkdirSync(path.slice(0, path.lastIndexOf("/")), { recursive: true });
    Deno.writeFileSync(`${path}.part`, MODEL.slice(0, 1_234_567));
    const r = await pull({ ref: model, cache, endpoint: hub.endpoint, ...fast });
    assertEquals([r.resumedFrom, r.downloaded, r.sha256], [
      1_234_567,
      MODEL.length - 1_234_567,
      sha256(MODEL),
    ]);
    assertEquals(hub.cdnSeen.map((s) => s.range), ["bytes=1234567-"]);
    assertEquals(await Deno.readFile(path), MODEL);

    // A .part with other bytes (an older version of the file): the checksum fails, one fresh download.
    Deno.removeSync(path);
    const stale = MODEL.slice(0, 500_000);
    stale[10] ^= 1;
    Deno.writeFileSync(`${path}.part`, stale);
    const lines: string[] = [];
    const again = await pull({
      ref: model,
      cache,
      endpoint: hub.endpoint,
      log: (l) => lines.push(l),
      ...fast,
    });
    assertEquals([again.resumedFrom, again.sha256], [0, sha256(MODEL)]);
    assertEquals(hub.cdnSeen.slice(1).map((s) => s.range), ["bytes=500000-", null]);
    assert(lines.some((l) => l.includes("does not verify")), lines.join("\n"));

    // A server that ignores Range: the whole file comes back and the .part restarts from zero.
    Deno.removeSync(path);
    Deno.writeFileSync(`${path}.part`, MODEL.slice(0, 2000));
    hub.faults.ignoreRange = true;
    const whole = await pull({ ref: model, cache, endpoint: hub.endpoint, ...fast });
    assertEquals([whole.resumedFrom, whole.downloaded, whole.sha256], [0, MODEL.length, sha256(MODEL)]);
  });
});

Deno.test("a wrong checksum fails naming both hashes and leaves neither the file nor the .part", async () => {
  await withHub(async (hub, cache) => {
    const ref = hfRef("acme", "corrupt", "model.gguf");
    await rejects(
      pull({ ref, cache, endpoint: hub.endpoint, ...fast }),
      isPullError("checksum", "ab".repeat(32), sha256(OTHER), "run the same command again"),
    );
    const path = cachedPath(cache, ref);
    assert(!(await exists(path)) && !(await exists(`${path}.part`)));
  });
});

Deno.test("401, 403 and 404 say what is missing and what to do", async () => {
  await withHub(async (hub, cache) => {
    const at = (repo: string, file = "model.gguf", rev = "main") => hfRef("acme", repo, file, rev);
    const opts = { cache, endpoint: hub.endpoint, ...fast };
    await rejects(
      pull({ ref: at("private"), ...opts }),
      isPullError("unauthorized", "acme/private", "HF_TOKEN"),
    );
    const ok = await pull({ ref: at("private"), token: hub.token, ...opts });
    assertEquals(ok.sha256, sha256(OTHER));
    await rejects(pull({ ref: at("nope"), ...opts }), isPullError("unauthorized", "Repository not found"));
    await rejects(
      pull({ ref: at("gated"), token: hub.token, ...opts }),
      isPullError("forbidden", "gated", "Accept"),
    );
    await rejects(
      pull({ ref: at("tiny-gguf", "missing.gguf"), ...opts }),
      isPullError("not_found", `has no file "missing.gguf" at revision "main"`),
    );
    await rejects(
      pull({ ref: at("tiny-gguf", "model.gguf", "v9"), ...opts }),
      isPullError("not_found", `has no revision "v9"`),
    );
  });
});

Deno.test("no network: the error names the host it could not reach; a pulled file is kept unchecked", async () => {
  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (closed.addr as Deno.NetAddr).port;
  closed.close();
  const cache = Deno.makeTempDirSync({ prefix: "bn-pull-test-" });
  try {
    const endpoint = `http://127.0.0.1:${port}`;
    await rejects(
      pull({ ref: model, cache, endpoint, ...fast }),
      isPullError("network", `Cannot reach 127.0.0.1:${port}`, `HF_ENDPOINT=${endpoint}`),
    );
    const path = cachedPath(cache, model);
    Deno.mkdirSync(path.slice(0, path.lastIndexOf("/")), { recursive: true });
    Deno.writeFileSync(path, OTHER);
    const lines: string[] = [];
    const kept = await pull({ ref: model, cache, endpoint, log: (l) => lines.push(l), ...fast });
    assertEquals([kept.path, kept.verified, kept.downloaded, kept.sha256], [path, false, 0, sha256(OTHER)]);
    assert(lines.join("\n").includes("not checked against the Hub"), lines.join("\n"));
  } finally {
    Deno.removeSync(cache, { recursive: true });
  }
});

Deno.test({
  name: "a full disk stops the pull with how much more is needed; the .part stays for a resume",
  ignore: Deno.build.os !== "linux", // /dev/full
  async fn() {
    await withHub(async (hub, cache) => {
      const path = cachedPath(cache, model);
      Deno.mkdirSync(path.slice(0, path.lastIndexOf("/")), { recursive: true });
      // Every write to /dev/full fails with ENOSPC. Deno opens devices only with all permissions,
      // so this pull runs in \`deno eval\` (ln: Deno.symlink needs unscoped --allow-write).
      assert((await new Deno.Command("ln", { args: ["-s", "/dev/full", `${path}.part`] }).output()).success);
      const code = `
        import { pull } from ${
        JSON.stringify(new URL("../../../engine/model/download.ts", import.meta.url).href)
      };
        import { hfRef } from ${
        JSON.stringify(new URL("../../../engine/model/hub.ts", import.meta.url).href)
      };
        try {
          await pull({ ref: hfRef("acme", "tiny-gguf", "model.gguf"), cache: ${JSON.stringify(cache)},
            endpoint: ${JSON.stringify(hub.endpoint)}, retryDelayMs: 10 });
          console.log(JSON.stringify({ kind: "none" }));
        } catch (e) {
          console.log(JSON.stringify({ kind: e.kind, message: e.message }));
        }`;
      const out = await new Deno.Command(Deno.execPath(), { args: ["eval", code], stdout: "piped" }).output();
      const { kind, message } = JSON.parse(new TextDecoder().decode(out.stdout));
      isPullError(
        "disk_full",
        "The disk is full",
        `${path}.part`,
        "3.0 MiB more needed",
        "run the same command again",
      )(
        new PullError(kind, message),
      );
      assert(!(await exists(path)));
      assertEquals(hub.cdnSeen.length, 1);
    });
  },
});

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}
