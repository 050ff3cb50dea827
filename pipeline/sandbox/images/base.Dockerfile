# musher's base image for project sandboxes (docker/podman). Every stack overlay starts
# FROM it. Non-root user `musher`; the project is bind-mounted at /workspace.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends git ca-certificates curl procps build-essential \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 1000 --shell /bin/bash musher \
 && mkdir /workspace && chown musher:musher /workspace
WORKDIR /workspace
USER musher
CMD ["sleep", "infinity"]
