defmodule SnakeBridge.GeneratorTest do
  use ExUnit.Case, async: false

  alias SnakeBridge.Generator

  @moduletag :tmp_dir

  setup %{tmp_dir: dir} do
    {:ok, _} = SnakeBridge.Introspection.describe("json", cache_dir: dir, depth: 1)
    {:ok, _} = SnakeBridge.Introspection.describe("pathlib", cache_dir: dir)
    :ok
  end

  defp json_config(dir) do
    %{
      python_module: "json",
      introspection: %{cache_path: dir},
      functions: [%{python_path: "json.dumps"}, %{python_path: "json.loads", timeout: 5_000}],
      classes: [%{python_path: "json.JSONDecoder", methods: [%{name: "decode"}]}]
    }
  end

  # The generated modules do not exist when this file compiles: call them through apply/3.
  defp run(module, function, args), do: apply(module, function, args)

  test "generated functions call Python, with tuples and bang variants", %{tmp_dir: dir} do
    assert Generator.generate_and_load(json_config(dir)) == [Json, Json.JSONDecoder]
    json = Json

    assert run(json, :dumps, [%{"a" => 1}]) == {:ok, ~s({"a": 1})}
    assert run(json, :dumps!, [[1, 2], [separators: {",", ":"}]]) == "[1,2]"
    assert run(json, :loads!, [~s({"x": [true]})]) == %{"x" => [true]}
    assert {:error, %SnakeBridge.Error{reason: :python_exception}} = run(json, :loads, ["{"])
    assert_raise SnakeBridge.PythonError, fn -> run(json, :loads!, ["{"]) end

    {:ok, decoder} = run(Json.JSONDecoder, :create, [])
    assert run(Json.JSONDecoder, :decode!, [decoder, "[1]"]) == [1]
  end

  test "arities follow the Python signatures, docs and specs are generated", %{tmp_dir: dir} do
    # Compiled to .beam files so that their docs and specs can be read back.
    for {:defmodule, _, [name | _]} = quoted <- Generator.quoted(json_config(dir)) do
      :code.purge(name)
      :code.delete(name)
      [{^name, binary}] = Code.compile_quoted(quoted)
      File.write!(Path.join(dir, "#{name}.beam"), binary)
    end

    beam = &Path.join(dir, "#{&1}.beam")
    # json.dumps(obj, *, ...): one required positional parameter.
    assert function_exported?(Json, :dumps, 1)
    assert function_exported?(Json, :dumps, 3)
    refute function_exported?(Json, :dumps, 4)
    assert function_exported?(Json.JSONDecoder, :decode, 2)

    {:docs_v1, _, :elixir, _, %{"en" => moduledoc}, _, docs} =
      Code.fetch_docs(beam.(Json.JSONDecoder))

    assert moduledoc =~ "JSON"
    assert Enum.any?(docs, &match?({{:function, :decode!, 4}, _, _, _, _}, &1))

    {:docs_v1, _, _, _, _, _, json_docs} = Code.fetch_docs(beam.(Json))

    {_, _, _, %{"en" => dumps_doc}, _} =
      Enum.find(json_docs, &match?({{:function, :dumps, 3}, _, _, _, _}, &1))

    assert dumps_doc =~ "Python: `json.dumps(obj, *, skipkeys=False"

    {:ok, specs} = Code.Typespec.fetch_specs(File.read!(beam.(Json)))
    assert Enum.any?(specs, &match?({{:dumps, 3}, _}, &1))
  end

  test "classes get a constructor, methods, property getters and setters", %{tmp_dir: dir} do
    config = %{
      python_module: "pathlib",
      introspection: %{cache_path: dir},
      classes: [
        %{
          python_path: "pathlib.PurePosixPath",
          methods: [%{name: "with_suffix"}, %{name: "is_relative_to"}],
          properties: [%{name: "suffix"}, %{name: "name"}]
        }
      ]
    }

    assert Pathlib.PurePosixPath in Generator.generate_and_load(config)
    pure = Pathlib.PurePosixPath
    # PurePosixPath(*pathsegments): the list stands for *args.
    {:ok, path} = run(pure, :create, [["/tmp", "report.csv"]])
    assert run(pure, :suffix, [path]) == {:ok, ".csv"}
    assert {:ok, %SnakeBridge.Ref{} = json} = run(pure, :with_suffix, [path, ".json"])
    assert run(pure, :name!, [json]) == "report.json"
    refute function_exported?(pure, :set_suffix, 3)
  end

  test "a config naming what the library lacks fails with paths", %{tmp_dir: dir} do
    config = %{
      python_module: "json",
      introspection: %{cache_path: dir},
      functions: [%{python_path: "json.nope"}],
      classes: [%{python_path: "json.JSONDecoder", methods: [%{name: "nope"}]}]
    }

    error = assert_raise ArgumentError, fn -> Generator.generate_and_load(config) end

    assert error.message =~
             ~s(functions[0].python_path: "json.nope" is not in the descriptor of json)

    assert error.message =~ ~s(classes[0].methods[0].name: json.JSONDecoder has no method "nope")

    error =
      assert_raise ArgumentError, fn ->
        Generator.generate_and_load(%{
          python_module: "json",
          introspection: %{enabled: false, cache_path: Path.join(dir, "none")}
        })
      end

    assert error.message =~ "introspection is disabled"
    assert error.message =~ "mix snakebridge.discover json"
  end

  test "a missing descriptor is introspected once, by a temporary worker", %{tmp_dir: dir} do
    cache = Path.join(dir, "fresh")

    config = %{
      python_module: "json",
      elixir_module: SnakeBridge.Test.FreshJSON,
      introspection: %{cache_path: cache},
      functions: [%{python_path: "json.dumps"}]
    }

    workers = SnakeBridge.Pool.workers()

    message =
      ExUnit.CaptureIO.capture_io(:stderr, fn ->
        assert [SnakeBridge.Test.FreshJSON] = Generator.generate_and_load(config)
      end)

    assert message =~ "introspecting json with a temporary Python worker"
    assert File.exists?(Path.join(cache, "json.json"))
    assert apply(SnakeBridge.Test.FreshJSON, :dumps!, [[1]]) == "[1]"
    # The temporary pool is gone; the application's pool is untouched.
    assert SnakeBridge.Pool.workers() == workers

    # The second time, the file is read: no Python, no message.
    assert ExUnit.CaptureIO.capture_io(:stderr, fn -> Generator.generate_and_load(config) end) ==
             ""
  end
end

defmodule SnakeBridge.GeneratorMacroTest do
  use ExUnit.Case, async: true

  test "use SnakeBridge.Generator compiles modules from a committed descriptor" do
    assert SnakeBridge.Test.JSON.dumps!(%{"b" => [1]}, sort_keys: true) == ~s({"b": [1]})
    assert SnakeBridge.Test.JSON.loads("[1, 2]") == {:ok, [1, 2]}
    {:ok, encoder} = SnakeBridge.Test.JSON.JSONEncoder.create(indent: 2)
    assert SnakeBridge.Test.JSON.JSONEncoder.encode!(encoder, [1]) == "[\n  1\n]"
    {:docs_v1, _, _, _, _, _, docs} = Code.fetch_docs(SnakeBridge.Test.JSON)
    assert Enum.any?(docs, &match?({{:function, :loads, 3}, _, _, %{"en" => _}, _}, &1))
  end

  test "use SnakeBridge.Generator takes a config module, and depends on it at compile time" do
    assert SnakeBridge.GenTest.ModuleJSON.loads!("[1]") == [1]

    # A bad config module is a compile error pointing at the config module's source.
    source = """
    defmodule SnakeBridge.Test.BadUse do
      use SnakeBridge.Generator, config: %{python_module: "json", functions: [%{python_path: "json.x", pure: :yes}]}
    end
    """

    error = assert_raise CompileError, fn -> Code.compile_string(source, "bad_use.ex") end
    assert error.file =~ "bad_use.ex"
    assert error.description =~ "functions[0].pure: expected a boolean"
  end
end
