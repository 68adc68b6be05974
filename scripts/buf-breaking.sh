#!/usr/bin/env bash
# buf breaking (WIRE_JSON) over the history of proto/: every commit that
# changed the protos is checked against the previous proto version, and the
# working tree against the last commit. On a branch, also against main. A
# change that breaks clients therefore fails CI in the submission that makes
# it, even when several commits land at once.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.cache/bin:$PATH"
mapfile -t commits < <(git log --format=%H -n 30 -- proto)
checked=0
for ((i = 0; i + 1 < ${#commits[@]}; i++)); do
  new=${commits[i]} old=${commits[i+1]}
  tmp=$(mktemp -d)
  git archive "$new" proto third_party buf.yaml | tar -x -C "$tmp"
  (cd "$tmp" && buf breaking --against "$OLDPWD/.git#ref=$old") || { rm -rf "$tmp"; echo "buf breaking: $new breaks $old"; exit 1; }
  rm -rf "$tmp"
  checked=$((checked + 1))
done
if [ ${#commits[@]} -gt 0 ]; then
  buf breaking --against ".git#ref=${commits[0]}"
  checked=$((checked + 1))
fi
# Against where this tree left main (not main's tip: a tree behind main
# would see main's newer fields as ones it deleted).
branch=$(git rev-parse --abbrev-ref HEAD)
if [ "$branch" != main ] && base=$(git merge-base HEAD main 2>/dev/null) && [ "$base" != "$(git rev-parse HEAD)" ]; then
  buf breaking --against ".git#ref=$base"
  checked=$((checked + 1))
fi
echo "buf breaking: $checked comparison(s) passed"
