// Renders deploy/k8s/base and every overlay with a real kustomize (kubectl
// kustomize or kustomize build), validates every object against the official
// Kubernetes OpenAPI schema and the Prometheus Operator CRD schema
// (deploy/tools/k8s_validate.mjs), and checks the properties foakd depends
// on: one replica and Recreate (one SQLite writer), the volume at --data_dir,
// grpc probes on the gRPC port, the least-privilege Role, non-root security
// context, and ports named as the ServiceMonitor and Service expect.
// Exit 77 (ctest: skipped) when no kustomize renderer is installed.
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import { kRepo, toolsRequire, validator } from "./deploy_test_util.mjs";

const YAML = toolsRequire("yaml");
const kK8s = join(kRepo, "deploy", "k8s");
const kOverlays = readdirSync(join(kK8s, "overlays"));
const kTrees = ["base", ...kOverlays.map((o) => `overlays/${o}`)];

const rendered = {};
try {
  for (const tree of kTrees) rendered[tree] = validator.renderKustomize(join(kK8s, tree));
} catch (e) {
  if (/no kustomize renderer/.test(e.message)) {
    console.error(`SKIPPED: ${e.message}`);
    process.exit(77);
  }
  throw e;
}

function Objects(tree) {
  return YAML.parseAllDocuments(rendered[tree]).map((d) => d.toJS()).filter(Boolean);
}
function Find(tree, kind, name) {
  const found = Objects(tree).filter((o) => o.kind === kind && (!name || o.metadata.name === name));
  assert.equal(found.length, 1, `${tree}: expected one ${kind} ${name || ""}, found ${found.length}`);
  return found[0];
}

test("overlays exist: dev and production", () => {
  assert.deepEqual([...kOverlays].sort(), ["dev", "production"]);
});

for (const tree of kTrees) {
  test(`${tree}: every rendered object passes the schema`, () => {
    const results = validator.validateYaml(rendered[tree]);
    assert.ok(results.length >= 7, `${tree}: only ${results.length} objects`);
    const bad = results.filter((r) => r.problems.length > 0)
      .map((r) => `${r.kind}/${r.name}: ${r.problems.map((p) => `${p.path} ${p.message}`).join("; ")}`);
    assert.deepEqual(bad, []);
  });

  test(`${tree}: foakd Deployment is a single SQLite writer with grpc probes`, () => {
    const d = Find(tree, "Deployment", "foakd");
    assert.equal(d.spec.replicas, 1);
    assert.equal(d.spec.strategy.type, "Recreate");
    const pod = d.spec.template.spec;
    assert.equal(pod.serviceAccountName, "foakd");
    assert.equal(pod.securityContext.runAsNonRoot, true);
    assert.equal(pod.securityContext.runAsUser, 10001);
    const [c] = pod.containers;
    assert.equal(pod.containers.length, 1);
    assert.equal(c.securityContext.readOnlyRootFilesystem, true);
    assert.equal(c.securityContext.allowPrivilegeEscalation, false);
    assert.deepEqual(c.securityContext.capabilities.drop, ["ALL"]);
    const ports = Object.fromEntries(c.ports.map((p) => [p.name, p.containerPort]));
    assert.deepEqual(ports, { grpc: 7070, metrics: 9464 });
    assert.ok(c.args.includes("--listen=0.0.0.0:7070"));
    assert.ok(c.args.includes("--metrics_listen=0.0.0.0:9464"));
    for (const probe of [c.readinessProbe, c.livenessProbe]) assert.deepEqual(probe.grpc, { port: 7070 });
    for (const r of ["cpu", "memory"]) assert.ok(c.resources.requests[r], `requests.${r}`);
    assert.ok(c.resources.limits.memory);
    // foakd-data (ReadWriteOnce: the SQLite file) is mounted where --data_dir
    // points; foak-shared is mounted at --kube_shared_mount, which holds
    // --shared_dir, and the launcher mounts the same claim in every worker.
    const arg = (name) => c.args.find((a) => a.startsWith(`--${name}=`))?.split("=")[1];
    const mountOf = (claim) => {
      const vol = pod.volumes.find((v) => v.persistentVolumeClaim?.claimName === claim);
      assert.ok(vol, `no volume of claim ${claim}`);
      return c.volumeMounts.find((m) => m.name === vol.name).mountPath;
    };
    const data = Find(tree, "PersistentVolumeClaim", "foakd-data");
    assert.deepEqual(data.spec.accessModes, ["ReadWriteOnce"]);
    assert.equal(mountOf("foakd-data"), arg("data_dir"));
    Find(tree, "PersistentVolumeClaim", "foak-shared");
    assert.equal(arg("kube_shared_claim"), "foak-shared");
    assert.equal(mountOf("foak-shared"), arg("kube_shared_mount"));
    assert.ok(arg("shared_dir").startsWith(`${arg("kube_shared_mount")}/`), "--shared_dir on the shared volume");
    // A spec's paths are confined to the shared volume, the only folder foakd
    // and the worker pods both see (and never foakd's own --data_dir).
    const cm0 = Find(tree, "ConfigMap");
    for (const name of ["model_roots", "data_roots", "output_roots"]) {
      const value = arg(name).replace(/\$\(([A-Z_]+)\)/g, (_, v) => cm0.data[v]);
      assert.ok(value.length > 0, `--${name} is set`);
      for (const root of value.split(",")) {
        assert.ok(root === arg("kube_shared_mount") || root.startsWith(`${arg("kube_shared_mount")}/`),
                  `--${name} root ${root} on the shared volume`);
      }
    }
    // Every $(VAR) in args comes from the ConfigMap the container reads.
    const cm = Find(tree, "ConfigMap");
    assert.equal(c.envFrom[0].configMapRef.name, cm.metadata.name);
    for (const a of c.args) {
      for (const [, v] of a.matchAll(/\$\(([A-Z_]+)\)/g)) assert.ok(v in cm.data, `${v} not in ConfigMap`);
    }
  });

  test(`${tree}: Role grants exactly what the Kubernetes launcher needs`, () => {
    const role = Find(tree, "Role");
    const grants = role.rules.flatMap((r) => r.apiGroups.flatMap((g) => r.resources.map(
      (res) => `${g || "core"}/${res}: ${[...r.verbs].sort().join(",")}`))).sort();
    assert.deepEqual(grants, [
      "batch/jobs: create,delete,get,list,watch",
      "core/pods/log: get",
      "core/pods: get,list,watch",
      "core/services: create,delete,get",
    ]);
    const binding = Find(tree, "RoleBinding");
    assert.deepEqual(binding.roleRef, { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: role.metadata.name });
    assert.deepEqual(binding.subjects.map((s) => `${s.kind}/${s.name}`), ["ServiceAccount/foakd"]);
  });

  test(`${tree}: Service and ServiceMonitor agree on the ports`, () => {
    const svc = Find(tree, "Service");
    assert.deepEqual(svc.spec.ports.map((p) => [p.name, p.port]), [["grpc", 7070], ["metrics", 9464]]);
    const monitors = Objects(tree).filter((o) => o.kind === "ServiceMonitor");
    for (const m of monitors) {
      assert.deepEqual(m.spec.endpoints.map((e) => e.port), ["metrics"]);
      for (const [k, v] of Object.entries(m.spec.selector.matchLabels)) assert.equal(svc.metadata.labels[k], v);
    }
    assert.equal(monitors.length, tree === "overlays/dev" ? 0 : 1);
  });
}

test("base is namespace-agnostic; overlays set theirs and the image", () => {
  assert.ok(Objects("base").every((o) => o.metadata.namespace === undefined));
  const expect = { "overlays/dev": ["foak-dev", "foakd:dev"],
                   "overlays/production": ["foak", "registry.example.com/foak/foakd:0.1.0"] };
  for (const [tree, [ns, image]] of Object.entries(expect)) {
    for (const o of Objects(tree)) {
      if (o.kind !== "Namespace") assert.equal(o.metadata.namespace, ns, `${tree} ${o.kind}`);
    }
    assert.equal(Find(tree, "Namespace").metadata.name, ns);
    assert.equal(Find(tree, "Deployment").spec.template.spec.containers[0].image, image);
    assert.equal(Find(tree, "RoleBinding").subjects[0].namespace, ns);
  }
  assert.ok(Find("overlays/production", "PersistentVolumeClaim", "foakd-data").spec.storageClassName);
  // Production shares one volume across nodes; a one-node dev cluster's
  // hostPath provisioner only offers ReadWriteOnce.
  assert.deepEqual(Find("overlays/production", "PersistentVolumeClaim", "foak-shared").spec.accessModes,
                   ["ReadWriteMany"]);
  assert.deepEqual(Find("overlays/dev", "PersistentVolumeClaim", "foak-shared").spec.accessModes,
                   ["ReadWriteOnce"]);
  // Each overlay names its worker image; foakd runs every job through the
  // Kubernetes launcher.
  const worker = { "overlays/dev": "foak-worker:dev",
                   "overlays/production": "registry.example.com/foak/foak-worker:0.1.0" };
  for (const [tree, image] of Object.entries(worker)) {
    const cm = Find(tree, "ConfigMap");
    assert.equal(cm.data.FOAKD_WORKER_IMAGE, image);
    assert.equal(cm.data.FOAKD_LAUNCHER, "kubernetes");
  }
});
