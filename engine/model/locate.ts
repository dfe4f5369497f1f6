/**
 * `--model` to the absolute path of a file to load: nothing means the embedded default model,
 * `hf:OWNER/REPO/FILE` a file `deno task pull` put in the cache, anything else a path relative to
 * the directory the user ran the command in. Every error names the absolute path it tried and, where
 * there is one, the command that fixes it.
 *
 * @example
 * ```ts ignore
 * await locateModel("../m.gguf", { cwd: "/home/me/work", env: {} }); // "/home/me/m.gguf"
 * await locateModel("hf:microsoft/bitnet-b1.58-2B-4T-gguf/ggml-model-i2_s.gguf", { cwd, env: Deno.env.toObject() });
 * ```
 *
 * @module
 */
import { resolve } from "node:path";
import { DEFAULT_MODEL_PATH } from "./default_model.ts";
import {
  cacheDir,
  cachedPath,
  type CacheEnv,
  DEFAULT_PULL,
  formatHfRef,
  parseHfRef,
  pullCommand,
} from "./hub.ts";

/** Where and how {@linkcode locateModel} looks. */
export interface LocateOptions {
  /** The directory relative paths start from (the user's, not the task's: `INIT_CWD`). */
  readonly cwd: string;
  /** Where the pull cache is (`BN_CACHE`, `XDG_CACHE_HOME`, `HOME`). */
  readonly env: CacheEnv;
  /** How the user runs the pull: `deno task` (default) or the release's launcher. */
  readonly program?: string;
}

/** What a path is, without throwing: a file, a directory, nothing, or the error. */
async function kind(path: string): Promise<"file" | "dir" | "missing" | Error> {
  try {
    const info = await Deno.stat(path);
    return info.isFile ? "file" : info.isDirectory ? "dir" : new Error("it is not a regular file");
  } catch (e) {
    return e instanceof Deno.errors.NotFound ? "missing" : e as Error;
  }
}

/**
 * The absolute path of the model file to load. Throws a `TypeError` whose message says what was
 * looked for, where, and what to run.
 */
export async function locateModel(model: string | undefined, options: LocateOptions): Promise<string> {
  const program = options.program ?? "deno task";
  if (!model) {
    const found = await kind(DEFAULT_MODEL_PATH);
    if (found === "file") return DEFAULT_MODEL_PATH;
    throw new TypeError(
      `The embedded default model ${DEFAULT_MODEL_PATH} is missing (rebuild it with \`deno task train\`).\n` +
        `Pull the real model instead:\n  ${program} pull\n  ${serveLine(program)} --model ${
          formatHfRef(DEFAULT_PULL)
        }`,
    );
  }
  if (model.startsWith("hf:")) {
    const ref = parseHfRef(model);
    const path = cachedPath(cacheDir(options.env, options.cwd), ref);
    const found = await kind(path);
    if (found === "file") return path;
    if (found instanceof Error) {
      throw new TypeError(`Cannot load model "${path}" (${model}): ${found.message}`);
    }
    const partial = (await kind(`${path}.part`)) === "file"
      ? ` A partial download is there (${path}.part): the same command resumes it.`
      : "";
    throw new TypeError(
      `Model ${model} is not in the cache (looked for ${path}).${partial} Download it with:\n  ${
        pullCommand(ref, program)
      }`,
    );
  }
  const path = resolve(options.cwd, model);
  const found = await kind(path);
  if (found === "file") return path;
  const from = path === model ? "" : ` (--model ${model} from ${options.cwd})`;
  if (found === "dir") {
    throw new TypeError(`Cannot load model "${path}"${from}: it is a directory, not a GGUF file`);
  }
  if (found instanceof Error) throw new TypeError(`Cannot load model "${path}"${from}: ${found.message}`);
  let hint = "";
  if (/^[A-Za-z0-9][\w.-]*\/[A-Za-z0-9][\w.-]*$/.test(model)) {
    hint =
      `\nIf ${model} is a Hugging Face repository, pull a file from it and serve it by its hf: name:\n  ` +
      `${program} pull ${model} FILE.gguf\n  ${serveLine(program)} --model hf:${model}/FILE.gguf`;
  }
  throw new TypeError(`Cannot load model "${path}"${from}: no such file${hint}`);
}

/** The serve command matching `program`. */
function serveLine(program: string): string {
  return program === "deno task" ? "deno task serve" : program;
}
