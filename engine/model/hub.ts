/**
 * Names of Hugging Face Hub files and where `deno task pull` keeps them: the `hf:OWNER/REPO/FILE`
 * references the server's `--model` takes, the Hub's download URL, and the cache directory
 * (`BN_CACHE`, else `$XDG_CACHE_HOME/bitnet-server`, else `~/.cache/bitnet-server`). No network and
 * no writes here: the server imports this module to find a pulled file, the pull to place one.
 *
 * @example
 * ```ts
 * import { cachedPath, parseHfRef } from "./hub.ts";
 * const ref = parseHfRef("hf:microsoft/bitnet-b1.58-2B-4T-gguf/ggml-model-i2_s.gguf");
 * cachedPath("/home/me/.cache/bitnet-server", ref);
 * // "/home/me/.cache/bitnet-server/hf/microsoft/bitnet-b1.58-2B-4T-gguf/main/ggml-model-i2_s.gguf"
 * ```
 *
 * @module
 */
import { isAbsolute, resolve } from "node:path";

/** A file in a Hub model repository at a revision (branch, tag or commit). */
export interface HfRef {
  readonly owner: string;
  readonly repo: string;
  /** Path inside the repository, `/`-separated. */
  readonly file: string;
  readonly revision: string;
}

/** The 2B4T file `deno task pull` fetches when given no arguments. */
export const DEFAULT_PULL: HfRef = Object.freeze({
  owner: "microsoft",
  repo: "bitnet-b1.58-2B-4T-gguf",
  file: "ggml-model-i2_s.gguf",
  revision: "main",
});

/** The public Hub, unless `HF_ENDPOINT` names a mirror. */
export const DEFAULT_ENDPOINT = "https://huggingface.co";

const NAME = /^[A-Za-z0-9][\w.-]*$/;

/**
 * Checks a reference's parts; throws a `TypeError` naming the bad part. File paths may not climb out
 * of the repository (`..`), nor revisions out of their cache folder.
 */
export function hfRef(owner: string, repo: string, file: string, revision = "main"): HfRef {
  const where = `"${owner}/${repo}"`;
  if (!NAME.test(owner) || !NAME.test(repo) || owner.includes("..") || repo.includes("..")) {
    throw new TypeError(`${where} is not a Hugging Face repository name (OWNER/REPO)`);
  }
  const parts = file.split("/");
  if (!file || parts.some((p) => p === "" || p === "." || p === ".." || p.includes("\\"))) {
    throw new TypeError(`"${file}" is not a file path inside ${where}`);
  }
  if (!revision || revision.split("/").some((p) => p === "" || p === "." || p === "..")) {
    throw new TypeError(`"${revision}" is not a revision of ${where}`);
  }
  return Object.freeze({ owner, repo, file, revision });
}

/**
 * Parses `hf:OWNER/REPO/FILE` or `hf:OWNER/REPO@REVISION/FILE` (FILE may hold `/`); the revision
 * defaults to `main`. Throws a `TypeError` that shows the expected form.
 */
export function parseHfRef(text: string): HfRef {
  const m = /^hf:(?:\/\/)?([^/@]+)\/([^/@]+)(?:@([^/]+))?\/(.+)$/.exec(text);
  if (!m) {
    throw new TypeError(
      `"${text}" is not a Hub reference: expected hf:OWNER/REPO/FILE or hf:OWNER/REPO@REVISION/FILE`,
    );
  }
  return hfRef(m[1], m[2], m[4], m[3] ?? "main");
}

/** The reference as `--model` takes it (`@REVISION` only when it is not `main`). */
export function formatHfRef(ref: HfRef): string {
  const rev = ref.revision === "main" ? "" : `@${ref.revision}`;
  return `hf:${ref.owner}/${ref.repo}${rev}/${ref.file}`;
}

/** `{endpoint}/{owner}/{repo}/resolve/{revision}/{file}`, quoted as the Hub's own client quotes it. */
export function hubFileUrl(ref: HfRef, endpoint = DEFAULT_ENDPOINT): string {
  const file = ref.file.split("/").map(encodeURIComponent).join("/");
  return `${endpoint.replace(/\/+$/, "")}/${ref.owner}/${ref.repo}/resolve/${
    encodeURIComponent(ref.revision)
  }/${file}`;
}

/** The environment variables the cache location depends on. */
export interface CacheEnv {
  readonly BN_CACHE?: string;
  readonly XDG_CACHE_HOME?: string;
  readonly HOME?: string;
}

/**
 * The cache directory, absolute: `BN_CACHE` (relative to `cwd` when relative), else
 * `$XDG_CACHE_HOME/bitnet-server` (when absolute, as the XDG spec requires), else
 * `$HOME/.cache/bitnet-server`. Throws a `TypeError` when none is set.
 */
export function cacheDir(env: CacheEnv, cwd: string): string {
  if (env.BN_CACHE) return resolve(cwd, env.BN_CACHE);
  if (env.XDG_CACHE_HOME && isAbsolute(env.XDG_CACHE_HOME)) {
    return resolve(env.XDG_CACHE_HOME, "bitnet-server");
  }
  if (env.HOME) return resolve(env.HOME, ".cache", "bitnet-server");
  throw new TypeError("No cache directory: set BN_CACHE (or HOME or XDG_CACHE_HOME)");
}

/** Where a pulled file lives: `{cache}/hf/{owner}/{repo}/{revision}/{file}` (revision URI-encoded). */
export function cachedPath(cache: string, ref: HfRef): string {
  return resolve(cache, "hf", ref.owner, ref.repo, encodeURIComponent(ref.revision), ...ref.file.split("/"));
}

/**
 * The command that pulls `ref`: `deno task pull` or, from a release, `bitnet-server pull` (`program`).
 * The file is named even when it is the default, so the line can be copied as it is.
 */
export function pullCommand(ref: HfRef, program = "deno task"): string {
  const rev = ref.revision === "main" ? "" : ` --revision ${ref.revision}`;
  return `${program} pull ${ref.owner}/${ref.repo} ${ref.file}${rev}`;
}
