#!/usr/bin/env bash
# Copies the configs the chart shares with the local stack and compose into the chart's files/ directory.
# Helm reads files only from inside the chart (.Files.Get), and a packaged chart cannot follow symlinks,
# so the chart carries copies; tests/e2e/test_helm.py fails when a copy differs from its source by one
# byte, naming this script. Run it after editing any source below:
#
#   deploy/helm/sync-files.sh            copy every source over its copy (and drop copies of deleted files)
#
#   deploy/collector/config/{base,overlay-agent,overlay-gateway,overlay-tail-sampling}.yaml → files/collector/
#   deploy/jaeger/jaeger.yaml                                                      → files/jaeger/
#   deploy/prometheus/rules/*.yml                                                  → files/prometheus/rules/
#   deploy/grafana/provisioning/**, deploy/grafana/dashboards/*.json               → files/grafana/
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
files="$repo/deploy/helm/llm-telemetry/files"

rm -rf "$files"
mkdir -p "$files/collector" "$files/jaeger" "$files/prometheus/rules" \
  "$files/grafana/provisioning/datasources" "$files/grafana/provisioning/dashboards" "$files/grafana/dashboards"
for f in base overlay-agent overlay-gateway overlay-tail-sampling; do
  cp "$repo/deploy/collector/config/$f.yaml" "$files/collector/"
done
cp "$repo/deploy/jaeger/jaeger.yaml" "$files/jaeger/"
cp "$repo"/deploy/prometheus/rules/*.yml "$files/prometheus/rules/"
cp "$repo"/deploy/grafana/provisioning/datasources/*.yaml "$files/grafana/provisioning/datasources/"
cp "$repo"/deploy/grafana/provisioning/dashboards/*.yaml "$files/grafana/provisioning/dashboards/"
cp "$repo"/deploy/grafana/dashboards/*.json "$files/grafana/dashboards/"
echo "synced $(find "$files" -type f | wc -l) files into ${files#"$repo"/}"
