defmodule SnakeBridge.DeepInputTest do
  @moduledoc """
  A million levels of nesting crash nothing: not the VM (terms from Elixir, bytes handed to
  the decoders), not a worker (values a Python function returns). Each is refused with an
  error naming the limit and the path where it was hit; values nested up to the limit cross
  intact, in every container kind.
  """
  use ExUnit.Case, async: true

  alias SnakeBridge.{Error, TestPool, TypeConverter}

  @levels 1_000_000
  @limit "nested more than 256 levels deep"

  defp nest(levels, wrap), do: Enum.reduce(1..levels, 1, fn _, inner -> wrap.(inner) end)

  defp wraps do
    [
      list: &[&1],
      tuple: &{&1, 2},
      map_value: &%{"k" => &1},
      map_key: &%{&1 => nil},
      set: &MapSet.new([&1]),
      mixed: &[%{"k" => {&1}}]
    ]
  end

  test "a term nested a million levels is refused by call/5 and TypeConverter, naming where" do
    for {kind, wrap} <- wraps() do
      deep = nest(@levels, wrap)

      error =
        assert_raise ArgumentError, fn -> SnakeBridge.call("sb_fixtures", "echo", [1, deep]) end

      assert error.message =~ "cannot send args[1]", "#{kind}"
      assert error.message =~ @limit, "#{kind}"

      error =
        assert_raise ArgumentError, fn -> SnakeBridge.call("sb_fixtures", "echo", [], x: deep) end

      assert error.message =~ "kwargs", "#{kind}"
      assert error.message =~ @limit, "#{kind}"

      for codec <- [:msgpack, :json] do
        assert {:error, "value" <> _ = message} = TypeConverter.to_python(deep, codec)
        assert message =~ @limit, "#{kind} #{codec}"
      end
    end

    # The path is the one the walk took: here always the first element.
    error =
      assert_raise ArgumentError, fn ->
        SnakeBridge.call("sb_fixtures", "echo", [nest(@levels, &[&1])])
      end

    assert error.message =~ "cannot send args" <> String.duplicate("[0]", 256) <> " to Python"
  end

  test "bytes nested a million levels are refused by from_python, on a dirty scheduler" do
    deep_msgpack = fn prefix -> :binary.copy(prefix, @levels) <> <<0xC0>> end

    for {what, bytes} <- [
          arrays: deep_msgpack.(<<0x91>>),
          arrays32: deep_msgpack.(<<0xDD, 1::32>>),
          map_keys: deep_msgpack.(<<0x81>>),
          map_values: deep_msgpack.(<<0x81, 0xC0>>),
          tuples: deep_msgpack.(<<0xC7, 0, 2, 0x91>>),
          sets: deep_msgpack.(<<0xC7, 0, 3, 0x91>>),
          reference_tags: deep_msgpack.(<<0xC7, 0, 8>>),
          tensor_tags: deep_msgpack.(<<0xC7, 0, 10, 0x93>>)
        ] do
      assert {:error, message} = TypeConverter.from_python(bytes, :msgpack)
      assert message =~ @limit, "#{what}: #{message}"
    end

    json = String.duplicate("[", @levels) <> String.duplicate("]", @levels)

    assert {:error, "JSON nested more than 127 levels deep" <> _} =
             TypeConverter.from_python(json, :json)

    # A header announcing four billion elements, with a few bytes behind it.
    for header <- [<<0xDD, 0xFFFFFFFF::32>>, <<0xDF, 0xFFFFFFFF::32>>] do
      assert {:error, message} = TypeConverter.from_python(header <> :binary.copy(<<0>>, 1000))
      assert message =~ "announces 4294967295 elements"
    end
  end

  test "values nested to the limit go to Python and come back intact" do
    # An argument sits two levels down in the call (arguments, then its position).
    for kind <- [:list, :tuple, :map_value, :mixed] do
      deepest = nest(if(kind == :mixed, do: 84, else: 254), wraps()[kind])

      assert SnakeBridge.call("sb_fixtures", "echo", [deepest]) ==
               {:ok, deepest}
    end

    assert_raise ArgumentError, ~r/#{@limit}/, fn ->
      SnakeBridge.call("sb_fixtures", "echo", [nest(255, &{&1})])
    end

    # A result is at the top: 256 levels inside it are allowed, 257 are not.
    for kind <- ["list", "tuple", "dict"] do
      assert {:ok, result} = SnakeBridge.call("sb_fixtures", "deep", [256, kind])

      assert depth(result) == 256

      assert {:error, %Error{reason: :encoding, message: message}} =
               SnakeBridge.call("sb_fixtures", "deep", [257, kind])

      assert message =~ @limit
    end
  end

  defp depth([inner]), do: 1 + depth(inner)
  defp depth({inner}), do: 1 + depth(inner)
  defp depth(%{"k" => inner}), do: 1 + depth(inner)
  defp depth(_leaf), do: 0

  test "a Python result nested a million levels is an error naming the limit; the worker lives on" do
    # A pool of its own, as other tests retire the default pool's workers; without a
    # shared directory, which TensorTest counts.
    start_supervised!({TestPool, name: :deep_results, size: 1, shared_memory: false})

    call = fn function, args, opts ->
      SnakeBridge.call("sb_fixtures", function, args, [], [pool: :deep_results] ++ opts)
    end

    assert {:ok, worker} = call.("pid", [], [])

    for kind <- ["list", "tuple", "dict"], codec <- [:msgpack, :json] do
      assert {:error, %Error{reason: :encoding, message: message}} =
               call.("deep", [@levels, kind], serialization: %{result: codec})

      assert message =~ @limit, "#{kind} #{codec}"
      assert message =~ "result", "#{kind} #{codec}"
    end

    assert {:error, %Error{reason: :encoding, message: message}} = call.("holding_itself", [], [])
    assert message =~ "result" <> String.duplicate("[0]", 257) <> ": value is " <> @limit

    # An Elixir function that Python calls with such a value is not called; Python gets
    # the error instead.
    test_pid = self()
    function = fn _ -> send(test_pid, :called) end
    assert {:error, %Error{} = error} = call.("call_with_deep", [function, @levels], [])
    assert Exception.message(error) =~ @limit
    refute_received :called

    assert call.("pid", [], []) == {:ok, worker}
  end
end
