/**
 * Cold start: spawn the server (`main.ts`, with the `serve` task's flags) on 127.0.0.1 and a free
 * port, poll `GET /ready` every 10 ms until it answers 200, then SIGTERM it and wait for its exit.
 * The page cache is warm (the benchmark has just read the model), so this is process start to
 * ready, not disk speed.
 *
 * @module
 */
import type { ColdStart } from "./result.ts";

const ROOT = new URL("../../", import.meta.url);
const FALLBACK_FLAGS = ["--allow-read", "--allow-env", "--allow-net=127.0.0.1"];

/** The `deno run` flags of the `serve` task in deno.json (what users start the server with). */
export function serveFlags(): string[] {
  try {
    const task = JSON.parse(Deno.readTextFileSync(new URL("deno.json", ROOT))).tasks?.serve as
      | string
      | undefined;
    const words = task?.trim().split(/\s+/) ?? [];
    if (words[0] === "deno" && words[1] === "run" && words[words.length - 1] === "main.ts") {
      return words.slice(2, -1).filter((w) => !/^--lock(=|$)/.test(w)); // a path relative to the repo
    }
  } catch { /* fall through */ }
  return FALLBACK_FLAGS;
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

async function ready(url: string): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
    await res.body?.cancel();
    return res.status === 200;
  } catch {
    return false;
  }
}

const tail = (s: string) => s.trim().split("\n").slice(-3).join(" | ").slice(0, 300);

/**
 * Measures spawn-to-ready of the server on `model`. Never throws: a server that is missing, exits
 * or does not become ready in `timeoutMs` gives `ms: null` and the reason.
 */
export async function measureColdStart(model: string, timeoutMs = 60_000): Promise<ColdStart> {
  const main = new URL("main.ts", ROOT);
  try {
    Deno.statSync(main);
  } catch {
    return { ms: null, note: "main.ts does not exist yet" };
  }
  const port = freePort();
  const flags = serveFlags();
  const t0 = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...flags, "main.ts", "--model", model, "--port", String(port), "--host", "127.0.0.1"],
    cwd: ROOT,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let stderr = "";
  const drained = (async () => {
    const dec = new TextDecoder();
    for await (const chunk of child.stderr) stderr += dec.decode(chunk, { stream: true });
  })();
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  let ms: number | null = null, note = "";
  try {
    const url = `http://127.0.0.1:${port}/ready`;
    while (performance.now() - t0 < timeoutMs) {
      if (await ready(url)) {
        ms = performance.now() - t0;
        break;
      }
      if (exited) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    if (ms === null) {
      note = exited
        ? `the server exited with code ${(await status).code} before it was ready: ${tail(stderr)}`
        : `the server was not ready after ${timeoutMs} ms`;
    } else {
      note = `deno run ${flags.join(" ")} main.ts --model <model>; spawn to first 200 from GET /ready`;
    }
  } finally {
    if (!exited) {
      const kill = (sig: Deno.Signal) => {
        try {
          if (!exited) child.kill(sig);
        } catch { /* it exited meanwhile */ }
      };
      kill("SIGTERM");
      const killer = setTimeout(() => kill("SIGKILL"), 10_000);
      await status;
      clearTimeout(killer);
    }
    await drained;
  }
  return { ms, note };
}
