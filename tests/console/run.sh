#!/usr/bin/env bash
# The web console in a real browser (make console-test, part of make test):
# installs Debian's chromium through the project's apt script and runs this
# module's Go tests, which start dmsd in-process and drive the console with
# chromedp. DMS_CONSOLE_SCREENSHOTS=DIR saves a screenshot of each page
# there (make console-screenshots: docs/console/). Extra arguments go to go
# test (e.g. -run Login -v).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
source "$root/scripts/apt.sh" # apt_install

# Not pinned to a version: Debian replaces chromium with every security
# release and drops the old one from the archive, so a pin would fail
# within weeks; the test prints the version it ran.
command -v chromium >/dev/null || apt_install chromium fonts-dejavu-core
chromium --version

cd "$here"
go vet ./...
export DMS_CHROMIUM=${DMS_CHROMIUM:-$(command -v chromium)}
exec go test -count=1 -timeout 10m ./... "$@"
