defmodule SnakeBridge.Test.JSONBridge do
  @moduledoc false
  # Compiled with `use SnakeBridge.Generator` from the committed descriptor
  # test/fixtures/schemas/json.json: compiling needs no Python.
  use SnakeBridge.Generator,
    config: %{
      python_module: "json",
      elixir_module: SnakeBridge.Test.JSON,
      introspection: %{cache_path: "test/fixtures/schemas"},
      functions: [%{python_path: "json.dumps"}, %{python_path: "json.loads"}],
      classes: [%{python_path: "json.JSONEncoder", methods: [%{name: "encode"}]}]
    }
end
