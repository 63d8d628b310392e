# syntax=docker/dockerfile:1
# foak-worker (the trainer) with CUDA 13.0 and LibTorch 2.11 (cu130), on
# Ubuntu 24.04 like the GPU hosts (shared/GPU_HOST.md). Build from the
# repository root (needs network access to download.pytorch.org):
#   docker build -f deploy/docker/worker.Dockerfile -t foak-worker:dev .
#
# LibTorch comes from the official C++ distribution, the
# libtorch-shared-with-deps zip, not the pip wheel: no Python or pip in
# either stage, the unzipped folder is the CMake prefix, and the zip carries
# the CUDA libraries LibTorch was built against (cuDNN, NCCL, cuBLAS...), so
# the runtime stage copies one folder. The GPU hosts use the wheel's LibTorch;
# both are 2.11.0+cu130 with the CXX11 ABI. Pass LIBTORCH_SHA256 to pin the
# download (the zip's published checksum); empty skips the check.
#
# gRPC 1.51, protobuf 3.21 and Abseil 20220623 come from Ubuntu 24.04 itself,
# the same versions as the Debian bundle of shared/GPU_HOST.md (which exists
# only because the GPU hosts have no network). The server (SQLite) and
# foakctl (yaml-cpp) are not built here.
ARG CUDA_VERSION=13.0.0
ARG UBUNTU_TAG=ubuntu24.04

FROM nvidia/cuda:${CUDA_VERSION}-devel-${UBUNTU_TAG} AS builder
ARG LIBTORCH_URL=https://download.pytorch.org/libtorch/cu130/libtorch-shared-with-deps-2.11.0%2Bcu130.zip
ARG LIBTORCH_SHA256=
ARG CUDA_ARCHITECTURES=90
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake ninja-build pkg-config ca-certificates curl unzip \
      libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler \
      libabsl-dev nlohmann-json3-dev libssl-dev \
      libpcre2-dev libutf8proc-dev libsentencepiece-dev \
 && rm -rf /var/lib/apt/lists/*
RUN curl -fsSL --retry 3 -o /tmp/libtorch.zip "${LIBTORCH_URL}" \
 && if [ -n "${LIBTORCH_SHA256}" ]; then echo "${LIBTORCH_SHA256}  /tmp/libtorch.zip" | sha256sum -c -; fi \
 && unzip -q /tmp/libtorch.zip -d /opt \
 && rm /tmp/libtorch.zip \
 && test -f /opt/libtorch/share/cmake/Torch/TorchConfig.cmake
WORKDIR /src
COPY CMakeLists.txt ./
COPY proto proto
COPY common common
COPY kernels kernels
COPY worker worker
COPY server server
COPY client client
COPY deploy/docker/runtime-packages.sh /usr/local/bin/runtime-packages.sh
# protobuf/gRPC are found before Torch by the top-level CMakeLists.txt
# (GPU_HOST.md trap 2); CUDA switches on because this LibTorch has it.
RUN cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_PREFIX_PATH=/opt/libtorch \
      -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHITECTURES}" \
      -DFOAK_BUILD_TESTS=OFF -DFOAK_BUILD_BENCH=OFF \
 && ninja -C build foak-worker \
 && mkdir -p /out/bin \
 && cp build/worker/foak-worker /out/bin/ \
 && LD_LIBRARY_PATH=/opt/libtorch/lib sh /usr/local/bin/runtime-packages.sh /out/bin/foak-worker \
      > /out/runtime-packages.txt \
 && cat /out/runtime-packages.txt

FROM nvidia/cuda:${CUDA_VERSION}-runtime-${UBUNTU_TAG}
COPY --from=builder /out/runtime-packages.txt /tmp/runtime-packages.txt
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive xargs -a /tmp/runtime-packages.txt \
      apt-get install -y --no-install-recommends \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages.txt \
 && groupadd --gid 10001 foak \
 && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/foak \
      --shell /usr/sbin/nologin foak
# LibTorch's shared libraries only (no headers, no CMake files).
COPY --from=builder /opt/libtorch/lib/ /opt/libtorch/lib/
COPY --from=builder /out/bin/foak-worker /usr/local/bin/foak-worker
ENV LD_LIBRARY_PATH=/opt/libtorch/lib
USER 10001:10001
WORKDIR /home/foak
ENTRYPOINT ["/usr/local/bin/foak-worker"]
CMD ["--help"]
