defmodule SnakeBridge.CallTest do
  use ExUnit.Case, async: true

  alias SnakeBridge.{Error, PythonError}

  describe "calling the standard library" do
    test "math functions return floats and big integers" do
      assert {:ok, 3.0} = SnakeBridge.call("math", "sqrt", [9])

      assert {:ok, 265_252_859_812_191_058_636_308_480_000_000} =
               SnakeBridge.call(:math, :factorial, [30])

      assert {:ok, 3.141592653589793} = SnakeBridge.call("math", "fsum", [[1.0, 2.141592653589793]])
    end

    test "json encodes and decodes with keyword arguments" do
      assert {:ok, ~s({"a": 1, "b": [1, 2]})} =
               SnakeBridge.call("json", "dumps", [%{"b" => [1, 2], "a" => 1}], sort_keys: true)

      assert {:ok, "[1,2]"} = SnakeBridge.call("json", "dumps", [[1, 2]], %{separators: {",", ":"}})

      assert {:ok, %{"x" => [1, nil, true]}} =
               SnakeBridge.call("json", "loads", [~s({"x": [1, null, true]})])
    end

    test "statistics and os.path" do
      assert {:ok, 2.5} = SnakeBridge.call("statistics", "mean", [[1, 2, 3, 4]])
      assert {:ok, 2} = SnakeBridge.call("statistics", "median_low", [[1, 2, 3, 4]])
      assert {:ok, "/a/b/c.txt"} = SnakeBridge.call("os.path", "join", ["/a", "b", "c.txt"])
      assert {:ok, {"/a/b", "c.txt"}} = SnakeBridge.call("os.path", "split", ["/a/b/c.txt"])
    end

    test "builtins, including dotted names inside a module" do
      assert {:ok, 3} = SnakeBridge.call("builtins", "len", [[1, 2, 3]])
      assert {:ok, [1, 2, 3]} = SnakeBridge.call("builtins", "sorted", [[3, 1, 2]])
      assert {:ok, [3, 2, 1]} = SnakeBridge.call("builtins", "sorted", [[3, 1, 2]], reverse: true)
      assert {:ok, "a,b"} = SnakeBridge.call("builtins", "str.join", [",", ["a", "b"]])
      assert {:ok, "0x1f"} = SnakeBridge.call("builtins", "hex", [31])
    end

    test "call!/5 returns the value" do
      assert 4.0 == SnakeBridge.call!("math", "sqrt", [16])
    end
  end

  describe "errors" do
    test "a Python exception becomes SnakeBridge.PythonError with type, message and traceback" do
      assert {:error, %Error{reason: :python_exception, python: %PythonError{} = e}} =
               SnakeBridge.call("math", "sqrt", [-1])

      assert e.type == "ValueError"
      assert e.module == "builtins"
      assert e.message == "math domain error"
      assert e.target == "math.sqrt"
      assert "builtins.ValueError" in e.mro
      assert e.traceback =~ "ValueError: math domain error"
    end

    test "call!/5 raises the Python exception, subclasses keep their bases in the mro" do
      error =
        assert_raise PythonError, fn ->
          SnakeBridge.call!("sb_fixtures", "fail", ["boom"])
        end

      assert error.type == "FixtureError"
      assert error.module == "sb_fixtures"
      assert error.message == "boom"
      assert hd(error.mro) == "sb_fixtures.FixtureError"
      assert "builtins.ValueError" in error.mro
      assert error.traceback =~ "in fail"
      assert Exception.message(error) =~ "sb_fixtures.FixtureError in sb_fixtures.fail: boom"
    end

    test "a missing module or attribute is :target_not_found" do
      assert {:error, %Error{reason: :target_not_found, message: message}} =
               SnakeBridge.call("no_such_module_xyz", "f", [])

      assert message =~ "no_such_module_xyz"

      assert {:error, %Error{reason: :target_not_found, message: message}} =
               SnakeBridge.call("math", "no_such_function", [])

      assert message =~ "no_such_function"

      assert_raise Error, ~r/target_not_found \(calling math.nope\)/, fn ->
        SnakeBridge.call!("math", "nope", [])
      end
    end

    test "an unhashable map key is an :encoding error naming its path" do
      assert {:error, %Error{reason: :encoding, message: message}} =
               SnakeBridge.call("sb_fixtures", "echo", [%{"ok" => %{[1, 2] => "list key"}}])

      assert message =~ ~s(args[0]["ok"])
      assert message =~ "unhashable"
    end

    test "an unsupported term raises ArgumentError naming its path" do
      assert_raise ArgumentError, ~r/args\[1\]\[:opts\].*pid/, fn ->
        SnakeBridge.call("sb_fixtures", "echo", [1, %{opts: self()}])
      end

      assert_raise ArgumentError, ~r/kwargs\[:key\]\[0\].*reference/, fn ->
        SnakeBridge.call("sb_fixtures", "describe", [], key: [make_ref()])
      end

      assert_raise ArgumentError, ~r/args\[0\]\[1\].*port/, fn ->
        SnakeBridge.call("sb_fixtures", "echo", [{:port, hd(Port.list())}])
      end

      assert_raise ArgumentError, ~r/args\[0\].*%URI\{\}/, fn ->
        SnakeBridge.call("sb_fixtures", "echo", [URI.parse("http://x")])
      end

      assert_raise ArgumentError, ~r/args\[0\].*improper list/, fn ->
        SnakeBridge.call("sb_fixtures", "echo", [[1 | 2]])
      end
    end

    test "bad names and options raise ArgumentError before anything is sent" do
      assert_raise ArgumentError, ~r/Python module name/, fn -> SnakeBridge.call(nil, "f") end

      assert_raise ArgumentError, ~r/:timeout/, fn ->
        SnakeBridge.call("math", "pi", [], [], timeout: 0)
      end

      # A misspelt option, or one of another kind of call, is refused rather than ignored.
      assert_raise ArgumentError, ~r/unknown option :timout \(calling math.sqrt\)/, fn ->
        SnakeBridge.call("math", "sqrt", [4], [], timout: 10)
      end

      assert_raise ArgumentError, ~r/unknown option :as/, fn ->
        SnakeBridge.stream("itertools", "count", [], [], as: :ref) |> Enum.take(1)
      end

      assert_raise ArgumentError, ~r/unknown option :session/, fn ->
        SnakeBridge.broadcast("math", "sqrt", [4], [], session: nil)
      end

      assert_raise ArgumentError, ~r/to be a keyword list/, fn ->
        SnakeBridge.call("math", "sqrt", [4], [], [:timeout])
      end
    end

    test "a call past its timeout returns :timeout at its deadline" do
      started = System.monotonic_time(:millisecond)

      assert {:error, %Error{reason: :timeout}} =
               SnakeBridge.call("sb_fixtures", "sleep_then", [2, "late"], [], timeout: 100)

      elapsed = System.monotonic_time(:millisecond) - started
      assert elapsed < 1_500, "timed out after #{elapsed} ms"
      refute_received _, "no stray reply may be left in the mailbox"
    end

    test "calling a pool that does not run is :no_pool" do
      assert {:error, %Error{reason: :no_pool}} =
               SnakeBridge.call("math", "sqrt", [1], [], pool: :nope)
    end
  end

  describe "concurrency" do
    test "500 concurrent callers each get their own answer" do
      results =
        1..500
        |> Task.async_stream(
          fn i -> {i, SnakeBridge.call("sb_fixtures", "echo", [%{"i" => i, "s" => "#{i}"}])} end,
          max_concurrency: 500,
          timeout: 60_000
        )
        |> Enum.map(fn {:ok, result} -> result end)

      assert length(results) == 500

      for {i, result} <- results do
        assert result == {:ok, %{"i" => i, "s" => "#{i}"}}
      end
    end
  end
end
