#!/usr/bin/env bash
# The main job on the embedded default: a sample repository, the scripted model, `warren run`
# in a bubblewrap sandbox, then the new branch and its diff. Everything lives under .demo/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEMO="$ROOT/.demo"
BIN="${WARREN_BIN_DIR:-$ROOT/target/debug}"
export WARREN_OPENCODE="${WARREN_OPENCODE:-$ROOT/.tools/opencode/node_modules/.bin/opencode}"
export WARREN_DATA_DIR="$DEMO/data"
export WARREN_CONFIG="$DEMO/config.toml"

rm -rf "$DEMO/sample" "$DEMO/model"
mkdir -p "$DEMO/sample" "$DEMO/model" "$WARREN_DATA_DIR"

# A small repository with a flaky test and an uncommitted edit.
cd "$DEMO/sample"
git init -q -b main
cat > login.py <<'PY'
import time


def make_token(user):
    return f"{user}:{int(time.time() * 1000) % 1000}"
PY
cat > test_login.py <<'PY'
import unittest

from login import make_token


class LoginTest(unittest.TestCase):
    def test_token_is_stable(self):
        self.assertEqual(make_token("ada"), make_token("ada"))


if __name__ == "__main__":
    unittest.main()
PY
printf '__pycache__/\n' > .gitignore
git add -A
git -c user.name=demo -c user.email=demo@example.com commit -qm "login with a flaky test"
printf '# Login service\n\nWork in progress: uncommitted notes.\n' > README.md

# The scripted model: a stand-in that plays scenarios/demo.json (it is not a language model).
"$BIN/warren-model-script" --scenario "$ROOT/scenarios/demo.json" --port-file "$DEMO/model/port" \
  > "$DEMO/model/stdout.log" 2> "$DEMO/model/stderr.log" &
MODEL_PID=$!
trap 'kill "$MODEL_PID" 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -s "$DEMO/model/port" ] && break; sleep 0.05; done
PORT="$(cat "$DEMO/model/port")"
head -n1 "$DEMO/model/stdout.log" >&2

cat > "$WARREN_CONFIG" <<TOML
[model]
default = "scripted/scripted"

[model_providers.scripted]
base_url = "http://127.0.0.1:$PORT/v1"
models = ["scripted"]
TOML

NAME="demo-$(date +%H%M%S)"
echo "\$ warren run --repo .demo/sample --name $NAME \"make the login test deterministic\"" >&2
"$BIN/warren" run --repo "$DEMO/sample" --name "$NAME" "make the login test deterministic"

echo
echo "\$ git log --oneline main..warren/$NAME"
git log --oneline "main..warren/$NAME"
echo
echo "\$ git show --stat --format='%h %s' warren/$NAME"
git show --stat --format='%h %s' "warren/$NAME"
echo
echo "\$ git diff warren/$NAME~1 warren/$NAME"
git --no-pager diff "warren/$NAME~1" "warren/$NAME"
echo
echo "\$ git status --short   # your checkout: untouched, uncommitted edit still there"
git status --short
