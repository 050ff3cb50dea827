ARG BASE=musher-base
FROM ${BASE}
USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-pip python3-venv python3-pytest \
 && rm -rf /var/lib/apt/lists/*
USER musher
