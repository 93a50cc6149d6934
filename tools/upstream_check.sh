#!/usr/bin/env bash
# Applies the patch series in upstream/patches to a copy of a SpeechBrain
# checkout and tests the result:
#   1. SpeechBrain's own tests of every test file the series touches, and the
#      doctests of every module it touches;
#   2. SpeechBrain's consistency checks (docstrings, recipe list, YAML keys);
#   3. the debug run of every recipe the series adds to tests/recipes/*.csv;
#   4. this project's test suite against the patched SpeechBrain.
#
# usage: tools/upstream_check.sh SPEECHBRAIN_CHECKOUT [REF] [--sdist FILE]
#   SPEECHBRAIN_CHECKOUT  a git clone of github.com/speechbrain/speechbrain
#   REF                   the commit, branch or tag to patch (default: HEAD)
#   --sdist FILE          replace the speechbrain/ package of REF with the one
#                         of a PyPI source archive (e.g. speechbrain-1.1.2.tar.gz,
#                         from `pip download speechbrain==1.1.2 --no-deps
#                         --no-binary :all:`), keeping REF's tests and recipes:
#                         how the pinned release, which has no tag in the
#                         repository, is checked
#
# It runs in the active Python environment (this project installed with
# ".[dev]"); the patched SpeechBrain comes first on PYTHONPATH. The checkout
# given is never modified: the work happens in a temporary clone, kept
# (and named at the end) when a step fails.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
checkout="" ref="HEAD" sdist=""
while [ $# -gt 0 ]; do
    case "$1" in
        --sdist) sdist="$(realpath "$2")"; shift 2 ;;
        -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
        *) if [ -z "$checkout" ]; then checkout="$(realpath "$1")"; else ref="$1"; fi; shift ;;
    esac
done
[ -n "$checkout" ] || { sed -n '2,27p' "$0"; exit 2; }
git -C "$checkout" rev-parse --verify --quiet "$ref^{commit}" > /dev/null \
    || { echo "upstream_check: $checkout has no commit $ref" >&2; exit 2; }

work="$(mktemp -d)"
sb="$work/speechbrain"
step="cloning"
# shellcheck disable=SC2154  # status is set by the trap itself
trap 'status=$?; if [ $status -ne 0 ]; then echo "upstream_check: FAILED while $step (work kept in $work)" >&2; else rm -rf "$work"; fi' EXIT

git clone --quiet --no-checkout "$checkout" "$sb"
git -C "$sb" checkout --quiet --detach "$ref"
git -C "$sb" config user.name "speechbrain-turbo upstream check"
git -C "$sb" config user.email "upstream-check@localhost"
if [ -n "$sdist" ]; then
    step="replacing speechbrain/ with $sdist"
    mkdir "$work/sdist" && tar -xzf "$sdist" -C "$work/sdist"
    package="$(find "$work/sdist" -mindepth 2 -maxdepth 2 -type d -name speechbrain)"
    rm -rf "$sb/speechbrain" && cp -r "$package" "$sb/speechbrain"
    git -C "$sb" add -A speechbrain
    git -C "$sb" commit --quiet -m "speechbrain/ from $(basename "$sdist")"
fi
base="$(git -C "$sb" rev-parse HEAD)"
echo "== SpeechBrain $(cat "$sb/speechbrain/version.txt") at $ref$([ -n "$sdist" ] && echo " with $(basename "$sdist")")"

step="applying the patches"
git -C "$sb" am --quiet "$repo"/upstream/patches/*.patch
git -C "$sb" log --oneline "$base..HEAD"

export PYTHONPATH="$sb${PYTHONPATH:+:$PYTHONPATH}"
cd "$sb"
touched="$(git diff --name-only "$base" HEAD)"
tests="$(grep '^tests/unittests/.*\.py$' <<< "$touched" || true)"
modules="$(grep '^speechbrain/.*\.py$' <<< "$touched" || true)"

step="running SpeechBrain's tests of the touched files"
echo "== SpeechBrain's tests and doctests of the touched files"
# shellcheck disable=SC2086
python -m pytest -q -p no:cacheprovider $tests
# shellcheck disable=SC2086
python -m pytest -q -p no:cacheprovider --doctest-modules $modules

step="running SpeechBrain's consistency checks"
echo "== SpeechBrain's consistency checks"
python -m pytest -q -p no:cacheprovider tests/consistency/test_docstrings.py \
    tests/consistency/test_recipe.py tests/consistency/test_yaml.py

# SpeechBrain's recipe tests run each recipe with PYTHONPATH set to the
# recipe's folder (SpeechBrain itself is expected installed): a `python` first
# on PATH puts the patched checkout before that folder.
mkdir "$work/bin"
cat > "$work/bin/python" <<SHIM
#!/usr/bin/env bash
PYTHONPATH="$sb\${PYTHONPATH:+:\$PYTHONPATH}" exec "$(command -v python)" "\$@"
SHIM
chmod +x "$work/bin/python"
added_recipes="$(git diff "$base" HEAD -- 'tests/recipes/*.csv' | grep '^+[^+]' | cut -d, -f4 || true)"
for hparams in $added_recipes; do
    step="the debug run of $hparams"
    echo "== debug run of $hparams"
    PATH="$work/bin:$PATH" python -c "import sys; from tests.utils.recipe_tests import run_recipe_tests; sys.exit(0 if run_recipe_tests(filters_fields=['Hparam_file'], filters=[['$hparams']], do_checks=True, run_opts='--device=cpu', output_folder='$work/recipe_tests/') else 1)"
done

step="running this project's tests against the patched SpeechBrain"
echo "== this project's tests against the patched SpeechBrain"
cd "$repo"
python -c "import speechbrain, sys; assert speechbrain.__file__.startswith('$sb'), speechbrain.__file__"
python -m pytest -q
echo "== all passed: $(git -C "$sb" rev-list --count "$base..HEAD") patches on SpeechBrain at $ref"
