defmodule SnakeBridge.StreamTest do
  use ExUnit.Case, async: true

  import SnakeBridge.Eventually

  alias SnakeBridge.{Error, PythonError, Ref, TestPool}

  setup do
    name = :"stream_#{System.unique_integer([:positive])}"
    start_supervised!({TestPool, name: name, size: 1})
    %{pool: name}
  end

  defp stream(pool, fun, args, opts \\ []),
    do: SnakeBridge.stream("sb_fixtures", fun, args, [], [pool: pool] ++ opts)

  defp state(pool), do: SnakeBridge.call!("sb_fixtures", "generator_state", [], [], pool: pool)

  test "a generator arrives element by element", %{pool: pool} do
    assert Enum.to_list(stream(pool, "tracked", [5])) == [0, 1, 2, 3, 4]

    assert SnakeBridge.stream("builtins", "range", [3], [], pool: pool) |> Enum.to_list() == [
             0,
             1,
             2
           ]

    assert SnakeBridge.stream("builtins", "iter", [["a", "b"]], [], pool: pool) |> Enum.to_list() ==
             ["a", "b"]
  end

  test "the stream is lazy: nothing runs until it is enumerated", %{pool: pool} do
    lazy = stream(pool, "tracked", [3])
    assert state(pool)["produced"] == 0
    assert Enum.sum(lazy) == 3
    assert state(pool)["produced"] == 3
    # Each enumeration calls again.
    assert Enum.sum(lazy) == 3
    assert state(pool)["produced"] == 6
  end

  test "halting early closes the Python generator", %{pool: pool} do
    assert stream(pool, "tracked", [], window: 4) |> Enum.take(5) == [0, 1, 2, 3, 4]
    assert eventually(fn -> state(pool)["closed"] == 1 end)
    # Credit bounds how far the generator ran ahead of the consumer.
    assert state(pool)["produced"] <= 5 + 4

    assert SnakeBridge.stream("itertools", "count", [1], [], pool: pool) |> Enum.take(3) == [
             1,
             2,
             3
           ]
  end

  test "a fast producer cannot flood a slow consumer's mailbox", %{pool: pool} do
    queue_lengths =
      stream(pool, "tracked", [200], window: 8)
      |> Stream.map(fn _ ->
        Process.sleep(2)
        {:message_queue_len, n} = Process.info(self(), :message_queue_len)
        n
      end)
      |> Enum.to_list()

    assert length(queue_lengths) == 200
    assert Enum.max(queue_lengths) <= 8
  end

  test "an exception mid-stream raises where it is consumed, after the elements before it",
       %{pool: pool} do
    parent = self()

    error =
      assert_raise PythonError, fn ->
        stream(pool, "fail_after", [3]) |> Stream.each(&send(parent, {:got, &1})) |> Stream.run()
      end

    assert error.type == "ValueError"
    assert error.message == "boom after 3"
    assert error.traceback =~ "fail_after"
    for i <- 0..2, do: assert_received({:got, ^i})
  end

  test "async generators and async functions", %{pool: pool} do
    assert Enum.to_list(stream(pool, "async_count", [4])) == [0, 1, 2, 3]
    assert {:ok, 42} = SnakeBridge.call("sb_fixtures", "async_double", [21], [], pool: pool)
  end

  test "chunks may be object references", %{pool: pool} do
    refs = Enum.to_list(stream(pool, "objects", [3]))
    assert [%Ref{type: "builtins.object"}, %Ref{}, %Ref{}] = refs
    assert Enum.all?(refs, &Ref.alive?/1)
  end

  test "streaming a method of an object", %{pool: pool} do
    {:ok, text} =
      SnakeBridge.Runtime.create_instance("io", "StringIO", ["a\nb\nc\n"], [], pool: pool)

    assert SnakeBridge.Runtime.stream_method(text, "readlines") |> Enum.to_list() == [
             "a\n",
             "b\n",
             "c\n"
           ]
  end

  test "a target that does not exist raises when the stream is consumed", %{pool: pool} do
    lazy = SnakeBridge.stream("sb_fixtures", "no_such_generator", [], [], pool: pool)
    assert_raise Error, ~r/target_not_found/, fn -> Enum.to_list(lazy) end
  end

  test "no message is left behind after halting", %{pool: pool} do
    assert stream(pool, "tracked", [], window: 16) |> Enum.take(2) == [0, 1]
    Process.sleep(100)
    refute_received _
  end
end
