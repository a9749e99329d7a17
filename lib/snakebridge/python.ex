defmodule SnakeBridge.Python do
  @moduledoc """
  Which Python interpreter SnakeBridge's workers run, and where the app's own Python
  environment (made by `mix snakebridge.setup`) lives.

  A worker is any CPython 3.10 or newer: SnakeBridge hands its own Python code to the
  interpreter (nothing is installed into it). What the interpreter needs are the libraries
  your configs call, their `python_deps`, which `mix snakebridge.setup` installs into a
  venv that belongs to your app.

  ## The interpreter, in this order

    1. the pool's `:python` option (for the pool the application starts:
       `config :snakebridge, pool: [python: "..."]`);
    2. the application config `config :snakebridge, python: "..."`, for every pool;
    3. the environment variable `SNAKEBRIDGE_PYTHON`;
    4. the venv of `mix snakebridge.setup`, when it exists (see `venv_dir/0`);
    5. `python3` on `PATH`.

  ## The app's venv

  `config :snakebridge, venv: "path"` places it (relative paths are relative to the
  directory the VM runs in); by default it is `_build/snakebridge/venv` of the Mix project
  that runs (`_build` of your app, whichever Mix environment). In a release, where Mix
  does not run, configure `:venv` or `:python`.
  """

  # The venv's default, for when Mix does not run: the app's `_build` as it was when
  # SnakeBridge was compiled (a dependency is compiled into its parent's build path).
  @compiled_venv Path.join([Path.dirname(Mix.Project.build_path()), "snakebridge", "venv"])

  @typedoc "Where an interpreter came from, for messages: `\"SNAKEBRIDGE_PYTHON\"`, ..."
  @type source :: String.t()

  @doc """
  The interpreter a pool with `pool_opts` runs, and where it came from (see the order in
  the module doc).

      iex> SnakeBridge.Python.resolve(python: "/opt/py/bin/python3")
      {"/opt/py/bin/python3", "the pool's :python option"}
  """
  @spec resolve(keyword()) :: {String.t(), source()}
  def resolve(pool_opts \\ []) do
    venv_python = venv_python()

    cond do
      python = pool_opts[:python] ->
        {to_string(python), "the pool's :python option"}

      python = Application.get_env(:snakebridge, :python) ->
        {to_string(python), "config :snakebridge, python: ..."}

      python = non_empty(System.get_env("SNAKEBRIDGE_PYTHON")) ->
        {python, "SNAKEBRIDGE_PYTHON"}

      File.exists?(venv_python) ->
        {venv_python, "the venv of mix snakebridge.setup"}

      true ->
        {"python3", "python3 on PATH (no venv at #{venv_dir()}: run mix snakebridge.setup)"}
    end
  end

  @doc """
  The directory of the app's venv: `config :snakebridge, venv: ...`, else
  `_build/snakebridge/venv` of the running Mix project (or of the one SnakeBridge was
  compiled in, when Mix does not run).
  """
  @spec venv_dir() :: Path.t()
  def venv_dir do
    case Application.get_env(:snakebridge, :venv) do
      nil -> mix_venv() || @compiled_venv
      dir -> Path.expand(to_string(dir))
    end
  end

  @doc "The interpreter of the app's venv (which may not exist yet)."
  @spec venv_python() :: Path.t()
  def venv_python, do: Path.join([venv_dir(), "bin", "python"])

  @doc """
  What to do about a worker that cannot start with `python` (from `source`): the sentence
  SnakeBridge adds to the explanation it logs and gives calls.
  """
  @spec start_hint({String.t(), source()}) :: String.t()
  def start_hint({_python, source}) do
    "(The interpreter comes from #{source}.) Run `mix snakebridge.setup` to create the " <>
      "app's Python environment with its configs' python_deps (CPython 3.10 or newer), " <>
      "or point the pool's :python option or SNAKEBRIDGE_PYTHON at an interpreter that " <>
      "has them"
  end

  # (Mix's modules may be loadable in a VM where Mix does not run: its project stack tells.)
  defp mix_venv do
    if Code.ensure_loaded?(Mix.Project) and Process.whereis(Mix.ProjectStack) != nil and
         Mix.Project.get() != nil do
      Path.join([Path.dirname(Mix.Project.build_path()), "snakebridge", "venv"])
    end
  end

  defp non_empty(nil), do: nil
  defp non_empty(""), do: nil
  defp non_empty(value), do: value
end
