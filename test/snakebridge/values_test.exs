defmodule SnakeBridge.ValuesTest do
  @moduledoc "Every row of the value table round-trips through a Python identity call."
  use ExUnit.Case, async: true

  defp echo(value), do: SnakeBridge.call!("sb_fixtures", "echo", [value])
  defp python_type(value), do: SnakeBridge.call!("sb_fixtures", "type_name", [value])

  defp round_trips(value, python_type) do
    assert echo(value) == value
    assert python_type(value) == python_type
  end

  test "integers of any size" do
    round_trips(0, "builtins.int")
    round_trips(-1, "builtins.int")
    round_trips(9_223_372_036_854_775_807, "builtins.int")
    round_trips(9_223_372_036_854_775_808, "builtins.int")
    round_trips(18_446_744_073_709_551_616, "builtins.int")
    round_trips(-(2 ** 200), "builtins.int")
    assert SnakeBridge.call!("builtins", "pow", [2, 100]) == 2 ** 100
  end

  test "floats, nan and the infinities" do
    round_trips(1.5, "builtins.float")
    round_trips(-0.0, "builtins.float")
    round_trips(:nan, "builtins.float")
    round_trips(:infinity, "builtins.float")
    round_trips(:neg_infinity, "builtins.float")
    assert SnakeBridge.call!("builtins", "float", ["nan"]) == :nan
    assert SnakeBridge.call!("builtins", "float", ["-inf"]) == :neg_infinity
    assert SnakeBridge.call!("math", "isnan", [:nan]) == true
  end

  test "nil, booleans and other atoms" do
    round_trips(nil, "builtins.NoneType")
    round_trips(true, "builtins.bool")
    round_trips(false, "builtins.bool")
    assert echo(:hello) == "hello"
    assert python_type(:hello) == "builtins.str"
    # Names beyond Latin-1 cross whole (OTP 25's NIF API reads only Latin-1 names).
    assert echo(:"🐍 日本") == "🐍 日本"
    assert echo(%{ключ: 1}) == %{"ключ" => 1}

    assert SnakeBridge.TypeConverter.to_python(:"ü🐍", :json) ==
             {:ok, ~s("ü🐍")}
  end

  test "strings, unicode and bytes" do
    round_trips("", "builtins.str")
    round_trips("héllo wörld ☃ 🐍 日本", "builtins.str")
    assert SnakeBridge.call!("builtins", "len", ["🐍日本"]) == 3

    assert python_type(%SnakeBridge.Bytes{data: "abc"}) == "builtins.bytes"
    assert echo(%SnakeBridge.Bytes{data: "abc"}) == "abc"
    assert python_type(<<255, 0, 1>>) == "builtins.bytes"
    assert echo(<<255, 0, 1>>) == <<255, 0, 1>>
    assert SnakeBridge.call!("builtins", "bytes", [[104, 105]]) == "hi"
  end

  test "lists, tuples, maps with keys of any type, and sets" do
    round_trips([1, "two", [3.0, nil]], "builtins.list")
    round_trips({}, "builtins.tuple")
    round_trips({1, "a", {2, {3}}}, "builtins.tuple")
    round_trips(%{}, "builtins.dict")

    nested = %{
      1 => "int key",
      "s" => %{2.5 => "float key", {1, 2} => %{nil => [true]}},
      {:a, 1} => MapSet.new([1, "x"])
    }

    assert echo(nested) == %{
             1 => "int key",
             "s" => %{2.5 => "float key", {1, 2} => %{nil => [true]}},
             {"a", 1} => MapSet.new([1, "x"])
           }

    round_trips(MapSet.new([1, 2, 3]), "builtins.set")
    round_trips(MapSet.new(), "builtins.set")
    assert SnakeBridge.call!("builtins", "frozenset", [[1, 1, 2]]) == MapSet.new([1, 2])
    assert SnakeBridge.call!("builtins", "repr", [{1, 2}]) == "(1, 2)"
  end

  test "large maps and sets (hash maps in the VM) come back intact" do
    big = Map.new(1..1_000, fn i -> {"key#{i}", i} end)
    assert echo(big) == big

    assert SnakeBridge.call!("builtins", "dict", [Enum.map(1..100, &{&1, [&1]})]) ==
             Map.new(1..100, &{&1, [&1]})

    assert echo(MapSet.new(1..500)) == MapSet.new(1..500)
  end

  test "dates and times" do
    round_trips(~D[2026-11-24], "datetime.date")
    round_trips(~T[23:59:58.123456], "datetime.time")
    round_trips(~N[2026-11-24 12:34:56.000001], "datetime.datetime")
    round_trips(~U[2026-11-24 12:34:56.500000Z], "datetime.datetime")

    {:ok, plus_one} = DateTime.new(~D[2026-11-24], ~T[13:00:00.000000], "Etc/UTC")
    plus_one = %{plus_one | utc_offset: 3600, time_zone: "+01:00", zone_abbr: "+01:00"}
    back = echo(plus_one)
    assert back.time_zone == "Etc/UTC"
    assert back == ~U[2026-11-24 12:00:00.000000Z]

    assert SnakeBridge.call!("datetime", "date.fromisoformat", ["2020-02-29"]) == ~D[2020-02-29]
  end
end
