/**
 * The container's health check and pre-stop pause, run by the release's own deno (the image has
 * no shell and no curl):
 *
 * ```sh
 * deno run --no-config --allow-net=127.0.0.1 --allow-env=BN_PORT probe.ts            # GET /health
 * deno run --no-config probe.ts --sleep 5                                          # wait 5 s
 * ```
 *
 * The health check exits 0 when `GET http://127.0.0.1:$BN_PORT/health` answers 200 within 2 s.
 *
 * @module
 */
const sleep = Deno.args.indexOf("--sleep");
if (sleep >= 0) {
  await new Promise((r) => setTimeout(r, Number(Deno.args[sleep + 1] ?? 5) * 1000));
  Deno.exit(0);
}
const port = Deno.env.get("BN_PORT") || "8080";
try {
  const res = await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(2000) });
  await res.body?.cancel();
  Deno.exit(res.status === 200 ? 0 : 1);
} catch {
  Deno.exit(1);
}
