/** engine/model/locate.ts: --model to an absolute path, and errors that show the path and the fix. */
import { deepStrictEqual as assertEquals, rejects } from "node:assert/strict";
import { DEFAULT_MODEL_PATH } from "../../../engine/model/default_model.ts";
import { locateModel } from "../../../engine/model/locate.ts";

const dir = Deno.makeTempDirSync({ prefix: "bn-locate-test-" });
Deno.mkdirSync(`${dir}/user/sub`, { recursive: true });
Deno.writeTextFileSync(`${dir}/user/m.gguf`, "GGUF");
const opts = { cwd: `${dir}/user/sub`, env: { BN_CACHE: `${dir}/cache` } };

Deno.test("locateModel(): no --model is the embedded model; relative paths start at cwd", async () => {
  assertEquals(await locateModel(undefined, opts), DEFAULT_MODEL_PATH);
  assertEquals(await locateModel("../m.gguf", opts), `${dir}/user/m.gguf`);
  assertEquals(await locateModel(`${dir}/user/m.gguf`, opts), `${dir}/user/m.gguf`);
});

Deno.test("locateModel(): a missing file or a directory is named by its absolute path", async () => {
  await rejects(
    locateModel("nope.gguf", opts),
    (e: Error) =>
      e instanceof TypeError &&
      e.message.includes(`"${dir}/user/sub/nope.gguf" (--model nope.gguf from ${dir}/user/sub)`),
  );
  await rejects(locateModel("..", opts), /it is a directory/);
  await rejects(
    locateModel("microsoft/bitnet-b1.58-2B-4T-gguf", opts),
    (e: Error) =>
      e.message.includes("deno task pull microsoft/bitnet-b1.58-2B-4T-gguf FILE.gguf") &&
      e.message.includes("--model hf:microsoft/bitnet-b1.58-2B-4T-gguf/FILE.gguf"),
  );
});

Deno.test("locateModel(): hf: names a pulled file; missing, it prints the exact pull command", async () => {
  const ref = "hf:o/r/d/m.gguf";
  const path = `${dir}/cache/hf/o/r/main/d/m.gguf`;
  await rejects(
    locateModel(ref, { ...opts, program: "/opt/bs/bin/bitnet-server" }),
    (e: Error) =>
      e.message.includes(`(looked for ${path})`) &&
      e.message.includes("\n  /opt/bs/bin/bitnet-server pull o/r d/m.gguf") &&
      !e.message.includes("partial"),
  );
  Deno.mkdirSync(`${dir}/cache/hf/o/r/main/d`, { recursive: true });
  Deno.writeTextFileSync(`${path}.part`, "GG");
  await rejects(
    locateModel(ref, opts),
    (e: Error) => e.message.includes(`${path}.part`) && e.message.includes("deno task pull o/r d/m.gguf"),
  );
  Deno.writeTextFileSync(path, "GGUF");
  assertEquals(await locateModel(ref, opts), path);
  assertEquals(await locateModel("hf:o/r@main/d/m.gguf", opts), path);
  await rejects(locateModel("hf:o/r@v2/d/m.gguf", opts), /--revision v2/);
});

globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
