defmodule Mix.Tasks.Snakebridge.Discover do
  @shortdoc "Introspects a Python module and writes its SnakeBridge config"
  @moduledoc """
  Introspects a Python module and writes a SnakeBridge config to start from, plus its
  descriptor in the cache.

      mix snakebridge.discover MODULE [--depth N] [--submodules a,b] [--exclude PATTERN,...]
                                      [--output PATH] [--cache-dir PATH] [--prefix MODULE]
                                      [--force]

    * `--depth N` - walk submodules N levels deep (default 0).
    * `--submodules a,b` - submodules to include explicitly.
    * `--exclude p,q` - fnmatch patterns of dotted names to leave out.
    * `--output PATH` - where the config goes (default `config/snakebridge/MODULE.exs`).
    * `--cache-dir PATH` - where descriptors go (default `priv/snakebridge/schemas`).
    * `--prefix MODULE` - the Elixir namespace of the generated modules (default: the
      Python module camelized, e.g. `Dspy`).
    * `--force` - introspect again even if nothing changed, and overwrite an existing
      config.

  Starts the application (and so its Python pool). Exits non-zero on failure.
  """
  use Mix.Task

  @switches [
    depth: :integer,
    submodules: :string,
    exclude: :string,
    output: :string,
    cache_dir: :string,
    prefix: :string,
    force: :boolean,
    help: :boolean
  ]

  @impl true
  def run(args) do
    case OptionParser.parse(args, strict: @switches) do
      {opts, [module], []} ->
        if opts[:help], do: Mix.shell().info(@moduledoc), else: discover(module, opts)

      {opts, _, _} ->
        if opts[:help],
          do: Mix.shell().info(@moduledoc),
          else:
            Mix.raise("usage: mix snakebridge.discover MODULE (see mix help snakebridge.discover)")
    end
  end

  defp discover(module, opts) do
    output = opts[:output] || Path.join("config/snakebridge", "#{module}.exs")

    if File.exists?(output) and not Keyword.get(opts, :force, false) do
      Mix.raise("#{output} exists; pass --force to overwrite it")
    end

    Mix.Task.run("app.start")
    cache_dir = opts[:cache_dir] || "priv/snakebridge/schemas"
    split = fn key -> (opts[key] || "") |> String.split(",", trim: true) end

    describe_opts = [
      depth: opts[:depth] || 0,
      submodules: split.(:submodules),
      exclude_patterns: split.(:exclude),
      cache_dir: cache_dir,
      force: Keyword.get(opts, :force, false)
    ]

    Mix.shell().info("Introspecting #{module} (depth #{describe_opts[:depth]}) ...")
    progress(module, describe_opts)

    {micros, result} =
      :timer.tc(fn -> SnakeBridge.Introspection.describe(module, describe_opts) end)

    entry =
      case result do
        {:ok, entry} ->
          entry

        {:error, error} ->
          Mix.raise("introspection of #{module} failed: #{Exception.message(error)}")
      end

    report(entry, micros)
    File.mkdir_p!(Path.dirname(output))

    prefix = if opts[:prefix], do: [module_prefix: opts[:prefix]], else: []

    File.write!(
      output,
      SnakeBridge.Config.Formatter.format(entry, prefix ++ describe_opts ++ [module_path: module])
    )

    Mix.shell().info("Wrote #{output} and #{Path.join(cache_dir, module <> ".json")}")
  end

  # Walks the modules one by one on one worker, printing each as it is described.
  defp progress(module, opts) do
    args = [module, opts[:submodules], opts[:depth], opts[:exclude_patterns]]

    SnakeBridge.Session.with_session(fn session ->
      case SnakeBridge.call("snakebridge_agent.introspect", "module_names", args, [],
             session: session,
             timeout: 120_000
           ) do
        {:ok, names} ->
          total = length(names)

          names
          |> Enum.with_index(1)
          |> Enum.each(fn {name, index} ->
            {micros, described} =
              :timer.tc(fn ->
                SnakeBridge.call(
                  "snakebridge_agent.introspect",
                  "describe",
                  [name, [], 0, opts[:exclude_patterns]],
                  [],
                  session: session,
                  timeout: 120_000
                )
              end)

            Mix.shell().info(
              "  [#{index}/#{total}] #{name}: #{summary(described)} (#{div(micros, 1000)} ms)"
            )
          end)

        {:error, error} ->
          Mix.raise("introspection of #{module} failed: #{Exception.message(error)}")
      end
    end)
  end

  defp summary({:ok, %{"classes" => classes, "functions" => functions}}),
    do: "#{map_size(classes)} classes, #{map_size(functions)} functions"

  defp summary({:error, error}), do: "failed: #{error.message}"

  # One line per module: what it holds.
  defp report(%SnakeBridge.Descriptor.Entry{descriptor: descriptor} = entry, micros) do
    names = Map.keys(descriptor.classes) ++ Map.keys(descriptor.functions)

    names
    |> Enum.group_by(fn path -> path |> String.split(".") |> Enum.drop(-1) |> Enum.join(".") end)
    |> Enum.sort()
    |> Enum.each(fn {module, members} ->
      classes = Enum.count(members, &Map.has_key?(descriptor.classes, &1))
      Mix.shell().info("  #{module}: #{classes} classes, #{length(members) - classes} functions")
    end)

    for warning <- descriptor.warnings, do: Mix.shell().info("  warning: #{warning}")

    Mix.shell().info(
      "#{entry.integration} #{entry.library_version}: #{length(names)} names in #{div(micros, 1000)} ms"
    )
  end
end
