#!/usr/bin/env bash
# SnakeBridge as a dependency of a new Mix application, as a user gets it: the dependency
# is a copy of exactly the files SnakeBridge's Hex package holds (no _build, no venv, no
# built libraries), and the interpreters have nothing installed.
#
#   1. the package's files: no build output, LICENSE and CHANGELOG present;
#   2. the app compiles (SnakeBridge's native code built from source with cargo) and
#      generates a module from a config;
#   3. its worker runs on bare CPythons (pyenv 3.10 and 3.13 when present, Debian's
#      /usr/bin/python3): math.sqrt and the generated module;
#   4. `mix snakebridge.setup` installs the configs' python_deps (numpy) into the app's
#      venv, writes the lock file, does nothing the second time, and `--check` says so in
#      its exit status; the pool then uses that venv: a numpy tensor call works;
#   5. without Rust on PATH, the app installs the precompiled artifacts from a server on
#      127.0.0.1, and is refused when an artifact's checksum is wrong;
#   6. with an interpreter that does not exist, the app boots and calls answer
#      :no_workers with the explanation.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/sb-package-XXXXXX")
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# What the Makefile exports for the checkout's own tests is not what a user has.
unset SNAKEBRIDGE_PYTHON ERL_AFLAGS
export MIX_ENV=dev
# Downloaded artifacts stay in this run.
export SNAKEBRIDGE_CACHE_DIR="$work/cache"
# The copy's crates share the checkout's cargo target directory: its dependencies are
# built already (the copy's own three crates are rebuilt, their paths differ).
export SNAKEBRIDGE_CARGO_TARGET_DIR="${SNAKEBRIDGE_CARGO_TARGET_DIR:-$root/_build/cargo}"

passed=0
step() { echo; echo "== $*"; }
ok() { passed=$((passed + 1)); echo "ok: $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
expect() { # expect "<text>" "<what it proves>" <<< output
  local output; output=$(cat)
  grep -qF -- "$1" <<<"$output" || { echo "$output" >&2; fail "$2 (no \"$1\" in the output)"; }
  ok "$2"
}

# A copy of exactly the package's files.
copy_package() {
  local dest=$1
  mkdir -p "$dest"
  (cd "$root" && mix run --no-compile --no-start test/support/package_files.exs) > "$work/files.txt"
  (cd "$root" && tar -cf - -T "$work/files.txt") | (cd "$dest" && tar -xf -)
}

# A new Mix application depending on the SnakeBridge at $2, with a config module whose
# generated module wraps textwrap, and a config module that needs numpy.
new_app() {
  local app=$1 dep=$2
  mkdir -p "$app/lib/scratch" "$app/config"
  cat > "$app/mix.exs" <<MIX
defmodule Scratch.MixProject do
  use Mix.Project

  def project do
    [app: :scratch, version: "0.1.0", elixir: "~> 1.14", deps: [{:snakebridge, path: "$dep"}]]
  end

  def application, do: [extra_applications: [:logger]]
end
MIX
  cat > "$app/config/config.exs" <<'EX'
import Config
config :snakebridge, pool: [size: 1]
EX
  cat > "$app/lib/scratch/textwrap_config.ex" <<'EX'
defmodule Scratch.TextwrapConfig do
  use SnakeBridge.Config

  @impl true
  def config do
    %SnakeBridge.Config{
      python_module: "textwrap",
      elixir_module: Scratch.Textwrap,
      functions: [%{python_path: "textwrap.shorten"}]
    }
  end
end
EX
  cat > "$app/lib/scratch/numpy_config.ex" <<'EX'
defmodule Scratch.NumpyConfig do
  use SnakeBridge.Config

  @impl true
  def config, do: %SnakeBridge.Config{python_module: "numpy", python_deps: ["numpy"]}
end
EX
  cat > "$app/lib/scratch.ex" <<'EX'
defmodule Scratch.Bridge do
  use SnakeBridge.Generator, config: Scratch.TextwrapConfig
end

defmodule Scratch do
  def check do
    [%{python_version: version}] = SnakeBridge.Pool.workers()
    IO.puts("python=#{version |> String.split() |> hd()}")
    IO.puts("sqrt=#{SnakeBridge.call!("math", "sqrt", [16])}")
    IO.puts("shorten=#{Scratch.Textwrap.shorten!("Hello  world, from Python", 12)}")
  end

  def tensor do
    t = SnakeBridge.Tensor.new(<<1.0::float-64-native, 2.0::float-64-native>>, {:f, 64}, {2})
    %SnakeBridge.Tensor{data: data} = SnakeBridge.call!("numpy", "multiply", [t, 3])
    IO.puts("tensor=#{inspect(for <<x::float-64-native <- data>>, do: x)}")
    IO.puts("python=#{SnakeBridge.Pool.settings()[:python]}")
  end

  def missing do
    {:error, error} = SnakeBridge.call("math", "sqrt", [4], [], timeout: :infinity)
    IO.puts("reason=#{error.reason}")
    IO.puts("message=#{error.message}")
  end
end
EX
}

step "1. the package's files"
pkg="$work/deps/snakebridge"
copy_package "$pkg"
files=$(cat "$work/files.txt")
echo "$(wc -l <<<"$files") files"
if grep -E '\.so$|__pycache__|\.pyc$|\.(mypy|pytest|ruff)_cache/|^_build/|^priv/native|^bench/|^deps/|^test/' <<<"$files"; then
  fail "the package holds built or machine-specific files (above)"
fi
ok "nothing built or machine-specific"
for f in LICENSE CHANGELOG.md README.md mix.exs Cargo.lock native/mix_compiler.exs \
         priv/python/snakebridge_agent/__init__.py; do
  grep -qx "$f" <<<"$files" || fail "the package lacks $f"
done
ok "LICENSE, CHANGELOG.md and the worker's Python package are in it"

step "2. a new app compiles with SnakeBridge as its dependency"
app="$work/app"
new_app "$app" "$pkg"
cd "$app"
first_python=$(ls -d ~/.pyenv/versions/3.10.*/bin/python3 2>/dev/null | head -1 || true)
first_python=${first_python:-/usr/bin/python3}
# The generator describes textwrap once, with a bare interpreter.
SNAKEBRIDGE_PYTHON=$first_python mix compile 2>&1 | tail -5
test -f "$pkg/priv/native/snakebridge_nif.so" || fail "no NIF in the dependency's priv/native"
test -f "$pkg/priv/native/snakebridge_agent_native.abi3.so" || fail "no worker extension"
ok "compiled, native code in the dependency's priv/native"

step "3. workers on bare interpreters"
pythons=()
for v in 3.10 3.13; do
  p=$(ls -d ~/.pyenv/versions/$v.*/bin/python3 2>/dev/null | head -1 || true)
  [ -n "$p" ] && pythons+=("$p") || echo "(no CPython $v here)"
done
[ -x /usr/bin/python3 ] && pythons+=(/usr/bin/python3)
for py in "${pythons[@]}"; do
  if "$py" -c 'import snakebridge_agent' 2>/dev/null || "$py" -c 'import numpy' 2>/dev/null; then
    fail "$py is not bare (it has snakebridge_agent or numpy)"
  fi
  out=$(SNAKEBRIDGE_PYTHON=$py mix run -e 'Scratch.check()' 2>&1)
  echo "$out" | grep -E '^(python|sqrt|shorten)='
  expect "sqrt=4.0" "math.sqrt on $py" <<<"$out"
  expect "shorten=Hello [...]" "the generated Scratch.Textwrap.shorten! on $py" <<<"$out"
done

step "4. mix snakebridge.setup makes the app's venv from its configs"
uv_dir="$work/uv-bin"
mkdir -p "$uv_dir"
if [ -x "$root/_build/venv/bin/uv" ]; then
  ln -s "$root/_build/venv/bin/uv" "$uv_dir/uv"
else
  echo "(no uv in $root/_build/venv: setup uses venv + pip)"
fi
out=$(PATH="$uv_dir:$PATH" mix snakebridge.setup 2>&1)
echo "$out"
expect "holds numpy" "setup installed the configs' python_deps" <<<"$out"
test -x "$app/_build/snakebridge/venv/bin/python" || fail "no venv at _build/snakebridge/venv"
grep -q '^numpy==' snakebridge.lock || fail "snakebridge.lock pins no numpy"
grep -q '^requires numpy$' snakebridge.lock || fail "snakebridge.lock does not record the requirement"
ok "the lock file pins $(grep '^numpy==' snakebridge.lock)"
start=$(date +%s%N)
out=$(PATH="$uv_dir:$PATH" mix snakebridge.setup 2>&1)
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
expect "is up to date" "a second setup with nothing changed installs nothing (${elapsed_ms} ms, mix included)" <<<"$out"
mix snakebridge.setup --check >/dev/null 2>&1 || fail "setup --check failed on an up-to-date venv"
ok "setup --check exits 0 when the venv holds what the lock pins"
if mix snakebridge.setup --check --deps six >"$work/check.txt" 2>&1; then
  fail "setup --check exited 0 although a requirement was added"
fi
expect "the requirements changed" "setup --check exits 1 when the requirements changed" <"$work/check.txt"
out=$(mix run -e 'Scratch.tensor()' 2>&1)
expect "tensor=[3.0, 6.0]" "a numpy tensor call, on the venv the pool found by itself" <<<"$out"
expect "python=$app/_build/snakebridge/venv/bin/python" "the pool's interpreter is the setup venv" <<<"$out"
# The other installer, with the lock file's pins.
out=$(mix snakebridge.setup --installer pip --venv "$work/pip-venv" 2>&1)
expect "pinned in snakebridge.lock" "setup with venv + pip installs the lock file's pins" <<<"$out"
"$work/pip-venv/bin/python" -c 'import numpy' || fail "the pip venv has no numpy"

step "5. precompiled artifacts, without Rust"
(cd "$root" && mix snakebridge.release_artifacts "$work/release") | tail -3
ls "$work/release"
port_file="$work/port"
python3 - "$work/release" "$port_file" <<'PY' &
import functools, http.server, sys
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
open(sys.argv[2], "w").write(str(server.server_address[1]))
server.serve_forever()
PY
server_pid=$!
for _ in $(seq 50); do [ -s "$port_file" ] && break; sleep 0.1; done
export SNAKEBRIDGE_RELEASE_URL="http://127.0.0.1:$(cat "$port_file")"
no_rust_path=$(tr ':' '\n' <<<"$PATH" | grep -v -e '\.cargo' -e rustup | paste -sd: -)
PATH=$no_rust_path command -v cargo >/dev/null && fail "cargo is still on the reduced PATH"

prebuilt="$work/deps-prebuilt/snakebridge"
copy_package "$prebuilt"
cp "$work/release/checksum-snakebridge.exs" "$prebuilt/"
app2="$work/app-prebuilt"
new_app "$app2" "$prebuilt"
cd "$app2"
out=$(PATH=$no_rust_path SNAKEBRIDGE_PYTHON=/usr/bin/python3 mix compile 2>&1)
echo "$out" | grep -E "Downloading|error" || true
expect "Downloading $SNAKEBRIDGE_RELEASE_URL/snakebridge_nif-" "the NIF came from the release server" <<<"$out"
cmp -s "$prebuilt/priv/native/snakebridge_nif.so" "$root/priv/native/snakebridge_nif.so" ||
  fail "the installed NIF is not the released one"
out=$(PATH=$no_rust_path SNAKEBRIDGE_PYTHON=/usr/bin/python3 mix run -e 'Scratch.check()' 2>&1)
expect "sqrt=4.0" "the app runs on the precompiled artifacts, with no cargo on PATH" <<<"$out"

# A tampered artifact on the server: refused, naming the file and both checksums.
nif=$(cd "$work/release" && ls snakebridge_nif-*.tar.gz)
expected=$(grep -o "\"$nif\" => \"[^\"]*\"" "$work/release/checksum-snakebridge.exs" | sed 's/.*=> "//; s/"$//')
echo "tampered" >> "$work/release/$nif"
actual="sha256:$(sha256sum "$work/release/$nif" | cut -d' ' -f1)"
rm -rf "$SNAKEBRIDGE_CACHE_DIR" "$prebuilt/priv/native" "$app2/_build"
if PATH=$no_rust_path SNAKEBRIDGE_PYTHON=/usr/bin/python3 mix compile >"$work/tampered.txt" 2>&1; then
  fail "a tampered artifact was accepted"
fi
expect "$nif" "the refusal names the artifact" <"$work/tampered.txt"
expect "$expected" "the refusal names the expected checksum" <"$work/tampered.txt"
expect "$actual" "the refusal names the checksum it got" <"$work/tampered.txt"
test ! -e "$prebuilt/priv/native/snakebridge_nif.so" || fail "the tampered NIF was installed"
ok "nothing was installed"

step "6. an interpreter that does not exist"
cd "$app"
out=$(SNAKEBRIDGE_PYTHON=/nonexistent/python3 mix run -e 'Scratch.missing()' 2>&1)
expect "reason=no_workers" "the app boots, and a call answers :no_workers at once" <<<"$out"
expect "\`/nonexistent/python3\` was not found" "the explanation names the interpreter" <<<"$out"
expect "SNAKEBRIDGE_PYTHON" "the explanation says where the interpreter came from" <<<"$out"
expect "mix snakebridge.setup" "the explanation names the command that fixes it" <<<"$out"
expect "[error] SnakeBridge pool SnakeBridge.Pool started without Python workers" "one error is logged" <<<"$out"

echo
echo "$passed passed, 0 failed"
