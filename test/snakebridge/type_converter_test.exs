defmodule SnakeBridge.TypeConverterTest do
  @moduledoc """
  `SnakeBridge.TypeConverter.to_python/2` writes msgpack and JSON straight from the term,
  without Python: the bytes, the refusals and the depth limit are the wire format's.
  """
  use ExUnit.Case, async: true

  alias SnakeBridge.TypeConverter

  @every_kind [
    nil,
    true,
    false,
    :atom,
    0,
    -1,
    127,
    128,
    -33,
    65_536,
    -129,
    2 ** 63,
    -(2 ** 70),
    1.5,
    -0.0,
    "",
    "héllo",
    <<255, 0>>,
    %SnakeBridge.Bytes{data: "by"},
    {1, "a"},
    MapSet.new([1]),
    %{1 => [], nil => {}, "k" => %{a: 2.5}},
    ~D[2026-11-25],
    ~T[01:02:03.000040],
    ~N[2026-11-25 01:02:03],
    DateTime.from_naive!(~N[2026-11-25 01:02:03], "Etc/UTC"),
    {String, :upcase, 1},
    &String.upcase/1,
    SnakeBridge.Tensor.new(<<1, 2>>, {:u, 8}, {2})
  ]

  # Written by the encoder that built a value first (the bytes must not change).
  @every_kind_msgpack "dc001dc0c3c2a461746f6d00ff7fcc80d0dfce00010000d1ff7fc70901008000" <>
                        "000000000000c70a0101400000000000000000cb3ff8000000000000cb800000" <>
                        "0000000000a0a668c3a96c6c6fc402ff00c4026279c700029201a161c7000391" <>
                        "01830190c0c7000290a16b81a161cb4004000000000000c70604000007ea0b19" <>
                        "c7070501020300000028c70d06000007ea0b1901020300000000c71107000007" <>
                        "ea0b190102030000000000000000d80900000000000000000000000000000000" <>
                        "d80900000000000000000000000000000000c7000a93a575696e74389102c402" <>
                        "0102"

  @json_kinds [
    nil,
    true,
    :atom,
    -1,
    2 ** 70,
    1.5,
    1.0e21,
    "q\"\\\n\x01é",
    <<255, 0>>,
    {1, "a"},
    MapSet.new([1]),
    %{1 => [], nil => {}, 2.5 => 1, true => 0, :a => "a", "k" => %{}},
    ~D[2026-11-25],
    ~T[01:02:03.000040],
    ~N[2026-11-25 01:02:03],
    DateTime.from_naive!(~N[2026-11-25 01:02:03], "Etc/UTC")
  ]

  @json_text ~S([null,true,"atom",-1,1180591620717411303424,1.5,1e21,"q\"\\\n\u0001é","/wA=",) <>
               ~S([1,"a"],[1],{"1":[],"2.5":1,"a":"a","null":[],"true":0,"k":{}},"2026-11-25",) <>
               ~S("01:02:03.000040","2026-11-25T01:02:03","2026-11-25T01:02:03+00:00"])

  test "every kind of value is written as the wire format specifies" do
    assert {:ok, packed} = TypeConverter.to_python(@every_kind, :msgpack)
    assert Base.encode16(packed, case: :lower) == @every_kind_msgpack
    assert TypeConverter.to_python(@json_kinds, :json) == {:ok, @json_text}
  end

  test "binaries of any size are written in band" do
    large = :binary.copy(<<255, 1>>, 40_000)
    assert {:ok, <<0xC6, 80_000::32, ^large::binary>>} = TypeConverter.to_python(large)
    tensor = SnakeBridge.Tensor.new(:binary.copy(<<0>>, 80_000), {:f, 64}, {100, 100})
    assert {:ok, packed} = TypeConverter.to_python(tensor)
    assert {:ok, ^tensor} = TypeConverter.from_python(packed)
  end

  test "a part that cannot cross is reported before a refusal of the codec met earlier" do
    # As when the whole term was converted first, and encoded after.
    assert TypeConverter.to_python([:nan, self()], :json) ==
             {:error, "value[1]: a pid cannot be sent to Python"}

    assert TypeConverter.to_python([%{{1} => 1}, %{"a" => [self()]}], :json) ==
             {:error, ~s(value[1]["a"][0]: a pid cannot be sent to Python)}

    assert TypeConverter.to_python([:nan, :infinity], :json) ==
             {:error, "NaN cannot be written as JSON (use the msgpack codec)"}

    assert TypeConverter.to_python(%{[1] => 2}, :json) ==
             {:error, "a list cannot be a JSON object key"}
  end

  test "an improper list is refused after the items before its tail" do
    assert TypeConverter.to_python([self() | 1]) ==
             {:error, "value[0]: a pid cannot be sent to Python"}

    assert TypeConverter.to_python([1, 2 | 3]) ==
             {:error, "value: an improper list cannot be sent to Python"}

    assert TypeConverter.to_python(%{"a" => [:nan | 2]}, :json) ==
             {:error, ~s(value["a"]: an improper list cannot be sent to Python)}
  end

  defp nest(levels, wrap), do: Enum.reduce(1..levels, 1, fn _, inner -> wrap.(inner) end)

  test "values nested to the depth limit are written on a dirty scheduler's stack, deeper ones refused" do
    wraps = [
      list: &[&1],
      tuple: &{&1, 2},
      map_value: &%{"k" => &1},
      map_key: &%{&1 => nil},
      set: &MapSet.new([&1]),
      mixed: &[%{"k" => {MapSet.new([&1])}}]
    ]

    for {kind, wrap} <- wraps do
      # `mixed` wraps four levels at a time.
      {deepest, too_deep} =
        if kind == :mixed,
          do: {nest(63, wrap), nest(64, wrap)},
          else: {nest(255, wrap), nest(256, wrap)}

      assert {:ok, packed} = TypeConverter.to_python(deepest, :msgpack), "#{kind}"
      assert TypeConverter.from_python(packed, :msgpack) == {:ok, deepest}, "#{kind}"

      # JSON nests at most 127 levels (what its reader takes).
      {json_deepest, json_too_deep} =
        if kind == :mixed,
          do: {nest(31, wrap), nest(32, wrap)},
          else: {nest(127, wrap), nest(128, wrap)}

      case TypeConverter.to_python(json_deepest, :json) do
        {:ok, json} ->
          assert kind != :map_key
          assert {:ok, _} = TypeConverter.from_python(json, :json)

        {:error, message} ->
          assert {kind, message} == {:map_key, "a map cannot be a JSON object key"}
      end

      if kind != :map_key do
        assert {:error, message} = TypeConverter.to_python(json_too_deep, :json)
        assert message =~ "JSON may nest at most 127 levels", "#{kind}"
      end

      for codec <- [:msgpack, :json] do
        assert {:error, message} = TypeConverter.to_python(too_deep, codec)
        assert message =~ ": value is nested more than 256 levels deep", "#{kind} #{codec}"
      end
    end
  end
end
