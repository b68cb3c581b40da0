# One image for every ma2ml role; the command picks it:
#   ma2ml operator ...   the kopf operator (helm/ma2ml runs it)
#   ma2ml learner ...    the MA2ML learner of one search (started by the operator)
#   ma2ml worker ...     a long-lived trial worker (started by the operator)
#   ma2ml run FILE       a whole search on one machine
#
# Build (from the repository root):
#   docker build -t ghcr.io/ma2ml/ma2ml:0.1.0 .                                # CUDA torch
#   docker build --build-arg TORCH_VARIANT=cpu -t ghcr.io/ma2ml/ma2ml:0.1.0-cpu .
#
# The install steps are the README's (and the Makefile's): torch and
# torchvision at the pinned versions first, then the project with pip.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# cuda: PyPI's torch wheels (CUDA runtime bundled; they also run on CPUs).
# cpu: the CPU-only wheels from the PyTorch index, about 5 GB smaller.
ARG TORCH_VARIANT=cuda
# Keep equal to TORCH in the Makefile (tests/deploy/test_dockerfile.py checks).
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/ma2ml/bin:$PATH
RUN python -m venv /opt/ma2ml
# torch in a layer of its own: it is most of the image and changes least.
RUN case "$TORCH_VARIANT" in \
      cuda) ;; \
      cpu) export PIP_INDEX_URL="$TORCH_CPU_INDEX" ;; \
      *) echo "TORCH_VARIANT must be cuda or cpu, got '$TORCH_VARIANT'" >&2; exit 1 ;; \
    esac; \
    pip install --no-cache-dir "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY ma2ml ./ma2ml
# The installed torch satisfies the project's torch requirement, so pip keeps it.
RUN pip install --no-cache-dir . && ma2ml --help >/dev/null

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="ma2ml" \
      org.opencontainers.image.description="Kubernetes-native AutoML with multi-agent RL (MA2ML)" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/ma2ml/ma2ml"
# A fixed non-root uid: the chart and the operator's pods set runAsUser to it.
RUN groupadd --system --gid 10001 ma2ml \
    && useradd --system --uid 10001 --gid ma2ml --create-home --home-dir /home/ma2ml ma2ml
# Same path as in the build stage: the virtual environment's scripts point there.
COPY --from=build /opt/ma2ml /opt/ma2ml
ENV PATH=/opt/ma2ml/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /home/ma2ml
USER 10001:10001
# 9090: Prometheus metrics (every role); 8081: the operator's /healthz.
EXPOSE 9090 8081
ENTRYPOINT ["ma2ml"]
CMD ["--help"]
