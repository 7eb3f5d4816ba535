#!/usr/bin/env bash
# The package as users install it: build the sdist and, from it, the wheel; check what each
# carries; install the wheel (not editable) into a fresh venv; then, from a temporary folder
# outside the repo (no spaces/ folder, no source tree on sys.path), run the whole flow:
# compile, train 1 epoch, search with a budget of 4, export to ONNX with no --space, diff.
# Any failing step fails the script. torch comes from constraints.txt (torch==2.13.0).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-python3}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/trionet-wheel-check.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
START=$SECONDS
step() { printf '\n== [%ss] %s\n' "$((SECONDS - START))" "$*"; }
fail() { echo "wheel check FAILED: $*" >&2; exit 1; }
run() {  # a command, echoed and timed on stderr (stdout may be redirected to a file)
    local t=$SECONDS
    echo "\$ $(basename "$1") ${*:2}" >&2
    "$@"
    echo "   ($((SECONDS - t)) s)" >&2
}
unset PYTHONPATH

# ------------------------------------------------------------------ build
step "build the sdist, then the wheel from the sdist"
BUILDER="$ROOT/.venv/bin/python"
if ! "$BUILDER" -c "import build" 2>/dev/null; then  # no dev venv: a throw-away one with `build`
    "$PY" -m venv "$WORK/build-venv"
    "$WORK/build-venv/bin/pip" install -q build
    BUILDER="$WORK/build-venv/bin/python"
fi
"$BUILDER" -m build --outdir "$WORK/dist" "$ROOT" > "$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log"; fail "build"; }
SDIST="$(ls "$WORK"/dist/*.tar.gz)"
WHEEL="$(ls "$WORK"/dist/*.whl)"
ls -l "$WORK/dist"

step "sdist contents (what its tests need)"
tar tzf "$SDIST" | sed 's|^[^/]*/||' | sort > "$WORK/sdist.txt"
echo "$(wc -l < "$WORK/sdist.txt") entries; tests/ and data:"
grep -E '^(tests/|constraints.txt|LICENSE|MANIFEST.in|grammars/|spaces/)' "$WORK/sdist.txt" | grep -v '/$' | sed 's/^/  /'
for f in tests/conftest.py tests/helpers.py tests/data/tiny.space constraints.txt LICENSE README.md pyproject.toml \
         grammars/space.lark spaces/trionet_small.space spaces/trionet_r50.space spaces/archs/resnet50.arch \
         editors/vscode/syntaxes/trionet.tmLanguage.json; do
    grep -qx "$f" "$WORK/sdist.txt" || fail "the sdist lacks $f"
done
for f in $(cd "$ROOT" && git ls-files tests); do
    grep -qx "$f" "$WORK/sdist.txt" || fail "the sdist lacks $f (tracked under tests/)"
done

step "wheel contents (grammar, shipped spaces and archs, license)"
"$BUILDER" - "$WHEEL" <<'PY'
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
need = ["trionet_dsl/grammars/space.lark", "trionet_dsl/spaces/trionet_small.space",
        "trionet_dsl/spaces/trionet_r50.space", "trionet_dsl/spaces/archs/resnet50.arch",
        "trionet_dsl/__main__.py", "trionet_dsl/app/cli.py"]
missing = [n for n in need if n not in names]
if not any(n.endswith(".dist-info/licenses/LICENSE") for n in names):
    missing.append("*.dist-info/licenses/LICENSE")
if any(n.startswith(("tests/", "spaces/", "grammars/")) for n in names):
    sys.exit("the wheel installs top-level tests/, spaces/ or grammars/")
if missing:
    sys.exit(f"the wheel lacks {missing}")
print(f"{len(names)} files, all expected ones present")
PY

# ------------------------------------------------------------------ install
step "install the wheel (not editable) into a fresh venv, torch from constraints.txt"
VENV="$WORK/venv"
"$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q -c "$ROOT/constraints.txt" "${WHEEL}[export]"
T="$VENV/bin/trionet"
"$VENV/bin/python" -c "import torch; print('torch', torch.__version__)"

# ------------------------------------------------------------------ the flow, outside the repo
FLOW="$WORK/flow"
mkdir -p "$FLOW"
cd "$FLOW"
case "$PWD/" in "$ROOT"/*) fail "the flow must run outside the repo";; esac

step "the installed package is used (not the source tree)"
"$VENV/bin/python" - "$VENV" <<'PY'
import sys
import trionet_dsl
assert trionet_dsl.__file__.startswith(sys.argv[1]), trionet_dsl.__file__
import trionet_dsl.space  # the language and space stages stay torch-free
assert "torch" not in sys.modules, "importing trionet_dsl.space imported torch"
print(trionet_dsl.__file__)
PY

step "trionet --version / python -m trionet_dsl --help"
WANT="$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/pyproject.toml" | head -1)"
GOT="$("$T" --version)"
echo "$GOT"
[ "$GOT" = "trionet-dsl $WANT" ] || fail "trionet --version says '$GOT', pyproject says $WANT"
"$VENV/bin/python" -m trionet_dsl --help > help.txt
grep -q "compile" help.txt && grep -q -- "--install-completion" help.txt || fail "python -m trionet_dsl --help"
"$VENV/bin/python" -m trionet_dsl --version
"$VENV/bin/trionet" spaces trionet_small > lexed.space
"$VENV/bin/pygmentize" -l trionet -f terminal lexed.space > /dev/null || fail "pygmentize -l trionet (entry point)"

step "shipped spaces by name: trionet spaces / compile"
"$T" spaces
"$T" compile trionet_small
"$T" compile resnet50.arch --no-costs > /dev/null
"$T" spaces trionet_small > my_small.space
"$T" compile my_small.space --json > /dev/null

step "a tiny space written here: train 1 epoch on digits, search (budget 4), export"
cat > tiny.space <<'SPACE'
# a tiny space for a fast check
space tiny {
  input 1x16x16
  classes 10
  stem {
    conv 3x3 8 stride 2
  }
  block bottleneck expansion 2 {
    op conv(kernel=3) | local(span=3) | axial
    width 0.5x | 1.0x
    heads 1 | 2
  }
  stage s1 blocks 1 width 8 stride 1
  stage s2 blocks 1 width 16 stride 2
}
SPACE
"$T" compile tiny.space > /dev/null
run "$T" train tiny.space --data digits --epochs 1 --threads 2 --out run_tiny --no-progress
run "$T" search tiny.space --checkpoint run_tiny/supernet.pt --budget 4 --out tiny_best.arch --threads 2 --no-progress
run "$T" export tiny_best.arch --checkpoint run_tiny/supernet.pt --format pt --threads 2

step "the shipped trionet_small (no file here): train 1 epoch, search (budget 4), export ONNX with no --space"
# 600 of scikit-learn's real digits (stratified), so one epoch of the 32x32 space takes seconds, not minutes
"$VENV/bin/python" - <<'PY'
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
d = load_digits()
x, _, y, _ = train_test_split(d.images, d.target, train_size=600, stratify=d.target, random_state=0)
np.savez("digits600.npz", x=(x * 255 / 16).astype(np.uint8), y=y.astype(np.int64))
PY
run "$T" train trionet_small --data digits600.npz --epochs 1 --batch-size 32 --threads 2 --out run --no-progress
run "$T" search trionet_small --checkpoint run/supernet.pt --budget 4 --out best.arch --bn-batches 2 --threads 2 \
    --no-progress
[ -f best.arch ] || fail "search wrote no best.arch"
run "$T" export best.arch --checkpoint run/supernet.pt --format onnx --threads 2 --json > export.json
cat export.json
[ -s best.onnx ] || fail "export wrote no best.onnx"
"$VENV/bin/python" - <<'PY'
import json
import numpy as np
import onnxruntime as ort
rep = json.load(open("export.json"))
assert rep["format"] == "onnx" and rep["accuracy"] is not None, rep
sess = ort.InferenceSession("best.onnx", providers=["CPUExecutionProvider"])
shape = [d if isinstance(d, int) else 2 for d in sess.get_inputs()[0].shape]
logits = sess.run(None, {"input": np.full(shape, 128, np.float32)})[0]
assert logits.shape == (2, 10), logits.shape
# the outcome a user gets: the ONNX file, fed the checkpoint's validation images as raw 0-255 pixels,
# scores the one-shot accuracy that search wrote into best.arch's header (search used --bn-batches 2;
# export reads that from the header)
import re
from trionet_dsl.app.datasets import load_dataset
from trionet_dsl.space.loader import load_arch
space = load_arch("best.arch").space
bundle = load_dataset("digits600.npz", space, 0.2, seed=0)
raw = (bundle.val_raw * 255).numpy().astype(np.float32)
acc = float((sess.run(None, {"input": raw})[0].argmax(1) == bundle.val_y.numpy()).mean())
header = float(re.search(r"accuracy (\d\.\d{4})", open("best.arch").read()).group(1))
assert round(acc, 4) == header and abs(acc - rep["accuracy"]) < 1e-6, (acc, header, rep["accuracy"])
print(f"best.onnx in onnxruntime on {len(raw)} raw validation images: {acc:.4f} = search header {header:.4f}")
PY

step "diff and fmt on the searched archs"
"$T" search trionet_small --evaluator flops --budget 4 --seed 1 --out small.arch --no-progress > /dev/null
"$T" diff best.arch small.arch --history best.history.jsonl
"$T" diff trionet_small my_small.space > /dev/null
"$T" fmt --check best.arch small.arch

step "wheel check passed in $((SECONDS - START)) s"
