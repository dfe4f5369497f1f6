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

/**
 * One progress line of a transfer: `label [#####.....] 45% 512.0 MiB / 1.10 GiB 23.4 MiB/s ETA 0:31`
 * (size, percentage and ETA only when `total` is known, speed once it is measured).
 */
export function formatTransfer(label: string, done: number, total: number, bytesPerSecond: number): string {
  const speed = bytesPerSecond > 0 ? ` ${formatBytes(Math.round(bytesPerSecond))}/s` : "";
  if (!(total > 0)) return `${label} ${formatBytes(done)}${speed}`;
  const pct = Math.min(100, Math.floor((100 * done) / total));
  const width = 30, filled = Math.round((width * pct) / 100);
  const bar = "#".repeat(filled) + ".".repeat(width - filled);
  const eta = bytesPerSecond > 0 && done < total
    ? ` ETA ${formatDuration((total - done) / bytesPerSecond)}`
    : "";
  return `${label} [${bar}] ${String(pct).padStart(3)}% ${formatBytes(done)} / ${
    formatBytes(total)
  }${speed}${eta}`;
}

/** `0:07`, `12:34`, `1:02:03`. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const hh = Math.floor(s / 3600), mm = Math.floor((s % 3600) / 60), ss = String(s % 60).padStart(2, "0");
  return hh ? `${hh}:${String(mm).padStart(2, "0")}:${ss}` : `${mm}:${ss}`;
}

/**
 * A transfer progress callback redrawing one stderr line at most 10 times a second, or undefined when
 * stderr is not a terminal. Call the returned `end()` when done to finish the line.
 */
export function terminalTransfer(
  label: string,
): { update: (done: number, total: number, bytesPerSecond: number) => void; end: () => void } | undefined {
  if (!Deno.stderr.isTerminal()) return undefined;
  const enc = new TextEncoder();
  let last = 0, drawn = false;
  return {
    update(done, total, bytesPerSecond) {
      const now = performance.now();
      if (now - last < 100 && done < total) return;
      last = now;
      drawn = true;
      Deno.stderr.writeSync(enc.encode(`\r\x1b[K${formatTransfer(label, done, total, bytesPerSecond)}`));
    },
    end() {
      if (drawn) Deno.stderr.writeSync(enc.encode("\n"));
      drawn = false;
    },
  };
}
