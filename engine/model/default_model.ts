/**
 * Where the embedded default model lives: the file `deno task serve` and `deno task generate` use
 * when no `--model` is given (trained by scripts/train/, see models/README.md).
 *
 * @module
 */
export const DEFAULT_MODEL_PATH: string = decodeURIComponent(
  new URL("../../models/default.gguf", import.meta.url).pathname,
);
