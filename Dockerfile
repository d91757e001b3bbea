# porter-identity operator image: only the runtime package, non-root, no tests or emulators.
# BASE: any Debian-family image with python3 (3.11) and venv; tests build FROM a debootstrap base (porter_dev.images).
ARG BASE=python:3.11.11-slim-bookworm

FROM ${BASE} AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY hack/constraints.txt hack/constraints.txt
COPY operator/ operator/
# A virtualenv (Debian's own Python refuses system-wide pip installs, PEP 668), with the pinned versions the tests
# ran with. The wheel holds only the operator package: the emulators directory is not copied into the build.
RUN mkdir emulators \
    && python3 -m venv /opt/porter-identity \
    && /opt/porter-identity/bin/pip install --no-cache-dir -c hack/constraints.txt . \
    && /opt/porter-identity/bin/pip uninstall --yes pip

FROM ${BASE}
LABEL org.opencontainers.image.title="porter-identity" \
      org.opencontainers.image.description="Kubernetes operator linking ServiceAccounts to cloud identities" \
      org.opencontainers.image.source="https://github.com/porter-dev/porter-identity" \
      org.opencontainers.image.licenses="Apache-2.0"
# The same base in both stages: the virtualenv's interpreter links are valid here.
COPY --from=build /opt/porter-identity /opt/porter-identity
RUN useradd --uid 65532 --no-create-home --shell /usr/sbin/nologin porter
# The Helm chart runs this user with a read-only root filesystem: no bytecode is written at run time.
USER 65532:65532
ENV PATH=/opt/porter-identity/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# metrics, health (kopf --liveness), admission webhook
EXPOSE 8080 8081 9443
ENTRYPOINT ["porter-identity", "run"]
