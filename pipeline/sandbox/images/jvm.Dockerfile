ARG BASE=musher-base
FROM ${BASE}
USER root
RUN apt-get update && apt-get install -y --no-install-recommends openjdk-17-jdk-headless maven \
 && rm -rf /var/lib/apt/lists/*
USER musher
