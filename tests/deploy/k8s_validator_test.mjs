// deploy/tools/k8s_validate.mjs must reject broken objects, not only accept
// good ones: wrong types, bad enums, missing required fields, unknown or
// misspelt fields and kinds, broken ServiceMonitors. It must accept the
// objects foakd's coming Kubernetes launcher creates (an Indexed Job, a
// headless Service). Also checks the CLI's exit codes.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";

import { kRepo, kTools, validator } from "./deploy_test_util.mjs";

const { validateObject, validateYaml } = validator;

function Deployment() {
  return {
    apiVersion: "apps/v1", kind: "Deployment", metadata: { name: "foakd" },
    spec: {
      replicas: 1, strategy: { type: "Recreate" },
      selector: { matchLabels: { app: "foakd" } },
      template: {
        metadata: { labels: { app: "foakd" } },
        spec: { containers: [{ name: "foakd", image: "foakd:dev", ports: [{ name: "grpc", containerPort: 7070 }],
                               readinessProbe: { grpc: { port: 7070 } } }] },
      },
    },
  };
}

function Messages(obj) {
  return validateObject(obj).map((p) => `${p.path} ${p.message}`);
}

test("a good Deployment passes", () => {
  assert.deepEqual(Messages(Deployment()), []);
});

test("a launcher-style Indexed Job and headless Service pass", () => {
  const job = {
    apiVersion: "batch/v1", kind: "Job",
    metadata: { name: "foak-job-42-attempt-1", labels: { "foak.dev/job": "42" } },
    spec: {
      completionMode: "Indexed", completions: 2, parallelism: 2, backoffLimit: 0,
      template: {
        metadata: { labels: { "foak.dev/job": "42" } },
        spec: {
          restartPolicy: "Never", subdomain: "foak-job-42",
          containers: [{
            name: "worker", image: "foak-worker:dev", args: ["train", "--job", "/job/job.json"],
            env: [{ name: "WORLD_SIZE", value: "2" }, { name: "MASTER_PORT", value: "29500" }],
            resources: { limits: { "nvidia.com/gpu": 1 } },
          }],
        },
      },
    },
  };
  const svc = {
    apiVersion: "v1", kind: "Service", metadata: { name: "foak-job-42" },
    spec: { clusterIP: "None", selector: { "foak.dev/job": "42" }, ports: [{ name: "c10d", port: 29500 }] },
  };
  assert.deepEqual(Messages(job), []);
  assert.deepEqual(Messages(svc), []);
});

const kBroken = {
  "a string where an integer belongs": [(d) => { d.spec.replicas = "one"; }, /\/spec\/replicas must be integer/],
  "an enum value that does not exist": [(d) => { d.spec.strategy.type = "Recreat"; }, /\/spec\/strategy\/type .*allowed values/],
  "a missing required field": [(d) => { delete d.spec.selector; }, /must have required property '?selector'?/],
  "a container without a name": [(d) => { delete d.spec.template.spec.containers[0].name; }, /containers\/0 must have required property '?name'?/],
  "a misspelt field": [(d) => {
    const c = d.spec.template.spec.containers[0];
    c.readinesProbe = c.readinessProbe;
    delete c.readinessProbe;
  }, /containers\/0\/readinesProbe unknown field/],
  "an unknown field deep inside": [(d) => { d.spec.template.spec.containers[0].readinessProbe.grpc.portt = 1; },
                                   /readinessProbe\/grpc\/portt unknown field/],
  "a wrongly typed label value": [(d) => { d.metadata.labels = { tier: 3 }; }, /\/metadata\/labels\/tier must be string/],
  "no name": [(d) => { delete d.metadata.name; }, /\/metadata must set name or generateName/],
  "a misspelt kind": [(d) => { d.kind = "Deploymnet"; }, /no schema for apiVersion apps\/v1, kind Deploymnet/],
  "a wrong apiVersion": [(d) => { d.apiVersion = "extensions/v1"; }, /no schema/],
};
for (const [what, [breakIt, expected]] of Object.entries(kBroken)) {
  test(`rejects ${what}`, () => {
    const d = Deployment();
    breakIt(d);
    const messages = Messages(d);
    assert.ok(messages.some((m) => expected.test(m)), `expected ${expected}, got ${JSON.stringify(messages)}`);
  });
}

test("ServiceMonitor: checked against the Prometheus Operator CRD schema", () => {
  const sm = { apiVersion: "monitoring.coreos.com/v1", kind: "ServiceMonitor", metadata: { name: "foakd" },
               spec: { selector: { matchLabels: { app: "foakd" } }, endpoints: [{ port: "metrics", interval: "30s" }] } };
  assert.deepEqual(Messages(sm), []);
  assert.ok(Messages({ ...sm, spec: { ...sm.spec, endpoints: [{ port: "metrics", interval: "30 seconds" }] } })
    .some((m) => /interval must match pattern/.test(m)));
  assert.ok(Messages({ ...sm, spec: { endpoints: sm.spec.endpoints } })
    .some((m) => /must have required property '?selector'?/.test(m)));
  assert.ok(Messages({ ...sm, spec: { ...sm.spec, endpoint: sm.spec.endpoints } })
    .some((m) => /\/spec\/endpoint unknown field/.test(m)));
});

test("YAML: several documents, a List, and a syntax error", () => {
  const text = "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n" +
               "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\ndata: {x: 1}\n---\nkind: [\n";
  const results = validateYaml(text);
  assert.deepEqual(results.map((r) => [r.name, r.problems.length > 0]), [["a", false], ["b", true], ["?", true]]);
  assert.match(results[1].problems[0].message, /must be string/);
  assert.match(results[2].problems[0].message, /^YAML:/);
});

function Cli(args, input) {
  return spawnSync(process.execPath, [join(kTools, "k8s_validate.mjs"), ...args],
                   { input, encoding: "utf8", cwd: kRepo });
}

test("CLI: exit 0 valid, 1 invalid or empty, 2 usage", () => {
  const good = JSON.stringify(Deployment());
  const bad = JSON.stringify({ ...Deployment(), spec: { replicas: 1 } });
  let r = Cli(["-"], good);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^ok {3}stdin Deployment foakd$/m);
  r = Cli(["-"], bad);
  assert.equal(r.status, 1);
  assert.match(r.stdout, /^FAIL stdin Deployment foakd \(document 1\): \/spec must have required property '?selector'?/m);
  assert.equal(Cli(["-"], "").status, 1);
  assert.equal(Cli([]).status, 2);
  assert.equal(Cli(["--bogus"]).status, 2);
  assert.equal(Cli(["/nonexistent.yaml"]).status, 1);
});
