# The Mix compiler that installs SnakeBridge's native code (the NIF and the worker's Python
# extension), precompiled or built with cargo: see native/mix_compiler.exs.
Code.require_file("native/mix_compiler.exs", __DIR__)

defmodule SnakeBridge.MixProject do
  use Mix.Project

  @version "0.1.0"
  @source_url "https://github.com/snakebridge/snakebridge"

  def project do
    [
      app: :snakebridge,
      version: @version,
      elixir: "~> 1.14",
      start_permanent: Mix.env() == :prod,
      compilers: [:snakebridge_native] ++ Mix.compilers(),
      elixirc_paths: elixirc_paths(Mix.env()),
      deps: [],
      description: "Use any Python library from Elixir, through a Rust core.",
      package: package(),
      source_url: @source_url,
      docs: [main: "readme", extras: ["README.md", "CHANGELOG.md"]]
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

  # What the Hex package holds: everything a dependency needs to compile, and nothing built
  # or machine-specific. A release also ships `checksum-snakebridge.exs` (made by
  # `make release-artifacts`), which lets a dependency use the precompiled artifacts; without
  # it, the dependency builds its native code from source.
  defp package do
    checksums =
      if File.exists?(Path.join(__DIR__, "checksum-snakebridge.exs")),
        do: ["checksum-snakebridge.exs"],
        else: []

    [
      licenses: ["Apache-2.0"],
      links: %{"GitHub" => @source_url, "Changelog" => "#{@source_url}/blob/main/CHANGELOG.md"},
      files: ~w(lib native proto priv/python Cargo.toml Cargo.lock mix.exs .formatter.exs
           README.md LICENSE CHANGELOG.md) ++ checksums,
      exclude_patterns: [
        ~r/__pycache__/,
        ~r/\.pyc$/,
        ~r/\.so$/,
        ~r{(^|/)target/},
        ~r{(^|/)\.(mypy|pytest|ruff)_cache/}
      ]
    ]
  end
end
