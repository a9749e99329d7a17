defmodule Mix.Tasks.Snakebridge.Setup do
  @shortdoc "Creates the Python venv and installs the integrations' python_deps"
  @moduledoc """
  Creates (or updates) the Python venv SnakeBridge's workers run in and installs the
  Python packages the integrations need, idempotently: packages already installed are
  left alone.

      mix snakebridge.setup [--venv DIR] [--python PYTHON] [--deps a,b] [--check]

    * `--venv DIR` - the venv (default: the directory of the pool's Python,
      `_build/venv` unless `SNAKEBRIDGE_PYTHON` or the `:python` pool option says
      otherwise).
    * `--python PYTHON` - the interpreter that creates a missing venv (default `python3`).
    * `--deps a,b` - requirements to install besides the `python_deps` of every config
      under `config/snakebridge/*.exs`.
    * `--check` - install nothing; list what is missing and exit 1 if anything is.

  The worker package itself (`snakebridge_agent`, a Rust extension) is built by
  `make setup`.
  """
  use Mix.Task

  @switches [venv: :string, python: :string, deps: :string, check: :boolean, help: :boolean]

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
    venv = opts[:venv] || default_venv()
    python = Path.join([venv, "bin", "python"])
    deps = Enum.uniq(split(opts[:deps]) ++ config_deps())

    cond do
      opts[:check] -> check(python, deps)
      true -> install(venv, python, deps, opts[:python] || "python3")
    end
  end

  defp default_venv do
    python =
      Application.get_env(:snakebridge, :pool, [])[:python] || SnakeBridge.Pool.default_python()

    if String.contains?(python, "/"),
      do: python |> Path.dirname() |> Path.dirname(),
      else: "_build/venv"
  end

  defp split(nil), do: []
  defp split(text), do: String.split(text, ",", trim: true)

  # `python_deps` of every config manifest under config/snakebridge/ (composed: a
  # mixin's deps count too).
  defp config_deps do
    case SnakeBridge.Config.Loader.load_all() do
      {:ok, configs} ->
        for {_path, config} <- configs, dep <- config.python_deps || [], do: to_string(dep)

      {:error, failures} ->
        Mix.raise(
          Enum.map_join(failures, "\n", fn {path, problems} ->
            SnakeBridge.Config.describe_problems(Path.relative_to_cwd(path), problems)
          end)
        )
    end
  end

  defp check(python, deps) do
    unless File.exists?(python), do: Mix.raise("no venv at #{python}; run mix snakebridge.setup")

    case missing(python, deps) do
      [] ->
        Mix.shell().info("all #{length(deps)} Python requirement(s) are installed")

      missing ->
        Enum.each(missing, &Mix.shell().info("missing: #{&1}"))
        exit({:shutdown, 1})
    end
  end

  defp install(venv, python, deps, creator) do
    unless File.exists?(python) do
      Mix.shell().info("Creating the venv #{venv}")
      run!(creator, ["-m", "venv", venv])
    end

    case missing(python, deps) do
      [] ->
        Mix.shell().info("all #{length(deps)} Python requirement(s) are installed")

      missing ->
        Mix.shell().info("Installing #{Enum.join(missing, ", ")}")
        run!(python, ["-m", "pip", "install", "--disable-pip-version-check", "-q" | missing])
    end
  end

  # Requirements that the venv does not satisfy (checked by the venv's own pip machinery).
  defp missing(_python, []), do: []

  defp missing(python, deps) do
    script = """
    import sys
    from importlib.metadata import version, PackageNotFoundError
    try:
        from packaging.requirements import Requirement
    except ImportError:
        from pip._vendor.packaging.requirements import Requirement
    for line in sys.argv[1:]:
        req = Requirement(line)
        try:
            if req.specifier.contains(version(req.name), prereleases=True):
                continue
        except PackageNotFoundError:
            pass
        print(line)
    """

    {out, status} = System.cmd(python, ["-c", script | deps], stderr_to_stdout: true)
    if status != 0, do: Mix.raise("could not check the requirements with #{python}:\n#{out}")
    String.split(out, "\n", trim: true)
  end

  defp run!(command, args) do
    case System.cmd(command, args, stderr_to_stdout: true) do
      {_, 0} -> :ok
      {out, status} -> Mix.raise("#{command} #{Enum.join(args, " ")} failed (#{status}):\n#{out}")
    end
  end
end
