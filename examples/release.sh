#!/usr/bin/env bash
# Release a model the way a CI job does: train, gate on validation metrics, package, register (idempotent),
# move `candidate`, smoke-test the candidate on a real server against a golden input, then move `production`.
#
# Usage: examples/release.sh CONFIG --min METRIC=VALUE [options]
#        examples/release.sh --run RUN_ID --min METRIC=VALUE [options]   (release an existing run: a CI retry)
#   --min METRIC=VALUE     fail unless the run's METRIC >= VALUE (repeatable), e.g. --min val_accuracy=0.9
#   --max METRIC=VALUE     fail unless the run's METRIC <= VALUE (repeatable), e.g. --max val_loss=0.3
#   --golden FILE          rows for the smoke test            [default: golden.csv beside the config]
#   --expect FILE          expected predictions, JSON lines   [default: golden.expected.jsonl beside the config]
#                          each line holds keys of `maasctl predict --format jsonl` output that must match
#                          (e.g. {"label": "setosa"}); numbers match within --tolerance
#   --tolerance X          absolute tolerance for numbers     [default: 1e-3]
#   --name NAME            model name                         [default: the config's [register] name]
#   --out DIR              where the .maas package is kept    [default: a temporary directory]
#   --set KEY=VALUE        passed to `maasctl train --set` (repeatable)
#   --run RUN_ID           skip training and release this run (packages are reproducible, so a retry
#                          registers nothing new: the same version is found again)
#
# Exit status: 0 released (the release is printed as JSON on stdout); 1 a gate failed (metric below the
# threshold, or the smoke test failed) and `production` did not move; 2 bad usage.
# The store is $MAASCTL_HOME (or ~/.maasctl); `maasctl` comes from PATH, or set MAASCTL="python -m maasctl".
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'release: %s\n' "$1" >&2; exit "${2:-1}"; }

config="" run_id="" golden="" expect="" tolerance=1e-3 name="" out=""
mins=() maxs=() sets=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --min) [[ $# -ge 2 ]] || usage; mins+=("$2"); shift 2 ;;
        --max) [[ $# -ge 2 ]] || usage; maxs+=("$2"); shift 2 ;;
        --golden) [[ $# -ge 2 ]] || usage; golden=$2; shift 2 ;;
        --expect) [[ $# -ge 2 ]] || usage; expect=$2; shift 2 ;;
        --tolerance) [[ $# -ge 2 ]] || usage; tolerance=$2; shift 2 ;;
        --name) [[ $# -ge 2 ]] || usage; name=$2; shift 2 ;;
        --out) [[ $# -ge 2 ]] || usage; out=$2; shift 2 ;;
        --set) [[ $# -ge 2 ]] || usage; sets+=(--set "$2"); shift 2 ;;
        --run) [[ $# -ge 2 ]] || usage; run_id=$2; shift 2 ;;
        -h|--help) usage ;;
        -*) die "unknown option $1 (see: $0 --help)" 2 ;;
        *) [[ -z $config ]] || die "one CONFIG only (got '$config' and '$1')" 2; config=$1; shift ;;
    esac
done
[[ -n $config || -n $run_id ]] || usage
[[ -z $config || -z $run_id ]] || die "give CONFIG or --run RUN_ID, not both" 2
[[ -z $config || -f $config ]] || die "config not found: $config" 2
[[ ${#mins[@]} -gt 0 || ${#maxs[@]} -gt 0 ]] || die "give at least one gate, e.g. --min val_accuracy=0.9" 2
[[ -n $config || ( -n $golden && -n $expect ) ]] || die "with --run, give --golden FILE and --expect FILE" 2
golden=${golden:-$(dirname "$config")/golden.csv}
expect=${expect:-$(dirname "$config")/golden.expected.jsonl}
[[ -f $golden ]] || die "golden input not found: $golden (give --golden FILE)" 2
[[ -f $expect ]] || die "expected predictions not found: $expect (give --expect FILE)" 2

read -r -a maasctl <<< "${MAASCTL:-maasctl}"
python=${PYTHON:-$(command -v python3 || command -v python || true)}
command -v "${maasctl[0]}" >/dev/null || die "'${maasctl[0]}' not found on PATH: run 'pip install .' (or set MAASCTL)" 2
[[ -n $python ]] || die "python3 not found on PATH" 2

work=$(mktemp -d "${TMPDIR:-/tmp}/maasctl-release.XXXXXX")
out=${out:-$work}
mkdir -p "$out"
server_id=""
cleanup() {
    local rc=$?
    if [[ -n $server_id ]]; then
        say "stopping smoke-test server $server_id"
        "${maasctl[@]}" stop "$server_id" >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# py SCRIPT ARGS...: small JSON jobs in python (no jq on a fresh machine)
py() { "$python" -c "$@"; }
json() { py 'import json, sys
v = json.load(sys.stdin)
for k in sys.argv[1].split("."):
    v = v[int(k)] if isinstance(v, list) else v[k]
print(v if not isinstance(v, (dict, list)) else json.dumps(v))' "$1"; }

# 1. train (or take an existing run)
if [[ -n $config ]]; then
    say "train $config${sets[*]:+ (${sets[*]})}"
    "${maasctl[@]}" train "$config" ${sets[@]+"${sets[@]}"} --json > "$work/train.json"
    run_id=$(json run_id < "$work/train.json")
else
    "${maasctl[@]}" runs show "$run_id" --json > "$work/train.json"
fi
say "run $run_id: $(json metrics < "$work/train.json")"

# 2. gate on validation metrics (before anything is registered)
py 'import json, sys
metrics = json.load(open(sys.argv[1]))["metrics"]
run_id, gates = sys.argv[2], [(g, ">=") for g in sys.argv[3].split()] + [(g, "<=") for g in sys.argv[4].split()]
failed = []
for spec, op in gates:
    key, _, value = spec.partition("=")
    try:
        threshold = float(value)
    except ValueError:
        print("release: bad gate %r: expected METRIC=NUMBER" % spec, file=sys.stderr)
        sys.exit(2)
    if key not in metrics:
        print("release: run %s has no metric %r (it has: %s)" % (run_id, key, ", ".join(sorted(metrics))),
              file=sys.stderr)
        sys.exit(2)
    ok = metrics[key] >= threshold if op == ">=" else metrics[key] <= threshold
    print("==> gate %s %s %g: %.4f %s" % (key, op, threshold, metrics[key], "ok" if ok else "FAILED"), file=sys.stderr)
    if not ok:
        word = "below" if op == ">=" else "above"
        failed.append("%s %.4f is %s the threshold %g" % (key, metrics[key], word, threshold))
if failed:
    print("release: refused: %s (run %s; nothing registered, production unchanged)" % ("; ".join(failed), run_id),
          file=sys.stderr)
    sys.exit(1)' "$work/train.json" "$run_id" "${mins[*]:-}" "${maxs[*]:-}"

# 3. package and register (identical content returns the existing version: re-runs are idempotent)
"${maasctl[@]}" package "$run_id" --output "$out" ${name:+--name "$name"} --json > "$work/package.json"
package=$(json path < "$work/package.json")
name=${name:-$(json name < "$work/package.json")}
say "packaged $package"
"${maasctl[@]}" register "$package" --name "$name" --json > "$work/register.json"
ref=$(json ref < "$work/register.json")
version=$(json version < "$work/register.json")
say "registered $ref ($( [[ $(json created < "$work/register.json") == True ]] && echo new || echo 'identical content: existing version'))"

previous=""
if current=$("${maasctl[@]}" show "$name@production" --json 2>/dev/null); then
    previous=$(json version <<< "$current")
fi
"${maasctl[@]}" alias set "$ref" candidate --json > /dev/null
say "$name@candidate -> $version (production: ${previous:-none})"

# 4. smoke test: serve exactly this version on a free port, predict the golden rows, compare
"${maasctl[@]}" serve "$ref" --detach --port 0 --json > "$work/serve.json"
server_id=$(json id < "$work/serve.json")
url=$(json url < "$work/serve.json")
say "smoke test: $ref served at $url; predicting $golden"
"${maasctl[@]}" predict --url "$url" --model "$ref" --input "$golden" --format jsonl > "$work/predictions.jsonl"
py 'import json, math, sys
got = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
want = [json.loads(line) for line in open(sys.argv[2]) if line.strip()]
tol, ref = float(sys.argv[3]), sys.argv[4]
def same(a, b):
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=0.0, abs_tol=tol)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b
if len(got) != len(want):
    print("release: smoke test failed: %d predictions for %d golden rows" % (len(got), len(want)), file=sys.stderr)
    sys.exit(1)
bad = [(i, k, w[k], g.get(k)) for i, (g, w) in enumerate(zip(got, want), 1) for k in w if not same(g.get(k), w[k])]
for i, k, expected, value in bad[:5]:
    print("release: smoke test: row %d: %s = %s, expected %s" % (i, k, json.dumps(value), json.dumps(expected)),
          file=sys.stderr)
if bad:
    print("release: smoke test failed on %d of %d golden rows (%s); production unchanged"
          % (len({b[0] for b in bad}), len(want), ref), file=sys.stderr)
    sys.exit(1)
print("==> smoke test passed: %d golden rows" % len(want), file=sys.stderr)' \
    "$work/predictions.jsonl" "$expect" "$tolerance" "$ref"
"${maasctl[@]}" stop "$server_id" >/dev/null 2>&1 || true
server_id=""

# 5. promote and report
"${maasctl[@]}" alias set "$ref" production --json > "$work/alias.json"
say "$name@production -> $version (was ${previous:-none})"
py 'import json, sys
train, pkg, reg = (json.load(open(p)) for p in sys.argv[1:4])
print(json.dumps({
    "name": reg["name"], "version": reg["version"], "ref": reg["ref"], "created": reg["created"],
    "aliases": {"candidate": reg["version"], "production": reg["version"]},
    "previous_production": int(sys.argv[4]) if sys.argv[4] else None,
    "run_id": train["run_id"], "metrics": train["metrics"],
    "package": {"path": pkg["path"] if sys.argv[5] else None, "sha256": pkg["sha256"], "size": pkg["size"]},
    "sha256": reg["sha256"], "smoke_test": {"rows": int(sys.argv[6]), "passed": True},
}, indent=2))' "$work/train.json" "$work/package.json" "$work/register.json" "${previous:-}" \
    "$( [[ $out != "$work" ]] && echo keep || true)" "$(grep -c . "$expect")"
