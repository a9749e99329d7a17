defmodule SnakeBridge.TestPool do
  @moduledoc false
  # Starts an extra pool for a test, with the fixture module on its PYTHONPATH.

  @fixtures Path.expand("python", __DIR__)

  def fixtures_path, do: @fixtures

  @doc "The calls registered on a pool's workers: sent, running or waiting for a thread."
  def in_flight(pool),
    do: SnakeBridge.Pool.workers(pool) |> Enum.map(& &1.in_flight) |> Enum.sum()

  def child_spec(opts) do
    opts = Keyword.put_new(opts, :python_path, [@fixtures])
    SnakeBridge.Pool.child_spec(opts)
  end
end
