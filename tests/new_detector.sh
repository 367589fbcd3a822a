#!/usr/bin/env bash
# Adding a detector is three edits: its file, one registry row, its TOML table. This script
# makes exactly those three in a temporary copy of the crate (a throwaway `THROWAWAY`
# detector, cloned from the smallest one), runs the two generators the tests name (the
# README's registry table, the k8s ConfigMap), and then the tests that guard detectors and
# config. It fails if anything else is demanded.
#
#   bash tests/new_detector.sh
#
# The copy is a package of its own name built in this crate's target directory, so only its
# library is compiled again, not the dependencies: in the debug profile `cargo test` uses
# (NEW_DETECTOR_PROFILE=release to use release builds instead). The ConfigMap generator needs
# PyYAML: the venv of tests/deploy.sh when it is there, else python3.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
cp -r "$ROOT/src" "$ROOT/config" "$ROOT/Cargo.lock" "$ROOT/README.md" "$TMP/"
cp -r "$ROOT/deploy" "$TMP/"
PY="${WG_DEPLOY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/walletguard-deploy}/venv/bin/python"
[ -x "$PY" ] || PY=python3
PROFILE=(--profile "${NEW_DETECTOR_PROFILE:-dev}")
# The manifest without the benches and examples (not copied), under another package name.
python3 - "$ROOT/Cargo.toml" "$TMP/Cargo.toml" <<'PY'
import re, sys
src = open(sys.argv[1]).read()
src = src.replace('name = "walletguard"\nversion', 'name = "walletguard_throwaway"\nversion', 1)
src = src.replace('default-run = "walletguard"\n', 'autobenches = false\nautotests = false\nautoexamples = false\n')
src = re.sub(r'\n\[\[bin\]\]\nname = "walletguard"\npath = "src/main.rs"\n', '\n', src)
src = re.sub(r'(?ms)^(#[^\n]*\n)*\[\[(bench|example)\]\]\n.*?(?=^\[|\Z)', '', src)
open(sys.argv[2], 'w').write(src)
PY
cd "$TMP"
D=src/engine/detect

echo "== edit 1: the detector's file =="
sed -e 's/NewRechargeNumber/Throwaway/g; s/new_recharge_number/throwaway/g; s/NEW_RECHARGE_NUMBER/THROWAWAY/g' \
  "$D/new_recharge_number.rs" > "$D/throwaway.rs"

echo "== edit 2: one registry row (a bit no code has had) =="
python3 - "$D/mod.rs" <<'PY'
import re, sys
p = sys.argv[1]; s = open(p).read()
bit = max(int(b) for b in re.findall(r'\bbit (\d+),', s)) + 1
row = ('    /// A throwaway detector: shows what adding one takes.\n'
       f'    Throwaway = "THROWAWAY", bit {bit}, Pattern,\n'
       '        throwaway: ThrowawayConfig = ThrowawayConfig { enabled: true, weight: 0.2 },\n'
       '        |d| Throwaway::new(&d.throwaway);\n')
anchor = '        |d| NewRechargeNumber::new(&d.new_recharge_number);\n'
assert anchor in s, "the registry row to insert after"
s = s.replace(anchor, anchor + row, 1)
open(p, 'w').write(s)
PY

echo "== edit 3: its table in config/walletguard.toml =="
printf '\n[detectors.throwaway]\n# A throwaway detector (tests/new_detector.sh).\nenabled = true\nweight = 0.2\n' >> config/walletguard.toml

echo "== generators =="
"$PY" deploy/k8s/generate.py
export CARGO_TARGET_DIR="$ROOT/target"
WG_UPDATE_README=1 cargo test "${PROFILE[@]}" --offline --lib -q readme_registry 2>&1 | tail -n 3
grep -q '| `THROWAWAY` |' README.md || { echo "the README's registry table lacks THROWAWAY"; exit 1; }

echo "== every library test (detectors, config, README, pipeline) =="
cargo test "${PROFILE[@]}" --offline --lib -q 2>&1 | tail -n 5
"$PY" deploy/k8s/generate.py --check
grep -q 'THROWAWAY' "$D/mod.rs"
echo "new detector: three edits (file, registry row, TOML table) and the two generators were all it took"
