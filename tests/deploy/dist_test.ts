/**
 * `deno task dist` end to end: build the release and its tarball, unpack the tarball into an empty
 * directory, start it with no deno on PATH, no DENO_DIR, no HOME and every proxy pointing nowhere,
 * stream a chat completion from it with the official openai client, drain it with SIGTERM. Then the
 * container image: built FROM scratch with deploy/container/build.sh and run by podman as non-root
 * on a read-only root file system with the model mounted; skipped, with the reason, where podman
 * cannot run containers.
 */
import { deepStrictEqual as assertEquals, ok as assert, rejects } from "node:assert/strict";
import OpenAI from "openai";
import {
  buildDist,
  defaultVersion,
  DENO_VERSION,
  launcherScript,
  pullFlags,
  releaseFlags,
  releaseName,
  serveFlags,
  withoutRevec,
} from "../../scripts/dist.ts";
import { FakeHub, sha256 } from "../engine/model/_fake_hub.ts";
import { freePort, sleep } from "../../scripts/deploy/cluster.ts";
import { tinyModel } from "../_models.ts";

const ROOT = decodeURIComponent(new URL("../../", import.meta.url).pathname);
const work = Deno.makeTempDirSync({ prefix: "bn-dist-test-" });

async function sh(cmd: string, args: string[], opts: Deno.CommandOptions = {}) {
  const out = await new Deno.Command(cmd, { args, stdin: "null", stdout: "piped", stderr: "piped", ...opts })
    .output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  return { ok: out.success, code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
}

/** The release, built once with a tiny synthetic model as its default model, and unpacked. */
const release = (async () => {
  const built = await buildDist({
    out: `${work}/out`,
    model: await tinyModel(),
    version: "test",
    log: () => {},
  });
  const unpacked = `${work}/unpacked`;
  Deno.mkdirSync(unpacked);
  const tar = await sh("tar", ["-xzf", built.tarball!, "-C", unpacked]);
  if (!tar.ok) throw new Error(tar.stderr);
  return { ...built, root: `${unpacked}/${built.name}` };
})();

Deno.test("deno task dist: a release directory and tarball with runtime, code, wasm, model, packages", async () => {
  const r = await release;
  assert(r.model);
  for (
    const f of [
      "bin/deno",
      "bin/bitnet-server",
      "app/main.ts",
      "app/wasm/worker.ts",
      "app/wasm/bn-simd128.wasm",
      "app/wasm/bn-relaxed.wasm",
      "app/models/default.gguf",
      "app/playground/index.html",
      "app/playground/app.js",
      "app/deno.json",
      "app/deno.lock",
      "app/scripts/pull.ts",
      "app/engine/model/download.ts",
      "deploy/container/probe.ts",
      "deploy/systemd/bitnet-server.service",
    ]
  ) assert(Deno.statSync(`${r.root}/${f}`).isFile, f);
  for (const pkg of ["hono", "zod", "@mlc-ai/web-xgrammar"]) {
    assert(Deno.statSync(`${r.root}/cache/npm/registry.npmjs.org/${pkg}`).isDirectory);
  }
  assert(
    (Deno.statSync(`${r.root}/bin/deno`).mode! & 0o111) !== 0 &&
      (Deno.statSync(`${r.root}/bin/bitnet-server`).mode! & 0o111) !== 0,
  );
  // Nothing of the test suite, the other scripts or the dev-only packages.
  const scripts = [...Deno.readDirSync(`${r.root}/app/scripts`)].map((e) => e.name);
  assertEquals(scripts, ["pull.ts"]);
  const absentPackages = ["openai", "puppeteer-core", "ajv"].map((p) => `cache/npm/registry.npmjs.org/${p}`);
  for (const absent of ["app/tests", ...absentPackages]) {
    assert(!(await sh("test", ["-e", `${r.root}/${absent}`])).ok, absent);
  }
  assert(Deno.readTextFileSync(`${r.root}/VERSION`).startsWith(`${r.name}\ncommit: `));
});

Deno.test("the README's and deploy/'s release names are the ones deno task dist builds by default", () => {
  const expected = releaseName(defaultVersion(), "linux", "x86_64");
  for (const file of ["README.md", "deploy/container/Containerfile", "deploy/container/build.sh"]) {
    const names = [...Deno.readTextFileSync(`${ROOT}${file}`).matchAll(/bitnet-server-[\w.<>-]+?-linux-x64/g)]
      .map((m) => m[0]).filter((n) => !n.includes("<version>"));
    assert(names.length > 0 || file !== "README.md", file);
    for (const n of names) assertEquals(n, expected, `${file} names ${n}`);
  }
});

Deno.test("the launcher and the container entrypoint run with exactly the serve task's permissions", async () => {
  const r = await release;
  const flags = serveFlags();
  // --allow-net: main.ts revokes it once it listens (tests/main_test.ts proves nothing else gets through).
  assert(flags.includes("--allow-read") && flags.includes("--allow-net"));
  for (const f of flags) assert(!/^--allow-(write|run|ffi|sys|all)|^-A$/.test(f), `serve task grants ${f}`);
  const launcher = Deno.readTextFileSync(`${r.root}/bin/bitnet-server`);
  const exec = launcher.split("\n").find((l) => l.startsWith("exec "))!;
  // "$v8": the serve task's V8 flags unless --revec off / BN_REVEC=0 (see the next test)
  const v8 = launcher.split("\n").find((l) => l.startsWith("v8="))!.slice(3);
  const words = [...exec.matchAll(/'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2]).map((w) =>
    w === '"$v8"' ? v8 : w
  );
  assertEquals(words.slice(3, 6), releaseFlags('"$root"'));
  assertEquals(words.slice(6, 6 + flags.length), flags);
  assert(exec.endsWith(`"$root/app/main.ts" "$@"`), exec);
  const pullExec = launcher.split("\n").find((l) => l.trim().startsWith("exec ") && l.includes("pull.ts"))!;
  const pullWords = [...pullExec.matchAll(/'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2]);
  assertEquals(pullWords.slice(6, 6 + pullFlags().length), pullFlags());
  assert(pullExec.trim().endsWith(`"$root/app/scripts/pull.ts" "$@"`), pullExec);

  const containerfile = Deno.readTextFileSync(`${ROOT}deploy/container/Containerfile`);
  const entry = JSON.parse(containerfile.match(/^ENTRYPOINT (\[.*\])$/m)![1]) as string[];
  assertEquals(entry, [
    "/opt/bitnet-server/bin/deno",
    "run",
    ...releaseFlags("/opt/bitnet-server"),
    ...flags,
    "/opt/bitnet-server/app/main.ts",
  ]);
});

Deno.test("deno task dist refuses a deno other than the pinned one, before building anything", async () => {
  const dir = `${work}/other-deno`;
  Deno.mkdirSync(dir, { recursive: true });
  const fake = `${dir}/deno`;
  Deno.writeTextFileSync(fake, '#!/bin/sh\necho "deno 2.9.5 (stable, release, x86_64-unknown-linux-gnu)"\n', {
    mode: 0o755,
  });
  await rejects(
    buildDist({ out: `${dir}/out`, deno: fake, model: null, log: () => {} }),
    (e: Error) => e.message.includes(`Deno ${DENO_VERSION}`) && e.message.includes("deno 2.9.5"),
  );
  assert(!(await sh("test", ["-e", `${dir}/out`])).ok, "nothing was written");
  assertEquals(DENO_VERSION, "2.9.6");
});

Deno.test("the launcher drops V8's revectorizer flag for --revec off or BN_REVEC=0, flags over the variable", async () => {
  const dir = `${work}/launcher`;
  Deno.mkdirSync(`${dir}/bin`, { recursive: true });
  const flags = serveFlags();
  const on = flags.find((f) => f.startsWith("--v8-flags="))!;
  assert(on.includes("--experimental-wasm-revectorize"), on);
  const off = withoutRevec(on)!;
  assertEquals(off, "--v8-flags=--no-liftoff");
  Deno.writeTextFileSync(`${dir}/bin/bitnet-server`, launcherScript(flags, "test"), { mode: 0o755 });
  Deno.writeTextFileSync(`${dir}/bin/deno`, '#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n', {
    mode: 0o755,
  });
  const cases: [string[], Record<string, string>, string][] = [
    [[], {}, on],
    [["--revec", "off"], {}, off],
    [["--revec=0"], {}, off],
    [[], { BN_REVEC: "false" }, off],
    [[], { BN_REVEC: "OFF" }, off],
    [["--revec", "on"], { BN_REVEC: "0" }, on],
    [["--model", "m.gguf"], { BN_REVEC: "yes" }, on],
  ];
  for (const [args, env, want] of cases) {
    const out = await sh(`${dir}/bin/bitnet-server`, args, { env, clearEnv: true });
    assert(out.ok, out.stderr);
    const passed = out.stdout.split("\n");
    assertEquals(
      passed.filter((a) => a.startsWith("--v8-flags=")),
      [want],
      `${args.join(" ")} ${JSON.stringify(env)}`,
    );
    assertEquals(passed.slice(-1 - args.length, -1), args, "the arguments pass through");
  }
});

/** Starts a release's launcher with nothing of this machine's Deno setup; resolves with its port. */
async function startRelease(launcher: string, args: string[], env: Record<string, string> = {}) {
  const empty = `${work}/empty-bin`;
  Deno.mkdirSync(empty, { recursive: true });
  const port = freePort();
  const child = new Deno.Command(launcher, {
    args,
    clearEnv: true,
    env: {
      PATH: empty,
      HOME: "/nonexistent",
      DENO_DIR: "/nonexistent/deno",
      HTTP_PROXY: "http://127.0.0.1:9",
      HTTPS_PROXY: "http://127.0.0.1:9",
      BN_PORT: String(port),
      BN_THREADS: "1",
      BN_LOG_LEVEL: "warn",
      ...env,
    },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = child.stderr.pipeThrough(new TextDecoderStream());
  let log = "";
  const reader = stderr.getReader();
  const drained = (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      log += value;
    }
  })();
  void child.stdout.cancel();
  let exited = false;
  child.status.then(() => (exited = true));
  for (let i = 0; i < 300 && !log.includes("serving on") && !exited; i++) await sleep(50);
  if (!log.includes("serving on")) {
    if (!exited) child.kill("SIGKILL");
    await drained;
    throw new Error(`${launcher} ${args.join(" ")} did not start:\n${log}`);
  }
  return { child, port, log: () => log, drained };
}

Deno.test("the unpacked tarball starts without deno on PATH or network and streams a chat completion", async () => {
  const r = await release;
  assert(
    !(await sh("/bin/sh", ["-c", "command -v deno"], { clearEnv: true, env: { PATH: `${work}/empty-bin` } }))
      .ok,
  );

  // The embedded default model.
  const a = await startRelease(`${r.root}/bin/bitnet-server`, []);
  try {
    assert(a.log().includes(`loading ${r.root}/app/models/default.gguf`), a.log());
    assert(a.log().includes(`serving on http://127.0.0.1:${a.port}`), a.log());
    const client = new OpenAI({ baseURL: `http://127.0.0.1:${a.port}/v1`, apiKey: "unused", maxRetries: 0 });
    const stream = await client.chat.completions.create({
      model: "default",
      messages: [{ role: "user", content: "Hello" }],
      max_tokens: 12,
      stream: true,
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    assertEquals(chunks[0].choices[0].delta.role, "assistant");
    assert(chunks.some((c) => c.choices[0]?.finish_reason), "a finish_reason chunk");
    // constrained decoding runs from the release's own npm cache (XGrammar), offline
    const json = await client.chat.completions.create({
      model: "default",
      messages: [{ role: "user", content: "Yes or no?" }],
      response_format: { type: "json_schema", json_schema: { name: "a", schema: { enum: ["yes", "no"] } } },
      max_tokens: 8,
    });
    assert(['"yes"', '"no"'].includes(json.choices[0].message.content!), json.choices[0].message.content!);
    const health = await fetch(`http://127.0.0.1:${a.port}/health`);
    assertEquals([health.status, await health.json()], [200, { status: "ok" }]);
    // The playground, read from the release with the server's read-only permission.
    const page = await fetch(`http://127.0.0.1:${a.port}/`);
    assertEquals([page.status, page.headers.get("content-type")], [200, "text/html; charset=utf-8"]);
    assert(page.headers.get("content-security-policy")?.startsWith("default-src 'self'"));
    assertEquals(await page.text(), Deno.readTextFileSync(`${r.root}/app/playground/index.html`));
    const js = await fetch(`http://127.0.0.1:${a.port}/playground/app.js`);
    assertEquals(await js.text(), Deno.readTextFileSync(`${ROOT}playground/app.js`));
  } finally {
    a.child.kill("SIGTERM");
  }
  assertEquals((await a.child.status).code, 0);
  await a.drained;
  assert(a.log().includes("stopped"), a.log());

  // --model PATH serves another file; flags and BN_* pass through a symlink to the launcher (as
  // /usr/local/bin/bitnet-server would be).
  assert((await sh("ln", ["-s", `${r.root}/bin/bitnet-server`, `${work}/bitnet-server-link`])).ok);
  const other = await tinyModel({ seed: 11 });
  const b = await startRelease(`${work}/bitnet-server-link`, ["--model", other], {
    BN_SLOTS: "3",
    BN_PLAYGROUND: "0",
  });
  try {
    assert(b.log().includes(`loading ${other}`), b.log());
    const models = await (await fetch(`http://127.0.0.1:${b.port}/v1/models`)).json();
    assertEquals(models.data[0].meta.n_slots, 3);
    assert(b.log().includes("playground off"), b.log());
    const off = await fetch(`http://127.0.0.1:${b.port}/`);
    assertEquals([off.status, (await off.json()).error.code], [404, "not_found"]);
  } finally {
    b.child.kill("SIGTERM");
  }
  assertEquals((await b.child.status).code, 0);
  await b.drained;
});

Deno.test("the launcher's help names it; `bitnet-server pull` downloads a model that --model hf: then serves", async () => {
  const r = await release;
  const launcher = `${r.root}/bin/bitnet-server`;
  const env = { PATH: `${work}/empty-bin`, HOME: "/nonexistent" };
  const help = await sh(launcher, ["--help"], { clearEnv: true, env });
  assert(help.ok && help.stdout.startsWith(`Usage: ${launcher} [options]`), help.stdout + help.stderr);
  assert(help.stdout.includes(`\`${launcher} pull\``), help.stdout);
  const pullHelp = await sh(launcher, ["pull", "--help"], { clearEnv: true, env });
  assert(pullHelp.ok && pullHelp.stdout.startsWith(`Usage: ${launcher} pull [REPO] [FILE]`), pullHelp.stdout);

  const bytes = await Deno.readFile(await tinyModel({ seed: 5 }));
  const hub = new FakeHub([{ owner: "acme", repo: "tiny-gguf", file: "model.gguf", bytes }]);
  const cache = `${work}/pull-cache`;
  try {
    const pulled = await sh(launcher, ["pull", "acme/tiny-gguf", "model.gguf"], {
      clearEnv: true,
      env: { ...env, HF_ENDPOINT: hub.endpoint, BN_CACHE: cache },
    });
    assert(pulled.ok, pulled.stderr);
    assertEquals(pulled.stdout.trim(), `${cache}/hf/acme/tiny-gguf/main/model.gguf`);
    assert(pulled.stderr.includes(`serve it with:\n  ${launcher} --model hf:acme/tiny-gguf/model.gguf`));
    assertEquals(sha256(Deno.readFileSync(pulled.stdout.trim())), sha256(bytes));
  } finally {
    await hub.close();
  }
  const s = await startRelease(launcher, ["--model", "hf:acme/tiny-gguf/model.gguf"], { BN_CACHE: cache });
  try {
    assert(s.log().includes(`loading ${cache}/hf/acme/tiny-gguf/main/model.gguf`), s.log());
  } finally {
    s.child.kill("SIGTERM");
  }
  assertEquals((await s.child.status).code, 0);
  await s.drained;
});

// ---------------------------------------------------------------- container image (podman)

const PODMAN = "/usr/bin/podman";
const podmanDir = `${work}/podman`;
/** Global podman flags: storage under /tmp, runc (crun 1.8 refuses hybrid cgroup v1 hosts). */
const podmanArgs = (() => {
  const args = ["--root", `${podmanDir}/root`, "--runroot", `${podmanDir}/run`];
  try {
    if (Deno.statSync("/usr/sbin/runc").isFile || Deno.statSync("/usr/bin/runc").isFile) {
      args.push("--runtime", "runc");
    }
  } catch { /* the default runtime */ }
  return args;
})();
/** Run flags every container here needs: podman's default rlimits exceed a sandbox's hard limits. */
const RUN_LIMITS = ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"];
const podman = (args: string[]) => sh(PODMAN, [...podmanArgs, ...args]);

/** Whether podman can build and run an image from scratch here; the reason when it cannot. */
async function probePodman(): Promise<string | null> {
  try {
    if (!Deno.statSync(PODMAN).isFile) return `${PODMAN} is not installed`;
  } catch {
    return `${PODMAN} is not installed (apt-get install podman runc)`;
  }
  const ctx = `${work}/probe-ctx`;
  Deno.mkdirSync(`${ctx}/rootfs`, { recursive: true });
  const ldd = await sh("ldd", ["/bin/true"]);
  const libs = [...ldd.stdout.matchAll(/(?:=> )?(\/\S+) \(0x/g)].map((m) => m[1]);
  for (const lib of ["/bin/true", ...libs]) {
    Deno.mkdirSync(`${ctx}/rootfs${lib.slice(0, lib.lastIndexOf("/"))}`, { recursive: true });
    Deno.copyFileSync(Deno.realPathSync(lib), `${ctx}/rootfs${lib}`);
  }
  Deno.writeTextFileSync(`${ctx}/Containerfile`, 'FROM scratch\nCOPY rootfs/ /\nENTRYPOINT ["/bin/true"]\n');
  const build = await podman(["build", "-q", "-t", "localhost/bn-probe", ctx]);
  if (!build.ok) return `podman build failed: ${build.stderr.trim().split("\n").slice(-3).join(" | ")}`;
  const run = await podman(["run", "--rm", "--network=host", ...RUN_LIMITS, "localhost/bn-probe"]);
  if (!run.ok) return `podman run failed: ${run.stderr.trim().split("\n").slice(-3).join(" | ")}`;
  return null;
}

const podmanProblem = await probePodman();
if (podmanProblem) {
  console.warn(`tests/deploy/dist_test.ts: the container test is skipped: ${podmanProblem}`);
}

Deno.test({
  name: "the container image (FROM scratch + release) runs non-root, read-only, healthy, and drains on stop",
  ignore: podmanProblem !== null,
  async fn() {
    const r = await release;
    const tag = "localhost/bitnet-server:test";
    try {
      const build = await sh(`${ROOT}deploy/container/build.sh`, [r.root, tag], {
        env: { PODMAN: `${PODMAN} ${podmanArgs.join(" ")}`, TMPDIR: work },
      });
      assert(build.ok, build.stderr + build.stdout);
      const inspect = JSON.parse((await podman(["image", "inspect", tag])).stdout)[0];
      assertEquals(inspect.Config.User, "65532:65532");
      assert(inspect.Healthcheck?.Test?.join(" ").includes("probe.ts"), "HEALTHCHECK kept");
      assertEquals(Object.keys(inspect.Config.Volumes ?? {}), ["/models"]);

      const models = `${work}/models`;
      Deno.mkdirSync(models, { recursive: true });
      Deno.copyFileSync(await tinyModel({ seed: 5 }), `${models}/tiny.gguf`);
      Deno.chmodSync(models, 0o755);
      Deno.chmodSync(`${models}/tiny.gguf`, 0o644);
      const port = freePort();
      const run = await podman([
        "run",
        "-d",
        "--name",
        "bn-test",
        "--network=host",
        "--read-only",
        "--memory=512m",
        ...RUN_LIMITS,
        "-v",
        `${models}:/models:ro`,
        "-e",
        "BN_MODEL=/models/tiny.gguf",
        "-e",
        "BN_HOST=127.0.0.1",
        "-e",
        `BN_PORT=${port}`,
        "-e",
        "BN_THREADS=1",
        tag,
      ]);
      assert(run.ok, run.stderr);
      let ready = false;
      for (let i = 0; i < 200 && !ready; i++) {
        await sleep(50);
        ready = await fetch(`http://127.0.0.1:${port}/ready`).then(
          (res) => (res.body?.cancel(), res.ok),
          () => false,
        );
      }
      assert(ready, (await podman(["logs", "bn-test"])).stderr);
      const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: "unused", maxRetries: 0 });
      const stream = await client.chat.completions.create({
        model: "m",
        messages: [{ role: "user", content: "Hi" }],
        max_tokens: 8,
        stream: true,
      });
      let finish = null;
      for await (const c of stream) finish ??= c.choices[0]?.finish_reason ?? null;
      assert(finish);
      assert((await podman(["healthcheck", "run", "bn-test"])).ok, "healthcheck");
      const state = JSON.parse((await podman(["inspect", "bn-test"])).stdout)[0];
      assertEquals([state.HostConfig.ReadonlyRootfs, state.Config.User], [true, "65532:65532"]);
      const stop = await podman(["stop", "-t", "40", "bn-test"]);
      assert(stop.ok, stop.stderr);
      const exited = JSON.parse((await podman(["inspect", "bn-test"])).stdout)[0];
      assertEquals(exited.State.ExitCode, 0);
      const logs = await podman(["logs", "bn-test"]);
      assert(logs.stderr.includes("SIGTERM: draining") && logs.stderr.includes("stopped"), logs.stderr);
    } finally {
      await podman(["rm", "-f", "-a"]);
      await podman(["rmi", "-f", "-a"]);
      await podman(["system", "reset", "-f"]);
    }
  },
});

globalThis.addEventListener("unload", () => {
  if (podmanProblem === null) {
    new Deno.Command(PODMAN, {
      args: [...podmanArgs, "system", "reset", "-f"],
      stdout: "null",
      stderr: "null",
    })
      .outputSync();
  }
  Deno.removeSync(work, { recursive: true });
});
