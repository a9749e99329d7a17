defmodule Mix.Tasks.Snakebridge.Clean do
  @shortdoc "Purges SnakeBridge's descriptor caches"
  @moduledoc """
  Purges SnakeBridge's caches.

      mix snakebridge.clean [--all] [--cache-dir PATH]

  Removes the descriptor files (`priv/snakebridge/schemas/*.json`, or `--cache-dir`): the
  only cache of what introspection learned. With `--all`, also the
  app's venv (`mix snakebridge.setup` makes it again) and SnakeBridge's installed native
  code (the next `mix compile` installs it again).
  """
  use Mix.Task

  @switches [all: :boolean, cache_dir: :string, help: :boolean]

  @impl true
  def run(args) do
    case OptionParser.parse(args, strict: @switches) do
      {opts, [], []} ->
        if opts[:help], do: Mix.shell().info(@moduledoc), else: clean(opts)

      {_, rest, invalid} ->
        Mix.raise(
          "unexpected arguments #{inspect(rest ++ Enum.map(invalid, &elem(&1, 0)))}; see mix help snakebridge.clean"
        )
    end
  end

  defp clean(opts) do
    dir =
      SnakeBridge.Introspection.cache_dir(cache_dir: opts[:cache_dir] || "priv/snakebridge/schemas")

    files = Path.wildcard(Path.join(dir, "*.json"))
    Enum.each(files, &File.rm!/1)
    Mix.shell().info("removed #{length(files)} descriptor file(s) from #{dir}")

    if opts[:all] do
      native = Path.join(List.to_string(:code.priv_dir(:snakebridge)), "native")

      for path <- [SnakeBridge.Python.venv_dir(), native] do
        File.rm_rf!(path)
        Mix.shell().info("removed #{Path.relative_to_cwd(path)}")
      end
    end
  end
end
