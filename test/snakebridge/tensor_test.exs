defmodule SnakeBridge.TensorTest do
  use ExUnit.Case, async: true

  @moduletag timeout: 120_000

  doctest SnakeBridge.Tensor

  alias SnakeBridge.Tensor

  defp call!(function, args, opts \\ []),
    do: SnakeBridge.call!("sb_fixtures", function, args, [], opts)

  # `n` elements 0, 1, 2, ... of `type`, in Nx's layout.
  defp iota({:bool, 8}, n), do: for(i <- 0..(n - 1), into: <<>>, do: <<min(i, 1)>>)

  defp iota({:u, bits}, n),
    do: for(i <- 0..(n - 1), into: <<>>, do: <<i::unsigned-size(bits)-native>>)

  defp iota({:s, bits}, n),
    do: for(i <- 0..(n - 1), into: <<>>, do: <<i::signed-size(bits)-native>>)

  defp iota({:f, bits}, n), do: for(i <- 0..(n - 1), into: <<>>, do: <<i::float-size(bits)-native>>)

  defp iota({:bf, 16}, n),
    do: for(i <- 0..(n - 1), into: <<>>, do: binary_part(<<i * 1.0::float-32-native>>, 2, 2))

  defp iota({:c, bits}, n) do
    half = div(bits, 2)
    for i <- 0..(n - 1), into: <<>>, do: <<i::float-size(half)-native, 0::float-size(half)-native>>
  end

  test "every dtype round-trips through numpy with its shape and values" do
    for type <- Tensor.types() do
      tensor = Tensor.new(iota(type, 6), type, {2, 3})
      info = call!("array_info", [tensor])
      name = numpy_name(type)

      assert info == %{
               "type" => "numpy.ndarray",
               "dtype" => name,
               "shape" => [2, 3],
               "writeable" => false,
               "view" => true
             },
             "#{inspect(type)}: #{inspect(info)}"

      assert %Tensor{type: ^type, shape: {2, 3}, data: data} =
               SnakeBridge.call!("numpy", "copy", [tensor])

      assert data == tensor.data, inspect(type)

      # Arrays made in Python come back as tensors too.
      assert call!("arange", [name, 4]) == Tensor.new(iota(type, 4), type, {4}), inspect(type)
    end
  end

  test "zero-length and 0-d tensors cross" do
    empty = Tensor.new(<<>>, {:f, 64}, {0, 5})
    assert SnakeBridge.call!("numpy", "copy", [empty]) == empty
    scalar = Tensor.new(<<3.5::float-64-native>>, {:f, 64}, {})
    assert SnakeBridge.call!("numpy", "copy", [scalar]) == scalar
    assert call!("array_info", [scalar])["shape"] == []
  end

  test "numpy arithmetic on a tensor returns a tensor" do
    t = Tensor.new(iota({:f, 32}, 4), {:f, 32}, {2, 2})
    assert %Tensor{data: data} = SnakeBridge.call!("numpy", "multiply", [t, 2])
    assert data == for(i <- [0, 2, 4, 6], into: <<>>, do: <<i * 1.0::float-32-native>>)
  end

  test "big-endian, strided and Fortran-ordered arrays come back contiguous and native" do
    arrays = call!("numpy_arrays", [])

    assert arrays["big_endian"] == Tensor.new(iota({:s, 32}, 6), {:s, 32}, {2, 3})

    assert arrays["strided"] ==
             Tensor.new(
               for(i <- [0, 2, 4, 6, 8, 10], into: <<>>, do: <<i * 1.0::float-64-native>>),
               {:f, 64},
               {3, 2}
             )

    assert arrays["fortran"] == Tensor.new(iota({:s, 16}, 6), {:s, 16}, {2, 3})
    assert arrays["zero_d"] == Tensor.new(<<2.5::float-32-native>>, {:f, 32}, {})
    assert arrays["empty"] == Tensor.new(<<>>, {:u, 8}, {0, 3})
  end

  test "what is not a tensor: object and string arrays stay in Python; scalars are values" do
    arrays = call!("numpy_arrays", [])
    assert %SnakeBridge.Ref{type: "numpy.ndarray"} = arrays["objects"]
    assert %SnakeBridge.Ref{type: "numpy.ndarray"} = arrays["strings"]
    assert [1.5, 7, true, %SnakeBridge.Ref{type: "numpy.complex64"}] = arrays["scalars"]
    assert arrays["array_module"] == <<1::signed-32-native, 2::signed-32-native>>
    assert arrays["bytearray"] == "ab"
    assert arrays["memoryview"] == "yz"
  end

  test "a tensor whose data does not match its shape is refused before anything is sent" do
    bad = %Tensor{type: {:f, 32}, shape: {3}, data: <<0, 0, 0, 0>>}

    assert_raise ArgumentError, ~r/args\[0\].*a float32 tensor of shape \[3\] needs 12 bytes/, fn ->
      call!("array_info", [bad])
    end

    assert_raise ArgumentError, ~r/tensor type must be one of/, fn ->
      call!("array_info", [%Tensor{type: {:f, 8}, shape: {1}, data: <<0>>}])
    end
  end

  test "a 32 MB tensor crosses both ways" do
    # 32 MB: more than a Unix socket buffer, less than one gRPC message.
    n = 8 * 1024 * 1024
    data = :binary.copy(<<1.5::float-32-native>>, n)
    tensor = Tensor.new(data, {:f, 32}, {n})
    assert %Tensor{data: back} = SnakeBridge.call!("numpy", "multiply", [tensor, 2])
    assert byte_size(back) == byte_size(data)
    assert back == :binary.copy(<<3.0::float-32-native>>, n)
  end

  test "payloads larger than one message travel in parts, both ways" do
    # The integration's grpc.max_message_size bounds the pool's.
    config = %{python_module: "numpy", grpc: %{max_message_size: 1_000_000}}

    start_supervised!(
      {SnakeBridge.TestPool,
       name: :small_messages, size: 1, integrations: [config], shared_memory: false}
    )

    assert SnakeBridge.Pool.settings(:small_messages)[:shared_memory] == false

    assert SnakeBridge.Pool.settings(:small_messages)[:max_message_size] == 1_000_000

    opts = [pool: :small_messages]
    n = 750_000
    tensor = Tensor.new(iota({:s, 32}, n), {:s, 32}, {n})
    assert SnakeBridge.call!("numpy", "copy", [tensor], [], opts) == tensor

    # A large in-band value (the encoded msgpack itself) is parted too.
    bytes = %SnakeBridge.Bytes{data: :binary.copy(<<255, 0>>, 1_500_000)}
    assert SnakeBridge.call!("sb_fixtures", "echo", [bytes], [], opts) == bytes.data
  end

  test "with tensor_passthrough: false, tensors cross as nested lists both ways" do
    lists = [serialization: %{tensor_passthrough: false}]
    json = [serialization: %{result: :json, tensor_passthrough: false}]

    assert SnakeBridge.call!("numpy", "ones", [[2, 3]], [], lists) == [
             [1.0, 1.0, 1.0],
             [1.0, 1.0, 1.0]
           ]

    # JSON cannot carry an array, but it can carry the lists.
    assert SnakeBridge.call!("numpy", "arange", [4], [], json) == [0, 1, 2, 3]

    assert {:error, %SnakeBridge.Error{reason: :encoding}} =
             SnakeBridge.call("numpy", "arange", [4], [], serialization: %{result: :json})

    # A tensor argument reaches Python as a list.
    tensor = Tensor.new(iota({:s, 16}, 4), {:s, 16}, {2, 2})
    assert call!("type_name", [tensor], lists) == "builtins.list"
    assert call!("echo", [tensor], lists) == [[0, 1], [2, 3]]
    assert call!("type_name", [tensor]) == "numpy.ndarray"

    assert_raise ArgumentError, ~r/tensor_passthrough/, fn ->
      SnakeBridge.call("numpy", "ones", [1], [], serialization: %{tensor_passthrough: :no})
    end
  end

  test "large binaries travel out of band, both ways" do
    data = :crypto.strong_rand_bytes(5_000_000)
    assert SnakeBridge.call!("sb_fixtures", "echo", [%SnakeBridge.Bytes{data: data}]) == data

    assert SnakeBridge.call!("sb_fixtures", "type_name", [%SnakeBridge.Bytes{data: data}]) ==
             "builtins.bytes"

    assert byte_size(SnakeBridge.call!("os", "urandom", [3_000_000])) == 3_000_000
  end

  test "a 200 MB tensor crosses both ways" do
    n = 50 * 1024 * 1024
    tensor = Tensor.new(:binary.copy(<<0.25::float-32-native>>, n), {:f, 32}, {n})

    assert %Tensor{data: data} =
             SnakeBridge.call!("numpy", "multiply", [tensor, 4], [], timeout: 60_000)

    assert byte_size(data) == 200 * 1024 * 1024
    assert data == :binary.copy(<<1.0::float-32-native>>, n)
  end

  test "arguments over the pool's max_payload_size are refused before anything is sent" do
    start_supervised!(
      {SnakeBridge.TestPool, name: :small_payloads, size: 1, max_payload_size: 1_000_000}
    )

    tensor = Tensor.new(:binary.copy(<<0>>, 2_000_000), {:u, 8}, {2_000_000})

    assert {:error, %SnakeBridge.Error{reason: :payload_too_large, message: message}} =
             SnakeBridge.call("sb_fixtures", "array_info", [tensor], [], pool: :small_payloads)

    assert message =~ "more than the pool's max_payload_size of 1000000 bytes"
    # The pool is unharmed.
    assert SnakeBridge.call("math", "sqrt", [4], [], pool: :small_payloads) == {:ok, 2.0}
  end

  # Nx cannot be installed here (no Hex): test/support/fake_nx.ex stands in for it with
  # Nx's struct layout and the functions SnakeBridge calls.
  test "Nx tensors are accepted as arguments and returned with tensors: :nx" do
    nx = Nx.from_binary(iota({:f, 32}, 6), {:f, 32}) |> Nx.reshape({3, 2})
    assert %Tensor{type: {:f, 32}, shape: {3, 2}} = SnakeBridge.call!("numpy", "copy", [nx])

    assert %Nx.Tensor{type: {:f, 64}, shape: {3, 2}, data: %Nx.BinaryBackend{state: data}} =
             SnakeBridge.call!("numpy", "multiply", [nx, 1.0], [dtype: "float64"], tensors: :nx)

    assert data == iota({:f, 64}, 6)

    assert Tensor.from_nx(Tensor.to_nx(Tensor.new(<<1, 0>>, {:bool, 8}, {2}))) ==
             Tensor.new(<<1, 0>>, {:u, 8}, {2})

    other_backend = %{nx | data: %{__struct__: EXLA.Backend}}

    error =
      assert_raise ArgumentError, fn -> SnakeBridge.call!("numpy", "copy", [other_backend]) end

    assert error.message =~ "Nx.backend_transfer"
  end

  defp numpy_name({:bool, 8}), do: "bool"
  defp numpy_name({:u, b}), do: "uint#{b}"
  defp numpy_name({:s, b}), do: "int#{b}"
  defp numpy_name({:f, b}), do: "float#{b}"
  defp numpy_name({:bf, 16}), do: "bfloat16"
  defp numpy_name({:c, b}), do: "complex#{b}"
end
