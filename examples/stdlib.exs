# SnakeBridge demo: real Python calls from Elixir through the Rust core.
# Run with `make demo` (which sets everything up first) or `mix run examples/stdlib.exs`.

defmodule Demo do
  def show(label, fun) do
    {micros, result} = :timer.tc(fun)
    IO.puts(String.pad_trailing(label, 46) <> inspect(result) <> "  (#{micros} µs)")
  end
end

IO.puts("SnakeBridge demo — #{length(SnakeBridge.Pool.workers())} Python workers:")

for w <- SnakeBridge.Pool.workers() do
  IO.puts("  worker #{w.slot}: pid #{w.pid}, Python #{w.python_version |> String.split() |> hd()}")
end

IO.puts("")
Demo.show("math.sqrt(2)", fn -> SnakeBridge.call("math", "sqrt", [2]) end)
Demo.show("math.factorial(25)", fn -> SnakeBridge.call("math", "factorial", [25]) end)

Demo.show("statistics.mean([1, 2, 3, 4])", fn ->
  SnakeBridge.call("statistics", "mean", [[1, 2, 3, 4]])
end)

Demo.show("os.path.join(\"/srv\", \"data\", \"x.csv\")", fn ->
  SnakeBridge.call("os.path", "join", ["/srv", "data", "x.csv"])
end)

Demo.show("json.dumps(%{...}, sort_keys: true)", fn ->
  SnakeBridge.call("json", "dumps", [%{"b" => [1, 2.5, nil], "a" => true}], sort_keys: true)
end)

Demo.show("builtins.sorted([3, 1, 2], reverse: true)", fn ->
  SnakeBridge.call("builtins", "sorted", [[3, 1, 2]], reverse: true)
end)

Demo.show("datetime.date.fromisoformat(\"2026-11-24\")", fn ->
  SnakeBridge.call("datetime", "date.fromisoformat", ["2026-11-24"])
end)

Demo.show("collections.Counter(\"abracadabra\")", fn ->
  SnakeBridge.call("collections", "Counter", ["abracadabra"])
end)

IO.puts("\nLive objects, streams and callbacks:")
{:ok, path} = SnakeBridge.call("pathlib", "PurePosixPath", ["/srv/data/report.csv"])
IO.puts("  #{inspect(path)}  suffix=#{SnakeBridge.get_attr!(path, :suffix)}")
first = SnakeBridge.stream("itertools", "count", [1]) |> Enum.take(5)
IO.puts("  itertools.count(1) |> Enum.take(5) = #{inspect(first)}")
sorted = SnakeBridge.call!("builtins", "sorted", [["ccc", "a", "bb"]], key: &String.length/1)
IO.puts("  sorted(key=&String.length/1) = #{inspect(sorted)}")

IO.puts("\nDescribing a library (introspection through a worker, cached as JSON):")
cache_dir = Path.join(System.tmp_dir!(), "snakebridge-demo-schemas")

{micros, {:ok, entry}} =
  :timer.tc(fn -> SnakeBridge.Introspection.describe("json", cache_dir: cache_dir, depth: 1) end)

descriptor = entry.descriptor
dumps = descriptor.functions["json.dumps"]

IO.puts(
  "  json #{entry.library_version}: #{map_size(descriptor.classes)} classes, " <>
    "#{map_size(descriptor.functions)} functions in #{div(micros, 1000)} ms"
)

IO.puts("  json.dumps#{dumps.signature}")
IO.puts("  #{dumps.docstring |> String.split("\n") |> hd()}")

{micros, {:ok, _}} =
  :timer.tc(fn -> SnakeBridge.Introspection.load("json", cache_dir: cache_dir) end)

IO.puts("  loaded again from the cache in #{micros} µs, without Python")

IO.puts("\nErrors are values:")
{:error, error} = SnakeBridge.call("math", "sqrt", [-1])

IO.puts(
  "  math.sqrt(-1) -> #{inspect(error.reason)}: #{error.python.type}: #{error.python.message}"
)

{:error, error} = SnakeBridge.call("math", "nope", [])
IO.puts("  math.nope()   -> #{inspect(error.reason)}: #{error.message}")
{:error, error} = SnakeBridge.call("time", "sleep", [1], [], timeout: 50)
IO.puts("  time.sleep(1) with timeout: 50 -> #{inspect(error.reason)}")

try do
  SnakeBridge.call("builtins", "repr", [%{callback: self()}])
rescue
  e in ArgumentError -> IO.puts("  a pid argument -> ArgumentError: #{Exception.message(e)}")
end

IO.puts("\n200 concurrent calls:")

{micros, results} =
  :timer.tc(fn ->
    1..200
    |> Task.async_stream(fn i -> SnakeBridge.call!("math", "pow", [i, 2]) end, max_concurrency: 200)
    |> Enum.map(fn {:ok, v} -> v end)
  end)

IO.puts("  sum of squares 1..200 = #{trunc(Enum.sum(results))} in #{div(micros, 1000)} ms")
