# syntax=docker/dockerfile:1
# The ebpf-metrics image: the static agent, with the file capabilities
# cap_bpf,cap_perfmon+ep, run as user 65534 on a distroless base (no shell,
# no package manager; CA certificates for OTLP over https).
#
#   docker build -t ebpf-metrics .
#
# Kubernetes gives a non-root container no ambient capabilities, so the
# capabilities that the chart adds (BPF, PERFMON) reach the agent only
# through these file capabilities (docs/kubernetes.md, The image). The
# final stage copies them from the setcap stage, which needs a builder that
# keeps a file's security.capability across COPY --from (current BuildKit
# and Buildah do). tools/helm's TestDaemonSetUnderRunc follows
# this recipe without a container engine: the same build command, the setcap
# line below, the user below, under runc as the chart's DaemonSet.

ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY cmd ./cmd
COPY internal ./internal
ARG VERSION=0.1.0
# Static: the final image has no libc. The BPF iterators are committed
# objects embedded in the binary: no clang needed here.
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/prometheus/common/version.Version=${VERSION}" \
      -o /out/ebpf-metrics ./cmd/ebpf-metrics

# setcap is in Debian's libcap2-bin; the final image has no package manager.
FROM debian:bookworm-slim AS caps
RUN apt-get update && apt-get install -y --no-install-recommends libcap2-bin \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/ebpf-metrics /ebpf-metrics
RUN setcap cap_bpf,cap_perfmon+ep /ebpf-metrics && getcap /ebpf-metrics

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=caps /ebpf-metrics /usr/local/bin/ebpf-metrics
USER 65534:65534
EXPOSE 9436
ENTRYPOINT ["/usr/local/bin/ebpf-metrics"]
