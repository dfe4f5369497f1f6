/**
 * The server installs and loads only what it imports. deno.json's `imports` hold the server's npm
 * packages (pinned), `scopes` the test and deploy packages of the directories that use them, and
 * there are two lockfiles: `serve.lock` (the serve task's: the server's packages only) and
 * `deno.lock` (everything, for tests and scripts). `"lock": false` keeps `deno task` and ad-hoc
 * commands from writing either; Deno installs every package of the lockfile it runs with, so the
 * serve task's lockfile must hold nothing else.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";

const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname);
const config = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`));
const serveLock = JSON.parse(Deno.readTextFileSync(`${ROOT}serve.lock`));

/** "name@1.2.3_peer@4" -> "name". */
const pkgName = (key: string) => key.slice(0, key.indexOf("@", 1));
const devPackages = Object.values(config.scopes as Record<string, Record<string, string>>)
  .flatMap((m) => Object.keys(m));

/** Package names in a DENO_DIR's npm cache (`@scope/name` for scoped ones). */
function cachedPackages(denoDir: string): string[] {
  const base = `${denoDir}/npm/registry.npmjs.org`;
  const names: string[] = [];
  for (const e of Deno.readDirSync(base)) {
    if (!e.isDirectory) continue;
    if (e.name.startsWith("@")) {
      for (const s of Deno.readDirSync(`${base}/${e.name}`)) {
        if (s.isDirectory) names.push(`${e.name}/${s.name}`);
      }
    } else names.push(e.name);
  }
  return names.sort();
}

function duBytes(dir: string): number {
  let total = 0;
  for (const e of Deno.readDirSync(dir)) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory) total += duBytes(p);
    else if (e.isFile) total += Deno.statSync(p).size;
  }
  return total;
}

Deno.test("deno.json: the server's packages are pinned imports, test and deploy packages are scoped", () => {
  for (const [name, spec] of Object.entries(config.imports as Record<string, string>)) {
    assert(/^npm:(@[^/]+\/)?[^@/]+@\d+\.\d+\.\d+$/.test(spec), `${name}: pin an exact version, got ${spec}`);
  }
  assertEquals(config.lock, false);
  for (
    const dev of ["openai", "@kubernetes/client-node", "kubernetes-models", "js-yaml", "llama3-tokenizer-js"]
  ) {
    assert(!(dev in config.imports), `${dev} is a test or deploy package: put it under "scopes"`);
    assert(devPackages.includes(dev), dev);
  }
  const task: string = config.tasks.serve;
  assert(task.startsWith("deno run --lock=serve.lock "), task);
});

Deno.test("serve.lock holds exactly the packages main.ts and the kernel worker import", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", "main.ts"],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert(out.success, new TextDecoder().decode(out.stderr));
  const info = JSON.parse(new TextDecoder().decode(out.stdout));
  const imported = new Set<string>();
  for (const m of info.modules as { specifier: string }[]) {
    const pkg = m.specifier.match(/^npm:\/?((?:@[^/]+\/)?[^@/]+)@/);
    if (pkg) imported.add(pkg[1]);
  }
  const locked = Object.keys(serveLock.npm).map(pkgName).sort();
  const topLevel = Object.keys(serveLock.specifiers).map((s) => pkgName(s.slice(4))).sort();
  assertEquals(topLevel, [...imported].sort(), "serve.lock is stale: run `deno task lock`");
  assertEquals(topLevel, Object.keys(config.imports).sort());
  for (const dev of devPackages) assert(!locked.includes(dev), `${dev} in serve.lock`);
  // --frozen: fails if resolving the server's graph would change serve.lock.
  const frozen = await new Deno.Command(Deno.execPath(), {
    args: ["cache", "--lock=serve.lock", "--frozen", "main.ts", "wasm/worker.ts"],
    cwd: ROOT,
    stdout: "null",
    stderr: "piped",
  }).output();
  assert(
    frozen.success,
    `serve.lock is stale (run deno task lock): ${new TextDecoder().decode(frozen.stderr)}`,
  );
});

Deno.test("a fresh DENO_DIR running `deno task serve --help` fetches only the server's packages", async () => {
  const denoDir = Deno.makeTempDirSync({ prefix: "bn-deps-test-" });
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["task", "serve", "--help"],
      cwd: ROOT,
      env: { DENO_DIR: denoDir, NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert(out.success, stderr);
    assert(new TextDecoder().decode(out.stdout).includes("--model"), "the help text");
    const fetched = cachedPackages(denoDir);
    const locked = [...new Set(Object.keys(serveLock.npm).map(pkgName))].sort();
    assertEquals(fetched, locked);
    for (const dev of devPackages) assert(!fetched.includes(dev), dev);
    const mib = duBytes(`${denoDir}/npm`) / 2 ** 20;
    console.log(
      `deno task serve --help, fresh DENO_DIR: ${fetched.length} packages (${fetched.join(", ")}), ${
        mib.toFixed(1)
      } MiB`,
    );
  } finally {
    Deno.removeSync(denoDir, { recursive: true });
  }
});
