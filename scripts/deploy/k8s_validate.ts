/**
 * Offline validation of Kubernetes manifests against the API types, with no cluster: `kubectl
 * --dry-run=client` still asks an API server for discovery and the OpenAPI document, so it cannot
 * run here. Two checks, each from a generated model of the Kubernetes API:
 *
 * - `kubernetes-models` (generated from the API's OpenAPI schema): required fields, types, integer
 *   formats, enums;
 * - `@kubernetes/client-node`'s models (`getAttributeTypeMap()` of every API type): no field the
 *   type lacks (a misspelt `readinessProbe` is an error, as the API server's strict field
 *   validation makes it), and every value of the kind the type says.
 *
 * ```sh
 * deno run --allow-read --allow-env scripts/deploy/k8s_validate.ts deploy/kubernetes/*.yaml
 * ```
 *
 * @module
 */
import * as k8s from "@kubernetes/client-node";
import { loadAll } from "js-yaml";
import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { HorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1/PodDisruptionBudget";
import { ConfigMap } from "kubernetes-models/v1/ConfigMap";
import { PersistentVolumeClaim } from "kubernetes-models/v1/PersistentVolumeClaim";
import { Service } from "kubernetes-models/v1/Service";

// deno-lint-ignore no-explicit-any
type Obj = Record<string, any>;

interface Kind {
  /** client-node model class name. */
  readonly model: string;
  // deno-lint-ignore no-explicit-any
  readonly schema: new (data: any) => { validate(): void };
}

/** The kinds the deploy manifests use: apiVersion/kind -> models. */
const KINDS: Readonly<Record<string, Kind>> = {
  "apps/v1/Deployment": { model: "V1Deployment", schema: Deployment },
  "v1/Service": { model: "V1Service", schema: Service },
  "v1/ConfigMap": { model: "V1ConfigMap", schema: ConfigMap },
  "v1/PersistentVolumeClaim": { model: "V1PersistentVolumeClaim", schema: PersistentVolumeClaim },
  "policy/v1/PodDisruptionBudget": { model: "V1PodDisruptionBudget", schema: PodDisruptionBudget },
  "autoscaling/v2/HorizontalPodAutoscaler": {
    model: "V2HorizontalPodAutoscaler",
    schema: HorizontalPodAutoscaler,
  },
};

interface Attribute {
  readonly name: string;
  readonly baseName: string;
  readonly type: string;
  readonly format: string;
}

function attributes(model: string): Attribute[] | null {
  // deno-lint-ignore no-explicit-any
  const cls = (k8s as any)[model];
  return typeof cls?.getAttributeTypeMap === "function" ? cls.getAttributeTypeMap() : null;
}

const isObject = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

/** Strict structural check of `value` against client-node's type `type`; appends to `errors`. */
function walk(value: unknown, type: string, format: string, path: string, errors: string[]): void {
  if (value === null || value === undefined) return;
  const bad = (what: string) => errors.push(`${path}: expected ${what}, got ${JSON.stringify(value)}`);
  const array = type.match(/^Array<(.+)>$/);
  const map = type.match(/^\{ \[key: string\]: (.+); \}$/);
  if (type === "string" || type === "Date") {
    if (typeof value !== "string") bad("a string");
  } else if (type === "number") {
    if (typeof value !== "number") bad("a number");
    else if (/^int/.test(format) && !Number.isInteger(value)) bad("an integer");
  } else if (type === "boolean") {
    if (typeof value !== "boolean") bad("true or false");
  } else if (type === "IntOrString") {
    if (typeof value !== "string" && !Number.isInteger(value)) bad("an integer or a string");
  } else if (type === "any" || type === "object") {
    // free-form
  } else if (array) {
    if (!Array.isArray(value)) return void bad("a list");
    value.forEach((v, i) => walk(v, array[1], "", `${path}[${i}]`, errors));
  } else if (map) {
    if (!isObject(value)) return void bad("a map");
    for (const [k, v] of Object.entries(value)) walk(v, map[1], "", `${path}.${k}`, errors);
  } else {
    const attrs = attributes(type);
    if (!attrs) return void errors.push(`${path}: no model for type ${type}`);
    if (!isObject(value)) return void bad(`an object (${type})`);
    for (const [k, v] of Object.entries(value)) {
      const a = attrs.find((x) => x.baseName === k);
      if (!a) {
        errors.push(`${path}.${k}: unknown field (${type} has ${attrs.map((x) => x.baseName).join(", ")})`);
      } else walk(v, a.type, a.format, `${path}.${k}`, errors);
    }
  }
}

/**
 * The problems of one parsed manifest; empty when it is valid.
 *
 * @example
 * ```ts ignore
 * validateManifest({ apiVersion: "v1", kind: "Service", metadata: { name: "x" }, spec: { portz: [] } });
 * // ["Service x: spec.portz: unknown field (V1ServiceSpec has ...)"]
 * ```
 */
export function validateManifest(doc: Obj): string[] {
  const key = `${doc.apiVersion}/${doc.kind}`;
  const kind = KINDS[key];
  const name = `${doc.kind ?? "?"} ${doc.metadata?.name ?? "?"}`;
  if (!kind) return [`${name}: unsupported apiVersion/kind ${key} (known: ${Object.keys(KINDS).join(", ")})`];
  const errors: string[] = [];
  if (typeof doc.metadata?.name !== "string" || !doc.metadata.name) errors.push("metadata.name: required");
  walk(doc, kind.model, "", "", errors);
  try {
    new kind.schema(structuredClone(doc)).validate();
  } catch (e) {
    errors.push(...(e as Error).message.split("\n").filter(Boolean));
  }
  return errors.map((e) => `${name}: ${e.replace(/^\./, "")}`);
}

/** Parses every YAML document in `text` as plain data (empty documents skipped). */
export function parseManifests(text: string): Obj[] {
  return (loadAll(text) as Obj[]).filter((d) => d);
}

if (import.meta.main) {
  let failed = 0;
  for (const file of Deno.args) {
    for (const doc of parseManifests(Deno.readTextFileSync(file))) {
      const errors = validateManifest(doc);
      console.log(`${errors.length ? "FAIL" : "ok  "} ${file}: ${doc.kind} ${doc.metadata?.name}`);
      for (const e of errors) console.log(`     ${e}`);
      failed += errors.length ? 1 : 0;
    }
  }
  Deno.exit(failed ? 1 : 0);
}
