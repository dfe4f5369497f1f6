/**
 * deploy/kubernetes/: every manifest validates offline against the Kubernetes API types
 * (scripts/deploy/k8s_validate.ts), the validator catches what it should, and the manifests say
 * what the server does: probes on /ready and /health, a drain that fits the grace period, resources
 * from the memory plan, selectors that match, autoscaling on metrics the server exports.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { parseManifests, validateManifest } from "../../scripts/deploy/k8s_validate.ts";
import { Metrics } from "../../routes/metrics.ts";
import { ServerState } from "../../routes/state.ts";
import { budgetMiB, parseMiB, planMiB } from "./_sizing.ts";

const DIR = new URL("../../deploy/kubernetes/", import.meta.url);
const FILES = [
  "deployment.yaml",
  "service.yaml",
  "pdb.yaml",
  "hpa.yaml",
  "models-pvc.yaml",
  "prometheus-adapter/rules.yaml",
];
// deno-lint-ignore no-explicit-any
const docs: Record<string, any> = {};
for (const f of FILES) {
  for (const d of parseManifests(Deno.readTextFileSync(new URL(f, DIR)))) docs[d.kind] = d;
}
const deployment = docs.Deployment;
const pod = deployment.spec.template.spec;
const container = pod.containers[0];
const env = Object.fromEntries(container.env.map((e: { name: string; value: string }) => [e.name, e.value]));

Deno.test("every manifest validates against the Kubernetes API types", () => {
  assertEquals(
    Object.keys(docs).sort(),
    [
      "ConfigMap",
      "Deployment",
      "HorizontalPodAutoscaler",
      "PersistentVolumeClaim",
      "PodDisruptionBudget",
      "Service",
    ],
  );
  for (const [kind, doc] of Object.entries(docs)) assertEquals(validateManifest(doc), [], kind);
  const yaml = [...Deno.readDirSync(DIR)].filter((e) => e.isFile && e.name.endsWith(".yaml")).map((e) =>
    e.name
  );
  assertEquals(yaml.sort(), FILES.filter((f) => !f.includes("/")).sort(), "every file is checked");
});

Deno.test("validateManifest() reports unknown fields, wrong types, missing fields and unknown kinds", () => {
  const clone = () => structuredClone(deployment);
  const cases: [(d: typeof deployment) => void, RegExp][] = [
    [(d) => (d.spec.replicaz = 3), /spec\.replicaz: unknown field/],
    [
      (d) => (d.spec.template.spec.containers[0].readinesProbe = {}),
      /containers\[0\]\.readinesProbe: unknown field/,
    ],
    [(d) => (d.spec.replicas = "2"), /spec\.replicas: expected a number/],
    [(d) => (d.spec.replicas = 2.5), /expected an integer|must be integer/],
    [(d) => delete d.spec.template.spec.containers[0].name, /must have required property '?name'?/],
    [(d) => delete d.spec.selector, /must have required property '?selector'?/],
    [
      (d) => (d.spec.template.spec.containers[0].livenessProbe.httpGet.port = [8080]),
      /port: expected an integer or a string/,
    ],
    [(d) => (d.spec.template.spec.containers[0].env = { BN_CTX: "4096" }), /env: expected a list/],
  ];
  for (const [mutate, re] of cases) {
    const d = clone();
    mutate(d);
    const errors = validateManifest(d);
    assert(errors.some((e) => re.test(e)), `${re}: ${errors.join(" | ")}`);
  }
  assert(
    validateManifest({ apiVersion: "v9", kind: "Thing", metadata: { name: "x" } })[0].includes("unsupported"),
  );
});

Deno.test("the Deployment probes /ready and /health, and its drain fits the grace period", () => {
  const port = container.ports[0];
  assertEquals([port.name, port.containerPort, env.BN_PORT], ["http", 8080, "8080"]);
  assertEquals([container.readinessProbe.httpGet.path, container.readinessProbe.httpGet.port], [
    "/ready",
    "http",
  ]);
  assertEquals([container.livenessProbe.httpGet.path, container.livenessProbe.httpGet.port], [
    "/health",
    "http",
  ]);
  const preStop: string[] = container.lifecycle.preStop.exec.command;
  assertEquals(preStop.slice(0, 2), ["/opt/bitnet-server/bin/deno", "run"]);
  assert(preStop.includes("/opt/bitnet-server/deploy/container/probe.ts"));
  assert(Deno.statSync(new URL("../../deploy/container/probe.ts", import.meta.url)).isFile);
  const pause = Number(preStop[preStop.indexOf("--sleep") + 1]);
  const grace = Number(env.BN_GRACE);
  // preStop pause + drain grace + the server's 2 s close + margin.
  assert(pod.terminationGracePeriodSeconds >= pause + grace + 5, `${pod.terminationGracePeriodSeconds} s`);
  assertEquals(deployment.spec.strategy.rollingUpdate.maxUnavailable, 0);
});

Deno.test("a wedged pod is restarted: /health turns 503 on the watchdog and the liveness probe acts first", () => {
  const watchdog = Number(env.BN_WATCHDOG);
  assert(watchdog > 0, "the watchdog is on");
  const live = container.livenessProbe;
  assertEquals(live.httpGet.path, "/health");
  // a stuck step turns /health to 503 after `watchdog` s; the probe restarts the pod within
  // periodSeconds x failureThreshold more, before the process's own exit at 2 x watchdog
  const restartAfter = watchdog + live.periodSeconds * live.failureThreshold + live.timeoutSeconds;
  assert(restartAfter < 2 * watchdog, `${restartAfter} s`);
  // a process that stops answering altogether fails the probe by its timeout
  assert(live.timeoutSeconds >= 2 && live.failureThreshold >= 2, "one slow answer is not a restart");
});

Deno.test("the Deployment is sized from the memory plan and runs locked down", () => {
  const threads = Number(env.BN_THREADS);
  const { requests, limits } = container.resources;
  assertEquals(requests, limits, "Guaranteed QoS");
  assertEquals(Number(limits.cpu), threads, "BN_THREADS matches the CPU the pod gets");
  const plan = planMiB(Number(env.BN_CTX), Number(env.BN_SLOTS));
  assert(Math.abs(plan - 1474.6) < 3, `plan ${plan} MiB = the 1.44 GiB the server prints`);
  const memory = parseMiB(limits.memory);
  const budget = budgetMiB(Number(env.BN_CTX), Number(env.BN_SLOTS), threads, Number(env.BN_CACHE_MEM));
  assert(memory >= budget && memory <= budget * 1.15, `limit ${memory} MiB for a budget of ${budget} MiB`);

  assertEquals(pod.securityContext.runAsNonRoot, true);
  assertEquals(pod.securityContext.runAsUser, 65532, "the image's user");
  assertEquals(pod.automountServiceAccountToken, false);
  assertEquals(container.securityContext.readOnlyRootFilesystem, true);
  assertEquals(container.securityContext.allowPrivilegeEscalation, false);
  assertEquals(container.securityContext.capabilities.drop, ["ALL"]);
  const mount = container.volumeMounts.find((m: { mountPath: string }) => m.mountPath === "/models");
  assertEquals(mount.readOnly, true);
  assert(env.BN_MODEL.startsWith("/models/"));
  const claim =
    pod.volumes.find((v: { name: string }) => v.name === mount.name).persistentVolumeClaim.claimName;
  assertEquals(claim, docs.PersistentVolumeClaim.metadata.name);
  const containerfile = Deno.readTextFileSync(
    new URL("../../deploy/container/Containerfile", import.meta.url),
  );
  assert(containerfile.includes("USER 65532:65532") && containerfile.includes('VOLUME ["/models"]'));
});

Deno.test("Service, PodDisruptionBudget and HorizontalPodAutoscaler select the Deployment's pods", () => {
  const labels = deployment.spec.template.metadata.labels;
  assertEquals(deployment.spec.selector.matchLabels, labels);
  assertEquals(docs.Service.spec.selector, labels);
  assertEquals(docs.Service.spec.ports[0].targetPort, container.ports[0].name);
  assertEquals(docs.PodDisruptionBudget.spec.selector.matchLabels, labels);
  assertEquals(docs.PodDisruptionBudget.spec.maxUnavailable, 1);
  const hpa = docs.HorizontalPodAutoscaler.spec;
  assertEquals(hpa.scaleTargetRef, {
    apiVersion: "apps/v1",
    kind: "Deployment",
    name: deployment.metadata.name,
  });
  assert(hpa.minReplicas >= 2, "a PodDisruptionBudget of 1 needs 2 replicas to let a node drain");
});

Deno.test("the autoscaler's metrics are gauges the server exports on /metrics", () => {
  const exported = new Metrics().render(new ServerState());
  const names = docs.HorizontalPodAutoscaler.spec.metrics.map((m: { pods: { metric: { name: string } } }) =>
    m.pods.metric.name
  );
  assertEquals(names, ["bn_queue_depth", "bn_slots_busy"]);
  for (const name of names) {
    assert(exported.includes(`# TYPE ${name} gauge`), name);
    assert(docs.ConfigMap.data["config.yaml"].includes(`as: ${name}`), `adapter rule for ${name}`);
  }
  const annotations = deployment.spec.template.metadata.annotations;
  assertEquals([annotations["prometheus.io/path"], annotations["prometheus.io/port"]], ["/metrics", "8080"]);
});
