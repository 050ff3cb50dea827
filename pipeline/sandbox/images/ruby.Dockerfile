ARG BASE=musher-base
FROM ${BASE}
USER root
RUN apt-get update && apt-get install -y --no-install-recommends ruby ruby-dev bundler \
 && rm -rf /var/lib/apt/lists/*
USER musher
