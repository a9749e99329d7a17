# Shared helpers of the benchmark scripts: starting SnakeBridge without its default pool,
# timing, percentiles, medians, tables. Nothing here fails on a number.

defmodule Bench do
  @doc "Starts the :snakebridge application without its default pool."
  def start do
    Application.put_env(:snakebridge, :start_pool, false)
    {:ok, _} = Application.ensure_all_started(:snakebridge)
    :ok
  end

  @doc "Seconds `fun` takes."
  def seconds(fun) do
    t0 = System.monotonic_time(:nanosecond)
    fun.()
    (System.monotonic_time(:nanosecond) - t0) / 1.0e9
  end

  @doc "Calls per second when `callers` processes make `total` calls of `fun` between them."
  def throughput(fun, total, callers) do
    per_caller = div(total, callers)

    elapsed_s =
      seconds(fn ->
        1..callers
        |> Enum.map(fn _ -> Task.async(fn -> for _ <- 1..per_caller, do: fun.() end) end)
        |> Enum.each(&Task.await(&1, :infinity))
      end)

    per_caller * callers / elapsed_s
  end

  @doc "Per-call latencies in microseconds, sorted."
  def latencies(n, fun) do
    for _ <- 1..n do
      t0 = System.monotonic_time(:nanosecond)
      fun.()
      (System.monotonic_time(:nanosecond) - t0) / 1000
    end
    |> Enum.sort()
  end

  def percentile(sorted, q),
    do: Enum.at(sorted, min(length(sorted) - 1, ceil(q * length(sorted)) - 1))

  def median(values) do
    sorted = values |> Enum.reject(&is_nil/1) |> Enum.sort()
    if sorted == [], do: nil, else: Enum.at(sorted, div(length(sorted), 2))
  end

  @doc "Medians, per name and key, of rounds of `%{name => %{key => number}}`."
  def medians(rounds, keys) do
    names = rounds |> hd() |> Map.keys()

    Map.new(names, fn name ->
      {name, Map.new(keys, fn key -> {key, median(Enum.map(rounds, &get_in(&1, [name, key])))} end)}
    end)
  end

  @doc "Prints a table of `rows` (`{name, %{key => number}}`) with `columns` (`{key, title}`)."
  def table(rows, columns) do
    header = String.pad_trailing("name", 40) <> Enum.map_join(columns, &pad(elem(&1, 1)))
    IO.puts(header)

    for {name, values} <- rows do
      IO.puts(
        String.pad_trailing(name, 40) <>
          Enum.map_join(columns, fn {key, _} -> pad(fmt(values[key])) end)
      )
    end
  end

  def ratio(a, b) when is_number(a) and is_number(b) and b > 0,
    do: :erlang.float_to_binary(a / b, decimals: 2)

  def ratio(_, _), do: "n/a"

  def fmt(nil), do: "-"
  def fmt(x) when x >= 1000, do: x |> round() |> Integer.to_string()
  def fmt(x), do: :erlang.float_to_binary(x * 1.0, decimals: 1)
  defp pad(s), do: String.pad_leading(s, 14)
end
