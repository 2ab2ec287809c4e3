# Build: docker build -t dvmesh .
# Run:   docker run --rm -v $PWD/cluster/node1:/node -p 3610:3610 -p 3620:3620 dvmesh \
#          run --node-dir /node --beacon-url http://beacon:5052 --monitoring-addr 0.0.0.0:3620
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# The BLS library is cgo; the golang image has gcc.
RUN CGO_ENABLED=1 go build -trimpath -ldflags="-s -w" -o /out/dvmesh ./cmd/dvmesh

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /data dvmesh && mkdir -p /data && chown dvmesh /data
COPY --from=build /out/dvmesh /usr/local/bin/dvmesh
USER dvmesh
VOLUME /data
EXPOSE 3610 3620
# Ready = slashing DB open, beacon node answering, quorum of peers, Raft leader (see /readyz).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s CMD ["/usr/local/bin/dvmesh", "health", "--monitoring-addr", "127.0.0.1:3620"]
ENTRYPOINT ["/usr/local/bin/dvmesh"]
CMD ["--help"]
