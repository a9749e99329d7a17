defmodule SnakeBridge.SharedMemoryTest do
  # Not async: the test finds its pool's directory among the VM's, so no other pool may
  # start meanwhile.
  use ExUnit.Case, async: false

  alias SnakeBridge.Tensor

  defp shared_dirs do
    MapSet.new(Path.wildcard("/dev/shm/snakebridge-#{System.pid()}-*"))
  end

  test "large buffers cross through files the receiver removes, in a directory the pool removes" do
    before = shared_dirs()
    pool = start_supervised!({SnakeBridge.TestPool, name: :shared, size: 1, shared_memory: 4096})
    assert SnakeBridge.Pool.settings(:shared)[:shared_memory] == 4096
    assert [dir] = MapSet.difference(shared_dirs(), before) |> MapSet.to_list()
    # Its owner may enter it, but no one may list it: each worker's directory inside it
    # has a random name, which only that worker is told.
    assert Bitwise.band(File.stat!(dir).mode, 0o777) == 0o300

    opts = [pool: :shared]
    n = 3_000
    tensor = Tensor.new(for(i <- 1..n, into: <<>>, do: <<i::signed-32-native>>), {:s, 32}, {n})
    # 12 kB each way, above the 4096-byte minimum; a small one stays in the message.
    assert SnakeBridge.call!("numpy", "copy", [tensor], [], opts) == tensor
    small = Tensor.new(for(i <- 1..100, into: <<>>, do: <<i>>), {:u, 8}, {100})
    assert SnakeBridge.call!("numpy", "copy", [small], [], opts) == small
    data = :crypto.strong_rand_bytes(50_000)

    assert SnakeBridge.call!("sb_fixtures", "echo", [%SnakeBridge.Bytes{data: data}], [], opts) ==
             data

    # Python reads the shared buffer in place, read-only.
    assert SnakeBridge.call!("sb_fixtures", "array_info", [tensor], [], opts)["writeable"] ==
             false

    File.chmod!(dir, 0o700)
    assert [worker_dir] = File.ls!(dir)
    assert String.length(worker_dir) == 32
    assert Bitwise.band(File.stat!(Path.join(dir, worker_dir)).mode, 0o777) == 0o700
    assert File.ls!(Path.join(dir, worker_dir)) == [], "every file was removed by its receiver"
    :ok = stop_supervised(:shared)
    refute Process.alive?(pool)
    refute File.exists?(dir)
  end

  test "without shared memory the same values cross in messages" do
    start_supervised!({SnakeBridge.TestPool, name: :unshared, size: 1, shared_memory: false})
    assert SnakeBridge.Pool.settings(:unshared)[:shared_memory] == false
    n = 500_000
    tensor = Tensor.new(for(i <- 1..n, into: <<>>, do: <<i * 0.5::float-64-native>>), {:f, 64}, {n})
    assert SnakeBridge.call!("numpy", "copy", [tensor], [], pool: :unshared) == tensor
  end
end
