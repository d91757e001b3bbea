# porter-identity operator image: only the runtime package, non-root, no tests or emulators.
FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY operator/ operator/
# The wheel holds only the operator package: the emulators directory is not copied into the build.
RUN mkdir emulators && pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11.11-slim-bookworm
LABEL org.opencontainers.image.title="porter-identity" \
      org.opencontainers.image.description="Kubernetes operator linking ServiceAccounts to cloud identities" \
      org.opencontainers.image.source="https://github.com/porter-dev/porter-identity" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && useradd --uid 65532 --no-create-home --shell /usr/sbin/nologin porter
# The Helm chart runs this user with a read-only root filesystem: no bytecode is written at run time.
USER 65532:65532
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# metrics, health (kopf --liveness), admission webhook
EXPOSE 8080 8081 9443
ENTRYPOINT ["porter-identity", "run"]
