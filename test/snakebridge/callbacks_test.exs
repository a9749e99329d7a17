defmodule SnakeBridge.CallbacksTest do
  use ExUnit.Case, async: true

  alias SnakeBridge.{PythonError, TestPool}

  test "sorted(key=fn) runs the Elixir function for every element" do
    assert SnakeBridge.call!("builtins", "sorted", [["bb", "a", "ccc"]], key: &String.length/1) ==
             ["a", "bb", "ccc"]

    assert SnakeBridge.call!("builtins", "sorted", [[3, 1, 2]], key: fn x -> -x end) == [3, 2, 1]
  end

  test "map over a Python iterable, and an Elixir {module, function, arity}" do
    assert SnakeBridge.stream("builtins", "map", [fn x -> x * 2 end, [1, 2, 3]]) |> Enum.to_list() ==
             [2, 4, 6]

    assert SnakeBridge.call!("sb_fixtures", "call_with", [{String, :upcase, 1}, "abc"]) == "ABC"
    # A 3-tuple whose first element is not an Elixir module stays data.
    assert SnakeBridge.call!("sb_fixtures", "echo", [{:lists, :sum, 1}]) == {"lists", "sum", 1}
  end

  test "keyword arguments reach the function as a final map" do
    assert SnakeBridge.call!("sb_fixtures", "call_with", [fn a, opts -> {a, opts} end, 1], x: 2) ==
             {1, %{"x" => 2}}
  end

  test "an error in the Elixir function surfaces in Python as ElixirError" do
    result =
      SnakeBridge.call!("sb_fixtures", "catch_elixir_error", [
        fn _ -> raise ArgumentError, "nope" end,
        1
      ])

    assert result["python_type"] == "ElixirError"
    assert result["message"] == "nope"
    assert result["elixir_type"] == "ArgumentError"
    assert result["has_stacktrace"]

    error =
      assert_raise PythonError, fn ->
        SnakeBridge.call!("sb_fixtures", "call_with", [fn -> throw(:ball) end])
      end

    assert error.type == "ElixirError"
    assert error.message =~ "ball"

    # Wrong arity is an Elixir error too.
    assert %{"elixir_type" => "BadArityError"} =
             SnakeBridge.call!("sb_fixtures", "catch_elixir_error", [fn -> :ok end, 1])
  end

  test "a result that cannot cross back is an ElixirError naming its path" do
    assert %{"message" => message} =
             SnakeBridge.call!("sb_fixtures", "catch_elixir_error", [fn _ -> self() end, 1])

    assert message =~ "pid"
  end

  test "re-entrant calls (Elixir -> Python -> Elixir -> Python) do not deadlock" do
    negate = fn x -> SnakeBridge.call!("operator", "neg", [x]) end
    assert SnakeBridge.call!("builtins", "sorted", [[3, 1, 2]], key: negate) == [3, 2, 1]

    nested = fn x ->
      SnakeBridge.call!("sb_fixtures", "call_with", [fn y -> y + 1 end, x])
    end

    assert SnakeBridge.call!("builtins", "list", [SnakeBridge.call!("builtins", "range", [1])]) == [
             0
           ]

    assert SnakeBridge.call!("sb_fixtures", "call_with", [nested, 41]) == 42
  end

  test "re-entrant calls into a strictly serial single worker do not deadlock" do
    start_supervised!({TestPool, name: :serial_callbacks, size: 1, threads: 1})
    opts = [pool: :serial_callbacks, timeout: 10_000]

    inner = fn x -> SnakeBridge.call!("operator", "mul", [x, 10], [], opts) end

    assert SnakeBridge.call!("sb_fixtures", "call_with", [inner, 4], [], opts) == 40

    deeper = fn x ->
      SnakeBridge.call!("sb_fixtures", "call_with", [inner, x], [], opts) + 1
    end

    assert SnakeBridge.call!("sb_fixtures", "call_with", [deeper, 5], [], opts) == 51
  end
end
