/**
 * The health check and pre-stop pause, run by the release's own deno (the image has no shell and
 * no curl), and the systemd health-check unit's probe:
 *
 * ```sh
 * deno run --no-config --allow-net=127.0.0.1 --allow-env=BN_PORT probe.ts            # GET /health
 * deno run --no-config --allow-net=127.0.0.1 --allow-env=BN_PORT probe.ts --tries 3 --interval 5
 * deno run --no-config probe.ts --sleep 5                                          # wait 5 s
 * ```
 *
 * The health check exits 0 as soon as `GET http://127.0.0.1:$BN_PORT/health` answers 200 within
 * 2 s, and 1 when `--tries` attempts (default 1), `--interval` seconds apart, all failed: a
 * process that does not answer, or answers 503 (its watchdog found the engine stuck).
 *
 * @module
 */
const arg = (name: string, fallback: number) => {
  const i = Deno.args.indexOf(name);
  return i >= 0 ? Number(Deno.args[i + 1] ?? fallback) : fallback;
};
if (Deno.args.includes("--sleep")) {
  await new Promise((r) => setTimeout(r, arg("--sleep", 5) * 1000));
  Deno.exit(0);
}
const port = Deno.env.get("BN_PORT") || "8080";
const tries = Math.max(1, arg("--tries", 1)), interval = arg("--interval", 5);
for (let i = 0; i < tries; i++) {
  if (i) await new Promise((r) => setTimeout(r, interval * 1000));
  try {
    const res = await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(2000) });
    await res.body?.cancel();
    if (res.status === 200) Deno.exit(0);
  } catch { /* no answer in time: try again */ }
}
Deno.exit(1);
