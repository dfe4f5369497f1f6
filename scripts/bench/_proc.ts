/**
 * Reads a /proc file. Deno 2 grants /proc paths only with --allow-all, so this asks `cat` (the
 * bench children run with `--allow-run=cat`) when the direct read is refused.
 *
 * @module
 */

/** The text of `path` under /proc, or null when it cannot be read (not Linux, no permission). */
export function readProc(path: string): string | null {
  try {
    return Deno.readTextFileSync(path);
  } catch { /* refused without --allow-all: try cat */ }
  try {
    const out = new Deno.Command("cat", { args: [path], stdin: "null", stdout: "piped", stderr: "null" })
      .outputSync();
    return out.success ? new TextDecoder().decode(out.stdout) : null;
  } catch {
    return null;
  }
}

/** Peak resident set size (VmHWM) of this process in bytes; null when /proc cannot be read. */
export function peakRss(): number | null {
  const m = readProc(`/proc/${Deno.pid}/status`)?.match(/^VmHWM:\s+(\d+)\s+kB/m);
  return m ? Number(m[1]) * 1024 : null;
}
