/**
 * README.md's examples run as written: the Deno client snippet, saved as the file its first line
 * names and started with the command that line gives, streams a reply from a local server (only the
 * port differs: the test's server listens on a free one).
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { tinyModel } from "./_models.ts";
import { serve, waitFor } from "./_serve.ts";

const ROOT = new URL("../", import.meta.url);
const readme = Deno.readTextFileSync(new URL("README.md", ROOT));

Deno.test("the README's Deno client snippet runs as written against a local server", async () => {
  const block = /Any OpenAI client works:\n\n```ts\n([\s\S]*?)```/.exec(readme)?.[1];
  assert(block, "the ```ts block after 'Any OpenAI client works:'");
  const first = /^\/\/ (\S+) -- run with: (deno run .*)$/m.exec(block.split("\n")[0]);
  assert(first, `the first line names the file and the command: ${block.split("\n")[0]}`);
  const [, file, command] = first;
  assert(block.includes("127.0.0.1:8080") && command.includes("127.0.0.1:8080"));

  const child = serve(["--model", await tinyModel(), "--port", "0", "--threads", "1"]);
  const stderr = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  const stdout = new Response(child.stdout).text();
  const dir = Deno.makeTempDirSync({ prefix: "bn-readme-test-" });
  try {
    const banner = await waitFor(stderr, /serving on http:\/\/127\.0\.0\.1:(\d+)/);
    const port = banner.match(/serving on http:\/\/127\.0\.0\.1:(\d+)/)![1];
    Deno.writeTextFileSync(`${dir}/${file}`, block.replaceAll("127.0.0.1:8080", `127.0.0.1:${port}`));
    const args = command.replaceAll("127.0.0.1:8080", `127.0.0.1:${port}`).split(" ").slice(1);
    const run = await new Deno.Command(Deno.execPath(), {
      args,
      cwd: dir,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    })
      .output();
    const err = new TextDecoder().decode(run.stderr);
    assertEquals(run.code, 0, err);
    assert(new TextDecoder().decode(run.stdout).trim().length > 0, `a streamed reply; stderr: ${err}`);
  } finally {
    child.kill("SIGTERM");
    await stderr.cancel();
    await child.status;
    await stdout;
    Deno.removeSync(dir, { recursive: true });
  }
});
