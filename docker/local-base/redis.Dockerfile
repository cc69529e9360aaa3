# A stand-in for redis:7 built from Debian's packages alone (bookworm ships Redis 7.0), for
# machines with no image registry. Same binary name and data directory as the official image.
ARG DEBIAN_IMAGE=ranking-gateway-local/debian:bookworm
FROM ${DEBIAN_IMAGE}
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /data && chown redis:redis /data
WORKDIR /data
EXPOSE 6379
CMD ["redis-server", "--protected-mode", "no"]
