/**
 * Test helpers for V8's revectorizer (reference/wasm-256bit.md): run a Deno script in a child process
 * with the flag on or off (the flag is process-wide), optionally with V8's trace, and read which
 * functions V8 decided to fuse into 256-bit code.
 */
import { readProc } from "../scripts/bench/_proc.ts";

/** The V8 flag that turns the revectorizer on. */
export const REVEC_FLAG = "--experimental-wasm-revectorize";

/** Whether this host can fuse at all: x86-64 with AVX2 (what V8's revectorizer needs). */
export function canRevectorize(): boolean {
  if (Deno.build.arch !== "x86_64") return false;
  return /^flags\s*:.*\bavx2\b/m.test(readProc("/proc/cpuinfo") ?? "");
}

/** Runs `deno run -A` on `script` with `args`, wasm compiled by TurboFan, the fuser on or off; its stdout. */
export async function runDeno(
  script: string | URL,
  args: readonly string[],
  opts: { readonly revec: boolean; readonly trace?: boolean },
): Promise<string> {
  const v8 = [
    "--no-liftoff",
    ...(opts.revec ? [REVEC_FLAG] : []),
    ...(opts.trace ? ["--trace-wasm-revectorize"] : []),
  ];
  const path = script instanceof URL ? script.pathname : script;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `--v8-flags=${v8.join(",")}`, path, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(
      `${path} failed (code ${out.code}): ${new TextDecoder().decode(out.stderr).slice(-2000)}`,
    );
  }
  return stdout;
}

/** From `--trace-wasm-revectorize` output: every function V8's revectorizer looked at, fused or not. */
export function revecFunctions(trace: string): Set<string> {
  const seen = new Set<string>();
  for (const m of trace.matchAll(/^Begin revec function (\S+)/gm)) seen.add(m[1]);
  return seen;
}

/**
 * From `--trace-wasm-revectorize` output: the functions V8 decided to fuse, each with its count of
 * fused operations (`Decided to vectorize, N revectorizable nodes`).
 */
export function fusedFunctions(trace: string): Map<string, number> {
  const fused = new Map<string, number>();
  let current: string | null = null;
  for (const line of trace.split("\n")) {
    const begin = line.match(/^Begin revec function (\S+)/);
    if (begin) current = begin[1];
    const decided = line.match(/Decided to vectorize, (\d+) revectorizable nodes/);
    if (decided && current) fused.set(current, Math.max(fused.get(current) ?? 0, Number(decided[1])));
    if (line.startsWith("Finished revec function")) current = null;
  }
  return fused;
}
