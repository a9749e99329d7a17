defmodule SnakeBridge.MalformedInputTest do
  @moduledoc """
  Malformed configs, manifests and descriptor files are errors that name the file and the
  field, never a crash: binary garbage, truncated text, wrong types at every level, parts
  that cannot cross, nesting a million levels deep, and manifests mutated at random.
  """
  use ExUnit.Case, async: true

  import ExUnit.CaptureIO

  alias SnakeBridge.{Config, Error, Generator, Introspection}
  alias SnakeBridge.Config.Loader

  @moduletag :tmp_dir

  @fixture File.read!(Path.expand("../fixtures/schemas/json.json", __DIR__))

  defp write!(dir, name, content) do
    path = Path.join(dir, name)
    File.write!(path, content)
    path
  end

  defp nest(levels), do: Enum.reduce(1..levels, 1, fn _, inner -> [inner] end)

  describe "manifests" do
    test "binary garbage, in the manifest or in what it includes, names the file", %{tmp_dir: dir} do
      garbage = <<0xFF, 0xFE, 0x00, 0x81, "%{", 0xC3>> <> :crypto.strong_rand_bytes(64)
      path = write!(dir, "garbage.exs", garbage)
      assert {:error, [{"config", message}]} = Loader.load(path)
      assert message == "#{path} is not UTF-8 text"

      error = assert_raise ArgumentError, fn -> Loader.load!(path) end
      assert error.message =~ "garbage.exs"

      write!(dir, "_bad_mixin.exs", garbage)

      including =
        write!(dir, "including.exs", ~s(%{python_module: "json", mixins: ["_bad_mixin.exs"]}))

      assert {:error, [{"mixins[0] (_bad_mixin.exs) config", message}]} = Loader.load(including)
      assert message =~ "_bad_mixin.exs is not UTF-8 text"

      extending = write!(dir, "extending.exs", ~s(%{python_module: "json", extends: "garbage.exs"}))
      assert {:error, [{"extends (garbage.exs) config", _}]} = Loader.load(extending)

      assert {:error, failures} = Loader.load_all(dir)
      assert {^path, [{"config", _}]} = List.keyfind(failures, path, 0)
    end

    test "truncated text and EEx that does not parse name the file and line", %{tmp_dir: dir} do
      truncated =
        write!(
          dir,
          "truncated.exs",
          ~s(%{python_module: "json", functions: [%{python_path: "json.du)
        )

      assert {:error, [{"config", message}]} = Loader.load(truncated)
      assert message =~ "truncated.exs:1:"

      eex = write!(dir, "eex.exs", ~s(%{python_module: "<%= 1 + %>"}))
      assert {:error, [{"config", message}]} = Loader.load(eex)
      assert message =~ "EEx in #{eex} failed"
    end

    test "a manifest that is not a config, or has wrong types, gets every problem with its path",
         %{tmp_dir: dir} do
      for {name, source, got} <- [{"number.exs", "42", "got 42"}, {"empty.exs", "", "got nil"}] do
        path = write!(dir, name, source)
        error = assert_raise ArgumentError, fn -> Loader.load!(path) end
        assert error.message =~ name

        assert error.message =~
                 "config: expected a config module, path, map or keyword list, #{got}"
      end

      # A string is the path of another manifest.
      string = write!(dir, "string.exs", ~s("json"))
      error = assert_raise ArgumentError, fn -> Loader.load!(string) end
      assert error.message =~ "string.exs"
      assert error.message =~ "cannot read #{Path.join(dir, "json")}"

      nested =
        write!(dir, "nested.exs", String.duplicate("[", 10_000) <> String.duplicate("]", 10_000))

      assert {:error, [{"config", "expected a map or keyword list, got [[[" <> _}]} =
               Loader.load(nested)

      types =
        write!(dir, "types.exs", """
        %{python_module: 1, classes: "x", introspection: [],
          functions: [%{python_path: :ok, timeout: "1", args: %{x: {:list}}}]}
        """)

      assert {:error, problems} = Loader.load(types)

      assert problems == [
               {"classes", ~s(expected a list of maps, got "x")},
               {"functions[0].args.x",
                "expected {:list, t}, {:map, k, v}, {:optional, t} or {:union, [t, ...]}"},
               {"functions[0].timeout",
                ~s(expected a positive number of milliseconds or :infinity, got "1")},
               {"introspection", "expected a map, got a list"},
               {"python_module", "expected a non-empty string or atom, got 1"}
             ]
    end

    test "parts that cannot cross, and nesting a million levels deep, are named by path",
         %{tmp_dir: dir} do
      pid = write!(dir, "pid.exs", ~s[%{python_module: "json", version: self()}])
      assert Loader.load(pid) == {:error, [{"config[:version]", "a pid cannot be sent to Python"}]}

      deep =
        write!(dir, "deep.exs", """
        deep = Enum.reduce(1..1_000_000, 1, fn _, inner -> [inner] end)
        %{python_module: "json", init: [%{python_path: "json.loads", args: deep}]}
        """)

      assert {:error, [{path, "value is nested more than 256 levels deep"}]} = Loader.load(deep)
      assert path =~ "config[:init][0][:args][0][0]"
    end

    test "manifests mutated at random load or fail with paths, never raise", %{tmp_dir: dir} do
      base = """
      %SnakeBridge.Config{
        python_module: "json",
        description: "JSON",
        introspection: %{enabled: true, discovery_depth: 1, exclude_patterns: ["*.tests*"]},
        classes: [
          %{python_path: "json.JSONDecoder", elixir_module: Json.Decoder,
            constructor: %{args: %{strict: :boolean}, timeout: 1_000},
            methods: [%{name: "decode", returns: {:list, {:optional, :integer}}}],
            properties: [%{name: "strict", readonly: true}]}
        ],
        functions: [%{python_path: "json.dumps", elixir_name: :encode, timeout: :infinity}],
        bidirectional_tools: %{export_to_python: [%{python_name: "up", function: {String, :upcase, 1}}]},
        serialization: %{args: :msgpack, result: :json},
        python_deps: ["numpy>=1"]
      }
      """

      seed = 7
      :rand.seed(:exsss, {seed, seed, seed})

      alphabet =
        String.graphemes(~S'{}[]()%"\':,.=&|/\ _aZ09#ü') ++ ["\n", "do", "end", "fn", "->", <<0>>]

      for i <- 1..200 do
        source = mutate(base, alphabet)
        path = write!(dir, "mutant#{i}.exs", source)

        # (Mutants warn about the variables they make up: not worth showing.)
        {result, _warnings} = with_io(:stderr, fn -> Loader.load(path) end)

        case result do
          {:ok, %Config{}} ->
            :ok

          {:error, [_ | _] = problems} ->
            for {where, message} <- problems do
              assert is_binary(where) and where != "", "mutant #{i} (seed #{seed}):\n#{source}"
              assert is_binary(message), "mutant #{i} (seed #{seed}):\n#{source}"
            end
        end
      end
    end
  end

  defp mutate(source, alphabet) do
    graphemes = String.graphemes(source)

    Enum.reduce(1..:rand.uniform(4), graphemes, fn _, g ->
      at = :rand.uniform(max(length(g), 1)) - 1

      case :rand.uniform(4) do
        1 -> List.delete_at(g, at)
        2 -> List.insert_at(g, at, Enum.random(alphabet))
        3 -> List.replace_at(g, at, Enum.random(alphabet))
        4 -> Enum.take(g, at + 1)
      end
    end)
    |> Enum.join()
  end

  describe "Config.validate/1" do
    test "wrong types at every level are reported together, each with its path" do
      config = %{
        python_module: "json",
        classes: [
          1,
          %{python_path: "a.B", methods: "x", properties: [%{}], constructor: %{timeout: :soon}}
        ],
        functions: [%{python_path: "a.f", returns: {:list}, args: %{x: {:union, []}}}],
        bidirectional_tools: %{export_to_python: [%{python_name: "x", function: "nope"}]},
        serialization: %{args: :xml},
        description: URI.parse("http://example.com")
      }

      assert {:error, problems} = Config.validate(config)

      assert Enum.map(problems, &elem(&1, 0)) == [
               "bidirectional_tools.export_to_python[0].function",
               "classes[0]",
               "classes[1].constructor.timeout",
               "classes[1].methods",
               "classes[1].properties[0].name",
               "description",
               "functions[0].args.x",
               "functions[0].returns",
               "serialization.args"
             ]
    end

    test "what cannot cross (pids, improper lists, deep nesting) is named by path, not raised" do
      assert Config.validate(%{
               python_module: "json",
               init: [%{python_path: "a.b", kwargs: %{k: [self()]}}]
             }) ==
               {:error, [{"config[:init][0][:kwargs][:k][0]", "a pid cannot be sent to Python"}]}

      assert Config.validate(%{python_module: "json", python_deps: ["a" | "b"]}) ==
               {:error, [{"config[:python_deps]", "an improper list cannot be sent to Python"}]}

      deep = %{python_module: "json", init: [%{python_path: "a.b", args: nest(1_000_000)}]}
      assert {:error, [{path, "value is nested more than 256 levels deep"}]} = Config.validate(deep)
      assert path =~ "config[:init][0][:args][0]"

      assert Config.validate([1, 2]) == {:error, [{"config", "expected a map, got a list"}]}
    end
  end

  describe "descriptor files" do
    # Each file in a directory of its own: the core keeps what it loaded from a directory
    # in memory, and would not read a file there again.
    defp load(dir, content) do
      dir = Path.join(dir, "#{System.unique_integer([:positive])}")
      File.mkdir_p!(dir)
      File.write!(Path.join(dir, "json.json"), content)
      {Introspection.load("json", cache_dir: dir), Path.join(dir, "json.json")}
    end

    defp replace_once(text, pattern, replacement) do
      assert text =~ pattern
      String.replace(text, pattern, replacement, global: false)
    end

    test "garbage, truncated or not an entry at all: the error names the file and the field",
         %{tmp_dir: dir} do
      assert {{:ok, %SnakeBridge.Descriptor.Entry{integration: "json"}}, _} = load(dir, @fixture)

      for {what, content, field} <- [
            {:garbage, <<0xFF, 0xFE, 0x00, 0x81>> <> :crypto.strong_rand_bytes(100), "."},
            {:byte_order_mark, "\uFEFF" <> @fixture, "."},
            {:truncated, binary_part(@fixture, 0, div(byte_size(@fixture), 2)), "descriptor."},
            {:empty, "", "."},
            {:a_list, "[]", "."},
            {:null, "null", "."},
            {:a_number, "42", "."}
          ] do
        assert {{:error, %Error{reason: :encoding, message: message}}, file} = load(dir, content)
        assert message =~ "#{file}: #{field}", "#{what}: #{message}"
      end
    end

    test "a wrong field anywhere is named by its path", %{tmp_dir: dir} do
      for {content, expected} <- [
            {replace_once(@fixture, ~s("kind": 1,), ~s("kind": "positional",)),
             "descriptor.classes.json.JSONDecodeError.constructor.parameters[0].kind: invalid value: string \"positional\", expected a ParameterDescriptor.Kind name"},
            {replace_once(
               @fixture,
               ~s("schema_version": 1,),
               ~s("schema_version": 1, "colour": 1,)
             ), "colour: unknown field `colour`"},
            {replace_once(@fixture, ~s("schema_version": 1,), ~s("schema_version": 2,)),
             "schema_version: is 2, this SnakeBridge reads 1"},
            {replace_once(@fixture, "Subclass of ValueError", "Subclass of TypeError"),
             "descriptor_hash: does not match the descriptor"},
            {replace_once(
               @fixture,
               ~s("python_path": "json.JSONDecodeError",),
               ~s("python_path": "json.Other",)
             ), ~s(descriptor.classes["json.JSONDecodeError"].python_path: is "json.Other")}
          ] do
        assert {{:error, %Error{message: message}}, file} = load(dir, content)
        assert message =~ "#{file}: #{expected}"
      end
    end

    test "a type annotation nested a million levels is an error naming file and field",
         %{tmp_dir: dir} do
      levels = 1_000_000

      deep =
        replace_once(
          @fixture,
          ~s("args": []),
          ~s("args": [) <>
            String.duplicate(~s({"args": [), levels) <> String.duplicate("]}", levels) <> "]"
        )

      assert {{:error, %Error{message: message}}, file} = load(dir, deep)
      assert message =~ file <> ": descriptor.classes.json.JSONDecodeError."
      assert message =~ "annotation.args[0].args[0].args[0]"
      assert message =~ "recursion limit exceeded"
    end

    test "generating from a corrupt descriptor is an ArgumentError naming the file", %{tmp_dir: dir} do
      File.write!(Path.join(dir, "json.json"), binary_part(@fixture, 0, 1000))

      error =
        assert_raise ArgumentError, fn ->
          Generator.generate_and_load(%{
            python_module: "json",
            introspection: %{cache_path: dir},
            functions: [%{python_path: "json.dumps"}]
          })
        end

      assert error.message =~ "descriptor: #{Path.join(dir, "json.json")}: "
    end
  end
end
