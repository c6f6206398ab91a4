#!/bin/bash
# round.launcher.command on Kubernetes: run one training stage as deploy/k8s/train-stage.yaml
# and wait for it. The round calls it as `launch-stage.sh [--config_file F] ARGS -m rlhf.stage
# NAME --iter N ...`; everything after `-m` goes to the pods (the manifest holds the rest).
set -euo pipefail
manifest=${RLHF_K8S_MANIFEST:-$(dirname "$0")/train-stage.yaml}
while [ $# -gt 0 ] && [ "$1" != "-m" ]; do shift; done
[ $# -ge 2 ] || { echo "launch-stage.sh: expected '-m rlhf.stage NAME ...'" >&2; exit 2; }
shift 2  # -m rlhf.stage
stage_args=$(printf '%q ' "$@")
kubectl delete job rlhf-train --ignore-not-found --wait=true >/dev/null
sed "s|STAGE_ARGS|${stage_args//|/\\|}|" "$manifest" | kubectl apply -f -
# A Job ends Complete or Failed; wait for whichever comes first.
while :; do
    state=$(kubectl get job rlhf-train -o jsonpath='{range .status.conditions[?(@.status=="True")]}{.type}{" "}{end}')
    case "$state" in
        *Complete*) exit 0 ;;
        *Failed*) kubectl logs job/rlhf-train --tail=50 >&2 || true; exit 1 ;;
    esac
    sleep 10
done
