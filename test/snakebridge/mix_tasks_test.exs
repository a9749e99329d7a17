defmodule SnakeBridge.MixTasksTest do
  use ExUnit.Case, async: false

  import ExUnit.CaptureIO

  @moduletag :tmp_dir

  test "every task answers --help" do
    for task <- [
          Mix.Tasks.Snakebridge.Discover,
          Mix.Tasks.Snakebridge.Diff,
          Mix.Tasks.Snakebridge.Clean,
          Mix.Tasks.Snakebridge.Setup,
          Mix.Tasks.Snakebridge.Gen
        ] do
      assert capture_io(fn -> task.run(["--help"]) end) =~ "mix snakebridge."
    end
  end

  test "setup makes a venv and a lock file, then does nothing, and --check says so", %{
    tmp_dir: dir
  } do
    venv = Path.join(dir, "venv")
    lock = Path.join(dir, "snakebridge.lock")
    # No requirements (this project's configs have none), so nothing is downloaded.
    args = ["--venv", venv, "--lock", lock, "--installer", "pip", "--python", "python3"]

    output = capture_io(fn -> Mix.Tasks.Snakebridge.Setup.run(args) end)
    assert output =~ "Creating the venv"
    assert File.exists?(Path.join([venv, "bin", "python"]))
    assert File.read!(lock) =~ ~r/^python 3\.\d+\.\d+$/m

    assert capture_io(fn -> Mix.Tasks.Snakebridge.Setup.run(args) end) =~ "is up to date"

    assert capture_io(fn -> Mix.Tasks.Snakebridge.Setup.run(args ++ ["--check"]) end) =~
             "holds what"

    output =
      capture_io(:stderr, fn ->
        assert catch_exit(Mix.Tasks.Snakebridge.Setup.run(args ++ ["--check", "--deps", "numpy"])) ==
                 {:shutdown, 1}
      end)

    assert output =~ "the requirements changed"
    assert output =~ "now numpy"

    File.rm!(lock)

    output =
      capture_io(:stderr, fn ->
        assert catch_exit(Mix.Tasks.Snakebridge.Setup.run(args ++ ["--check"])) == {:shutdown, 1}
      end)

    assert output =~ "there is no lock file"
  end

  test "setup refuses an interpreter older than CPython 3.10", %{tmp_dir: dir} do
    old = Path.expand("~/.pyenv/versions/3.9.18/bin/python3")

    if File.exists?(old) do
      args = ["--venv", Path.join(dir, "venv"), "--lock", Path.join(dir, "lock"), "--python", old]

      assert_raise Mix.Error, ~r/needs CPython 3.10 or newer; .* is 3\.9/, fn ->
        capture_io(fn -> Mix.Tasks.Snakebridge.Setup.run(args ++ ["--installer", "pip"]) end)
      end
    end
  end

  test "diff exits 0 when nothing changed and 1 when the API did", %{tmp_dir: dir} do
    cache = Path.join(dir, "schemas")
    module = Path.join(SnakeBridge.TestPool.fixtures_path(), "sb_diff_generated.py")
    on_exit(fn -> File.rm(module) end)

    # Version 1, described by a worker of its own (a fresh process imports it).
    File.write!(
      module,
      "def kept(x):\n    pass\n\ndef changed(a):\n    pass\n\ndef removed():\n    pass\n"
    )

    name = :"diff_pool_#{System.unique_integer([:positive])}"
    start_supervised!({SnakeBridge.TestPool, name: name, size: 1})
    {:ok, _} = SnakeBridge.Introspection.describe("sb_diff_generated", pool: name, cache_dir: cache)
    stop_supervised!(name)

    # Version 2; the default pool's worker has never imported the module.
    File.write!(
      module,
      "def kept(x):\n    pass\n\ndef changed(a, b=1):\n    pass\n\ndef added():\n    pass\n"
    )

    output =
      capture_io(fn ->
        assert catch_exit(
                 Mix.Tasks.Snakebridge.Diff.run(["sb_diff_generated", "--cache-dir", cache])
               ) ==
                 {:shutdown, 1}
      end)

    assert output =~ "+ sb_diff_generated.added"
    assert output =~ "- sb_diff_generated.removed"
    assert output =~ "~ sb_diff_generated.changed: (a) -> (a, b=1)"
    refute output =~ "sb_diff_generated.kept"

    {:ok, _} = SnakeBridge.Introspection.describe("json", cache_dir: cache)

    assert capture_io(fn -> Mix.Tasks.Snakebridge.Diff.run(["json", "--cache-dir", cache]) end) =~
             "json: no differences"
  end

  test "clean removes descriptor files", %{tmp_dir: dir} do
    cache = Path.join(dir, "schemas")
    {:ok, _} = SnakeBridge.Introspection.describe("math", cache_dir: cache)

    assert capture_io(fn -> Mix.Tasks.Snakebridge.Clean.run(["--cache-dir", cache]) end) =~
             "removed 1"

    assert Path.wildcard(Path.join(cache, "*.json")) == []
  end
end

defmodule SnakeBridge.GenTaskTest do
  use ExUnit.Case, async: false

  import ExUnit.CaptureIO

  @moduletag :tmp_dir

  test "mix snakebridge.gen writes source that compiles to working modules", %{tmp_dir: dir} do
    config = Path.join(dir, "json.exs")

    File.write!(config, """
    %{
      python_module: "json",
      elixir_module: SnakeBridge.GenTest.JSON,
      introspection: %{cache_path: "test/fixtures/schemas"},
      functions: [%{python_path: "json.dumps"}]
    }
    """)

    output = Path.join(dir, "lib")
    log = capture_io(fn -> Mix.Tasks.Snakebridge.Gen.run([config, "--output", output]) end)
    file = Path.join(output, "snake_bridge/gen_test/json.ex")
    assert log =~ file
    source = File.read!(file)
    assert source =~ "defmodule SnakeBridge.GenTest.JSON do"
    assert source =~ "Python: `json.dumps(obj, *"

    [{module, _}] = Code.compile_file(file)
    assert apply(module, :dumps!, [[1]]) == "[1]"

    assert_raise Mix.Error, ~r/--output/, fn -> Mix.Tasks.Snakebridge.Gen.run([config]) end
  end

  test "mix snakebridge.gen takes a config module too", %{tmp_dir: dir} do
    output = Path.join(dir, "lib")

    capture_io(fn ->
      Mix.Tasks.Snakebridge.Gen.run(["SnakeBridge.Test.JSONConfig", "--output", output])
    end)

    source = File.read!(Path.join(output, "snake_bridge/gen_test/module_json.ex"))
    assert source =~ "def loads(s, kwargs \\\\ [], opts \\\\ [])"

    assert_raise Mix.Error, ~r/no config module SnakeBridge.Test.Nope/, fn ->
      Mix.Tasks.Snakebridge.Gen.run(["SnakeBridge.Test.Nope", "--output", output])
    end
  end
end
