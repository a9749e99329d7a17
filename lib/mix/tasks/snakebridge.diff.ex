defmodule Mix.Tasks.Snakebridge.Diff do
  @shortdoc "Compares a cached descriptor with a fresh introspection"
  @moduledoc """
  Compares the cached descriptor of a Python module with a fresh introspection and prints
  the added (`+`), removed (`-`) and changed (`~`) signatures.

      mix snakebridge.diff MODULE [--integration NAME] [--depth N] [--cache-dir PATH]

  Exits with status 1 when they differ (or nothing is cached), so it can guard CI against
  a library upgrade changing the API under generated code. The cache is left as it was.
  """
  use Mix.Task

  @switches [integration: :string, depth: :integer, cache_dir: :string, help: :boolean]

  @impl true
  def run(args) do
    case OptionParser.parse(args, strict: @switches) do
      {opts, [module], []} ->
        if opts[:help], do: Mix.shell().info(@moduledoc), else: diff(module, opts)

      {opts, _, _} ->
        if opts[:help],
          do: Mix.shell().info(@moduledoc),
          else: Mix.raise("usage: mix snakebridge.diff MODULE (see mix help snakebridge.diff)")
    end
  end

  defp diff(module, opts) do
    integration = opts[:integration] || module
    cache_dir = opts[:cache_dir] || "priv/snakebridge/schemas"

    cached =
      case SnakeBridge.Introspection.load(integration, cache_dir: cache_dir) do
        {:ok, entry} ->
          entry

        :miss ->
          Mix.raise(
            "no cached descriptor of #{integration} in #{cache_dir}; run mix snakebridge.discover #{module}"
          )

        {:error, error} ->
          Mix.raise(Exception.message(error))
      end

    Mix.Task.run("app.start")
    scratch = Path.join(System.tmp_dir!(), "snakebridge-diff-#{System.unique_integer([:positive])}")

    fresh =
      try do
        case SnakeBridge.Introspection.describe(module,
               integration: integration,
               depth: opts[:depth] || 0,
               cache_dir: scratch,
               force: true
             ) do
          {:ok, entry} -> entry
          {:error, error} -> Mix.raise(Exception.message(error))
        end
      after
        File.rm_rf(scratch)
      end

    %{added: added, removed: removed, changed: changed} =
      SnakeBridge.Introspection.diff(cached, fresh)

    for path <- added, do: Mix.shell().info("+ #{path}")
    for path <- removed, do: Mix.shell().info("- #{path}")
    for {path, old, new} <- changed, do: Mix.shell().info("~ #{path}: #{old} -> #{new}")

    if added == [] and removed == [] and changed == [] do
      Mix.shell().info("#{integration}: no differences")
    else
      Mix.shell().info(
        "#{integration}: #{length(added)} added, #{length(removed)} removed, #{length(changed)} changed"
      )

      exit({:shutdown, 1})
    end
  end
end
