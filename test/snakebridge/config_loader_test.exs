defmodule SnakeBridge.ConfigLoaderTest.Base do
  @moduledoc false
  use SnakeBridge.Config

  @impl true
  def config do
    %SnakeBridge.Config{
      python_module: "json",
      python_deps: ["base-dep"],
      caching: %{enabled: true, ttl: 1_000},
      functions: [%{python_path: "json.dumps", timeout: 1_000}],
      init: [%{python_path: "base.init"}]
    }
  end
end

defmodule SnakeBridge.ConfigLoaderTest.WithBase do
  @moduledoc false
  use SnakeBridge.Config

  @impl true
  def config do
    %SnakeBridge.Config{
      python_module: "json",
      extends: SnakeBridge.ConfigLoaderTest.Base,
      functions: [%{python_path: "json.dumps", timeout: 5_000}, %{python_path: "json.loads"}]
    }
  end
end

defmodule SnakeBridge.ConfigLoaderTest do
  use ExUnit.Case, async: true

  alias SnakeBridge.Config
  alias SnakeBridge.Config.Loader
  alias SnakeBridge.ConfigLoaderTest.{Base, WithBase}

  @moduletag :tmp_dir

  defp write!(dir, name, source) do
    path = Path.join(dir, name)
    File.write!(path, source)
    path
  end

  test "a config module returns a %SnakeBridge.Config{} and loads composed" do
    assert %Config{python_module: "json"} = Base.config()
    assert {:ok, %Config{} = config} = Config.load(WithBase)

    # The config's own keys win over its base's; entries merge by python_path.
    assert [%{python_path: "json.dumps", timeout: 5_000}, %{python_path: "json.loads"}] =
             config.functions

    assert config.python_deps == ["base-dep"]
    assert config.caching == %{enabled: true, ttl: 1_000}
    assert config.extends == nil
  end

  test "an invalid config module is a compile error pointing at it" do
    source = """
    defmodule SnakeBridge.ConfigLoaderTest.Broken do
      use SnakeBridge.Config
      def config, do: %{python_module: "json", functions: [%{python_path: "json.dumps", timeout: -1}]}
    end
    """

    error = assert_raise CompileError, fn -> Code.compile_string(source, "broken_config.ex") end

    assert error.file =~ "broken_config.ex"
    assert error.description =~ "functions[0].timeout: expected a positive number"
  end

  test "a manifest is evaluated with EEx and validated", %{tmp_dir: dir} do
    path =
      write!(dir, "json.exs", """
      %SnakeBridge.Config{
        python_module: "json",
        version: "<%= @version %>",
        description: "made in <%= Path.basename(@dir) %>",
        functions: [%{python_path: "json.dumps", elixir_name: :<%= "encode" %>}]
      }
      """)

    assert {:ok, config} = Loader.load(path, assigns: [version: "2.0.9"])
    assert config.version == "2.0.9"
    assert config.description == "made in #{Path.basename(dir)}"
    assert [%{elixir_name: :encode}] = config.functions
  end

  test "manifests may be keyword lists or maps", %{tmp_dir: dir} do
    path =
      write!(dir, "kw.exs", ~s([python_module: "json", functions: [%{python_path: "json.dumps"}]]))

    assert {:ok, %Config{python_module: "json"}} = Loader.load(path)
  end

  test "mixins and extends merge in documented order", %{tmp_dir: dir} do
    write!(dir, "base.exs", """
    %{
      python_module: "json",
      description: "base",
      version: "1",
      python_deps: ["a"],
      classes: [%{python_path: "json.JSONEncoder", methods: [%{name: "encode", timeout: 100}]}],
      init: [%{python_path: "m.base"}]
    }
    """)

    write!(dir, "mixin_one.exs", """
    %{description: "one", version: "one", python_deps: ["b"],
      classes: [%{python_path: "json.JSONEncoder", methods: [%{name: "encode", timeout: 200}, %{name: "default"}]}],
      init: [%{python_path: "m.one"}]}
    """)

    write!(dir, "mixin_two.exs", """
    %{version: "two", python_deps: ["a", "c"], init: [%{python_path: "m.two"}]}
    """)

    path =
      write!(dir, "main.exs", """
      %{python_module: "json", extends: "base.exs", mixins: ["mixin_one.exs", "mixin_two.exs"],
        description: "main", init: [%{python_path: "m.main"}]}
      """)

    assert {:ok, config} = Loader.load(path)
    # The config itself > later mixins > earlier mixins > the base.
    assert config.description == "main"
    assert config.version == "two"
    assert config.python_deps == ["a", "b", "c"]
    assert Enum.map(config.init, & &1.python_path) == ["m.base", "m.one", "m.two", "m.main"]

    assert [%{methods: [%{name: "encode", timeout: 200}, %{name: "default"}]}] = config.classes
    assert config.mixins == nil and config.extends == nil
  end

  test "a class extending another inherits its methods and properties" do
    {:ok, config} =
      Config.load(%{
        python_module: "json",
        classes: [
          %{python_path: "json.JSONEncoder", methods: [%{name: "encode"}, %{name: "default"}]},
          %{
            python_path: "json.JSONDecoder",
            extends: "json.JSONEncoder",
            methods: [%{name: "encode", timeout: 9}, %{name: "decode"}]
          }
        ]
      })

    assert [_, %{methods: methods}] = config.classes

    assert methods == [
             %{name: "encode", timeout: 9},
             %{name: "default"},
             %{name: "decode"}
           ]
  end

  test "a cycle of mixins is an error naming it", %{tmp_dir: dir} do
    write!(dir, "a.exs", ~s(%{python_module: "json", mixins: ["b.exs"]}))
    write!(dir, "b.exs", ~s(%{mixins: ["a.exs"]}))
    assert {:error, [{path, message}]} = Loader.load(Path.join(dir, "a.exs"))
    assert path =~ "mixins[0]"
    assert message =~ "cycle"
  end

  test "broken manifests are errors naming the file, never a crash", %{tmp_dir: dir} do
    syntax = write!(dir, "syntax.exs", "%{python_module: ")
    assert {:error, [{"config", message}]} = Loader.load(syntax)
    assert message =~ "syntax.exs"

    raising = write!(dir, "raising.exs", "%{python_module: \"json\"}\nraise \"boom\"")
    assert {:error, [{"config", message}]} = Loader.load(raising)
    assert message =~ "raising.exs:2: boom"

    invalid = write!(dir, "invalid.exs", ~s(%{python_module: "json", colour: :blue}))
    error = assert_raise ArgumentError, fn -> Loader.load!(invalid) end
    assert error.message =~ "invalid.exs"
    assert error.message =~ "colour: unknown key"

    assert {:error, [{"config", message}]} = Loader.load(Path.join(dir, "missing.exs"))
    assert message =~ "cannot read"

    assert {:error, [{^invalid, [{"colour", _}]}, {^raising, _}, {^syntax, _}]} =
             Loader.load_all(dir)
  end

  test "load_all loads every manifest of a directory", %{tmp_dir: dir} do
    write!(dir, "b.exs", ~s(%{python_module: "json"}))
    write!(dir, "a.exs", ~s(%{python_module: "math"}))
    write!(dir, "notes.txt", "not a manifest")
    write!(dir, "_partial.exs", ~s(%{python_deps: ["x"]}))

    assert {:ok, [{a, %Config{python_module: "math"}}, {_b, %Config{python_module: "json"}}]} =
             Loader.load_all(dir)

    assert Path.basename(a) == "a.exs"
    assert Loader.load_all(Path.join(dir, "none")) == {:ok, []}
  end

  test "types in args, returns and type are checked with their paths" do
    assert {:error, problems} =
             Config.validate(%{
               python_module: "json",
               functions: [%{python_path: "json.dumps", args: %{obj: :strnig}, returns: 3}],
               classes: [
                 %{
                   python_path: "json.JSONEncoder",
                   properties: [%{name: "x", type: {:list, :integer}}]
                 }
               ]
             })

    assert {"functions[0].args.obj", "unknown type \"strnig\"" <> _} =
             List.keyfind(problems, "functions[0].args.obj", 0)

    assert List.keyfind(problems, "functions[0].returns", 0)
    refute List.keyfind(problems, "classes[0].properties[0].type", 0)
  end

  test "{:system, ENV} is resolved at run time; an unset variable is named, not valued" do
    System.put_env("SB_LOADER_TEST_SECRET", "hunter2")

    config =
      Config.load!(%{
        python_module: "json",
        init: [%{python_path: "a.b", kwargs: %{key: {:system, "SB_LOADER_TEST_SECRET"}}}]
      })

    # Loading keeps the reference: the secret is in neither the config nor its inspect.
    refute inspect(config) =~ "hunter2"
    assert {:ok, %{init: [{"a.b", [], %{key: "hunter2"}}]}} = Config.pool_setup(config)

    unset = %{config | init: [%{python_path: "a.b", args: [{:system, "SB_LOADER_UNSET"}]}]}

    assert Config.pool_setup(unset) ==
             {:error, "json: init[0].args[0]: the environment variable SB_LOADER_UNSET is not set"}
  end
end
