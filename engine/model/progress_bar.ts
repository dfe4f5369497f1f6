/**
 * A one-line progress bar on stderr while a model loads, only when stderr is a terminal.
 *
 * @example
 * ```ts ignore
 * await Engine.load(path, { onProgress: terminalProgress("loading model") });
 * ```
 *
 * @module
 */
import { formatBytes } from "./memory_plan.ts";

/** A progress callback drawing `label [#####.....] 45% 512 MiB / 1.1 GiB`, or undefined off a terminal. */
export function terminalProgress(label: string): ((done: number, total: number) => void) | undefined {
  if (!Deno.stderr.isTerminal()) return undefined;
  const enc = new TextEncoder();
  let last = -1;
  return (done, total) => {
    const pct = total > 0 ? Math.floor((100 * done) / total) : 100;
    if (pct === last) return;
    last = pct;
    const width = 30, filled = Math.round((width * pct) / 100);
    const bar = "#".repeat(filled) + ".".repeat(width - filled);
    const line = `\r${label} [${bar}] ${String(pct).padStart(3)}% ${formatBytes(done)} / ${
      formatBytes(total)
    }`;
    Deno.stderr.writeSync(enc.encode(done >= total ? `${line}\n` : line));
  };
}
