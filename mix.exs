defmodule Mix.Tasks.Compile.SnakebridgeNif do
  @moduledoc """
  Builds SnakeBridge's NIF (`native/snakebridge_nif`) with cargo and installs it as
  `priv/native/snakebridge_nif.so`.

  Defined here, in `mix.exs`, because SnakeBridge has no Hex dependencies (so no
  `:rustler` Mix compiler). The build is skipped when nothing under `native/`, `proto/`
  or the Cargo manifests changed since the installed library was built. The installed
  file is deleted before the new one is copied, so that a running VM that has the old
  library mapped keeps its (unlinked) copy intact.

  Environment: `SNAKEBRIDGE_CARGO_TARGET_DIR` overrides the cargo target directory
  (default `_build/cargo` inside the SnakeBridge checkout); `SNAKEBRIDGE_SKIP_NIF=1` skips
  the build entirely (the library must then already be in place).
  """
  use Mix.Task.Compiler

  @root __DIR__
  @library "snakebridge_nif"

  @impl true
  def run(_args) do
    target = installed_path()

    cond do
      System.get_env("SNAKEBRIDGE_SKIP_NIF") == "1" ->
        {:noop, []}

      not stale?(target) ->
        {:noop, []}

      true ->
        build(target)
    end
  end

  defp installed_path, do: Path.join([@root, "priv", "native", @library <> ".so"])

  defp target_dir do
    System.get_env("SNAKEBRIDGE_CARGO_TARGET_DIR") || Path.join([@root, "_build", "cargo"])
  end

  defp sources do
    Path.wildcard(Path.join(@root, "native/**/*.{rs,toml}")) ++
      Path.wildcard(Path.join(@root, "proto/*.proto")) ++
      Enum.filter([Path.join(@root, "Cargo.toml"), Path.join(@root, "Cargo.lock")], &File.exists?/1)
  end

  defp stale?(target) do
    case File.stat(target, time: :posix) do
      {:ok, %{mtime: built}} -> Enum.any?(sources(), &(File.stat!(&1, time: :posix).mtime > built))
      {:error, _} -> true
    end
  end

  defp build(target) do
    cargo = System.find_executable("cargo")

    if cargo == nil do
      error("cargo was not found on PATH; install Rust (rustup) or run `make setup`")
    else
      Mix.shell().info("Compiling SnakeBridge NIF (cargo build --release -p #{@library})")

      args = ["build", "--release", "-p", @library, "--target-dir", target_dir()]

      case System.cmd(cargo, args, cd: @root, stderr_to_stdout: true, into: IO.stream()) do
        {_, 0} -> install(target)
        {_, status} -> error("cargo build failed with exit status #{status}")
      end
    end
  end

  defp install(target) do
    built = Path.join([target_dir(), "release", "lib#{@library}.so"])
    File.mkdir_p!(Path.dirname(target))
    # Delete first: overwriting a mapped library in place can crash a VM that loaded it.
    File.rm(target)
    File.cp!(built, target)
    {:ok, []}
  end

  defp error(message) do
    diagnostic = %Mix.Task.Compiler.Diagnostic{
      compiler_name: "snakebridge_nif",
      file: Path.join(@root, "mix.exs"),
      message: message,
      position: nil,
      severity: :error
    }

    Mix.shell().error(message)
    {:error, [diagnostic]}
  end
end

defmodule SnakeBridge.MixProject do
  use Mix.Project

  @version "0.1.0"

  def project do
    [
      app: :snakebridge,
      version: @version,
      elixir: "~> 1.14",
      start_permanent: Mix.env() == :prod,
      compilers: [:snakebridge_nif] ++ Mix.compilers(),
      elixirc_paths: elixirc_paths(Mix.env()),
      deps: [],
      description: "Use any Python library from Elixir, through a Rust core.",
      package: package(),
      docs: [main: "readme", extras: ["README.md"]]
    ]
  end

  def application do
    [
      extra_applications: [:logger, :crypto, :eex],
      mod: {SnakeBridge.Application, []}
    ]
  end

  defp elixirc_paths(:test), do: ["lib", "test/support"]
  defp elixirc_paths(_), do: ["lib"]

  defp package do
    [
      licenses: ["Apache-2.0"],
      files: ~w(lib native proto priv/python Cargo.toml Cargo.lock mix.exs Makefile README.md)
    ]
  end
end
