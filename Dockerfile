# mosaik-node in a small non-root image.
#
#   docker build -t mosaik-node .
#   docker run --rm -v mosaik:/data -p 4801:4801 -p 4801:4801/udp mosaik-node \
#     run --network NAME --bootstrap /ip4/…/tcp/4801/p2p/12D3KooW…
#
# run keeps its identity (/data/node.key) and its groups' raft data in the
# /data volume (MOSAIK_DATA_DIR below) and listens on port 4801, TCP and
# QUIC, unless given --listen.
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
ENV MOSAIK_DATA_DIR=/data
EXPOSE 4801/tcp 4801/udp
WORKDIR /data
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/mosaik-node"]
CMD ["--help"]
