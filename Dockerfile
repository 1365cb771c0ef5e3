# syntax=docker/dockerfile:1
#
# Sluice as a static binary on distroless, running as non-root.
#   docker build -t sluice --build-arg VERSION=$(git describe --tags --always) .
#   docker run --rm -v $PWD/examples:/etc/sluice:ro sluice validate -f /etc/sluice/sluice.yaml
#
# The go build line below is also run by deploy's tests (same flags, CGO_ENABLED=0), which
# check that the binary it produces is statically linked.

FROM golang:1.26.8-bookworm AS build
WORKDIR /src
# Dependencies first, so that a source change reuses the module download layer.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /out/sluice ./cmd/sluice

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/sluice /usr/local/bin/sluice
# distroless "nonroot": uid/gid 65532, no shell, no package manager.
USER 65532:65532
# 9900: admin API, /metrics, /healthz, /readyz. 18000: xDS (gRPC).
EXPOSE 9900 18000
ENTRYPOINT ["/usr/local/bin/sluice"]
CMD ["serve", "-f", "/etc/sluice/sluice.yaml"]
