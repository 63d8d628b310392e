// Shared by the deploy tests: the repository's paths, and the npm packages of
// deploy/tools (resolved from there, since this folder has no node_modules).
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

export const kRepo = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const kTools = join(kRepo, "deploy", "tools");

if (!existsSync(join(kTools, "node_modules", "kubernetes-models"))) {
  console.error("deploy tests: deploy/tools/node_modules is missing; run scripts/install_deps.sh " +
                "(or npm ci --prefix deploy/tools)");
  process.exit(1);
}

export const toolsRequire = createRequire(join(kTools, "package.json"));
export const validator = await import(pathToFileURL(join(kTools, "k8s_validate.mjs")).href);
