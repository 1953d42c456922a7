#!/usr/bin/env bash
# Installs Debian's Chromium for the browser test of the drilldown report (tests/e2e/test_report_page.py),
# which Playwright drives as the system browser: Playwright's own browser download cannot work here.
#
# Quick when Chromium is already there. As root with apt-get it installs the `chromium` package; otherwise
# it names the command. Under CI=true a Chromium it cannot install is an error (the test would fail anyway).
set -euo pipefail
say() { printf '[install-browser] %s\n' "$*" >&2; }

if command -v chromium >/dev/null; then
  exit 0
fi
if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
  say "installing Debian's chromium package"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
  command -v chromium >/dev/null && exit 0
fi
say "Chromium is missing: the report's browser test needs it (Debian: apt-get install chromium)"
[[ ${CI:-} == true ]] && exit 1
exit 0
