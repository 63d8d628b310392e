# syntax=docker/dockerfile:1
# foakd (the coordinator) and foakctl (its CLI): a small image without CUDA or
# LibTorch. Build from the repository root:
#   docker build -f deploy/docker/foakd.Dockerfile -t foakd:dev .
#
# Stage 1 builds on Debian 12 with the distribution's gRPC 1.51, protobuf
# 3.21 and Abseil, as scripts/install_deps.sh does. The top-level CMake
# configure requires a LibTorch (find_package(Torch)), so the builder installs
# Debian's CPU libtorch-dev although foakd and foakctl never link it.
# Stage 2 holds only the binaries and the runtime packages of the libraries
# they load, found with ldd + dpkg in the builder (runtime-packages.sh).

FROM debian:12 AS builder
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake ninja-build pkg-config ca-certificates \
      libtorch-dev \
      libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler \
      libabsl-dev nlohmann-json3-dev \
      libsqlite3-dev libcivetweb-dev libssl-dev libyaml-cpp-dev \
      libpcre2-dev libutf8proc-dev libsentencepiece-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt ./
COPY proto proto
COPY common common
COPY kernels kernels
COPY worker worker
COPY server server
COPY client client
COPY deploy/docker/runtime-packages.sh /usr/local/bin/runtime-packages.sh
RUN cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DFOAK_BUILD_TESTS=OFF -DFOAK_BUILD_BENCH=OFF -DFOAK_COMPILE_CUDA=OFF \
 && ninja -C build foakd foakctl \
 && mkdir -p /out/bin \
 && install -s build/server/transport/foakd build/client/foakctl /out/bin/ \
 && sh /usr/local/bin/runtime-packages.sh /out/bin/foakd /out/bin/foakctl > /out/runtime-packages.txt \
 && cat /out/runtime-packages.txt

FROM debian:12-slim
COPY --from=builder /out/runtime-packages.txt /tmp/runtime-packages.txt
# Fixed uid/gid 10001: deploy/k8s runs the pod as this user and gives it the
# data volume with fsGroup 10001.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive xargs -a /tmp/runtime-packages.txt \
      apt-get install -y --no-install-recommends \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages.txt \
 && groupadd --gid 10001 foak \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /var/lib/foakd \
      --shell /usr/sbin/nologin foak \
 && mkdir -p /var/lib/foakd \
 && chown 10001:10001 /var/lib/foakd
COPY --from=builder /out/bin/ /usr/local/bin/
COPY --chmod=0755 deploy/docker/no-worker.sh /usr/local/libexec/foak/foak-worker
USER 10001:10001
WORKDIR /var/lib/foakd
VOLUME ["/var/lib/foakd"]
# 7070: gRPC (JobService, FileService, WorkerService, health, reflection);
# 9464: Prometheus /metrics.
EXPOSE 7070 9464
ENV FOAK_SERVER=127.0.0.1:7070
ENTRYPOINT ["/usr/local/bin/foakd"]
# Defaults, replaced as a whole by `docker run IMAGE ARGS...` or a pod's args.
# No GPU and no worker in this image: --gpus=none, and --worker names a stub
# that fails the job with an explanation (foakd requires --worker to exist).
CMD ["--listen=0.0.0.0:7070", "--metrics_listen=0.0.0.0:9464", \
     "--data_dir=/var/lib/foakd", "--gpus=none", \
     "--worker=/usr/local/libexec/foak/foak-worker"]
