/**
 * Test helper: start the server exactly as `deno task serve` does (the task's flags from deno.json)
 * and read its stderr.
 */
const ROOT = new URL("../", import.meta.url);

/** The serve task's command line without `deno`: its flags, then `main.ts`. */
export function serveFlags(): string[] {
  const task: string = JSON.parse(Deno.readTextFileSync(new URL("deno.json", ROOT))).tasks.serve;
  return task.split(/\s+/).slice(1); // drop "deno"
}

/** Options of {@linkcode serve}. */
export interface ServeOptions {
  /** Start it under `ulimit -n` of this many files (through bash). */
  readonly openFiles?: number;
}

/** `deno run <the serve task's flags> main.ts ...args`, from the repository root, with `env` added. */
export function serve(
  args: string[],
  env: Record<string, string> = {},
  options: ServeOptions = {},
): Deno.ChildProcess {
  const argv = [...serveFlags(), ...args];
  const [cmd, cmdArgs] = options.openFiles
    ? ["bash", ["-c", `ulimit -n ${options.openFiles} && exec "$0" "$@"`, Deno.execPath(), ...argv]]
    : [Deno.execPath(), argv];
  return new Deno.Command(cmd, {
    args: cmdArgs,
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

/** A started server process: its URL, its stderr so far, its stdout lines (JSON logs) at the end. */
export interface Running {
  readonly url: string;
  readonly child: Deno.ChildProcess;
  /** Everything on stderr up to and including the "serving on" line. */
  readonly banner: string;
  readonly stderr: ReadableStreamDefaultReader<string>;
  /** Kills it (SIGKILL unless it already exited) and returns its stdout. */
  stop(): Promise<string>;
}

/** Starts the server with `args` and waits until it serves. */
export async function running(
  args: string[],
  options: ServeOptions & { readonly env?: Record<string, string> } = {},
): Promise<Running> {
  const child = serve(args, options.env, options);
  const stderr = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  const stdout = new Response(child.stdout).text();
  const stop = async () => {
    try {
      child.kill("SIGKILL");
    } catch { /* already exited */ }
    await stderr.cancel().catch(() => {});
    await child.status;
    return await stdout;
  };
  try {
    const banner = await waitFor(stderr, /serving on (http:\/\/[^\s]+)/);
    const url = banner.match(/serving on (http:\/\/[^\s]+)/)![1];
    return { url, child, banner, stderr, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}
