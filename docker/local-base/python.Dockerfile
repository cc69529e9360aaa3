# A stand-in for python:3.11-slim built from Debian's packages alone, for machines that reach
# Debian's archive and PyPI but no image registry (this project's CI). Debian bookworm's python3
# is 3.11; libpython3.11 is the shared library Triton's python-backend stub links. The host's CA
# bundle comes along (scripts/docker_local_bases.sh puts it in the context): pip in the images
# then trusts what the host's pip trusts, a TLS-intercepting proxy's certificate included.
ARG DEBIAN_IMAGE=ranking-gateway-local/debian:bookworm
FROM ${DEBIAN_IMAGE}
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        python3 python3-venv libpython3.11 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && ln -s /usr/bin/python3 /usr/local/bin/python
COPY host-ca-bundle.crt /etc/ssl/host-ca-bundle.crt
ENV PIP_CERT=/etc/ssl/host-ca-bundle.crt SSL_CERT_FILE=/etc/ssl/host-ca-bundle.crt
