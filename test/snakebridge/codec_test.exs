defmodule SnakeBridge.CodecTest do
  @moduledoc """
  The two codecs, per value kind: msgpack is lossless; JSON loses what the
  `SnakeBridge.TypeConverter` table says, and refuses what it cannot write.
  """
  use ExUnit.Case, async: true

  doctest SnakeBridge.TypeConverter

  alias SnakeBridge.{Error, Tensor, TypeConverter}

  @json [serialization: %{args: :json, result: :json}]

  defp echo(value, opts), do: SnakeBridge.call("sb_fixtures", "echo", [value], [], opts)

  @cases [
    # {value, what msgpack gives back, what JSON gives back}
    {nil, nil, nil},
    {[1, -2.5, true, "x"], [1, -2.5, true, "x"], [1, -2.5, true, "x"]},
    {{1, "a"}, {1, "a"}, [1, "a"]},
    {MapSet.new([1]), MapSet.new([1]), [1]},
    {%{1 => "one"}, %{1 => "one"}, %{"1" => "one"}},
    {%{a: 1}, %{"a" => 1}, %{"a" => 1}},
    {:atom, "atom", "atom"},
    {%SnakeBridge.Bytes{data: "hi"}, "hi", "aGk="},
    {~D[2026-11-25], ~D[2026-11-25], "2026-11-25"},
    {~T[01:02:03], ~T[01:02:03.000000], "01:02:03"},
    {2 ** 70, 2 ** 70, 1.1805916207174113e21}
  ]

  test "each kind of value through Python, with msgpack and with JSON" do
    for {value, msgpack, json} <- @cases do
      assert echo(value, []) == {:ok, msgpack}, "msgpack: #{inspect(value)}"
      assert echo(value, @json) == {:ok, json}, "json: #{inspect(value)}"
    end
  end

  test "streams take the codecs too" do
    stream = SnakeBridge.stream("builtins", "iter", [[{1, 2}, {3}]], [], @json)
    assert Enum.to_list(stream) == [[1, 2], [3]]
    assert SnakeBridge.stream("builtins", "iter", [[{1, 2}]]) |> Enum.to_list() == [{1, 2}]
  end

  test "JSON refuses what it cannot write, naming it" do
    for value <- [:nan, :infinity] do
      error = assert_raise ArgumentError, fn -> echo(value, @json) end
      assert error.message =~ "cannot be written as JSON"
    end

    tensor = Tensor.new(<<0, 0, 0, 0>>, {:f, 32}, {1})
    error = assert_raise ArgumentError, fn -> echo(tensor, @json) end
    assert error.message =~ "a tensor cannot be written as JSON"

    # A result JSON cannot hold is an encoding error of the call.
    assert {:error, %Error{reason: :encoding, message: message}} =
             SnakeBridge.call("builtins", "float", ["nan"], [], serialization: %{result: :json})

    assert message =~ "JSON"
  end

  test "a call's arguments are written straight from the terms, refused as the whole term was" do
    for opts <- [[], @json] do
      expected = if opts == [], do: {1, "x"}, else: [1, "x"]

      assert SnakeBridge.call("builtins", "dict", [], [a: {1, "x"}, b: nil], opts) ==
               {:ok, %{"a" => expected, "b" => nil}}

      assert SnakeBridge.call("builtins", "dict", [], %{"a" => 1}, opts) == {:ok, %{"a" => 1}}
    end

    # A part that cannot cross at all wins over a JSON refusal met before it.
    error = assert_raise ArgumentError, fn -> echo([:nan, self()], @json) end
    assert error.message =~ "cannot send args[0][1] to Python"
    assert error.message =~ "a pid cannot be sent to Python"

    error =
      assert_raise ArgumentError, fn ->
        SnakeBridge.call("builtins", "dict", [], [a: :nan, b: [self()]], @json)
      end

    assert error.message =~ "cannot send kwargs[:b][0] to Python"

    error =
      assert_raise ArgumentError, fn ->
        SnakeBridge.call("builtins", "dict", [], [a: :nan], @json)
      end

    assert error.message =~ "NaN cannot be written as JSON"
  end

  test "TypeConverter encodes and decodes without Python, in both codecs" do
    term = %{"list" => [1, 2.5, nil], "nested" => %{"ok" => true}}

    for codec <- [:msgpack, :json] do
      assert {:ok, bytes} = TypeConverter.to_python(term, codec)
      assert TypeConverter.from_python(bytes, codec) == {:ok, term}
    end

    assert {:ok, packed} = TypeConverter.to_python(Tensor.new(<<1, 2>>, {:u, 8}, {2}))
    assert {:ok, %Tensor{data: <<1, 2>>, shape: {2}}} = TypeConverter.from_python(packed)

    assert {:error, message} = TypeConverter.to_python([1, self()])
    assert message =~ "value[1]"
    assert {:error, "invalid JSON" <> _} = TypeConverter.from_python("{", :json)
    assert {:error, message} = TypeConverter.from_python(<<0xC1>>)
    assert message =~ "msgpack at byte"
    assert_raise ArgumentError, ~r/expected a codec/, fn -> TypeConverter.to_python(1, :xml) end
  end
end
