/**
 * `deno task pull [REPO] [FILE]`: download a model file from the Hugging Face Hub into the cache
 * that `--model hf:OWNER/REPO/FILE` reads (by default Microsoft's BitNet b1.58 2B4T GGUF). The only
 * command of this project that writes files or reaches the network; see engine/model/download.ts.
 *
 * ```sh
 * deno task pull                                          # microsoft/bitnet-b1.58-2B-4T-gguf ggml-model-i2_s.gguf
 * deno task pull OWNER/REPO FILE.gguf --revision v1.0
 * HF_TOKEN=hf_... deno task pull hf:OWNER/PRIVATE-REPO/FILE.gguf
 * ```
 *
 * Environment: `HF_ENDPOINT` (default https://huggingface.co), `HF_TOKEN`, `BN_CACHE` (else
 * `$XDG_CACHE_HOME/bitnet-server`, else `~/.cache/bitnet-server`). Prints the file's path on stdout.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { pull, PullError } from "../engine/model/download.ts";
import {
  cacheDir,
  DEFAULT_ENDPOINT,
  DEFAULT_PULL,
  formatHfRef,
  type HfRef,
  hfRef,
  parseHfRef,
} from "../engine/model/hub.ts";
import { formatBytes } from "../engine/model/memory_plan.ts";
import { formatDuration, terminalTransfer } from "../engine/model/progress_bar.ts";

/** The variables the pull reads; the pull task allows exactly these. */
export const PULL_ENV = [
  "HF_ENDPOINT",
  "HF_TOKEN",
  "BN_CACHE",
  "BN_PROG",
  "XDG_CACHE_HOME",
  "HOME",
  "INIT_CWD",
];

/** The help text; `program` is `deno task` or the release's launcher. */
export function pullUsage(program = "deno task"): string {
  return `Usage: ${program} pull [REPO] [FILE] [--revision REV]
       ${program} pull hf:OWNER/REPO[@REV]/FILE

Downloads FILE of the Hugging Face model repository REPO (default: ${DEFAULT_PULL.owner}/${DEFAULT_PULL.repo}
${DEFAULT_PULL.file}, BitNet b1.58 2B4T, 1.2 GB) into the cache, resuming an interrupted download and
checking its SHA-256, and prints the --model value that serves it.

Environment:
  HF_ENDPOINT     the Hub or a mirror (default ${DEFAULT_ENDPOINT})
  HF_TOKEN        access token for private or gated repositories (sent to the Hub only, not to its CDN)
  BN_CACHE        cache directory (default $XDG_CACHE_HOME/bitnet-server, else ~/.cache/bitnet-server)
`;
}

/** Command line -> the file to pull; throws a `TypeError` on bad arguments. */
export function parsePullArgs(args: string[]): { ref: HfRef; help: boolean } {
  const { values, positionals } = parseArgs({
    args,
    options: { revision: { type: "string" }, help: { type: "boolean", short: "h" } },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length > 2) {
    throw new TypeError(`Expected at most REPO and FILE, got ${positionals.join(" ")}`);
  }
  const [repo, file] = positionals;
  if (repo?.startsWith("hf:")) {
    if (file) throw new TypeError(`${repo} names the file already; drop "${file}"`);
    const ref = parseHfRef(repo);
    return { ref: values.revision ? { ...ref, revision: values.revision } : ref, help: !!values.help };
  }
  const [owner, name, ...rest] = (repo ?? `${DEFAULT_PULL.owner}/${DEFAULT_PULL.repo}`).split("/");
  if (!name || rest.length) throw new TypeError(`"${repo}" is not a repository: expected OWNER/REPO`);
  const theFile = file ?? (repo ? undefined : DEFAULT_PULL.file);
  if (!theFile) throw new TypeError(`Name the file to pull from ${repo}: pull ${repo} FILE`);
  return { ref: hfRef(owner, name, theFile, values.revision ?? "main"), help: !!values.help };
}

/** Runs the pull; resolves with the exit code (0 done, 1 failed, 2 bad arguments). */
export async function main(
  args: string[],
  env: Readonly<Record<string, string | undefined>>,
): Promise<number> {
  const program = env.BN_PROG || "deno task";
  const serve = env.BN_PROG || "deno task serve";
  let ref: HfRef, cache: string;
  try {
    const parsed = parsePullArgs(args);
    if (parsed.help) {
      console.log(pullUsage(program));
      return 0;
    }
    ref = parsed.ref;
    cache = cacheDir(env, env.INIT_CWD || Deno.cwd());
  } catch (e) {
    console.error(`error: ${(e as Error).message}\nRun with --help for the usage.`);
    return 2;
  }
  const endpoint = env.HF_ENDPOINT || DEFAULT_ENDPOINT;
  console.error(
    `pulling ${ref.owner}/${ref.repo} ${ref.file} (${ref.revision}) from ${endpoint} into ${cache}`,
  );
  const bar = terminalTransfer(ref.file);
  const t0 = performance.now();
  try {
    const r = await pull({
      ref,
      cache,
      endpoint,
      token: env.HF_TOKEN || undefined,
      onProgress: bar && ((p) => bar.update(p.done, p.total, p.bytesPerSecond)),
      log: (line) => {
        bar?.end();
        console.error(line);
      },
    });
    bar?.end();
    const s = (performance.now() - t0) / 1000;
    const check = r.verified
      ? "SHA-256 verified"
      : r.downloaded
      ? "size checked (the Hub gives no SHA-256 for this file)"
      : "not checked (offline)";
    console.error(
      r.downloaded === 0
        ? `already in the cache, ${formatBytes(r.size)}, ${check}: ${r.sha256}`
        : `done: ${formatBytes(r.downloaded)} in ${formatDuration(s)} (${
          formatBytes(Math.round(r.downloaded / s))
        }/s)` +
          `${r.resumedFrom ? `, resumed at ${formatBytes(r.resumedFrom)}` : ""}, ${check}: ${r.sha256}`,
    );
    console.error(`serve it with:\n  ${serve} --model ${formatHfRef(ref)}`);
    console.log(r.path);
    return 0;
  } catch (e) {
    bar?.end();
    console.error(`error: ${(e as Error).message}`);
    if (!(e instanceof PullError)) console.error((e as Error).stack);
    return 1;
  }
}

if (import.meta.main) {
  const env = Object.fromEntries(PULL_ENV.map((name) => [name, Deno.env.get(name)]));
  Deno.exit(await main(Deno.args, env));
}
