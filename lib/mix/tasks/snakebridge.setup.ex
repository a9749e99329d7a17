defmodule Mix.Tasks.Snakebridge.Setup do
  @shortdoc "Creates the app's Python venv with its configs' python_deps, and a lock file"
  @moduledoc """
  Creates (or brings up to date) your application's Python environment: a venv holding
  the `python_deps` of its SnakeBridge configs, with the resolved versions recorded in a
  lock file meant for git. Pools use this venv by default (see `SnakeBridge.Python` for
  the order in which the interpreter is chosen).

      mix snakebridge.setup [--venv DIR] [--python PYTHON] [--deps a,b] [--lock FILE]
                            [--installer uv|pip] [--upgrade] [--check]

  The requirements are the `python_deps` of:

    * every config module (`use SnakeBridge.Config`) under the project's `elixirc_paths`
      (the files that hold them are compiled in memory: the app itself is not compiled, so
      this works before the generated modules can be);
    * every manifest under `config/snakebridge/`;
    * the `integrations` of `config :snakebridge, pool: [...]`;
    * `config :snakebridge, python_deps: [...]`, and `--deps a,b`.

  What it does:

    * creates the venv when it is missing, with `uv venv` when `uv` is on `PATH` (or
      `SNAKEBRIDGE_UV` names it; uv installs from PyPI with `pip install uv`), else with
      `python -m venv`; the interpreter must be CPython 3.10 or newer;
    * installs the requirements (`uv pip install`, else `pip install`). While the lock
      file's requirements are the same as now, it installs exactly the versions it pins;
      otherwise (or with `--upgrade`) it resolves them anew and rewrites the lock file;
    * does nothing, without starting Python, when nothing changed since its last run.

  Options:

    * `--venv DIR` - the venv (default: `SnakeBridge.Python.venv_dir/0`,
      `_build/snakebridge/venv`, or `config :snakebridge, venv: ...`).
    * `--python PYTHON` - the interpreter that creates a missing venv (default `python3`).
    * `--deps a,b` - requirements besides the configs'.
    * `--lock FILE` - the lock file (default `snakebridge.lock` in the project's root).
    * `--installer uv|pip` - which installer to use (default: uv when available).
    * `--upgrade` - resolve the requirements anew even when the lock file matches them.
    * `--check` - change nothing; exit with status 1, listing what is wrong, unless the
      venv exists and holds exactly what the lock file pins for the current requirements.
  """
  use Mix.Task

  alias SnakeBridge.Config

  @switches [
    venv: :string,
    python: :string,
    deps: :string,
    lock: :string,
    installer: :string,
    upgrade: :boolean,
    check: :boolean,
    help: :boolean
  ]

  @stamp ".snakebridge-setup"
  # Installed with every venv, never pinned.
  @tooling ~w(pip setuptools wheel distribute)

  @impl true
  def run(args) do
    case OptionParser.parse(args, strict: @switches) do
      {opts, [], []} ->
        if opts[:help], do: Mix.shell().info(@moduledoc), else: setup(opts)

      {_, rest, invalid} ->
        Mix.raise(
          "unexpected arguments #{inspect(rest ++ Enum.map(invalid, &elem(&1, 0)))}; see mix help snakebridge.setup"
        )
    end
  end

  defp setup(opts) do
    started = System.monotonic_time(:millisecond)
    Mix.Task.run("loadconfig")
    venv = Path.expand(opts[:venv] || SnakeBridge.Python.venv_dir())

    env = %{
      venv: venv,
      python: Path.join([venv, "bin", "python"]),
      creator: opts[:python] || "python3",
      lock: Path.expand(opts[:lock] || "snakebridge.lock"),
      uv: uv(opts[:installer]),
      requirements: requirements(opts[:deps]),
      started: started
    }

    if opts[:check], do: check(env), else: install(env, opts[:upgrade] || false)
  end

  ## Requirements

  defp requirements(extra) do
    from_configs =
      for config <- config_modules() ++ manifests() ++ pool_integrations(),
          dep <- config.python_deps || [],
          do: to_string(dep)

    (split(extra) ++ Enum.map(Application.get_env(:snakebridge, :python_deps, []), &to_string/1))
    |> Kernel.++(from_configs)
    |> Enum.map(&String.trim/1)
    |> Enum.reject(&(&1 == ""))
    |> Enum.uniq()
    |> Enum.sort()
  end

  defp split(nil), do: []
  defp split(text), do: String.split(text, ",", trim: true)

  defp manifests do
    case Config.Loader.load_all() do
      {:ok, configs} ->
        Enum.map(configs, &elem(&1, 1))

      {:error, failures} ->
        Mix.raise(
          Enum.map_join(failures, "\n", fn {path, problems} ->
            Config.describe_problems(Path.relative_to_cwd(path), problems)
          end)
        )
    end
  end

  defp pool_integrations do
    for source <- Application.get_env(:snakebridge, :pool, [])[:integrations] || [],
        do: Config.load!(source)
  end

  # The config modules of the project, compiled in memory from the files that hold them.
  defp config_modules do
    files =
      for dir <- Mix.Project.config()[:elixirc_paths] || ["lib"],
          file <- Path.wildcard(Path.join(dir, "**/*.ex")),
          File.read!(file) =~ ~r/use\s+SnakeBridge\.Config\b/,
          do: file

    if files == [] do
      []
    else
      previous = Code.compiler_options(ignore_module_conflict: true)

      try do
        case Kernel.ParallelCompiler.compile(files) do
          {:ok, modules, _warnings} ->
            for module <- modules, config_module?(module), do: Config.load!(module)

          {:error, _errors, _warnings} ->
            Mix.raise(
              "could not compile the config modules in #{Enum.join(files, ", ")} on their " <>
                "own (mix snakebridge.setup reads them without compiling the app): keep a " <>
                "config module in a file of its own, or list its python_deps in " <>
                "config :snakebridge, python_deps: [...]"
            )
        end
      after
        Code.compiler_options(previous)
      end
    end
  end

  defp config_module?(module) do
    behaviours = module.module_info(:attributes) |> Keyword.get_values(:behaviour)
    SnakeBridge.Config in List.flatten(behaviours)
  end

  ## Installing

  defp install(env, upgrade?) do
    lock = read_lock(env.lock)
    stamp = stamp(env, lock)

    if not upgrade? and File.exists?(env.python) and lock != nil and
         File.read(Path.join(env.venv, @stamp)) == {:ok, stamp} do
      checked = System.monotonic_time(:millisecond) - env.started

      Mix.shell().info(
        "The Python environment #{rel(env.venv)} is up to date " <>
          "(#{length(env.requirements)} requirement(s), #{rel(env.lock)}; checked in #{checked} ms)"
      )
    else
      create_venv(env)
      version = python_version!(env.python)

      case pins(lock, env.requirements, version, upgrade?) do
        {:ok, pins} ->
          Mix.shell().info("Installing the #{length(pins)} package(s) pinned in #{rel(env.lock)}")
          pip_install(env, pins)

        {:resolve, why} ->
          Mix.shell().info("Resolving #{describe(env.requirements)} (#{why})")
          pip_install(env, env.requirements)
      end

      packages = installed(env.python)
      write_lock(env.lock, version, env.requirements, packages)
      File.write!(Path.join(env.venv, @stamp), stamp(env, read_lock(env.lock)))

      Mix.shell().info(
        "The Python environment #{rel(env.venv)} holds #{describe(env.requirements)}; " <>
          "versions in #{rel(env.lock)} (commit it)"
      )
    end

    note_override(env)
  end

  defp pins(_lock, _requirements, _version, true), do: {:resolve, "--upgrade"}
  defp pins(nil, _requirements, _version, _), do: {:resolve, "no lock file yet"}

  defp pins(lock, requirements, version, _) do
    cond do
      lock.requires != requirements ->
        {:resolve, "the requirements changed since the lock file was written"}

      minor(lock.python) != minor(version) ->
        {:resolve, "the lock file was made with Python #{lock.python}, this is #{version}"}

      true ->
        {:ok, lock.packages}
    end
  end

  defp minor(version), do: version |> String.split(".") |> Enum.take(2)

  defp describe([]), do: "no requirements"
  defp describe(requirements), do: Enum.join(requirements, ", ")

  defp rel(path), do: Path.relative_to_cwd(path)

  defp create_venv(%{python: python} = env) do
    unless File.exists?(python) do
      python_version!(env.creator)
      Mix.shell().info("Creating the venv #{rel(env.venv)} with #{env.creator}")

      case env.uv do
        nil -> run!(env.creator, ["-m", "venv", env.venv])
        uv -> run!(uv, ["venv", "--quiet", "--python", env.creator, env.venv])
      end
    end
  end

  defp pip_install(_env, []), do: :ok

  defp pip_install(%{uv: nil} = env, packages),
    do: run!(env.python, ["-m", "pip", "install", "--disable-pip-version-check", "-q" | packages])

  defp pip_install(%{uv: uv} = env, packages),
    do: run!(uv, ["pip", "install", "--quiet", "--python", env.python | packages])

  # The CPython version of `python`; refuses anything but CPython 3.10 or newer.
  defp python_version!(python) do
    script = "import platform,sys;print(platform.python_implementation(),platform.python_version())"

    case run!(python, ["-c", script]) |> String.split() do
      ["CPython", version] ->
        if Version.compare(normalize(version), "3.10.0") == :lt,
          do: Mix.raise("SnakeBridge needs CPython 3.10 or newer; #{python} is #{version}")

        version

      other ->
        Mix.raise("SnakeBridge needs CPython; #{python} is #{Enum.join(other, " ")}")
    end
  end

  defp normalize(version) do
    case String.split(version, ".") do
      [major, minor, patch | _] -> "#{major}.#{minor}.#{Integer.parse(patch) |> elem(0)}"
      [major, minor] -> "#{major}.#{minor}.0"
    end
  end

  # `name==version` of every distribution installed in the venv (but its tooling).
  defp installed(python) do
    script = """
    import importlib.metadata as m
    seen = set()
    for d in m.distributions():
        name = d.metadata["Name"]
        if name and name.lower() not in seen:
            seen.add(name.lower())
            print(f"{name}=={d.version}")
    """

    run!(python, ["-c", script])
    |> String.split("\n", trim: true)
    |> Enum.reject(&tooling?/1)
    |> Enum.sort_by(&String.downcase/1)
  end

  defp tooling?(pin), do: String.downcase(hd(String.split(pin, "=="))) in @tooling

  defp uv("pip"), do: nil

  defp uv(choice) when choice in [nil, "uv"] do
    found = System.get_env("SNAKEBRIDGE_UV") || System.find_executable("uv")

    cond do
      found -> found
      choice == "uv" -> Mix.raise("uv was not found: put it on PATH or set SNAKEBRIDGE_UV")
      true -> nil
    end
  end

  defp uv(other), do: Mix.raise("--installer must be uv or pip, not #{inspect(other)}")

  defp note_override(env) do
    {python, source} = SnakeBridge.Python.resolve(Application.get_env(:snakebridge, :pool, []))

    if Path.expand(python) != env.python and python != "python3" do
      Mix.shell().info(
        "Note: pools use #{python} (from #{source}), not this venv, while that is set"
      )
    end
  end

  ## Checking

  defp check(env) do
    lock = read_lock(env.lock)

    problems =
      cond do
        not File.exists?(env.python) ->
          ["there is no venv at #{rel(env.venv)}"]

        lock == nil ->
          ["there is no lock file #{rel(env.lock)}"]

        lock.requires != env.requirements ->
          [
            "the requirements changed since #{rel(env.lock)} was written: " <>
              "now #{describe(env.requirements)}, then #{describe(lock.requires)}"
          ]

        true ->
          have = MapSet.new(installed(env.python), &String.downcase/1)

          for pin <- lock.packages,
              not MapSet.member?(have, String.downcase(pin)),
              do: "#{pin} is not installed"
      end

    case problems do
      [] ->
        Mix.shell().info(
          "The Python environment #{rel(env.venv)} holds what #{rel(env.lock)} pins " <>
            "for #{describe(env.requirements)}"
        )

      problems ->
        Enum.each(problems, &Mix.shell().error("snakebridge.setup --check: #{&1}"))
        Mix.shell().error("Run `mix snakebridge.setup` to fix it.")
        exit({:shutdown, 1})
    end
  end

  ## The lock file

  defp write_lock(path, version, requirements, packages) do
    text =
      [
        "# The Python packages of this app's SnakeBridge venv, written by",
        "# `mix snakebridge.setup`. Commit it: while the requirements below stay the same,",
        "# setup installs exactly these versions.",
        "python #{version}"
      ] ++
        Enum.map(requirements, &"requires #{&1}") ++ packages

    File.write!(path, Enum.join(text, "\n") <> "\n")
  end

  defp read_lock(path) do
    case File.read(path) do
      {:ok, text} ->
        lines = text |> String.split("\n") |> Enum.map(&String.trim/1)
        lines = Enum.reject(lines, &(&1 == "" or String.starts_with?(&1, "#")))

        Enum.reduce(lines, %{python: nil, requires: [], packages: []}, fn
          "python " <> version, lock -> %{lock | python: String.trim(version)}
          "requires " <> req, lock -> %{lock | requires: [String.trim(req) | lock.requires]}
          pin, lock -> %{lock | packages: [pin | lock.packages]}
        end)
        |> then(fn lock ->
          %{lock | requires: Enum.sort(lock.requires), packages: Enum.reverse(lock.packages)}
        end)

      {:error, :enoent} ->
        nil

      {:error, reason} ->
        Mix.raise("cannot read #{path}: #{:file.format_error(reason)}")
    end
  end

  # What a run depends on: when it is the same as the last run's, there is nothing to do.
  defp stamp(env, lock) do
    inputs = {env.requirements, env.creator, env.python, lock && lock.packages}
    Base.encode16(:crypto.hash(:sha256, :erlang.term_to_binary(inputs)), case: :lower)
  end

  defp run!(command, args) do
    case System.cmd(command, args, stderr_to_stdout: true) do
      {out, 0} ->
        out

      {out, status} ->
        Mix.raise("#{command} #{Enum.join(args, " ")} failed (exit status #{status}):\n#{out}")
    end
  rescue
    e in ErlangError ->
      why = if e.original == :enoent, do: "it was not found", else: Exception.message(e)
      Mix.raise("cannot run #{command}: #{why} (give an interpreter with --python)")
  end
end
