defmodule SnakeBridge.Test.JSONConfig do
  @moduledoc false
  # A config module (validated when it compiles) over the committed json descriptor.
  use SnakeBridge.Config

  @impl true
  def config do
    %SnakeBridge.Config{
      python_module: "json",
      elixir_module: SnakeBridge.GenTest.ModuleJSON,
      introspection: %{cache_path: "test/fixtures/schemas"},
      functions: [%{python_path: "json.loads", returns: :any}]
    }
  end
end
