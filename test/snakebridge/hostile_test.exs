defmodule SnakeBridge.HostileTest do
  @moduledoc """
  What a careless or hostile Python library (code running inside a worker) can do to the
  BEAM, and what the BEAM's own input can do to Python: each test is one attack, and
  checks that the VM, the worker and the other callers are unharmed.
  """
  use ExUnit.Case, async: true

  alias SnakeBridge.TestPool

  @pool :hostile
  @opts [pool: @pool]
  # Two workers: one attacks, the other is the victim.
  @pair :hostile_pair

  # Small budgets, to reach each one cheaply.
  @budgets :hostile_budgets
  @small [max_payload_size: 1_000_000, max_result_size: 1_000_000, max_elements: 1_000]

  setup_all do
    start_supervised!({TestPool, name: @pool, size: 1})
    start_supervised!(Supervisor.child_spec({TestPool, name: @pair, size: 2}, id: @pair))

    start_supervised!(
      Supervisor.child_spec({TestPool, [name: @budgets, size: 1] ++ @small}, id: @budgets)
    )

    :ok
  end

  defp call(module, function, args, kwargs \\ []),
    do: SnakeBridge.call(module, function, args, kwargs, @opts)

  describe "keys that would collide in Python" do
    test "an atom and a string of the same text are refused, naming the path and both keys" do
      error =
        assert_raise ArgumentError, fn ->
          call("builtins", "len", [%{:a => 1, "a" => 2}])
        end

      assert error.message =~ "args[0]"
      assert error.message =~ ~s[the keys :a and "a" would be the same key in Python ('a')]

      nested = %{"outer" => [%{"b" => 1, b: 2}]}
      error = assert_raise ArgumentError, fn -> call("builtins", "len", [nested]) end
      assert error.message =~ ~s(args[0]["outer"][0])
    end

    test "numbers Python holds equal are refused: 1 and 1.0, true and 1, tuples of them" do
      for {map, first, second} <- [
            {%{1 => :x, 1.0 => :y}, "1", "1.0"},
            {%{true => :x, 1 => :y}, "true", "1"},
            {%{false => :x, 0.0 => :y}, "false", "0.0"},
            {%{{:a, 1} => :x, {"a", 1.0} => :y}, "{:a, 1}", ~s({"a", 1.0})}
          ] do
        error = assert_raise ArgumentError, fn -> call("builtins", "len", [map]) end
        assert error.message =~ "the keys"
        assert error.message =~ first
        assert error.message =~ second
      end
    end

    test "sets and keyword arguments are checked the same way" do
      error = assert_raise ArgumentError, fn -> call("builtins", "len", [MapSet.new([:a, "a"])]) end

      assert error.message =~ "the members :a and \"a\" would be the same member"

      error = assert_raise ArgumentError, fn -> call("builtins", "dict", [], a: 1, a: 2) end

      assert error.message =~ "the keyword argument a is given twice (:a and :a)"

      error =
        assert_raise ArgumentError, fn ->
          call("builtins", "dict", [], %{:a => 1, "a" => 2})
        end

      assert error.message =~ "kwargs"
    end

    test "in JSON, keys collide when their texts do" do
      json = [serialization: [args: :json, result: :json]]
      json_call = &SnakeBridge.call("builtins", "len", [&1], [], json ++ @opts)

      error = assert_raise ArgumentError, fn -> json_call.(%{1 => :x, "1" => :y}) end
      assert error.message =~ ~s(two keys of a map are the JSON key "1")

      # Python would hold 1 and true equal, but JSON sends them as "1" and "true".
      assert json_call.(%{1 => :x, true => :y}) == {:ok, 2}
    end

    test "maps whose keys cannot collide cross whole, mixed kinds included" do
      mixed = %{:a => 1, "b" => 2, 1 => 3, 2.5 => 4, nil => 5, {:c, 1} => 6, {"c", 2} => 7}
      assert call("builtins", "len", [mixed]) == {:ok, 7}
      big = Map.new(1..50_000, &{&1, &1})
      assert call("builtins", "len", [big]) == {:ok, 50_000}
      strings = Map.new(1..50_000, &{Integer.to_string(&1), &1})
      assert call("builtins", "len", [strings]) == {:ok, 50_000}
    end
  end

  describe "budgets before building" do
    test "a result of 100 million elements is refused before it is built; nothing else is harmed" do
      {:ok, pid} = call("sb_fixtures", "pid", [])
      slow = Task.async(fn -> call("sb_fixtures", "sleep_then", [0.5, :survived]) end)
      :erlang.garbage_collect()
      before = :erlang.memory(:total)

      assert {:error, %SnakeBridge.Error{reason: :payload_too_large, message: message}} =
               call("sb_hostile", "huge_list", [100_000_000])

      # 100M elements took about 9 GB of BEAM memory before budgets (the list's cells alone
      # are 1.6 GB). The bound leaves room for what other async tests hold meanwhile (the
      # carrier test echoes a 70 MB string).
      assert :erlang.memory(:total) - before < 1_000_000_000
      assert message =~ "max_elements of 10000000"
      assert Task.await(slow) == {:ok, "survived"}
      assert call("sb_fixtures", "pid", []) == {:ok, pid}
      assert {:ok, list} = call("sb_hostile", "huge_list", [1_000_000])
      assert length(list) == 1_000_000
    end

    test "each budget names itself, and the worker and its other calls carry on" do
      opts = [pool: @budgets]
      {:ok, pid} = SnakeBridge.call("sb_fixtures", "pid", [], [], opts)

      assert {:error, %SnakeBridge.Error{reason: :payload_too_large} = error} =
               SnakeBridge.call("sb_hostile", "huge_list", [1_001], [], opts)

      assert error.message =~ "the result: more than the pool's max_elements of 1000 values"
      assert {:ok, list} = SnakeBridge.call("sb_hostile", "huge_list", [999], [], opts)
      assert length(list) == 999

      assert {:error, %SnakeBridge.Error{reason: :payload_too_large} = error} =
               SnakeBridge.call("sb_hostile", "big_bytes", [2_000_000], [], opts)

      assert error.message =~ "more than the pool's max_result_size of 1000000 bytes"

      # Arguments are refused while they are encoded, before anything is sent.
      assert {:error, %SnakeBridge.Error{reason: :payload_too_large} = error} =
               SnakeBridge.call("builtins", "len", [List.duplicate(0, 1_001)], [], opts)

      assert error.message =~ "the arguments: more than the pool's max_elements of 1000"

      assert {:error, %SnakeBridge.Error{reason: :payload_too_large} = error} =
               SnakeBridge.call("builtins", "len", [:binary.copy("x", 2_000_000)], [], opts)

      assert error.message =~ "more than the pool's max_payload_size of 1000000 bytes"

      # Nested values count: 600 maps of one entry are 1,800 values.
      rows = for i <- 1..600, do: %{"id" => i}

      assert {:error, %SnakeBridge.Error{reason: :payload_too_large}} =
               SnakeBridge.call("builtins", "len", [rows], [], opts)

      assert SnakeBridge.call("sb_fixtures", "pid", [], [], opts) == {:ok, pid}
    end

    test "a stream chunk over the budget ends the stream with :payload_too_large" do
      opts = [pool: @budgets]

      error =
        assert_raise SnakeBridge.Error, fn ->
          SnakeBridge.stream("sb_hostile", "huge_chunks", [5_000], [], opts) |> Enum.to_list()
        end

      assert error.reason == :payload_too_large
      assert error.message =~ "max_elements"
      assert {:ok, _} = SnakeBridge.call("sb_fixtures", "pid", [], [], opts)
    end

    test "the arguments of a callback and its result keep within the budgets" do
      opts = [pool: @budgets]

      assert {:ok, ["raised", "ElixirError", message]} =
               SnakeBridge.call("sb_hostile", "call_back_with", [&length/1, 5_000], [], opts)

      assert message =~ "the callback's arguments: more than the pool's max_elements of 1000"

      assert {:ok, ["returned", 10]} =
               SnakeBridge.call("sb_hostile", "call_back_with", [&length/1, 10], [], opts)

      big = fn _ -> List.duplicate(1, 5_000) end

      assert {:ok, ["raised", "ElixirError", message]} =
               SnakeBridge.call("sb_hostile", "call_back_with", [big, 1], [], opts)

      assert message =~ "max_elements of 1000"
    end
  end

  describe "errors have a size" do
    test "a 100 MB exception message arrives cut, and the worker keeps serving its other calls" do
      {:ok, pid} = call("sb_fixtures", "pid", [])
      slow = Task.async(fn -> call("sb_fixtures", "sleep_then", [1.0, :survived]) end)

      assert {:error, %SnakeBridge.Error{reason: :python_exception, python: error}} =
               call("sb_fixtures", "fail_huge", [100_000_000])

      assert error.type == "ValueError"
      assert byte_size(error.message) < 100_000
      assert error.message =~ "characters cut"
      assert byte_size(error.traceback) < 200_000
      assert error.traceback =~ "in fail_huge"

      assert Task.await(slow) == {:ok, "survived"}
      assert call("sb_fixtures", "pid", []) == {:ok, pid}
    end
  end

  describe "shared memory" do
    test "a worker that truncates and rewrites the file of a result it sent cannot harm the binary or the VM" do
      size = 32_000_000
      expected = :binary.copy("A", size)

      # The attacker races the BEAM for the file (it must open it before the BEAM has read
      # and removed it): a few attempts, until one reached its target. The BEAM either got
      # the bytes as they were sent, or (when the truncation came while it was reading, on
      # a loaded machine) refused that one result; never a changed binary or a crash.
      attacks =
        Enum.reduce_while(1..5, [], fn _, attacks ->
          result =
            case call("sb_hostile", "tamper_with_result", [probe(), size, 0.2], []) do
              {:ok, binary} ->
                binary

              {:error, %SnakeBridge.Error{reason: :encoding, message: message}} ->
                assert message =~ "the sender changed it while it was read"
                :refused
            end

          report = finished_report()
          attacks = [{result, report} | attacks]
          if report["caught"] >= 1, do: {:halt, attacks}, else: {:cont, attacks}
        end)

      {_, report} = hd(attacks)
      # The attack reached its target: the file was open in Python, then changed.
      assert report["directory"] =~ "/snakebridge-"
      assert report["caught"] >= 1
      assert report["tampered"] == report["caught"]
      assert Enum.all?(attacks, fn {result, _} -> result in [expected, :refused] end)
    end

    test "a worker cannot find the files another worker is being sent" do
      {victim, attacker} = sessions_on_two_workers()
      secret = :binary.copy("SECRET!!", 262_144)

      snoop =
        Task.async(fn ->
          SnakeBridge.call("sb_hostile", "snoop", [1.5], [], pool: @pair, session: attacker)
        end)

      deadline = System.monotonic_time(:millisecond) + 1_500

      sent =
        Stream.repeatedly(fn ->
          SnakeBridge.call("sb_fixtures", "echo", [secret], [], pool: @pair, session: victim)
        end)
        |> Stream.take_while(fn _ -> System.monotonic_time(:millisecond) < deadline end)
        |> Enum.to_list()

      assert length(sent) > 1
      assert Enum.all?(sent, &(&1 == {:ok, secret}))
      assert {:ok, seen} = Task.await(snoop, 30_000)
      # It found the pool's directory from the BEAM's pid, as the red team did ...
      assert [_ | _] = seen["pool_dirs"]
      # ... and could neither list it nor read a byte of the other session's data.
      assert seen["listable"] == []
      assert seen["read"] == []
    end
  end

  # A tensor large enough to cross through shared memory, so that the worker maps a file.
  defp probe, do: SnakeBridge.Tensor.new(:binary.copy(<<0>>, 2_000_000), {:u, 8}, {2_000_000})

  defp finished_report do
    Enum.find_value(1..100, fn _ ->
      {:ok, report} = call("sb_hostile", "report", [])
      if report["finished"], do: report, else: Process.sleep(100) && nil
    end) || flunk("the attack did not finish")
  end

  defp sessions_on_two_workers do
    {:ok, first} = SnakeBridge.Session.checkout(pool: @pair)

    other =
      Enum.find_value(1..20, fn _ ->
        {:ok, s} = SnakeBridge.Session.checkout(pool: @pair)
        if s.worker_pid != first.worker_pid, do: s, else: SnakeBridge.Session.release(s) && nil
      end)

    assert other, "the pool's two workers each got a session"
    {first, other}
  end
end
