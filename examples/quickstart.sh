#!/usr/bin/env bash
# The whole lifecycle on one example, narrated on stderr:
#   train -> package -> register -> serve --detach --port 0 -> predict -> stop
#
# Usage: examples/quickstart.sh [CONFIG [INPUT]]
#   CONFIG  training config      [default: examples/iris/config.toml]
#   INPUT   rows to predict on   [default: rows.csv beside the config]
#
# Store: $MAASCTL_HOME when set (kept); otherwise a fresh temporary store that is removed on exit, so the
# quick start never touches ~/.maasctl. Keep it with: MAASCTL_HOME=~/maas-demo examples/quickstart.sh
# Uses `maasctl` from PATH (pip install .); override with MAASCTL="python -m maasctl".
# Predictions go to stdout; everything else to stderr.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
config=${1:-$here/iris/config.toml}
input=${2:-$(dirname "$config")/rows.csv}
read -r -a maasctl <<< "${MAASCTL:-maasctl}"
python=${PYTHON:-$(command -v python3 || command -v python || true)}

if [[ -t 2 ]]; then bold=$'\033[1m' plain=$'\033[0m'; else bold="" plain=""; fi
say() { printf '\n%s==> %s%s\n' "$bold" "$*" "$plain" >&2; }
run() { printf '+ %s\n' "$*" >&2; "$@"; }
die() { printf 'quickstart: %s\n' "$*" >&2; exit 1; }
# json KEY.PATH < doc: one value from a JSON document (python is always there; no jq needed)
json() { "$python" -c 'import json, sys
v = json.load(sys.stdin)
for k in sys.argv[1].split("."):
    v = v[int(k)] if isinstance(v, list) else v[k]
print(v if not isinstance(v, (dict, list)) else json.dumps(v))' "$1"; }

command -v "${maasctl[0]}" >/dev/null || die "'${maasctl[0]}' not found on PATH: run 'pip install .' first (or set MAASCTL)"
[[ -n $python ]] || die "python3 not found on PATH"
[[ -f $config ]] || die "config not found: $config"
[[ -f $input ]] || die "input not found: $input"

work=$(mktemp -d "${TMPDIR:-/tmp}/maasctl-quickstart.XXXXXX")
server_id=""
if [[ -z ${MAASCTL_HOME:-} ]]; then
    export MAASCTL_HOME=$work/store
    temp_store=1
else
    temp_store=0
fi
cleanup() {
    local rc=$?
    if [[ -n $server_id ]]; then
        "${maasctl[@]}" stop "$server_id" >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "store: $MAASCTL_HOME$([[ $temp_store == 1 ]] && echo ' (temporary; removed on exit)')"

say "1/6 train: fit the model described by $config; the run (SavedModel + metrics + lineage) goes into the store"
run "${maasctl[@]}" train "$config" --json > "$work/train.json"
run_id=$(json run_id < "$work/train.json")
printf '    run %s  metrics %s\n' "$run_id" "$(json metrics < "$work/train.json")" >&2

say "2/6 package: write the run as one reproducible, self-describing .maas file (SavedModel + manifest)"
run "${maasctl[@]}" package "$run_id" --output "$work" --json > "$work/package.json"
package=$(json path < "$work/package.json")
name=$(json name < "$work/package.json")
printf '    %s  sha256 %s\n' "$package" "$(json sha256 < "$work/package.json")" >&2

say "3/6 register: store the package as the next immutable version of '$name' and point 'candidate' at it"
run "${maasctl[@]}" register "$package" --name "$name" --alias candidate --json > "$work/register.json"
ref=$(json ref < "$work/register.json")
printf '    registered %s\n' "$ref" >&2

say "4/6 serve: start a TensorFlow-Serving-compatible REST server in the background on a free port"
run "${maasctl[@]}" serve "$ref" --detach --port 0 --json > "$work/serve.json"
server_id=$(json id < "$work/serve.json")
url=$(json url < "$work/serve.json")
printf '    server %s at %s\n' "$server_id" "$url" >&2

say "5/6 predict: send $input to the server; predictions on stdout"
run "${maasctl[@]}" predict --url "$url" --model "$ref" --input "$input" --format jsonl

say "6/6 stop: shut the server down gracefully"
run "${maasctl[@]}" stop "$server_id" >/dev/null
server_id=""

say "done: $ref trained, packaged, registered, served and queried"
# (the server above is stopped already: a curl to it would fail, so the hint is for a server that stays up)
if [[ $temp_store == 1 ]]; then
    printf '    the store was temporary; keep one with: MAASCTL_HOME=~/maas-demo %s\n' "$0" >&2
else
    printf '    look around: maasctl list %s; maasctl show %s\n' "$name" "$ref" >&2
    printf '    serve it and try the REST API: maasctl serve %s --detach --port 8501 && curl -s localhost:8501/v1/models/%s\n' \
        "$ref" "$name" >&2
fi
