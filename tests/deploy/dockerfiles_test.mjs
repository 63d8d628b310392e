// Checks deploy/docker/*.Dockerfile without a Docker daemon (none on CI):
//  - dockerfile-utils' validator (the linter of the VS Code Docker language
//    server: instruction syntax, arguments, flags, ports) reports nothing;
//  - structural rules asserted here on the dockerfile-ast parse: multi-stage
//    with a named builder, base images pinned by tag (no "latest"), no ADD
//    (so no ADD of URLs), apt lists removed in the RUN that fetched them and
//    --no-install-recommends, the final stage runs as a fixed non-root
//    uid that matches deploy/k8s, exec-form ENTRYPOINT, COPY sources that
//    exist and are not excluded by .dockerignore;
//  - foakd's image exposes the ports and volume the manifests use; the
//    worker's is CUDA 13 devel -> runtime with LibTorch 2.11 cu130.
// Not checked: that the images build or run (hadolint is not packaged for
// Debian 12 or npm, and building needs a daemon and network).
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import { kRepo, toolsRequire } from "./deploy_test_util.mjs";

const { validate } = toolsRequire("dockerfile-utils");
const { DockerfileParser } = toolsRequire("dockerfile-ast");
const YAML = toolsRequire("yaml");

const kDocker = join(kRepo, "deploy", "docker");
const kFiles = ["foakd.Dockerfile", "worker.Dockerfile"];
const kDeployment = YAML.parse(readFileSync(join(kRepo, "deploy", "k8s", "base", "deployment.yaml"), "utf8"));
const kPodUid = kDeployment.spec.template.spec.securityContext.runAsUser;

function Parse(name) {
  const text = readFileSync(join(kDocker, name), "utf8");
  const ast = DockerfileParser.parse(text);
  const instructions = ast.getInstructions().map((i) => ({
    keyword: i.getKeyword(), args: i.getArguments().map((a) => a.getValue()), raw: i.getTextContent(),
    line: i.getRange().start.line + 1,
  }));
  // ARG defaults declared before the first FROM (they parameterise FROM).
  const globals = {};
  for (const i of instructions) {
    if (i.keyword === "FROM") break;
    if (i.keyword === "ARG") for (const a of i.args) { const [k, v = ""] = a.split("="); globals[k] = v; }
  }
  const expand = (s) => s.replace(/\$\{(\w+)\}/g, (_, k) => globals[k] ?? "");
  // Split into stages.
  const stages = [];
  for (const i of instructions) {
    if (i.keyword === "FROM") {
      const asIndex = i.args.findIndex((a) => a.toUpperCase() === "AS");
      stages.push({ image: expand(i.args[0]), name: asIndex >= 0 ? i.args[asIndex + 1] : null, body: [] });
    } else if (stages.length > 0) {
      stages.at(-1).body.push(i);
    }
  }
  return { text, instructions, stages, globals };
}

function Ignored() {
  return readFileSync(join(kRepo, ".dockerignore"), "utf8").split("\n")
    .map((l) => l.trim()).filter((l) => l && !l.startsWith("#")).map((l) => l.replace(/\/$/, ""));
}

for (const name of kFiles) {
  const df = Parse(name);

  test(`${name}: dockerfile-utils reports no problem`, () => {
    const problems = validate(df.text, {}).map((d) => `line ${d.range.start.line + 1}: ${d.message}`);
    assert.deepEqual(problems, []);
  });

  test(`${name}: multi-stage, named builder, pinned bases, no ADD`, () => {
    assert.ok(df.stages.length >= 2, "one stage only");
    assert.equal(df.stages[0].name, "builder");
    for (const s of df.stages) {
      assert.match(s.image, /^[a-z0-9./-]+:[A-Za-z0-9._-]+$/, `base image ${s.image} must carry a tag`);
      assert.doesNotMatch(s.image, /:latest$/);
    }
    const final = df.stages.at(-1);
    assert.notEqual(final.image, df.stages[0].image, "the final stage must not be the builder's base");
    assert.ok(final.body.some((i) => i.keyword === "COPY" && i.raw.includes("--from=builder")));
    assert.deepEqual(df.instructions.filter((i) => i.keyword === "ADD").map((i) => i.line), []);
  });

  test(`${name}: apt hygiene in every RUN that installs`, () => {
    for (const i of df.instructions.filter((x) => x.keyword === "RUN" && x.raw.includes("apt-get install"))) {
      assert.match(i.raw, /--no-install-recommends/, `line ${i.line}`);
      assert.match(i.raw, /apt-get update/, `line ${i.line}: update in the same RUN`);
      assert.match(i.raw, /rm -rf \/var\/lib\/apt\/lists/, `line ${i.line}: lists removed`);
    }
  });

  test(`${name}: final stage runs as uid ${kPodUid} (not root), exec-form entrypoint`, () => {
    const body = df.stages.at(-1).body;
    const users = body.filter((i) => i.keyword === "USER");
    assert.ok(users.length > 0, "no USER in the final stage");
    const user = users.at(-1);
    assert.equal(user.args[0], `${kPodUid}:${kPodUid}`);
    assert.ok(body.indexOf(user) > body.findLastIndex((i) => i.keyword === "RUN"), "RUN after USER");
    const entry = body.filter((i) => i.keyword === "ENTRYPOINT").at(-1);
    assert.ok(entry, "no ENTRYPOINT");
    assert.ok(Array.isArray(JSON.parse(entry.raw.replace(/^ENTRYPOINT\s+/, ""))), "ENTRYPOINT must be exec form");
  });

  test(`${name}: COPY sources exist and are in the build context`, () => {
    const ignored = Ignored();
    for (const i of df.instructions.filter((x) => x.keyword === "COPY" && !x.raw.includes("--from="))) {
      for (const src of i.args.filter((a) => !a.startsWith("--")).slice(0, -1)) {
        assert.ok(existsSync(join(kRepo, src)), `line ${i.line}: ${src} missing`);
        assert.ok(!ignored.some((p) => src === p || src.startsWith(`${p}/`)), `line ${i.line}: ${src} is .dockerignored`);
      }
    }
  });
}

test("foakd.Dockerfile: ports, volume and defaults match the manifests", () => {
  const df = Parse("foakd.Dockerfile");
  const final = df.stages.at(-1);
  assert.match(final.image, /^debian:12/);
  const expose = final.body.filter((i) => i.keyword === "EXPOSE").flatMap((i) => i.args).sort();
  const c = kDeployment.spec.template.spec.containers[0];
  assert.deepEqual(expose, c.ports.map((p) => String(p.containerPort)).sort());
  const dataDir = c.args.find((a) => a.startsWith("--data_dir=")).split("=")[1];
  assert.ok(final.body.some((i) => i.keyword === "VOLUME" && i.raw.includes(dataDir)));
  const cmd = final.body.find((i) => i.keyword === "CMD").raw;
  for (const a of ["--listen=0.0.0.0:7070", "--metrics_listen=0.0.0.0:9464", `--data_dir=${dataDir}`]) {
    assert.ok(cmd.includes(a), `CMD lacks ${a}`);
  }
  assert.ok(df.stages.every((s) => !/nvidia|cuda/.test(s.image)), "foakd's image carries no CUDA");
});

test("worker.Dockerfile: CUDA 13 devel -> runtime on Ubuntu 24.04, LibTorch 2.11 cu130", () => {
  const df = Parse("worker.Dockerfile");
  assert.match(df.globals.CUDA_VERSION, /^13\./);
  assert.match(df.stages[0].image, /^nvidia\/cuda:13\.[0-9.]+-devel-ubuntu24\.04$/);
  assert.match(df.stages.at(-1).image, /^nvidia\/cuda:13\.[0-9.]+-runtime-ubuntu24\.04$/);
  const url = df.instructions.find((i) => i.keyword === "ARG" && i.args[0].startsWith("LIBTORCH_URL=")).args[0];
  assert.match(url, /\/libtorch\/cu130\/libtorch-shared-with-deps-2\.11\.0%2Bcu130\.zip$/);
  assert.match(df.text, /ninja -C build foak-worker/);
});

test("the checks are not vacuous: a broken Dockerfile is flagged", () => {
  const problems = validate("FROM debian:12\nRUNN true\nEXPOSE http\nUSER\n", {}).map((d) => d.message);
  assert.ok(problems.some((m) => /Unknown instruction: RUNN/.test(m)), JSON.stringify(problems));
  assert.ok(problems.some((m) => /Invalid containerPort: http/.test(m)), JSON.stringify(problems));
  assert.ok(problems.some((m) => /no arguments/.test(m)), JSON.stringify(problems));
});
