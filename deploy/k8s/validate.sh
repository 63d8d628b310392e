#!/usr/bin/env bash
# Validates Kubernetes objects against the official OpenAPI schemas, offline:
#   deploy/k8s/validate.sh [--kustomize DIR]... [FILE | -]...
# FILE: YAML or JSON, one or more documents ("-" = stdin); --kustomize DIR
# renders DIR with kustomize or kubectl kustomize first. Exit 0 all valid, 1
# some invalid, 2 usage / no renderer. See deploy/tools/k8s_validate.mjs.
# Needs the npm packages of deploy/tools (scripts/install_deps.sh).
set -euo pipefail
tools="$(cd "$(dirname "$0")/../tools" && pwd)"
if [ ! -d "$tools/node_modules/kubernetes-models" ]; then
  echo "validate.sh: $tools/node_modules missing; run scripts/install_deps.sh" >&2
  exit 2
fi
exec node "$tools/k8s_validate.mjs" "$@"
