/** Worker side of tests/_isolate.ts: import the module, call the function, post the result. */
declare const self: { onmessage: ((e: MessageEvent) => void) | null; postMessage(msg: unknown): void };

self.onmessage = async (e: MessageEvent) => {
  const { module, fn, input } = e.data;
  try {
    const mod = await import(module);
    self.postMessage({ ok: true, value: await mod[fn](input) });
  } catch (err) {
    self.postMessage({
      ok: false,
      error: err instanceof Error ? `${err.name}: ${err.message}` : String(err),
    });
  }
};
