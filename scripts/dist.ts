/**
 * `deno task dist`: a self-contained release directory and tarball that starts on a machine with no
 * Deno and no network. It holds the deno runtime binary (npm's plain `@deno/linux-x64-glibc` build
 * of Deno {@linkcode DENO_VERSION}, the one running this script unless `--deno` names another; any
 * other version is refused), the server's module graph, the
 * committed `.wasm` builds, the chat playground's files (`playground/`), the embedded default model,
 * a `DENO_DIR` with the npm packages the server imports (started `--cached-only --frozen`), the
 * operator files of `deploy/`, and a POSIX launcher `bin/bitnet-server` that runs the server with the
 * permissions of `deno task serve`, and `bin/bitnet-server pull` (the model download, scripts/pull.ts)
 * with those of `deno task pull`.
 *
 * ```sh
 * deno task dist                        # dist/bitnet-server-0.1.0-linux-x64{/,.tar.gz} (deno.json's version)
 * deno task dist --out /tmp/rel --no-model --version 1.0.0
 * tar -xzf dist/bitnet-server-0.1.0-linux-x64.tar.gz -C /opt
 * /opt/bitnet-server-0.1.0-linux-x64/bin/bitnet-server --model /srv/models/model.gguf --host 0.0.0.0
 * ```
 *
 * Options: `--out DIR` (default `dist/`), `--deno FILE` (default: this runtime), `--model FILE`
 * (default `models/default.gguf`; missing: a warning, and the release needs `--model`), `--no-model`,
 * `--version V` (default: deno.json's `version`; the commit goes in the release's `VERSION` file), `--no-tar`.
 *
 * Why not `deno compile`: it downloads its `denort` runtime at compile time, which offline build
 * machines cannot; on a host with internet access it works too, but this release is what CI tests.
 *
 * @module
 */
import { parseArgs } from "node:util";

const ROOT = new URL("../", import.meta.url);
const rootPath = (rel: string) => decodeURIComponent(new URL(rel, ROOT).pathname);

/** Where a built release is. */
export interface DistResult {
  /** The release directory (`<out>/<name>`). */
  readonly dir: string;
  /** The gzipped tarball (`<out>/<name>.tar.gz`), or null with `tar: false`. */
  readonly tarball: string | null;
  /** `bitnet-server-<version>-linux-<arch>`: the directory name and the tarball's top folder. */
  readonly name: string;
  /** Whether the default model went in. */
  readonly model: boolean;
}

/** Options of {@linkcode buildDist}. */
export interface DistOptions {
  readonly out?: string;
  readonly deno?: string;
  /** Model file to embed as `models/default.gguf`; null: none. */
  readonly model?: string | null;
  readonly version?: string;
  readonly tar?: boolean;
  readonly log?: (line: string) => void;
}

/**
 * The flags `deno task serve` passes to `deno run` before `main.ts`, read from deno.json so the
 * release can never drift from it; without the task's `--lock=serve.lock` (a path relative to the
 * repository: the release brings its own lockfile, see {@linkcode releaseFlags}).
 *
 * @example
 * ```ts ignore
 * serveFlags(); // ["--unstable-no-legacy-abort", "--no-prompt", ..., "--allow-read", "--allow-env=BN_*", ...]
 * ```
 */
export function serveFlags(denoJson = rootPath("deno.json")): string[] {
  return taskFlags("serve", "main.ts", denoJson);
}

/** The flags of `deno task pull` (scripts/pull.ts), for `bitnet-server pull`. */
export function pullFlags(denoJson = rootPath("deno.json")): string[] {
  return taskFlags("pull", "scripts/pull.ts", denoJson);
}

function taskFlags(name: string, entry: string, denoJson: string): string[] {
  const task = JSON.parse(Deno.readTextFileSync(denoJson)).tasks?.[name];
  const words = typeof task === "string" ? task.trim().split(/\s+/) : [];
  if (words[0] !== "deno" || words[1] !== "run" || words.at(-1) !== entry) {
    throw new SyntaxError(`deno.json's "${name}" task should be "deno run <flags> ${entry}", got ${task}`);
  }
  return words.slice(2, -1).filter((w) => !/^--lock(=|$)/.test(w));
}

/** `bitnet-server-<version>-<os>-<arch>`: the release directory's and the tarball's name. */
export function releaseName(
  version: string,
  os: string = Deno.build.os,
  arch: string = Deno.build.arch,
): string {
  const short = arch === "x86_64" ? "x64" : arch === "aarch64" ? "arm64" : arch;
  return `bitnet-server-${version}-${os}-${short}`;
}

/** deno.json's `version`: the default release version (the README's commands use it). */
export function defaultVersion(denoJson = rootPath("deno.json")): string {
  const v = JSON.parse(Deno.readTextFileSync(denoJson)).version;
  if (typeof v !== "string" || !v) throw new SyntaxError(`deno.json has no "version"`);
  return v;
}

/** Flags the launcher adds in front of the serve flags: no network, no lockfile drift. */
export function releaseFlags(root: string): string[] {
  return ["--cached-only", "--frozen", `--config=${root}/app/deno.json`];
}

/** The registry whose layout the release's cache has (deno keys its npm cache by registry host). */
const NPM_REGISTRY = "https://registry.npmjs.org/";

const quote = (s: string) => /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", `'"'"'`)}'`;

/**
 * The Deno version a release carries (npm `deno@2.9.6`, `@deno/linux-x64-glibc@2.9.6`): the one the
 * kernels' 256-bit fusing is verified with (tests/kernels/revec_test.ts). Also pinned in .ci/run and
 * the README; upgrading is a deliberate change of all three.
 */
export const DENO_VERSION = "2.9.6";

/** The V8 flag that turns on V8's revectorizer (256-bit fused kernels). */
export const REVEC_V8_FLAG = "--experimental-wasm-revectorize";

/**
 * `flag` (a `--v8-flags=a,b` flag) without V8's revectorizer, or null when that leaves no V8 flag.
 *
 * @example
 * ```ts
 * import { withoutRevec } from "./dist.ts";
 * withoutRevec("--v8-flags=--no-liftoff,--experimental-wasm-revectorize"); // "--v8-flags=--no-liftoff"
 * ```
 */
export function withoutRevec(flag: string): string | null {
  const rest = flag.slice("--v8-flags=".length).split(",").filter((f) => f && f !== REVEC_V8_FLAG);
  return rest.length ? `--v8-flags=${rest.join(",")}` : null;
}

/**
 * The text of `bin/bitnet-server`: POSIX sh, paths relative to itself, "$@" passed through. `pull`
 * as the first argument runs the model download with `pullFlags` instead of the server. With
 * `--revec off` (or `BN_REVEC=0`; flags win over the variable, as in main.ts) the server starts
 * without V8's revectorizer flag as well: V8 flags are fixed at process start, and the server
 * itself then runs the 128-bit kernels.
 */
export function launcherScript(
  flags: readonly string[],
  version: string,
  pull: readonly string[] = [],
): string {
  const v8 = flags.find((f) => f.startsWith("--v8-flags="));
  const v8Off = v8 ? withoutRevec(v8) : null;
  // (a V8 flag list holding nothing but the revectorizer keeps it: main.ts still runs the 128-bit kernels)
  const switchable = v8 !== undefined && v8Off !== null && v8Off !== v8;
  const release = releaseFlags("$root").map((f) => f.replace("$root", '"$root"'));
  const args = [...release, ...flags.map((f) => switchable && f === v8 ? '"$v8"' : quote(f))];
  const pullArgs = [...release, ...pull.map(quote)];
  const revecSwitch = switchable
    ? `# --revec off / BN_REVEC=0: no revectorizer flag for V8 either (the values main.ts takes)
v8=${quote(v8)}
revec() {
  case $1 in
    0 | off | OFF | Off | false | FALSE | False | no | NO | No) v8=${quote(v8Off)} ;;
    1 | on | ON | On | true | TRUE | True | yes | YES | Yes) v8=${quote(v8)} ;;
  esac
}
revec "\${BN_REVEC:-}"
prev=
for a in "$@"; do
  case $prev in --revec) revec "$a" ;; esac
  case $a in --revec=*) revec "\${a#--revec=}" ;; esac
  prev=$a
done
`
    : "";
  return `#!/bin/sh
# bitnet-server ${version}: starts the ternary edge server from this release directory.
#   bin/bitnet-server [--model FILE] [--host ADDR] [--port N] ...   (--help lists every flag)
#   bin/bitnet-server pull [REPO] [FILE]     download a model from the Hugging Face Hub (--help)
# Flags and BN_* environment variables pass through. The server's permissions are those of
# \`deno task serve\`: read files, listen (the network permission is dropped once it listens), read
# its environment variables; no writing, no subprocesses, no FFI. \`pull\` has those of \`deno task pull\`.
# The runtime and its npm packages come from this directory: it needs no Deno and no network.
set -eu
self=$0
for rl in readlink /usr/bin/readlink /bin/readlink; do
  if link=$("$rl" -f -- "$0" 2>/dev/null); then self=$link && break; fi
done
case $self in */*) bindir=\${self%/*} ;; *) bindir=. ;; esac
root=$(CDPATH='' cd -- "$bindir/.." && pwd -P)
DENO_DIR=$root/cache
DENO_NO_UPDATE_CHECK=1
DENO_NO_PROMPT=1
NPM_CONFIG_REGISTRY=${NPM_REGISTRY}
export DENO_DIR DENO_NO_UPDATE_CHECK DENO_NO_PROMPT NPM_CONFIG_REGISTRY
# Help and messages name this launcher; relative paths start here (INIT_CWD is for deno tasks).
BN_PROG=$0
export BN_PROG
unset INIT_CWD
if [ "\${1-}" = pull ]; then
  shift
  exec "$root/bin/deno" run ${pullArgs.join(" ")} "$root/app/scripts/pull.ts" "$@"
fi
${revecSwitch}exec "$root/bin/deno" run ${args.join(" ")} "$root/app/main.ts" "$@"
`;
}

async function run(cmd: string, args: string[], opts: Deno.CommandOptions = {}): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdin: "null", stdout: "piped", stderr: "piped", ...opts })
    .output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    const err = new TextDecoder().decode(out.stderr).trim().split("\n").slice(-15).join("\n");
    throw new Error(`${cmd} ${args.join(" ")} failed (exit ${out.code}):\n${err}`);
  }
  return text;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

async function copyTree(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const e of Deno.readDir(from)) {
    if (e.isDirectory) await copyTree(`${from}/${e.name}`, `${to}/${e.name}`);
    else if (e.isFile) await Deno.copyFile(`${from}/${e.name}`, `${to}/${e.name}`);
  }
}

interface Graph {
  /** Repo-relative paths of the local modules. */
  readonly files: string[];
  /** npm packages imported, "name@version". */
  readonly npm: string[];
}

/** The local modules and npm packages that `main.ts`, the kernel worker and the pull load. */
async function moduleGraph(deno: string): Promise<Graph> {
  const files = new Set<string>(), npm = new Set<string>();
  const rootUrl = ROOT.href;
  for (const entry of ["main.ts", "wasm/worker.ts", "scripts/pull.ts"]) {
    const info = JSON.parse(await run(deno, ["info", "--json", entry], { cwd: rootPath(".") }));
    for (const m of info.modules as { specifier: string }[]) {
      if (m.specifier.startsWith(rootUrl)) files.add(decodeURIComponent(m.specifier.slice(rootUrl.length)));
      const pkg = m.specifier.match(/^npm:\/?((?:@[^/]+\/)?[^@/]+@[^/]+)/);
      if (pkg) npm.add(pkg[1]);
    }
  }
  return { files: [...files].sort(), npm: [...npm].sort() };
}

/**
 * Seeds `cacheDir` with the npm packages from this machine's DENO_DIR (so a cached build machine
 * needs no network), then lets deno cache the graph into it, writing the release's lockfile.
 */
async function cacheNpm(deno: string, app: string, cacheDir: string, npm: string[]): Promise<void> {
  const info = JSON.parse(await run(deno, ["info", "--json"]));
  const from = `${info.denoDir}/npm/registry.npmjs.org`, to = `${cacheDir}/npm/registry.npmjs.org`;
  for (const spec of npm) {
    const at = spec.lastIndexOf("@");
    const [name, version] = [spec.slice(0, at), spec.slice(at + 1).split("_")[0]];
    if (!await exists(`${from}/${name}/${version}`)) continue;
    await copyTree(`${from}/${name}/${version}`, `${to}/${name}/${version}`);
    if (await exists(`${from}/${name}/registry.json`)) {
      await Deno.copyFile(`${from}/${name}/registry.json`, `${to}/${name}/registry.json`);
    }
  }
  const env = { DENO_DIR: cacheDir, DENO_NO_UPDATE_CHECK: "1", NPM_CONFIG_REGISTRY: NPM_REGISTRY };
  await run(deno, ["cache", `--config=${app}/deno.json`, `${app}/main.ts`, `${app}/wasm/worker.ts`], { env });
  // Keep only the packages: the analysis caches and emitted code name this build's paths.
  for await (const e of Deno.readDir(cacheDir)) {
    if (e.name !== "npm") await Deno.remove(`${cacheDir}/${e.name}`, { recursive: true });
  }
}

function gitCommit(): Promise<string> {
  return run("git", ["describe", "--always", "--dirty", "--tags"], { cwd: rootPath(".") })
    .then((s) => s.trim() || "unknown", () => "unknown");
}

/**
 * Builds the release directory and (unless `tar: false`) its tarball.
 *
 * @example
 * ```ts ignore
 * const { dir, tarball } = await buildDist({ out: "/tmp/rel", model: null });
 * // dir/bin/bitnet-server --model /path/model.gguf
 * ```
 */
export async function buildDist(options: DistOptions = {}): Promise<DistResult> {
  const log = options.log ?? ((line: string) => console.error(line));
  const deno = options.deno ?? Deno.execPath();
  const denoVersion = (await run(deno, ["--version"])).split("\n")[0];
  if (!denoVersion.startsWith(`deno ${DENO_VERSION} `)) {
    throw new Error(
      `The release carries Deno ${DENO_VERSION} (npm @deno/linux-x64-glibc@${DENO_VERSION}), the version its kernels ` +
        `are verified with; ${deno} is "${denoVersion}". Pass --deno with that build, or change DENO_VERSION deliberately.`,
    );
  }
  const version = options.version ?? defaultVersion();
  const name = releaseName(version);
  const out = options.out ?? rootPath("dist");
  const dir = `${out}/${name}`;
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  await Deno.mkdir(`${dir}/bin`, { recursive: true });

  const graph = await moduleGraph(deno);
  const app = `${dir}/app`;
  for (const f of graph.files) {
    await Deno.mkdir(`${app}/${f.slice(0, f.lastIndexOf("/") + 1)}`, { recursive: true });
    await Deno.copyFile(rootPath(f), `${app}/${f}`);
  }
  for await (const e of Deno.readDir(rootPath("wasm"))) {
    if (e.isFile && e.name.endsWith(".wasm")) {
      await Deno.copyFile(rootPath(`wasm/${e.name}`), `${app}/wasm/${e.name}`);
    }
  }
  // The playground is read at start, not imported: routes/playground.ts finds it beside routes/.
  await copyTree(rootPath("playground"), `${app}/playground`);
  const repoConfig = JSON.parse(await Deno.readTextFile(rootPath("deno.json")));
  const imports: Record<string, string> = {};
  for (const spec of graph.npm) {
    const pkg = spec.slice(0, spec.lastIndexOf("@"));
    const key = Object.keys(repoConfig.imports ?? {}).find((k) => k === pkg);
    if (!key) throw new Error(`The server imports npm package ${pkg}, which deno.json's imports lack`);
    imports[key] = `npm:${spec.split("_")[0]}`;
  }
  await Deno.writeTextFile(`${app}/deno.json`, JSON.stringify({ imports }, null, 2) + "\n");
  await Deno.writeTextFile(`${app}/.npmrc`, `registry=${NPM_REGISTRY}\n`);

  await Deno.mkdir(`${app}/models`, { recursive: true });
  const model = options.model === undefined ? rootPath("models/default.gguf") : options.model;
  let hasModel = false;
  if (model && await exists(model)) {
    await Deno.copyFile(model, `${app}/models/default.gguf`);
    hasModel = true;
  } else if (model) {
    log(`warning: no default model at ${model}: the release will need --model PATH`);
  }
  for (const doc of ["models/README.md", "README.md"]) {
    if (await exists(rootPath(doc))) await Deno.copyFile(rootPath(doc), `${app}/${doc}`);
  }
  await copyTree(rootPath("deploy"), `${dir}/deploy`);

  await Deno.copyFile(deno, `${dir}/bin/deno`);
  await Deno.chmod(`${dir}/bin/deno`, 0o755);
  log(`runtime: ${deno} (${denoVersion})`);
  await cacheNpm(deno, app, `${dir}/cache`, graph.npm);

  await Deno.writeTextFile(`${dir}/bin/bitnet-server`, launcherScript(serveFlags(), version, pullFlags()));
  await Deno.chmod(`${dir}/bin/bitnet-server`, 0o755);
  await Deno.writeTextFile(
    `${dir}/VERSION`,
    `${name}\ncommit: ${await gitCommit()}\n${denoVersion}\nnpm: ${graph.npm.join(" ")}\ndefault model: ${
      hasModel ? "yes" : "no"
    }\n`,
  );
  // The read-only service never writes its cache; make every file readable by any user.
  await run("chmod", ["-R", "a+rX,go-w", dir]);

  let tarball: string | null = null;
  if (options.tar !== false) {
    tarball = `${out}/${name}.tar.gz`;
    await run("tar", [
      "--sort=name",
      "--owner=0",
      "--group=0",
      "--numeric-owner",
      "--mtime=@0",
      "-czf",
      tarball,
      "-C",
      out,
      name,
    ]);
    log(`tarball: ${tarball} (${((await Deno.stat(tarball)).size / 2 ** 20).toFixed(1)} MiB)`);
  }
  log(
    `release: ${dir} (${graph.files.length} modules, npm ${graph.npm.join(", ")}, model ${
      hasModel ? "yes" : "no"
    })`,
  );
  return { dir, tarball, name, model: hasModel };
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      out: { type: "string" },
      deno: { type: "string" },
      model: { type: "string" },
      "no-model": { type: "boolean" },
      version: { type: "string" },
      "no-tar": { type: "boolean" },
      help: { type: "boolean" },
    },
  });
  if (values.help) {
    console.log(
      "Usage: deno task dist [--out DIR] [--deno FILE] [--model FILE | --no-model] [--version V] [--no-tar]",
    );
    Deno.exit(0);
  }
  await buildDist({
    out: values.out,
    deno: values.deno,
    model: values["no-model"] ? null : values.model,
    version: values.version,
    tar: !values["no-tar"],
  });
}
