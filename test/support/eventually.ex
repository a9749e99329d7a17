defmodule SnakeBridge.Eventually do
  @moduledoc false
  # Polls a condition that becomes true asynchronously (a release reaching a worker, a
  # generator being closed), instead of sleeping a fixed time.

  @doc "Whether `check` returns true within `timeout` milliseconds."
  def eventually(check, timeout \\ 3_000),
    do: poll(check, System.monotonic_time(:millisecond) + timeout)

  defp poll(check, deadline) do
    cond do
      check.() ->
        true

      System.monotonic_time(:millisecond) > deadline ->
        false

      true ->
        Process.sleep(20)
        poll(check, deadline)
    end
  end
end
