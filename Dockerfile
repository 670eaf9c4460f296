# iusdiff container: CUDA base, Python 3.11, exactly the pins `make setup` installs.
#
#   docker compose build                # or: docker build -t iusdiff:0.1.0 .
#   docker compose run repro            # paper profile on the GPU (needs ./data and ./weights)
#   docker compose --profile cpu run cpu
#
# The base image is pinned by tag. To pin it by digest as well, resolve the tag once with
#   docker buildx imagetools inspect nvidia/cuda:13.0.0-base-ubuntu22.04
# and build with --build-arg CUDA_IMAGE=nvidia/cuda:13.0.0-base-ubuntu22.04@sha256:<digest>.
# torch 2.14.1 from PyPI bundles its CUDA 13.0 runtime; the host needs an NVIDIA driver that
# supports CUDA 13.0 (R580 or newer) and the NVIDIA Container Toolkit.
ARG CUDA_IMAGE=nvidia/cuda:13.0.0-base-ubuntu22.04
FROM ${CUDA_IMAGE}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Ubuntu's own python3.11 (jammy-updates); apt versions are left to the pinned base image.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv ca-certificates make \
    && rm -rf /var/lib/apt/lists/*

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python3.11 -m venv /opt/venv

WORKDIR /opt/iusdiff
COPY requirements.txt requirements-nodeps.txt ./
RUN pip install -r requirements.txt \
    && pip install --no-deps -r requirements-nodeps.txt

COPY . .

# Run time: no network, deterministic, nothing written outside /outputs and /tmp.
ENV IUSDIFF_PYTHON=/opt/venv/bin/python \
    PYTHONPATH=/opt/iusdiff/code \
    PYTHONHASHSEED=0 \
    HOME=/tmp \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_DATASETS_OFFLINE=1 \
    HF_HOME=/weights/huggingface \
    TORCH_HOME=/weights/torch \
    MPLBACKEND=Agg \
    MPLCONFIGDIR=/tmp/matplotlib \
    CUBLAS_WORKSPACE_CONFIG=:4096:8 \
    nnUNet_raw=/outputs/nnunet/raw \
    nnUNet_preprocessed=/outputs/nnunet/preprocessed \
    nnUNet_results=/outputs/nnunet/results

RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin iusdiff \
    && mkdir -p /outputs /data /weights \
    && chown 10001:10001 /outputs
USER 10001

VOLUME ["/outputs"]
ENTRYPOINT ["/opt/iusdiff/run_all.sh"]
CMD ["--profile", "default", "--out", "/outputs/default"]
