/**
 * Test helper: run an exported function of a module inside a Worker and get its (structured-clone)
 * result, or fail after a timeout. A code path that might spin the event loop for good (a wedge)
 * is tested this way: the test fails fast instead of hanging the whole test process.
 */

/** Calls `fn(input)` exported by `module` in a fresh Worker; rejects after `timeoutMs`. */
export function inWorker<T>(module: URL, fn: string, input: unknown = null, timeoutMs = 20_000): Promise<T> {
  const worker = new Worker(new URL("./_isolate_worker.ts", import.meta.url), { type: "module" });
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`${fn}() in ${module.pathname} gave no answer within ${timeoutMs} ms (wedged?)`));
    }, timeoutMs);
    worker.onmessage = (e: MessageEvent) => {
      clearTimeout(timer);
      if (e.data.ok) resolve(e.data.value as T);
      else reject(new Error(`${fn}() failed in its worker: ${e.data.error}`));
    };
    worker.onerror = (e) => {
      e.preventDefault();
      clearTimeout(timer);
      reject(new Error(`${fn}() crashed its worker: ${e.message}`));
    };
    worker.postMessage({ module: module.href, fn, input });
  }).finally(() => worker.terminate());
}
