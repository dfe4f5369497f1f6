/**
 * Test helper: start the server exactly as `deno task serve` does (the task's flags from deno.json)
 * and read its stderr.
 */
const ROOT = new URL("../", import.meta.url);

/** `deno run <the serve task's flags> main.ts ...args`, from the repository root, with `env` added. */
export function serve(args: string[], env: Record<string, string> = {}): Deno.ChildProcess {
  const task: string = JSON.parse(Deno.readTextFileSync(new URL("deno.json", ROOT))).tasks.serve;
  const flags = task.split(/\s+/).slice(1); // drop "deno"
  return new Deno.Command(Deno.execPath(), {
    args: [...flags, ...args],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", ...env },
  }).spawn();
}

/** Reads stderr until `re` matches; returns everything read so far. */
export async function waitFor(
  reader: ReadableStreamDefaultReader<string>,
  re: RegExp,
  sofar = "",
): Promise<string> {
  while (!re.test(sofar)) {
    const r = await reader.read();
    if (r.done) throw new Error(`process ended before ${re}: ${sofar}`);
    sofar += r.value;
  }
  return sofar;
}
