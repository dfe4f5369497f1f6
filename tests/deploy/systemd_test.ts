/**
 * deploy/systemd/bitnet-server.service: hardened (dedicated user, read-only system, no new
 * privileges), sized from the memory plan like the Kubernetes pod, restarted on failure (a wedged
 * process too: the watchdog's exit status and the health-check timer), given longer to stop than
 * the drain takes; `systemd-analyze verify` finds no problem in the three units and
 * `systemd-analyze security --offline` rates the server's OK. The systemd-analyze parts are skipped,
 * with a message, where systemd is not installed.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { parseManifests } from "../../scripts/deploy/k8s_validate.ts";
import { budgetMiB, parseMiB } from "./_sizing.ts";
import { WEDGED_EXIT } from "../../main.ts";

const path = (f: string) =>
  decodeURIComponent(new URL(`../../deploy/systemd/${f}`, import.meta.url).pathname);
const text = Deno.readTextFileSync(path("bitnet-server.service"));
const healthText = Deno.readTextFileSync(path("bitnet-server-health.service"));
const timerText = Deno.readTextFileSync(path("bitnet-server-health.timer"));

/** section -> key -> values (a key may repeat). */
function parseUnit(src: string): Record<string, Record<string, string[]>> {
  const out: Record<string, Record<string, string[]>> = {};
  let section = "";
  for (const raw of src.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#") || line.startsWith(";")) continue;
    const head = line.match(/^\[(.+)\]$/);
    if (head) {
      section = head[1];
      out[section] ??= {};
      continue;
    }
    const eq = line.indexOf("=");
    const [k, v] = [line.slice(0, eq), line.slice(eq + 1)];
    (out[section][k] ??= []).push(v);
  }
  return out;
}

const unit = parseUnit(text);
const service = unit.Service;
const one = (k: string) => service[k]?.at(-1);
const env = Object.fromEntries(
  (service.Environment ?? []).flatMap((v) => v.split(/\s+/)).map((kv) => kv.split("=") as [string, string]),
);

const analyze = (() => {
  for (const p of ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]) {
    try {
      if (Deno.statSync(p).isFile) return p;
    } catch { /* next */ }
  }
  return null;
})();
if (!analyze) {
  console.warn("tests/deploy/systemd_test.ts: systemd-analyze is not installed: verify/security skipped");
}

Deno.test("the unit runs the release's launcher as a dedicated user on a read-only system", () => {
  assertEquals(one("ExecStart"), "/opt/bitnet-server/bin/bitnet-server");
  assert(one("DynamicUser") === "yes" || (one("User") && one("User") !== "root"), "a dedicated user");
  for (
    const [k, v] of [
      ["NoNewPrivileges", "yes"],
      ["ProtectSystem", "strict"],
      ["ProtectHome", "yes"],
      ["PrivateTmp", "yes"],
      ["PrivateDevices", "yes"],
      ["CapabilityBoundingSet", ""],
      ["RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"],
    ]
  ) assertEquals(one(k), v, k);
  assertEquals(service.ReadWritePaths, undefined, "nothing writable");
  assert(!service.MemoryDenyWriteExecute, "V8 needs W+X pages for its JIT");
  assertEquals(unit.Install.WantedBy, ["multi-user.target"]);
});

Deno.test("the unit restarts on failure, outlasts the drain, and has the pod's memory limit", () => {
  assertEquals([one("KillSignal"), one("Restart")], ["SIGTERM", "on-failure"]);
  const grace = Number(env.BN_GRACE ?? 30);
  assert(
    Number(one("TimeoutStopSec")) >= grace + 2 + 5,
    `TimeoutStopSec ${one("TimeoutStopSec")} vs grace ${grace}`,
  );
  const max = parseMiB(one("MemoryMax")!), high = parseMiB(one("MemoryHigh")!);
  const budget = budgetMiB(
    Number(env.BN_CTX),
    Number(env.BN_SLOTS),
    Number(env.BN_THREADS),
    Number(env.BN_CACHE_MEM),
  );
  assert(
    high >= budget && max > high && max <= budget * 1.15,
    `MemoryHigh ${high}, MemoryMax ${max}, budget ${budget}`,
  );
  const deployment = parseManifests(
    Deno.readTextFileSync(new URL("../../deploy/kubernetes/deployment.yaml", import.meta.url)),
  )[0];
  const container = deployment.spec.template.spec.containers[0];
  assertEquals(max, parseMiB(container.resources.limits.memory), "the same limit as the Kubernetes pod");
  const podEnv = Object.fromEntries(
    container.env.map((e: { name: string; value: string }) => [e.name, e.value]),
  );
  for (
    const k of ["BN_CTX", "BN_SLOTS", "BN_THREADS", "BN_GRACE", "BN_PORT", "BN_CACHE_MEM", "BN_WATCHDOG"]
  ) {
    assertEquals(env[k], podEnv[k], k);
  }
});

Deno.test("a wedged process is restarted: the watchdog's exit status counts as a failure, and the health timer", () => {
  assert(Number(env.BN_WATCHDOG) > 0, "the watchdog is on");
  assertEquals(one("Restart"), "on-failure");
  for (const k of ["SuccessExitStatus", "RestartPreventExitStatus"]) {
    assert(!(service[k] ?? []).join(" ").split(/\s+/).includes(String(WEDGED_EXIT)), k);
  }
  const health = parseUnit(healthText), timer = parseUnit(timerText);
  assertEquals(health.Service.Type, ["oneshot"]);
  assertEquals(health.Service.ExecCondition, ["/bin/systemctl is-active --quiet bitnet-server.service"]);
  const exec = health.Service.ExecStart[0];
  assert(exec.includes("/opt/bitnet-server/deploy/container/probe.ts --tries 3"), exec);
  assert(exec.includes("--allow-net=127.0.0.1 --allow-env=BN_PORT"), "the probe is sandboxed");
  assert(
    exec.includes("|| {") && exec.includes("systemctl kill --signal=SIGKILL bitnet-server.service"),
    exec,
  );
  assert(Number(health.Service.TimeoutStartSec) > 3 * (2 + 5), "three probes fit the start timeout");
  assertEquals(timer.Timer.OnUnitInactiveSec, ["15"]);
  assertEquals(timer.Install.WantedBy, ["timers.target"]);
});

Deno.test({
  name: "systemd-analyze verify finds no problem and security --offline rates the unit OK",
  ignore: !analyze,
  async fn() {
    // verify wants ExecStart to exist: point it at any executable of this machine.
    const dir = Deno.makeTempDirSync({ prefix: "bn-unit-" });
    try {
      const copy = `${dir}/bitnet-server.service`;
      Deno.writeTextFileSync(copy, text.replace(/^ExecStart=\S+/m, `ExecStart=${Deno.execPath()}`));
      Deno.writeTextFileSync(`${dir}/bitnet-server-health.service`, healthText);
      Deno.writeTextFileSync(`${dir}/bitnet-server-health.timer`, timerText);
      const verify = await new Deno.Command(analyze!, {
        args: ["verify", copy, `${dir}/bitnet-server-health.service`, `${dir}/bitnet-server-health.timer`],
        stdout: "piped",
        stderr: "piped",
      })
        .output();
      const problems = new TextDecoder().decode(verify.stderr).split("\n")
        .filter((l) => l.includes("bitnet-server"));
      assert(verify.success && problems.length === 0, problems.join("\n"));

      const security = await new Deno.Command(analyze!, {
        args: ["security", "--offline=yes", "--threshold=30", "--no-pager", copy],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const out = new TextDecoder().decode(security.stdout);
      const level = Number(out.match(/Overall exposure level for \S+: ([\d.]+)/)?.[1]);
      assert(security.success && level <= 3, `exposure ${level}:\n${out.slice(-400)}`);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});
