# The image every node of a GPU campaign runs (cluster.yaml, k8s/rayjob.yaml): the project and its
# gpu extras on Ray's GPU image. Build it with `make image`, which passes RAY_VERSION (the Makefile
# is the one place naming the version and the image); Ray and Python (3.11) must match the
# driver's, or it cannot join the cluster.
ARG RAY_VERSION
FROM rayproject/ray:${RAY_VERSION}-py311-gpu

WORKDIR /home/ray/aar-ray
# bubblewrap: the outer sandbox layer for agents' code (needs user namespaces on the node, or
# run the worker pods under gVisor; docs/clusters.md)
RUN sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends bubblewrap && sudo rm -rf /var/lib/apt/lists/*
# torch first and on its own, as `make setup` does, so the resolver keeps that build
RUN pip install --no-cache-dir torch==2.13.0
COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users aar_ray ./aar_ray
RUN pip install --no-cache-dir -e '.[gpu]'
# job entrypoints and configs: the RayJob's working_dir is this checkout
COPY --chown=ray:users jobs ./jobs
# no network at run time unless a campaign asks for it: models and data come pinned from the HF
# cache, which lives on the shared storage every node mounts (pre-fill it once from a machine with
# internet that mounts it too), or unset the two offline flags for nodes with internet
ENV HF_HOME=/mnt/cluster_storage/hf HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
