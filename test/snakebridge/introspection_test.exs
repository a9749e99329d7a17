defmodule SnakeBridge.IntrospectionTest do
  use ExUnit.Case, async: true

  alias SnakeBridge.{Cache, Descriptor, Error, Introspection}
  alias SnakeBridge.Descriptor.Type

  @fixtures Path.expand("../fixtures/python", __DIR__)

  setup_all do
    start_supervised!({SnakeBridge.Pool, name: :introspect_pool, size: 1, python_path: [@fixtures]})
    :ok
  end

  @moduletag :tmp_dir

  defp describe(module, opts, dir),
    do: Introspection.describe(module, [pool: :introspect_pool, cache_dir: dir] ++ opts)

  defp fixture(dir) do
    {:ok, entry} = describe("sb_introspect_fixture", [depth: 1, timeout: 60_000], dir)
    entry
  end

  test "every parameter kind, default and required flag", %{tmp_dir: dir} do
    %Descriptor.Entry{descriptor: d} = fixture(dir)
    f = d.functions["sb_introspect_fixture.all_kinds"]
    kinds = for p <- f.parameters, do: {p.name, p.kind, p.required}

    assert kinds == [
             {"a", :positional_only, true},
             {"b", :positional_only, false},
             {"c", :positional_or_keyword, false},
             {"args", :var_positional, false},
             {"d", :keyword_only, false},
             {"e", :keyword_only, false},
             {"kwargs", :var_keyword, false}
           ]

    assert Enum.find(f.parameters, &(&1.name == "b")).default_repr == "1.5"
    assert Enum.find(f.parameters, &(&1.name == "a")).default_repr == nil
    assert f.kind == :function
    assert f.docstring =~ "Takes every kind of parameter."
    assert f.signature =~ "(a: int, b: float = 1.5, /, c: str = 'c', *args: bytes"
  end

  test "type annotations become structured type descriptors", %{tmp_dir: dir} do
    %Descriptor.Entry{descriptor: d} = fixture(dir)

    params =
      Map.new(d.functions["sb_introspect_fixture.annotated"].parameters, &{&1.name, &1.annotation})

    assert %Type{kind: :list, args: [%Type{kind: :primitive, name: "int"}]} = params["items"]
    assert %Type{kind: :dict, args: [%Type{name: "str"}, %Type{name: "float"}]} = params["mapping"]
    assert %Type{kind: :tuple} = params["pair"]
    assert %Type{kind: :set} = params["tags"]

    assert %Type{
             kind: :optional,
             args: [%Type{kind: :class, name: "sb_introspect_fixture.shapes.Circle"}]
           } = params["maybe"]

    assert %Type{kind: :union, args: [_, _]} = params["either"]
    assert %Type{kind: :class, name: "sb_introspect_fixture.shapes.Square"} = params["forward"]
    assert %Type{kind: :any} = params["anything"]

    literal =
      Enum.find(d.functions["sb_introspect_fixture.all_kinds"].parameters, &(&1.name == "e"))

    assert %Type{kind: :literal, literals: ["'x'", "'y'", "3"]} = literal.annotation
  end

  test "classes: constructor, method kinds, properties, bases", %{tmp_dir: dir} do
    %Descriptor.Entry{descriptor: d} = fixture(dir)
    shape = d.classes["sb_introspect_fixture.Shape"]
    assert %Descriptor.Class{docstring: "A shape."} = shape
    assert Enum.map(shape.constructor.parameters, & &1.name) == ["name", "color"]
    assert shape.methods["area"].kind == :method
    assert shape.methods["unit"].kind == :classmethod
    assert shape.methods["sides"].kind == :staticmethod
    assert Map.has_key?(shape.methods, "__call__")
    refute Map.has_key?(shape.methods, "_private")
    props = Map.new(shape.properties, &{&1.name, &1.readonly})
    assert props == %{"name" => true, "color" => false}

    circle = d.classes["sb_introspect_fixture.Circle"]
    assert circle.bases == ["sb_introspect_fixture.shapes.Shape"]
    assert circle.methods["points"].is_generator
  end

  test "generators, async functions, C builtins, lazy exports, submodules and warnings", %{
    tmp_dir: dir
  } do
    %Descriptor.Entry{descriptor: d} = fixture(dir)
    fns = d.functions
    assert fns["sb_introspect_fixture.countdown"].is_generator
    assert fns["sb_introspect_fixture.fetch"].is_async
    assert fns["sb_introspect_fixture.stream"].is_async_generator
    assert fns["sb_introspect_fixture.sqrt"].signature =~ "x"
    assert Map.has_key?(fns, "sb_introspect_fixture.lazy_answer")
    assert fns["sb_introspect_fixture.opaque"].signature =~ "("
    assert Map.has_key?(d.classes, "sb_introspect_fixture.sub.Tool")
    assert Enum.any?(d.warnings, &(&1 =~ "broken"))
    assert Enum.any?(d.warnings, &(&1 =~ "nosig"))
  end

  test "the standard library", %{tmp_dir: dir} do
    {:ok, %{descriptor: json}} = describe("json", [], dir)
    dumps = json.functions["json.dumps"]
    assert hd(dumps.parameters).name == "obj"
    assert Enum.any?(dumps.parameters, &(&1.name == "sort_keys" and &1.kind == :keyword_only))

    {:ok, %{descriptor: math}} = describe("math", [], dir)
    assert length(math.functions["math.sqrt"].parameters) == 1

    {:ok, %{descriptor: collections}} = describe("collections", [], dir)
    assert Map.has_key?(collections.classes, "collections.OrderedDict")

    {:ok, %{descriptor: pathlib}} = describe("pathlib", [], dir)
    assert Map.has_key?(pathlib.classes["pathlib.PurePath"].methods, "with_suffix")

    {:ok, %{descriptor: re}} = describe("re", [], dir)
    assert Map.has_key?(re.functions, "re.compile")
  end

  @tag timeout: 180_000
  test "numpy and dspy", %{tmp_dir: dir} do
    {:ok, %Descriptor.Entry{descriptor: numpy, library_version: version}} =
      describe("numpy", [timeout: 120_000], dir)

    assert version =~ ~r/^\d+\./
    assert Map.has_key?(numpy.classes, "numpy.ndarray")
    assert Map.has_key?(numpy.functions, "numpy.arange")

    {:ok, %{descriptor: dspy}} = describe("dspy", [timeout: 120_000], dir)
    assert Map.has_key?(dspy.classes, "dspy.Predict")
    assert Map.has_key?(dspy.classes, "dspy.ChainOfThought")
  end

  test "the cache: written atomically, loaded without Python, keyed by config, invalidated",
       %{tmp_dir: dir} do
    {:ok, entry} = describe("json", [config: %{a: 1}], dir)
    file = Path.join(dir, "json.json")
    assert File.exists?(file)
    assert entry.schema_version == 1
    assert entry.python_version =~ ~r/^3\./
    assert String.length(entry.descriptor_hash) == 64

    assert {:ok, ^entry} = Introspection.load("json", cache_dir: dir)
    assert {:ok, ^entry} = Introspection.load("json", cache_dir: dir, config: %{a: 1})
    assert :miss = Introspection.load("json", cache_dir: dir, config: %{a: 2})

    # The same descriptor writes the same bytes (it diffs well in git).
    before = File.read!(file)
    {:ok, _} = describe("json", [config: %{a: 1}, force: true], dir)
    assert File.read!(file) == before

    assert Cache.invalidate!("json", cache_dir: dir)
    refute File.exists?(file)
    assert :miss = Introspection.load("json", cache_dir: dir)
  end

  test "one cache: an unchanged library is answered from it, and an invalidation makes the worker introspect again",
       %{tmp_dir: dir} do
    file = Path.join(dir, "json.json")
    inode = fn -> File.stat!(file).inode end

    {:ok, entry} = describe("json", [], dir)
    written = inode.()

    # Same request, same library and Python: the worker only checks the version, and the
    # cached entry (file untouched) is the answer.
    assert {:ok, ^entry} = describe("json", [], dir)
    assert inode.() == written

    # Another request for the module (another depth) is introspected and stored.
    {:ok, _} = describe("json", [depth: 1], dir)
    refute inode.() == written

    # Invalidating forgets both levels; nothing else keeps a copy: the next describe
    # introspects and writes the file anew.
    assert Cache.invalidate!("json", cache_dir: dir)
    refute File.exists?(file)
    {:ok, again} = describe("json", [depth: 1], dir)
    assert File.exists?(file)
    assert String.length(again.descriptor_hash) == 64
  end

  test "a corrupt descriptor file is an error naming the file and the field", %{tmp_dir: dir} do
    File.write!(Path.join(dir, "json.json"), ~s({"schema_version": "one"}))
    assert {:error, %Error{message: message}} = Introspection.load("json", cache_dir: dir)
    assert message =~ "json.json"
    assert message =~ "schema_version"
  end

  test "a module that does not exist", %{tmp_dir: dir} do
    assert {:error, %Error{reason: :target_not_found, message: message}} =
             describe("no_such_module_xyz", [], dir)

    assert message =~ "no_such_module_xyz"
  end

  test "diff names what was added, removed and changed", %{tmp_dir: dir} do
    {:ok, entry} = describe("json", [], dir)
    descriptor = entry.descriptor
    {dumps, functions} = Map.pop(descriptor.functions, "json.dumps")
    loads = functions["json.loads"]

    changed =
      functions
      |> Map.put("json.loads", %{loads | signature: "(s)"})
      |> Map.put("json.new_thing", %{loads | signature: "()"})

    assert dumps

    diff = Introspection.diff(entry, %{entry | descriptor: %{descriptor | functions: changed}})

    assert diff.added == ["json.new_thing"]
    assert diff.removed == ["json.dumps"]
    assert [{"json.loads", _old, "(s)"}] = diff.changed
    assert Introspection.diff(entry, entry) == %{added: [], removed: [], changed: []}
  end

  test "mix snakebridge.discover writes a config that evaluates and a descriptor", %{tmp_dir: dir} do
    output = Path.join(dir, "json.exs")
    cache = Path.join(dir, "schemas")

    ExUnit.CaptureIO.capture_io(fn ->
      Mix.Tasks.Snakebridge.Discover.run(["json", "--output", output, "--cache-dir", cache])
    end)

    {config, _} = Code.eval_file(output)
    assert config.python_module == "json"
    assert config.integration_id == :json

    assert Enum.any?(
             config.functions,
             &(&1.python_path == "json.dumps" and &1.elixir_name == :dumps)
           )

    assert Enum.any?(config.classes, &(&1.elixir_module == Json.JSONDecoder))
    assert File.exists?(Path.join(cache, "json.json"))

    assert_raise Mix.Error, ~r/exists/, fn ->
      Mix.Tasks.Snakebridge.Discover.run(["json", "--output", output, "--cache-dir", cache])
    end

    assert_raise Mix.Error, ~r/failed/, fn ->
      ExUnit.CaptureIO.capture_io(fn ->
        Mix.Tasks.Snakebridge.Discover.run([
          "no_such_module_xyz",
          "--output",
          Path.join(dir, "x.exs")
        ])
      end)
    end
  end
end
