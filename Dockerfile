# syntax=docker/dockerfile:1.7
#
# GPU worker image for RunPod Serverless: MinerU 4.0.12 with its GPU extras (vLLM) and the models
# of the chosen tier baked in, and our release binary as the entry point.
#
#   docker build -t mineru-worker:4.0.12 .                          # standard tier (VLM + pipeline models)
#   docker build --build-arg MINERU_TIER=basic -t mineru-worker:basic .
#
# docs/mineru-worker.md, "Deploying on RunPod (GPU)", has the endpoint settings.

ARG CUDA_IMAGE=nvidia/cuda:12.9.1-cudnn-runtime-ubuntu24.04

# --- build the worker --------------------------------------------------------------------------
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# The OTLP exporter and S3 client use rustls: no OpenSSL in either image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p mineru-handler \
 && install -m 0755 target/release/mineru-handler /usr/local/bin/mineru-handler

# --- runtime: CUDA + MinerU + baked models ------------------------------------------------------
FROM ${CUDA_IMAGE}
ARG MINERU_TIER=standard
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
# ca-certificates: TLS to OTLP and S3 endpoints; libgl1/libglib2.0-0: MinerU's image stack.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/mineru \
 && /opt/mineru/bin/pip install "mineru[full]==4.0.12"
# Models live in the image, so a cold start never downloads and FlashBoot snapshots stay small.
ENV MINERU_HOME=/opt/mineru-home MINERU_MODEL_BASE_DIR=/opt/mineru-models
RUN mkdir -p "$MINERU_HOME" "$MINERU_MODEL_BASE_DIR" \
 && /opt/mineru/bin/mineru-models-download --tier "$MINERU_TIER" -s huggingface \
 && /opt/mineru/bin/mineru-kit models verify --tier "$MINERU_TIER"
ENV MINERU_VENV=/opt/mineru \
    MINERU_SERVER_TIER=${MINERU_TIER} \
    MINERU_MODEL_SOURCE=local \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1
COPY --from=build /usr/local/bin/mineru-handler /usr/local/bin/mineru-handler
# The RunPod Hub's test job parses this sample (.runpod/tests.json; /worker is a default
# volume_path root).
COPY mineru-handler/assets/sample.pdf /worker/sample.pdf
# The worker supervises mineru-api itself (127.0.0.1, a free port) and warms it up before the
# first job is taken; nothing else needs to run in the container.
ENTRYPOINT ["/usr/local/bin/mineru-handler"]
