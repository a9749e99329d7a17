defmodule SnakeBridge.CarrierTest do
  @moduledoc """
  Both carriers of frames between the BEAM and local workers: the local carrier (the
  default) and gRPC. The whole suite runs on each (`SNAKEBRIDGE_CARRIER=grpc` selects
  gRPC); this checks that the option reaches the workers and that each serves every kind
  of exchange.
  """
  use ExUnit.Case, async: true

  alias SnakeBridge.TestPool

  for carrier <- [:local, :grpc] do
    test "a pool on the #{carrier} carrier calls, streams, calls back and describes" do
      carrier = unquote(carrier)
      pool = :"carrier_#{carrier}_#{System.unique_integer([:positive])}"
      start_supervised!({TestPool, name: pool, size: 1, carrier: carrier})
      opts = [pool: pool]

      assert SnakeBridge.Pool.settings(pool)[:carrier] == carrier
      [%{pid: pid}] = SnakeBridge.Pool.workers(pool)
      argv = File.read!("/proc/#{pid}/cmdline") |> String.split(<<0>>)
      assert ["--carrier", Atom.to_string(carrier)] in Enum.chunk_every(argv, 2, 1)

      assert {:ok, 3.0} = SnakeBridge.call("math", "sqrt", [9], [], opts)

      assert {:error, %SnakeBridge.Error{reason: :target_not_found}} =
               SnakeBridge.call("math", "no_such_function", [], [], opts)

      assert [0, 1, 2] = SnakeBridge.stream("builtins", "range", [3], [], opts) |> Enum.to_list()
      assert {:ok, 42} = SnakeBridge.call("sb_fixtures", "call_with", [&(&1 * 2), 21], [], opts)

      # Through shared memory, and in parts through the socket.
      big = :binary.copy(<<255>>, 3_000_000)
      assert {:ok, ^big} = SnakeBridge.call("sb_fixtures", "echo", [big], [], opts)
      text = String.duplicate("y", 70_000_000)
      assert {:ok, ^text} = SnakeBridge.call("sb_fixtures", "echo", [text], [], opts)
    end
  end

  test "an unknown carrier is refused" do
    assert_raise ArgumentError, ~r/:carrier/, fn ->
      SnakeBridge.Pool.start_link(name: :no_carrier, carrier: :http2)
    end
  end
end
