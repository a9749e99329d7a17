#!/usr/bin/env bash
# SnakeBridge compiles, loads its NIF and calls Python when it is a path dependency of
# another Mix application (a scratch app made here and thrown away).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

mkdir -p "$scratch/lib"
cat > "$scratch/mix.exs" <<MIX
defmodule Scratch.MixProject do
  use Mix.Project

  def project do
    [app: :scratch, version: "0.1.0", elixir: "~> 1.14", deps: [{:snakebridge, path: "$root"}]]
  end

  def application, do: [extra_applications: [:logger]]
end
MIX
cat > "$scratch/lib/scratch.ex" <<'EX'
defmodule Scratch do
  def hypot(a, b), do: SnakeBridge.call!("math", "hypot", [a, b])
end
EX

cd "$scratch"
mix compile --warnings-as-errors
output=$(mix run -e 'IO.puts("hypot=#{Scratch.hypot(3, 4)}")')
echo "$output"
if ! grep -q "hypot=5.0" <<<"$output"; then
  echo "FAIL: SnakeBridge as a path dependency did not answer math.hypot(3, 4)" >&2
  exit 1
fi
echo "1 passed, 0 failed"
