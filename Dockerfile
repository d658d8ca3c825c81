# probewatch container image.
#
# Build from the repository root:
#   docker build -t probewatch:0.1.0 .
# Run: the entrypoint is `probewatch`; the default command serves the bundled
# Kubernetes config.  Other commands replace it:
#   docker run --rm -p 9637:9637 probewatch:0.1.0
#   docker run --rm -v "$PWD/probewatch.yml:/etc/probewatch/probewatch.yml:ro" probewatch:0.1.0 check --config.file=/etc/probewatch/probewatch.yml
#   docker run --rm -v /etc/probewatch/agent.key:/run/agent.key:ro probewatch:0.1.0 agent --key.file=/run/agent.key
# Python is pinned to the 3.11 line on Debian bookworm; for byte-for-byte
# reproducible builds pin the digest too: --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:...
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/probewatch
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter/ exporter/
COPY probes/ probes/
# The sip extra brings pjsua2, whose wheels are for x86_64: there every kind works.  On a
# platform without a wheel (arm64) the image is built without the sip kind, saying so once.
RUN if /opt/probewatch/bin/pip install -q --dry-run --only-binary=:all: "pjsua2-python>=2.15" >/dev/null 2>&1; \
    then /opt/probewatch/bin/pip install ".[sip]"; \
    else echo "probewatch: no pjsua2-python wheel for $(uname -m): building the image without the sip kind"; \
         /opt/probewatch/bin/pip install . ; fi

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="probewatch" \
      org.opencontainers.image.description="Prometheus exporter running configured probes: tcp, command, http, json, udp, icmp, sip" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.documentation="README.md in the source repository" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
# A fixed numeric uid/gid so Kubernetes can check runAsNonRoot without a passwd lookup;
# deploy/kubernetes runs the pod as the same ids.
RUN groupadd --gid 10001 probewatch \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin probewatch
COPY --from=build /opt/probewatch /opt/probewatch
COPY deploy/kubernetes/probewatch.yml /etc/probewatch/probewatch.yml
ENV PATH=/opt/probewatch/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
EXPOSE 9637
HEALTHCHECK --interval=30s --timeout=5s CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9637/-/healthy', timeout=4)"]
ENTRYPOINT ["probewatch"]
CMD ["serve", "--config.file=/etc/probewatch/probewatch.yml", "--web.listen-address=0.0.0.0:9637"]
