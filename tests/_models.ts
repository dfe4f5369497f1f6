/**
 * Synthetic models for tests, generated once per process into a temp dir (deterministic).
 */
import { synthModel, type SynthOptions } from "../scripts/synth_model.ts";

const dir = Deno.makeTempDirSync({ prefix: "bn-test-models-" });
const made = new Map<string, Promise<string>>();

/** Path of a tiny synthetic model with these options (generated on first use). */
export function tinyModel(opts: Partial<Omit<SynthOptions, "out">> = {}): Promise<string> {
  const key = JSON.stringify(opts);
  let p = made.get(key);
  if (!p) {
    const out = `${dir}/${made.size}.gguf`;
    p = synthModel({ preset: "tiny", ...opts, out }).then(() => out);
    made.set(key, p);
  }
  return p;
}

globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(dir, { recursive: true });
  } catch { /* already gone */ }
});
