/**
 * `--name value` command-line flags over defaults, for the training scripts (no std/cli: the build
 * machines reach only npm).
 *
 * @example
 * ```ts
 * import { flags } from "./flags.ts";
 * const args = flags({ out: "models/default.gguf" }); // `--out x.gguf` overrides it
 * ```
 */
export function flags(defaults: Record<string, string>): Record<string, string> {
  const out = { ...defaults };
  for (let i = 0; i < Deno.args.length; i += 2) {
    const k = Deno.args[i].replace(/^--/, "");
    if (!(k in out) || i + 1 >= Deno.args.length) {
      throw new TypeError(`Unknown or incomplete flag "${Deno.args[i]}"`);
    }
    out[k] = Deno.args[i + 1];
  }
  return out;
}
