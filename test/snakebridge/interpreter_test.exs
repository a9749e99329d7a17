defmodule SnakeBridge.InterpreterTest do
  # Workers on interpreters with nothing installed, and pools whose Python cannot start.
  use ExUnit.Case, async: true

  import ExUnit.CaptureLog
  import SnakeBridge.Eventually

  alias SnakeBridge.Error

  # Debian's interpreter: no numpy, no SnakeBridge, nothing but the standard library.
  @bare_python "/usr/bin/python3"
  @old_python Path.expand("~/.pyenv/versions/3.9.18/bin/python3")

  describe "a pool that is not strict (the default)" do
    test "starts without Python, logs why once, and calls fail at once with :no_workers" do
      log =
        capture_log(fn ->
          start_supervised!({SnakeBridge.Pool, name: :no_python, python: "/nonexistent/py3"})
        end)

      assert log =~ "SnakeBridge pool :no_python started without Python workers"
      assert log =~ "`/nonexistent/py3` was not found"
      assert log =~ "the pool's :python option"
      assert log =~ "mix snakebridge.setup"

      # No deadline: without the explanation at once, this call would wait forever.
      assert {:error, %Error{reason: :no_workers, message: message}} =
               SnakeBridge.call("math", "sqrt", [4], [], pool: :no_python, timeout: :infinity)

      assert message =~ "`/nonexistent/py3` was not found"
      assert message =~ "mix snakebridge.setup"
      assert SnakeBridge.Pool.workers(:no_python) == []
      assert SnakeBridge.Pool.settings(:no_python)[:strict] == false
    end

    test "keeps trying, and serves calls once its interpreter can start" do
      dir = Path.join(System.tmp_dir!(), "sb-late-python-#{System.unique_integer([:positive])}")
      # (A run that was killed may have left it behind.)
      File.rm_rf!(dir)
      File.mkdir_p!(dir)
      on_exit(fn -> File.rm_rf!(dir) end)
      python = Path.join(dir, "python3")

      capture_log(fn ->
        start_supervised!({SnakeBridge.Pool, name: :late_python, python: python, size: 1})
      end)

      assert {:error, %Error{reason: :no_workers}} =
               SnakeBridge.call("math", "sqrt", [4], [], pool: :late_python)

      File.ln_s!(elem(SnakeBridge.Python.resolve(), 0), python)

      # The pool retries with a backoff of at most 5 s.
      assert eventually(
               fn ->
                 SnakeBridge.call("math", "sqrt", [4], [], pool: :late_python) == {:ok, 2.0}
               end,
               15_000
             )
    end
  end

  test "an interpreter older than 3.10 is refused, and the explanation says so" do
    if File.exists?(@old_python) do
      assert {:error, {%Error{reason: :worker_start_failed, message: message}, _}} =
               start_supervised(
                 {SnakeBridge.Pool, name: :old_python, python: @old_python, strict: true}
               )

      assert message =~ "snakebridge_agent needs CPython 3.10 or newer"
      assert message =~ "is 3.9"
    end
  end

  describe "a worker on a bare interpreter (#{@bare_python})" do
    setup do
      start_supervised!({SnakeBridge.Pool, name: :bare, python: @bare_python, size: 1})
      :ok
    end

    test "runs calls, streams, refs and large binaries with nothing installed" do
      assert {:ok, 3.0} = SnakeBridge.call("math", "sqrt", [9], [], pool: :bare)

      assert SnakeBridge.call!("builtins", "sorted", [[3, 1, 2]], [], pool: :bare) == [1, 2, 3]

      assert SnakeBridge.stream("itertools", "count", [1], [], pool: :bare) |> Enum.take(3) ==
               [1, 2, 3]

      {:ok, path} = SnakeBridge.call("pathlib", "PurePosixPath", ["/a/b.csv"], [], pool: :bare)
      assert {:ok, ".csv"} = SnakeBridge.get_attr(path, :suffix)

      # Through shared memory (>= 1 MiB) and as an out-of-band buffer (>= 64 KiB).
      for size <- [2 * 1024 * 1024, 100 * 1024] do
        big = :crypto.strong_rand_bytes(size)
        assert {:ok, ^big} = SnakeBridge.call("builtins", "bytes", [big], [], pool: :bare)
      end

      [%{python_version: version}] = SnakeBridge.Pool.workers(:bare)
      assert version =~ ~r/^3\.1\d/
    end

    test "a tensor fails with an error that names numpy and how to add it" do
      tensor = SnakeBridge.Tensor.new(<<1.0::float-32-native>>, {:f, 32}, {1})

      assert {:error, %Error{message: message}} =
               SnakeBridge.call("builtins", "len", [tensor], [], pool: :bare)

      assert message =~ "numpy"
      assert message =~ @bare_python
      assert message =~ "python_deps"

      # Everything else still works on that worker.
      assert {:ok, 2.0} = SnakeBridge.call("math", "sqrt", [4], [], pool: :bare)
    end
  end
end
