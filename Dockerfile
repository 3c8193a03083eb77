# mosaik-node in a small non-root image.
#
#   docker build -t mosaik-node .
#   docker run --rm -v mosaik:/data -p 4001:4001 -p 4001:4001/udp mosaik-node \
#     run --network NAME --key /data/node.key --data-dir /data \
#         --listen /ip4/0.0.0.0/tcp/4001 --listen /ip4/0.0.0.0/udp/4001/quic-v1 \
#         --bootstrap /ip4/…/tcp/4001/p2p/12D3KooW…
#
# mDNS finds nothing from inside Docker's bridge network: pass --bootstrap
# (or --rendezvous), or run with --network host.

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# A static binary (no cgo) runs on the distroless base, which has no libc.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/mosaik-node ./cmd/mosaik-node

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/mosaik-node /usr/local/bin/mosaik-node
# The key file and the groups' raft data (--key, --data-dir) belong here,
# so that they survive the container.
VOLUME /data
WORKDIR /data
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/mosaik-node"]
CMD ["--help"]
