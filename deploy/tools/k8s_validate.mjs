#!/usr/bin/env node
// Validates Kubernetes objects against the official Kubernetes OpenAPI schema
// (and the Prometheus Operator's CRD schemas), offline.
//
// The schemas are the validators that kubernetes-models generates from the
// Kubernetes OpenAPI spec and compiles with Ajv (kubernetes-models 4.5.1 =
// Kubernetes v1.33.0; @kubernetes-models/prometheus-operator 4.4.4 = the
// operator's v0.65.1 CRDs). They check types, enums, required fields and
// formats, but like the OpenAPI spec itself they allow fields it does not
// declare, so a misspelt "readinesProbe" would pass. This tool adds the strict
// check that kubeconform's -strict and the API server's
// fieldValidation=Strict make: the object is handed to the generated validator
// through a Proxy that records every field the validator reads; a generated
// validator reads each property its schema declares (and every key of a map),
// so a field it never read is one the schema does not know. Free-form fields
// (x-kubernetes-preserve-unknown-fields) would be reported too; foak's
// objects have none.
//
// Not checked (the API server checks these, no OpenAPI schema holds them):
// name syntax (DNS-1123), label-selector/template agreement, cross-object
// references, admission policies.
//
// CLI:   node k8s_validate.mjs [--kustomize DIR]... [FILE | -]...
//        FILE holds YAML or JSON, one or more documents ("-" = stdin);
//        --kustomize renders DIR with `kustomize build` or `kubectl kustomize`.
//        Prints "ok   SOURCE KIND NAMESPACE/NAME" per valid object and
//        "FAIL SOURCE KIND NAME: PATH MESSAGE" per problem.
//        Exit 0: all valid; 1: some object invalid (or unparsable YAML, or
//        nothing to validate); 2: usage error or no kustomize renderer.
// Library: import { validateObject, validateYaml, renderKustomize } from
//        "deploy/tools/k8s_validate.mjs" (see each function's comment).
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

import { parseAllDocuments } from "yaml";

const require = createRequire(import.meta.url);

// apiVersion group -> the npm package whose generated models cover it.
const kCrdPackages = {
  "monitoring.coreos.com": "@kubernetes-models/prometheus-operator",
};

function ModelPath(apiVersion, kind) {
  if (!/^([a-z0-9.-]+\/)?v[0-9]+((alpha|beta)[0-9]+)?$/.test(apiVersion) || !/^[A-Z][A-Za-z0-9]*$/.test(kind)) {
    return null;
  }
  const group = apiVersion.includes("/") ? apiVersion.split("/")[0] : "";
  const pkg = kCrdPackages[group] ?? "kubernetes-models";
  return `${pkg}/${apiVersion}/${kind}`;
}

const model_cache = new Map();

// The generated model class for apiVersion + kind, or null if none is known.
function LoadModel(apiVersion, kind) {
  const key = `${apiVersion} ${kind}`;
  if (!model_cache.has(key)) {
    let model = null;
    const path = ModelPath(apiVersion, kind);
    if (path) {
      try {
        const mod = require(path);
        const cls = mod[kind];
        if (cls && cls.apiVersion === apiVersion && cls.kind === kind) model = cls;
      } catch (e) {
        if (e.code !== "MODULE_NOT_FOUND" && e.code !== "ERR_PACKAGE_PATH_NOT_EXPORTED") throw e;
      }
    }
    model_cache.set(key, model);
  }
  return model_cache.get(key);
}

function JoinPath(path, key) {
  return `${path}/${String(key).replace(/~/g, "~0").replace(/\//g, "~1")}`;
}

// A view of `value` that adds the JSON-pointer path of every own property read
// through it (at any depth) to `read`.
function TrackReads(value, path, read) {
  if (value === null || typeof value !== "object") return value;
  const children = new Map();
  return new Proxy(value, {
    get(target, key, receiver) {
      const v = Reflect.get(target, key, receiver);
      if (typeof key !== "string" || !Object.prototype.hasOwnProperty.call(target, key)) return v;
      const child = JoinPath(path, key);
      read.add(child);
      if (!children.has(key)) children.set(key, TrackReads(v, child, read));
      return children.get(key);
    },
  });
}

// Paths of object fields never read, outermost only (the fields under an
// unknown field are not listed again).
function UnreadFields(value, path, read, out) {
  if (Array.isArray(value)) {
    value.forEach((v, i) => UnreadFields(v, JoinPath(path, i), read, out));
  } else if (value !== null && typeof value === "object") {
    for (const [key, v] of Object.entries(value)) {
      const child = JoinPath(path, key);
      if (!read.has(child)) {
        out.push(child);
      } else {
        UnreadFields(v, child, read, out);
      }
    }
  }
  return out;
}

// Validates one object (a parsed manifest). Returns a list of problems, each
// { path, message } with a JSON-pointer path; [] means valid.
export function validateObject(obj) {
  if (obj === null || typeof obj !== "object" || Array.isArray(obj)) {
    return [{ path: "", message: "is not an object (a Kubernetes object is a mapping)" }];
  }
  const { apiVersion, kind } = obj;
  if (typeof apiVersion !== "string" || typeof kind !== "string") {
    return [{ path: "", message: "must have string fields apiVersion and kind" }];
  }
  const model = LoadModel(apiVersion, kind);
  if (!model) {
    return [{ path: "/kind", message: `no schema for apiVersion ${apiVersion}, kind ${kind} (unknown or misspelt)` }];
  }
  const problems = [];
  const meta = obj.metadata;
  if (!meta || typeof meta !== "object" || (!meta.name && !meta.generateName)) {
    problems.push({ path: "/metadata", message: "must set name or generateName" });
  }
  const read = new Set(["/apiVersion", "/kind"]);
  try {
    model.prototype.validate.call(TrackReads(obj, "", read));
  } catch (e) {
    if (!Array.isArray(e.errors)) throw e;
    for (const err of e.errors) {
      const detail = err.params && err.params.allowedValues ? ` (${err.params.allowedValues.join(", ")})` : "";
      problems.push({ path: err.instancePath, message: `${err.message}${detail}` });
    }
  }
  if (problems.length === 0) {
    for (const path of UnreadFields(obj, "", read, [])) {
      problems.push({ path, message: "unknown field (not in the schema)" });
    }
  }
  return problems;
}

// Parses YAML/JSON text with one or more documents and validates each object
// (a kind "List" is unpacked). Returns [{ doc, kind, name, namespace,
// problems }]; YAML errors come back as problems of their document.
export function validateYaml(text) {
  const results = [];
  parseAllDocuments(text).forEach((doc, index) => {
    if (doc.errors.length > 0) {
      results.push({ doc: index, kind: "?", name: "?", namespace: "",
                     problems: doc.errors.map((e) => ({ path: "", message: `YAML: ${e.message}` })) });
      return;
    }
    const value = doc.toJS();
    if (value === null || value === undefined) return;  // empty document
    const objects = value.kind === "List" && Array.isArray(value.items) ? value.items : [value];
    for (const obj of objects) {
      const meta = (obj && obj.metadata) || {};
      results.push({ doc: index, kind: (obj && obj.kind) || "?", name: meta.name || meta.generateName || "?",
                     namespace: meta.namespace || "", problems: validateObject(obj) });
    }
  });
  return results;
}

// Renders a kustomization directory to YAML with `kustomize build` or, when
// there is no kustomize on PATH, `kubectl kustomize` ($KUSTOMIZE overrides:
// a command line, e.g. "kubectl kustomize"). Throws when neither works.
export function renderKustomize(dir) {
  const candidates = process.env.KUSTOMIZE
    ? [process.env.KUSTOMIZE.split(/\s+/)]
    : [["kustomize", "build"], ["kubectl", "kustomize"]];
  const failures = [];
  for (const [cmd, ...args] of candidates) {
    try {
      return execFileSync(cmd, [...args, dir], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    } catch (e) {
      if (e.code === "ENOENT") {
        failures.push(`${cmd}: not installed`);
        continue;
      }
      throw new Error(`${cmd} ${args.join(" ")} ${dir} failed: ${(e.stderr || e.message).trim()}`);
    }
  }
  throw new Error(`no kustomize renderer (${failures.join("; ")}): install kustomize or kubectl >= 1.27`);
}

function Main(argv) {
  const sources = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--kustomize") {
      if (i + 1 >= argv.length) return Usage("--kustomize needs a directory");
      sources.push({ label: `kustomize:${argv[i + 1]}`, kustomize: argv[++i] });
    } else if (argv[i] === "-h" || argv[i] === "--help") {
      return Usage(null);
    } else if (argv[i].startsWith("--")) {
      return Usage(`unknown flag ${argv[i]}`);
    } else {
      sources.push({ label: argv[i] === "-" ? "stdin" : argv[i], file: argv[i] });
    }
  }
  if (sources.length === 0) return Usage("nothing to validate");
  let objects = 0;
  let invalid = 0;
  for (const source of sources) {
    let text;
    try {
      text = source.kustomize !== undefined ? renderKustomize(source.kustomize)
                                            : readFileSync(source.file === "-" ? 0 : source.file, "utf8");
    } catch (e) {
      console.error(`k8s_validate: ${source.label}: ${e.message}`);
      return source.kustomize !== undefined && /no kustomize renderer/.test(e.message) ? 2 : 1;
    }
    for (const r of validateYaml(text)) {
      objects++;
      const where = `${source.label} ${r.kind} ${r.namespace ? r.namespace + "/" : ""}${r.name}`;
      if (r.problems.length === 0) {
        console.log(`ok   ${where}`);
        continue;
      }
      invalid++;
      for (const p of r.problems) console.log(`FAIL ${where} (document ${r.doc + 1}): ${p.path || "/"} ${p.message}`);
    }
  }
  console.log(`k8s_validate: ${objects} object(s), ${invalid} invalid`);
  return objects === 0 || invalid > 0 ? 1 : 0;
}

function Usage(error) {
  if (error) console.error(`k8s_validate: ${error}`);
  console.error("usage: k8s_validate.mjs [--kustomize DIR]... [FILE | -]...");
  return error ? 2 : 0;
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = Main(process.argv.slice(2));
}
