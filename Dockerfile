# probewatch container image.
#
# Build from the repository root:
#   docker build -t probewatch:0.1.0 .
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
# The sip extra brings pjsua2 (a manylinux x86_64 wheel), so every probe kind works in the image.
RUN /opt/probewatch/bin/pip install ".[sip]"

FROM ${PYTHON_IMAGE}
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
ENTRYPOINT ["probewatch", "serve", "--config.file=/etc/probewatch/probewatch.yml", "--web.listen-address=0.0.0.0:9637"]
