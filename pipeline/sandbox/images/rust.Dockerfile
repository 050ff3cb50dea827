ARG BASE=musher-base
FROM ${BASE}
USER root
RUN apt-get update && apt-get install -y --no-install-recommends pkg-config libssl-dev \
 && rm -rf /var/lib/apt/lists/*
USER musher
RUN curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
ENV PATH=/home/musher/.cargo/bin:$PATH
