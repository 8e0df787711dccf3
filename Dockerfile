# hmarl_rllib: one image for `hmarl` on a laptop, and for the head and workers of a Ray cluster.
#
#   docker build -t hmarl-rllib:0.1.0 .
#   docker run --rm hmarl-rllib:0.1.0 --help
#   docker run --rm --shm-size=2g -v "$PWD/tune_results:/home/ray/tune_results" hmarl-rllib:0.1.0 \
#       train --config /opt/hmarl/configs/default.yaml --storage /home/ray/tune_results
#
# As a Ray head the entrypoint is replaced (KubeRay does so itself), with token authentication
# and the job API published on the host's loopback only (see docs/deploy.md):
#   ray get-auth-token --generate >/dev/null; export RAY_AUTH_MODE=token RAY_AUTH_TOKEN="$(cat ~/.ray/auth_token)"
#   docker run --rm --shm-size=2g -p 127.0.0.1:8265:8265 -e RAY_AUTH_MODE -e RAY_AUTH_TOKEN \
#       --entrypoint ray hmarl-rllib:0.1.0 start --head --dashboard-host=0.0.0.0 --block
#
# CPU only: torch comes from the CPU wheel index (a bare `torch` pulls a multi-GB CUDA build).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OMP_NUM_THREADS=1 \
    MKL_NUM_THREADS=1 \
    HMARL_CONFIGS=/opt/hmarl/configs

# wget: KubeRay's readiness and liveness probes call it; procps: `ray stop` and `ps` in debugging.
# Not pinned (DL3008): Debian's point releases replace the exact versions, and a pin would break
# the build; both are stable tools, nothing in the package depends on their version.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends wget procps \
    && rm -rf /var/lib/apt/lists/*

RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

WORKDIR /opt/hmarl
# Package metadata first, then the code: editing the code does not re-resolve the dependencies' layer.
COPY setup.cfg pyproject.toml README.md ./
COPY hmarl_rllib ./hmarl_rllib
RUN pip install . && rm -rf build ./*.egg-info
# Scenarios, tuned baselines, the `ray submit` script and the cluster configs, at fixed paths.
COPY configs ./configs
COPY scripts ./scripts

# Non-root user with a writable home (Ray writes /tmp/ray; Tune writes under --storage).
# UID 1000 matches the rayproject/ray images, so volumes shared with them stay writable.
RUN useradd --create-home --uid 1000 --shell /bin/bash ray \
    && chown -R ray:ray /opt/hmarl/configs
USER 1000:1000
WORKDIR /home/ray

# Ray's ports when the image runs as a head node: GCS, client, dashboard / job API.
EXPOSE 6379 10001 8265

ENTRYPOINT ["hmarl"]
CMD ["--help"]
