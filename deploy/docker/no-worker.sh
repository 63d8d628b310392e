#!/bin/sh
# Stands in for foak-worker in the foakd image, which has no LibTorch: foakd
# checks at start that its --worker exists. A job that foakd's local launcher
# starts here fails at once with this message.
echo "foak-worker is not in the foakd image: run workers from the foak-worker image" \
     "(deploy/docker/worker.Dockerfile) through foakd's Kubernetes launcher" >&2
exit 1
