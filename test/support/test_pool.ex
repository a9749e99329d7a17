defmodule SnakeBridge.TestPool do
  @moduledoc false
  # Starts an extra pool for a test, with the fixture module on its PYTHONPATH.

  @fixtures Path.expand("python", __DIR__)

  def fixtures_path, do: @fixtures

  def child_spec(opts) do
    opts = Keyword.put_new(opts, :python_path, [@fixtures])
    SnakeBridge.Pool.child_spec(opts)
  end
end
