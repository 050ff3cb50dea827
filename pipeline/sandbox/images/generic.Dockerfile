ARG BASE=musher-base
FROM ${BASE}
