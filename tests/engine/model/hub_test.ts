/** engine/model/hub.ts: Hub references, download URLs and the cache layout. */
import { deepStrictEqual as assertEquals, throws } from "node:assert/strict";
import {
  cacheDir,
  cachedPath,
  DEFAULT_PULL,
  formatHfRef,
  hfRef,
  hubFileUrl,
  parseHfRef,
  pullCommand,
} from "../../../engine/model/hub.ts";

Deno.test("parseHfRef() reads hf:OWNER/REPO/FILE, a revision after @, and files in folders", () => {
  assertEquals(parseHfRef("hf:microsoft/bitnet-b1.58-2B-4T-gguf/ggml-model-i2_s.gguf"), DEFAULT_PULL);
  assertEquals(parseHfRef("hf:a/b@v1.0/sub/dir/m.gguf"), {
    owner: "a",
    repo: "b",
    file: "sub/dir/m.gguf",
    revision: "v1.0",
  });
  assertEquals(parseHfRef("hf://a/b/m.gguf").file, "m.gguf");
  for (const ref of [DEFAULT_PULL, hfRef("a", "b", "x/y.gguf", "0123abc")]) {
    assertEquals(parseHfRef(formatHfRef(ref)), ref);
  }
  assertEquals(formatHfRef(DEFAULT_PULL), "hf:microsoft/bitnet-b1.58-2B-4T-gguf/ggml-model-i2_s.gguf");
});

Deno.test("parseHfRef() and hfRef() refuse names that are not repositories or climb out of the cache", () => {
  for (
    const bad of [
      "hf:a/b",
      "hf:a",
      "hf:a/b/",
      "hf:a/b/../../etc/passwd",
      "hf:../b/m.gguf",
      "hf:a/b/x//y",
      "a/b/c",
    ]
  ) {
    throws(() => parseHfRef(bad), TypeError, bad);
  }
  throws(() => hfRef("a", "b", "m.gguf", "../../x"), /not a revision/);
  throws(() => hfRef("a", "b c", "m.gguf"), /not a Hugging Face repository/);
  throws(() => hfRef("a", "b", "..\\m.gguf"), /not a file path/);
});

Deno.test("hubFileUrl() is {endpoint}/{repo}/resolve/{revision}/{file}, quoted like huggingface_hub", () => {
  assertEquals(
    hubFileUrl(DEFAULT_PULL),
    "https://huggingface.co/microsoft/bitnet-b1.58-2B-4T-gguf/resolve/main/ggml-model-i2_s.gguf",
  );
  assertEquals(
    hubFileUrl(hfRef("o", "r", "a b/c#d.gguf", "refs/pr/1"), "http://127.0.0.1:9/"),
    "http://127.0.0.1:9/o/r/resolve/refs%2Fpr%2F1/a%20b/c%23d.gguf",
  );
});

Deno.test("cacheDir() takes BN_CACHE, then an absolute XDG_CACHE_HOME, then HOME", () => {
  assertEquals(cacheDir({ BN_CACHE: "c", XDG_CACHE_HOME: "/x", HOME: "/h" }, "/work"), "/work/c");
  assertEquals(cacheDir({ BN_CACHE: "/abs", HOME: "/h" }, "/work"), "/abs");
  assertEquals(cacheDir({ XDG_CACHE_HOME: "/x", HOME: "/h" }, "/work"), "/x/bitnet-server");
  assertEquals(cacheDir({ XDG_CACHE_HOME: "rel", HOME: "/h" }, "/work"), "/h/.cache/bitnet-server");
  throws(() => cacheDir({}, "/work"), /set BN_CACHE/);
});

Deno.test("cachedPath() keeps revisions apart; pullCommand() spells the command to copy", () => {
  assertEquals(
    cachedPath("/c", hfRef("o", "r", "d/m.gguf", "refs/pr/1")),
    "/c/hf/o/r/refs%2Fpr%2F1/d/m.gguf",
  );
  assertEquals(
    pullCommand(DEFAULT_PULL),
    "deno task pull microsoft/bitnet-b1.58-2B-4T-gguf ggml-model-i2_s.gguf",
  );
  assertEquals(
    pullCommand(hfRef("o", "r", "m.gguf", "v2"), "/opt/bs/bin/bitnet-server"),
    "/opt/bs/bin/bitnet-server pull o/r m.gguf --revision v2",
  );
});
